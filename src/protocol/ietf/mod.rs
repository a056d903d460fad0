//! Resumable Uploads for HTTP (draft-ietf-httpbis-resumable-upload), the
//! HTTP working group's successor to tus, served on the tus endpoint
//! `/api/tus/` beside tus 1.0. A request carrying
//! `Upload-Draft-Interop-Version` is the draft's (as tusd tells them
//! apart); the tus handlers hand it here. Both families share the store's
//! append-only sessions and the [`crate::protocol::resumable`] pump, so an
//! upload is one file whichever family sent it.
//!
//! Served: creation (`POST`, with or without the complete body, with
//! `Upload-Complete`, or `Upload-Incomplete` for interop version 3), offset
//! retrieval (`HEAD`), append (`PATCH`, `application/partial-upload` from
//! version 6), cancellation (`DELETE`), `Upload-Limit`, RFC 9530 digests
//! checked when sent (a mismatch keeps nothing of the body), the draft's
//! problem-details errors, and the informational
//! `104 (Upload Resumption Supported)` on HTTP/1.1 creation, written by
//! [`crate::http::interim`] since hyper has no way to send it.

pub mod headers;

#[cfg(feature = "server")]
mod handlers;

#[cfg(feature = "server")]
pub use self::handlers::{append, cancel, create, is_draft, offset};
