//! Error answers that several operations document alike, each stated once
//! as a type to name in `#[utoipa::path(responses(...))]`. What an
//! operation says of its own statuses stays in its annotation; what every
//! operation shares (401, 403, 507, the JSON 415) is added to the whole
//! document in [`crate::server`].

use utoipa::IntoResponses;

use crate::wire::ErrorBody;

/// 413 for a file over `limits.max_file_size` (whole uploads and commits).
#[derive(IntoResponses)]
#[response(status = 413, description = "Larger than the maximum file size")]
pub struct FileTooLarge(pub ErrorBody);

/// 409 `missing_chunks` for a commit that names chunks this tenant has not
/// sent; the body lists them.
#[derive(IntoResponses)]
#[response(status = 409, description = "Chunks missing (listed in `missing`)")]
pub struct ChunksMissing(pub ErrorBody);

/// 410 for a commit in parts past its expiry.
#[derive(IntoResponses)]
#[response(status = 410, description = "The commit expired")]
pub struct CommitExpired(pub ErrorBody);

/// 422 for a JSON body that parses but does not have the request's shape,
/// where the handler reads the body itself (axum's `Json`, or a field check
/// of its own). [`crate::http::JsonBody`] answers such a body 400: an
/// operation that reads it so says so in its own 400.
#[derive(IntoResponses)]
#[response(status = 422, description = "The JSON does not have the request's shape")]
pub struct JsonShape(pub ErrorBody);
