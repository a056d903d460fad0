//! Wire types: the JSON every endpoint speaks, defined once and shared by the
//! server's handlers, the `depot` client and the OpenAPI document.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::ChunkId;

/// Every error answer (outside tus, which has its own form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The HTTP status, repeated.
    pub code: u16,
    /// A stable machine-readable kind, e.g. `not_found`, `missing_chunks`.
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
    /// With `missing_chunks`: the hashes the server lacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub missing: Option<Vec<ChunkId>>,
}

/// A stored file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileInfo {
    /// The file's id (a ULID).
    pub id: String,
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    pub content_type: String,
    /// Creation time, RFC 3339 (UTC).
    pub created: String,
    /// The strong ETag (BLAKE3 of the manifest), without quotes.
    pub etag: String,
    /// BLAKE3 of the whole content, when the server saw it stream past.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// Number of chunks.
    pub chunks: u64,
    /// Where to download it.
    pub url: String,
}

/// A page of files, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileList {
    pub files: Vec<FileInfo>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Store-wide figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatsInfo {
    pub files: u64,
    /// Sum of all file sizes.
    pub logical_bytes: u64,
    pub unique_chunks: u64,
    /// Raw bytes of all chunks, each counted once.
    pub unique_bytes: u64,
    /// Bytes on disk in chunk objects (compressed, with headers).
    pub stored_bytes: u64,
    /// logical / unique bytes.
    pub dedup_ratio: f64,
    /// logical / stored bytes (dedup and compression together).
    pub space_ratio: f64,
}

/// The answer to one piece of a resumable.js / flow.js upload (or a test
/// that found it present).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PieceStatus {
    /// `partial` while pieces are missing, `complete` once the file exists.
    pub status: String,
    /// Pieces received so far.
    pub received: u32,
    pub total: u32,
    /// The upload session (derived from identifier, name, size and layout).
    pub upload_id: String,
    /// The file, once complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileInfo>,
}

/// Liveness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}

/// Formats unix milliseconds as RFC 3339 UTC (`2026-11-25T07:24:14.123Z`).
pub fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_591_454_123), "2026-11-25T07:24:14.123Z");
    }
}
