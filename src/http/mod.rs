//! The HTTP server: state, router, layers, the error table, and `serve`.
//! Protocol modules provide the handlers; this module wires them together
//! and owns what cuts across them (CORS, rate limits, body limits, request
//! ids, logs, metrics, the OpenAPI document).

mod error;
mod layers;
mod metrics;
pub mod openapi;
mod ops;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

pub use self::error::ApiError;
use self::layers::{Budget, rate_limit};
pub use self::metrics::Metrics;
use crate::config::Config;
use crate::protocol::{files, native, seed, tus};
use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// Budget of upload bytes held in memory (permits are KiB); closed when
    /// shutdown begins, so that waiting uploads are answered 503.
    body_budget: Arc<Semaphore>,
    /// Which request holds each tus upload.
    pub tus: Arc<tus::Slots>,
    /// Turns true when the server starts shutting down: long uploads stop,
    /// keeping what arrived.
    pub shutdown: watch::Receiver<bool>,
    shutdown_tx: Arc<watch::Sender<bool>>,
}

impl AppState {
    pub fn new(store: Store, config: Config) -> Self {
        let (shutdown_tx, shutdown) = watch::channel(false);
        let body_budget = Arc::new(Semaphore::new(body_budget_kib(&config) as usize));
        Self {
            store,
            config: Arc::new(config),
            metrics: Arc::new(Metrics::default()),
            body_budget,
            tus: Arc::default(),
            shutdown,
            shutdown_tx: Arc::new(shutdown_tx),
        }
    }

    /// Reserves `bytes` of the budget of upload bytes in memory, waiting for
    /// room. A reservation larger than the whole budget takes all of it.
    ///
    /// # Errors
    /// 503 when the server is shutting down.
    pub async fn reserve_body(&self, bytes: u64) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        let kib = bytes.div_ceil(1024).clamp(1, u64::from(body_budget_kib(&self.config))) as u32;
        self.body_budget
            .clone()
            .acquire_many_owned(kib)
            .await
            .map_err(|_| ApiError::Unavailable("shutting down".into()))
    }
}

/// `limits.max_buffered` in KiB permits (a semaphore holds fewer than 2^61).
fn body_budget_kib(config: &Config) -> u32 {
    config.limits.max_buffered.0.div_ceil(1024).clamp(1, u64::from(u32::MAX)) as u32
}

/// Counts an upload body streaming in, for `/metrics`.
pub struct UploadGuard(Arc<Metrics>);

impl UploadGuard {
    pub fn new(m: &Arc<Metrics>) -> Self {
        m.uploads_active.fetch_add(1, Ordering::Relaxed);
        Self(m.clone())
    }
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        self.0.uploads_active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The request's declared `Content-Length`, when there is one that parses.
pub fn content_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers.get(axum::http::header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Reads a whole (small) request body, refusing more than `limit` bytes
/// with 413 as soon as they arrive; `expect` sizes the buffer up front.
///
/// # Errors
/// [`ApiError::PayloadTooLarge`], or [`ApiError::BadRequest`] when the body
/// breaks off.
pub async fn read_body(
    body: axum::body::Body,
    limit: usize,
    expect: usize,
) -> Result<axum::body::Bytes, ApiError> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    // One allocation of the declared size, not a doubling series of copies.
    let mut buf = Vec::with_capacity(expect.min(limit));
    while let Some(frame) = stream.next().await {
        let frame = frame.map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?;
        if buf.len() + frame.len() > limit {
            return Err(ApiError::PayloadTooLarge(format!("the body may be at most {limit} bytes")));
        }
        buf.extend_from_slice(&frame);
    }
    Ok(buf.into())
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let cfg = state.config.clone();
    let api = Router::new()
        .route("/api/files", get(files::list_files).post(native::commit))
        .route("/api/files/{id}/manifest", get(native::manifest))
        .route("/api/chunking", get(native::chunking))
        .route("/api/chunks/missing", post(native::missing_chunks))
        .route("/api/files/{id}", get(files::download).delete(files::delete))
        .route("/api/files/{id}/info", get(files::info))
        .route("/api/stats", get(ops::stats))
        .layer(DefaultBodyLimit::max(cfg.limits.max_json_body.0 as usize));
    let api = rate_limit(api, &cfg.rate_limit, Budget::Api);

    // Upload bodies are limited by the configured file and piece sizes, not
    // by axum's default 2 MB.
    let uploads = Router::new()
        .route("/api/files/upload", post(seed::upload_file))
        .route("/api/files/upload/chunked", get(seed::test_chunk).post(seed::post_chunk))
        .route("/api/chunks/{hash}", get(native::get_chunk).put(native::put_chunk))
        .route("/api/tus", post(tus::create).options(tus::options))
        .route("/api/tus/", post(tus::create).options(tus::options))
        .route(
            "/api/tus/{id}",
            axum::routing::head(tus::head).patch(tus::patch).delete(tus::terminate).options(tus::options),
        )
        .layer(DefaultBodyLimit::disable());
    let uploads = rate_limit(uploads, &cfg.rate_limit, Budget::Upload);

    let ops = Router::new().route("/healthz", get(ops::healthz)).route("/metrics", get(ops::metrics));
    let docs: Router<AppState> =
        SwaggerUi::new("/api/docs").url("/api/openapi.json", openapi::ApiDoc::openapi()).into();

    let mut app = Router::new()
        .merge(api)
        .merge(uploads)
        .merge(ops)
        .merge(docs)
        .fallback(ops::not_found)
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(axum::middleware::from_fn_with_state(state.metrics.clone(), metrics::track));
    if let Some(cors) = layers::cors(&cfg.cors) {
        app = app.layer(cors).layer(axum::middleware::from_fn_with_state(state.clone(), tus_discovery));
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
    let app = tower::ServiceBuilder::new().map_request(method_override).service(router(state.clone()));
    let (begin, budget) = (state.shutdown_tx.clone(), state.body_budget.clone());
    let shutdown = async move {
        shutdown.await;
        let _ = begin.send(true);
        budget.close();
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

/// The CORS layer answers every OPTIONS itself, as a preflight; a tus
/// client's plain OPTIONS (no `Access-Control-Request-Method`) gets the tus
/// discovery answer instead.
async fn tus_discovery(
    axum::extract::State(st): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let plain_options = req.method() == axum::http::Method::OPTIONS
        && req.uri().path().starts_with("/api/tus")
        && !req.headers().contains_key(axum::http::header::ACCESS_CONTROL_REQUEST_METHOD);
    if plain_options { tus::options(axum::extract::State(st)).await } else { next.run(req).await }
}

/// `X-HTTP-Method-Override` on a tus POST: the request is the method it
/// names (for clients that cannot send PATCH or DELETE).
fn method_override(mut req: axum::extract::Request) -> axum::extract::Request {
    if req.method() == axum::http::Method::POST && req.uri().path().starts_with("/api/tus") {
        let named = req
            .headers()
            .get("x-http-method-override")
            .and_then(|v| v.to_str().ok())
            .and_then(|m| axum::http::Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()).ok());
        if let Some(m) = named {
            *req.method_mut() = m;
        }
    }
    req
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
