//! Configuration: one documented struct. Values come from, in rising order:
//! the built-in defaults, a TOML file (`--config` / `DEPOT_CONFIG`), the
//! `DEPOT_*` environment variables listed in [`ENV_VARS`], and command-line
//! flags. `config/default.toml` is the user-facing reference; a test loads it
//! and checks it equals the defaults. An unknown key in a file is an error
//! naming the key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[cfg(feature = "server")]
use crate::store::StoreOptions;
use crate::store::{ChunkerParams, FsyncPolicy, TypePolicy};

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
    pub chunking: ChunkerParams,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
    pub types: TypePolicy,
    pub uploads: UploadsConfig,
    pub gc: GcConfig,
    pub rate_limit: RateLimitConfig,
    pub cors: CorsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("depot-data"),
            listen: "127.0.0.1:8080".into(),
            log: "info".into(),
            log_format: LogFormat::Text,
            chunking: ChunkerParams::default(),
            storage: StorageConfig::default(),
            limits: LimitsConfig::default(),
            types: TypePolicy::default(),
            uploads: UploadsConfig::default(),
            gc: GcConfig::default(),
            rate_limit: RateLimitConfig::default(),
            cors: CorsConfig::default(),
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

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            v => Err(format!("`{v}` is not one of text, json")),
        }
    }
}

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
    /// Chunks read ahead per download.
    pub read_ahead: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self { compression_level: 1, fsync: FsyncPolicy::Batch, read_ahead: 4 }
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
    /// Largest JSON request body (manifest commits).
    pub max_json_body: ByteSize,
    /// Most upload bytes held in memory at once, across all requests: native
    /// chunk bodies and seed pieces. A request waits for room; one body is
    /// always let through, however large.
    pub max_buffered: ByteSize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_file_size: ByteSize(1 << 40),
            max_chunk_size: ByteSize(4 << 20),
            max_piece_size: ByteSize(64 << 20),
            max_pieces: 100_000,
            max_missing_query: 100_000,
            max_json_body: ByteSize(256 << 20),
            max_buffered: ByteSize(256 << 20),
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
}

impl Default for GcConfig {
    fn default() -> Self {
        Self {
            grace: Dur(Duration::from_secs(3600)),
            interval: Dur(Duration::from_secs(600)),
            chunk_lease: Dur(Duration::from_secs(24 * 3600)),
        }
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
    /// Take the client address from `X-Forwarded-For` / `Forwarded` (only
    /// behind a proxy you trust).
    pub trust_forwarded: bool,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            api_per_second: 50,
            api_burst: 200,
            upload_per_second: 500,
            upload_burst: 2000,
            trust_forwarded: false,
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
            ]),
            max_age: Dur(Duration::from_secs(3600)),
        }
    }
}

/// The environment variables the configuration reads, and the key each sets:
/// every key of `config/default.toml` has one (a test checks). Lists are
/// comma-separated. (`DEPOT_SERVER` is the client's and not listed.)
pub const ENV_VARS: &[(&str, &str)] = &[
    ("DEPOT_DATA_DIR", "data_dir"),
    ("DEPOT_LISTEN", "listen"),
    ("DEPOT_LOG", "log"),
    ("DEPOT_LOG_FORMAT", "log_format"),
    ("DEPOT_CHUNKING_MIN", "chunking.min"),
    ("DEPOT_CHUNKING_AVG", "chunking.avg"),
    ("DEPOT_CHUNKING_MAX", "chunking.max"),
    ("DEPOT_COMPRESSION_LEVEL", "storage.compression_level"),
    ("DEPOT_FSYNC", "storage.fsync"),
    ("DEPOT_READ_AHEAD", "storage.read_ahead"),
    ("DEPOT_MAX_FILE_SIZE", "limits.max_file_size"),
    ("DEPOT_MAX_CHUNK_SIZE", "limits.max_chunk_size"),
    ("DEPOT_MAX_PIECE_SIZE", "limits.max_piece_size"),
    ("DEPOT_MAX_PIECES", "limits.max_pieces"),
    ("DEPOT_MAX_MISSING_QUERY", "limits.max_missing_query"),
    ("DEPOT_MAX_JSON_BODY", "limits.max_json_body"),
    ("DEPOT_MAX_BUFFERED", "limits.max_buffered"),
    ("DEPOT_ALLOWED_EXTENSIONS", "types.allowed_extensions"),
    ("DEPOT_ALLOWED_TYPES", "types.allowed_types"),
    ("DEPOT_UPLOAD_EXPIRY", "uploads.expiry"),
    ("DEPOT_GC_GRACE", "gc.grace"),
    ("DEPOT_GC_INTERVAL", "gc.interval"),
    ("DEPOT_CHUNK_LEASE", "gc.chunk_lease"),
    ("DEPOT_RATE_LIMIT", "rate_limit.enabled"),
    ("DEPOT_RATE_LIMIT_API_PER_SECOND", "rate_limit.api_per_second"),
    ("DEPOT_RATE_LIMIT_API_BURST", "rate_limit.api_burst"),
    ("DEPOT_RATE_LIMIT_UPLOAD_PER_SECOND", "rate_limit.upload_per_second"),
    ("DEPOT_RATE_LIMIT_UPLOAD_BURST", "rate_limit.upload_burst"),
    ("DEPOT_TRUST_FORWARDED", "rate_limit.trust_forwarded"),
    ("DEPOT_CORS_ORIGINS", "cors.allowed_origins"),
    ("DEPOT_CORS_METHODS", "cors.allowed_methods"),
    ("DEPOT_CORS_HEADERS", "cors.allowed_headers"),
    ("DEPOT_CORS_EXPOSED_HEADERS", "cors.exposed_headers"),
    ("DEPOT_CORS_MAX_AGE", "cors.max_age"),
];

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
        toml::from_str(text).map_err(|e| e.to_string().trim().to_string())
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        for (var, key) in ENV_VARS {
            if let Some(value) = env(var) {
                self.set(key, &value)
                    .map_err(|message| ConfigError::Env { var: var.to_string(), message })?;
            }
        }
        Ok(())
    }

    /// Sets one key from a string (environment variables, flags).
    ///
    /// # Errors
    /// A message when the key is unknown or the value does not parse.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        fn parse<T: FromStr>(v: &str) -> Result<T, String>
        where
            T::Err: fmt::Display,
        {
            v.trim().parse().map_err(|e: T::Err| e.to_string())
        }
        fn list(v: &str) -> Vec<String> {
            v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
        }
        /// A chunking size: bytes, with a unit or without.
        fn chunk_size(v: &str) -> Result<u32, String> {
            let n = parse::<ByteSize>(v)?.0;
            u32::try_from(n).map_err(|_| format!("`{}` is above 4 GiB", v.trim()))
        }
        match key {
            "data_dir" => self.data_dir = PathBuf::from(value),
            "listen" => self.listen = value.trim().to_string(),
            "log" => self.log = value.to_string(),
            "log_format" => self.log_format = parse(value)?,
            "chunking.min" => self.chunking.min = chunk_size(value)?,
            "chunking.avg" => self.chunking.avg = chunk_size(value)?,
            "chunking.max" => self.chunking.max = chunk_size(value)?,
            "storage.compression_level" => self.storage.compression_level = parse(value)?,
            "storage.fsync" => {
                self.storage.fsync = match value.trim() {
                    "always" => FsyncPolicy::Always,
                    "batch" => FsyncPolicy::Batch,
                    "never" => FsyncPolicy::Never,
                    v => return Err(format!("`{v}` is not one of always, batch, never")),
                }
            }
            "storage.read_ahead" => self.storage.read_ahead = parse(value)?,
            "limits.max_file_size" => self.limits.max_file_size = parse(value)?,
            "limits.max_chunk_size" => self.limits.max_chunk_size = parse(value)?,
            "limits.max_piece_size" => self.limits.max_piece_size = parse(value)?,
            "limits.max_pieces" => self.limits.max_pieces = parse(value)?,
            "limits.max_missing_query" => self.limits.max_missing_query = parse(value)?,
            "limits.max_json_body" => self.limits.max_json_body = parse(value)?,
            "limits.max_buffered" => self.limits.max_buffered = parse(value)?,
            "types.allowed_extensions" => self.types.allowed_extensions = list(value),
            "types.allowed_types" => self.types.allowed_types = list(value),
            "uploads.expiry" => self.uploads.expiry = parse(value)?,
            "gc.grace" => self.gc.grace = parse(value)?,
            "gc.interval" => self.gc.interval = parse(value)?,
            "gc.chunk_lease" => self.gc.chunk_lease = parse(value)?,
            "rate_limit.enabled" => self.rate_limit.enabled = parse(value)?,
            "rate_limit.api_per_second" => self.rate_limit.api_per_second = parse(value)?,
            "rate_limit.api_burst" => self.rate_limit.api_burst = parse(value)?,
            "rate_limit.upload_per_second" => self.rate_limit.upload_per_second = parse(value)?,
            "rate_limit.upload_burst" => self.rate_limit.upload_burst = parse(value)?,
            "rate_limit.trust_forwarded" => self.rate_limit.trust_forwarded = parse(value)?,
            "cors.allowed_origins" => self.cors.allowed_origins = list(value),
            "cors.allowed_methods" => self.cors.allowed_methods = list(value),
            "cors.allowed_headers" => self.cors.allowed_headers = list(value),
            "cors.exposed_headers" => self.cors.exposed_headers = list(value),
            "cors.max_age" => self.cors.max_age = parse(value)?,
            _ => return Err(format!("unknown key `{key}`")),
        }
        Ok(())
    }

    /// Checks values against each other.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
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
        if !is_host_port(&self.listen) {
            return Err(ConfigError::Invalid(format!(
                "listen `{}` is not host:port (`127.0.0.1:8080`, `[::1]:8080`, `localhost:8080`)",
                self.listen
            )));
        }
        Ok(())
    }

    /// The store's options.
    #[cfg(feature = "server")]
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            chunking: self.chunking,
            compression_level: self.storage.compression_level,
            fsync: self.storage.fsync,
            max_object_size: self.limits.max_chunk_size.0.max(self.limits.max_piece_size.0) as u32,
            max_file_size: self.limits.max_file_size.0,
            read_ahead: self.storage.read_ahead,
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

/// A byte count, written as an integer or with a unit: `65536`, `64KiB`,
/// `1 MiB`, `10MB`, `1GiB`, `2TiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a size"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => 1 << 10,
            "kb" => 1000,
            "m" | "mib" => 1 << 20,
            "mb" => 1_000_000,
            "g" | "gib" => 1 << 30,
            "gb" => 1_000_000_000,
            "t" | "tib" => 1 << 40,
            "tb" => 1_000_000_000_000,
            u => return Err(format!("unknown size unit `{u}` in `{s}`")),
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(|| format!("`{s}` is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] =
            [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        for (m, u) in UNITS {
            if self.0 >= m && self.0 % m == 0 {
                return write!(f, "{}{u}", self.0 / m);
            }
        }
        write!(f, "{}", self.0)
    }
}

/// Serde for values written as a bare integer or a string with a unit: they
/// serialise as their display form and deserialise from either.
macro_rules! int_or_unit_serde {
    ($t:ty, $from_int:expr) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum Raw {
                    Int(u64),
                    Str(String),
                }
                match Raw::deserialize(d)? {
                    Raw::Int(n) => Ok($from_int(n)),
                    Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
                }
            }
        }
    };
}

int_or_unit_serde!(ByteSize, ByteSize);
int_or_unit_serde!(Dur, |n| Dur(Duration::from_secs(n)));

/// A duration, written as seconds or with a unit: `90`, `500ms`, `30s`,
/// `15m`, `24h`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a duration"))?;
        let ms = match unit.trim() {
            "ms" => Some(n),
            "" | "s" => n.checked_mul(1000),
            "m" => n.checked_mul(60_000),
            "h" => n.checked_mul(3_600_000),
            "d" => n.checked_mul(86_400_000),
            u => return Err(format!("unknown duration unit `{u}` in `{s}` (use ms, s, m, h, d)")),
        };
        ms.map(|ms| Dur(Duration::from_millis(ms))).ok_or_else(|| format!("`{s}` is too long"))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis() as u64;
        for (m, u) in [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s")] {
            if ms >= m && ms % m == 0 {
                return write!(f, "{}{u}", ms / m);
            }
        }
        write!(f, "{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leaves of a TOML document, by dotted key.
    fn leaves(v: &toml::Value, prefix: &str, out: &mut std::collections::BTreeMap<String, toml::Value>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    leaves(v, &key, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.clone());
            }
        }
    }

    fn keys_of(cfg: &Config) -> std::collections::BTreeMap<String, toml::Value> {
        let mut out = Default::default();
        leaves(&toml::Value::try_from(cfg).unwrap(), "", &mut out);
        out
    }

    #[test]
    fn every_key_of_the_reference_has_an_environment_variable() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
        let mut documented = Default::default();
        leaves(
            &std::fs::read_to_string(path).unwrap().parse::<toml::Table>().unwrap().into(),
            "",
            &mut documented,
        );
        let with_var: std::collections::BTreeSet<&str> = ENV_VARS.iter().map(|(_, k)| *k).collect();
        let missing: Vec<&String> = documented.keys().filter(|k| !with_var.contains(k.as_str())).collect();
        assert!(missing.is_empty(), "keys without an environment variable: {missing:?}");
        let stale: Vec<&&str> = with_var.iter().filter(|k| !documented.contains_key(**k)).collect();
        assert!(stale.is_empty(), "variables for keys config/default.toml does not have: {stale:?}");
        let vars: std::collections::BTreeSet<&str> = ENV_VARS.iter().map(|(v, _)| *v).collect();
        assert_eq!(vars.len(), ENV_VARS.len(), "a variable is listed twice");
    }

    /// Each variable, set alone, changes exactly its key.
    #[test]
    fn every_environment_variable_sets_its_key() {
        let sample = |key: &str| match key {
            "data_dir" => "/srv/depot",
            "listen" => "localhost:9000",
            "log" => "depot=debug",
            "log_format" => "json",
            "chunking.min" => "32KiB",
            "chunking.avg" => "131072",
            "chunking.max" => "2MiB",
            "storage.compression_level" => "3",
            "storage.fsync" => "always",
            "storage.read_ahead" => "8",
            "limits.max_file_size" => "10GiB",
            "limits.max_chunk_size" => "8MiB",
            "limits.max_piece_size" => "16MiB",
            "limits.max_pieces" => "500",
            "limits.max_missing_query" => "1000",
            "limits.max_json_body" => "1MiB",
            "limits.max_buffered" => "16MiB",
            "types.allowed_extensions" => "png, jpg",
            "types.allowed_types" => "image/*,application/pdf",
            "uploads.expiry" => "2h",
            "gc.grace" => "5m",
            "gc.interval" => "0",
            "gc.chunk_lease" => "12h",
            "rate_limit.enabled" => "false",
            "rate_limit.api_per_second" => "7",
            "rate_limit.api_burst" => "9",
            "rate_limit.upload_per_second" => "70",
            "rate_limit.upload_burst" => "90",
            "rate_limit.trust_forwarded" => "true",
            "cors.allowed_origins" => "https://a.example,https://b.example",
            "cors.allowed_methods" => "GET,HEAD",
            "cors.allowed_headers" => "Range",
            "cors.exposed_headers" => "ETag",
            "cors.max_age" => "10m",
            other => panic!("no sample value for {other}"),
        };
        let defaults = keys_of(&Config::default());
        for (var, key) in ENV_VARS {
            let cfg = Config::load(None, |k| (k == *var).then(|| sample(key).to_string()))
                .unwrap_or_else(|e| panic!("{var}={}: {e}", sample(key)));
            let now = keys_of(&cfg);
            let changed: Vec<&String> = now.keys().filter(|k| now.get(*k) != defaults.get(*k)).collect();
            assert_eq!(changed, [key], "{var}={}", sample(key));
        }
        let cfg = Config::load(None, |k| (k == "DEPOT_ALLOWED_TYPES").then(|| "image/*, text/plain".into()))
            .unwrap();
        assert_eq!(cfg.types.allowed_types, ["image/*", "text/plain"]);
        let e =
            Config::load(None, |k| (k == "DEPOT_RATE_LIMIT_API_BURST").then(|| "many".into())).unwrap_err();
        assert!(e.to_string().contains("DEPOT_RATE_LIMIT_API_BURST"), "{e}");
    }

    #[test]
    fn shipped_default_toml_is_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
        let cfg = Config::from_file(&path).unwrap();
        assert_eq!(cfg, Config::default());
        cfg.validate().unwrap();
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_toml("listen = \"127.0.0.1:1\"\nlisten_port = 3\n").unwrap_err();
        assert!(e.contains("listen_port"), "{e}");
        let e = Config::from_toml("[gc]\ngrace_period = \"1h\"\n").unwrap_err();
        assert!(e.contains("grace_period"), "{e}");
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/from/file\"\n[gc]\ngrace = \"5m\"\n",
        )
        .unwrap();
        let env = |k: &str| (k == "DEPOT_DATA_DIR").then(|| "/from/env".to_string());
        let cfg = Config::load(Some(&path), env).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:9000");
        assert_eq!(cfg.data_dir, PathBuf::from("/from/env"));
        assert_eq!(cfg.gc.grace.0, Duration::from_secs(300));
        assert_eq!(cfg.gc.interval, GcConfig::default().interval);
        let bad = |k: &str| (k == "DEPOT_GC_GRACE").then(|| "soon".to_string());
        let e = Config::load(None, bad).unwrap_err().to_string();
        assert!(e.contains("DEPOT_GC_GRACE"), "{e}");
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!("64KiB".parse::<ByteSize>().unwrap().0, 65536);
        assert_eq!("1 GiB".parse::<ByteSize>().unwrap().0, 1 << 30);
        assert_eq!("10MB".parse::<ByteSize>().unwrap().0, 10_000_000);
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(64 << 20).to_string(), "64MiB");
        assert_eq!("24h".parse::<Dur>().unwrap().0, Duration::from_secs(86400));
        assert_eq!("500ms".parse::<Dur>().unwrap().0, Duration::from_millis(500));
        assert_eq!(Dur(Duration::from_secs(90)).to_string(), "90s");
        assert!("1y".parse::<Dur>().is_err());
    }

    #[test]
    fn inconsistent_values_are_refused() {
        let mut c = Config::default();
        c.limits.max_chunk_size = ByteSize(1024);
        assert!(c.validate().is_err());
        for bad in ["localhost", "localhost:", ":8080", "local host:80", "host:99999", "-a:80"] {
            let c = Config { listen: bad.into(), ..Config::default() };
            assert!(c.validate().is_err(), "{bad}");
        }
        for good in ["localhost:8081", "0.0.0.0:8080", "[::1]:0", "depot.example.org:80"] {
            let c = Config { listen: good.into(), ..Config::default() };
            c.validate().unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        let mut c = Config::default();
        c.chunking.avg = 3000;
        assert!(c.validate().is_err());
    }
}
