//! A data dir on a small filesystem (a 64 MiB tmpfs, mounted by the test:
//! it needs root, as CI has; elsewhere it says so and does nothing), served
//! by the real binary:
//!
//! - below the free-space reserve, uploads get 507 before the disk is full,
//!   so a stopped server starts again, `depot stats`/`gc`/`verify` work, and
//!   deletes (which the reserve is kept for) plus GC make room again;
//! - a disk another writer filled to the last byte answers 507, not 500,
//!   to uploads and to metadata writes, loses nothing, and works again once
//!   the space is back and the server restarted.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cli::Served;
use depot::testdata::pseudo_random;
use depot::wire::{ErrorBody, FileInfo};
use reqwest::StatusCode;

/// A tmpfs of `mib` MiB, unmounted when dropped.
struct SmallFs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl SmallFs {
    fn mount(mib: u64) -> Option<SmallFs> {
        if unsafe_free_euid() != 0 {
            eprintln!("disk_full: not root, so no filesystem can be mounted here; these checks did not run");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fs");
        std::fs::create_dir(&path).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "depot-test", path.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(st.success(), "mount -t tmpfs failed while running as root");
        Some(SmallFs { _dir: dir, path })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// The effective user id, from `id -u` (the crate denies unsafe code, and
/// tests follow it).
fn unsafe_free_euid() -> u32 {
    let o = std::process::Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap_or(u32::MAX)
}

fn depot(args: &[&str], data: &Path) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_depot"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("DEPOT_")) {
        c.env_remove(k);
    }
    c.args(args).arg("--data-dir").arg(data).output().unwrap()
}

async fn upload(s: &Served, name: &str, data: &[u8]) -> reqwest::Response {
    reqwest::Client::new()
        .post(s.url(&format!("/api/files/upload?filename={name}")))
        .body(data.to_vec())
        .send()
        .await
        .unwrap()
}

/// Uploads 4 MiB files until one is refused; returns the stored ones with
/// their bytes, and the refusal.
async fn fill(s: &Served, seed: u64) -> (Vec<(FileInfo, Vec<u8>)>, reqwest::Response) {
    let mut kept = Vec::new();
    for i in 0..64 {
        let data = pseudo_random(4 << 20, seed + i);
        let r = upload(s, &format!("f{seed}-{i}.bin"), &data).await;
        if r.status() != StatusCode::CREATED {
            return (kept, r);
        }
        kept.push((r.json().await.unwrap(), data));
    }
    panic!("64 uploads of 4 MiB fit a 64 MiB filesystem");
}

async fn assert_refused_for_space(r: reqwest::Response) {
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    let e: ErrorBody = r.json().await.unwrap();
    assert_eq!(e.error, "insufficient_storage", "{}", e.message);
}

/// `depot verify` over the data dir finds it clean.
fn assert_verify_clean(data: &Path) {
    let v = depot(&["verify"], data);
    assert!(
        v.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
}

async fn assert_all_there(s: &Served, files: &[(FileInfo, Vec<u8>)]) {
    for (f, data) in files {
        let got = reqwest::get(s.url(&format!("/api/files/{}", f.id))).await.unwrap().bytes().await.unwrap();
        assert!(got[..] == data[..], "{} changed", f.name);
    }
}

#[tokio::test]
async fn below_the_reserve_uploads_get_507_and_deletes_and_gc_make_room() {
    let Some(fs) = SmallFs::mount(64) else { return };
    let env = [
        ("DEPOT_MIN_FREE", "16MiB"),
        ("DEPOT_GC_INTERVAL", "1s"),
        ("DEPOT_GC_GRACE", "0s"),
        ("DEPOT_CHUNK_LEASE", "1s"),
    ];
    let listen = ["--listen", "127.0.0.1:0"];
    let s = Served::start(&fs.path, &listen, &env).await;
    let (kept, refused) = fill(&s, 100).await;
    assert!(kept.len() >= 5, "only {} files fit", kept.len());
    let e: ErrorBody = refused.json().await.unwrap();
    assert_eq!(e.error, "insufficient_storage");
    assert!(e.message.contains("reserve"), "{}", e.message);
    assert_eq!(reqwest::get(s.url("/healthz")).await.unwrap().status(), StatusCode::OK);
    assert_all_there(&s, &kept).await;
    assert_eq!(s.stop().await, Some(0));

    // A stopped server's store opens again, offline commands work on it.
    for cmd in ["stats", "gc", "verify"] {
        let o = depot(&[cmd], &fs.path);
        assert!(o.status.success(), "depot {cmd}: {}", String::from_utf8_lossy(&o.stderr));
    }
    let s = Served::start(&fs.path, &listen, &env).await;
    assert_all_there(&s, &kept).await;

    // Deletes go through (the reserve is theirs), GC frees the space, and
    // the refused upload goes through.
    let c = reqwest::Client::new();
    for (f, _) in &kept[1..] {
        let r = c.delete(s.url(&format!("/api/files/{}", f.id))).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", s.log());
    }
    let data = pseudo_random(4 << 20, 999);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = upload(&s, "again.bin", &data).await;
        if r.status() == StatusCode::CREATED {
            break;
        }
        assert_refused_for_space(r).await;
        assert!(Instant::now() < deadline, "GC did not free the space within 30 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_all_there(&s, &kept[..1]).await;
    assert_eq!(s.stop().await, Some(0));
    assert_verify_clean(&fs.path);
}

/// Another writer fills the disk to the last byte (and no reserve is kept):
/// uploads and deletes answer 507, not 500, the server stays up and loses
/// nothing; once the other writer's file is gone and the server restarted,
/// all works again.
#[tokio::test]
async fn a_disk_filled_by_another_writer_answers_507_and_recovers() {
    let Some(fs) = SmallFs::mount(64) else { return };
    let env = [("DEPOT_MIN_FREE", "0")];
    let listen = ["--listen", "127.0.0.1:0"];
    let s = Served::start(&fs.path, &listen, &env).await;
    let mut kept = Vec::new();
    for i in 0..3 {
        let data = pseudo_random(4 << 20, 300 + i);
        let r = upload(&s, &format!("f{i}.bin"), &data).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        kept.push((r.json::<FileInfo>().await.unwrap(), data));
    }
    // The other writer.
    let ballast = fs.path.join("ballast");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&ballast).unwrap();
        let block = vec![7u8; 1 << 20];
        while f.write_all(&block).is_ok() {}
        while f.write_all(&block[..4096]).is_ok() {}
        while f.write_all(&[7]).is_ok() {}
    }
    let r = upload(&s, "more.bin", &pseudo_random(4 << 20, 400)).await;
    assert_refused_for_space(r).await;
    let c = reqwest::Client::new();
    let r = c.delete(s.url(&format!("/api/files/{}", kept[2].0.id))).send().await.unwrap();
    let deleted = match r.status() {
        StatusCode::NO_CONTENT => true,
        _ => {
            assert_refused_for_space(r).await;
            false
        }
    };
    assert_eq!(reqwest::get(s.url("/healthz")).await.unwrap().status(), StatusCode::OK);
    assert_all_there(&s, &kept[..2]).await;

    std::fs::remove_file(&ballast).unwrap();
    assert_eq!(s.stop().await, Some(0));
    let s = Served::start(&fs.path, &listen, &env).await;
    let r = upload(&s, "more.bin", &pseudo_random(4 << 20, 400)).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{}", s.log());
    // A refused delete may have hidden the file before a later step ran
    // out of space (its pending marker makes the restart finish it): gone
    // either way, never half there.
    let r = c.delete(s.url(&format!("/api/files/{}", kept[2].0.id))).send().await.unwrap();
    match (deleted, r.status()) {
        (true, StatusCode::NOT_FOUND) | (false, StatusCode::NO_CONTENT | StatusCode::NOT_FOUND) => {}
        (_, status) => panic!("delete after the restart: {status}\n{}", s.log()),
    }
    assert_all_there(&s, &kept[..2]).await;
    assert_eq!(s.stop().await, Some(0));
    assert_verify_clean(&fs.path);
}
