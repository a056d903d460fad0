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

use crate::http::layers::{self, Budget, rate_limit};
use crate::http::{AppState, Routes, json_errors, metrics, ops};
use crate::protocol::{files, native, seed, tus};
use crate::wire;

/// Every protocol's routes.
fn routes() -> (Routes, Router<AppState>) {
    let (ops_api, plain) = ops::routes();
    let all =
        files::routes().merge(native::routes()).merge(seed::routes()).merge(tus::routes()).merge(ops_api);
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
        wire::CommitRequest, wire::ManifestInfo, wire::ManifestChunk)),
    tags(
        (name = "files", description = "List, download and delete files"),
        (name = "uploads", description = "The seed's uploads: whole files, and resumable.js / flow.js pieces"),
        (name = "dedup", description = "depot's own protocol: send only the chunks the server lacks"),
        (name = "tus", description = "tus 1.0.0 resumable uploads: creation, creation-with-upload, creation-defer-length, termination, checksum, expiration, concatenation"),
        (name = "operations", description = "Health, metrics, statistics"),
    )
)]
struct Frame;

/// The OpenAPI document: the frame plus every protocol's paths. The
/// committed `schema/openapi.json` must equal it (a test checks).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = Frame::openapi();
    for part in [
        files::Doc::openapi(),
        seed::Doc::openapi(),
        native::Doc::openapi(),
        tus::Doc::openapi(),
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
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn(tus::version_on_errors))
        .layer(axum::middleware::from_fn_with_state(state.metrics.clone(), metrics::track));
    if let Some(cors) = layers::cors(&cfg.cors) {
        app = app.layer(cors).layer(axum::middleware::from_fn_with_state(state.clone(), tus::discovery));
    }
    app.layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), uri = %req.uri(), id = %id)
        }))
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
