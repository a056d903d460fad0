//! Cross-cutting layers: CORS from the configuration, per-client-IP rate
//! limits (tower_governor, keyed by [`super::client_ip::ClientIp`]).

use std::time::Duration;

use axum::Router;
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

/// Puts a rate limit for one budget on `router`, answering 429 with
/// `Retry-After` and a JSON body; unchanged when rate limiting is off.
pub fn rate_limit<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    cfg: &RateLimitConfig,
    budget: Budget,
) -> Router<S> {
    if !cfg.enabled {
        return router;
    }
    let (per_second, burst) = match budget {
        Budget::Api => (cfg.api_per_second, cfg.api_burst),
        Budget::Upload => (cfg.upload_per_second, cfg.upload_burst),
    };
    let period = Duration::from_nanos(1_000_000_000 / per_second.max(1));
    let Some(config) = GovernorConfigBuilder::default()
        .period(period)
        .burst_size(burst)
        .key_extractor(ClientIp::new(cfg))
        .finish()
    else {
        return router;
    };
    router.layer(tower_governor::GovernorLayer::new(config).error_handler(rate_limited))
}

fn rate_limited(e: GovernorError) -> Response {
    match e {
        GovernorError::TooManyRequests { wait_time, .. } => {
            ApiError::TooManyRequests { retry_after: wait_time.max(1) }.into_response()
        }
        other => ApiError::Unavailable(other.to_string()).into_response(),
    }
}
