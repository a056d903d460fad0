//! Crashes: what a killed server leaves on disk is never read back as data,
//! acknowledged bytes survive, and recovery work is left to (or done by)
//! whoever owns it. The states are built by hand where timing would make a
//! test flaky, and by `kill -9` of the real binary where it need not.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::http::{client, tus_create, tus_offset, tus_patch};
use common::test_config;
use depot::store::{ChunkId, Faulty, FsObjects, ManualClock, MemObjects, Store, SystemClock, Tenant, View};
use depot::testdata::pseudo_random;
use reqwest::StatusCode;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

async fn patch(url: &str, offset: u64, body: &[u8]) -> reqwest::Result<reqwest::Response> {
    tus_patch(url, offset).body(body.to_vec()).send().await
}

async fn download(base: &str, id: &str) -> Vec<u8> {
    let r = client().get(format!("{base}/api/files/{id}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.bytes().await.unwrap().to_vec()
}

/// `depot verify --data-dir DIR`: its exit status and report.
fn verify(dir: &Path) -> (bool, serde_json::Value) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_depot"))
        .args(["verify", "--data-dir", dir.to_str().unwrap()])
        .env_remove("DEPOT_CONFIG")
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("verify printed no report ({e}): {}", String::from_utf8_lossy(&out.stderr))
    });
    (out.status.success(), report)
}

/// A `depot serve` process on an ephemeral port over `dir`.
struct Spawned {
    child: Child,
    base: String,
}

impl Spawned {
    async fn start(dir: &Path) -> Spawned {
        let mut child = Command::new(env!("CARGO_BIN_EXE_depot"))
            .args(["serve", "--data-dir", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .env_remove("DEPOT_CONFIG")
            // kill -9 keeps the page cache: syncing proves nothing here.
            .env("DEPOT_FSYNC", "never")
            .env("DEPOT_RATE_LIMIT", "false")
            .env("DEPOT_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let base = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(rest) = line.strip_prefix("depot listening on ") {
                    return rest.split_whitespace().next().unwrap().to_string();
                }
            }
            panic!("the server exited before it listened");
        })
        .await
        .expect("the server did not start");
        // Keep draining its log so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Spawned { child, base }
    }

    async fn kill9(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

/// Small PATCHes, `kill -9` at random moments, resume from HEAD: every
/// acknowledged offset survives and the stored file equals the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_small_tus_patches_never_changes_the_file() {
    const PIECE: usize = 4096;
    const KILLS: u32 = 24;
    let dir = tempfile::tempdir().unwrap();
    let data = Arc::new(pseudo_random(3_000_000, 21));
    let mut srv = Spawned::start(dir.path()).await;
    let path = tus_create(&format!("{}/api/tus/", srv.base), data.len(), "crash.bin").await;
    // The kill delays (10 to 99 ms): deterministic, so a failure reproduces.
    let delays = pseudo_random(KILLS as usize, 22);
    let acked = Arc::new(AtomicU64::new(0));
    let mut cut_mid_upload = 0;
    for round in 0..KILLS {
        let url = format!("{}{path}", srv.base);
        let at = tus_offset(&url).await;
        let was = acked.load(Ordering::SeqCst);
        assert!(at >= was, "round {round}: offset {at} after {was} was acknowledged");
        acked.store(at, Ordering::SeqCst);
        if at == data.len() as u64 {
            break;
        }
        let (d, a, u) = (data.clone(), acked.clone(), url.clone());
        let sender = tokio::spawn(async move {
            // The last byte is left for the end: the upload completes there.
            let mut at = at as usize;
            while at < d.len() - 1 {
                let end = (at + PIECE).min(d.len() - 1);
                match patch(&u, at as u64, &d[at..end]).await {
                    Ok(r) if r.status() == StatusCode::NO_CONTENT => {
                        at = end;
                        a.store(at as u64, Ordering::SeqCst);
                    }
                    _ => return,
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(10 + u64::from(delays[round as usize]) % 90)).await;
        srv.kill9().await;
        let _ = sender.await;
        if acked.load(Ordering::SeqCst) < data.len() as u64 - 1 {
            cut_mid_upload += 1;
        }
        srv = Spawned::start(dir.path()).await;
    }
    // The kills landed while bytes were flowing, not after the end.
    assert!(cut_mid_upload >= KILLS / 2, "only {cut_mid_upload} kills cut the upload");
    // Whatever is left, without kills; the last byte completes the upload.
    let url = format!("{}{path}", srv.base);
    let at = tus_offset(&url).await;
    assert!(at >= acked.load(Ordering::SeqCst));
    let r = patch(&url, at, &data[at as usize..]).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let file = r.headers()["depot-file-id"].to_str().unwrap().to_string();
    assert!(download(&srv.base, &file).await == *data, "the stored file differs from the source");
    srv.kill9().await;
    let (clean, report) = verify(dir.path());
    assert!(clean, "{report}");
}

/// A backup taken while the server runs, as an atomic snapshot of the file
/// system holding the data dir takes it (README, "Backing up one node"), is
/// the state `kill -9` leaves at that instant: every write made so far. A
/// copy of that state, put in another directory, is a store: it serves
/// every file acknowledged before the snapshot, resumes the unfinished
/// upload from at least its acknowledged offset, and verifies clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_a_killed_server_s_data_dir_elsewhere_is_a_working_store() {
    let live = tempfile::tempdir().unwrap();
    let data = pseudo_random(3_000_000, 31);
    let srv = Spawned::start(live.path()).await;
    let whole = common::upload_raw_to(
        &client(),
        &format!("{}/api/files/upload", srv.base),
        "whole.bin",
        &data[..1_000_000],
    )
    .await
    .id;
    let path = tus_create(&format!("{}/api/tus/", srv.base), data.len(), "crash.bin").await;
    let half = data.len() / 2;
    let r = patch(&format!("{}{path}", srv.base), 0, &data[..half]).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    srv.kill9().await;

    let restored = tempfile::tempdir().unwrap();
    copy_tree(live.path(), restored.path());
    drop(live);
    let srv = Spawned::start(restored.path()).await;
    assert!(download(&srv.base, &whole).await == data[..1_000_000], "the restored file differs");
    let url = format!("{}{path}", srv.base);
    let at = tus_offset(&url).await;
    assert!(at >= half as u64, "the restored upload is at {at}, {half} was acknowledged");
    let r = patch(&url, at, &data[at as usize..]).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let file = r.headers()["depot-file-id"].to_str().unwrap().to_string();
    assert!(
        download(&srv.base, &file).await == data,
        "the upload resumed on the copy differs from the source"
    );
    srv.kill9().await;
    let (clean, report) = verify(restored.path());
    assert!(clean, "{report}");
}

/// Copies the directories and regular files under `from` into `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// After an unclean shutdown the store syncs every object before it serves:
/// an object a killed predecessor left unsynced would otherwise be taken as
/// present and acknowledged in a commit without ever reaching the disk.
#[test]
fn an_unclean_open_syncs_what_the_predecessor_left() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let objects = Arc::new(Faulty::new(Arc::new(MemObjects::default())));
        let store =
            Store::open_with(dir.path(), common::test_options(), objects.clone(), Arc::new(SystemClock))
                .unwrap();
        (store, objects)
    };
    let (s, _) = open();
    s.close().unwrap();
    drop(s);
    let (s, objects) = open();
    assert_eq!(objects.sync_all_calls(), 0, "a clean open needs no sync");
    drop(s); // no close: a crash
    let (s, objects) = open();
    assert!(s.was_unclean());
    assert_eq!(objects.sync_all_calls(), 1);
}

/// Offline commands on a crashed server's data dir leave its recovery (the
/// orphan sweep) to whoever owns it; `depot gc` does it itself. Corrupt
/// objects that no row names are orphans: verify reports them and passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_commands_leave_crash_recovery_to_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Spawned::start(dir.path()).await;
    let data = pseudo_random(300_000, 8);
    let r = client()
        .post(format!("{}/api/files/upload?filename=a.bin", srv.base))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    srv.kill9().await;

    // What a power cut leaves: an object whose write was cut (no row names it).
    let orphan = ChunkId::of(b"never acknowledged");
    let hex = orphan.to_string();
    let odir = dir.path().join("objects").join(&hex[..2]).join(&hex[2..4]);
    std::fs::create_dir_all(&odir).unwrap();
    std::fs::write(odir.join(&hex), b"DPCK torn write").unwrap();

    let depot = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_depot"));
        c.args(args).arg("--data-dir").arg(dir.path()).env_remove("DEPOT_CONFIG");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, _) = depot(&["stats"], &[]);
    assert!(ok);
    let (clean, report) = verify(dir.path());
    assert!(clean, "a corrupt orphan is not damage: {report}");
    assert_eq!(report["corrupt_objects"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(report["corrupt_orphans"][0][0], hex, "{report}");
    assert!(report["orphan_objects"].as_u64().unwrap() >= 1, "{report}");

    // stats and verify did not clear the crash marker.
    let reopened = || Store::open(dir.path(), test_config(dir.path()).store_options()).unwrap();
    let s = reopened();
    assert!(s.was_unclean(), "an offline command cleared the crash marker");
    s.close().unwrap();
    drop(s);
    let s = reopened();
    assert!(s.was_unclean(), "a store that did no recovery cleared the crash marker");
    s.close().unwrap();
    drop(s);

    // gc does the recovery itself (grace 0: the orphan is old enough).
    let (ok, out) = depot(&["gc"], &[("DEPOT_GC_GRACE", "0s")]);
    assert!(ok, "{out}");
    let gc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(gc["orphan_objects"].as_u64().unwrap() >= 1, "{gc}");
    assert!(!odir.join(&hex).exists());
    let s = reopened();
    assert!(!s.was_unclean(), "gc swept the orphans: recovery is done");
    s.close().unwrap();
    drop(s);

    let srv = Spawned::start(dir.path()).await;
    let list: serde_json::Value =
        client().get(format!("{}/api/files", srv.base)).send().await.unwrap().json().await.unwrap();
    let id = list["files"][0]["id"].as_str().unwrap().to_string();
    assert!(download(&srv.base, &id).await == data);
    srv.kill9().await;
}

/// A store over a real object directory in a temp dir, with a manual clock,
/// whose GC crashed (a failed object delete, then no close) after marking
/// the chunks of a deleted file `Deleting`. Returns how many chunks that is.
fn crashed_mid_gc(seed: u64) -> (tempfile::TempDir, Arc<ManualClock>, u64) {
    let (dir, clock) = (tempfile::tempdir().unwrap(), ManualClock::new());
    let opts = common::test_options();
    let fs = FsObjects::open(&dir.path().join("objects"), opts.fsync).unwrap();
    let objects = Arc::new(Faulty::new(Arc::new(fs)));
    let store = Store::open_with(dir.path(), opts, objects.clone(), clock.clone()).unwrap();
    let mut ing = store.ingest(Tenant::default()).unwrap();
    ing.push(&pseudo_random(200_000, seed)).unwrap();
    let rec = ing.finish(&"doomed.bin".parse().unwrap(), None).unwrap();
    let chunks = store.stats().unwrap().unique_chunks;
    assert!(chunks > 10);
    store.delete_file(&View::All, &rec.id).unwrap();
    clock.advance(Duration::from_secs(24 * 3600));
    objects.fail_deletes(true);
    assert!(store.gc(false).is_err(), "the injected crash");
    drop(store); // the process dies: no close
    (dir, clock, chunks)
}

/// The store reopened after a crash, with working deletes.
fn reopen(dir: &Path, clock: &Arc<ManualClock>) -> Store {
    let opts = common::test_options();
    let objects = Arc::new(FsObjects::open(&dir.join("objects"), opts.fsync).unwrap());
    Store::open_with(dir, opts, objects, clock.clone()).unwrap()
}

/// A crash between GC's steps (rows marked `Deleting`, objects not yet
/// unlinked, rows not dropped) strands nothing: the next run, in a new
/// process, finishes the job and verify is clean.
#[test]
fn a_crash_between_gc_steps_is_finished_by_the_next_run() {
    let (dir, clock, chunks) = crashed_mid_gc(9);
    let store = reopen(dir.path(), &clock);
    let v = store.verify(false).unwrap();
    assert_eq!(v.deleting_rows, chunks, "{v:?}");
    assert!(v.stranded_deleting.is_empty(), "rows no GC would find: {v:?}");
    let r = store.gc(false).unwrap();
    assert_eq!(r.deleted_chunks, chunks, "{r:?}");
    let after = store.stats().unwrap();
    assert_eq!((after.unique_chunks, after.unique_bytes), (0, 0));
    let v = store.verify(false).unwrap();
    assert!(v.is_clean() && v.deleting_rows == 0 && v.objects == 0, "{v:?}");
}

/// Rows an older version stranded in `Deleting` (its GC dropped their queue
/// entry in the same batch that marked them): verify reports them and is
/// not clean; `--repair` queues them and the next GC finishes them.
#[test]
fn verify_reports_stranded_deleting_rows_and_repair_requeues_them() {
    use depot::store::meta::{Batch, Cf, MetaStore, RocksMeta};
    let (dir, clock, chunks) = crashed_mid_gc(10);
    // The old GC's state: rows in Deleting, no queue entry for them.
    {
        let meta = RocksMeta::open(&dir.path().join("meta")).unwrap();
        let keys: Vec<Box<[u8]>> = meta.scan(Cf::Gcq, b"", None).map(|kv| kv.unwrap().0).collect();
        assert!(!keys.is_empty());
        let mut b = Batch::default();
        for k in &keys {
            b.delete(Cf::Gcq, k);
        }
        meta.write(b, true).unwrap();
    }
    let store = reopen(dir.path(), &clock);
    assert_eq!(store.gc(false).unwrap().deleted_chunks, 0, "GC cannot see them");
    let v = store.verify(false).unwrap();
    assert!(!v.is_clean());
    assert_eq!(v.stranded_deleting.len() as u64, chunks, "{v:?}");
    store.verify(true).unwrap();
    assert_eq!(store.gc(false).unwrap().deleted_chunks, chunks);
    let v = store.verify(false).unwrap();
    assert!(v.is_clean() && v.deleting_rows == 0 && v.objects == 0, "{v:?}");
}
