//! `POST /api/files/upload`: a whole file in one request, multipart field
//! `file` or a raw body with `?filename=`. The body streams through the
//! server-side chunker into the store; it is never held whole in memory or
//! in a temp file.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Query, Request};
use axum::http::{StatusCode, header};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};

use crate::http::{ApiError, AppState, Caller, Principal, UploadGuard};
use crate::protocol::answers::FileTooLarge;
use crate::protocol::file_info;
use crate::store::FileRecord;
use crate::wire::{ErrorBody, FileInfo};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The file's name, for a raw (non-multipart) body.
    pub filename: Option<String>,
}

/// The multipart form of a regular upload.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file; its part's filename names it.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Upload a whole file.
///
/// Multipart with a `file` field (its filename names the file), or the raw
/// bytes as the body with `?filename=`. The body is chunked and stored as it
/// streams; chunks the store already has are not written again.
#[utoipa::path(post, path = "/api/files/upload", tag = "uploads", params(UploadQuery),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Stored", body = FileInfo),
        (status = 400, description = "No file in the request", body = ErrorBody),
        FileTooLarge,
        (status = 415, description = "File type not allowed, or content contradicting its name", body = ErrorBody),
    ))]
pub async fn upload_file(
    Caller { st, who }: Caller,
    q: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Result<(StatusCode, [(header::HeaderName, String); 1], Json<FileInfo>), ApiError> {
    let Query(q) = q?;
    let max = st.config.limits.max_file_size.0;
    let declared_len = crate::http::content_length(req.headers());
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    // A multipart body carries a little framing beyond the file.
    let slack = if is_multipart { 64 * 1024 } else { 0 };
    if let Some(len) = declared_len.filter(|len| *len > max + slack) {
        return Err(ApiError::PayloadTooLarge(format!(
            "a body of {len} bytes exceeds the maximum file size of {max} bytes"
        )));
    }
    // The tenant's quota, before reading (the stream itself is then held
    // to what is left).
    let (t, file_len) = (who.tenant.clone(), declared_len.map(|n| n.saturating_sub(slack)));
    st.store.blocking(move |s| s.admit_upload(&t, file_len)).await?;
    let _budget = st.reserve_stream(declared_len).await?;
    let _active = UploadGuard::new(&st.metrics);
    let rec = if is_multipart {
        let mut mp = Multipart::from_request(crate::http::framing::guarded(req), &st).await?;
        let mut stored = None;
        while let Some(field) = mp.next_field().await? {
            let part = crate::protocol::form_part(field.headers());
            if part.name.as_deref() != Some("file") {
                continue;
            }
            let name = part
                .filename
                .or(q.filename.clone())
                .ok_or_else(|| ApiError::BadRequest("the `file` part has no filename".into()))?;
            let declared = field.content_type().map(str::to_string);
            stored = Some(ingest(&st, &who, field, name, declared).await?);
            break;
        }
        stored.ok_or_else(|| ApiError::BadRequest("multipart field `file` is missing".into()))?
    } else {
        let name = q.filename.clone().ok_or_else(|| {
            ApiError::BadRequest("send multipart with a `file` field, or the raw body with ?filename=".into())
        })?;
        let declared = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            // Neither says anything about the file: octet-stream is "bytes",
            // and form-urlencoded is what curl --data-binary sends by default.
            .filter(|t| {
                let t = t.trim().to_ascii_lowercase();
                !t.starts_with("application/octet-stream")
                    && !t.starts_with("application/x-www-form-urlencoded")
            })
            .map(str::to_string);
        ingest(&st, &who, req.into_body().into_data_stream(), name, declared).await?
    };
    let info = file_info(&rec);
    Ok((StatusCode::CREATED, [(header::LOCATION, info.url.clone())], Json(info)))
}

/// Feeds a body stream to the store's ingest on a blocking thread; commits
/// only if the whole body arrived.
async fn ingest<S, E>(
    st: &AppState,
    who: &Principal,
    body: S,
    name: String,
    declared: Option<String>,
) -> Result<FileRecord, ApiError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::error::Error + 'static,
{
    let name = crate::store::FileName::parse(&name)?;
    let (tx, mut rx) = mpsc::channel::<Bytes>(16);
    let store = st.store.clone();
    let tenant = who.tenant.clone();
    let worker = tokio::task::spawn_blocking(move || {
        let mut ing = store.ingest(tenant)?;
        while let Some(b) = rx.blocking_recv() {
            ing.push(&b)?;
        }
        Ok::<_, crate::store::Error>(ing)
    });
    let mut broken = None;
    let mut body = std::pin::pin!(body);
    while let Some(item) = body.next().await {
        match item {
            Ok(b) => {
                if tx.send(b).await.is_err() {
                    break; // the worker stopped: its error says why
                }
            }
            Err(e) => {
                broken = Some(crate::http::body_failed(&e, "the upload body broke off"));
                break;
            }
        }
    }
    drop(tx);
    let ing = worker.await.map_err(crate::store::Error::from)??;
    if let Some(e) = broken {
        return Err(e);
    }
    Ok(st.store.blocking(move |_| ing.finish(&name, declared.as_deref())).await?)
}
