//! Races and crashes in GC, driven deterministically through the object
//! store's fault hooks ([`Faulty`] over the in-memory twins): GC stopped
//! between marking chunks `Deleting` and deleting their objects while the
//! same content is committed, and a crash at each of GC's steps followed by
//! a run that finishes the job. Each test runs twice: over the twin of the
//! object directory (GC holds the chunks' locks from claim to drop) and over
//! the generational twin (the S3 engine's: GC deletes exactly the claimed
//! generation, and a put may take a row over meanwhile). No sleeps: each
//! test stops a thread at a named point and acts there. The put protocol's
//! own races and crashes are in `tests/generations.rs`.

mod common;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{ingest, read_all, test_options};
use depot::store::objects::{Op, Pause};
use depot::store::{
    ChunkId, Faulty, GcReport, ManualClock, MemMeta, MemObjects, ObjectKey, ObjectStore, Store, View, object,
};
use depot::testdata::pseudo_random;

const DAY: Duration = Duration::from_secs(24 * 3600);
const WAIT: Duration = Duration::from_secs(30);

/// The twins a store runs over, outliving any one opening of it: opening
/// again without a close is a restart after a crash.
struct Twins {
    dir: tempfile::TempDir,
    meta: Arc<MemMeta>,
    objects: Arc<MemObjects>,
    clock: Arc<ManualClock>,
}

impl Twins {
    /// Fresh twins; `generational` objects stand in for the S3 engine.
    fn new(generational: bool) -> Self {
        Twins {
            dir: tempfile::tempdir().unwrap(),
            meta: Arc::new(MemMeta::new()),
            objects: Arc::new(if generational { MemObjects::generational() } else { MemObjects::new() }),
            clock: ManualClock::new(),
        }
    }

    /// Opens the store with fresh fault hooks in front of the objects.
    fn open(&self) -> (Store, Arc<Faulty>) {
        let faulty = Arc::new(Faulty::new(self.objects.clone()));
        let store = Store::open_on(
            self.dir.path(),
            test_options(),
            self.meta.clone(),
            faulty.clone(),
            self.clock.clone(),
        )
        .unwrap();
        (store, faulty)
    }
}

/// Stores a file, deletes it and lets its chunks' grace pass: the next GC
/// deletes them. Returns how many chunks it left.
fn doomed(store: &Store, clock: &ManualClock, seed: u64) -> (Vec<u8>, u64) {
    let data = pseudo_random(200_000, seed);
    let before = store.stats().unwrap().unique_chunks;
    let rec = ingest(store, "doomed.bin", &data);
    let chunks = store.stats().unwrap().unique_chunks - before;
    assert!(chunks > 10, "{chunks}");
    store.delete_file(&View::All, &rec.id).unwrap();
    clock.advance(DAY);
    (data, chunks)
}

/// Runs GC (with the orphan sweep if `sweep`) on a thread and waits until
/// it is about to delete the objects of the chunks it marked `Deleting`:
/// the thread, the pause (release it to let the delete go on) and those
/// chunks.
fn gc_paused_before_delete(store: &Store, faulty: &Faulty, sweep: bool) -> (GcThread, Pause, Vec<ObjectKey>) {
    let pause = faulty.pause_next_delete();
    let s = store.clone();
    let gc = thread::spawn(move || s.gc(sweep));
    let ids = pause.wait(WAIT).expect("GC reached its delete");
    (gc, pause, ids)
}

type GcThread = thread::JoinHandle<depot::store::Result<GcReport>>;

fn assert_clean(store: &Store) {
    let v = store.verify(false).unwrap();
    assert!(v.is_clean(), "{v:?}");
    assert_eq!(v.deleting_rows, 0, "{v:?}");
    assert_eq!(v.objects, v.rows, "every object has its row and no more: {v:?}");
}

/// GC has marked a deleted file's chunks `Deleting` and is about to delete
/// their objects when an upload of the same content (after some new bytes)
/// looks them up and finds them mid-delete. The commit must not name an
/// object GC then deletes: the file reads back whole, now and after more
/// GC, and verify is clean. On the generational twin the commit's put takes
/// the rows over with new generations while GC still holds the old ones:
/// GC's delayed DELETE takes only those, and it leaves the taken rows.
#[test]
fn a_commit_of_content_gc_is_deleting_reads_back_intact() {
    for generational in [false, true] {
        commit_of_content_gc_is_deleting(generational);
    }
}

fn commit_of_content_gc_is_deleting(generational: bool) {
    let t = Twins::new(generational);
    let (store, faulty) = t.open();
    let (data, chunks) = doomed(&store, &t.clock, 31);

    let (gc, pause, ids) = gc_paused_before_delete(&store, &faulty, false);
    assert_eq!(ids.len() as u64, chunks, "every chunk of the deleted file is doomed");
    assert!(ids.iter().all(|id| t.objects.contains(id).unwrap()), "nothing deleted yet");

    // The same content behind new bytes: its first batch writes the new
    // chunks' objects and reaches a barrier only after it has looked up
    // every chunk of the batch, and found the shared ones `Deleting`.
    let mut content = pseudo_random(50_000, 32);
    content.extend_from_slice(&data);
    let barriers = faulty.calls(Op::Barrier);
    let upload = {
        let (s, c) = (store.clone(), content.clone());
        thread::spawn(move || ingest(&s, "again.bin", &c))
    };
    let deadline = std::time::Instant::now() + WAIT;
    while faulty.calls(Op::Barrier) == barriers {
        assert!(std::time::Instant::now() < deadline, "the upload never reached its barrier");
        thread::yield_now();
    }
    // The directory's twin: the upload now waits for the chunks' locks,
    // which GC holds. The generational twin: the upload goes on, claiming
    // the shared chunks' rows with new generations.
    let (rec, upload) =
        if generational { (Some(upload.join().unwrap()), None) } else { (None, Some(upload)) };
    pause.release();
    let report = gc.join().unwrap().unwrap();
    let rec = rec.or_else(|| upload.map(|u| u.join().unwrap())).unwrap();
    if generational {
        assert!(report.deleted_chunks < chunks, "the shared rows were taken over: {report:?}");
        assert!(ids.iter().all(|k| !t.objects.contains(k).unwrap()), "the claimed generations went");
    } else {
        assert_eq!(report.deleted_chunks, chunks, "{report:?}");
    }

    assert!(read_all(&store, &rec.id) == content, "the committed file differs from its content");
    assert_clean(&store);
    t.clock.advance(DAY);
    store.gc(true).unwrap();
    assert!(read_all(&store, &rec.id) == content, "a later GC took part of the file");
    assert_clean(&store);
}

/// Where a crash cuts a GC run.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// Rows marked `Deleting`, no object deleted yet.
    BeforeDelete,
    /// Some objects deleted, some not.
    MidDelete,
    /// Every object deleted, rows not yet dropped.
    AfterDelete,
    /// The `n`th call of `op` fails (orphan sweep's listing and deletes,
    /// the temp sweep).
    Call(Op, u64),
}

/// A crash at each of GC's steps, then a restart: the next run finishes
/// the job (no row left `Deleting`, no object left behind), a live file
/// is untouched, and verify is clean.
#[test]
fn a_crash_at_each_gc_step_is_finished_by_the_next_run() {
    for generational in [false, true] {
        crash_at_each_gc_step(generational);
    }
}

fn crash_at_each_gc_step(generational: bool) {
    for cut in [
        Cut::BeforeDelete,
        Cut::MidDelete,
        Cut::AfterDelete,
        Cut::Call(Op::List, 1),
        Cut::Call(Op::List, 130),
        // Call 1 is the doomed chunks' delete; 2 the orphan sweep's.
        Cut::Call(Op::Delete, 2),
        Cut::Call(Op::SweepTemp, 1),
    ] {
        let t = Twins::new(generational);
        let (store, faulty) = t.open();
        let kept = pseudo_random(120_000, 40);
        let kept_rec = ingest(&store, "kept.bin", &kept);
        let (_, chunks) = doomed(&store, &t.clock, 41);
        // An object no row names, older than the grace period.
        let id = ChunkId::of(b"orphan");
        let orphan = ObjectKey::plain(id);
        t.objects.put_if_absent(&orphan, &object::encode_parts(&id, b"orphan", 0).parts()).unwrap();
        t.objects.set_modified(&orphan, std::time::SystemTime::now() - DAY);

        match cut {
            Cut::BeforeDelete | Cut::MidDelete | Cut::AfterDelete => {
                faulty.fail_nth(Op::Delete, 1);
                let (gc, pause, ids) = gc_paused_before_delete(&store, &faulty, true);
                assert_eq!(ids.len() as u64, chunks, "{cut:?}");
                let gone = match cut {
                    Cut::BeforeDelete => 0,
                    Cut::MidDelete => ids.len() / 2,
                    _ => ids.len(),
                };
                t.objects.delete_many(&ids[..gone]).unwrap();
                pause.release();
                assert!(gc.join().unwrap().is_err(), "{cut:?}: the injected crash");
            }
            Cut::Call(op, n) => {
                faulty.fail_nth(op, n);
                assert!(store.gc(true).is_err(), "{cut:?}: the injected crash");
            }
        }
        drop(store); // the process dies: no close

        let (store, _) = t.open();
        let r = store.gc(true).unwrap();
        if matches!(cut, Cut::BeforeDelete | Cut::MidDelete | Cut::AfterDelete) {
            assert_eq!(r.deleted_chunks, chunks, "{cut:?}: {r:?}");
        }
        assert!(!t.objects.contains(&orphan).unwrap(), "{cut:?}: the orphan is swept");
        assert_eq!(store.stats().unwrap().unique_chunks as usize, t.objects.len(), "{cut:?}");
        assert!(read_all(&store, &kept_rec.id) == kept, "{cut:?}: the live file changed");
        assert_clean(&store);
    }
}

/// A crash cut GC mid-delete; before any GC runs again, the same content is
/// uploaded. Its rows are found `Deleting` with half their objects gone:
/// the put rewrites them, the file reads back, and the next GC leaves it.
#[test]
fn content_uploaded_after_a_crash_mid_delete_survives_the_next_gc() {
    for generational in [false, true] {
        uploaded_after_a_crash_mid_delete(generational);
    }
}

fn uploaded_after_a_crash_mid_delete(generational: bool) {
    let t = Twins::new(generational);
    let (store, faulty) = t.open();
    let (data, _) = doomed(&store, &t.clock, 50);
    faulty.fail_nth(Op::Delete, 1);
    let (gc, pause, ids) = gc_paused_before_delete(&store, &faulty, false);
    t.objects.delete_many(&ids[..ids.len() / 2]).unwrap();
    pause.release();
    assert!(gc.join().unwrap().is_err());
    drop(store);

    let (store, _) = t.open();
    let v = store.verify(false).unwrap();
    assert_eq!(v.deleting_rows as usize, ids.len(), "{v:?}");
    let rec = ingest(&store, "again.bin", &data);
    assert!(read_all(&store, &rec.id) == data, "the file differs from its content");
    if generational {
        // The put took the rows over with new generations; the generations
        // the cut run claimed are in its queue entries, and the next run
        // deletes them (no orphan sweep needed).
        store.gc(false).unwrap();
        assert!(ids.iter().all(|k| !t.objects.contains(k).unwrap()), "the claimed generations went");
        assert!(ids.iter().all(|k| t.objects.keys_of(&k.id).len() == 1), "one object per chunk");
    }
    t.clock.advance(DAY);
    store.gc(true).unwrap();
    assert!(read_all(&store, &rec.id) == data, "GC took part of a committed file");
    assert_clean(&store);
}
