//! The CPU limit of an upload, for the end-to-end benchmark
//! (`benches/e2e/`): one thread of BLAKE3, of FastCDC, and of both together
//! (cut, then hash each chunk, as `depot put` does) over the same
//! deterministic bytes.
//!
//! `cargo bench --bench limits` (the release profile). Prints one JSON line
//! on stdout, each figure the median of the runs in MB/s (10^6 bytes per
//! second):
//!
//! ```text
//! {"blake3_mbps":..,"fastcdc_mbps":..,"both_mbps":..}
//! ```
//!
//! Environment: `LIMITS_MIB` the input size in MiB (default 256),
//! `LIMITS_RUNS` the number of measured runs (default 5). One untimed
//! warm-up pass of each comes first; the three are then measured
//! alternately, run after run. The min–max of each goes to stderr.
//!
//! Run without cargo's `--bench` argument (as `cargo test --all-targets`
//! does), the defaults shrink to 1 MiB and one run: a smoke test.
//!
//! With `LIMITS_S3=1` it measures instead the raw PUT and GET rates of an
//! S3 engine (bench E1's ceilings): `LIMITS_MIB` of distinct 256 KiB
//! objects, written with depot's own S3 client (`S3Objects::put_many`, up to
//! `storage.s3.max_in_flight` at once) under the bucket and prefix the
//! `DEPOT_S3_*` variables name (read as the server reads them), with the
//! `AWS_*` credentials; then read back whole by `storage.s3.read_ahead`
//! threads at once (as a download reads ahead), each checked for its
//! length; then deleted.
//! One JSON line: `{"s3_put_mbps":..,"s3_puts_per_s":..,"s3_get_mbps":..,"s3_gets_per_s":..}`.

use std::hint::black_box;
use std::time::Instant;

use depot::store::{ChunkId, Chunker, ChunkerParams};
use depot::testdata::pseudo_random;

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name} must be a positive integer, got {v:?}")),
        Err(_) => default,
    }
}

fn blake3_pass(input: &[u8]) {
    black_box(ChunkId::of(black_box(input)));
}

fn fastcdc_pass(chunker: &Chunker, input: &[u8]) {
    black_box(chunker.chunk_all(black_box(input)).len());
}

fn both_pass(chunker: &Chunker, input: &[u8]) {
    let mut at = 0;
    for n in chunker.chunk_all(black_box(input)) {
        black_box(ChunkId::of(&input[at..at + n]));
        at += n;
    }
}

/// Seconds taken by `f`.
fn time(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 { s[m] } else { (s[m - 1] + s[m]) / 2.0 }
}

/// The S3 engine's PUT and GET ceilings (see the module): MB/s and
/// requests/s, medians of `runs`, each run a fresh set of objects.
#[cfg(feature = "s3")]
fn s3_ceilings(mib: usize, runs: usize) {
    use depot::config::Config;
    use depot::store::ObjectKey;
    use depot::store::objects::{ObjectStore, S3Objects};

    const OBJECT: usize = 256 << 10;
    // The bucket as `depot serve` would read it from the same variables.
    let config = Config::load(None, |k| std::env::var(k).ok()).unwrap_or_else(|e| panic!("{e}"));
    let mut opts = config.storage.s3;
    opts.prefix.push_str("ceiling/");
    let s3 = S3Objects::open(&opts).unwrap_or_else(|e| panic!("opening the bucket: {e}"));
    let count = (mib << 20) / OBJECT;
    let (mut mbps, mut per_s) = (Vec::new(), Vec::new());
    let (mut get_mbps, mut gets_per_s) = (Vec::new(), Vec::new());
    for run in 0..runs + 1 {
        let objects: Vec<(ObjectKey, Vec<u8>)> = (0..count)
            .map(|i| {
                let data = pseudo_random(OBJECT, (run * count + i) as u64);
                (ObjectKey::new(ChunkId::of(&data), run as u64 + 1), data)
            })
            .collect();
        let items: Vec<(ObjectKey, Vec<&[u8]>)> = objects.iter().map(|(k, d)| (*k, vec![&d[..]])).collect();
        let secs = time(|| {
            for batch in items.chunks(opts.max_in_flight) {
                s3.put_many(batch).unwrap_or_else(|e| panic!("PUT: {e}"));
            }
        });
        let keys: Vec<ObjectKey> = objects.iter().map(|(k, _)| *k).collect();
        drop(items);
        drop(objects);
        // Each reader takes every `readers`-th object, as a download's
        // read-ahead keeps that many GETs in flight.
        let readers = opts.read_ahead.max(1);
        let get_secs = time(|| {
            std::thread::scope(|scope| {
                for r in 0..readers {
                    let (s3, keys) = (&s3, &keys);
                    scope.spawn(move || {
                        for key in keys.iter().skip(r).step_by(readers) {
                            let got = s3.get(key).unwrap_or_else(|e| panic!("GET: {e}"));
                            assert_eq!(got.map(|b| b.len()), Some(OBJECT), "GET {key:?}");
                        }
                    });
                }
            });
        });
        s3.delete_many(&keys).unwrap_or_else(|e| panic!("DELETE: {e}"));
        if run > 0 {
            // The first run warms the connections up.
            mbps.push((count * OBJECT) as f64 / 1e6 / secs);
            per_s.push(count as f64 / secs);
            get_mbps.push((count * OBJECT) as f64 / 1e6 / get_secs);
            gets_per_s.push(count as f64 / get_secs);
        }
    }
    eprintln!(
        "S3 of {count} objects of 256 KiB, median of {runs}: PUT {:.1} MB/s, GET {:.1} MB/s",
        median(&mbps),
        median(&get_mbps)
    );
    println!(
        "{{\"s3_put_mbps\":{:.1},\"s3_puts_per_s\":{:.1},\"s3_get_mbps\":{:.1},\"s3_gets_per_s\":{:.1}}}",
        median(&mbps),
        median(&per_s),
        median(&get_mbps),
        median(&gets_per_s)
    );
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let mib = env_usize("LIMITS_MIB", if bench { 256 } else { 1 }).max(1);
    let runs = env_usize("LIMITS_RUNS", if bench { 5 } else { 1 }).max(1);
    if std::env::var("LIMITS_S3").is_ok_and(|v| v == "1") {
        #[cfg(feature = "s3")]
        return s3_ceilings(mib, runs);
        #[cfg(not(feature = "s3"))]
        panic!("LIMITS_S3 needs the `s3` feature");
    }
    let input = pseudo_random(mib << 20, 1);
    let chunker = Chunker::new(ChunkerParams::default()).expect("default chunking parameters are valid");

    // Warm-up: fault the pages in, settle the clocks.
    blake3_pass(&input);
    fastcdc_pass(&chunker, &input);
    both_pass(&chunker, &input);

    let mb = input.len() as f64 / 1e6;
    let (mut b3, mut cdc, mut both) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        b3.push(mb / time(|| blake3_pass(&input)));
        cdc.push(mb / time(|| fastcdc_pass(&chunker, &input)));
        both.push(mb / time(|| both_pass(&chunker, &input)));
    }

    let range = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(0.0, f64::max);
        format!("{:.1} ({lo:.1}–{hi:.1})", median(v))
    };
    eprintln!(
        "limits over {mib} MiB, median of {runs} (min–max), MB/s: blake3 {}, fastcdc {}, both {}",
        range(&b3),
        range(&cdc),
        range(&both)
    );
    println!(
        "{{\"blake3_mbps\":{:.1},\"fastcdc_mbps\":{:.1},\"both_mbps\":{:.1}}}",
        median(&b3),
        median(&cdc),
        median(&both)
    );
}
