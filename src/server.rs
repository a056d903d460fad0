//! The server on top of the protocols: merges each protocol's routes and
//! OpenAPI paths, puts the cross-cutting layers around them, and runs it
//! all (`serve`) with graceful shutdown and the GC loop. Adding a protocol
//! is its own module plus one line in [`routes`] and one in [`openapi`].

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::config::AuthMode;
use crate::http::layers::{self, Budget, rate_limit};
use crate::http::{AppState, Routes, auth, json_errors, metrics, ops};
use crate::protocol::{admin, files, native, seed, tus};
use crate::wire;

/// Every protocol's routes.
fn routes() -> (Routes, Router<AppState>) {
    let (ops_api, plain) = ops::routes();
    let all = files::routes()
        .merge(native::routes())
        .merge(seed::routes())
        .merge(tus::routes())
        .merge(admin::routes())
        .merge(ops_api);
    (all, plain)
}

/// The document's frame: info, shared schemas, tags.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "depot",
        description = "A streaming file server on a content-addressed, deduplicating chunk store.",
        license(name = "MIT OR Apache-2.0")
    ),
    components(schemas(wire::ChunkHash, wire::ErrorBody, wire::FileInfo, wire::FileList, wire::StatsInfo, wire::PieceStatus, wire::Health,
        wire::ChunkingInfo, wire::TypePolicyInfo, wire::MissingRequest, wire::MissingResponse, wire::PutChunkResponse, wire::ChunkRef,
        wire::CommitRequest, wire::ManifestInfo, wire::ManifestChunk, wire::TokenRequest, wire::TokenInfo, wire::TokenList,
        wire::LinkRequest, wire::LinkInfo)),
    modifiers(&Security),
    security(("bearerAuth" = []), ("basicAuth" = [])),
    tags(
        (name = "files", description = "List, download and delete files"),
        (name = "uploads", description = "The seed's uploads: whole files, and resumable.js / flow.js pieces"),
        (name = "dedup", description = "depot's own protocol: send only the chunks the server lacks"),
        (name = "tus", description = "tus 1.0.0 resumable uploads: creation, creation-with-upload, creation-defer-length, termination, checksum, expiration, concatenation"),
        (name = "operations", description = "Health, metrics, statistics"),
        (name = "admin", description = "Tokens (the `admin` scope)"),
    )
)]
struct Frame;

/// The credentials the document declares, so that Swagger UI's "Authorize"
/// works: a bearer token, or Basic with the token as password.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("dpt_<id>_<secret>")
                    .description(Some("A depot token (not needed in `local` mode)"))
                    .build(),
            ),
        );
        c.add_security_scheme(
            "basicAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some("Any user name, the token as password"))
                    .build(),
            ),
        );
        // Every operation can meet the auth layer's answers; health needs
        // no credentials.
        use utoipa::openapi::ResponseBuilder;
        let err = |d: &str| {
            ResponseBuilder::new()
                .description(d)
                .content(
                    "application/json",
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.head,
                &mut item.patch,
                &mut item.options,
            ];
            for op in ops.into_iter().flatten() {
                if path == "/healthz" {
                    op.security = Some(Vec::new());
                    continue;
                }
                let r = &mut op.responses.responses;
                r.entry("401".into())
                    .or_insert_with(|| err("No valid token (token mode), same body for every cause").into());
                r.entry("403".into()).or_insert_with(|| {
                    err("The token lacks the scope, or (local mode) a foreign Host or Origin").into()
                });
            }
        }
    }
}

/// The OpenAPI document: the frame plus every protocol's paths. The
/// committed `schema/openapi.json` must equal it (a test checks).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = Frame::openapi();
    for part in [
        files::Doc::openapi(),
        seed::Doc::openapi(),
        native::Doc::openapi(),
        tus::Doc::openapi(),
        admin::Doc::openapi(),
        ops::Doc::openapi(),
    ] {
        doc.merge(part);
    }
    doc
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let cfg = state.config.clone();
    let (Routes { api, uploads }, plain) = routes();
    let api = rate_limit(
        api.layer(DefaultBodyLimit::max(cfg.limits.max_json_body.0 as usize)),
        &cfg.rate_limit,
        Budget::Api,
    );
    // Upload bodies are limited by the configured file and piece sizes, not
    // by axum's default 2 MB.
    let uploads = rate_limit(uploads.layer(DefaultBodyLimit::disable()), &cfg.rate_limit, Budget::Upload);
    let docs: Router<AppState> = SwaggerUi::new("/api/docs").url("/api/openapi.json", openapi()).into();

    let mut app = Router::new()
        .merge(api)
        .merge(uploads)
        .merge(plain)
        .merge(docs)
        .fallback(ops::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn(tus::version_on_errors))
        .layer(axum::middleware::from_fn_with_state(state.metrics.clone(), metrics::track));
    if let Some(cors) = layers::cors(&cfg.cors, cfg.auth.mode == AuthMode::Local) {
        app = app.layer(cors).layer(axum::middleware::from_fn_with_state(state.clone(), tus::discovery));
    }
    app.layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            // The path only: a query may carry a signed link's signature.
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), id = %id)
        }))
        .layer(tower_http::set_header::SetResponseHeaderLayer::if_not_present(
            axum::http::header::X_CONTENT_TYPE_OPTIONS,
            axum::http::HeaderValue::from_static("nosniff"),
        ))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` completes, then lets
/// in-flight requests finish, stops background work and closes the store
/// cleanly. Runs GC every `gc.interval` meanwhile.
///
/// # Errors
/// I/O errors from the listener.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let gc = tokio::spawn(gc_loop(state.clone(), state.shutdown.clone()));
    let app = tower::ServiceBuilder::new().map_request(tus::method_override).service(router(state.clone()));
    let begin = state.clone();
    let shutdown = async move {
        shutdown.await;
        begin.begin_shutdown();
    };
    // Small answers (Range requests, JSON) go out at once, not after a
    // delayed acknowledgement.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let result = axum::serve(
        listener,
        axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<SocketAddr>(app),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    let _ = gc.await;
    if let Err(e) = state.store.blocking(|s| s.close()).await {
        tracing::warn!(error = %e, "closing the store");
    }
    result
}

async fn gc_loop(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let interval = state.config.gc.interval.0;
    if interval.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        // After an unclean shutdown, the first run also sweeps orphan objects.
        let sweep = state.store.orphan_sweep_due();
        match state.store.blocking(move |s| s.gc(sweep)).await {
            Ok(r) => {
                if r != Default::default() {
                    tracing::info!(?r, "gc");
                }
            }
            Err(e) => tracing::warn!(error = %e, "gc failed; will retry"),
        }
    }
}
