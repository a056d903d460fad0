//! [`RocksMeta`]: the metadata on RocksDB, the default backend. It owns the
//! database options (per-family memtables, a shared block cache, a bloom
//! filter on `chunks`), the merge operator that makes counter adds atomic
//! without a read, and the translation of a [`Batch`] into a `WriteBatch`.
//! It is the only file in the store that names RocksDB; it knows nothing of
//! what the rows mean.

use std::path::Path;

use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, Direction,
    IteratorMode, MergeOperands, Options, WriteBatch, WriteOptions,
};

use super::{Batch, Cf, Counter, KvIter, LocalLocks, MetaStore, Op, decode_counter, prefix_end};
use crate::store::error::{Error, Result};

fn add_i64(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let mut v = existing.map(decode_counter).unwrap_or(0);
    for op in operands {
        v = v.wrapping_add(decode_counter(op));
    }
    Some(v.to_le_bytes().to_vec())
}

fn backend(e: rocksdb::Error) -> Error {
    // RocksDB says "no space" only in its message: a full disk is a full
    // disk (507), whichever file met it.
    if e.as_ref().contains("No space left on device") {
        return Error::Io(std::io::Error::new(std::io::ErrorKind::StorageFull, e.into_string()));
    }
    Error::Backend(Box::new(e))
}

/// The RocksDB instance holding all metadata.
pub struct RocksMeta {
    db: DB,
    locks: LocalLocks,
}

/// One column family's memtable size before it is flushed (RocksDB's
/// default is 64 MiB, allocated in eighths as it fills). Smaller means more,
/// smaller level-0 files, each of which a compaction merges with the next
/// level (chunk keys are random hashes); metadata is a few hundred bytes per
/// chunk, so that merge work stays small next to the bytes the chunks hold.
/// A family being flushed keeps its full memtable until the flush ends, so
/// a burst of writes (a large commit's refcounts) holds up to twice this.
const MEMTABLE_PER_FAMILY: usize = 512 << 10;
/// All memtables together: past this, the family with the oldest memtable
/// is flushed. A 1 GiB upload writes about 1.2 MiB of rows (chunks, GC
/// queue, counters, commit segments), an 8 GiB one ten times that. The
/// memtables are the largest thing RocksDB holds that grows with the upload
/// until its cap, so the cap is what a 1 GiB upload fills anyway: an 8 GiB
/// upload then peaks where a 1 GiB one does (bench M1: at 8 MiB the
/// memtables held 5.7 MiB at an 8 GiB commit's peak; at 2 MiB M1 was still
/// 1.13×). The rows reach disk sooner; the total written is the same.
const MEMTABLE_TOTAL: usize = 1 << 20;
/// The block cache, which also holds every table's index and filter
/// partitions: with the memtables, all the memory RocksDB keeps, whatever
/// the size of the store (the operating system's page cache holds the files
/// themselves). Rows are keyed by random hashes, so cached data blocks are
/// hit only by a re-read within moments, which the page cache serves almost
/// as fast (a miss costs a copy from it, about a microsecond). Indexes and
/// filters are partitioned (below), so a lookup needs a few 4 KiB
/// partitions, not a table's whole index and filter. A 1 GiB upload's rows
/// (about 4,000 chunks) fit in 256 KiB; a larger one's would fill a larger
/// cache with blocks read once by the commit, which M1 saw as growth with
/// the file (1 MiB: 0.7 MiB more at 8 GiB than at 1 GiB).
const BLOCK_CACHE: usize = 256 << 10;
/// Index and filter partitions, and the size of each buffered write of a
/// table file (RocksDB's default buffer is 1 MiB per file being written, and
/// a flush and a compaction can each hold one).
const METADATA_BLOCK: usize = 4 << 10;
const WRITE_BUFFER: u64 = 64 << 10;
/// Keys per RocksDB `MultiGet` call (see `multi_get`). A call's working
/// memory in RocksDB grows with its batch (key and merge contexts, a few
/// hundred bytes a key), so the batch bounds it. 256 answered S2's 10,000
/// hashes a little faster (alternated, three rounds each: 21.1–22.0 ms
/// against 20.8–30.2) but raised M1's peak RSS for a download of 8 GiB from
/// 30.6–31.6 MiB to 32.0–33.2 (two alternated runs of three rounds each).
const MULTI_GET_BATCH: usize = 64;

impl RocksMeta {
    /// Opens or creates the database at `path`.
    ///
    /// # Errors
    /// [`Error::Locked`] when another process holds it; [`Error::Backend`]
    /// for other RocksDB errors.
    pub fn open(path: &Path) -> Result<Self> {
        let cache = Cache::new_lru_cache(BLOCK_CACHE);
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
        db_opts.set_writable_file_max_buffer_size(WRITE_BUFFER);
        let cfs = Cf::ALL.iter().map(|cf| {
            let mut o = Options::default();
            let mut t = BlockBasedOptions::default();
            t.set_block_cache(&cache);
            // Index and filter blocks live in the cache, not beside it in
            // each open table, so the cache bounds them too; level 0's stay
            // pinned (they are read on every lookup). They are partitioned:
            // a small top level per table (pinned) points to 4 KiB
            // partitions, so the cache holds the partitions in use, not
            // every table's whole index and filter, which grow with the
            // store (about 1.3 bytes of filter per chunk). Tables written
            // before keep their format and stay readable.
            t.set_cache_index_and_filter_blocks(true);
            t.set_pin_l0_filter_and_index_blocks_in_cache(true);
            t.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
            t.set_partition_filters(true);
            t.set_metadata_block_size(METADATA_BLOCK);
            t.set_pin_top_level_index_and_filter(true);
            if matches!(cf, Cf::Chunks) {
                t.set_bloom_filter(10.0, false);
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
                backend(e)
            }
        })?;
        Ok(Self { db, locks: LocalLocks::default() })
    }

    fn cf(&self, cf: Cf) -> &ColumnFamily {
        // Every family is created at open; absence is a bug, not a state.
        self.db.cf_handle(cf.name()).expect("column family created at open")
    }
}

impl MetaStore for RocksMeta {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(cf), key).map_err(backend)
    }

    fn multi_get(&self, cf: Cf, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        // Keys are looked up in sorted order: neighbours in a batch then
        // often share a data block, which `MultiGet` reads (and checks) once
        // for all of them. Chunk ids are random, so unsorted batches read
        // nearly one block per present key, and the block cache is too small
        // to keep them (see `BLOCK_CACHE`). Batches of `MULTI_GET_BATCH`
        // keep RocksDB's working memory the same for a segment of 1,024
        // entries as for a query of 10,000 hashes. RocksDB is not told the
        // batch is sorted (`sorted_input`): it then sorts it again, which
        // costs little on sorted keys, and its answers never rest on this
        // sort: told `true`, it checks the order only in debug builds and
        // walks a level's files in the order given.
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_unstable_by_key(|&i| keys[i]);
        let mut out = vec![None; keys.len()];
        for batch in order.chunks(MULTI_GET_BATCH) {
            let found = self.db.batched_multi_get_cf(self.cf(cf), batch.iter().map(|&i| keys[i]), false);
            for (&i, r) in batch.iter().zip(found) {
                out[i] = r.map_err(backend)?.map(|s| s.to_vec());
            }
        }
        Ok(out)
    }

    fn scan<'a>(&'a self, cf: Cf, prefix: &'a [u8], start: Option<&'a [u8]>) -> KvIter<'a> {
        let from = start.map_or(prefix, |s| s.max(prefix));
        Box::new(
            self.db
                .iterator_cf(self.cf(cf), IteratorMode::From(from, Direction::Forward))
                .map(|r| r.map_err(backend))
                .take_while(move |r| match r {
                    Ok((k, _)) => k.starts_with(prefix),
                    Err(_) => true,
                }),
        )
    }

    fn scan_rev<'a>(&'a self, cf: Cf, prefix: &'a [u8], before: Option<&'a [u8]>) -> KvIter<'a> {
        // The reverse seek lands on the last key at or before its target:
        // `before` itself is skipped, and so is the prefix's upper bound.
        let bound = match (before, prefix_end(prefix)) {
            (Some(b), Some(end)) => Some(b.min(&end[..]).to_vec()),
            (Some(b), None) => Some(b.to_vec()),
            (None, end) => end,
        };
        let iter = match &bound {
            Some(b) => self.db.iterator_cf(self.cf(cf), IteratorMode::From(b, Direction::Reverse)),
            None => self.db.iterator_cf(self.cf(cf), IteratorMode::End),
        };
        Box::new(
            iter.map(|r| r.map_err(backend))
                .filter(move |r| match (r, &bound) {
                    (Ok((k, _)), Some(b)) => &k[..] != b.as_slice(),
                    _ => true,
                })
                .take_while(move |r| match r {
                    Ok((k, _)) => k.starts_with(prefix),
                    Err(_) => true,
                }),
        )
    }

    fn counter(&self, counter: Counter) -> Result<i64> {
        Ok(self.get(Cf::Meta, counter.key())?.map(|b| decode_counter(&b)).unwrap_or(0))
    }

    fn write(&self, batch: Batch, durable: bool) -> Result<()> {
        let mut wb = WriteBatch::default();
        for op in batch.into_ops() {
            match op {
                Op::Put { cf, key, value } => wb.put_cf(self.cf(cf), key, value),
                Op::Delete { cf, key } => wb.delete_cf(self.cf(cf), key),
                Op::Add { key, delta } => wb.merge_cf(self.cf(Cf::Meta), &key, delta.to_le_bytes()),
                Op::SetCounter { counter, value } => {
                    wb.put_cf(self.cf(Cf::Meta), counter.key(), value.to_le_bytes())
                }
            }
        }
        let mut o = WriteOptions::default();
        o.set_sync(durable);
        self.db.write_opt(wb, &o).map_err(backend)
    }

    fn flush(&self) -> Result<()> {
        for cf in Cf::ALL {
            self.db.flush_cf(self.cf(cf)).map_err(backend)?;
        }
        Ok(())
    }

    fn checkpoint(&self, dest: &Path) -> Result<()> {
        let c = rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(backend)?;
        c.create_checkpoint(dest).map_err(backend)
    }

    fn local_locks(&self) -> &LocalLocks {
        &self.locks
    }
}
