//! `store::Error`: what can go wrong in the store, in domain terms. No status
//! codes here; each protocol maps these to its own wire form.

use super::id::ChunkId;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("file {0} not found")]
    FileNotFound(String),
    #[error("upload {0} not found")]
    UploadNotFound(String),
    #[error("upload {0} has expired")]
    UploadExpired(String),
    #[error("chunk {0} not found")]
    ChunkNotFound(ChunkId),
    #[error("{} chunk(s) missing", .0.len())]
    MissingChunks(Vec<ChunkId>),
    #[error("content hashes to {actual}, not {expected}")]
    HashMismatch { expected: ChunkId, actual: ChunkId },
    #[error("{what} of {got} bytes exceeds the limit of {limit} bytes")]
    TooLarge { what: &'static str, limit: u64, got: u64 },
    #[error("{0}")]
    InvalidInput(String),
    /// The data dir's filesystem is below its free-space reserve (or full).
    #[error("not enough space: {free} bytes free on the data dir, the reserve is {reserve} bytes")]
    InsufficientStorage { free: u64, reserve: u64 },
    /// An upload or commit would pass a cap of the tenant's quota.
    #[error("tenant `{tenant}` would pass its quota of {limit} {what} (it would be at {would_be})")]
    QuotaExceeded { tenant: String, what: &'static str, limit: u64, would_be: u64 },
    #[error("file type rejected: {0}")]
    TypeRejected(String),
    #[error("conflict: {0}")]
    Conflict(String),
    /// A newer request (on this node or another) took upload `0` over
    /// while this one appended: nothing of this one's since its last
    /// durable point was kept.
    #[error("a newer request for upload {0} took it over")]
    TakenOver(String),
    #[error("chunk {id} is damaged: {reason}")]
    Corrupt { id: ChunkId, reason: String },
    #[error("corrupt metadata: {0}")]
    CorruptMetadata(String),
    #[error("the store at {0} is in use by another process")]
    Locked(String),
    #[error("store schema version {found} is not the supported version {expected}")]
    SchemaMismatch { found: String, expected: String },
    #[error("store was created with chunker {found}, configured chunker is {expected}")]
    ChunkerMismatch { found: String, expected: String },
    /// A storage backend cannot be reached for now: its connection was lost
    /// or it is restarting. Nothing was changed by the failed call that the
    /// caller can rely on either way, and the same request may succeed
    /// shortly (HTTP answers it 503 with `Retry-After`, showing the text).
    /// The text names the backend; only an error at open (for the operator)
    /// adds its address, with the password redacted.
    #[error("storage backend unavailable: {0}")]
    Unavailable(String),
    /// A storage backend failed (the metadata database, later a remote
    /// object store); the source says how.
    #[error("storage backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("background task failed: {0}")]
    Task(String),
}

impl Error {
    /// Whether the error is the client's doing (bad input, absent ids…) rather
    /// than the server's.
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            Error::Corrupt { .. }
                | Error::CorruptMetadata(_)
                | Error::Locked(_)
                | Error::SchemaMismatch { .. }
                | Error::ChunkerMismatch { .. }
                | Error::Backend(_)
                | Error::Unavailable(_)
                | Error::Io(_)
                | Error::Task(_)
        )
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::Task(e.to_string())
    }
}
