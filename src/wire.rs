//! Wire types: the JSON every endpoint speaks, defined once and shared by the
//! server's handlers, the `depot` client and the OpenAPI document.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

use crate::store::ChunkId;

/// A chunk's name in the OpenAPI document: the BLAKE3 of its raw bytes, 64
/// hex digits (the wire form of [`ChunkId`]).
pub struct ChunkHash;

impl utoipa::PartialSchema for ChunkHash {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[0-9a-fA-F]{64}$"))
            .description(Some("BLAKE3 of the chunk's raw bytes, hex"))
            .into()
    }
}

impl ToSchema for ChunkHash {}

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
    #[schema(value_type = Option<Vec<ChunkHash>>)]
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
    /// Bytes of this file that deduplication saved when it was committed:
    /// its size minus the raw bytes of the chunks it was the first to
    /// reference (content the store held already, or repeated within the
    /// file). A figure of that moment: deleting the other files later does
    /// not change it. Absent for files committed before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deduplicated_bytes: Option<u64>,
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

/// A backup the server made (`POST /api/admin/backups`): a data dir
/// that opens as the store at that instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BackupInfo {
    /// Its directory's name under `<data_dir>/backups/` (the UTC time it
    /// was made, `2026-12-07T184000.123Z`).
    pub name: String,
    /// Its path on the server.
    pub path: String,
    /// Chunk objects and pack files hard-linked into it (copied where
    /// `backups/` is on another file system).
    pub objects: u64,
    /// Their bytes; those linked are shared with the store until it
    /// deletes them.
    pub object_bytes: u64,
    /// Of `object_bytes`, those copied, not linked (`backups/` on another
    /// file system than `objects/`): the backup's own. 0 when all were
    /// linked.
    pub copied_bytes: u64,
    /// Unfinished uploads copied into it (they resume from the backup).
    pub uploads: u64,
    /// How long it took, in seconds.
    pub seconds: f64,
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
    /// Deduplication: logical bytes / unique bytes, how many times over the
    /// files' content would fill the chunks that hold it. `null` while the
    /// store has no file content (empty, or only chunks of refused or
    /// unfinished uploads, which GC collects after their lease).
    pub dedup_ratio: Option<f64>,
    /// Dedup and compression together: logical bytes / stored bytes.
    /// `null` when `dedup_ratio` is.
    pub space_ratio: Option<f64>,
}

#[cfg(feature = "server")]
impl From<crate::store::Stats> for StatsInfo {
    fn from(s: crate::store::Stats) -> Self {
        Self {
            files: s.files,
            logical_bytes: s.logical_bytes,
            unique_chunks: s.unique_chunks,
            unique_bytes: s.unique_bytes,
            stored_bytes: s.stored_bytes,
            dedup_ratio: ratio(s.logical_bytes, s.unique_bytes),
            space_ratio: ratio(s.logical_bytes, s.stored_bytes),
        }
    }
}

/// `logical / physical`, or `None` when there is no file content to speak
/// of: a ratio of nothing (or of chunks no file uses) means nothing.
#[cfg(feature = "server")]
fn ratio(logical: u64, physical: u64) -> Option<f64> {
    (logical > 0 && physical > 0).then(|| logical as f64 / physical as f64)
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

/// How the server cuts files: clients cut the same way, so content uploaded by
/// any path shares chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChunkingInfo {
    /// `fastcdc-2020`.
    pub algorithm: String,
    /// FastCDC normalisation level.
    pub normalization: u8,
    pub min: u32,
    pub avg: u32,
    pub max: u32,
    /// `blake3`: chunk ids are the BLAKE3 of the raw bytes, hex.
    pub hash: String,
    /// The chunker id recorded in every file.
    pub chunker_id: String,
    /// Largest chunk `PUT /api/chunks/{hash}` accepts.
    pub max_chunk_size: u64,
    /// Most hashes one missing-chunks query may carry.
    pub max_missing_query: usize,
    /// Most chunks one `POST /api/chunks` may carry (absent from servers
    /// without it: send each chunk with `PUT /api/chunks/{hash}`).
    #[serde(default)]
    pub max_batch_chunks: Option<usize>,
    /// Most body bytes (multipart framing included) one `POST /api/chunks`
    /// may carry, with or without `Content-Length`; always room for one
    /// chunk of `max_chunk_size`.
    #[serde(default)]
    pub max_batch_bytes: Option<u64>,
    /// Largest file the server accepts (`limits.max_file_size`): clients
    /// refuse larger ones before sending anything.
    #[serde(default)]
    pub max_file_size: Option<u64>,
    /// The server's file-type policy, so that clients refuse a file it
    /// would refuse before sending it (absent from older servers).
    #[serde(default)]
    pub types: Option<TypePolicyInfo>,
    /// Content codings (RFC 9110 §8.4) the JSON API takes for request
    /// bodies (`Content-Encoding`): `["zstd"]` (RFC 8878), decoded within
    /// `limits.max_json_body`. Absent from older servers: send JSON plain.
    #[serde(default)]
    pub request_encodings: Option<Vec<String>>,
}

/// Which files the server accepts: empty lists allow everything. A file
/// whose first bytes contradict its extension is refused whatever they say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TypePolicyInfo {
    /// Allowed extensions, without the dot, case-insensitive.
    pub allowed_extensions: Vec<String>,
    /// Allowed MIME types; `*` and `type/*` patterns match.
    pub allowed_types: Vec<String>,
}

impl From<&crate::store::TypePolicy> for TypePolicyInfo {
    fn from(p: &crate::store::TypePolicy) -> Self {
        Self { allowed_extensions: p.allowed_extensions.clone(), allowed_types: p.allowed_types.clone() }
    }
}

impl From<TypePolicyInfo> for crate::store::TypePolicy {
    fn from(p: TypePolicyInfo) -> Self {
        Self { allowed_extensions: p.allowed_extensions, allowed_types: p.allowed_types }
    }
}

/// Which of these chunks does the server lack?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MissingRequest {
    /// BLAKE3 hashes, hex.
    #[schema(value_type = Vec<ChunkHash>)]
    pub hashes: Vec<ChunkId>,
}

/// The chunks the server lacks, in the order asked (each once). The others are
/// pinned until the upload commits (or the lease ends).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MissingResponse {
    #[schema(value_type = Vec<ChunkHash>)]
    pub missing: Vec<ChunkId>,
}

/// A chunk stored (or found already there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PutChunkResponse {
    #[schema(value_type = ChunkHash)]
    pub hash: ChunkId,
    /// Raw (decoded) length.
    pub len: u32,
    /// `false`: the server already had it.
    pub new: bool,
}

/// The chunks of a `POST /api/chunks`, in the order of its parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PutChunksResponse {
    pub chunks: Vec<PutChunkResponse>,
}

/// One chunk of a manifest to commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChunkRef {
    #[schema(value_type = ChunkHash)]
    pub hash: ChunkId,
    pub len: u32,
}

/// Commit a file from chunks the server has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitRequest {
    pub name: String,
    /// What the client believes the type is; detection from the bytes wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    pub size: u64,
    pub chunks: Vec<ChunkRef>,
}

/// Open a commit in parts (`POST /api/commits`): the file's name and size,
/// and what the client believes its type is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitOpen {
    pub name: String,
    /// What the client believes the type is; detection from the bytes wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The file's size: the segments' lengths must add up to it.
    pub size: u64,
}

/// A commit in parts, opened: send its segments, then finish it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CommitSession {
    /// The commit's id (32 hex digits): `/api/commits/{id}`.
    pub id: String,
    /// Most entries one segment may hold.
    pub max_entries: usize,
    /// Segments are numbered from 0 to `max_segments - 1`.
    pub max_segments: u32,
    /// When the commit ends unless a segment arrives before (RFC 3339);
    /// each segment received in the second half of its life renews it.
    pub expires_at: String,
}

/// One segment of a commit in parts: the next chunks of the manifest, in
/// order (at most `max_entries`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentRequest {
    #[schema(min_items = 1, max_items = 1024)]
    pub chunks: Vec<ChunkRef>,
}

/// A segment received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SegmentInfo {
    /// Its number.
    pub segment: u32,
    /// Its entries.
    pub entries: u64,
    /// Its lengths added up.
    pub bytes: u64,
}

/// Where a commit in parts stands: what a client resumes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CommitStatus {
    pub id: String,
    pub name: String,
    pub size: u64,
    /// `open`, or `finished` (then `file` is the file, while it exists).
    pub state: String,
    /// The numbers of the segments received, ascending (empty once finished).
    pub segments: Vec<u32>,
    /// Entries received, in all segments.
    pub entries: u64,
    /// Bytes the received segments' lengths add up to.
    pub bytes: u64,
    pub max_entries: usize,
    /// RFC 3339.
    pub expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileInfo>,
}

/// A file's manifest: its chunks in order, with offsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ManifestInfo {
    pub id: String,
    pub size: u64,
    pub chunker_id: String,
    pub chunks: Vec<ManifestChunk>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ManifestChunk {
    #[schema(value_type = ChunkHash)]
    pub hash: ChunkId,
    pub offset: u64,
    pub len: u32,
}

/// `POST /api/admin/tokens`: what the new token may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenRequest {
    /// The tenant it acts for: 1 to 63 of `a-z`, `0-9`, `-`.
    #[schema(pattern = r"^[a-z0-9-]{1,63}$")]
    pub tenant: String,
    /// Any of `read`, `write`, `delete`, `admin`, `metrics`.
    #[schema(value_type = Vec<ScopeName>, min_items = 1)]
    pub scopes: Vec<String>,
    /// How long it lives: seconds (a number), a duration (`90d`, `12h`,
    /// `30m`) or `never`. Absent: 90 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "90d")]
    pub expires_in: Option<ExpiresIn>,
    /// A label for people (`ci`, `alice's laptop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 128)]
    pub name: Option<String>,
}

/// A scope's name, for the OpenAPI document.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum ScopeName {
    Read,
    Write,
    Delete,
    Admin,
    Metrics,
}

/// A lifetime on the wire: seconds, or text (`90d`, `never`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExpiresIn {
    Seconds(u64),
    Text(String),
}

/// A token as the admin API shows it. The secret (`token`) appears once, in
/// the answer that created it; only a keyed hash of it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// The token's id (a ULID), the middle part of `dpt_<id>_<secret>`.
    pub id: String,
    /// The whole bearer token, `dpt_<id>_<secret>`: only when just created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub tenant: String,
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Creation time, RFC 3339 (UTC).
    pub created: String,
    /// Expiry, RFC 3339 (UTC); absent for a token that never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Revocation time, RFC 3339 (UTC), once revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// Every token, newest first (revoked ones included, marked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

/// A tenant's caps (`PUT /api/admin/tenants/{tenant}/quota`); an absent
/// or `null` cap is no cap, and a quota with no caps is removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotaInfo {
    /// Logical bytes of the tenant's committed files (what its files weigh,
    /// not what deduplication stored).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "quota_cap")]
    pub bytes: Option<u64>,
    /// Number of committed files.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "quota_cap")]
    pub files: Option<u64>,
    /// Bytes declared by (or, while the length is unknown, received into)
    /// the tenant's open upload sessions.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "quota_cap")]
    pub pending: Option<u64>,
}

/// What a tenant uses, in the units of [`QuotaInfo`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageInfo {
    pub bytes: u64,
    pub files: u64,
    pub pending: u64,
}

/// `GET /api/admin/tenants/{tenant}`: a tenant's quota and usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantInfo {
    pub tenant: String,
    pub quota: QuotaInfo,
    pub usage: UsageInfo,
}

/// `POST /api/files/{id}/link`: a signed download link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
pub struct LinkRequest {
    /// Seconds the link works; default 3600, at most `auth.link_max_ttl`
    /// (by default 7 days, the maximum given here).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "whole_seconds")]
    #[schema(minimum = 1, maximum = 604800)]
    pub expires_in: Option<u64>,
}

/// A whole number of seconds, also when written as `600.0` (JSON does not
/// tell integers from other numbers).
fn whole_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else { return Ok(None) };
    if let Some(v) = n.as_u64() {
        return Ok(Some(v));
    }
    match n.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f < 1e15 => Ok(Some(f as u64)),
        _ => Err(serde::de::Error::custom(format!("{n} is not a whole number of seconds"))),
    }
}

/// A quota cap: a whole number (also when written as `1e6` or `10.0`) of at
/// most 2^63 - 1, the range the usage counters hold.
fn quota_cap<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else { return Ok(None) };
    let v = match (n.as_u64(), n.as_f64()) {
        (Some(v), _) => Some(v),
        (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f < 9.2e18 => Some(f as u64),
        _ => None,
    };
    match v {
        Some(v) if v <= i64::MAX as u64 => Ok(Some(v)),
        _ => Err(serde::de::Error::custom(format!("{n} is not a whole number from 0 to 2^63 - 1"))),
    }
}

/// A signed link: anyone holding it may GET (with Range) or HEAD the file
/// until `expires_at`, or until the token that made it is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LinkInfo {
    /// Path and query (`/api/files/{id}?exp=…&kid=…&sig=…`), relative to
    /// the server.
    pub url: String,
    /// RFC 3339 (UTC).
    pub expires_at: String,
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
