//! Cross-cutting layers: CORS from the configuration, per-client-IP rate
//! limits (tower_governor, keyed by [`super::client_ip::ClientIp`]).

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use tower_governor::GovernorError;
use tower_governor::governor::GovernorConfigBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::client_ip::ClientIp;
use super::error::ApiError;
use crate::config::{CorsConfig, RateLimitConfig};

/// The CORS layer the configuration describes; `None` when no origin is
/// allowed.
pub fn cors(cfg: &CorsConfig, loopback_only: bool) -> Option<CorsLayer> {
    if cfg.allowed_origins.is_empty() {
        return None;
    }
    let origins = if loopback_only {
        // `local` mode: web pages of this machine only, whatever the list says.
        AllowOrigin::predicate(|o: &HeaderValue, _| o.to_str().is_ok_and(super::auth::is_loopback_origin))
    } else if cfg.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(cfg.allowed_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let methods: Vec<Method> = cfg.allowed_methods.iter().filter_map(|m| m.parse().ok()).collect();
    let headers: Vec<HeaderName> = cfg.allowed_headers.iter().filter_map(|h| h.parse().ok()).collect();
    let exposed: Vec<HeaderName> = cfg.exposed_headers.iter().filter_map(|h| h.parse().ok()).collect();
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods(methods)
            .allow_headers(headers)
            .expose_headers(exposed)
            .max_age(cfg.max_age.0),
    )
}

/// Which budget a route draws from.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    Api,
    Upload,
}

/// The rate-limit layer of one budget (tower_governor, keyed by the
/// client's IP): answers 429 with `Retry-After` and a JSON body. `None`
/// when rate limiting is off.
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
/// `Content-Length`, as soon as a chunked body passes it), and the share is
/// held until the handler has answered. Bodies of methods whose handlers
/// never read one (GET, HEAD, OPTIONS, DELETE) are left unread.
pub async fn json_bodies(
    axum::extract::State(st): axum::extract::State<super::AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let limit = st.config.limits.max_json_body.0;
    let Some(size) = body_size(&req, limit) else {
        return next.run(req).await;
    };
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
    let (parts, body) = req.into_parts();
    let bytes = match super::read_body(body, limit as usize, size as usize, &mut budget).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
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
