//! Cross-cutting layers: per-client-IP rate limits (tower_governor, keyed
//! by [`super::client_ip::ClientIp`]), the JSON bodies' budget and coding, the
//! draining of unread upload bodies. CORS is [`super::cors`].

use std::time::Duration;

use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use tower_governor::GovernorError;
use tower_governor::governor::GovernorConfigBuilder;

use super::client_ip::ClientIp;
use super::encoding::Coding;
use super::error::ApiError;
use crate::config::RateLimitConfig;

/// Which budget a route draws from.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    Api,
    Upload,
}

/// The rate-limit layer of one budget (tower_governor, keyed by the
/// client's IP): answers 429 with `Retry-After` and a JSON body.
pub type RateLimit =
    tower_governor::GovernorLayer<ClientIp, governor::middleware::NoOpMiddleware, axum::body::Body>;

/// The rate limit for one budget, `None` when rate limiting is off.
pub fn rate_limit(cfg: &RateLimitConfig, budget: Budget) -> Option<RateLimit> {
    if !cfg.enabled {
        return None;
    }
    let (per_second, burst) = match budget {
        Budget::Api => (cfg.api_per_second, cfg.api_burst),
        Budget::Upload => (cfg.upload_per_second, cfg.upload_burst),
    };
    let period = Duration::from_nanos(1_000_000_000 / per_second.max(1));
    let config = GovernorConfigBuilder::default()
        .period(period)
        .burst_size(burst)
        .key_extractor(ClientIp::new(cfg))
        .finish()?;
    Some(tower_governor::GovernorLayer::new(config).error_handler(rate_limited))
}

fn rate_limited(e: GovernorError) -> Response {
    match e {
        GovernorError::TooManyRequests { wait_time, .. } => {
            ApiError::TooManyRequests { retry_after: wait_time.max(1) }.into_response()
        }
        other => ApiError::Unavailable(other.to_string()).into_response(),
    }
}

/// Middleware on the JSON API routes: a request body counts against the
/// memory budget like every other body. Its size (`Content-Length`, else
/// `limits.max_json_body`) is reserved before a byte is read, the body is
/// read here within the JSON limit (413 at once for a larger
/// `Content-Length`, or 415 when it is not JSON either; 413 as soon as a
/// chunked body passes it), and the share is
/// held until the handler has answered. A body in `Content-Encoding: zstd`
/// is decoded here, within the same limit and with its own share
/// ([`super::encoding`]): handlers see plain JSON. Bodies of methods whose
/// handlers never read one (GET, HEAD, OPTIONS, DELETE) are left unread.
pub async fn json_bodies(
    axum::extract::State(st): axum::extract::State<super::AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let limit = st.config.limits.max_json_body.0;
    let Some(size) = body_size(&req, limit) else {
        return next.run(req).await;
    };
    let coding = match super::encoding::coding(req.headers()) {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    // A body no JSON route would read is refused for what it is before its
    // size: a file posted to `/api/files` is not "too large for JSON".
    if size > limit && !super::extract::is_json(req.headers()) {
        return super::extract::not_json(req.method(), req.uri().path(), req.headers()).into_response();
    }
    if size > limit {
        return ApiError::PayloadTooLarge(format!(
            "a JSON body may be at most {limit} bytes, this one declares {size}"
        ))
        .into_response();
    }
    let mut budget = match st.reserve_body(size).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let (mut parts, body) = req.into_parts();
    let mut bytes = match super::read_body(body, limit as usize, size as usize, &mut budget).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if coding == Coding::Zstd {
        // The decoded bytes take the coded ones' place, and their share the
        // coded ones' share.
        match super::encoding::decode(&st, &bytes, limit as usize).await {
            Ok((raw, share)) => (bytes, budget) = (raw, share),
            Err(e) => return e.into_response(),
        }
        parts.headers.remove(header::CONTENT_ENCODING);
        parts.headers.insert(header::CONTENT_LENGTH, bytes.len().into());
    }
    let resp = next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await;
    drop(budget);
    resp
}

/// How many bytes a JSON request's body may take: its `Content-Length`;
/// `limit` when it has none but may have a body (chunked, or HTTP/2);
/// `None` when it has none or its method's handlers read none.
fn body_size(req: &axum::extract::Request, limit: u64) -> Option<u64> {
    use axum::http::{Version, header};
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE) {
        return None;
    }
    let h = req.headers();
    if h.contains_key(header::CONTENT_LENGTH) {
        // hyper lets no unparseable length through; were one to pass, it
        // would count as the limit.
        return Some(super::content_length(h).unwrap_or(limit)).filter(|&n| n > 0);
    }
    let http1 = matches!(req.version(), Version::HTTP_09 | Version::HTTP_10 | Version::HTTP_11);
    (h.contains_key(header::TRANSFER_ENCODING) || !http1).then_some(limit)
}

/// At most this much of an unread request body is read and dropped before
/// an error answer goes out ([`drain_unread`]).
const DRAIN_BYTES: u64 = 4 << 20;
/// And for at most this long.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Middleware on the upload routes: when a handler answers an error
/// (4xx/5xx) before it has read all of the request body (a quota or a
/// store that is away refuses at once), the rest of the body, up to 4 MiB
/// and 2 s, is read and dropped before the answer leaves. Otherwise the
/// connection is closed with the client's bytes unread, the kernel resets
/// it, and a client still sending (curl, reqwest) sees "broken pipe"
/// instead of the answer (nginx's lingering close does the same for the
/// same reason). A body past the bounds is left unread: the answer still
/// goes, and the connection closes. A body never read at all under
/// `Expect: 100-continue` is not drained: its client waits for the answer
/// before sending (hyper says 100 only when the body is read), so the
/// refusal goes without a 100, as RFC 9110 §10.1.1 intends.
pub async fn drain_unread(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use std::sync::{Arc, Mutex};
    let waits_for_100 = req
        .headers()
        .get(axum::http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let slot: Arc<Mutex<Option<axum::body::Body>>> = Arc::new(Mutex::new(None));
    let req = req.map(|b| {
        axum::body::Body::new(Returned { inner: Some(b), read: !waits_for_100, slot: slot.clone() })
    });
    let resp = next.run(req).await;
    if !(resp.status().is_client_error() || resp.status().is_server_error()) {
        return resp;
    }
    let unread = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(body) = unread {
        let drain = async {
            let mut stream = body.into_data_stream();
            let mut n = 0u64;
            while let Some(Ok(bytes)) = futures_util::StreamExt::next(&mut stream).await {
                n += bytes.len() as u64;
                if n > DRAIN_BYTES {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    }
    resp
}

/// A request body that, dropped before its end, hands what is left back
/// through `slot` (see [`drain_unread`]); one never read is handed back
/// only when `read` starts true (no `Expect: 100-continue`).
struct Returned {
    inner: Option<axum::body::Body>,
    /// Read from, or to be treated as such.
    read: bool,
    slot: std::sync::Arc<std::sync::Mutex<Option<axum::body::Body>>>,
}

impl http_body::Body for Returned {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.read = true;
        match self.inner.as_mut() {
            Some(b) => std::pin::Pin::new(b).poll_frame(cx),
            None => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.as_ref().map(http_body::Body::size_hint).unwrap_or_default()
    }
}

impl Drop for Returned {
    fn drop(&mut self) {
        let rest = self.inner.take().filter(|b| self.read && !http_body::Body::is_end_stream(b));
        if let Some(b) = rest {
            *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(b);
        }
    }
}
