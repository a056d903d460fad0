//! The draft's handlers. They are reached through the tus routes (same
//! paths, same authentication and ownership checks) when a request names an
//! interop version.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use super::headers::{Digests, HeaderError, Interop, ProblemKind, parse_int, upload_limit};
use crate::http::interim::Interim;
use crate::http::writers::Held;
use crate::http::{ApiError, AppState, Dialect, Principal};
use crate::protocol::digest::Hasher;
use crate::protocol::resumable::{
    self, Expected, Stop, endpoint, header_str, owned, upload_id, upload_offset, while_held,
};
use crate::protocol::tus::headers::Metadata;
use crate::store::{self, FileName, NewStream, UploadId, UploadRecord};

static INTEROP: HeaderName = HeaderName::from_static("upload-draft-interop-version");
const PARTIAL: &str = "application/partial-upload";
/// The draft's informational status: the upload's URL, before the body ends.
const UPLOAD_RESUMPTION_SUPPORTED: StatusCode = match StatusCode::from_u16(104) {
    Ok(s) => s,
    Err(_) => panic!("104 is a status code"),
};

/// Whether a request on the tus endpoint speaks the draft.
pub fn is_draft(h: &HeaderMap) -> bool {
    h.contains_key(&INTEROP)
}

/// An error answer: one of the draft's problem types, or the API's table.
enum DraftError {
    Problem(ProblemKind, String),
    Api(ApiError),
}

impl From<ApiError> for DraftError {
    fn from(e: ApiError) -> Self {
        DraftError::Api(e)
    }
}

impl From<store::Error> for DraftError {
    fn from(e: store::Error) -> Self {
        DraftError::Api(ApiError::Store(e))
    }
}

impl From<HeaderError> for DraftError {
    fn from(e: HeaderError) -> Self {
        DraftError::Api(ApiError::BadRequest(e.0))
    }
}

/// The interop version on every answer.
struct Draft(Option<Interop>);

impl Dialect for Draft {
    fn headers(&self, _status: StatusCode, h: &mut HeaderMap) {
        if let Some(v) = self.0 {
            h.insert(INTEROP.clone(), HeaderValue::from(u16::from(v.number())));
        }
    }
}

impl DraftError {
    fn render(self, v: Option<Interop>) -> Response {
        match self {
            DraftError::Api(e) => e.render(&Draft(v)),
            DraftError::Problem(kind, detail) => {
                let status = StatusCode::from_u16(kind.status()).unwrap_or(StatusCode::BAD_REQUEST);
                let mut resp = (status, kind.body(&detail)).into_response();
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
                Draft(v).headers(status, resp.headers_mut());
                resp
            }
        }
    }
}

type DraftResult = Result<Response, DraftError>;

fn finish(v: Option<Interop>, r: DraftResult) -> Response {
    match r {
        Ok(mut resp) => {
            Draft(v).headers(resp.status(), resp.headers_mut());
            resp
        }
        Err(e) => e.render(v),
    }
}

fn version(h: &HeaderMap) -> Result<Interop, HeaderError> {
    Interop::parse(header_str(h, INTEROP.as_str()).unwrap_or(""))
}

/// `Upload-Offset`, `Upload-Complete`, `Upload-Length`, `Upload-Limit`
/// (and the file's id once it exists).
fn state_headers(st: &AppState, v: Interop, rec: &UploadRecord) -> HeaderMap {
    let mut h = HeaderMap::new();
    let Some(s) = rec.stream.as_ref() else { return h };
    h.insert("upload-offset", HeaderValue::from(s.offset));
    h.insert(v.complete_field(), HeaderValue::from_static(v.complete_value(s.complete)));
    if let Some(l) = s.length {
        h.insert("upload-length", HeaderValue::from(l));
    }
    if let Some(limit) = limit_header(st, rec) {
        h.insert("upload-limit", limit);
    }
    if let Some(f) = s.file {
        if let Ok(f) = HeaderValue::from_str(&f.to_string()) {
            h.insert("depot-file-id", f);
        }
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h
}

/// `Upload-Limit`: the maximum size, and while the upload is open, the
/// seconds until it expires.
fn limit_header(st: &AppState, rec: &UploadRecord) -> Option<HeaderValue> {
    let open = rec.stream.as_ref().is_some_and(|s| !s.complete);
    let expires = open.then(|| rec.expires_ms.saturating_sub(st.store.now_ms()) / 1000);
    HeaderValue::from_str(&upload_limit(st.config.limits.max_file_size.0, expires)).ok()
}

/// What a request says about the upload's end: complete with this body,
/// and the lengths it names.
struct Ends {
    complete: bool,
    /// `Upload-Length`, when sent.
    declared: Option<u64>,
    /// The body's `Content-Length`, when sent.
    body: Option<u64>,
}

impl Ends {
    fn read(v: Interop, h: &HeaderMap) -> Result<Self, DraftError> {
        let complete = v.read_complete(header_str(h, v.complete_field()))?.ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{} is required",
                if v.number() == 3 { "Upload-Incomplete" } else { "Upload-Complete" }
            ))
        })?;
        let declared = header_str(h, "upload-length").map(|l| parse_int("Upload-Length", l)).transpose()?;
        Ok(Ends { complete, declared, body: crate::http::content_length(h) })
    }

    /// The upload's length implied by a request appending at `offset`, or
    /// the inconsistency.
    fn length(&self, offset: u64) -> Result<Option<u64>, DraftError> {
        let by_body = self.complete.then_some(self.body).flatten().map(|b| offset + b);
        match (by_body, self.declared) {
            (Some(a), Some(b)) if a != b => Err(DraftError::Problem(
                ProblemKind::InconsistentLength,
                format!("Upload-Length says {b} bytes, the complete body ends at {a}"),
            )),
            (a, b) => Ok(a.or(b)),
        }
    }
}

/// `POST /api/tus/`: create an upload, with its first bytes or all of them.
///
/// Once the upload exists, and before its body is read, a
/// `104 (Upload Resumption Supported)` gives the client the upload's URL
/// (on HTTP/1.1; see [`Interim`]), so that a cut in the body can resume.
pub async fn create(
    st: AppState,
    who: Principal,
    interim: Interim,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let v = version(&headers).ok();
    finish(v, create_upload(st, who, interim, headers, body).await)
}

async fn create_upload(
    st: AppState,
    who: Principal,
    interim: Interim,
    headers: HeaderMap,
    body: Body,
) -> DraftResult {
    let v = version(&headers)?;
    let ends = Ends::read(v, &headers)?;
    let length = ends.length(0)?;
    // The name and type: from Content-Disposition and Content-Type as the
    // draft's clients send them, or from tus's Upload-Metadata, which
    // tus-js-client sends in its draft modes too.
    let raw_meta = header_str(&headers, "upload-metadata").unwrap_or("").trim().to_string();
    let meta = Metadata::parse(&raw_meta)?;
    let form = crate::protocol::form_part(&headers);
    let name = form
        .filename
        .or_else(|| meta.get(&["filename", "name"]))
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "upload".into());
    let name = FileName::parse(&name)?;
    let declared_type = header_str(&headers, "content-type")
        .map(|t| t.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && t != PARTIAL && t != "application/octet-stream")
        .or_else(|| meta.get(&["filetype", "type", "contentType"]));
    let new = NewStream {
        tenant: who.tenant.clone(),
        length,
        name,
        declared_type,
        metadata: raw_meta,
        partial: false,
    };
    let out = st.store.blocking(move |s| s.create_stream(new)).await?;
    let id = out.record.id;
    let location = HeaderValue::from_str(&format!("{}{id}", endpoint(&st, &headers))).ok();
    let held = st.writers.take(&id).await?;
    let mut early = HeaderMap::new();
    if let Some(loc) = &location {
        early.insert(header::LOCATION, loc.clone());
    }
    early.insert(INTEROP.clone(), HeaderValue::from(u16::from(v.number())));
    if let Some(limit) = limit_header(&st, &out.record) {
        early.insert("upload-limit", limit);
    }
    interim.send(UPLOAD_RESUMPTION_SUPPORTED, &early);
    let rec = append_body(&st, v, &id, 0, &ends, &headers, body, held).await?;
    let mut h = state_headers(&st, v, &rec);
    if let Some(loc) = location {
        h.insert(header::LOCATION, loc);
    }
    Ok((StatusCode::CREATED, h).into_response())
}

/// `HEAD /api/tus/{id}`: where the upload stands.
pub async fn offset(st: AppState, who: Principal, id: String, headers: HeaderMap) -> Response {
    let v = version(&headers).ok();
    finish(v, offset_of(st, who, id, headers).await)
}

async fn offset_of(st: AppState, who: Principal, id: String, headers: HeaderMap) -> DraftResult {
    let v = version(&headers)?;
    let id = upload_id(&id)?;
    let rec = while_held(&st, who, id, move |s| s.stream_upload(&id)).await?;
    Ok((StatusCode::NO_CONTENT, state_headers(&st, v, &rec)).into_response())
}

/// `PATCH /api/tus/{id}`: append at `Upload-Offset`.
pub async fn append(st: AppState, who: Principal, id: String, headers: HeaderMap, body: Body) -> Response {
    let v = version(&headers).ok();
    finish(v, append_to(st, who, id, headers, body).await)
}

async fn append_to(st: AppState, who: Principal, id: String, headers: HeaderMap, body: Body) -> DraftResult {
    let v = version(&headers)?;
    let id = upload_id(&id)?;
    owned(&st, who, id).await?;
    let content_type = header_str(&headers, "content-type").unwrap_or("");
    if v.needs_partial_upload_type()
        && !content_type.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case(PARTIAL)
    {
        return Err(ApiError::UnsupportedMediaType(format!("an append's body must be {PARTIAL}")).into());
    }
    let offset = parse_int("Upload-Offset", upload_offset(&headers)?)?;
    let ends = Ends::read(v, &headers)?;
    let held = st.writers.take(&id).await?;
    let rec = st.store.blocking(move |s| s.stream_upload(&id)).await?;
    let s = rec.stream.as_ref().ok_or_else(|| ApiError::NotFound(format!("upload {id} not found")))?;
    if s.complete {
        return Err(DraftError::Problem(ProblemKind::CompletedUpload, "the upload is complete".into()));
    }
    if s.offset != offset {
        return Err(DraftError::Problem(
            ProblemKind::MismatchingOffset { expected: s.offset, provided: offset },
            format!("the upload is at offset {}, not {offset}", s.offset),
        ));
    }
    let rec = append_body(&st, v, &id, offset, &ends, &headers, body, held).await?;
    Ok((StatusCode::NO_CONTENT, state_headers(&st, v, &rec)).into_response())
}

/// `DELETE /api/tus/{id}`: cancel the upload.
pub async fn cancel(st: AppState, who: Principal, id: String, headers: HeaderMap) -> Response {
    let v = version(&headers).ok();
    finish(v, cancel_upload(st, who, id, headers).await)
}

async fn cancel_upload(st: AppState, who: Principal, id: String, headers: HeaderMap) -> DraftResult {
    version(&headers)?;
    let id = upload_id(&id)?;
    while_held(&st, who, id, move |s| s.terminate_stream(&id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The digest to check a body against: `Content-Digest` always (it covers
/// this request's content), `Repr-Digest` only when this request carries
/// the whole representation (from offset 0 to completion).
fn expected_digest(h: &HeaderMap, whole: bool) -> Result<Option<Expected>, DraftError> {
    let mut fields = vec!["content-digest"];
    if whole {
        fields.push("repr-digest");
    }
    for name in fields {
        if let Some(value) = header_str(h, name) {
            if let Some((a, digest)) = Digests::parse(name, value)?.best() {
                return Ok(Some(Expected { hasher: Hasher::for_field(*a), digest: digest.clone() }));
            }
        }
    }
    Ok(None)
}

/// Fixes the upload's length when the request implies it, streams the body
/// in and, for a complete body of unannounced size, closes the upload at
/// what arrived.
#[allow(clippy::too_many_arguments)]
async fn append_body(
    st: &AppState,
    _v: Interop,
    id: &UploadId,
    offset: u64,
    ends: &Ends,
    headers: &HeaderMap,
    body: Body,
    held: (Held, watch::Receiver<u64>),
) -> Result<UploadRecord, DraftError> {
    let id = *id;
    let rec = st.store.blocking(move |s| s.stream_upload(&id)).await?;
    let known = rec.stream.as_ref().and_then(|s| s.length);
    match (ends.length(offset)?, known) {
        (Some(want), Some(have)) if want != have => {
            return Err(DraftError::Problem(
                ProblemKind::InconsistentLength,
                format!("the upload's length is {have}; this request implies {want}"),
            ));
        }
        (Some(want), None) => {
            st.store.blocking(move |s| s.set_stream_length(&id, want)).await?;
        }
        _ => {}
    }
    let whole = offset == 0 && ends.complete;
    let expected = expected_digest(headers, whole)?;
    let app = st.store.blocking(move |s| s.begin_append(&id, offset)).await?;
    let pumped = resumable::pump(st, app, crate::http::content_length(headers), body, held, expected).await?;
    let rec = match pumped.stop {
        None if !pumped.digest_ok => {
            return Err(ApiError::BadRequest(
                "the body does not match its digest; nothing of it was kept".into(),
            )
            .into());
        }
        None => pumped.outcome.record,
        Some(Stop::TooLong) => {
            return Err(DraftError::Problem(
                ProblemKind::InconsistentLength,
                "the body runs past the upload's length; the bytes up to it are kept".into(),
            ));
        }
        Some(stop) => return Err(stop.error().into()),
    };
    let s = rec.stream.as_ref();
    if ends.complete && s.is_some_and(|s| s.length.is_none()) {
        // A complete body without Content-Length: the upload ends here.
        let end = s.map_or(0, |s| s.offset);
        st.store.blocking(move |s| s.set_stream_length(&id, end)).await?;
        let held = st.writers.take(&id).await?;
        let app = st.store.blocking(move |s| s.begin_append(&id, end)).await?;
        let pumped = resumable::pump(st, app, Some(0), Body::empty(), held, None).await?;
        return Ok(pumped.outcome.record);
    }
    Ok(rec)
}
