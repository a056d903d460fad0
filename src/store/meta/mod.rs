//! Metadata: the key/value seam under the store. It owns the column
//! families, key layouts and row encodings ([`keys`]), the small
//! [`MetaStore`] trait every backend implements, and the backend-neutral
//! [`Batch`] of writes that becomes visible atomically. Backends:
//! [`RocksMeta`] (RocksDB, the default), `PgMeta` (PostgreSQL, feature
//! `postgres`: several servers on one store; see `postgres` for its tables)
//! and [`MemMeta`] (an in-memory twin for tests, benches and fuzzing).
//! Nothing outside [`rocks`] names RocksDB,
//! and nothing here knows about files, sessions or GC: the store's modules
//! own what the rows mean.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `chunks` | chunk id (32) | [`ChunkRow`], 42 bytes (34 before generations); bloom-filtered: dedup lookups land here |
//! | `gcq` | eligible-at ms (8, BE) ‖ chunk id | empty: chunks that may become garbage, in time order |
//! | `files` | file id (16) | [`FileRecord`](super::FileRecord) as JSON |
//! | `manifests` | file id ‖ segment (4, BE) | packed manifest segment |
//! | `uploads` | `r` ‖ upload id → session record; `p` ‖ upload id ‖ piece (4, BE) → piece; `c` ‖ upload id → piece count | |
//! | `meta` | text keys | schema version, chunker id, counters (i64 LE, added atomically), pending work |
//! | `tenants` | `f` ‖ tenant ‖ `/` ‖ file id; `c` ‖ tenant ‖ `/` ‖ chunk id; `l` ‖ tenant ‖ `/` ‖ chunk id | empty (listing index); occurrences (u64 LE); lease end ms (u64 LE): see [`super::tenant`] |
//! | `auth` | `t` ‖ token id (16); `k/` ‖ name | token record as JSON; the server's 32-byte keys |
//!
//! The trait is blocking and shaped for a shared SQL backend: reads are
//! point gets, batched gets and ordered prefix scans; writes are one batch
//! committed at once, with counters as deltas so concurrent writers never
//! read-modify-write them. Exclusion is the backend's too ([`locks`]): the
//! store takes its chunk-row, file and quota locks from the metadata, so
//! they hold against every process that shares it.

pub mod keys;
pub mod locks;
mod memory;
mod paged;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod rocks;

pub use self::keys::{
    ChunkRow, ChunkState, PACK_DROP_PREFIX, PACK_LIVE_PREFIX, SCHEMA_BEFORE_GENERATIONS, SCHEMA_BEFORE_PACKS,
    SCHEMA_BEFORE_TENANTS, SCHEMA_VERSION, gcq_key, manifest_key, pack_drop_key, pack_in_key, pack_live_key,
};
pub use self::locks::{LocalLocks, LockSpace, Locked, SharedLocks};
pub use self::memory::MemMeta;
#[cfg(feature = "postgres")]
pub use self::postgres::{PgMeta, PgOptions};
pub use self::rocks::RocksMeta;

use super::error::Result;
use super::id::ChunkId;

/// A key and its value, as scans yield them.
pub type KeyValue = (Box<[u8]>, Box<[u8]>);

/// An ordered scan; an error ends it.
pub type KvIter<'a> = Box<dyn Iterator<Item = Result<KeyValue>> + 'a>;

/// A column family: one ordered key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cf {
    /// Chunk rows by chunk id.
    Chunks,
    /// The GC queue, in eligible-at order.
    Gcq,
    /// File records by file id.
    Files,
    /// Manifest segments by file id and segment.
    Manifests,
    /// Upload sessions, their pieces and piece counts.
    Uploads,
    /// Store-wide settings, counters and pending work.
    Meta,
    /// Per-tenant rows: the listing index, committed and leased chunks.
    Tenants,
    /// Access tokens and the server's keys.
    Auth,
}

impl Cf {
    /// Every family, in a fixed order (backends index by it).
    pub const ALL: [Cf; 8] =
        [Cf::Chunks, Cf::Gcq, Cf::Files, Cf::Manifests, Cf::Uploads, Cf::Meta, Cf::Tenants, Cf::Auth];

    /// The family's stable name (RocksDB column family, table name).
    pub fn name(self) -> &'static str {
        match self {
            Cf::Chunks => "chunks",
            Cf::Gcq => "gcq",
            Cf::Files => "files",
            Cf::Manifests => "manifests",
            Cf::Uploads => "uploads",
            Cf::Meta => "meta",
            Cf::Tenants => "tenants",
            Cf::Auth => "auth",
        }
    }

    /// Position in [`Cf::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Store-wide counters. Writers add deltas; no writer reads one to write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Files,
    LogicalBytes,
    UniqueChunks,
    UniqueBytes,
    StoredBytes,
}

impl Counter {
    pub const ALL: [Counter; 5] = [
        Counter::Files,
        Counter::LogicalBytes,
        Counter::UniqueChunks,
        Counter::UniqueBytes,
        Counter::StoredBytes,
    ];

    /// Where the counter lives in [`Cf::Meta`] (its value: i64, little endian).
    pub fn key(self) -> &'static [u8] {
        match self {
            Counter::Files => b"counter/files",
            Counter::LogicalBytes => b"counter/logical_bytes",
            Counter::UniqueChunks => b"counter/unique_chunks",
            Counter::UniqueBytes => b"counter/unique_bytes",
            Counter::StoredBytes => b"counter/stored_bytes",
        }
    }
}

/// Decodes a stored counter value (absent or malformed reads as 0, as the
/// merge operator has always treated it).
pub fn decode_counter(b: &[u8]) -> i64 {
    b.try_into().map(i64::from_le_bytes).unwrap_or(0)
}

/// One write in a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Sets `key` to `value`.
    Put { cf: Cf, key: Box<[u8]>, value: Box<[u8]> },
    /// Removes `key` (absent is fine).
    Delete { cf: Cf, key: Box<[u8]> },
    /// Adds `delta` to the counter at `key` in [`Cf::Meta`] (absent
    /// counts as 0): a [`Counter`] or a tally such as a tenant's usage.
    Add { key: Box<[u8]>, delta: i64 },
    /// Overwrites a counter (repair).
    SetCounter { counter: Counter, value: i64 },
}

/// Writes that become visible together, in order (a later write to the same
/// key wins). Build it, then hand it to [`MetaStore::write`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    pub fn put(&mut self, cf: Cf, key: &[u8], value: &[u8]) {
        self.ops.push(Op::Put { cf, key: key.into(), value: value.into() });
    }

    pub fn delete(&mut self, cf: Cf, key: &[u8]) {
        self.ops.push(Op::Delete { cf, key: key.into() });
    }

    /// Adds `delta` to `counter`; a zero delta writes nothing.
    pub fn add(&mut self, counter: Counter, delta: i64) {
        self.add_at(counter.key(), delta);
    }

    /// Adds `delta` to the counter stored at `key` in [`Cf::Meta`] (i64,
    /// little endian; read it with [`decode_counter`]); a zero delta
    /// writes nothing.
    pub fn add_at(&mut self, key: &[u8], delta: i64) {
        if delta != 0 {
            self.ops.push(Op::Add { key: key.into(), delta });
        }
    }

    /// Overwrites a counter (repair).
    pub fn set_counter(&mut self, counter: Counter, value: i64) {
        self.ops.push(Op::SetCounter { counter, value });
    }

    /// Overwrites the counter stored at `key` in [`Cf::Meta`] (repair; the
    /// [`Batch::add_at`] counters): a put of its value as [`decode_counter`]
    /// reads it.
    pub fn set_at(&mut self, key: &[u8], value: i64) {
        self.put(Cf::Meta, key, &value.to_le_bytes());
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The writes, in order (for backends).
    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }
}

/// A metadata backend: ordered key spaces ([`Cf`]), atomic batches and
/// counters. Every method blocks.
pub trait MetaStore: Send + Sync + 'static {
    /// # Errors
    /// Backend failures.
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Looks up many keys at once; the answer is in `keys` order.
    ///
    /// # Errors
    /// Backend failures.
    fn multi_get(&self, cf: Cf, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>>;

    /// Pairs whose key starts with `prefix`, in ascending key order, from
    /// `start` (inclusive; the prefix itself when `None`).
    fn scan<'a>(&'a self, cf: Cf, prefix: &'a [u8], start: Option<&'a [u8]>) -> KvIter<'a>;

    /// Pairs whose key starts with `prefix`, in descending key order,
    /// strictly before `before` (from the last such key when `None`).
    fn scan_rev<'a>(&'a self, cf: Cf, prefix: &'a [u8], before: Option<&'a [u8]>) -> KvIter<'a>;

    /// A counter's value (0 when never written).
    ///
    /// # Errors
    /// Backend failures.
    fn counter(&self, counter: Counter) -> Result<i64>;

    /// Commits `batch` atomically. With `durable`, it (and every earlier
    /// write) survives a crash once this returns.
    ///
    /// # Errors
    /// Backend failures; nothing of the batch is applied then.
    fn write(&self, batch: Batch, durable: bool) -> Result<()>;

    /// Persists everything written so far (clean shutdown).
    ///
    /// # Errors
    /// Backend failures.
    fn flush(&self) -> Result<()>;

    /// The in-process layer of [`Locked`]: one mutex per lock key, shared
    /// by every store opened over this backend.
    fn local_locks(&self) -> &LocalLocks;

    /// A session of locks that other processes honour, or `None` when no
    /// other process can share this backend (RocksDB, memory).
    ///
    /// # Errors
    /// Backend failures (no session could be had).
    fn shared_locks(&self) -> Result<Option<Box<dyn SharedLocks>>> {
        Ok(None)
    }

    /// The backend's own clock (ms since the Unix epoch), when it is shared
    /// with other processes and has one: the clock every node of a store
    /// keeps its deadlines on. `None`: the process's clock is the store's.
    ///
    /// # Errors
    /// Backend failures.
    fn clock_ms(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    /// Writes a consistent copy of everything committed so far into the
    /// new directory `dest` (RocksDB's checkpoint: its files hard-linked
    /// where `dest` is on the same filesystem, copied where not), which
    /// opens as this backend's data. For [`crate::store::Store::backup`].
    ///
    /// # Errors
    /// [`crate::store::Error::Conflict`] for a backend that has no such copy (memory,
    /// PostgreSQL: its own tools back it up); backend and I/O failures.
    fn checkpoint(&self, dest: &std::path::Path) -> Result<()> {
        let _ = dest;
        Err(super::error::Error::Conflict(
            "this metadata engine is backed up with its own tools, not by depot".into(),
        ))
    }
}

impl dyn MetaStore {
    /// # Errors
    /// Backend failures or an undecodable row.
    pub fn chunk_row(&self, id: &ChunkId) -> Result<Option<ChunkRow>> {
        self.get(Cf::Chunks, id.as_bytes())?.map(|b| ChunkRow::decode(&b)).transpose()
    }

    /// # Errors
    /// Backend failures or undecodable rows.
    pub fn chunk_rows(&self, ids: &[ChunkId]) -> Result<Vec<Option<ChunkRow>>> {
        let keys: Vec<&[u8]> = ids.iter().map(|i| i.as_bytes().as_slice()).collect();
        self.multi_get(Cf::Chunks, &keys)?
            .into_iter()
            .map(|v| v.map(|b| ChunkRow::decode(&b)).transpose())
            .collect()
    }
}

/// The smallest key greater than every key starting with `prefix`, or
/// `None` when no such key exists (empty or all-0xff prefix).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests;
