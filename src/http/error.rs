//! `ApiError`: the one table from errors to HTTP statuses, and the one
//! renderer of `{code, error, message}` bodies. 5xx bodies are generic; the
//! detail goes to the log.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
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
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("range not satisfiable for a file of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("too many requests: retry in {retry_after} s")]
    TooManyRequests { retry_after: u64 },
    #[error("{0}")]
    Unavailable(String),
    /// Another request holds the resource; retrying later can succeed.
    #[error("{0}")]
    Locked(String),
}

impl ApiError {
    /// The status for each error: the only place this mapping lives.
    pub fn status(&self) -> StatusCode {
        use store::Error as E;
        match self {
            ApiError::Store(e) => match e {
                E::FileNotFound(_) | E::UploadNotFound(_) | E::ChunkNotFound(_) => StatusCode::NOT_FOUND,
                E::UploadExpired(_) => StatusCode::GONE,
                E::MissingChunks(_) | E::Conflict(_) => StatusCode::CONFLICT,
                E::HashMismatch { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                E::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                E::InvalidInput(_) => StatusCode::BAD_REQUEST,
                E::TypeRejected(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                E::Locked(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Locked(_) => StatusCode::LOCKED,
        }
    }

    /// A stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        use store::Error as E;
        match self {
            ApiError::Store(e) => match e {
                E::FileNotFound(_) | E::UploadNotFound(_) | E::ChunkNotFound(_) => "not_found",
                E::UploadExpired(_) => "expired",
                E::MissingChunks(_) => "missing_chunks",
                E::Conflict(_) => "conflict",
                E::HashMismatch { .. } => "hash_mismatch",
                E::TooLarge { .. } => "too_large",
                E::InvalidInput(_) => "invalid_input",
                E::TypeRejected(_) => "type_rejected",
                E::Locked(_) => "unavailable",
                _ => "internal",
            },
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::PayloadTooLarge(_) => "too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            ApiError::TooManyRequests { .. } => "rate_limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Locked(_) => "locked",
        }
    }

    /// The body this error renders to.
    pub fn body(&self) -> ErrorBody {
        let status = self.status();
        let message = if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
            "internal error; the server log has the details".to_string()
        } else {
            self.to_string()
        };
        ErrorBody {
            code: status.as_u16(),
            error: self.kind().to_string(),
            message,
            missing: match self {
                ApiError::Store(store::Error::MissingChunks(m)) => Some(m.clone()),
                _ => None,
            },
        }
    }

    /// Renders with a given status (protocols with their own status rules).
    pub fn into_response_with(self, status: StatusCode) -> Response {
        let mut body = self.body();
        body.code = status.as_u16();
        let mut resp = (status, Json(body)).into_response();
        self.decorate(&mut resp);
        resp
    }

    fn decorate(&self, resp: &mut Response) {
        match self {
            ApiError::RangeNotSatisfiable { size } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
            }
            ApiError::TooManyRequests { retry_after } => {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        self.into_response_with(status)
    }
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

impl From<axum::extract::multipart::MultipartError> for ApiError {
    fn from(e: axum::extract::multipart::MultipartError) -> Self {
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

/// Middleware: any error answer that is not JSON yet (axum's extractor
/// rejections, 405 from the router, …) is rewritten as the JSON error body,
/// keeping its status and headers. (Requests hyper itself refuses before
/// they reach the router, such as a 431 for oversized headers, keep hyper's
/// empty answer.)
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = if text.is_empty() || status.is_server_error() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let error = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
        s if s.is_server_error() => "internal",
        _ => "error",
    };
    let body =
        serde_json::to_vec(&ErrorBody { code: status.as_u16(), error: error.into(), message, missing: None })
            .unwrap_or_default();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}
