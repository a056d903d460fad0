//! Operations endpoints: health, readiness, metrics, store statistics.

use axum::Json;
use axum::extract::State;
use axum::http::{Uri, header};
use axum::response::IntoResponse;

use super::{ApiError, AppState};
use crate::wire::{ErrorBody, Health, StatsInfo};

/// Liveness: the server answers and its store is readable.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Healthy", body = Health),
              (status = 503, description = "The store cannot be read", body = ErrorBody)))]
pub async fn healthz(State(st): State<AppState>) -> Result<Json<Health>, ApiError> {
    st.store.blocking(|s| s.stats()).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() }))
}

/// Readiness: the store is open (with the crash recovery opening does:
/// syncing what a killed predecessor wrote, finishing the commits and
/// deletes it cut) and readable, and the server is not shutting down. While
/// the store opens, the server answers 503 here and everywhere else.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready for traffic", body = Health),
              (status = 503, description = "Starting, shutting down, or the store cannot be read", body = ErrorBody)))]
pub async fn readyz(State(st): State<AppState>) -> Result<Json<Health>, ApiError> {
    if *st.shutdown.borrow() {
        return Err(ApiError::NotReady("shutting down"));
    }
    st.store.blocking(|s| s.stats()).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(Health { status: "ready".into(), version: env!("CARGO_PKG_VERSION").into() }))
}

/// Prometheus metrics (text format).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String)))]
pub async fn metrics(State(st): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let (stats, open) = st.store.blocking(|s| Ok((s.stats()?, s.open_uploads()?))).await?;
    let body = st.metrics.render(&stats, &st.store.activity(), open);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body))
}

/// Store statistics: files, bytes, chunks, dedup ratio. An admin token
/// (and `local`/`open` mode) sees the whole store; any other token its
/// own tenant's files and the chunks they use.
#[utoipa::path(get, path = "/api/stats", tag = "operations",
    responses((status = 200, description = "Store statistics", body = StatsInfo)))]
pub async fn stats(State(st): State<AppState>, who: super::Principal) -> Result<Json<StatsInfo>, ApiError> {
    if who.is_admin() {
        return Ok(Json(st.store.blocking(|s| s.stats()).await?.into()));
    }
    // A tenant sees its own figures, never the store's (they would tell it
    // what other tenants hold).
    Ok(Json(st.store.blocking(move |s| s.tenant_stats(&who.tenant)).await?.into()))
}

/// Anything else: a JSON 404.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no endpoint at {}", uri.path()))
}

/// The operations endpoints: `/api/stats` (an API route), `/healthz`,
/// `/readyz` and `/metrics` (outside every limit, for probes and scrapers).
pub fn routes() -> (super::Routes, axum::Router<AppState>) {
    use axum::routing::get;
    let api =
        super::Routes { api: axum::Router::new().route("/api/stats", get(stats)), ..Default::default() };
    let plain = axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    (api, plain)
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(stats, healthz, readyz, metrics))]
pub struct Doc;
