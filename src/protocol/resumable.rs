//! The body pump every resumable protocol shares (tus today, the IETF
//! draft next): it streams a request body into the store's [`Appender`] on
//! a blocking worker, owns when bytes become durable (a durable point every
//! [`PERSIST_EVERY`] bytes and at the end), stops for a takeover, a shutdown,
//! a broken body or a body past the upload's length, and decides keep or
//! drop (a body with an expected digest is all-or-nothing). It returns a
//! neutral [`Pumped`]; each protocol maps it to its own answers. Also the
//! steps both protocols take before touching an upload: its id, its
//! owner, its writer slot ([`while_held`]) and the offset header.

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use super::digest::Hasher;
use crate::http::writers::Held;
use crate::http::{ApiError, AppState, Principal, UploadGuard};
use crate::store::{self, AppendOutcome, Appender, Store, UploadId};

/// A request makes its bytes durable (acknowledged) at least this often.
pub const PERSIST_EVERY: u64 = 16 << 20;

/// What the client says the body hashes to.
pub struct Expected {
    pub hasher: Hasher,
    pub digest: Vec<u8>,
}

/// Why a body stopped before its end.
#[derive(Debug)]
pub enum Stop {
    /// Another request took the upload.
    Takeover,
    /// The server is shutting down.
    Shutdown,
    /// The body broke off.
    Broken(String),
    /// The body sent nothing for `limits.body_idle_timeout`.
    Idle,
    /// It ran past the upload's length.
    TooLong,
}

impl Stop {
    /// The error answer for a pump that stopped early: what arrived up to
    /// the stop is kept in every case.
    pub fn error(self) -> ApiError {
        match self {
            Stop::Takeover => {
                ApiError::Locked("a newer request for this upload took over; what arrived is kept".into())
            }
            Stop::Shutdown => {
                ApiError::Unavailable("the server is shutting down; what arrived is kept".into())
            }
            Stop::Broken(e) => ApiError::BadRequest(format!("the body broke off: {e}")),
            Stop::Idle => {
                ApiError::RequestTimeout("the body sent nothing for too long; what arrived is kept".into())
            }
            Stop::TooLong => ApiError::PayloadTooLarge(
                "the body runs past the upload's length; the bytes up to it are kept".into(),
            ),
        }
    }
}

/// How a request's body ended.
pub struct Pumped {
    /// Where the upload stands now (and the file, if it completed).
    pub outcome: AppendOutcome,
    /// Why the body stopped early, if it did; what arrived is kept unless
    /// the body was all-or-nothing.
    pub stop: Option<Stop>,
    /// The body matched the expected digest (true when none was given).
    pub digest_ok: bool,
}

enum Msg {
    Data(Bytes),
    Persist,
    /// The request is over: keep its bytes or not, and say where that left
    /// the upload.
    Finish {
        keep: bool,
        reply: tokio::sync::oneshot::Sender<store::Result<AppendOutcome>>,
    },
}

/// Streams `body` into `app` (which holds the upload at its offset) while
/// `held` holds the upload's writer slot; `declared` is the body's
/// `Content-Length`, when sent.
///
/// # Errors
/// [`ApiError::PayloadTooLarge`] before reading when the declared length
/// runs past the upload's; store errors from the append.
pub async fn pump(
    st: &AppState,
    app: Appender,
    declared: Option<u64>,
    body: Body,
    (held, mut takeover): (Held, watch::Receiver<u64>),
    expected: Option<Expected>,
) -> Result<Pumped, ApiError> {
    let room = app.length().map(|l| l - app.offset());
    if let (Some(room), Some(declared)) = (room, declared) {
        if declared > room {
            return Err(ApiError::PayloadTooLarge(format!(
                "the body of {declared} bytes runs past the upload's length"
            )));
        }
    }
    let _budget = st.reserve_stream(declared).await?;
    let _active = UploadGuard::new(&st.metrics);
    let (mut hasher, want) = match expected {
        Some(e) => (Some(e.hasher), Some(e.digest)),
        None => (None, None),
    };
    let all_or_nothing = hasher.is_some();
    let (tx, mut rx) = mpsc::channel::<Msg>(16);
    // The worker owns the appender and the upload's slot: if this request
    // is dropped mid-body (the connection went away), it still keeps what
    // arrived before letting the upload go.
    let worker = tokio::task::spawn_blocking(move || {
        let _held = held;
        let mut app = app;
        let mut failed = None;
        while let Some(m) = rx.blocking_recv() {
            let step = match m {
                Msg::Data(b) if failed.is_none() => app.push(&b),
                Msg::Persist if failed.is_none() => app.persist(),
                Msg::Finish { keep, reply } => {
                    let out = match failed.take() {
                        Some(e) => Err(e),
                        None => app.finish(keep),
                    };
                    let _ = reply.send(out);
                    return;
                }
                _ => Ok(()),
            };
            if let Err(e) = step {
                failed = Some(e);
            }
        }
        if failed.is_none() && !all_or_nothing {
            if let Err(e) = app.finish(true) {
                tracing::warn!(error = %e, "keeping the bytes of an abandoned request failed");
            }
        }
    });

    let mut shutdown = st.shutdown.clone();
    let mut stream = body.into_data_stream();
    let mut received = 0u64;
    let mut since_persist = 0u64;
    let mut stop: Option<Stop> = None;
    loop {
        let frame = tokio::select! {
            f = stream.next() => f,
            _ = takeover.changed() => { stop = Some(Stop::Takeover); break; }
            _ = shutdown.changed() => { stop = Some(Stop::Shutdown); break; }
        };
        let mut bytes = match frame {
            None => break,
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                stop = Some(if crate::http::is_idle(&e) { Stop::Idle } else { Stop::Broken(e.to_string()) });
                break;
            }
        };
        if let Some(room) = room {
            if received + bytes.len() as u64 > room {
                bytes.truncate((room - received) as usize);
                stop = Some(Stop::TooLong);
            }
        }
        received += bytes.len() as u64;
        since_persist += bytes.len() as u64;
        if let Some(h) = hasher.as_mut() {
            h.update(&bytes);
        }
        if !bytes.is_empty() && tx.send(Msg::Data(bytes)).await.is_err() {
            break;
        }
        if stop.is_some() {
            break;
        }
        if !all_or_nothing && since_persist >= PERSIST_EVERY {
            since_persist = 0;
            if tx.send(Msg::Persist).await.is_err() {
                break;
            }
        }
    }
    let digest_ok = match (hasher, want) {
        (Some(h), Some(want)) => stop.is_none() && h.finish() == want,
        _ => true,
    };
    let keep = digest_ok && !(all_or_nothing && stop.is_some());
    let (reply, answer) = tokio::sync::oneshot::channel();
    let _ = tx.send(Msg::Finish { keep, reply }).await;
    drop(tx);
    let outcome = match answer.await {
        Ok(r) => r?,
        Err(_) => return Err(ApiError::Store(store::Error::Task("the upload worker stopped".into()))),
    };
    worker.await.map_err(store::Error::from)?;
    Ok(Pumped { outcome, stop, digest_ok })
}

/// The absolute URL of the tus endpoint (also the IETF draft's upload base),
/// from the request's Host (and, when the configuration trusts a proxy, its
/// forwarded scheme and host).
pub fn endpoint(st: &AppState, h: &HeaderMap) -> String {
    // Behind a configured proxy: its forwarded scheme and host (a client
    // that sends them itself only changes the URL it is given).
    let trust = !st.config.rate_limit.trusted_proxies.is_empty();
    let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
    let host = trust.then(|| text("x-forwarded-host")).flatten().or_else(|| text("host"));
    let scheme = trust.then(|| text("x-forwarded-proto")).flatten().unwrap_or("http");
    match host {
        Some(host) => format!("{scheme}://{host}/api/tus/"),
        None => "/api/tus/".to_string(),
    }
}

/// A header's value as text (`None` when absent or not visible ASCII).
pub fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// `Upload-Offset`'s text, which every append must carry.
///
/// # Errors
/// [`ApiError::BadRequest`] when it is missing.
pub fn upload_offset(h: &HeaderMap) -> Result<&str, ApiError> {
    header_str(h, "upload-offset").ok_or_else(|| ApiError::BadRequest("Upload-Offset is required".into()))
}

/// An upload's id from a path; a malformed one is simply not found.
///
/// # Errors
/// [`ApiError::NotFound`].
pub fn upload_id(s: &str) -> Result<UploadId, ApiError> {
    s.parse().map_err(|_| ApiError::NotFound(format!("upload {s} not found")))
}

/// Another tenant's upload is answered as an unknown one, before anything
/// touches it (taking its writer slot would end its owner's request).
///
/// # Errors
/// 404 for an upload `who` does not own (or that does not exist).
pub async fn owned(st: &AppState, who: Principal, id: UploadId) -> Result<(), ApiError> {
    Ok(st.store.blocking(move |s| s.check_owner(&who.view, &id)).await?)
}

/// Runs `op` on `who`'s upload `id` while holding its writer slot: a stale
/// request still holding the upload is ended first, so that what `op`
/// reads (the offset) is final and what it changes (termination) races no
/// append.
///
/// # Errors
/// As [`owned`], then `op`'s.
pub async fn while_held<T, F>(st: &AppState, who: Principal, id: UploadId, op: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> store::Result<T> + Send + 'static,
{
    owned(st, who, id).await?;
    let (guard, _) = st.writers.take(&id).await?;
    let done = st.store.blocking(op).await;
    drop(guard);
    Ok(done?)
}
