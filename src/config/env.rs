//! The configuration from strings: the `DEPOT_*` environment variables and
//! [`Config::set`], which flags use too.

use std::fmt;
use std::str::FromStr;

use std::path::PathBuf;

use super::{ByteSize, Config, ConfigError};

/// The environment variables the configuration reads, and the key each sets:
/// every key of `config/default.toml` has one (a test checks). Lists are
/// comma-separated. (`DEPOT_SERVER` is the client's and not listed.)
pub const ENV_VARS: &[(&str, &str)] = &[
    ("DEPOT_DATA_DIR", "data_dir"),
    ("DEPOT_LISTEN", "listen"),
    ("DEPOT_LOG", "log"),
    ("DEPOT_LOG_FORMAT", "log_format"),
    ("DEPOT_WORKER_THREADS", "worker_threads"),
    ("DEPOT_CHUNKING_MIN", "chunking.min"),
    ("DEPOT_CHUNKING_AVG", "chunking.avg"),
    ("DEPOT_CHUNKING_MAX", "chunking.max"),
    ("DEPOT_COMPRESSION_LEVEL", "storage.compression_level"),
    ("DEPOT_FSYNC", "storage.fsync"),
    ("DEPOT_DIRECT_WRITES", "storage.direct_writes"),
    ("DEPOT_PACKS", "storage.packs"),
    ("DEPOT_PACK_SIZE", "storage.pack_size"),
    ("DEPOT_READ_AHEAD", "storage.read_ahead"),
    ("DEPOT_MIN_FREE", "storage.min_free"),
    ("DEPOT_OBJECTS", "storage.objects"),
    ("DEPOT_S3_ENDPOINT", "storage.s3.endpoint"),
    ("DEPOT_S3_BUCKET", "storage.s3.bucket"),
    ("DEPOT_S3_REGION", "storage.s3.region"),
    ("DEPOT_S3_PREFIX", "storage.s3.prefix"),
    ("DEPOT_S3_MAX_IN_FLIGHT", "storage.s3.max_in_flight"),
    ("DEPOT_S3_READ_AHEAD", "storage.s3.read_ahead"),
    ("DEPOT_S3_ALLOW_HTTP", "storage.s3.allow_http"),
    ("DEPOT_META", "storage.meta"),
    ("DEPOT_SHARED", "storage.shared"),
    ("DEPOT_READER_TTL", "gc.reader_ttl"),
    ("DEPOT_CLAIM_TIMEOUT", "gc.claim_timeout"),
    ("DEPOT_MAX_FILE_SIZE", "limits.max_file_size"),
    ("DEPOT_MAX_CHUNK_SIZE", "limits.max_chunk_size"),
    ("DEPOT_MAX_PIECE_SIZE", "limits.max_piece_size"),
    ("DEPOT_MAX_PIECES", "limits.max_pieces"),
    ("DEPOT_MAX_MISSING_QUERY", "limits.max_missing_query"),
    ("DEPOT_MAX_JSON_BODY", "limits.max_json_body"),
    ("DEPOT_MAX_BUFFERED", "limits.max_buffered"),
    ("DEPOT_HEADER_TIMEOUT", "limits.header_timeout"),
    ("DEPOT_BODY_IDLE_TIMEOUT", "limits.body_idle_timeout"),
    ("DEPOT_MAX_CONNECTIONS", "limits.max_connections"),
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
    ("DEPOT_TRUSTED_PROXIES", "rate_limit.trusted_proxies"),
    ("DEPOT_AUTH_FAILURES_PER_MINUTE", "rate_limit.auth_failures_per_minute"),
    ("DEPOT_CORS_ORIGINS", "cors.allowed_origins"),
    ("DEPOT_CORS_METHODS", "cors.allowed_methods"),
    ("DEPOT_CORS_HEADERS", "cors.allowed_headers"),
    ("DEPOT_CORS_EXPOSED_HEADERS", "cors.exposed_headers"),
    ("DEPOT_CORS_MAX_AGE", "cors.max_age"),
    ("DEPOT_AUTH_MODE", "auth.mode"),
    ("DEPOT_TOKEN_EXPIRY", "auth.token_expiry"),
    ("DEPOT_LINK_MAX_TTL", "auth.link_max_ttl"),
];

impl Config {
    /// Applies every variable of [`ENV_VARS`] that `env` has.
    pub(super) fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
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
            "worker_threads" => self.worker_threads = parse(value)?,
            "chunking.min" => self.chunking.min = chunk_size(value)?,
            "chunking.avg" => self.chunking.avg = chunk_size(value)?,
            "chunking.max" => self.chunking.max = chunk_size(value)?,
            "storage.compression_level" => self.storage.compression_level = parse(value)?,
            "storage.fsync" => self.storage.fsync = parse(value)?,
            "storage.direct_writes" => self.storage.direct_writes = parse(value)?,
            "storage.packs" => self.storage.packs = parse(value)?,
            "storage.pack_size" => self.storage.pack_size = parse(value)?,
            "storage.read_ahead" => self.storage.read_ahead = parse(value)?,
            "storage.min_free" => self.storage.min_free = parse(value)?,
            "storage.objects" => self.storage.objects = parse(value)?,
            "storage.s3.endpoint" => self.storage.s3.endpoint = value.trim().to_string(),
            "storage.s3.bucket" => self.storage.s3.bucket = value.trim().to_string(),
            "storage.s3.region" => self.storage.s3.region = value.trim().to_string(),
            "storage.s3.prefix" => self.storage.s3.prefix = value.trim().to_string(),
            "storage.s3.max_in_flight" => self.storage.s3.max_in_flight = parse(value)?,
            "storage.s3.read_ahead" => self.storage.s3.read_ahead = parse(value)?,
            "storage.s3.allow_http" => self.storage.s3.allow_http = parse(value)?,
            "storage.meta" => self.storage.meta = value.parse()?,
            "storage.shared" => self.storage.shared = parse(value)?,
            "limits.max_file_size" => self.limits.max_file_size = parse(value)?,
            "limits.max_chunk_size" => self.limits.max_chunk_size = parse(value)?,
            "limits.max_piece_size" => self.limits.max_piece_size = parse(value)?,
            "limits.max_pieces" => self.limits.max_pieces = parse(value)?,
            "limits.max_missing_query" => self.limits.max_missing_query = parse(value)?,
            "limits.max_json_body" => self.limits.max_json_body = parse(value)?,
            "limits.max_buffered" => self.limits.max_buffered = parse(value)?,
            "limits.header_timeout" => self.limits.header_timeout = parse(value)?,
            "limits.body_idle_timeout" => self.limits.body_idle_timeout = parse(value)?,
            "limits.max_connections" => self.limits.max_connections = parse(value)?,
            "types.allowed_extensions" => self.types.allowed_extensions = list(value),
            "types.allowed_types" => self.types.allowed_types = list(value),
            "uploads.expiry" => self.uploads.expiry = parse(value)?,
            "gc.grace" => self.gc.grace = parse(value)?,
            "gc.interval" => self.gc.interval = parse(value)?,
            "gc.chunk_lease" => self.gc.chunk_lease = parse(value)?,
            "gc.reader_ttl" => self.gc.reader_ttl = parse(value)?,
            "gc.claim_timeout" => self.gc.claim_timeout = parse(value)?,
            "rate_limit.enabled" => self.rate_limit.enabled = parse(value)?,
            "rate_limit.api_per_second" => self.rate_limit.api_per_second = parse(value)?,
            "rate_limit.api_burst" => self.rate_limit.api_burst = parse(value)?,
            "rate_limit.upload_per_second" => self.rate_limit.upload_per_second = parse(value)?,
            "rate_limit.upload_burst" => self.rate_limit.upload_burst = parse(value)?,
            "rate_limit.trusted_proxies" => self.rate_limit.trusted_proxies = list(value),
            "rate_limit.auth_failures_per_minute" => self.rate_limit.auth_failures_per_minute = parse(value)?,
            "cors.allowed_origins" => self.cors.allowed_origins = list(value),
            "cors.allowed_methods" => self.cors.allowed_methods = list(value),
            "cors.allowed_headers" => self.cors.allowed_headers = list(value),
            "cors.exposed_headers" => self.cors.exposed_headers = list(value),
            "cors.max_age" => self.cors.max_age = parse(value)?,
            "auth.mode" => self.auth.mode = value.parse()?,
            "auth.token_expiry" => self.auth.token_expiry = parse(value)?,
            "auth.link_max_ttl" => self.auth.link_max_ttl = parse(value)?,
            _ => return Err(format!("unknown key `{key}`")),
        }
        Ok(())
    }
}
