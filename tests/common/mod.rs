//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use depot::store::{ChunkerParams, FsObjects, FsyncPolicy, ManualClock, Store, StoreOptions};

/// Deterministic pseudo-random bytes (xorshift64*), so failures reproduce.
pub fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    fill_random(&mut out, n, seed);
    out
}

pub fn fill_random(out: &mut Vec<u8>, n: usize, seed: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        let take = (n - out.len()).min(8);
        out.extend_from_slice(&v[..take]);
    }
}

/// Small chunks, so that modest test files span many chunks and segments.
pub fn small_chunks() -> ChunkerParams {
    ChunkerParams { min: 256, avg: 1024, max: 4096 }
}

pub fn test_options() -> StoreOptions {
    StoreOptions {
        chunking: small_chunks(),
        fsync: FsyncPolicy::Never,
        gc_grace: Duration::from_secs(60),
        chunk_lease: Duration::from_secs(600),
        upload_expiry: Duration::from_secs(3600),
        ..StoreOptions::default()
    }
}

/// A store on disk (real RocksDB, real object directory) with a manual clock.
pub fn open_store(dir: &Path, opts: StoreOptions) -> (Store, Arc<ManualClock>) {
    let clock = ManualClock::new();
    let objects = Arc::new(FsObjects::open(&dir.join("objects"), opts.fsync).unwrap());
    let store = Store::open_with(dir, opts, objects, clock.clone()).unwrap();
    (store, clock)
}

