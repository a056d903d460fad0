//! Configuration: one documented struct. Values come from, in rising order:
//! the built-in defaults, a TOML file (`--config` / `DEPOT_CONFIG`), the
//! `DEPOT_*` environment variables listed in [`ENV_VARS`], and command-line
//! flags. `config/default.toml` is the user-facing reference; a test loads it
//! and checks it equals the defaults. An unknown key in a file is an error
//! naming the key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[cfg(feature = "server")]
use crate::store::StoreOptions;
use crate::store::enums::keywords;
use crate::store::meta_backend::redact_urls_in;
use crate::store::objects::{ObjectsKind, S3Options};
use crate::store::{ChunkerParams, FsyncPolicy, MetaBackend, TypePolicy};

/// Everything a server (and the offline commands) can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where objects, metadata and upload scratch live.
    pub data_dir: PathBuf,
    /// Address to listen on. `0.0.0.0:8080` serves other machines.
    pub listen: String,
    /// Log filter (`info`, `depot=debug,tower_http=info`, …).
    pub log: String,
    /// `text` (one line per event; colour only on a terminal) or `json`
    /// (one JSON object per line, for log shippers).
    pub log_format: LogFormat,
    /// The server's async worker threads: they accept connections, parse
    /// requests, move bodies and serve ranges from the page cache (hashing,
    /// disk writes and uncached reads run on a separate blocking pool). `0`
    /// picks one fewer than the CPUs the process may run on, at least one
    /// ([`Config::async_workers`]); at most 1024.
    pub worker_threads: usize,
    pub chunking: ChunkerParams,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
    pub types: TypePolicy,
    pub uploads: UploadsConfig,
    pub gc: GcConfig,
    pub rate_limit: RateLimitConfig,
    pub cors: CorsConfig,
    pub auth: AuthConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("depot-data"),
            listen: "127.0.0.1:8080".into(),
            log: "info".into(),
            log_format: LogFormat::Text,
            worker_threads: 0,
            chunking: ChunkerParams::default(),
            storage: StorageConfig::default(),
            limits: LimitsConfig::default(),
            types: TypePolicy::default(),
            uploads: UploadsConfig::default(),
            gc: GcConfig::default(),
            rate_limit: RateLimitConfig::default(),
            cors: CorsConfig::default(),
            auth: AuthConfig::default(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

keywords!(LogFormat { "text" => Text, "json" => Json });

/// How chunks are written and read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// zstd level for chunk objects (0 = never compress). Kept only when it
    /// saves at least 1/32; incompressible data is recognised and skipped.
    pub compression_level: i32,
    /// `always` (fsync each object), `batch` (one filesystem sync per
    /// acknowledged request), or `never` (throwaway stores only).
    pub fsync: FsyncPolicy,
    /// Write new chunk objects, and appends to pack files, with `O_DIRECT`
    /// (from the server's own buffer to the disk, not copied into the page
    /// cache first; a pack takes a put's batch in one write) where the
    /// filesystem takes it (probed at start; where it does not, writes go
    /// through the page cache whatever this says). Durability is `fsync`'s
    /// either way.
    pub direct_writes: bool,
    /// Append new chunks to pack files (`objects/packs/`, docs/PACKS.md),
    /// the default; `false` writes a file per chunk (`objects/ab/cd/<hash>`).
    /// Both layouts are read whatever this says.
    pub packs: bool,
    /// Size at which a pack is closed (1 MiB to 1 TiB).
    pub pack_size: ByteSize,
    /// Chunks read ahead per download.
    pub read_ahead: usize,
    /// Free space kept on the data dir's filesystem: below it, uploads that
    /// would write new data are refused with 507 before the disk fills, so
    /// that the metadata database can always open and `gc`, `verify` and a
    /// restart keep working. `0` turns the check off.
    pub min_free: ByteSize,
    /// Where chunk objects live: `fs` (`<data_dir>/objects/`) or `s3` (the
    /// bucket `[storage.s3]` names; credentials from `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`). Metadata stays local either way.
    pub objects: ObjectsKind,
    /// The S3 engine, read when `objects = "s3"`.
    pub s3: S3Options,
    /// Where the metadata lives: `rocksdb` (under `data_dir/meta/`) or a
    /// PostgreSQL URL, `postgres://user:password@host:5432/database`. The
    /// password is never shown in logs or errors.
    pub meta: MetaBackend,
    /// This server is one of several nodes sharing one store: the metadata
    /// in PostgreSQL and the chunks in S3, each node behind the same load
    /// balancer (see docs/DEPLOY.md). Needs `meta` = a PostgreSQL URL and
    /// `objects = "s3"`; the data dir then holds nothing shared.
    pub shared: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            compression_level: 1,
            fsync: FsyncPolicy::Batch,
            direct_writes: true,
            packs: true,
            pack_size: ByteSize(64 << 20),
            read_ahead: 4,
            min_free: ByteSize(256 << 20),
            objects: ObjectsKind::Fs,
            s3: S3Options::default(),
            meta: MetaBackend::RocksDb,
            shared: false,
        }
    }
}

/// Size limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest file.
    pub max_file_size: ByteSize,
    /// Largest chunk a native client may send (at least `chunking.max`).
    pub max_chunk_size: ByteSize,
    /// Largest piece of a seed chunked upload (the last piece may be up to
    /// twice the client's chunk size).
    pub max_piece_size: ByteSize,
    /// Most pieces in one seed chunked upload.
    pub max_pieces: u32,
    /// Most hashes in one missing-chunks query.
    pub max_missing_query: usize,
    /// Largest JSON request body. No request needs to grow with a file: a
    /// long chunk list is committed in parts (`/api/commits`, segments of at
    /// most 1,024 entries, about 100 KiB), so this only has to hold the
    /// largest missing-chunks query (`max_missing_query` hashes: 6.7 MB at
    /// the default) and one-shot commits of up to ~180,000 chunks (~45 GiB
    /// with the default chunking) from clients that do not commit in parts.
    pub max_json_body: ByteSize,
    /// Most request bytes held in memory at once, across all requests:
    /// native chunk bodies, seed pieces, JSON bodies, and what each streamed
    /// upload (regular, tus, IETF) buffers. A request waits for room; one
    /// body is always let through, however large. A chunk, piece or JSON
    /// body that sends nothing for a second while others wait gives back
    /// what it has not sent yet.
    pub max_buffered: ByteSize,
    /// A connection that has not sent a request's whole header block this
    /// long after it began (or after the last request) is closed, one that
    /// sent nothing at all too: slowloris clients hold nothing for long.
    pub header_timeout: Dur,
    /// A request body that sends nothing this long is ended with 408 (and
    /// gives back its share of the memory budget).
    pub body_idle_timeout: Dur,
    /// Most connections open at once (never more than the descriptor limit
    /// allows, less 256 for the store). Past it, a new connection takes the
    /// place of the oldest idle one; when every one is busy, it is closed
    /// at once.
    pub max_connections: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_file_size: ByteSize(1 << 40),
            max_chunk_size: ByteSize(4 << 20),
            max_piece_size: ByteSize(64 << 20),
            max_pieces: 100_000,
            max_missing_query: 100_000,
            max_json_body: ByteSize(16 << 20),
            max_buffered: ByteSize(256 << 20),
            header_timeout: Dur(Duration::from_secs(30)),
            body_idle_timeout: Dur(Duration::from_secs(60)),
            max_connections: 4096,
        }
    }
}

/// Upload sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadsConfig {
    /// An upload session untouched this long expires and is reaped.
    pub expiry: Dur,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        Self { expiry: Dur(Duration::from_secs(24 * 3600)) }
    }
}

/// Garbage collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcConfig {
    /// An unreferenced chunk is kept at least this long.
    pub grace: Dur,
    /// How often the server runs GC (0 = never; `depot gc` still works).
    pub interval: Dur,
    /// How long a chunk a client sent or asked about stays pinned, so that
    /// its commit can follow.
    pub chunk_lease: Dur,
    /// With `storage.shared`: how long a download on one node holds a
    /// delete made on another without renewing its hold (it renews as it
    /// reads). The delete's references go at the first GC pass after.
    pub reader_ttl: Dur,
    /// With `storage.objects = "s3"`: how long a writer's claim on a new
    /// chunk lasts (its PUT must be done by then; after it, another upload
    /// of the same chunk, or GC, takes the chunk over).
    pub claim_timeout: Dur,
}

impl Default for GcConfig {
    fn default() -> Self {
        Self {
            grace: Dur(Duration::from_secs(3600)),
            interval: Dur(Duration::from_secs(600)),
            chunk_lease: Dur(Duration::from_secs(24 * 3600)),
            reader_ttl: Dur(Duration::from_secs(60)),
            claim_timeout: Dur(Duration::from_secs(60)),
        }
    }
}

/// Who may do what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `local`: no token needed, loopback only (the server refuses another
    /// listen address, foreign `Host` and `Origin` headers). `token`: every
    /// request needs a bearer token (first start writes an admin token to
    /// `<data_dir>/admin.token`). `open`: no authentication at all.
    pub mode: AuthMode,
    /// Lifetime of a new token when none is asked for.
    pub token_expiry: Dur,
    /// The longest a signed download link may live.
    pub link_max_ttl: Dur,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::Local,
            token_expiry: Dur(Duration::from_secs(90 * 86_400)),
            link_max_ttl: Dur(Duration::from_secs(7 * 86_400)),
        }
    }
}

/// See [`AuthConfig::mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    Local,
    Token,
    Open,
}

keywords!(AuthMode { "local" => Local, "token" => Token, "open" => Open });

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthMode::Local => "local",
            AuthMode::Token => "token",
            AuthMode::Open => "open",
        })
    }
}

/// Per-client-IP rate limits (token buckets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// API calls: sustained requests per second, and burst.
    pub api_per_second: u64,
    pub api_burst: u32,
    /// Upload traffic (pieces, chunks, tus PATCH): its own, larger budget.
    pub upload_per_second: u64,
    pub upload_burst: u32,
    /// Proxies whose `X-Forwarded-For` / `Forwarded` headers are believed:
    /// addresses or CIDR blocks (`10.0.0.0/8`, `::1`). A request from one of
    /// them counts against the right-most address of its chain that is not
    /// itself a trusted proxy; any other request against its peer address.
    /// Empty: forwarding headers are ignored. IPv6 clients are counted by
    /// their /64.
    pub trusted_proxies: Vec<String>,
    /// Failed authentications a client address may make per minute (also
    /// the burst). Past it, every request with credentials from that address
    /// gets 429 until the budget refills.
    pub auth_failures_per_minute: u32,
}

impl RateLimitConfig {
    /// `trusted_proxies` parsed: each an address (a /32 or /128) or a CIDR
    /// block.
    ///
    /// # Errors
    /// A message naming the first entry that is neither.
    pub fn proxies(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.trusted_proxies
            .iter()
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        format!("rate_limit.trusted_proxies: `{p}` is not an IP address or CIDR block")
                    })
            })
            .collect()
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            api_per_second: 50,
            api_burst: 200,
            upload_per_second: 500,
            upload_burst: 2000,
            trusted_proxies: Vec::new(),
            auth_failures_per_minute: 10,
        }
    }
}

/// Cross-origin requests from browsers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Allowed origins; `["*"]` allows any; empty disables CORS.
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    /// Response headers scripts may read.
    pub exposed_headers: Vec<String>,
    /// How long browsers may cache a preflight.
    pub max_age: Dur,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: strings(&["*"]),
            allowed_methods: strings(&["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
            allowed_headers: strings(&[
                "Content-Type",
                "Content-Encoding",
                "Authorization",
                "Range",
                "If-None-Match",
                "If-Range",
                "X-Requested-With",
                "Tus-Resumable",
                "Upload-Length",
                "Upload-Offset",
                "Upload-Metadata",
                "Upload-Defer-Length",
                "Upload-Concat",
                "Upload-Checksum",
                "X-HTTP-Method-Override",
                "Upload-Draft-Interop-Version",
                "Upload-Complete",
                "Upload-Incomplete",
                "Content-Disposition",
                "Content-Digest",
                "Repr-Digest",
            ]),
            exposed_headers: strings(&[
                "Content-Length",
                "Content-Range",
                "Content-Disposition",
                "ETag",
                "Accept-Ranges",
                "Location",
                "Retry-After",
                "X-Request-Id",
                "Depot-File-Id",
                "Upload-Offset",
                "Upload-Length",
                "Upload-Metadata",
                "Upload-Defer-Length",
                "Upload-Concat",
                "Upload-Expires",
                "Tus-Version",
                "Tus-Resumable",
                "Tus-Max-Size",
                "Tus-Extension",
                "Tus-Checksum-Algorithm",
                "Upload-Draft-Interop-Version",
                "Upload-Complete",
                "Upload-Incomplete",
                "Upload-Limit",
            ]),
            max_age: Dur(Duration::from_secs(3600)),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{var}: {message}")]
    Env { var: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Defaults, then the file at `path` (if any), then the environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, key or variable at fault.
    pub fn load(path: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut cfg = match path {
            Some(p) => Self::from_file(p)?,
            None => Self::default(),
        };
        cfg.apply_env(env)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a TOML file; keys it leaves out keep their defaults.
    ///
    /// # Errors
    /// [`ConfigError::Read`] or [`ConfigError::Parse`] (naming an unknown key).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Self::from_toml(&text)
            .map_err(|message| ConfigError::Parse { path: path.display().to_string(), message })
    }

    /// # Errors
    /// The parser's message, which names an unknown or mistyped key.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        // The parser quotes the offending line: never a password with it.
        toml::from_str(text).map_err(|e| redact_urls_in(e.to_string().trim()))
    }

    /// Checks values against each other.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.rate_limit.proxies().map_err(ConfigError::Invalid)?;
        self.chunking.validate().map_err(|e| ConfigError::Invalid(format!("chunking: {e}")))?;
        if self.limits.max_chunk_size.0 < u64::from(self.chunking.max) {
            return Err(ConfigError::Invalid(format!(
                "limits.max_chunk_size ({}) is below chunking.max ({})",
                self.limits.max_chunk_size, self.chunking.max
            )));
        }
        for (name, v) in [
            ("limits.max_chunk_size", self.limits.max_chunk_size),
            ("limits.max_piece_size", self.limits.max_piece_size),
        ] {
            if v.0 == 0 || v.0 > u64::from(u32::MAX) {
                return Err(ConfigError::Invalid(format!("{name} must be between 1 byte and 4 GiB")));
            }
        }
        if self.worker_threads > 1024 {
            return Err(ConfigError::Invalid(format!(
                "worker_threads must be 0 (one fewer than the CPUs) to 1024, not {}",
                self.worker_threads
            )));
        }
        if !(0..=22).contains(&self.storage.compression_level) {
            return Err(ConfigError::Invalid("storage.compression_level must be 0..=22".into()));
        }
        if self.rate_limit.enabled
            && (self.rate_limit.api_per_second == 0
                || self.rate_limit.upload_per_second == 0
                || self.rate_limit.api_burst == 0
                || self.rate_limit.upload_burst == 0)
        {
            return Err(ConfigError::Invalid(
                "rate limits must be positive (or set rate_limit.enabled = false)".into(),
            ));
        }
        if self.storage.objects == ObjectsKind::S3 {
            if !cfg!(feature = "s3") {
                return Err(ConfigError::Invalid(
                    "storage.objects is \"s3\" but this depot was built without the `s3` feature".into(),
                ));
            }
            self.storage.s3.check().map_err(ConfigError::Invalid)?;
        }
        let pack = self.storage.pack_size.0;
        if !(1 << 20..=1 << 40).contains(&pack) {
            return Err(ConfigError::Invalid(format!(
                "storage.pack_size must be 1MiB to 1TiB, not {pack} bytes"
            )));
        }
        if self.gc.reader_ttl.0 < Duration::from_secs(1) || self.gc.claim_timeout.0 < Duration::from_secs(1) {
            return Err(ConfigError::Invalid(
                "gc.reader_ttl and gc.claim_timeout must be at least 1s".into(),
            ));
        }
        if self.storage.shared
            && (self.storage.objects != ObjectsKind::S3
                || !matches!(self.storage.meta, MetaBackend::Postgres(_)))
        {
            return Err(ConfigError::Invalid(
                "storage.shared needs storage.meta = a PostgreSQL URL and storage.objects = \"s3\": \
                 nodes share nothing else"
                    .into(),
            ));
        }
        if !is_host_port(&self.listen) {
            return Err(ConfigError::Invalid(format!(
                "listen `{}` is not host:port (`127.0.0.1:8080`, `[::1]:8080`, `localhost:8080`)",
                self.listen
            )));
        }
        Ok(())
    }

    /// How many async worker threads the server runs, given `cpus`, the
    /// CPUs this process may run on (`std::thread::available_parallelism`,
    /// which heeds the affinity mask and a cgroup's CPU quota):
    /// `worker_threads`, or for `0` one fewer than `cpus`, at least one.
    ///
    /// One fewer, because on a machine whose cores are all busy (the
    /// blocking pool hashing and writing, a client or another program on
    /// the same machine) two workers end up sharing one core, and the
    /// kernel then switches between them once per scheduler tick: a
    /// request held by the worker that waits, waits a whole tick (4 ms at
    /// 250 Hz). docs/PERFORMANCE.md, D2, "Two async workers on one core".
    pub fn async_workers(&self, cpus: usize) -> usize {
        match self.worker_threads {
            0 => cpus.saturating_sub(1).max(1),
            n => n,
        }
    }

    /// The store's options.
    #[cfg(feature = "server")]
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            chunking: self.chunking,
            compression_level: self.storage.compression_level,
            fsync: self.storage.fsync,
            direct_writes: self.storage.direct_writes,
            packs: self.storage.packs,
            pack_size: self.storage.pack_size.0,
            objects: self.storage.objects,
            s3: self.storage.s3.clone(),
            max_object_size: self.limits.max_chunk_size.0.max(self.limits.max_piece_size.0) as u32,
            max_file_size: self.limits.max_file_size.0,
            read_ahead: self.storage.read_ahead,
            min_free: self.storage.min_free.0,
            meta: self.storage.meta.clone(),
            shared: self.storage.shared,
            reader_ttl: self.gc.reader_ttl.0,
            claim_timeout: self.gc.claim_timeout.0,
            gc_grace: self.gc.grace.0,
            chunk_lease: self.gc.chunk_lease.0,
            upload_expiry: self.uploads.expiry.0,
            types: self.types.clone(),
        }
    }
}

/// Whether `s` is `host:port`: an IP address or a host name (resolved when
/// the server binds), then a port. IPv6 addresses go in brackets.
fn is_host_port(s: &str) -> bool {
    if s.parse::<std::net::SocketAddr>().is_ok() {
        return true;
    }
    let Some((host, port)) = s.rsplit_once(':') else { return false };
    port.parse::<u16>().is_ok()
        && !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

mod env;
#[cfg(test)]
mod tests;
mod units;

pub use env::ENV_VARS;
pub use units::{ByteSize, Dur};
