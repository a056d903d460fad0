//! Delta downloads with the real `depot` binary against the real server:
//! `depot get --seed OLD` copies the chunks an older copy holds, and of the
//! runs of chunks it lacks fetches only the bytes around the edits. Fetched
//! bytes are counted by the server (`depot_http_response_bytes_total`: the
//! info, chunking and manifest JSON and the probes' multipart answers are
//! in). The issue's figure: 1 MiB inserted at three places into 256 MiB
//! fetches < 4 MiB with the server's default chunking; the same edits into
//! 32 MiB are the everyday test (the bytes fetched depend on the edits, not
//! on the file's size, but for the manifest).

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use common::cli::{ok, run};
use common::{TestServer, test_config};
use depot::store::ChunkerParams;
use depot::testdata::pseudo_random;

const MIB: u64 = 1 << 20;

fn bytes_out(s: &TestServer) -> u64 {
    s.state.metrics.bytes_out.load(Ordering::Relaxed)
}

/// `depot get --json ARGS…`; returns the report and the response bytes the
/// server sent meanwhile.
async fn get(s: &TestServer, args: &[&str]) -> (serde_json::Value, u64) {
    let before = bytes_out(s);
    let mut all = vec!["get", "--json"];
    all.extend_from_slice(args);
    let out = run(&s.base, &all).await;
    let report: serde_json::Value = serde_json::from_str(ok(&out).trim()).unwrap();
    (report, bytes_out(s) - before)
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Writes `old.bin` (`mib` MiB) and `new.bin` (the same with 1 MiB of
/// other bytes inserted at 3/32, 14/32 and 27/32 of it, off any round
/// offset) into `dir`, a piece at a time.
fn write_versions(dir: &Path, mib: u64) -> (PathBuf, PathBuf) {
    let old = pseudo_random((mib * MIB) as usize, 7);
    let (old_path, new_path) = (dir.join("old.bin"), dir.join("new.bin"));
    std::fs::write(&old_path, &old).unwrap();
    let mut new = std::io::BufWriter::new(std::fs::File::create(&new_path).unwrap());
    let mut from = 0;
    for (i, (at, skew)) in [(3, 12_345), (14, 777), (27, 4_242)].into_iter().enumerate() {
        let at = (at * mib * MIB / 32 + skew) as usize;
        new.write_all(&old[from..at]).unwrap();
        new.write_all(&pseudo_random(MIB as usize, 200 + i as u64)).unwrap();
        from = at;
    }
    new.write_all(&old[from..]).unwrap();
    new.into_inner().unwrap().sync_all().unwrap();
    (old_path, new_path)
}

/// Whether two files hold the same bytes (read a piece at a time).
fn same_file(a: &Path, b: &Path) -> bool {
    let (mut a, mut b) = (std::fs::File::open(a).unwrap(), std::fs::File::open(b).unwrap());
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = a.read(&mut x).unwrap();
        if n == 0 {
            return b.read(&mut y).unwrap() == 0;
        }
        if b.read_exact(&mut y[..n]).is_err() || x[..n] != y[..n] {
            return false;
        }
    }
}

/// Uploads `new.bin` with `depot put`; returns its id.
async fn put(s: &TestServer, path: &Path) -> String {
    ok(&run(&s.base, &["put", p(path)]).await).trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_older_copy_as_seed_fetches_only_the_changes() {
    let dir = tempfile::tempdir().unwrap();
    // The server's default chunking (64/256/1024 KiB).
    let s = TestServer::start(test_config(&dir.path().join("data"))).await;
    let (old_path, new_path) = write_versions(dir.path(), 32);
    let size = std::fs::metadata(&new_path).unwrap().len();
    let id = put(&s, &new_path).await;

    // With the older copy as seed: the three inserts and a little around
    // each.
    let out = dir.path().join("out.bin");
    let (report, fetched) = get(&s, &[&id, "-o", p(&out), "--seed", p(&old_path)]).await;
    eprintln!("seeded: fetched {fetched} bytes, report {report}");
    assert!(same_file(&out, &new_path));
    assert!(fetched < 4 * MIB, "fetched {fetched} bytes");
    assert!(fetched > 3 * MIB, "fetched {fetched} bytes, less than the inserted data");
    let (reused, received) =
        (report["reused_bytes"].as_u64().unwrap(), report["received_bytes"].as_u64().unwrap());
    assert!(received <= fetched && reused + received >= size && reused > size - 4 * MIB, "{report}");
    assert!(!dir.path().join("out.bin.part").exists());

    // No seed: everything.
    let plain = dir.path().join("plain.bin");
    let (report, everything) = get(&s, &[&id, "-o", p(&plain)]).await;
    assert!(everything >= size, "fetched {everything} bytes");
    assert_eq!(report["reused_bytes"], 0);
    assert!(same_file(&plain, &new_path));

    // A seed damaged in three places, in a seed directory among unrelated
    // files. Each damaged chunk no longer matches, so it becomes a run of
    // its own; a flipped byte between the probes is not seen, the chunk
    // put together from the seed fails its hash and is fetched whole.
    let seeds = dir.path().join("seeds");
    std::fs::create_dir_all(seeds.join("sub")).unwrap();
    let mut damaged = std::fs::read(&old_path).unwrap();
    for at in [MIB as usize, 10 * MIB as usize + 5, 20 * MIB as usize + 9] {
        damaged[at] ^= 0x55;
    }
    std::fs::write(seeds.join("sub/damaged.bin"), &damaged).unwrap();
    std::fs::write(seeds.join("unrelated.bin"), pseudo_random(MIB as usize, 9)).unwrap();
    let out2 = dir.path().join("out2.bin");
    let (report, fetched2) = get(&s, &[&id, "-o", p(&out2), "--seed", p(&seeds)]).await;
    eprintln!("damaged seed: fetched {fetched2} bytes, report {report}");
    assert!(same_file(&out2, &new_path));
    assert!(fetched2 >= fetched + 64 * 1024, "the damaged chunks were not fetched: {fetched2} bytes");
    assert!(fetched2 < fetched + 3 * MIB + 64 * 1024, "fetched {fetched2} bytes");

    // An existing older output replaced with --force is a seed by default.
    let (report, fetched3) = get(&s, &[&id, "-o", p(&old_path), "--force"]).await;
    assert!(fetched3 < 4 * MIB, "fetched {fetched3} bytes: {report}");
    assert!(same_file(&old_path, &new_path));

    // Without --force an existing output is still refused.
    let o = run(&s.base, &["get", &id, "-o", p(&out)]).await;
    assert!(!o.status.success());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_small_chunks_the_same_edits_fetch_about_as_much() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(&dir.path().join("data"));
    cfg.chunking = ChunkerParams { min: 16 << 10, avg: 64 << 10, max: 256 << 10 };
    let s = TestServer::start(cfg).await;
    let (old_path, new_path) = write_versions(dir.path(), 32);
    let id = put(&s, &new_path).await;
    let out = dir.path().join("out.bin");
    let (report, fetched) = get(&s, &[&id, "-o", p(&out), "--seed", p(&old_path)]).await;
    eprintln!("64 KiB chunks: fetched {fetched} bytes, report {report}");
    assert!(same_file(&out, &new_path));
    assert!(fetched > 3 * MIB && fetched < 3 * MIB + 256 * 1024, "fetched {fetched} bytes");
    s.stop().await;
}

/// The issue's acceptance figure. Takes about half a minute in a debug
/// build, most of it uploading and cutting 259 MiB.
#[tokio::test(flavor = "multi_thread")]
async fn the_issue_figure_256_mib_with_three_insertions() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(test_config(&dir.path().join("data"))).await;
    let (old_path, new_path) = write_versions(dir.path(), 256);
    let id = put(&s, &new_path).await;
    let out = dir.path().join("out.bin");
    let started = std::time::Instant::now();
    let (report, fetched) = get(&s, &[&id, "-o", p(&out), "--seed", p(&old_path)]).await;
    eprintln!("256 MiB: fetched {fetched} bytes in {:?}, report {report}", started.elapsed());
    assert!(same_file(&out, &new_path));
    assert!(fetched < 4 * MIB, "fetched {fetched} bytes");
    s.stop().await;
}
