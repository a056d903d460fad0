//! The content-addressed store: chunks named by their BLAKE3 hash in an
//! object store ([`objects`]), file manifests and refcounts in a metadata
//! backend ([`meta`]: RocksDB by default, PostgreSQL for a shared store, an
//! in-memory twin for tests). Every protocol drives these operations;
//! nothing here knows about HTTP, and only `meta::rocks` knows about RocksDB.
//!
//! Write order makes a crash harmless: an object is durable (the object
//! store's barrier) before any row makes it usable, and a file becomes
//! visible in one synced batch holding its manifest and refcount increments.
//! A crash leaves at worst an unreferenced object, a zero-refcount row or,
//! on a generational object store (S3), a row a writer claimed and never
//! flipped; GC takes each in its time. On such a store every write of a
//! chunk goes to a fresh object key, so no delete ever hits live data
//! (`generations`, docs/DESIGN.md "Generations").
//!
//! Concurrency: chunk rows are guarded by 256 stripe locks (by first hash
//! byte), always taken in ascending order; puts, leases, commits and GC all
//! change rows only under them, and commit those changes through the locks
//! (`meta::locks`), so the exclusion holds across every process sharing the
//! metadata. Every method here blocks: call it through [`Store::blocking`]
//! from async code.

pub mod buffer;
pub mod chunker;
pub mod clock;
pub(crate) mod enums;
pub mod error;
pub mod filetype;
pub mod id;
pub mod manifest;
pub mod meta_backend;
pub mod name;
pub mod object;
pub mod objects;

#[cfg(feature = "server")]
mod append;
#[cfg(feature = "server")]
mod backlog;
#[cfg(feature = "server")]
mod backup;
#[cfg(feature = "server")]
mod cache;
#[cfg(feature = "server")]
mod chunk_read;
#[cfg(feature = "server")]
mod chunks;
#[cfg(feature = "server")]
mod compact;
#[cfg(feature = "server")]
mod concat;
#[cfg(feature = "server")]
mod engine;
#[cfg(feature = "server")]
mod files;
#[cfg(feature = "server")]
mod frame;
#[cfg(feature = "server")]
mod gc;
#[cfg(feature = "server")]
mod generations;
#[cfg(feature = "server")]
mod holds;
#[cfg(feature = "server")]
mod ingest;
#[cfg(feature = "server")]
pub mod meta;
#[cfg(feature = "server")]
mod migrate;
#[cfg(feature = "server")]
mod pieces;
#[cfg(feature = "server")]
mod quota;
#[cfg(feature = "server")]
mod read;
#[cfg(feature = "server")]
mod readers;
#[cfg(feature = "server")]
mod record;
#[cfg(feature = "server")]
mod search;
#[cfg(feature = "server")]
mod session;
#[cfg(feature = "server")]
mod staging;
#[cfg(feature = "server")]
mod tenant;
#[cfg(feature = "server")]
mod token_rows;
#[cfg(feature = "server")]
mod tokens;
#[cfg(feature = "server")]
mod verify;

pub use self::chunker::{Chunker, ChunkerParams};
pub use self::clock::{Clock, DbClock, ManualClock, SystemClock};
pub use self::error::{Error, Result};
pub use self::filetype::TypePolicy;
pub use self::id::{ChunkId, FileId, UploadId};
pub use self::manifest::Entry;
pub use self::meta_backend::MetaBackend;
pub use self::name::FileName;
pub use self::objects::{
    Faulty, FsObjects, FsyncPolicy, MemObjects, ObjectEntry, ObjectKey, ObjectStore, PackedObjects, Packs,
};

#[cfg(feature = "server")]
pub(crate) use self::engine::lock;
#[cfg(feature = "server")]
pub use self::{
    append::{AppendOutcome, Appender, NewStream},
    backlog::GcBacklog,
    backup::BackupReport,
    chunk_read::ChunkBody,
    chunks::Put,
    compact::{CompactReport, PackReport},
    engine::{Activity, Stats, Store, StoreOptions, open_objects},
    files::NewFile,
    frame::{WINDOW_LOG_MAX, declared_size, decode_frame, decode_within},
    gc::GcReport,
    ingest::Ingest,
    meta::{Batch, MemMeta, MetaStore, RocksMeta},
    name::{DEFAULT_TENANT, Tenant, View},
    pieces::{PieceState, SeedSpec},
    quota::{Quota, Usage},
    read::{ByteStream, ReadGuard},
    record::{FileRecord, FileState},
    search::NameFilter,
    session::{Concat, StreamState, UploadRecord, UploadState},
    staging::{COMMIT_PROTOCOL, CommitProgress, MAX_SEGMENTS, NewCommit},
    token_rows::{Scope, Scopes, TOKEN_CACHE_TTL, TokenId, TokenRecord},
    verify::VerifyReport,
};
