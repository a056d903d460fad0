//! Reading a 1 GiB file keeps memory flat. Its own test binary (so its own
//! process): resident memory is per process, and other tests would blur it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::open_store;
use depot::store::{ChunkerParams, FsyncPolicy, StoreOptions, Tenant};
use depot::testdata::fill_random;
use futures_util::StreamExt;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[test]
fn reading_a_1_gib_file_keeps_memory_flat() {
    const SIZE: u64 = 1 << 30;
    const BOUND: u64 = 64 << 20;
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        chunking: ChunkerParams::default(),
        fsync: FsyncPolicy::Never,
        ..StoreOptions::default()
    };
    let (store, _) = open_store(dir.path(), opts);

    let mut ing = store.ingest(Tenant::default()).unwrap();
    let mut hasher = blake3::Hasher::new();
    let mut piece = Vec::with_capacity(1 << 20);
    for i in 0..(SIZE >> 20) {
        piece.clear();
        fill_random(&mut piece, 1 << 20, i);
        hasher.update(&piece);
        ing.push(&piece).unwrap();
    }
    let rec = ing.finish(&"big.bin".parse().unwrap(), None).unwrap();
    let expected = hasher.finalize();
    assert_eq!(rec.size, SIZE);
    drop(piece);

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let baseline = rss_bytes();
    let peak = Arc::new(AtomicU64::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let (got_hash, got_len) = rt.block_on(async {
        let (rec, guard) = store.open_file(&rec.id).unwrap();
        let mut s = store.read_range(&rec, guard, 0, rec.size);
        let mut h = blake3::Hasher::new();
        let mut n = 0u64;
        while let Some(b) = s.next().await {
            let b = b.unwrap();
            n += b.len() as u64;
            h.update(&b);
        }
        (h.finalize(), n)
    });
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert_eq!(got_len, SIZE);
    assert_eq!(got_hash, expected);
    let grew = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    eprintln!("RSS baseline {} MiB, growth while reading 1 GiB: {} MiB", baseline >> 20, grew >> 20);
    assert!(grew < BOUND, "RSS grew by {} MiB reading 1 GiB", grew >> 20);
}
