//! `ApiError`: the one table from errors to HTTP status, machine-readable
//! kind and headers, and the one renderer of `{code, error, message}`
//! bodies. 5xx bodies are generic; the detail goes to the log. A protocol
//! with its own rules for error answers (tus's headers, the browser
//! libraries' 415) implements [`Dialect`] and renders through
//! [`ApiError::render`]: it plugs into the table, never around it.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::store;
use crate::wire::ErrorBody;

/// Everything an endpoint can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("{0}")]
    BadRequest(String),
    /// No credentials, or ones that do not work (unknown, wrong, expired,
    /// revoked: all alike). Answered with `WWW-Authenticate: Bearer`.
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("range not satisfiable for a file of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    /// Another request holds the resource; retrying later can succeed.
    #[error("{0}")]
    Locked(String),
    #[error("too many requests: retry in {retry_after} s")]
    TooManyRequests { retry_after: u64 },
    #[error("{0}")]
    HeadersTooLarge(String),
    /// The body does not match the checksum the client sent with it
    /// (tus's checksum extension answers 460).
    #[error("{0}")]
    ChecksumMismatch(String),
    #[error("{0}")]
    Unavailable(String),
    /// The request body went idle past `limits.body_idle_timeout`.
    #[error("{0}")]
    RequestTimeout(String),
    /// The server is starting (the store is opening) or shutting down: an
    /// expected state, not a failure, so the body says which and the log
    /// stays quiet.
    #[error("{0}")]
    NotReady(&'static str),
    /// An error answer produced below the handlers (the router, an
    /// extractor) whose status no other variant names.
    #[error("{message}")]
    Other { status: StatusCode, message: String },
}

/// tus's checksum-mismatch status (tus 1.0.0, checksum extension).
const CHECKSUM_MISMATCH: u16 = 460;

impl ApiError {
    /// The one table: each error's status and machine-readable kind.
    pub fn class(&self) -> (StatusCode, &'static str) {
        use store::Error as E;
        match self {
            ApiError::Store(e) => match e {
                E::FileNotFound(_) | E::UploadNotFound(_) | E::ChunkNotFound(_) => {
                    (StatusCode::NOT_FOUND, "not_found")
                }
                E::UploadExpired(_) => (StatusCode::GONE, "expired"),
                E::MissingChunks(_) => (StatusCode::CONFLICT, "missing_chunks"),
                E::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
                E::TakenOver(_) => (StatusCode::LOCKED, "locked"),
                E::HashMismatch { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "hash_mismatch"),
                E::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
                E::InvalidInput(_) => (StatusCode::BAD_REQUEST, "invalid_input"),
                E::TypeRejected(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "type_rejected"),
                E::Locked(_) | E::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
                E::InsufficientStorage { .. } => (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage"),
                E::QuotaExceeded { .. } => (StatusCode::INSUFFICIENT_STORAGE, "quota_exceeded"),
                // The disk filled anyway (another writer, a reserve of 0).
                E::Io(e) if e.kind() == std::io::ErrorKind::StorageFull => {
                    (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage")
                }
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            },
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::PreconditionFailed(_) => (StatusCode::PRECONDITION_FAILED, "precondition_failed"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::RangeNotSatisfiable { .. } => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable")
            }
            ApiError::Locked(_) => (StatusCode::LOCKED, "locked"),
            ApiError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::HeadersTooLarge(_) => {
                (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large")
            }
            ApiError::ChecksumMismatch(_) => (
                StatusCode::from_u16(CHECKSUM_MISMATCH).unwrap_or(StatusCode::BAD_REQUEST),
                "checksum_mismatch",
            ),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "timeout"),
            ApiError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            ApiError::Other { status, .. } if status.is_server_error() => (*status, "internal"),
            ApiError::Other { status, .. } => (*status, "error"),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.class().0
    }

    pub fn kind(&self) -> &'static str {
        self.class().1
    }

    /// The error for an answer made below the handlers, from its status
    /// and text: through the same table as every other error.
    pub fn from_status(status: StatusCode, message: String) -> ApiError {
        match status {
            StatusCode::BAD_REQUEST => ApiError::BadRequest(message),
            StatusCode::UNAUTHORIZED => ApiError::Unauthorized(message),
            StatusCode::FORBIDDEN => ApiError::Forbidden(message),
            StatusCode::NOT_FOUND => ApiError::NotFound(message),
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed(message),
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(message),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(message),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ApiError::HeadersTooLarge(message),
            StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable(message),
            StatusCode::REQUEST_TIMEOUT => ApiError::RequestTimeout(message),
            status => ApiError::Other { status, message },
        }
    }

    /// The body this error renders to.
    pub fn body(&self) -> ErrorBody {
        let (status, kind) = self.class();
        // Expected states (starting, out of space) say what they are; other
        // server errors are logged and told apart only by the log.
        let expected = matches!(self, ApiError::NotReady(_) | ApiError::Store(store::Error::Unavailable(_)))
            || matches!(kind, "insufficient_storage" | "quota_exceeded");
        if let ApiError::Store(store::Error::Unavailable(_)) = self {
            tracing::warn!(error = %self, "request answered 503");
        }
        let message = if status.is_server_error() && !expected {
            tracing::error!(error = %self, "request failed");
            "internal error; the server log has the details".to_string()
        } else {
            self.to_string()
        };
        ErrorBody {
            code: status.as_u16(),
            error: kind.to_string(),
            message,
            missing: match self {
                ApiError::Store(store::Error::MissingChunks(m)) => Some(m.clone()),
                _ => None,
            },
        }
    }

    /// Headers the error itself calls for.
    fn headers(&self, h: &mut HeaderMap) {
        match self {
            ApiError::RangeNotSatisfiable { size } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    h.insert(header::CONTENT_RANGE, v);
                }
            }
            ApiError::TooManyRequests { retry_after } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            ApiError::Unauthorized(_) => {
                // Never a Basic challenge: browsers would pop up a dialog.
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"depot\""));
            }
            ApiError::NotReady(_) | ApiError::Store(store::Error::Unavailable(_)) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
    }

    /// Renders in a protocol's dialect: the table's status unless the
    /// dialect re-maps it, the error's headers, then the dialect's.
    pub fn render(self, dialect: &impl Dialect) -> Response {
        let status = dialect.status(&self);
        let mut body = self.body();
        body.code = status.as_u16();
        let mut resp = (status, Json(body)).into_response();
        self.headers(resp.headers_mut());
        dialect.headers(status, resp.headers_mut());
        resp
    }
}

/// A protocol's own form of error answers, over the one table.
pub trait Dialect {
    /// The status to answer `err` with (default: the table's).
    fn status(&self, err: &ApiError) -> StatusCode {
        err.status()
    }

    /// Headers the protocol puts on an error answer with `status`.
    fn headers(&self, _status: StatusCode, _h: &mut HeaderMap) {}
}

/// The plain JSON API: the table as it is.
pub struct Plain;

impl Dialect for Plain {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.render(&Plain)
    }
}

/// An error answer as the API document states it: `description` and the
/// JSON error body ([`ErrorBody`]).
pub fn documented(description: &str) -> utoipa::openapi::Response {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let body = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
    ResponseBuilder::new().description(description).content("application/json", body).build()
}

/// Errors from axum's extractors (bad JSON, bad query, bad path), as JSON.
impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(r.body_text()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(r.body_text()),
            _ => ApiError::BadRequest(r.body_text()),
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

/// Whether a body error is the idle timeout firing (the body sent nothing
/// for `limits.body_idle_timeout`), anywhere in its chain of causes.
pub fn is_idle(e: &(dyn std::error::Error + 'static)) -> bool {
    cause::<tower_http::timeout::TimeoutError>(e).is_some()
}

/// The first error of type `T` in `e`'s chain of sources (`e` included).
fn cause<'a, T: std::error::Error + 'static>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    std::iter::successors(Some(e), |err| err.source()).find_map(|err| err.downcast_ref::<T>())
}

/// What a request body that broke off becomes: 408 when it went idle, 400
/// otherwise; `what` says what was being read.
pub fn body_failed(e: &(dyn std::error::Error + 'static), what: &str) -> ApiError {
    if is_idle(e) {
        ApiError::RequestTimeout(format!("{what}: the body sent nothing for too long"))
    } else {
        ApiError::BadRequest(format!("{what}: {e}"))
    }
}

impl From<axum::extract::multipart::MultipartError> for ApiError {
    fn from(e: axum::extract::multipart::MultipartError) -> Self {
        if is_idle(&e) {
            return body_failed(&e, "reading the multipart body");
        }
        if let Some(f) = cause::<super::framing::FramingTooLong>(&e) {
            return ApiError::PayloadTooLarge(f.to_string());
        }
        match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(e.body_text()),
            _ => ApiError::BadRequest(format!("malformed multipart body: {}", e.body_text())),
        }
    }
}

impl From<axum::extract::multipart::MultipartRejection> for ApiError {
    fn from(e: axum::extract::multipart::MultipartRejection) -> Self {
        ApiError::BadRequest(e.body_text())
    }
}

/// Any error answer that is not JSON yet (axum's extractor rejections, 405
/// from the router, …) rewritten as the JSON error body, keeping its status
/// and headers; other answers as they are. A router's 405 names the
/// request's `method` and points to the `Allow` header.
/// (Requests hyper itself refuses before they reach the router, such as a
/// 431 for oversized headers, keep hyper's empty answer.) The server's
/// `error_answers` middleware applies it to every answer.
pub async fn json_errors(method: &axum::http::Method, resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("application/problem+json"));
    if is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = if status == StatusCode::METHOD_NOT_ALLOWED && text.is_empty() {
        // The router adds `Allow` outside every layer, after this has run.
        format!(
            "{method} is not allowed on this path; the answer's `Allow` header lists the methods it takes"
        )
    } else if text.is_empty() || status.is_server_error() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let body = serde_json::to_vec(&ApiError::from_status(status, message).body()).unwrap_or_default();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}
