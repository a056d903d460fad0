//! RocksDB: column families, key layouts, row encodings, batches. Only the
//! store's own modules use this; protocols never see RocksDB.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `chunks` | chunk id (32) | [`ChunkRow`], 34 bytes; bloom-filtered: dedup lookups land here |
//! | `gcq` | eligible-at ms (8, BE) ‖ chunk id | empty: chunks that may become garbage, in time order |
//! | `files` | file id (16) | [`FileRecord`](super::FileRecord) as JSON |
//! | `manifests` | file id ‖ segment (4, BE) | packed manifest segment |
//! | `uploads` | `r` ‖ upload id → session record; `p` ‖ upload id ‖ piece (4, BE) → piece; `c` ‖ upload id → piece count | |
//! | `meta` | text keys | schema version, chunker id, counters (merge: i64 add), pending work |

use std::path::Path;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, Direction, IteratorMode,
    MergeOperands, Options, WriteBatch, WriteOptions,
};

use super::error::{Error, Result};
use super::id::ChunkId;

pub const SCHEMA_VERSION: u32 = 1;

/// A key and its value, as iterators yield them.
pub type KeyValue = (Box<[u8]>, Box<[u8]>);

#[derive(Debug, Clone, Copy)]
pub enum Cf {
    Chunks,
    Gcq,
    Files,
    Manifests,
    Uploads,
    Meta,
}

impl Cf {
    const ALL: [Cf; 6] = [Cf::Chunks, Cf::Gcq, Cf::Files, Cf::Manifests, Cf::Uploads, Cf::Meta];

    fn name(self) -> &'static str {
        match self {
            Cf::Chunks => "chunks",
            Cf::Gcq => "gcq",
            Cf::Files => "files",
            Cf::Manifests => "manifests",
            Cf::Uploads => "uploads",
            Cf::Meta => "meta",
        }
    }
}

/// Store-wide counters, kept with RocksDB's merge operator so concurrent
/// updates never read-modify-write.
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

    fn key(self) -> &'static [u8] {
        match self {
            Counter::Files => b"counter/files",
            Counter::LogicalBytes => b"counter/logical_bytes",
            Counter::UniqueChunks => b"counter/unique_chunks",
            Counter::UniqueBytes => b"counter/unique_bytes",
            Counter::StoredBytes => b"counter/stored_bytes",
        }
    }
}

fn add_i64(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let decode = |b: &[u8]| b.try_into().map(i64::from_le_bytes).unwrap_or(0);
    let mut v = existing.map(decode).unwrap_or(0);
    for op in operands {
        v = v.wrapping_add(decode(op));
    }
    Some(v.to_le_bytes().to_vec())
}

/// Life of a chunk row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkState {
    /// Referenced by at least one file.
    Live = 0,
    /// Referenced by none; garbage once its grace and lease have passed.
    Zero = 1,
    /// GC has started deleting it (survives only a crash mid-delete).
    Deleting = 2,
    /// Its object was found missing or corrupt: reported missing so that a
    /// re-upload heals it; downloads of files using it fail fast.
    Damaged = 3,
}

/// What the store knows of one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRow {
    pub refcount: u64,
    pub raw_len: u32,
    pub stored_len: u32,
    pub codec: u8,
    pub state: ChunkState,
    /// When the refcount last became zero (unix ms).
    pub zero_since: u64,
    /// No GC before this time (unix ms): an upload is using the chunk.
    pub lease_until: u64,
}

impl ChunkRow {
    pub const LEN: usize = 34;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..8].copy_from_slice(&self.refcount.to_le_bytes());
        b[8..12].copy_from_slice(&self.raw_len.to_le_bytes());
        b[12..16].copy_from_slice(&self.stored_len.to_le_bytes());
        b[16] = self.codec;
        b[17] = self.state as u8;
        b[18..26].copy_from_slice(&self.zero_since.to_le_bytes());
        b[26..34].copy_from_slice(&self.lease_until.to_le_bytes());
        b
    }

    /// # Errors
    /// [`Error::CorruptMetadata`] when the bytes are not a row.
    pub fn decode(b: &[u8]) -> Result<Self> {
        if b.len() != Self::LEN {
            return Err(Error::CorruptMetadata("chunk row has the wrong length".into()));
        }
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or_default());
        let state = match b[17] {
            0 => ChunkState::Live,
            1 => ChunkState::Zero,
            2 => ChunkState::Deleting,
            3 => ChunkState::Damaged,
            _ => return Err(Error::CorruptMetadata("chunk row has an unknown state".into())),
        };
        Ok(Self {
            refcount: u64_at(0),
            raw_len: u32_at(8),
            stored_len: u32_at(12),
            codec: b[16],
            state,
            zero_since: u64_at(18),
            lease_until: u64_at(26),
        })
    }

    /// Whether a new reference may be made to this chunk (its object is there).
    pub fn usable(&self) -> bool {
        matches!(self.state, ChunkState::Live | ChunkState::Zero)
    }
}

pub fn gcq_key(eligible_ms: u64, id: &ChunkId) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&eligible_ms.to_be_bytes());
    k[8..].copy_from_slice(id.as_bytes());
    k
}

pub fn manifest_key(file: &[u8; 16], segment: u32) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..16].copy_from_slice(file);
    k[16..].copy_from_slice(&segment.to_be_bytes());
    k
}

/// The RocksDB instance holding all metadata.
pub struct Meta {
    db: DB,
}

/// One column family's memtable size before it is flushed (RocksDB's
/// default is 64 MiB, allocated in eighths as it fills).
const MEMTABLE_PER_FAMILY: usize = 1 << 20;
/// All memtables together.
const MEMTABLE_TOTAL: usize = 8 << 20;

impl Meta {
    /// Opens or creates the database at `path`.
    ///
    /// # Errors
    /// [`Error::Locked`] when another process holds it; other RocksDB errors.
    pub fn open(path: &Path) -> Result<Self> {
        let cache = Cache::new_lru_cache(64 << 20);
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        db_opts.set_keep_log_file_num(4);
        // Metadata is small next to the bytes it describes (a few hundred
        // bytes per chunk): small memtables, flushed often, keep the server's
        // memory flat however large the files, at the cost of more level-0
        // files for compaction to merge.
        db_opts.set_db_write_buffer_size(MEMTABLE_TOTAL);
        let cfs = Cf::ALL.iter().map(|cf| {
            let mut o = Options::default();
            let mut t = BlockBasedOptions::default();
            t.set_block_cache(&cache);
            if matches!(cf, Cf::Chunks) {
                t.set_bloom_filter(10.0, false);
                t.set_cache_index_and_filter_blocks(true);
            }
            o.set_block_based_table_factory(&t);
            o.set_write_buffer_size(MEMTABLE_PER_FAMILY);
            if matches!(cf, Cf::Meta) {
                o.set_merge_operator_associative("add_i64", add_i64);
            }
            ColumnFamilyDescriptor::new(cf.name(), o)
        });
        let db = DB::open_cf_descriptors(&db_opts, path, cfs).map_err(|e| {
            let msg = e.to_string();
            if msg.contains("lock") || msg.contains("LOCK") {
                Error::Locked(path.display().to_string())
            } else {
                Error::from(e)
            }
        })?;
        Ok(Self { db })
    }

    pub fn cf(&self, cf: Cf) -> &ColumnFamily {
        // Every family is created at open; absence is a bug, not a state.
        self.db.cf_handle(cf.name()).expect("column family created at open")
    }

    /// # Errors
    /// RocksDB errors.
    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(cf), key)?)
    }

    /// Looks up many keys at once (one batched multi-get).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn multi_get(&self, cf: Cf, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        self.db
            .batched_multi_get_cf(self.cf(cf), keys.iter().copied(), false)
            .into_iter()
            .map(|r| r.map(|v| v.map(|s| s.to_vec())).map_err(Error::from))
            .collect()
    }

    /// # Errors
    /// RocksDB errors.
    pub fn chunk_row(&self, id: &ChunkId) -> Result<Option<ChunkRow>> {
        self.get(Cf::Chunks, id.as_bytes())?.map(|b| ChunkRow::decode(&b)).transpose()
    }

    /// # Errors
    /// RocksDB errors or undecodable rows.
    pub fn chunk_rows(&self, ids: &[ChunkId]) -> Result<Vec<Option<ChunkRow>>> {
        let keys: Vec<&[u8]> = ids.iter().map(|i| i.as_bytes().as_slice()).collect();
        self.multi_get(Cf::Chunks, &keys)?
            .into_iter()
            .map(|v| v.map(|b| ChunkRow::decode(&b)).transpose())
            .collect()
    }

    /// Writes a batch; with `sync` the WAL is fsynced before returning (and
    /// with it every earlier unsynced write).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        let mut o = WriteOptions::default();
        o.set_sync(sync);
        Ok(self.db.write_opt(batch, &o)?)
    }

    pub fn put(&self, batch: &mut WriteBatch, cf: Cf, key: &[u8], value: &[u8]) {
        batch.put_cf(self.cf(cf), key, value);
    }

    pub fn delete(&self, batch: &mut WriteBatch, cf: Cf, key: &[u8]) {
        batch.delete_cf(self.cf(cf), key);
    }

    pub fn add(&self, batch: &mut WriteBatch, counter: Counter, delta: i64) {
        if delta != 0 {
            batch.merge_cf(self.cf(Cf::Meta), counter.key(), delta.to_le_bytes());
        }
    }

    /// Overwrites a counter (repair).
    pub fn set_counter(&self, batch: &mut WriteBatch, counter: Counter, value: i64) {
        batch.put_cf(self.cf(Cf::Meta), counter.key(), value.to_le_bytes());
    }

    /// # Errors
    /// RocksDB errors.
    pub fn counter(&self, counter: Counter) -> Result<i64> {
        Ok(self
            .get(Cf::Meta, counter.key())?
            .and_then(|b| b.as_slice().try_into().ok().map(i64::from_le_bytes))
            .unwrap_or(0))
    }

    /// Key/value pairs whose key starts with `prefix`, in key order, from
    /// `start` (inclusive; defaults to the prefix itself).
    pub fn scan<'a>(
        &'a self,
        cf: Cf,
        prefix: &'a [u8],
        start: Option<&'a [u8]>,
    ) -> impl Iterator<Item = Result<KeyValue>> + 'a {
        let from = start.unwrap_or(prefix);
        self.db
            .iterator_cf(self.cf(cf), IteratorMode::From(from, Direction::Forward))
            .map(|r| r.map_err(Error::from))
            .take_while(move |r| match r {
                Ok((k, _)) => k.starts_with(prefix),
                Err(_) => true,
            })
    }

    /// Key/value pairs in reverse key order, strictly before `before` (or
    /// from the last key).
    pub fn scan_rev<'a>(
        &'a self,
        cf: Cf,
        before: Option<&'a [u8]>,
    ) -> impl Iterator<Item = Result<KeyValue>> + 'a {
        let mode = match before {
            Some(k) => IteratorMode::From(k, Direction::Reverse),
            None => IteratorMode::End,
        };
        self.db.iterator_cf(self.cf(cf), mode).map(|r| r.map_err(Error::from)).filter(move |r| {
            match (r, before) {
                (Ok((k, _)), Some(b)) => &k[..] != b,
                _ => true,
            }
        })
    }

    /// Flushes memtables to SST files (clean shutdown, compact tests).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn flush(&self) -> Result<()> {
        for cf in Cf::ALL {
            self.db.flush_cf(self.cf(cf))?;
        }
        Ok(())
    }
}
