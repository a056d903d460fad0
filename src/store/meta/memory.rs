//! [`MemMeta`]: the in-memory twin of the metadata backend, one `BTreeMap`
//! per column family behind a lock. Same semantics as RocksDB where the
//! store can tell: key order, prefix and start bounds of scans, batches
//! applied atomically and in order, counters as i64 adds. Durability is
//! that of the process: a test "crashes" a store by dropping it and opens
//! a new one over the same `MemMeta`. No persistence, no RocksDB.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::RwLock;

use super::paged::{Paged, scan_bounds, scan_rev_bounds};
use super::{Batch, Cf, Counter, KeyValue, KvIter, LocalLocks, MetaStore, Op, decode_counter};
use crate::store::error::Result;

type Table = BTreeMap<Vec<u8>, Vec<u8>>;

/// Scans read this many pairs per lock hold, so a long scan neither holds
/// the lock nor copies the whole family.
const PAGE: usize = 256;

/// Metadata in memory.
#[derive(Default)]
pub struct MemMeta {
    tables: RwLock<[Table; Cf::ALL.len()]>,
    locks: LocalLocks,
}

impl MemMeta {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, [Table; Cf::ALL.len()]> {
        self.tables.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Up to [`PAGE`] pairs of `cf` within `(lo, hi)`, in the scan's order.
    fn page(&self, cf: Cf, lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>, rev: bool) -> Vec<KeyValue> {
        let (lo, hi) = (as_slice(lo), as_slice(hi));
        let inverted = match (lo, hi) {
            (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
                a > b || (a == b && !matches!((lo, hi), (Bound::Included(_), Bound::Included(_))))
            }
            _ => false,
        };
        if inverted {
            return Vec::new();
        }
        let t = self.read();
        let range = t[cf.index()].range::<[u8], _>((lo, hi));
        let pair = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.as_slice().into(), v.as_slice().into());
        if rev { range.rev().take(PAGE).map(pair).collect() } else { range.take(PAGE).map(pair).collect() }
    }
}

fn as_slice(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k),
        Bound::Excluded(k) => Bound::Excluded(k),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl MetaStore for MemMeta {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.read()[cf.index()].get(key).cloned())
    }

    fn multi_get(&self, cf: Cf, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        let t = self.read();
        Ok(keys.iter().map(|k| t[cf.index()].get(*k).cloned()).collect())
    }

    fn scan<'a>(&'a self, cf: Cf, prefix: &'a [u8], start: Option<&'a [u8]>) -> KvIter<'a> {
        Paged::boxed(scan_bounds(prefix, start), false, PAGE, move |lo, hi, rev| {
            Ok(self.page(cf, lo, hi, rev))
        })
    }

    fn scan_rev<'a>(&'a self, cf: Cf, prefix: &'a [u8], before: Option<&'a [u8]>) -> KvIter<'a> {
        Paged::boxed(scan_rev_bounds(prefix, before), true, PAGE, move |lo, hi, rev| {
            Ok(self.page(cf, lo, hi, rev))
        })
    }

    fn counter(&self, counter: Counter) -> Result<i64> {
        Ok(self.get(Cf::Meta, counter.key())?.map(|b| decode_counter(&b)).unwrap_or(0))
    }

    fn write(&self, batch: Batch, _durable: bool) -> Result<()> {
        let mut t = self.tables.write().unwrap_or_else(|p| p.into_inner());
        for op in batch.into_ops() {
            match op {
                Op::Put { cf, key, value } => {
                    t[cf.index()].insert(key.into(), value.into());
                }
                Op::Delete { cf, key } => {
                    t[cf.index()].remove(&key[..]);
                }
                Op::Add { key, delta } => {
                    let slot = t[Cf::Meta.index()].entry(key.to_vec()).or_default();
                    let v = decode_counter(slot).wrapping_add(delta);
                    *slot = v.to_le_bytes().to_vec();
                }
                Op::SetCounter { counter, value } => {
                    t[Cf::Meta.index()].insert(counter.key().to_vec(), value.to_le_bytes().to_vec());
                }
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn local_locks(&self) -> &LocalLocks {
        &self.locks
    }
}
