//! What pack files cost a store whose files come and go (docs/PACKS.md,
//! "What to measure"): rounds of upload, delete half the live files, GC,
//! on a store with packs and, as the reference measured in the same run,
//! on one with loose objects, the two alternated round by round.
//!
//! `cargo bench --bench churn` (the release profile). Each round uploads
//! `CHURN_MIB` MiB (default 256) of new random bytes as files of
//! `CHURN_FILE_MIB` MiB (default 8) through the store's ingest pipeline,
//! deletes every other live file (the oldest first), then runs GC twice:
//! once past the grace period and the chunk leases (chunks freed; with packs,
//! packs under half live compacted), once past the grace period again (with
//! packs, emptied packs deleted). Fsync policy and every other option as
//! shipped; a manual clock stands in for the wall clock's hours.
//! `CHURN_ROUNDS` (default 6) rounds per layout.
//!
//! Printed per round and layout: the upload in MB/s (10^6 bytes per
//! second, wall time of the ingest); GC's wall seconds (both runs); the
//! bytes compaction copied per byte deleted (write amplification; 0 for
//! loose objects); bytes on disk under `objects/` per byte stored
//! (`stats().stored_bytes`: headers and payloads of live chunks; space
//! amplification). Then the medians of each, and of packs' GC seconds over
//! loose objects' GC seconds of the same round.
//!
//! Without cargo's `--bench` argument (as `cargo test --all-targets` runs
//! it) the defaults shrink to 4 MiB rounds of 1 MiB files, two of them: a
//! smoke test. `CHURN_DIR` puts the stores under another directory (default:
//! the system's temporary directory).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use depot::store::{FileId, ManualClock, Store, StoreOptions, Tenant, View, open_objects};
use depot::testdata::pseudo_random;

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name} must be a positive integer, got {v:?}")),
        Err(_) => default,
    }
}

/// One layout's store and the files live in it, oldest first.
struct Churn {
    packs: bool,
    _dir: tempfile::TempDir,
    objects: std::path::PathBuf,
    store: Store,
    clock: Arc<ManualClock>,
    live: Vec<(FileId, u64)>,
}

/// One round's figures for one layout.
#[derive(Clone, Copy)]
struct Round {
    put_mbps: f64,
    gc_s: f64,
    moved_per_deleted: f64,
    disk_per_stored: f64,
}

impl Churn {
    fn new(packs: bool, parent: &Path) -> Self {
        let dir = tempfile::tempdir_in(parent).expect("a temporary directory");
        let opts = StoreOptions { packs, ..StoreOptions::default() };
        let objects = dir.path().join("objects");
        let clock = ManualClock::new();
        let store = Store::open_with(
            dir.path(),
            opts.clone(),
            open_objects(&opts, &objects).expect("the object directory"),
            clock.clone(),
        )
        .expect("a store");
        Self { packs, _dir: dir, objects, store, clock, live: Vec::new() }
    }

    fn round(&mut self, round: usize, files: usize, file_bytes: usize) -> Round {
        let started = Instant::now();
        for i in 0..files {
            let data = pseudo_random(file_bytes, (round * 100_000 + i) as u64);
            let mut ing = self.store.ingest(Tenant::default()).expect("an ingest");
            for piece in data.chunks(1 << 20) {
                ing.push(piece).expect("a push");
            }
            let rec = ing.finish(&format!("r{round}-{i}.bin").parse().unwrap(), None).expect("a commit");
            self.live.push((rec.id, rec.size));
        }
        let put_mbps = (files * file_bytes) as f64 / 1e6 / started.elapsed().as_secs_f64();

        // Every other live file, the oldest first.
        let mut deleted = 0u64;
        let mut kept = Vec::with_capacity(self.live.len() / 2 + 1);
        for (n, (id, size)) in std::mem::take(&mut self.live).into_iter().enumerate() {
            if n % 2 == 0 {
                self.store.delete_file(&View::All, &id).expect("a delete");
                deleted += size;
            } else {
                kept.push((id, size));
            }
        }
        self.live = kept;

        let started = Instant::now();
        self.clock.advance(Duration::from_secs(2 * 86_400)); // past grace and leases
        let first = self.store.gc(false).expect("GC");
        self.clock.advance(Duration::from_secs(2 * 86_400));
        let second = self.store.gc(false).expect("GC");
        let gc_s = started.elapsed().as_secs_f64();
        let moved = first.packs.bytes_moved + second.packs.bytes_moved;
        let stored = self.store.stats().expect("stats").stored_bytes;
        Round {
            put_mbps,
            gc_s,
            moved_per_deleted: moved as f64 / deleted.max(1) as f64,
            disk_per_stored: disk_bytes(&self.objects) as f64 / stored.max(1) as f64,
        }
    }
}

/// The bytes of every file under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            n += disk_bytes(&e.path());
        } else if let Ok(m) = e.metadata() {
            n += m.len();
        }
    }
    n
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let mib = env_usize("CHURN_MIB", if bench { 256 } else { 4 }).max(1);
    let file_mib = env_usize("CHURN_FILE_MIB", if bench { 8 } else { 1 }).clamp(1, mib);
    let rounds = env_usize("CHURN_ROUNDS", if bench { 6 } else { 2 }).max(1);
    let parent = std::env::var_os("CHURN_DIR").map_or_else(std::env::temp_dir, Into::into);
    let (files, file_bytes) = (mib / file_mib, file_mib << 20);

    let mut layouts = [Churn::new(false, &parent), Churn::new(true, &parent)];
    let mut figures: [Vec<Round>; 2] = [Vec::new(), Vec::new()];
    println!("round | layout | put MB/s | GC s | moved / deleted | disk / stored");
    println!("---|---|---|---|---|---");
    for r in 0..rounds {
        // Alternated: loose first in even rounds, packs first in odd ones.
        let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let c = &mut layouts[i];
            let f = c.round(r, files, file_bytes);
            let name = if c.packs { "packs" } else { "loose" };
            println!(
                "{} | {name} | {:.0} | {:.3} | {:.3} | {:.3}",
                r + 1,
                f.put_mbps,
                f.gc_s,
                f.moved_per_deleted,
                f.disk_per_stored
            );
            figures[i].push(f);
        }
    }
    let col = |i: usize, f: fn(&Round) -> f64| median(figures[i].iter().map(f).collect());
    for (i, name) in [(0, "loose"), (1, "packs")] {
        println!(
            "median | {name} | {:.0} | {:.3} | {:.3} | {:.3}",
            col(i, |f| f.put_mbps),
            col(i, |f| f.gc_s),
            col(i, |f| f.moved_per_deleted),
            col(i, |f| f.disk_per_stored)
        );
    }
    let ratios: Vec<f64> = figures[1].iter().zip(&figures[0]).map(|(p, l)| p.gc_s / l.gc_s).collect();
    let (lo, hi) = ratios.iter().fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    println!(
        "\npacks' GC seconds over loose objects' (same round): median {:.2}x ({lo:.2}-{hi:.2}); \
         rounds of {mib} MiB in {files} files of {file_mib} MiB",
        median(ratios)
    );
}
