//! Backups of a running store of one node (`POST /api/admin/backups`,
//! `depot backup`): each is a data dir that opens as the store at its
//! instant, recovered as after a crash there, whatever the store does
//! meanwhile and after (GC included), and costs no bytes of its own.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::cli::{Served, ok};
use common::http::{client, tus_create, tus_offset, tus_patch};
use common::{ingest, open_store, read_all, test_options};
use depot::store::{Faulty, ManualClock, NewStream, Store, Tenant, UploadId, View};
use depot::testdata::pseudo_random;
use depot::wire::BackupInfo;
use reqwest::StatusCode;

/// Bytes of the regular files under `dir`.
fn tree_bytes(dir: &Path) -> u64 {
    walk(dir).iter().map(|f| std::fs::metadata(f).unwrap().len()).sum()
}

/// The regular files under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let ty = e.file_type().unwrap();
        if ty.is_dir() {
            out.extend(walk(&e.path()));
        } else if ty.is_file() {
            out.push(e.path());
        }
    }
    out
}

/// A tus PATCH that must be acknowledged: the answer.
async fn tus_append(url: &str, offset: usize, body: &[u8]) -> reqwest::Response {
    let r = tus_patch(url, offset).body(body.to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "PATCH at {offset}");
    r
}

/// `depot` run on a data dir (no server), with `env`: its JSON output.
fn offline(args: &[&str], data: &Path, env: &[(&str, &str)]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_depot"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env_remove("DEPOT_CONFIG")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "depot {args:?}: {}{text}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("depot {args:?}: {e}: {text}"))
}

/// The real server and `depot backup`: the backup holds the store as it
/// was (a file since deleted and collected, an upload at the offset it had
/// acknowledged), none of what came after, and no byte the store appended
/// later; moved elsewhere, it serves, resumes the upload and verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_holds_the_store_at_its_instant_after_the_store_moves_on_and_collects() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    // Deleted chunks are collected a second after their upload; the layout
    // is the test pass's (pack files unless DEPOT_PACKS=false).
    let packs = common::packs_from_env().to_string();
    let env = [("DEPOT_GC_GRACE", "0s"), ("DEPOT_CHUNK_LEASE", "1s"), ("DEPOT_PACKS", packs.as_str())];
    let s = Served::start(&live, &[], &env).await;
    let a = pseudo_random(2_000_000, 1);
    let id_a = s.upload("a.bin", &a).await;
    let t = pseudo_random(3_000_000, 2);
    let path = tus_create(&s.url("/api/tus/"), t.len(), "t.bin").await;
    let url = s.url(&path);
    let half = t.len() / 2;
    tus_append(&url, 0, &t[..half]).await;

    let out = common::cli::run(&s.base, &["backup", "--json"]).await;
    let info: BackupInfo = serde_json::from_str(ok(&out).trim()).unwrap();
    let backup = PathBuf::from(&info.path);
    assert_eq!(backup.parent().unwrap(), live.join("backups").canonicalize().unwrap(), "{info:?}");
    assert!(info.objects > 0 && info.object_bytes >= a.len() as u64 / 2, "{info:?}");
    assert_eq!(info.uploads, 1, "{info:?}");
    let linked = tree_bytes(&backup.join("objects"));

    // The store moves on: `a` goes, `b` comes, the upload goes on.
    let r = client().delete(s.url(&format!("/api/files/{id_a}"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let b = pseudo_random(1_500_000, 3);
    let id_b = s.upload("b.bin", &b).await;
    tus_append(&url, half, &t[half..half + 500_000]).await;
    assert_eq!(
        tree_bytes(&backup.join("objects")),
        linked,
        "the store wrote into a file the backup links (a pack not sealed)"
    );
    assert_eq!(s.stop().await, Some(0));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let gc = offline(&["gc"], &live, &env);
    assert!(gc["deleted_chunks"].as_u64().unwrap() > 0, "the store collected nothing of `a`: {gc}");
    // With no server, `depot backup --data-dir` makes one itself.
    let cold: BackupInfo = serde_json::from_value(offline(&["backup", "--json"], &live, &env)).unwrap();
    let report = offline(&["verify"], Path::new(&cold.path), &env);
    assert_eq!(report["files"], 1, "`b` alone: {report}");

    // Elsewhere, as an operator copies it.
    let restored = dir.path().join("restored");
    let cp = std::process::Command::new("cp").arg("-a").arg(&backup).arg(&restored).status().unwrap();
    assert!(cp.success());
    std::fs::remove_dir_all(&backup).unwrap();
    let r = Served::start(&restored, &[], &env[2..]).await;
    assert!(r.download(&id_a).await == a, "the backed-up file differs");
    let gone = client().get(r.url(&format!("/api/files/{id_b}"))).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND, "a file from after the backup is in it");
    let url = r.url(&path);
    assert_eq!(tus_offset(&url).await, half as u64, "the upload is not where the backup found it");
    let done = tus_append(&url, half, &t[half..]).await;
    let file = done.headers()["depot-file-id"].to_str().unwrap().to_string();
    assert!(r.download(&file).await == t, "the upload resumed from the backup differs");
    assert_eq!(r.stop().await, Some(0));
    let report = offline(&["verify"], &restored, &[]);
    assert_eq!(report["missing_objects"], serde_json::json!([]), "{report}");
}

/// What each writer thread of the store-level test did, for the backups'
/// checks: files by name with their bytes' seed, uploads with theirs.
#[derive(Default)]
struct Made {
    files: HashMap<String, u64>,
    uploads: Vec<(UploadId, u64)>,
}

const UPLOAD_LEN: usize = 150_000;

/// A new upload of `len` bytes named `name`.
fn new_upload(store: &Store, len: usize, name: &str) -> UploadId {
    let new = NewStream {
        tenant: Tenant::default(),
        length: Some(len as u64),
        name: name.parse().unwrap(),
        declared_type: None,
        metadata: String::new(),
        partial: false,
    };
    store.create_stream(new).unwrap().record.id
}

fn upload_bytes(seed: u64) -> Vec<u8> {
    pseudo_random(UPLOAD_LEN, seed)
}

fn file_bytes(seed: u64) -> Vec<u8> {
    pseudo_random(60_000 + (seed as usize % 7) * 9_000, seed)
}

/// Backups taken while one thread stores and deletes files and runs GC
/// past every grace period, and another makes tus uploads in small
/// appends: each backup verifies with no missing object, every file it
/// lists reads as stored, and every upload it holds unfinished resumes
/// from its offset to the source's bytes.
#[test]
fn backups_taken_while_files_and_uploads_come_and_go_each_open_whole() {
    let dir = tempfile::tempdir().unwrap();
    let opts = test_options();
    let (store, clock) = open_store(dir.path(), opts.clone());
    let made = Mutex::new(Made::default());
    // GC's clock jumps and whole uploads do not overlap: the jumps would
    // expire an upload's leases mid-way, which no real clock does.
    let epoch = Mutex::new(());
    let stop = AtomicBool::new(false);
    let mut backups = Vec::new();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut kept = Vec::new();
            let mut seed = 1_000u64;
            while !stop.load(Ordering::Relaxed) {
                seed += 1;
                let name = format!("f{seed}.bin");
                let rec = ingest(&store, &name, &file_bytes(seed));
                made.lock().unwrap().files.insert(name, seed);
                kept.push(rec.id);
                if kept.len() > 3 {
                    store.delete_file(&View::All, &kept.remove(0)).unwrap();
                }
                if seed % 4 == 0 {
                    let _one = epoch.lock().unwrap();
                    clock.advance(opts.gc_grace + opts.chunk_lease + Duration::from_secs(1));
                    store.gc(seed % 8 == 0).unwrap();
                }
            }
        });
        scope.spawn(|| {
            let mut seed = 5_000u64;
            while !stop.load(Ordering::Relaxed) {
                seed += 1;
                let data = upload_bytes(seed);
                let _one = epoch.lock().unwrap();
                let id = new_upload(&store, data.len(), &format!("u{seed}.bin"));
                made.lock().unwrap().uploads.push((id, seed));
                // Every third is cancelled halfway (its directory removed).
                let pieces: Vec<&[u8]> = data.chunks(7_001).collect();
                let upto = if seed % 3 == 0 { pieces.len() / 2 } else { pieces.len() };
                let mut at = 0;
                for piece in &pieces[..upto] {
                    let mut app = store.begin_append(&id, at).unwrap();
                    app.push(piece).unwrap();
                    app.finish(true).unwrap();
                    at += piece.len() as u64;
                }
                if upto < pieces.len() {
                    store.terminate_stream(&id).unwrap();
                }
            }
        });
        for _ in 0..16 {
            std::thread::sleep(Duration::from_millis(100));
            let made = store.backup();
            let failed = made.is_err();
            backups.push(made);
            if failed {
                break;
            }
        }
        // Before anything can fail: the scope waits for the writers.
        stop.store(true, Ordering::Relaxed);
    });
    let backups: Vec<_> = backups.into_iter().map(|b| b.expect("a backup failed")).collect();
    store.close().unwrap();
    drop(store);

    let made = made.into_inner().unwrap();
    let mut unfinished = 0;
    for b in &backups {
        let (s, _) = open_store(&b.path, test_options());
        let report = s.verify(false).unwrap();
        assert!(
            report.missing_objects.is_empty() && report.corrupt_objects.is_empty(),
            "{}: {report:?}",
            b.name
        );
        let (files, _) = s.list_files(&View::All, None, 10_000).unwrap();
        for f in &files {
            let seed = made.files.get(&f.name).copied().or_else(|| {
                // A completed upload: its bytes by its seed.
                f.name.strip_prefix('u').and_then(|n| n.strip_suffix(".bin")).and_then(|n| n.parse().ok())
            });
            let want = match seed {
                Some(seed) if f.name.starts_with('u') => upload_bytes(seed),
                Some(seed) => file_bytes(seed),
                None => panic!("{}: a file nobody made: {}", b.name, f.name),
            };
            assert!(read_all(&s, &f.id) == want, "{}: {} differs", b.name, f.name);
        }
        for (id, seed) in &made.uploads {
            let Ok(rec) = s.stream_upload(id) else { continue };
            let st = rec.stream.unwrap();
            if st.complete || st.file.is_some() {
                continue;
            }
            unfinished += 1;
            let data = upload_bytes(*seed);
            let mut app = s.begin_append(id, st.offset).unwrap();
            app.push(&data[st.offset as usize..]).unwrap();
            let file = app.finish(true).unwrap().file.expect("the resumed upload completed");
            assert!(read_all(&s, &file.id) == data, "{}: upload {id} resumed to other bytes", b.name);
        }
        s.close().unwrap();
    }
    assert!(unfinished > 0, "no backup caught an upload midway: the test shows nothing of tails");
}

/// A backup waits for a GC run that is deleting, and finds after it what
/// that run left: the rows of its checkpoint never name objects deleted
/// before it linked them. (GC waits for a backup the same way; the test
/// above runs both at once.)
#[test]
fn a_backup_waits_for_a_gc_run_that_is_deleting() {
    let dir = tempfile::tempdir().unwrap();
    let opts = test_options();
    let objects =
        Arc::new(Faulty::new(depot::store::open_objects(&opts, &dir.path().join("objects")).unwrap()));
    let clock = ManualClock::new();
    let store = Store::open_with(dir.path(), opts.clone(), objects.clone(), clock.clone()).unwrap();
    let data = pseudo_random(300_000, 1);
    let kept = ingest(&store, "kept.bin", &data);
    let gone = ingest(&store, "gone.bin", &pseudo_random(300_000, 2));
    store.delete_file(&View::All, &gone.id).unwrap();
    clock.advance(opts.gc_grace + opts.chunk_lease + Duration::from_secs(1));
    let pause = objects.pause_next_delete();
    let b = std::thread::scope(|scope| {
        let gc = scope.spawn(|| store.gc(false).unwrap());
        pause.wait(Duration::from_secs(10)).expect("GC did not reach its deletes");
        let backup = scope.spawn(|| store.backup());
        std::thread::sleep(Duration::from_millis(300));
        let early = backup.is_finished();
        pause.release();
        assert!(gc.join().unwrap().deleted_chunks > 0, "GC deleted nothing: the test shows nothing");
        assert!(!early, "the backup went on while GC was deleting");
        backup.join().unwrap().unwrap()
    });
    store.close().unwrap();
    let (s, _) = open_store(&b.path, test_options());
    let report = s.verify(false).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(read_all(&s, &kept.id) == data);
    assert!(s.open_file(&gone.id).is_err(), "the deleted file is in the backup");
}

/// Two backups in one instant of the store's clock get names of their own,
/// and a backup removes the partial directory a crash left.
#[test]
fn backups_in_one_instant_are_named_apart() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_store(dir.path(), test_options());
    let data = pseudo_random(100_000, 9);
    let f = ingest(&store, "x.bin", &data);
    // What a process killed midway through a backup leaves.
    let left_by_a_crash = dir.path().join("backups/.partial-2026-12-07T000000.000Z/meta");
    std::fs::create_dir_all(&left_by_a_crash).unwrap();
    let (one, two) = (store.backup().unwrap(), store.backup().unwrap());
    assert_ne!(one.path, two.path);
    assert!(two.name.starts_with(&one.name) && two.name.ends_with("-1"), "{} then {}", one.name, two.name);
    store.close().unwrap();
    for b in [one, two] {
        let (s, _) = open_store(&b.path, test_options());
        assert!(read_all(&s, &f.id) == data);
        s.close().unwrap();
    }
    let left: Vec<_> =
        std::fs::read_dir(dir.path().join("backups")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 2, "a partial directory was left, or a crash's was not removed: {left:?}");
}

/// A directory on another file system than `near`'s, for `backups/`.
fn elsewhere(near: &Path) -> tempfile::TempDir {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(near).unwrap().dev();
    ["/dev/shm", "/run", "/tmp", "/var/tmp"]
        .into_iter()
        .filter(|c| std::fs::metadata(c).is_ok_and(|m| m.dev() != dev))
        .find_map(|c| tempfile::tempdir_in(c).ok())
        .expect("a writable directory on a second file system (a tmpfs at /dev/shm) for this test")
}

/// With a disk of its own mounted at `backups/`, a backup copies the
/// objects it cannot hard-link, and opens whole from there: files read,
/// the unfinished upload resumes.
#[test]
fn a_backup_onto_another_file_system_copies_what_it_cannot_link() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let disk = elsewhere(dir.path());
    // An operator's backup disk mounted at backups/ (here, a link to it).
    std::os::unix::fs::symlink(disk.path(), dir.path().join("backups")).unwrap();
    let (store, _) = open_store(dir.path(), test_options());
    let (a, b) = (pseudo_random(700_000, 21), pseudo_random(300_000, 22));
    let (fa, fb) = (ingest(&store, "a.bin", &a), ingest(&store, "b.bin", &b));
    let up_data = pseudo_random(400_000, 23);
    let up = new_upload(&store, up_data.len(), "u.bin");
    let mut app = store.begin_append(&up, 0).unwrap();
    app.push(&up_data[..150_001]).unwrap();
    app.finish(true).unwrap();
    let report = store.backup().unwrap();
    assert!(report.objects > 0 && report.object_bytes >= 1_000_000, "{report:?}");
    assert_eq!(report.copied_bytes, report.object_bytes, "every object copied, none linked: {report:?}");
    assert_eq!(report.uploads, 1, "{report:?}");
    assert!(report.path.starts_with(std::fs::canonicalize(disk.path()).unwrap()), "{report:?}");
    let objects = dir.path().join("objects");
    for e in walk(&objects) {
        assert_eq!(std::fs::metadata(&e).unwrap().nlink(), 1, "{} was linked", e.display());
    }
    store.close().unwrap();
    drop(store);

    let (s, _) = open_store(&report.path, test_options());
    let v = s.verify(false).unwrap();
    assert!(v.missing_objects.is_empty() && v.corrupt_objects.is_empty(), "{v:?}");
    assert!(read_all(&s, &fa.id) == a && read_all(&s, &fb.id) == b);
    let at = s.stream_upload(&up).unwrap().stream.unwrap().offset;
    assert_eq!(at, 150_001);
    let mut app = s.begin_append(&up, at).unwrap();
    app.push(&up_data[150_001..]).unwrap();
    let file = app.finish(true).unwrap().file.expect("the resumed upload completed");
    assert!(read_all(&s, &file.id) == up_data, "the resumed upload holds other bytes");
    s.close().unwrap();
}

/// A store whose metadata is not RocksDB, or that nodes share, is not
/// backed up by depot (PostgreSQL and S3 have their own tools): refused,
/// with nothing left behind.
#[test]
fn a_store_on_other_engines_is_not_backed_up_by_depot() {
    for shared in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let opts = depot::store::StoreOptions { shared, ..test_options() };
        let store = Store::open_on(
            dir.path(),
            opts,
            Arc::new(depot::store::MemMeta::new()),
            Arc::new(depot::store::MemObjects::new()),
            ManualClock::new(),
        )
        .unwrap();
        let e = store.backup().unwrap_err();
        assert!(matches!(e, depot::store::Error::Conflict(_)), "shared {shared}: {e}");
        let left = std::fs::read_dir(dir.path().join("backups")).map_or(0, |d| d.count());
        assert_eq!(left, 0, "shared {shared}: a refused backup left a directory");
    }
}
