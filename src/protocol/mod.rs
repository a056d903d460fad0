//! Wire protocols: each module parses requests into typed store calls and
//! renders the answers. None of them touches RocksDB or the object directory.
//!
//! The parsers (`disposition`, `range`, `seed::params`, `tus::headers`) are pure and built without the
//! `rocksdb` feature so that the fuzz targets can use them.

#[cfg(feature = "server")]
pub mod admin;
#[cfg(feature = "server")]
pub mod answers;
#[cfg(feature = "server")]
pub mod digest;
pub mod disposition;
#[cfg(feature = "server")]
pub mod files;
pub mod ietf;
#[cfg(feature = "server")]
pub mod native;
pub mod range;
#[cfg(feature = "server")]
pub mod resumable;
pub mod seed;
pub mod tus;
#[cfg(feature = "server")]
pub mod ui;

#[cfg(feature = "server")]
use crate::{store::FileRecord, wire::FileInfo};

/// A file record as the wire shows it.
#[cfg(feature = "server")]
pub fn file_info(rec: &FileRecord) -> FileInfo {
    FileInfo {
        id: rec.id.to_string(),
        name: rec.name.clone(),
        size: rec.size,
        content_type: rec.content_type.clone(),
        created: crate::wire::rfc3339(rec.created_ms),
        etag: rec.manifest_digest.to_string(),
        content_hash: rec.content_hash.map(|h| h.to_string()),
        chunks: rec.chunks,
        deduplicated_bytes: rec.added_bytes.map(|a| rec.size.saturating_sub(a)),
        url: format!("/api/files/{}", rec.id),
    }
}

/// A multipart part's `name` and `filename`, read by
/// [`disposition::parse_form_disposition`] (the one reading every upload
/// path uses, rather than the multipart parser's own).
#[cfg(feature = "server")]
pub fn form_part(headers: &axum::http::HeaderMap) -> disposition::FormDisposition {
    headers
        .get(axum::http::header::CONTENT_DISPOSITION)
        .map(|v| disposition::parse_form_disposition(v.as_bytes()))
        .unwrap_or_default()
}
