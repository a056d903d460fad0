//! Where tus meets the server: its routes and OpenAPI paths, and the three
//! things tus asks of the HTTP stack around its handlers (discovery on a
//! plain OPTIONS, `X-HTTP-Method-Override`, `Tus-Resumable` on every error).

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;

use super::handlers::{
    __path_create, __path_head, __path_options, __path_patch, __path_terminate, TUS_VERSION,
};
use super::{create, head, options, patch, terminate};
use crate::http::{AppState, Routes};

/// Everything under this path is tus.
const PREFIX: &str = "/api/tus";

/// This protocol's routes: creation, HEAD, PATCH, termination, OPTIONS.
pub fn routes() -> Routes {
    use axum::routing::{head as head_route, post};
    let uploads = axum::Router::new()
        .route("/api/tus", post(create).options(options))
        .route("/api/tus/", post(create).options(options))
        .route("/api/tus/{id}", head_route(head).patch(patch).delete(terminate).options(options));
    Routes { uploads, ..Default::default() }
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(options, create, head, patch, terminate))]
pub struct Doc;

/// The CORS layer answers every OPTIONS itself, as a preflight; a tus
/// client's plain OPTIONS (no `Access-Control-Request-Method`) gets the tus
/// discovery answer instead.
pub async fn discovery(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let plain_options = req.method() == Method::OPTIONS
        && req.uri().path().starts_with(PREFIX)
        && !req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if plain_options { options(State(st)).await } else { next.run(req).await }
}

/// `X-HTTP-Method-Override` on a tus POST: the request is the method it
/// names (for clients that cannot send PATCH or DELETE).
pub fn method_override(mut req: Request) -> Request {
    if req.method() == Method::POST && req.uri().path().starts_with(PREFIX) {
        let named = req
            .headers()
            .get("x-http-method-override")
            .and_then(|v| v.to_str().ok())
            .and_then(|m| Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()).ok());
        if let Some(m) = named {
            *req.method_mut() = m;
        }
    }
    req
}

/// Whether tus's error answers apply to `req`: its path is tus's (the IETF
/// draft's requests share the path but not tus's headers). See
/// [`version_on_errors`].
pub fn speaks_tus(req: &Request) -> bool {
    req.uri().path().starts_with(PREFIX) && !crate::protocol::ietf::is_draft(req.headers())
}

/// tus wants its version on every answer under its path, errors from the
/// router and the extractors too: `resp` gains `Tus-Resumable` when it is
/// an error answer to a request [`speaks_tus`] said yes to (`tus`).
pub fn version_on_errors(tus: bool, mut resp: Response) -> Response {
    let status = resp.status();
    if tus
        && (status.is_client_error() || status.is_server_error())
        && !resp.headers().contains_key("tus-resumable")
    {
        resp.headers_mut().insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    }
    resp
}
