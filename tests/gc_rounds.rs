//! GC against uploads across nodes, 200 random rounds: two nodes upload
//! files that share chunks with each other and with older files, a third
//! deletes an older file, and a fourth runs GC in a loop meanwhile, its
//! clock racing past every lease and grace period. After every round every
//! ready file reads back intact through a random node, and verify is clean
//! (every chunk row has its object, every object its row): after every
//! round over the twins, every tenth (and the last) over the engines,
//! where a verify lists the whole bucket. An upload whose
//! chunks GC took before its commit is refused (missing chunks) and sent
//! again, as a client does; nothing a commit acknowledged is ever lost.
//!
//! Over the twins (`MemMeta` and the generational `MemObjects`) and over
//! PostgreSQL and Garage (four `PgMeta` nodes, one bucket; skipped without
//! the engines unless `DEPOT_SCALEOUT=1`).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use common::{read_all, test_options};
use depot::store::meta::{MetaStore, PgMeta, PgOptions};
use depot::store::objects::ObjectsKind;
use depot::store::{
    ChunkerParams, Error, FileId, FileRecord, ManualClock, MemMeta, MemObjects, ObjectStore, Store,
    StoreOptions, Tenant, View,
};
use depot::testdata::pseudo_random;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ROUNDS: usize = 200;

/// Four nodes of one store: uploaders 0 and 1, deleter 2, GC 3.
struct Nodes {
    stores: Vec<Store>,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
    #[cfg(feature = "s3")]
    _garage: Option<common::garage::Garage>,
}

fn options() -> StoreOptions {
    StoreOptions {
        // A few chunks per base piece: files share most of theirs.
        chunking: ChunkerParams { min: 1024, avg: 4096, max: 16_384 },
        shared: true,
        gc_grace: Duration::from_secs(1),
        chunk_lease: Duration::from_secs(2),
        ..test_options()
    }
}

/// The nodes over `metas` (one per node), `objects` of `kind`.
fn open(
    metas: Vec<Arc<dyn MetaStore>>,
    objects: Arc<dyn ObjectStore>,
    clock: &Arc<ManualClock>,
    kind: ObjectsKind,
) -> Nodes {
    let dir = tempfile::tempdir().unwrap();
    let stores = metas
        .into_iter()
        .enumerate()
        .map(|(n, meta)| {
            let path = dir.path().join(n.to_string());
            let opts = StoreOptions { objects: kind, ..options() };
            Store::open_on(&path, opts, meta, objects.clone(), clock.clone()).unwrap()
        })
        .collect();
    Nodes {
        stores,
        clock: clock.clone(),
        _dir: dir,
        #[cfg(feature = "s3")]
        _garage: None,
    }
}

fn twins() -> Nodes {
    let meta = Arc::new(MemMeta::new());
    let metas: Vec<Arc<dyn MetaStore>> = (0..4).map(|_| meta.clone() as Arc<dyn MetaStore>).collect();
    open(metas, Arc::new(MemObjects::generational()), &ManualClock::new(), ObjectsKind::Fs)
}

#[cfg(feature = "s3")]
fn engines() -> Option<Nodes> {
    let url = common::postgres::database("gc_rounds")?;
    let garage = common::garage::Garage::start()?;
    let objects =
        depot::store::objects::S3Objects::open_with(&garage.options("rounds"), &garage.credentials())
            .unwrap();
    let node = || {
        let opts = PgOptions { exclusive: false, ..PgOptions::default() };
        Arc::new(PgMeta::open_with(&url, opts).unwrap()) as Arc<dyn MetaStore>
    };
    let objects: Arc<dyn ObjectStore> = Arc::new(objects);
    let mut nodes = open((0..4).map(|_| node()).collect(), objects, &ManualClock::new(), ObjectsKind::S3);
    nodes._garage = Some(garage);
    Some(nodes)
}

/// Uploads `data` through `store`, again while GC took chunks it sent
/// before its commit (at most 20 times).
fn upload(store: &Store, name: &str, data: &[u8]) -> FileRecord {
    let once = || -> depot::store::Result<FileRecord> {
        let mut ing = store.ingest(Tenant::default())?;
        for piece in data.chunks(10_000) {
            ing.push(piece)?;
        }
        ing.finish(&name.parse().unwrap(), None)
    };
    for _ in 0..20 {
        match once() {
            Ok(rec) => return rec,
            // Refused because GC was quicker (missing chunks, a claim taken
            // over, another writer's claim): what a client sends again.
            Err(Error::MissingChunks(_) | Error::Conflict(_) | Error::Unavailable(_)) => continue,
            Err(e) => panic!("upload of {name}: {e}"),
        }
    }
    panic!("upload of {name} refused 20 times");
}

/// `verify_every`: rounds between two verify runs (a verify lists the
/// whole bucket: 256 LIST requests on S3).
fn gc_against_uploads(nodes: &Nodes, verify_every: usize) {
    let mut rng = StdRng::seed_from_u64(0x6763);
    let base: Vec<Vec<u8>> = (0..6).map(|i| pseudo_random(40_000, 100 + i)).collect();
    let mut files: Vec<(FileId, Vec<u8>)> = Vec::new();
    let [a, b, c, d] = &nodes.stores[..] else { unreachable!() };
    for round in 0..ROUNDS {
        let contents: Vec<Vec<u8>> = (0..2)
            .map(|u| {
                let mut v = base[rng.random_range(0..base.len())].clone();
                v.extend_from_slice(&base[rng.random_range(0..base.len())]);
                v.extend_from_slice(&pseudo_random(rng.random_range(0..5_000), (round * 2 + u) as u64));
                v
            })
            .collect();
        // About eight files live: past that, two deletes a round.
        let deletes = if files.len() >= 8 { 2 } else { usize::from(rng.random_bool(0.3)).min(files.len()) };
        let mut doomed: Vec<usize> = rand::seq::index::sample(&mut rng, files.len(), deletes).into_vec();
        doomed.sort_unstable_by(|a, b| b.cmp(a));
        let stop = AtomicBool::new(false);
        let made: Vec<FileRecord> = thread::scope(|s| {
            let gc = s.spawn(|| {
                // The store's clock runs about five times as fast as the
                // wall's: leases of two seconds mostly outlive an upload,
                // and sometimes do not.
                while !stop.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(20));
                    nodes.clock.advance(Duration::from_millis(100));
                    d.gc(false).unwrap();
                }
            });
            let uploads: Vec<_> = [a, b]
                .into_iter()
                .zip(&contents)
                .enumerate()
                .map(|(u, (store, data))| s.spawn(move || upload(store, &format!("r{round}-{u}.bin"), data)))
                .collect();
            for &i in &doomed {
                c.delete_file(&View::All, &files[i].0).unwrap();
            }
            let made = uploads.into_iter().map(|h| h.join().unwrap()).collect();
            stop.store(true, Ordering::Relaxed);
            gc.join().unwrap();
            made
        });
        for i in doomed {
            files.remove(i);
        }
        files.extend(made.into_iter().map(|r| r.id).zip(contents));
        for (id, data) in &files {
            let node = &nodes.stores[rng.random_range(0..4)];
            assert!(read_all(node, id) == *data, "round {round}: file {id} differs from what was uploaded");
        }
        if round % verify_every == verify_every - 1 || round == ROUNDS - 1 {
            let v = nodes.stores[rng.random_range(0..4)].verify(false).unwrap();
            assert!(v.is_clean(), "round {round}: {v:?}");
            assert_eq!(v.objects, v.rows, "round {round}: every row has its object and no more: {v:?}");
        }
    }
}

#[test]
fn gc_against_uploads_over_the_twins() {
    gc_against_uploads(&twins(), 1);
}

#[cfg(feature = "s3")]
#[test]
fn gc_against_uploads_over_postgres_and_garage() {
    let Some(nodes) = engines() else { return };
    gc_against_uploads(&nodes, 10);
}
