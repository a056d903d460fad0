//! The put protocol on a generational object store (claim → PUT → flip,
//! docs/DESIGN.md "Generations") and GC's generation-aware steps, driven
//! deterministically through the fault hooks of [`Faulty`]: a writer paused
//! between its claim and its flip while GC (or another writer) acts past
//! its deadline, a delayed DELETE of an old generation, a failure and a
//! crash at each step of a put, a GC cut before its DELETE while a put
//! takes rows over, and the count of PUTs a put sends.
//!
//! Each test runs over the twins (`MemMeta` and a generational
//! `MemObjects`: `twins::`), and over PostgreSQL and S3 objects on a
//! throwaway Garage (`scaleout::`; skipped without them unless
//! `DEPOT_SCALEOUT=1`). The store's clock is a manual one on both, so a
//! claim's deadline passes when a test says so.

mod common;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::test_options;
use depot::store::objects::Op;
use depot::store::{
    ChunkId, Error, Faulty, ManualClock, MemMeta, MemObjects, MetaBackend, ObjectKey, ObjectStore, Store,
    Tenant,
};
use depot::testdata::pseudo_random;

const WAIT: Duration = Duration::from_secs(30);
/// Past a claim's deadline (a minute by default).
const PAST_CLAIM: Duration = Duration::from_secs(11 * 60);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Which engines a test's store runs over.
#[derive(Debug, Clone, Copy)]
enum Engines {
    Twins,
    Scaleout,
}

/// A store's backends, outliving any one opening of it: opening again
/// without a close is a restart after a crash.
struct Home {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    /// The objects as they are, behind no fault hook.
    objects: Arc<dyn ObjectStore>,
    meta: Option<Arc<MemMeta>>,
    pg: Option<String>,
    #[cfg(feature = "s3")]
    _garage: Option<common::garage::Garage>,
}

impl Home {
    fn new(engines: Engines) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new();
        match engines {
            Engines::Twins => Home {
                dir,
                clock,
                objects: Arc::new(MemObjects::generational()),
                meta: Some(Arc::new(MemMeta::new())),
                pg: None,
                #[cfg(feature = "s3")]
                _garage: None,
            },
            #[cfg(feature = "s3")]
            Engines::Scaleout => {
                let g = common::garage::Garage::start().expect("checked by the test's wrapper");
                let s3 = depot::store::objects::S3Objects::open_with(&g.options("gen"), &g.credentials());
                Home {
                    dir,
                    clock,
                    objects: Arc::new(s3.unwrap()),
                    meta: None,
                    pg: Some(common::postgres::database("gen").expect("checked by the test's wrapper")),
                    _garage: Some(g),
                }
            }
            #[cfg(not(feature = "s3"))]
            Engines::Scaleout => unreachable!("the scaleout tests need the `s3` feature"),
        }
    }

    /// Opens the store with fresh fault hooks in front of the objects.
    fn open(&self) -> (Store, Arc<Faulty>) {
        let faulty = Arc::new(Faulty::new(self.objects.clone()));
        let mut opts = test_options();
        let store = match (&self.meta, &self.pg) {
            (Some(meta), _) => {
                Store::open_on(self.dir.path(), opts, meta.clone(), faulty.clone(), self.clock.clone())
            }
            (None, Some(url)) => {
                opts.meta = MetaBackend::Postgres(url.clone());
                Store::open_with(self.dir.path(), opts, faulty.clone(), self.clock.clone())
            }
            (None, None) => unreachable!(),
        };
        (store.unwrap(), faulty)
    }

    /// Every key the bucket holds for chunk `id`.
    fn keys_of(&self, id: &ChunkId) -> Vec<ObjectKey> {
        let page = self.objects.list(id.as_bytes()[0], None, 100_000).unwrap();
        page.into_iter().map(|e| e.key).filter(|k| k.id == *id).collect()
    }

    /// How many chunk objects the store holds.
    fn object_count(&self) -> usize {
        let mut n = 0;
        for prefix in 0..=255u8 {
            depot::store::objects::for_each_page::<std::io::Error>(&*self.objects, prefix, 1000, |p| {
                n += p.len();
                Ok(())
            })
            .unwrap();
        }
        n
    }
}

/// Runs each named test once per engine set, as `twins::name` and
/// `scaleout::name` (that one returns at once, saying why, where PostgreSQL
/// or Garage is missing and `DEPOT_SCALEOUT` is not `1`).
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod twins {
            $(#[test] fn $name() { super::$name(super::Engines::Twins) })*
        }
        #[cfg(all(feature = "postgres", feature = "s3"))]
        mod scaleout {
            $(#[test] fn $name() {
                if crate::common::postgres::database(stringify!($name)).is_some()
                    && crate::common::garage::Garage::available()
                {
                    super::$name(super::Engines::Scaleout)
                }
            })*
        }
    };
}

on_both!(
    one_put_per_new_chunk_and_none_for_a_dedup_hit,
    a_writer_paused_past_its_claim_is_refused_after_gc_and_cleans_up,
    a_writer_paused_past_its_claim_loses_to_a_second_writer,
    a_delayed_delete_of_an_old_generation_spares_the_new_one,
    a_failure_at_each_put_step_releases_its_claims,
    a_gc_cut_before_its_delete_is_finished_by_the_next_run,
    a_download_across_a_heal_reads_the_new_generation,
    a_range_across_a_heal_reads_the_new_generation,
);

fn assert_clean(store: &Store, home: &Home) {
    let v = store.verify(false).unwrap();
    assert!(v.is_clean(), "{v:?}");
    assert_eq!((v.deleting_rows, v.writing_rows), (0, 0), "{v:?}");
    assert_eq!(v.objects, v.rows, "every object has its row and no more: {v:?}");
    assert_eq!(home.object_count() as u64, v.rows);
}

/// A chunk's bytes and id.
fn chunk(seed: u64) -> (Vec<u8>, ChunkId) {
    let data = pseudo_random(5000, seed);
    let id = ChunkId::of(&data);
    (data, id)
}

/// A new chunk costs exactly one PUT and no HEAD or LIST; a chunk named
/// twice in one batch, once; a dedup hit (the same file again, a chunk the
/// store has) costs none.
fn one_put_per_new_chunk_and_none_for_a_dedup_hit(engines: Engines) {
    let home = Home::new(engines);
    let (store, faulty) = home.open();
    let data = pseudo_random(400_000, 1);
    let mut ing = store.ingest(Tenant::default()).unwrap();
    ing.push(&data).unwrap();
    ing.finish(&"a.bin".parse().unwrap(), None).unwrap();
    let chunks = store.stats().unwrap().unique_chunks;
    assert!(chunks > 20, "{chunks}");
    assert_eq!(faulty.calls(Op::Put), chunks, "one PUT per new chunk");
    for op in [Op::Contains, Op::List, Op::Replace, Op::Delete] {
        assert_eq!(faulty.calls(op), 0, "{op:?} on the put path");
    }
    let mut ing = store.ingest(Tenant::default()).unwrap();
    ing.push(&data).unwrap();
    ing.finish(&"b.bin".parse().unwrap(), None).unwrap();
    assert_eq!(faulty.calls(Op::Put), chunks, "a dedup hit sends nothing");
    let (c, id) = chunk(2);
    let twice = [bytes::Bytes::from(c.clone()), bytes::Bytes::from(c)];
    let puts = store.put_chunks(&twice, store.default_lease()).unwrap();
    assert_eq!(puts.iter().map(|p| p.new).collect::<Vec<_>>(), [true, false]);
    assert_eq!(faulty.calls(Op::Put), chunks + 1, "a repeat in a batch is one PUT");
    assert_eq!(home.keys_of(&id).len(), 1);
    assert_eq!(faulty.calls(Op::Contains) + faulty.calls(Op::List), 0);
    assert_clean(&store, &home);
}

/// A writer stops after its claim, before its PUT; its deadline passes and
/// GC reaps the claim (deleting the generation, which is not there yet,
/// and dropping the row). The writer then PUTs and tries to flip: refused,
/// it deletes its own key and fails. No row names a missing object, and
/// sending the chunk again stores it.
fn a_writer_paused_past_its_claim_is_refused_after_gc_and_cleans_up(engines: Engines) {
    let home = Home::new(engines);
    let (store, faulty) = home.open();
    let (data, id) = chunk(3);
    let pause = faulty.pause_next(Op::Put);
    let writer = {
        let (s, d) = (store.clone(), data.clone());
        thread::spawn(move || s.put_chunk(&d, None, s.default_lease()))
    };
    let keys = pause.wait(WAIT).expect("the writer reached its PUT");
    assert_eq!(keys.len(), 1);
    let mine = keys[0];
    assert_eq!(mine.id, id);
    assert_ne!(mine.generation, 0, "a fresh generation");
    let v = store.verify(false).unwrap();
    assert!(v.is_clean() && v.writing_rows == 1, "a claim in flight is no damage: {v:?}");
    assert_eq!(store.missing(&[id], 0).unwrap(), vec![id], "a claim is not usable");

    home.clock.advance(PAST_CLAIM);
    let r = store.gc(false).unwrap();
    assert_eq!(r.deleted_chunks, 1, "{r:?}");
    pause.release();
    let err = writer.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    assert!(home.keys_of(&id).is_empty(), "the refused writer deleted its key");
    assert_clean(&store, &home);

    let put = store.put_chunk(&data, None, store.default_lease()).unwrap();
    assert!(put.new);
    assert_eq!(&store.read_chunk(&id, 5000).unwrap()[..], &data[..]);
    let keys = home.keys_of(&id);
    assert!(keys.len() == 1 && keys[0] != mine, "a new generation: {keys:?}");
    assert_clean(&store, &home);
}

/// A writer stops before its PUT and its deadline passes; a second writer
/// of the same chunk takes the expired claim over with its own generation
/// and finishes. The first then PUTs, is refused at its flip and deletes
/// its key: the second's object is the one the row names.
fn a_writer_paused_past_its_claim_loses_to_a_second_writer(engines: Engines) {
    let home = Home::new(engines);
    let (store, faulty) = home.open();
    let (data, id) = chunk(4);
    let pause = faulty.pause_next(Op::Put);
    let first = {
        let (s, d) = (store.clone(), data.clone());
        thread::spawn(move || s.put_chunk(&d, None, s.default_lease()))
    };
    let lost = pause.wait(WAIT).expect("the first writer reached its PUT")[0];
    home.clock.advance(PAST_CLAIM);
    assert!(store.put_chunk(&data, None, store.default_lease()).unwrap().new, "the second writer stores it");
    pause.release();
    assert!(matches!(first.join().unwrap(), Err(Error::Conflict(_))));
    let keys = home.keys_of(&id);
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_ne!(keys[0], lost);
    assert_eq!(&store.read_chunk(&id, 5000).unwrap()[..], &data[..]);
    assert_clean(&store, &home);
}

/// GC claims a chunk and stops before its DELETE; meanwhile the chunk is
/// sent again, which takes its row over with a new generation. The DELETE,
/// let go late, takes only the claimed generation, and GC leaves the row.
fn a_delayed_delete_of_an_old_generation_spares_the_new_one(engines: Engines) {
    let home = Home::new(engines);
    let (store, faulty) = home.open();
    let (data, id) = chunk(5);
    store.put_chunk(&data, None, 0).unwrap();
    let old = home.keys_of(&id);
    home.clock.advance(DAY);
    let pause = faulty.pause_next(Op::Delete);
    let gc = {
        let s = store.clone();
        thread::spawn(move || s.gc(false))
    };
    assert_eq!(pause.wait(WAIT).expect("GC reached its delete"), old);
    let put = store.put_chunk(&data, None, store.default_lease()).unwrap();
    assert!(put.new, "the row was mid-delete: the put stored the chunk anew");
    assert_eq!(home.keys_of(&id).len(), 2, "both generations, for now");
    pause.release();
    let r = gc.join().unwrap().unwrap();
    assert_eq!(r.deleted_chunks, 0, "the row was taken over: {r:?}");
    let keys = home.keys_of(&id);
    assert!(keys.len() == 1 && keys != old, "only the old generation went: {keys:?}");
    assert_eq!(&store.read_chunk(&id, 5000).unwrap()[..], &data[..]);
    assert!(store.missing(&[id], 0).unwrap().is_empty());
    assert_clean(&store, &home);
}

/// Where a failure cuts a put.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// Rows claimed, no object written.
    BeforePut,
    /// Rows claimed, two objects written, the rest not.
    MidPut,
    /// Rows claimed, every object written, no row flipped.
    BeforeFlip,
}

/// A PUT (or the barrier after it) fails at each point of a put of a
/// batch: the put releases its claims and deletes what it wrote, so verify
/// is clean, the same batch sent again at once is stored (no wait for the
/// claims' deadline), and GC reaps released claims nobody took over.
fn a_failure_at_each_put_step_releases_its_claims(engines: Engines) {
    let home = Home::new(engines);
    let (store, faulty) = home.open();
    for (n, cut) in [Cut::BeforePut, Cut::MidPut, Cut::BeforeFlip].into_iter().enumerate() {
        let batch = |round: u64| -> Vec<bytes::Bytes> {
            (0..8).map(|i| pseudo_random(3000, 1000 * round + 100 * n as u64 + i).into()).collect()
        };
        for (round, retry) in [(0, true), (1, false)] {
            match cut {
                Cut::BeforePut => faulty.fail_nth(Op::Put, 1),
                Cut::MidPut => faulty.fail_nth(Op::Put, 3),
                Cut::BeforeFlip => faulty.fail_nth(Op::Barrier, 1),
            }
            let chunks = batch(round);
            assert!(
                store.put_chunks(&chunks, store.default_lease()).is_err(),
                "{cut:?}: the injected failure"
            );
            let v = store.verify(false).unwrap();
            assert!(v.is_clean() && v.writing_rows == 8, "{cut:?}: {v:?}");
            assert_eq!(home.object_count() as u64, v.rows - 8, "{cut:?}: what it wrote is gone");
            if retry {
                let puts = store.put_chunks(&chunks, store.default_lease()).unwrap();
                assert!(puts.iter().all(|p| p.new), "{cut:?}: stored at once");
                for (c, p) in chunks.iter().zip(&puts) {
                    assert_eq!(store.read_chunk(&p.id, 3000).unwrap(), c, "{cut:?}");
                }
            } else {
                let r = store.gc(false).unwrap();
                assert_eq!(r.deleted_chunks, 8, "{cut:?}: released claims are due at once: {r:?}");
            }
            assert_clean(&store, &home);
        }
    }
}

/// A writer dies (its thread frozen forever at the point, its process
/// gone) after claiming a batch, before its PUT or before its flip, and the
/// store restarts. Verify is clean (claims are no damage), GC leaves the
/// claims until their deadline and then reaps them, rows and objects
/// alike, and the batch sent again is stored. Twins only: the frozen writer
/// would keep PostgreSQL's store lock.
#[test]
fn a_crash_between_claim_and_flip_is_finished_by_gc() {
    for (n, op) in [Op::Put, Op::Barrier].into_iter().enumerate() {
        let home = Home::new(Engines::Twins);
        let (store, faulty) = home.open();
        let batch: Vec<bytes::Bytes> =
            (0..8).map(|i| pseudo_random(3000, 100 * n as u64 + i).into()).collect();
        let pause = faulty.pause_next(op);
        let dead = {
            let (s, b) = (store.clone(), batch.clone());
            thread::spawn(move || s.put_chunks(&b, s.default_lease()))
        };
        pause.wait(WAIT).expect("the writer reached the point");
        // Never released: the writer is dead from here on.
        std::mem::forget(pause);
        drop((store, dead));

        let (store, _) = home.open();
        let v = store.verify(false).unwrap();
        assert!(v.is_clean() && v.writing_rows == 8, "{op:?}: {v:?}");
        assert_eq!(home.object_count(), if op == Op::Put { 0 } else { 8 }, "{op:?}");
        assert_eq!(store.gc(true).unwrap().deleted_chunks, 0, "{op:?}: claims live until their deadline");
        home.clock.advance(PAST_CLAIM);
        let r = store.gc(true).unwrap();
        assert_eq!((r.deleted_chunks, r.orphan_objects), (8, 0), "{op:?}: {r:?}");
        assert_eq!(store.stats().unwrap().unique_chunks, 0, "{op:?}");
        assert_clean(&store, &home);
        let puts = store.put_chunks(&batch, store.default_lease()).unwrap();
        assert!(puts.iter().all(|p| p.new), "{op:?}");
        assert_clean(&store, &home);
    }
}

/// GC claims chunks (`Deleting`, their generations kept) and its DELETE
/// fails; the process dies. Before the next run, half of the chunks are
/// sent again, which takes their rows over with new generations. The next
/// run deletes every claimed generation (the queue entries name them), drops
/// the rows nobody took over, keeps the others, and verify is clean.
fn a_gc_cut_before_its_delete_is_finished_by_the_next_run(engines: Engines) {
    let home = Home::new(engines);
    let (store, faulty) = home.open();
    let batch: Vec<bytes::Bytes> = (0..8).map(|i| pseudo_random(3000, 700 + i).into()).collect();
    store.put_chunks(&batch, 0).unwrap();
    let claimed: Vec<ObjectKey> = batch.iter().flat_map(|c| home.keys_of(&ChunkId::of(c))).collect();
    home.clock.advance(DAY);
    faulty.fail_nth(Op::Delete, 1);
    assert!(store.gc(false).is_err(), "the injected crash");
    drop(store); // the process dies: no close

    let (store, _) = home.open();
    let v = store.verify(false).unwrap();
    assert!(v.is_clean() && v.deleting_rows == 8 && v.stranded_deleting.is_empty(), "{v:?}");
    let puts = store.put_chunks(&batch[..4], store.default_lease()).unwrap();
    assert!(puts.iter().all(|p| p.new), "mid-delete rows are taken over");
    let r = store.gc(false).unwrap();
    assert_eq!(r.deleted_chunks, 4, "{r:?}");
    assert!(
        claimed.iter().all(|k| home.keys_of(&k.id).iter().all(|have| have != k)),
        "every claimed generation went"
    );
    for (c, p) in batch[..4].iter().zip(&puts) {
        assert_eq!(store.read_chunk(&p.id, 3000).unwrap(), c);
    }
    assert_eq!(store.missing(&puts.iter().map(|p| p.id).collect::<Vec<_>>(), 0).unwrap(), vec![]);
    assert_clean(&store, &home);
}

/// A store made before generations (schema 2, v1 rows) opens as schema 3
/// and its rows read as generation 0, which is the name its objects have.
#[test]
fn a_store_from_before_generations_opens_and_reads() {
    use depot::store::meta::{Batch, Cf, ChunkRow, MetaStore};
    let dir = tempfile::tempdir().unwrap();
    let (meta, objects) = (Arc::new(MemMeta::new()), Arc::new(MemObjects::new()));
    let open = || {
        Store::open_on(dir.path(), test_options(), meta.clone(), objects.clone(), ManualClock::new()).unwrap()
    };
    let (data, id) = chunk(6);
    {
        let store = open();
        store.put_chunk(&data, None, store.default_lease()).unwrap();
        store.close().unwrap();
    }
    // Back to what the version before generations wrote: a 34-byte row.
    let row = meta.get(Cf::Chunks, id.as_bytes()).unwrap().unwrap();
    assert_eq!(row.len(), ChunkRow::LEN);
    let mut b = Batch::default();
    b.put(Cf::Chunks, id.as_bytes(), &row[..ChunkRow::LEN_V1]);
    b.put(Cf::Meta, b"schema_version", b"2");
    meta.write(b, true).unwrap();
    let store = open();
    assert_eq!(meta.get(Cf::Meta, b"schema_version").unwrap().unwrap(), b"4");
    assert_eq!(
        meta.get(Cf::Chunks, id.as_bytes()).unwrap().unwrap().len(),
        ChunkRow::LEN_V1,
        "not rewritten"
    );
    assert_eq!(&store.read_chunk(&id, 5000).unwrap()[..], &data[..]);
    assert!(objects.contains(&ObjectKey::plain(id)).unwrap());
    assert!(store.verify(false).unwrap().is_clean());
}

/// A file of some 1.5 MB stored over `home`, its content, and the chunk
/// in the middle of its first segment with the offset where it starts.
struct Middle {
    store: Store,
    faulty: Arc<Faulty>,
    content: Vec<u8>,
    file: depot::store::FileId,
    chunk: depot::store::Entry,
    at: usize,
}

impl Middle {
    fn stored(home: &Home, seed: u64) -> Self {
        let (store, faulty) = home.open();
        let content = pseudo_random(1_500_000, seed);
        let file = common::ingest(&store, "healed.bin", &content).id;
        let entries = store.segment(&file, 0).unwrap();
        assert!(entries.len() > 12, "{} chunks", entries.len());
        let k = entries.len() / 2;
        let at = entries[..k].iter().map(|e| e.len as usize).sum();
        Middle { store, faulty, content, file, chunk: entries[k], at }
    }

    /// Marks the middle chunk damaged and stores it again: a new
    /// generation names it.
    fn heal(&self, home: &Home) {
        let id = self.chunk.id;
        let before = home.keys_of(&id);
        self.store.mark_damaged(&id, "a test").unwrap();
        let bytes = &self.content[self.at..self.at + self.chunk.len as usize];
        assert!(
            self.store.put_chunk(bytes, None, self.store.default_lease()).unwrap().new,
            "the put heals it"
        );
        assert_ne!(home.keys_of(&id), before, "healed under a new generation");
    }

    /// The healed chunk is not reported missing, and the store checks clean.
    fn assert_healed(&self, home: &Home) {
        assert!(self.store.missing(&[self.chunk.id], 0).unwrap().is_empty(), "the healed chunk stays usable");
        assert_clean(&self.store, home);
    }
}

/// A download looks up the objects of a segment's chunks at once, before
/// it reads them. A chunk healed meanwhile (found damaged, moved aside and
/// stored again under a new generation) is read from its new generation:
/// the download is whole, and the healed chunk is not taken for damaged
/// again (which would move its good object aside).
fn a_download_across_a_heal_reads_the_new_generation(engines: Engines) {
    use futures_util::TryStreamExt;
    let home = Home::new(engines);
    let m = Middle::stored(&home, 77);

    let pause = m.faulty.pause_next(Op::Get);
    let download = {
        let (s, id) = (m.store.clone(), m.file);
        thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let (rec, guard) = s.open_file(&id).unwrap();
                let parts: Vec<bytes::Bytes> = s.read_range(&rec, guard, 0, rec.size).try_collect().await?;
                Ok::<_, Error>(parts.concat())
            })
        })
    };
    pause.wait(WAIT).expect("the download reached its first read");
    m.heal(&home);
    pause.release();
    let got = download.join().unwrap().expect("the download reads the healed chunk");
    assert!(got == m.content, "the download differs from the file");
    m.assert_healed(&home);
}

/// A short range looks up its chunk's object just before it reads it. A
/// chunk healed between that lookup and the read is read from its new
/// generation, and the read that failed on the old one does not mark the
/// healed row damaged.
fn a_range_across_a_heal_reads_the_new_generation(engines: Engines) {
    let home = Home::new(engines);
    let m = Middle::stored(&home, 78);
    let (start, end) = (m.at + 10, m.at + 100);

    let pause = m.faulty.pause_next(Op::Get);
    let range = {
        let (s, id) = (m.store.clone(), m.file);
        thread::spawn(move || common::read_range(&s, &id, start as u64, end as u64))
    };
    pause.wait(WAIT).expect("the range reached its read");
    m.heal(&home);
    pause.release();
    let got = range.join().expect("the range reads the healed chunk");
    assert!(got == m.content[start..end], "the range differs from the file");
    m.assert_healed(&home);
}
