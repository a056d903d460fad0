//! The HTTP kernel the protocols stand on: shared state, the error table,
//! the extractors that parse at the edge, body helpers, layers (CORS, rate
//! limits, metrics, the access log), the one-writer-per-upload slots, and
//! the operations endpoints. It imports no protocol:
//! each protocol module exports its [`Routes`] and OpenAPI paths, and
//! [`crate::server`] merges them.

pub mod access;
pub mod auth;
pub mod budget;
pub mod client_ip;
pub mod conns;
pub mod cors;
pub mod encoding;
mod error;
pub mod extract;
pub mod framing;
pub mod interim;
pub mod layers;
pub mod metrics;
pub mod ops;
pub mod writers;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use tokio::sync::watch;

pub use self::auth::Principal;
pub use self::budget::Reservation;
pub use self::error::{ApiError, Dialect, Plain, body_failed, documented, is_idle, json_errors};
pub(crate) use self::extract::id_in_path;
pub use self::extract::{Caller, InPath, JsonBody, PathParam};
pub use self::metrics::Metrics;
use crate::config::Config;
use crate::store::Store;

/// What every handler can reach. Cheap to clone, one reference count: the
/// router clones it for every request, once per layer and extractor that
/// holds it (with the fields held directly, that was eight counts each,
/// about 2% of a small `Range` request's CPU).
#[derive(Clone)]
pub struct AppState(Arc<SharedState>);

impl std::ops::Deref for AppState {
    type Target = SharedState;
    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// The state behind [`AppState`].
pub struct SharedState {
    pub store: Store,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// Budget of request body bytes held in memory; closed when shutdown
    /// begins, so that waiting requests are answered 503.
    body_budget: Arc<budget::MemoryBudget>,
    /// Which request writes to each resumable upload.
    pub writers: Arc<writers::Slots>,
    /// Turns true when the server starts shutting down: long uploads stop,
    /// keeping what arrived.
    pub shutdown: watch::Receiver<bool>,
    shutdown_tx: Arc<watch::Sender<bool>>,
    /// Failed authentications per client address; `None` without rate limits.
    pub auth_failures: Option<Arc<client_ip::AuthFailures>>,
}

impl AppState {
    pub fn new(store: Store, config: Config) -> Self {
        let (shutdown_tx, shutdown) = watch::channel(false);
        let body_budget =
            budget::MemoryBudget::new(config.limits.max_buffered.0, config.limits.body_idle_timeout.0);
        let config_rate_limit = config.rate_limit.clone();
        Self(Arc::new(SharedState {
            store,
            config: Arc::new(config),
            metrics: Arc::new(Metrics::default()),
            body_budget,
            writers: Arc::default(),
            shutdown,
            shutdown_tx: Arc::new(shutdown_tx),
            auth_failures: client_ip::AuthFailures::new(&config_rate_limit).map(Arc::new),
        }))
    }

    /// Reserves `bytes` of the budget of request bytes in memory, waiting
    /// for room. A reservation larger than the whole budget takes all of it.
    /// Read the body through [`Reservation::next`] (as [`read_body`] does),
    /// so that the share goes to others while the body stalls.
    ///
    /// # Errors
    /// 503 when the server is shutting down.
    pub async fn reserve_body(&self, bytes: u64) -> Result<Reservation, ApiError> {
        self.body_budget.reserve(bytes).await
    }

    /// Bytes of the body budget no request holds now.
    pub fn body_budget_free(&self) -> u64 {
        self.body_budget.free()
    }

    /// Reserves what a streamed upload body (a regular upload, a tus or
    /// IETF append) holds in memory, from the same budget as chunk and piece
    /// bodies: [`crate::store::Store::stream_buffer`], or the declared length
    /// when smaller. Waits for room, so that any number of concurrent
    /// uploads stays within `limits.max_buffered` plus a fixed overhead; the
    /// permit goes back when the request ends (an idle body ends at
    /// `limits.body_idle_timeout`).
    ///
    /// # Errors
    /// 503 when the server is shutting down.
    pub async fn reserve_stream(&self, declared: Option<u64>) -> Result<Reservation, ApiError> {
        let most = self.store.stream_buffer();
        self.reserve_body(declared.map_or(most, |d| d.min(most))).await
    }

    /// Starts the shutdown: long uploads stop (keeping what arrived) and
    /// requests waiting for body budget are answered 503.
    pub fn begin_shutdown(&self) {
        let _ = self.shutdown_tx.send(true);
        self.body_budget.close();
    }
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

/// The request's declared `Content-Length`, when there is one that follows
/// [`crate::decimal`]'s rule (`+5` is not a length).
pub fn content_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    crate::decimal::parse_u64(headers.get(axum::http::header::CONTENT_LENGTH)?.to_str().ok()?.trim()).ok()
}

/// Reads a whole (small) request body into memory `budget` reserved,
/// refusing more than `limit` bytes with 413 as soon as they arrive;
/// `expect` sizes the buffer up front.
///
/// # Errors
/// [`ApiError::PayloadTooLarge`]; [`ApiError::BadRequest`] when the body
/// breaks off, 408 when it goes idle (see [`Reservation::next`]).
pub async fn read_body(
    body: axum::body::Body,
    limit: usize,
    expect: usize,
    budget: &mut Reservation,
) -> Result<axum::body::Bytes, ApiError> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    // One buffer of the declared size, not a doubling series of copies; a
    // chunk-sized one is reused (see `store::buffer`).
    let mut buf = crate::store::buffer::take(expect.min(limit));
    // A chunk's body (`PUT /api/chunks/{hash}`) is written to disk from
    // here; other bodies only carry the padding (none below the pooled sizes).
    crate::store::objects::start_chunk(&mut buf, expect.min(limit));
    while let Some(frame) = budget.next(buf.held() as u64, stream.next()).await? {
        let frame = frame.map_err(|e| body_failed(&e, "reading the body"))?;
        if buf.held() + frame.len() > limit {
            return Err(ApiError::PayloadTooLarge(format!("the body may be at most {limit} bytes")));
        }
        buf.extend_from_slice(&frame);
    }
    let (from, len) = (buf.padding(), buf.len());
    Ok(buf.freeze(from..len))
}

/// What a protocol serves, by how its bodies are handled: `api` routes take
/// small JSON bodies (the JSON body limit, the API rate budget); `uploads`
/// routes stream large bodies (no body limit: each handler enforces its
/// protocol's own, the upload rate budget).
#[derive(Default)]
pub struct Routes {
    pub api: Router<AppState>,
    pub uploads: Router<AppState>,
}

impl Routes {
    /// Both groups of `self` and `other` together.
    #[must_use]
    pub fn merge(self, other: Routes) -> Routes {
        Routes { api: self.api.merge(other.api), uploads: self.uploads.merge(other.uploads) }
    }
}
