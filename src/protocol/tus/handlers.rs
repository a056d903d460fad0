//! The tus handlers and the per-upload locks.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use super::headers::{Algorithm, Checksum, ConcatHeader, HeaderError, Metadata, parse_u64};
use crate::http::interim::Interim;
use crate::http::writers::Held;
use crate::http::{ApiError, AppState, Caller, Dialect};
use crate::protocol::digest::Hasher;
use crate::protocol::ietf;
use crate::protocol::resumable::{
    self, Expected, endpoint, header_str, owned, upload_id, upload_offset, while_held,
};
use crate::store::{self, Appender, Concat, FileName, NewStream, UploadId, UploadRecord};
use crate::wire::ErrorBody;

pub const TUS_VERSION: &str = "1.0.0";
pub const EXTENSIONS: &str =
    "creation,creation-with-upload,creation-defer-length,termination,checksum,expiration,concatenation";
const OCTET: &str = "application/offset+octet-stream";

static TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");

/// A tus error: an [`ApiError`] answered in tus's dialect (`Tus-Resumable`
/// on every answer, `Tus-Version` with 412).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct TusError(#[from] ApiError);

impl From<store::Error> for TusError {
    fn from(e: store::Error) -> Self {
        TusError(ApiError::Store(e))
    }
}

impl From<HeaderError> for TusError {
    fn from(e: HeaderError) -> Self {
        TusError(ApiError::BadRequest(e.0))
    }
}

/// tus's headers on error answers.
struct Tus;

impl Dialect for Tus {
    fn headers(&self, status: StatusCode, h: &mut HeaderMap) {
        h.insert(TUS_RESUMABLE.clone(), HeaderValue::from_static(TUS_VERSION));
        if status == StatusCode::PRECONDITION_FAILED {
            h.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
        }
    }
}

impl IntoResponse for TusError {
    fn into_response(self) -> Response {
        self.0.render(&Tus)
    }
}

type TusResult = Result<Response, TusError>;

/// 412 for a request without `Tus-Resumable: 1.0.0` ([`check_version`]).
#[derive(utoipa::IntoResponses)]
#[response(status = 412, description = "Missing or unsupported Tus-Resumable")]
pub struct TusVersion(pub ErrorBody);

fn check_version(h: &HeaderMap) -> Result<(), TusError> {
    match h.get(&TUS_RESUMABLE).and_then(|v| v.to_str().ok()) {
        Some(v) if v.trim() == TUS_VERSION => Ok(()),
        _ => Err(TusError(ApiError::PreconditionFailed(format!(
            "unsupported tus version; this server speaks {TUS_VERSION}"
        )))),
    }
}

fn http_date(ms: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_millis(ms))
}

/// The headers describing an upload's state (HEAD, and PATCH/POST answers).
fn state_headers(rec: &UploadRecord, base: &str, full: bool) -> HeaderMap {
    let mut h = HeaderMap::new();
    let put = |h: &mut HeaderMap, name: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(name, v);
        }
    };
    h.insert(TUS_RESUMABLE.clone(), HeaderValue::from_static(TUS_VERSION));
    let Some(s) = rec.stream.as_ref() else { return h };
    put(&mut h, "upload-offset", s.offset.to_string());
    if !s.complete {
        put(&mut h, "upload-expires", http_date(rec.expires_ms));
    }
    if let Some(f) = s.file {
        put(&mut h, "depot-file-id", f.to_string());
    }
    if full {
        match s.length {
            Some(l) => put(&mut h, "upload-length", l.to_string()),
            None => put(&mut h, "upload-defer-length", "1".into()),
        }
        if !s.metadata.is_empty() {
            put(&mut h, "upload-metadata", s.metadata.clone());
        }
        match &s.concat {
            Concat::None => {}
            Concat::Partial => put(&mut h, "upload-concat", "partial".into()),
            Concat::Final { parts } => put(
                &mut h,
                "upload-concat",
                ConcatHeader::Final(parts.iter().map(|p| p.to_string()).collect()).render(base),
            ),
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h
}

/// `OPTIONS`: what this server supports.
#[utoipa::path(options, path = "/api/tus/", tag = "tus",
    responses((status = 204, description = "Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm")))]
pub async fn options(State(st): State<AppState>) -> Response {
    let mut h = HeaderMap::new();
    h.insert(TUS_RESUMABLE.clone(), HeaderValue::from_static(TUS_VERSION));
    h.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    h.insert("tus-extension", HeaderValue::from_static(EXTENSIONS));
    h.insert("tus-max-size", HeaderValue::from(st.config.limits.max_file_size.0));
    h.insert("tus-checksum-algorithm", HeaderValue::from_static(Algorithm::ALL));
    (StatusCode::NO_CONTENT, h).into_response()
}

/// `POST`: create an upload (with `Upload-Length` or `Upload-Defer-Length: 1`,
/// optional `Upload-Metadata`, `Upload-Concat`), optionally with its first
/// bytes (creation-with-upload).
#[utoipa::path(post, path = "/api/tus/", tag = "tus",
    params(
        ("Tus-Resumable" = String, Header, pattern = r"^1\.0\.0$", description = "The tus version: 1.0.0 (anything else is answered 412)"),
        ("Upload-Length" = Option<u64>, Header, minimum = 0, description = "Total size (at most Tus-Max-Size)"),
        ("Upload-Defer-Length" = Option<String>, Header, description = "1: size given later"),
        ("Upload-Metadata" = Option<String>, Header, description = "key base64value pairs; filename, filetype"),
        ("Upload-Concat" = Option<String>, Header, description = "partial, or final;<url> <url>…"),
    ),
    responses(
        (status = 201, description = "Created; Location is the upload URL"),
        (status = 400, description = "Bad headers", body = ErrorBody),
        TusVersion,
        (status = 404, description = "A part of `Upload-Concat: final` is unknown", body = ErrorBody),
        (status = 413, description = "Larger than Tus-Max-Size", body = ErrorBody),
        (status = 415, description = "A complete upload's file type is rejected", body = ErrorBody),
    ))]
pub async fn create(
    Caller { st, who }: Caller,
    interim: Interim,
    headers: HeaderMap,
    body: Body,
) -> TusResult {
    if ietf::is_draft(&headers) {
        return Ok(ietf::create(st, who, interim, headers, body).await);
    }
    check_version(&headers)?;
    let base = endpoint(&st, &headers);
    let raw_meta = header_str(&headers, "upload-metadata").unwrap_or("").trim().to_string();
    let meta = Metadata::parse(&raw_meta)?;
    let name =
        meta.get(&["filename", "name"]).filter(|n| !n.trim().is_empty()).unwrap_or_else(|| "upload".into());
    // Checked once, here, for every kind of creation (concatenation too).
    let name = FileName::parse(&name)?;
    let declared = meta.get(&["filetype", "type", "contentType"]);
    let concat = header_str(&headers, "upload-concat").map(ConcatHeader::parse).transpose()?;

    if let Some(ConcatHeader::Final(ids)) = concat {
        let parts = ids.iter().map(|i| upload_id(i)).collect::<Result<Vec<_>, _>>()?;
        let out = st
            .store
            .blocking(move |s| s.concat_streams(&who.tenant, &parts, &name, declared.as_deref(), &raw_meta))
            .await?;
        return Ok(created(&out.record, &base));
    }

    let length = match (header_str(&headers, "upload-length"), header_str(&headers, "upload-defer-length")) {
        (Some(l), None) => Some(parse_u64("Upload-Length", l)?),
        (None, Some(d)) if d.trim() == "1" => None,
        (None, Some(_)) => return Err(ApiError::BadRequest("Upload-Defer-Length must be 1".into()).into()),
        (Some(_), Some(_)) => {
            return Err(
                ApiError::BadRequest("send Upload-Length or Upload-Defer-Length, not both".into()).into()
            );
        }
        (None, None) => {
            return Err(
                ApiError::BadRequest("Upload-Length or Upload-Defer-Length is required".into()).into()
            );
        }
    };
    let new = NewStream {
        tenant: who.tenant.clone(),
        length,
        name,
        declared_type: declared,
        metadata: raw_meta,
        partial: concat.is_some(),
    };
    let out = st.store.blocking(move |s| s.create_stream(new)).await.map_err(|e| match e {
        // tus answers an Upload-Length the server will not take with 413.
        e @ crate::store::Error::QuotaExceeded { .. } => ApiError::PayloadTooLarge(e.to_string()),
        e => ApiError::from(e),
    })?;
    let with_body =
        header_str(&headers, "content-type").is_some_and(|t| t.trim().eq_ignore_ascii_case(OCTET));
    if !with_body {
        return Ok(created(&out.record, &base));
    }
    // creation-with-upload: the body is the first PATCH.
    let id = out.record.id;
    let (guard, takeover) = st.writers.take(&id).await?;
    let (rec, _) = append(&st, &id, 0, &headers, body, (guard, takeover)).await?;
    Ok(created(&rec, &base))
}

fn created(rec: &UploadRecord, base: &str) -> Response {
    let mut h = state_headers(rec, base, false);
    if let Ok(v) = HeaderValue::from_str(&format!("{base}{}", rec.id)) {
        h.insert(header::LOCATION, v);
    }
    (StatusCode::CREATED, h).into_response()
}

/// `HEAD`: the upload's offset, length, metadata, expiry.
#[utoipa::path(head, path = "/api/tus/{id}", tag = "tus",
    params(("id" = String, Path, pattern = r"^[0-9a-fA-F]{32}$", description = "Upload id"), ("Tus-Resumable" = String, Header, pattern = r"^1\.0\.0$", description = "The tus version: 1.0.0 (anything else is answered 412)")),
    responses(
        (status = 200, description = "Upload-Offset, Upload-Length (or Upload-Defer-Length), Upload-Metadata, Upload-Expires, Depot-File-Id once complete"),
        (status = 404, description = "Unknown or terminated"),
        (status = 410, description = "Expired"),
        (status = 412, description = "Missing or unsupported Tus-Resumable"),
    ))]
pub async fn head(Caller { st, who }: Caller, Path(id): Path<String>, headers: HeaderMap) -> TusResult {
    if ietf::is_draft(&headers) {
        return Ok(ietf::offset(st, who, id, headers).await);
    }
    check_version(&headers)?;
    let id = upload_id(&id)?;
    let rec = while_held(&st, who, id, move |s| s.stream_upload(&id)).await?;
    Ok((StatusCode::OK, state_headers(&rec, &endpoint(&st, &headers), true)).into_response())
}

/// `PATCH`: append bytes at `Upload-Offset`.
#[utoipa::path(patch, path = "/api/tus/{id}", tag = "tus",
    params(
        ("id" = String, Path, pattern = r"^[0-9a-fA-F]{32}$", description = "Upload id"),
        ("Tus-Resumable" = String, Header, pattern = r"^1\.0\.0$", description = "The tus version: 1.0.0 (anything else is answered 412)"),
        ("Upload-Offset" = u64, Header, minimum = 0, description = "Must equal the upload's offset"),
        ("Upload-Checksum" = Option<String>, Header, description = "<algorithm> <base64 digest> of this body"),
        ("Upload-Length" = Option<u64>, Header, description = "Sets a deferred length"),
    ),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream"),
    responses(
        (status = 204, description = "Stored; Upload-Offset is the new offset (Depot-File-Id once the file exists)"),
        (status = 400, description = "Bad headers, or an unsupported checksum algorithm", body = ErrorBody),
        (status = 403, description = "PATCH on a final (concatenated) upload", body = ErrorBody),
        (status = 404, description = "Unknown or terminated", body = ErrorBody),
        (status = 409, description = "Upload-Offset is not the upload's offset", body = ErrorBody),
        (status = 410, description = "Expired", body = ErrorBody),
        TusVersion,
        (status = 413, description = "Past Upload-Length or the maximum size", body = ErrorBody),
        (status = 415, description = "Not application/offset+octet-stream, or the completed file's type is rejected", body = ErrorBody),
        (status = 423, description = "Ended by a newer request for the same upload (what arrived is kept)", body = ErrorBody),
        (status = 460, description = "Checksum mismatch: nothing of this body is kept", body = ErrorBody),
    ))]
pub async fn patch(
    Caller { st, who }: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> TusResult {
    if ietf::is_draft(&headers) {
        return Ok(ietf::append(st, who, id, headers, body).await);
    }
    check_version(&headers)?;
    let id = upload_id(&id)?;
    owned(&st, who, id).await?;
    if !header_str(&headers, "content-type").is_some_and(|t| t.trim().eq_ignore_ascii_case(OCTET)) {
        return Err(ApiError::UnsupportedMediaType(format!("a PATCH body must be {OCTET}")).into());
    }
    let offset = parse_u64("Upload-Offset", upload_offset(&headers)?)?;
    let held = st.writers.take(&id).await?;
    let rec = st.store.blocking(move |s| s.stream_upload(&id)).await?;
    if matches!(rec.stream.as_ref().map(|s| &s.concat), Some(Concat::Final { .. })) {
        return Err(TusError(ApiError::Forbidden("a final upload cannot be patched".into())));
    }
    if let Some(l) = header_str(&headers, "upload-length") {
        // Only a PATCH that will be taken may set the length.
        let at = rec.stream.as_ref().map_or(0, |s| s.offset);
        if at != offset {
            return Err(ApiError::Store(store::Error::Conflict(format!(
                "the upload is at offset {at}, not {offset}"
            )))
            .into());
        }
        let l = parse_u64("Upload-Length", l)?;
        st.store.blocking(move |s| s.set_stream_length(&id, l)).await?;
    }
    let (rec, _) = append(&st, &id, offset, &headers, body, held).await?;
    Ok((StatusCode::NO_CONTENT, state_headers(&rec, &endpoint(&st, &headers), false)).into_response())
}

/// `DELETE`: terminate the upload.
#[utoipa::path(delete, path = "/api/tus/{id}", tag = "tus",
    params(("id" = String, Path, pattern = r"^[0-9a-fA-F]{32}$", description = "Upload id"), ("Tus-Resumable" = String, Header, pattern = r"^1\.0\.0$", description = "The tus version: 1.0.0 (anything else is answered 412)")),
    responses(
        (status = 204, description = "Terminated"),
        (status = 404, description = "Unknown", body = ErrorBody),
        TusVersion,
    ))]
pub async fn terminate(Caller { st, who }: Caller, Path(id): Path<String>, headers: HeaderMap) -> TusResult {
    if ietf::is_draft(&headers) {
        return Ok(ietf::cancel(st, who, id, headers).await);
    }
    check_version(&headers)?;
    let id = upload_id(&id)?;
    while_held(&st, who, id, move |s| s.terminate_stream(&id)).await?;
    let mut h = HeaderMap::new();
    h.insert(TUS_RESUMABLE.clone(), HeaderValue::from_static(TUS_VERSION));
    Ok((StatusCode::NO_CONTENT, h).into_response())
}

/// Streams a request body into the upload at `offset`, then finishes: keeps
/// the bytes (all of them, or what arrived before a break) or, with a failed
/// checksum, none.
async fn append(
    st: &AppState,
    id: &UploadId,
    offset: u64,
    headers: &HeaderMap,
    body: Body,
    held: (Held, watch::Receiver<u64>),
) -> Result<(UploadRecord, Option<store::FileRecord>), TusError> {
    let checksum = header_str(headers, "upload-checksum").map(Checksum::parse).transpose()?;
    let expected = match checksum {
        None => None,
        Some(Checksum::Unsupported(a)) => {
            return Err(ApiError::BadRequest(format!(
                "checksum algorithm `{a}` is not supported ({})",
                Algorithm::ALL
            ))
            .into());
        }
        Some(Checksum::Known { algorithm, digest }) => {
            Some(Expected { hasher: Hasher::new(algorithm), digest })
        }
    };
    let id = *id;
    let app: Appender = st.store.blocking(move |s| s.begin_append(&id, offset)).await?;
    let pumped = resumable::pump(st, app, crate::http::content_length(headers), body, held, expected).await?;
    match pumped.stop {
        None if !pumped.digest_ok => {
            Err(TusError(ApiError::ChecksumMismatch("the body does not match Upload-Checksum".into())))
        }
        None => Ok((pumped.outcome.record, pumped.outcome.file)),
        Some(stop) => Err(stop.error().into()),
    }
}
