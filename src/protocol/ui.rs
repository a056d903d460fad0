//! The web page for people: `GET /` and its assets under `/ui/`, all
//! embedded in the binary (it works offline and needs no files beside it).
//! The page speaks the public API like any client (tus for small files, the
//! dedup protocol for large ones, signed links for downloads); this module
//! only serves bytes and never touches the store.
//!
//! The page and its assets carry no data, so they are served without
//! credentials: in `token` mode the page asks for a token and sends it with
//! every API call. Every answer has an `ETag` (the asset's BLAKE3) and
//! `Cache-Control: no-cache`, so a browser revalidates and never runs stale
//! code after an upgrade, and a strict Content-Security-Policy: scripts,
//! styles, workers and connections from this origin only (plus
//! `wasm-unsafe-eval` for the BLAKE3 WebAssembly), no inline code.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::http::ApiError;

/// One embedded file.
struct Asset {
    /// Its path under `/ui/`.
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset { path: $path, content_type: $type, body: include_bytes!(concat!("../../ui/", $path)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("dedup.js", JS),
    asset!("chunker.js", JS),
    asset!("hash-worker.js", JS),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("vendor/uppy.min.js", JS),
    asset!("vendor/uppy.min.css", "text/css; charset=utf-8"),
    asset!("vendor/blake3.umd.min.js", JS),
    asset!("vendor/VERSIONS", "text/plain; charset=utf-8"),
];

/// The page's policy. `style-src` needs no `'unsafe-inline'`: Uppy sets
/// styles through the CSSOM, which CSP does not restrict.
const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; \
     style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; manifest-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Each asset's strong ETag, computed once.
fn etags() -> &'static [HeaderValue] {
    static TAGS: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let hex = blake3::hash(a.body).to_hex();
                HeaderValue::try_from(format!("\"{}\"", &hex[..32])).expect("hex is a valid header value")
            })
            .collect()
    })
}

/// The page's routes (public: see the module docs). They need no state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(index)).route("/ui/{*path}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve(0, &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().position(|a| a.path == path) {
        Some(i) => serve(i, &headers),
        None => ApiError::NotFound(format!("no page asset at /ui/{path}")).into_response(),
    }
}

fn serve(i: usize, req: &HeaderMap) -> Response {
    let a = &ASSETS[i];
    let etag = etags()[i].clone();
    let fresh = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().trim_start_matches("W/") == etag));
    let head = [
        (header::ETAG, etag),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, head).into_response();
    }
    (head, [(header::CONTENT_TYPE, HeaderValue::from_static(a.content_type))], a.body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn app() -> Router {
        routes()
    }

    async fn get_(path: &str, inm: Option<&str>) -> Response {
        let mut req = Request::get(path);
        if let Some(t) = inm {
            req = req.header(header::IF_NONE_MATCH, t);
        }
        app().oneshot(req.body(Body::empty()).unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn page_and_assets_have_types_policy_and_etags() {
        let r = get_("/", None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        assert!(r.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("script-src 'self'"));
        let etag = r.headers()[header::ETAG].to_str().unwrap().to_string();
        assert_eq!(get_("/", Some(&etag)).await.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(get_("/", Some("\"other\"")).await.status(), StatusCode::OK);

        for a in ASSETS {
            let r = get_(&format!("/ui/{}", a.path), None).await;
            assert_eq!(r.status(), StatusCode::OK, "{}", a.path);
            assert_eq!(r.headers()[header::CONTENT_TYPE], a.content_type);
        }
        assert_eq!(get_("/ui/nope.js", None).await.status(), StatusCode::NOT_FOUND);
        assert_eq!(get_("/ui/../Cargo.toml", None).await.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_page_names_only_embedded_assets() {
        let html = std::str::from_utf8(ASSETS[0].body).unwrap();
        for part in html.split("/ui/").skip(1) {
            let path: String = part.chars().take_while(|c| !matches!(c, '"' | '\'' | '?')).collect();
            assert!(
                ASSETS.iter().any(|a| a.path == path),
                "index.html names /ui/{path}, which is not embedded"
            );
        }
    }
}
