//! The server on top of the protocols: merges each protocol's routes and
//! OpenAPI paths, puts the cross-cutting layers around them, and runs it
//! all (`serve`) with graceful shutdown and the GC loop; `serve_opening`
//! answers (503, "starting") while the store is still opening. Adding a
//! protocol is its own module plus one line in [`routes`] and one in
//! [`openapi`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::http::layers::{self, Budget, rate_limit};
use crate::http::{ApiError, AppState, Routes, access, json_errors, ops};
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
        .layer(axum::middleware::from_fn(tus::version_on_errors));
    if let Some(cors) = layers::cors(&cfg.cors) {
        app = app.layer(cors).layer(axum::middleware::from_fn_with_state(state.clone(), tus::discovery));
    }
    app.layer(PropagateRequestIdLayer::x_request_id())
        // The span names the path only: a query may carry a credential.
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), id = %id)
        }))
        // Outside CORS, so that preflights are counted and logged too, and
        // outside the request span, whose fields the line repeats; inside
        // the router, so that it sees the matched route, and inside the
        // request id.
        .layer(axum::middleware::from_fn_with_state(state.metrics.clone(), access::track))
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
    match serve_opening(listener, async { Ok::<_, Infallible>(state) }, || {}, shutdown).await {
        Ok(()) => Ok(()),
        Err(StartError::Io(e)) => Err(e),
        Err(StartError::Open(never)) => match never {},
    }
}

/// Why [`serve_opening`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum StartError<E> {
    /// The state could not be made (the store did not open).
    #[error("{0}")]
    Open(E),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Serves on `listener` at once, while `open` makes the state (opening the
/// store, with the crash recovery that does: it can take a while on a large
/// store after a crash). Until it is made, every request is answered 503
/// (`/healthz` and `/readyz` included), so probes see a server that is
/// starting rather than one that does not answer. Then `ready` runs and the
/// server goes on as [`serve`] does.
///
/// # Errors
/// [`StartError::Open`] when `open` fails (the listener is closed first);
/// I/O errors from the listener.
pub async fn serve_opening<E>(
    listener: TcpListener,
    open: impl Future<Output = Result<AppState, E>>,
    ready: impl FnOnce(),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError<E>> {
    let app: Arc<OnceLock<Router>> = Arc::default();
    let state_slot: Arc<OnceLock<AppState>> = Arc::default();
    let (abort, aborted) = tokio::sync::oneshot::channel::<()>();
    let begin = state_slot.clone();
    let stopping = async move {
        tokio::select! {
            _ = shutdown => {}
            _ = aborted => {}
        }
        if let Some(state) = begin.get() {
            state.begin_shutdown();
        }
    };
    // Small answers (Range requests, JSON) go out at once, not after a
    // delayed acknowledgement.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let gate = gate(app.clone());
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            axum::ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(gate),
        )
        .with_graceful_shutdown(stopping)
        .await
    });
    let state = match open.await {
        Ok(state) => state,
        Err(e) => {
            let _ = abort.send(());
            let _ = server.await;
            return Err(StartError::Open(e));
        }
    };
    let _ = state_slot.set(state.clone());
    let _ = app.set(router(state.clone()));
    let gc = tokio::spawn(gc_loop(state.clone(), state.shutdown.clone()));
    if !server.is_finished() {
        ready();
    }
    let result = server.await.map_err(std::io::Error::other).and_then(|r| r);
    // Also when the shutdown came before the state was made.
    state.begin_shutdown();
    let _ = gc.await;
    if let Err(e) = state.store.blocking(|s| s.close()).await {
        tracing::warn!(error = %e, "closing the store");
    }
    drop(abort);
    Ok(result?)
}

/// The service the listener serves: the application once it is installed
/// in `app`, a 503 before. tus's method override applies first.
fn gate(
    app: Arc<OnceLock<Router>>,
) -> impl tower::Service<Request, Response = Response, Error = Infallible, Future: Send> + Clone + Send {
    tower::service_fn(move |req: Request| {
        let app = app.clone();
        async move {
            let req = tus::method_override(req);
            match app.get() {
                Some(router) => tower::ServiceExt::oneshot(router.clone(), req).await,
                None => Ok(ApiError::NotReady("starting: the store is opening").into_response()),
            }
        }
    })
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
