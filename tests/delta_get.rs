//! Delta downloads with the real `depot` binary against the real server:
//! `depot get --seed OLD` copies the chunks an older copy holds and fetches
//! only the rest. Fetched bytes are counted by the server
//! (`depot_http_response_bytes_total`). Scale: a 32 MiB file with 1 MiB
//! inserted at three places (the figure is for 256 MiB; the bytes
//! fetched depend on the edits and the chunk size, not on the file's size).
//!
//! What is fetched past the inserted 3 MiB are the chunks that straddle
//! each insertion's two seams: about one and a half average chunks per
//! insertion. With the default chunker (64/256/1024 KiB) that is ~1.2 MiB
//! over three insertions, so the "< 4 MiB" holds with 64 KiB
//! average chunks (16/64/256 KiB), the test's configuration; the default
//! is measured too, against 3 MiB + 2 MiB.

mod common;

use std::path::Path;
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

#[tokio::test(flavor = "multi_thread")]
async fn with_the_default_chunker_the_seams_cost_about_a_chunk_each() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(test_config(&dir.path().join("data"))).await;
    let (old, new) = versions();
    let old_path = dir.path().join("old.bin");
    std::fs::write(&old_path, &old).unwrap();
    let id = s.upload_raw("new.bin", &new).await.id;
    let out = dir.path().join("out.bin");
    let (report, fetched) = get(&s, &[&id, "-o", p(&out), "--seed", p(&old_path)]).await;
    eprintln!("default chunker: fetched {fetched} bytes, report {report}");
    assert!(std::fs::read(&out).unwrap() == new);
    assert!(fetched < 5 * MIB, "fetched {fetched} bytes");
    s.stop().await;
}

/// 32 MiB, and the same with 1 MiB inserted at three places.
fn versions() -> (Vec<u8>, Vec<u8>) {
    let old = pseudo_random(32 * MIB as usize, 7);
    let mut new = old.clone();
    for (i, at) in [3 * MIB + 12_345, 14 * MIB + 777, 27 * MIB + 4_242].into_iter().enumerate() {
        new.splice(at as usize..at as usize, pseudo_random(MIB as usize, 200 + i as u64));
    }
    (old, new)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_older_copy_as_seed_fetches_only_the_changes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(&dir.path().join("data"));
    cfg.chunking = ChunkerParams { min: 16 << 10, avg: 64 << 10, max: 256 << 10 };
    let s = TestServer::start(cfg).await;
    let (old, new) = versions();
    let (old_path, new_path) = (dir.path().join("old.bin"), dir.path().join("new.bin"));
    std::fs::write(&old_path, &old).unwrap();
    std::fs::write(&new_path, &new).unwrap();
    let id = ok(&run(&s.base, &["put", p(&new_path)]).await).trim().to_string();
    std::fs::remove_file(&new_path).unwrap();

    // With the older copy as seed: the three inserts and their seams.
    let out = dir.path().join("out.bin");
    let (report, fetched) = get(&s, &[&id, "-o", p(&out), "--seed", p(&old_path)]).await;
    eprintln!("seeded: fetched {fetched} bytes, report {report}");
    assert!(std::fs::read(&out).unwrap() == new);
    assert!(fetched < 4 * MIB, "fetched {fetched} bytes");
    assert!(fetched > 3 * MIB, "fetched {fetched} bytes, less than the inserted data");
    assert_eq!(
        report["reused_bytes"].as_u64().unwrap() + report["received_bytes"].as_u64().unwrap(),
        35 * MIB
    );
    assert!(!dir.path().join("out.bin.part").exists());

    // No seed: everything.
    let plain = dir.path().join("plain.bin");
    let (report, everything) = get(&s, &[&id, "-o", p(&plain)]).await;
    assert!(everything >= 35 * MIB, "fetched {everything} bytes");
    assert_eq!(report["reused_bytes"], 0);
    assert!(std::fs::read(&plain).unwrap() == new);

    // A seed damaged in three places (the chunk around each is fetched
    // instead) and a seed directory holding it among unrelated files.
    let seeds = dir.path().join("seeds");
    std::fs::create_dir_all(seeds.join("sub")).unwrap();
    let mut damaged = old.clone();
    for at in [MIB as usize, 10 * MIB as usize + 5, 20 * MIB as usize + 9] {
        damaged[at] ^= 0x55;
    }
    std::fs::write(seeds.join("sub/damaged.bin"), &damaged).unwrap();
    std::fs::write(seeds.join("unrelated.bin"), pseudo_random(MIB as usize, 9)).unwrap();
    let out2 = dir.path().join("out2.bin");
    let (report, fetched2) = get(&s, &[&id, "-o", p(&out2), "--seed", p(&seeds)]).await;
    eprintln!("damaged seed: fetched {fetched2} bytes, report {report}");
    assert!(std::fs::read(&out2).unwrap() == new);
    // Three damaged chunks of at most 256 KiB each are fetched besides.
    assert!(fetched2 > fetched, "the damaged chunks were not fetched: {fetched2} bytes");
    assert!(fetched2 < fetched + 3 * (256 << 10) + (64 << 10), "fetched {fetched2} bytes");

    // An existing older output replaced with --force is a seed by default.
    let (report, fetched3) = get(&s, &[&id, "-o", p(&old_path), "--force"]).await;
    assert!(fetched3 < 4 * MIB, "fetched {fetched3} bytes: {report}");
    assert!(std::fs::read(&old_path).unwrap() == new);

    // Without --force an existing output is still refused.
    let o = run(&s.base, &["get", &id, "-o", p(&out)]).await;
    assert!(!o.status.success());
    s.stop().await;
}
