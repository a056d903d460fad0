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

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let mib = env_usize("LIMITS_MIB", if bench { 256 } else { 1 }).max(1);
    let runs = env_usize("LIMITS_RUNS", if bench { 5 } else { 1 }).max(1);
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
