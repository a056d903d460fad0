//! The admin API: tokens, tenant quotas and backups. Every route needs the `admin` scope (the scope
//! table in [`crate::http::auth`]). The token's secret appears once, in the
//! answer that created it.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::config::Dur;
use crate::http::{ApiError, AppState, InPath, JsonBody, PathParam, Routes};
use crate::protocol::answers::JsonShape;
use crate::store::{BackupReport, Quota, Scopes, Store, Tenant, TokenId, TokenRecord};
use crate::wire::{
    BackupInfo, ErrorBody, ExpiresIn, QuotaInfo, TenantInfo, TokenInfo, TokenList, TokenRequest, UsageInfo,
    rfc3339,
};

/// A token's record as the API shows it (`token`: the whole secret, only
/// when just made).
pub fn token_info(rec: &TokenRecord, token: Option<String>) -> TokenInfo {
    TokenInfo {
        id: rec.id.to_string(),
        token,
        tenant: rec.tenant.to_string(),
        scopes: rec.scopes.names(),
        name: rec.name.clone(),
        created: rfc3339(rec.created_ms),
        expires_at: rec.expires_ms.map(rfc3339),
        revoked_at: rec.revoked_ms.map(rfc3339),
    }
}

/// The lifetime a request asks for: `None` for never.
///
/// # Errors
/// [`ApiError::BadRequest`] for an unreadable or zero lifetime.
pub fn lifetime(asked: Option<&ExpiresIn>, default: Duration) -> Result<Option<Duration>, ApiError> {
    let d = match asked {
        None => default,
        Some(ExpiresIn::Seconds(s)) => Duration::from_secs(*s),
        Some(ExpiresIn::Text(t)) if t.trim() == "never" => return Ok(None),
        Some(ExpiresIn::Text(t)) => {
            t.parse::<Dur>()
                .map_err(|e| {
                    ApiError::BadRequest(format!("expires_in: {e} (seconds, `90d`, `12h` or `never`)"))
                })?
                .0
        }
    };
    if d.is_zero() || d > Duration::from_secs(100 * 365 * 86_400) {
        return Err(ApiError::BadRequest("expires_in must be from 1 second to 100 years, or `never`".into()));
    }
    Ok(Some(d))
}

/// Make a token.
#[utoipa::path(post, path = "/api/admin/tokens", tag = "admin",
    request_body = TokenRequest,
    responses(
        (status = 201, description = "The token; `token` is its secret, shown only here", body = TokenInfo),
        (status = 400, description = "Bad tenant, scope or expiry, or malformed JSON; or the JSON does not have the request's shape", body = ErrorBody),
    ))]
pub async fn create_token(
    State(st): State<AppState>,
    JsonBody(req): JsonBody<TokenRequest>,
) -> Result<(StatusCode, Json<TokenInfo>), ApiError> {
    let tenant = Tenant::parse(&req.tenant)?;
    let scopes = Scopes::parse(&req.scopes)?;
    if req.name.as_ref().is_some_and(|n| n.chars().count() > 128) {
        return Err(ApiError::BadRequest("name may be at most 128 characters".into()));
    }
    let life = lifetime(req.expires_in.as_ref(), st.config.auth.token_expiry.0)?;
    let (rec, token) = st
        .store
        .blocking(move |s| {
            let expires = life.map(|d| s.now_ms() + d.as_millis() as u64);
            s.issue_token(tenant, scopes, expires, req.name)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(token_info(&rec, Some(token)))))
}

/// Every token, newest first, revoked ones included; never their secrets.
#[utoipa::path(get, path = "/api/admin/tokens", tag = "admin",
    responses(
        (status = 200, description = "The tokens", body = TokenList),
    ))]
pub async fn list_tokens(State(st): State<AppState>) -> Result<Json<TokenList>, ApiError> {
    let all = st.store.blocking(|s| s.tokens()).await?;
    Ok(Json(TokenList { tokens: all.iter().map(|t| token_info(t, None)).collect() }))
}

/// Revoke a token, and with it every link it signed. Effective from the
/// next request on.
#[utoipa::path(delete, path = "/api/admin/tokens/{id}", tag = "admin",
    params(("id" = String, Path, description = "Token id (a ULID)", pattern = r"^[0-7OoIiLl][0-9A-TV-Za-tv-z]{25}$")),
    responses(
        (status = 204, description = "Revoked (or already was)"),
        (status = 404, description = "No such token", body = ErrorBody),
    ))]
pub async fn revoke_token(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let not_found = || ApiError::NotFound(format!("token {id} not found"));
    let tid: TokenId = id.parse().map_err(|_| not_found())?;
    st.store.blocking(move |s| s.revoke_token(&tid)).await.map_err(|e| match e {
        crate::store::Error::InvalidInput(_) => not_found(),
        e => e.into(),
    })?;
    Ok(StatusCode::NO_CONTENT)
}

/// A tenant's name in a path (`{tenant}`); a malformed one is answered 400.
impl PathParam for Tenant {
    const NAME: &'static str = "tenant";
    const DESCRIPTION: &'static str = "Tenant name";
    const PATTERN: &'static str = "^[a-z0-9-]{1,63}$";
    const ANSWER: (u16, &'static str) = (400, "Not a tenant name");

    fn from_path(s: &str) -> Result<Tenant, ApiError> {
        Ok(Tenant::parse(s)?)
    }
}

/// A tenant's quota and usage as the API shows them.
///
/// # Errors
/// Metadata backend errors.
pub fn tenant_info(s: &Store, t: &Tenant) -> crate::store::Result<TenantInfo> {
    let q = s.quota(t)?;
    let u = s.usage(t)?;
    Ok(TenantInfo {
        tenant: t.to_string(),
        quota: QuotaInfo { bytes: q.bytes, files: q.files, pending: q.pending },
        usage: UsageInfo { bytes: u.bytes, files: u.files, pending: u.pending },
    })
}

/// A tenant's quota and what it uses (committed bytes and files; bytes in
/// its open upload sessions).
#[utoipa::path(get, path = "/api/admin/tenants/{tenant}", tag = "admin",
    params(InPath<Tenant>),
    responses(
        InPath::<Tenant>,
        (status = 200, description = "Quota and usage", body = TenantInfo),
    ))]
pub async fn get_tenant(
    State(st): State<AppState>,
    InPath(t): InPath<Tenant>,
) -> Result<Json<TenantInfo>, ApiError> {
    Ok(Json(st.store.blocking(move |s| tenant_info(s, &t)).await?))
}

/// Set a tenant's quota (replacing the one before): uploads and commits
/// that would pass a cap are refused with 507 `quota_exceeded` (tus
/// creation with 413). Files already stored stay when usage is above a
/// new cap. A quota with no caps removes it.
#[utoipa::path(put, path = "/api/admin/tenants/{tenant}/quota", tag = "admin",
    params(InPath<Tenant>),
    request_body = QuotaInfo,
    responses(
        InPath::<Tenant>,
        (status = 200, description = "The quota now, and usage", body = TenantInfo),
        (status = 400, description = "Not a tenant name, or malformed JSON", body = ErrorBody),
        JsonShape,
    ))]
pub async fn set_quota(
    State(st): State<AppState>,
    InPath(t): InPath<Tenant>,
    // An object only: serde would also read a struct of optional fields
    // from an array (`[null, null]`).
    JsonBody(body): JsonBody<serde_json::Map<String, serde_json::Value>>,
) -> Result<Json<TenantInfo>, ApiError> {
    let q: QuotaInfo = serde_json::from_value(serde_json::Value::Object(body))
        .map_err(|e| ApiError::Other { status: StatusCode::UNPROCESSABLE_ENTITY, message: e.to_string() })?;
    let q = Quota { bytes: q.bytes, files: q.files, pending: q.pending };
    Ok(Json(
        st.store
            .blocking(move |s| {
                s.set_quota(&t, &q)?;
                tenant_info(s, &t)
            })
            .await?,
    ))
}

/// Remove a tenant's quota (no caps).
#[utoipa::path(delete, path = "/api/admin/tenants/{tenant}/quota", tag = "admin",
    params(InPath<Tenant>),
    responses(
        InPath::<Tenant>,
        (status = 204, description = "Removed (or there was none)"),
    ))]
pub async fn delete_quota(
    State(st): State<AppState>,
    InPath(t): InPath<Tenant>,
) -> Result<StatusCode, ApiError> {
    st.store.blocking(move |s| s.set_quota(&t, &Quota::default())).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A backup as the API shows it.
pub fn backup_info(r: BackupReport) -> BackupInfo {
    BackupInfo {
        name: r.name,
        path: r.path.display().to_string(),
        objects: r.objects,
        object_bytes: r.object_bytes,
        copied_bytes: r.copied_bytes,
        uploads: r.uploads,
        seconds: r.seconds,
    }
}

/// Back up this store: a data dir in `<data_dir>/backups/<name>` that opens
/// as the store at this instant, recovered as after a crash there, with
/// its objects hard-linked, or copied where `backups/` is on another file
/// system (README, "Backing up one node"). Uploads and downloads go on
/// meanwhile; GC waits. Copy it elsewhere, then delete it: until then it
/// keeps every object it links.
#[utoipa::path(post, path = "/api/admin/backups", tag = "admin",
    responses(
        (status = 201, description = "Made; `path` is where, on the server", body = BackupInfo),
        (status = 409, description = "The store is on PostgreSQL or S3, which their own tools back up", body = ErrorBody),
        (status = 503, description = "A write held a pack file for 30 s: try again", body = ErrorBody),
    ))]
pub async fn create_backup(State(st): State<AppState>) -> Result<(StatusCode, Json<BackupInfo>), ApiError> {
    let report = st.store.blocking(|s| s.backup()).await?;
    tracing::info!(name = %report.name, objects = report.objects, seconds = report.seconds, "backup made");
    Ok((StatusCode::CREATED, Json(backup_info(report))))
}

/// This module's routes.
pub fn routes() -> Routes {
    use axum::routing::{delete, get};
    let api = axum::Router::new()
        .route("/api/admin/tokens", get(list_tokens).post(create_token))
        .route("/api/admin/tokens/{id}", delete(revoke_token))
        .route("/api/admin/backups", axum::routing::post(create_backup))
        .route("/api/admin/tenants/{tenant}", get(get_tenant))
        .route("/api/admin/tenants/{tenant}/quota", axum::routing::put(set_quota).delete(delete_quota));
    Routes { api, ..Default::default() }
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    create_token,
    list_tokens,
    revoke_token,
    get_tenant,
    set_quota,
    delete_quota,
    create_backup
))]
pub struct Doc;
