//! Error answers that several operations document alike, each stated once
//! as a type to name in `#[utoipa::path(responses(...))]`. What an
//! operation says of its own statuses stays in its annotation; what every
//! operation shares (401, 403, 507, the JSON 415) is added to the whole
//! document in [`crate::server`].

use utoipa::IntoResponses;

use crate::wire::ErrorBody;

/// An answer with an [`ErrorBody`]: the type, its status and description.
macro_rules! error_answer {
    ($(#[$doc:meta])* $name:ident, $status:tt, $description:tt) => {
        $(#[$doc])*
        #[derive(IntoResponses)]
        #[response(status = $status, description = $description)]
        pub struct $name(pub ErrorBody);
    };
}

error_answer!(
    /// 413 for a file over `limits.max_file_size` (whole uploads and commits).
    FileTooLarge, 413, "Larger than the maximum file size"
);

error_answer!(
    /// 409 `missing_chunks` for a commit that names chunks this tenant has
    /// not sent; the body lists them.
    ChunksMissing, 409, "Chunks missing (listed in `missing`)"
);

error_answer!(
    /// 410 for a commit in parts past its expiry.
    CommitExpired, 410, "The commit expired"
);

error_answer!(
    /// 422 for a JSON body that parses but does not have the request's
    /// shape, where the handler reads the body itself (axum's `Json`, or a
    /// field check of its own). [`crate::http::JsonBody`] answers such a body
    /// 400: an operation that reads it so says so in its own 400.
    JsonShape, 422, "The JSON does not have the request's shape"
);
