//! The seed's API: regular uploads and the chunked-upload protocol of
//! resumable.js and flow.js (plus plain parameter names for scripts).
//!
//! Status rules the libraries need (see PROTOCOLS.md): a test answers 200
//! for "present" and 204 for "send it" (never 404); a piece answers 200 while
//! the upload is partial and 201 when it completed the file. A permanent
//! problem with a piece sent by one of the libraries is answered with 415,
//! the status that stops both of them (they retry 400, 413 or 422); plain
//! clients get the precise status.

pub mod params;

#[cfg(feature = "server")]
mod chunked;
#[cfg(feature = "server")]
mod upload;

#[cfg(feature = "server")]
pub use self::chunked::{__path_post_chunk, __path_test_chunk, post_chunk, test_chunk};
#[cfg(feature = "server")]
pub use self::upload::{__path_upload_file, UploadForm, upload_file};

/// This protocol's routes: the regular upload and resumable.js / flow.js
/// pieces (test and send).
#[cfg(feature = "server")]
pub fn routes() -> crate::http::Routes {
    use axum::routing::{get, post};
    let uploads = axum::Router::new()
        .route("/api/files/upload", post(upload_file))
        .route("/api/files/upload/chunked", get(test_chunk).post(post_chunk));
    crate::http::Routes { uploads, ..Default::default() }
}

/// This module's part of the OpenAPI document.
#[cfg(feature = "server")]
#[derive(utoipa::OpenApi)]
#[openapi(paths(upload_file, test_chunk, post_chunk))]
pub struct Doc;
