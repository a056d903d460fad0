//! Wire protocols: each module parses requests into typed store calls and
//! renders the answers. None of them touches RocksDB or the object directory.
//!
//! The parsers (`range`, `seed::params`, `tus::headers`) are pure and built without the
//! `rocksdb` feature so that the fuzz targets can use them.

#[cfg(feature = "server")]
pub mod files;
#[cfg(feature = "server")]
pub mod native;
pub mod range;
pub mod seed;
pub mod tus;

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
        url: format!("/api/files/{}", rec.id),
    }
}
