//! The store's engine tests, each run over every backend: RocksDB and an
//! object directory in a temp dir (`disk::`), the in-memory twins
//! `MemMeta` and `MemObjects` (`memory::`), the same twins with generational
//! objects, as the S3 engine is (`generational::`: the claim → PUT → flip
//! put protocol), PostgreSQL metadata with the object directory
//! (`postgres::`, on the harness's throwaway server), and PostgreSQL with
//! S3 objects on a throwaway Garage (`scaleout::`). The last two are skipped
//! without their engines unless `DEPOT_SCALEOUT=1`. Only what one engine
//! alone can show (RocksDB's process lock) runs on one.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{ingest, open_store, put_the_same_chunks, read_range, test_options};
use depot::store::{
    ChunkId, Clock, Entry, Error, FileId, FsObjects, ManualClock, MemMeta, MemObjects, MetaBackend, NewFile,
    ObjectKey, ObjectStore, Store, StoreOptions, SystemClock, Tenant, View, object,
};
use depot::testdata::pseudo_random;
use futures_util::TryStreamExt;
use proptest::prelude::*;

/// Which metadata and object backends a test's store runs over.
#[derive(Debug, Clone, Copy)]
enum Backend {
    /// RocksDB and the object directory, in a temp dir.
    Disk,
    /// `MemMeta` and `MemObjects`.
    Memory,
    /// `MemMeta` and a generational `MemObjects` (the S3 engine's twin).
    Generational,
    /// PostgreSQL (a fresh database) and the object directory.
    Postgres,
    /// PostgreSQL and S3 objects on Garage: what several nodes would share.
    Scaleout,
}

/// Where a store lives, outliving any one opening of it: opening again is
/// a restart (without [`Store::close`], a crash).
struct Home {
    dir: tempfile::TempDir,
    mem: Option<(Arc<MemMeta>, Arc<MemObjects>)>,
    /// The metadata database's URL (objects as for `Disk`, or in `s3`).
    pg: Option<String>,
    /// The Garage whose bucket holds the objects.
    #[cfg(feature = "s3")]
    s3: Option<common::garage::Garage>,
}

impl Home {
    fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mem = match backend {
            Backend::Disk | Backend::Postgres | Backend::Scaleout => None,
            Backend::Memory => Some((Arc::new(MemMeta::new()), Arc::new(MemObjects::new()))),
            Backend::Generational => Some((Arc::new(MemMeta::new()), Arc::new(MemObjects::generational()))),
        };
        let pg = matches!(backend, Backend::Postgres | Backend::Scaleout)
            .then(|| common::postgres::database("store").expect("checked by the test's wrapper"));
        Home {
            dir,
            mem,
            pg,
            #[cfg(feature = "s3")]
            s3: matches!(backend, Backend::Scaleout)
                .then(|| common::garage::Garage::start().expect("checked by the test's wrapper")),
        }
    }

    /// Opens the store with a manual clock.
    fn open(&self, opts: StoreOptions) -> (Store, Arc<ManualClock>) {
        let clock = ManualClock::new();
        (self.try_open(opts, clock.clone()).unwrap(), clock)
    }

    fn try_open(&self, mut opts: StoreOptions, clock: Arc<dyn Clock>) -> depot::store::Result<Store> {
        if let Some(url) = &self.pg {
            opts.meta = MetaBackend::Postgres(url.clone());
        }
        match &self.mem {
            None => Store::open_with(self.dir.path(), opts, self.objects(), clock),
            Some((meta, objects)) => {
                Store::open_on(self.dir.path(), opts, meta.clone(), objects.clone(), clock)
            }
        }
    }

    /// The object store, as a second handle on the same objects.
    fn objects(&self) -> Arc<dyn ObjectStore> {
        #[cfg(feature = "s3")]
        if let Some(g) = &self.s3 {
            let s3 = depot::store::objects::S3Objects::open_with(&g.options("store"), &g.credentials());
            return Arc::new(s3.unwrap());
        }
        match &self.mem {
            None => {
                Arc::new(FsObjects::open(&self.dir.path().join("objects"), test_options().fsync).unwrap())
            }
            Some((_, objects)) => objects.clone(),
        }
    }

    /// Rewrites the bytes of chunk `id`'s object(s) behind the store's back.
    fn corrupt(&self, id: &ChunkId, f: impl Fn(&mut Vec<u8>)) {
        let objects = self.objects();
        let keys: Vec<ObjectKey> =
            objects.list(id.as_bytes()[0], None, 10_000).unwrap().into_iter().map(|e| e.key).collect();
        let mine: Vec<&ObjectKey> = keys.iter().filter(|k| k.id == *id).collect();
        assert!(!mine.is_empty(), "no object of {id}");
        for key in mine {
            let mut bytes = objects.get(key).unwrap().unwrap();
            f(&mut bytes);
            objects.replace(key, &[&bytes]).unwrap();
        }
    }
}

/// A fresh store with [`test_options`] over `backend`.
fn temp_store(backend: Backend) -> (Home, Store) {
    let home = Home::new(backend);
    let (store, _) = home.open(test_options());
    (home, store)
}

/// Runs each named test function once per backend, as `disk::name`,
/// `memory::name` and `postgres::name` (that one returns at once, saying
/// why, where PostgreSQL is not installed).
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod disk {
            $(#[test] fn $name() { super::$name(super::Backend::Disk) })*
        }
        mod memory {
            $(#[test] fn $name() { super::$name(super::Backend::Memory) })*
        }
        mod generational {
            $(#[test] fn $name() { super::$name(super::Backend::Generational) })*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(#[test] fn $name() {
                if crate::common::postgres::database(stringify!($name)).is_some() {
                    super::$name(super::Backend::Postgres)
                }
            })*
        }
        #[cfg(all(feature = "postgres", feature = "s3"))]
        mod scaleout {
            $(#[test] fn $name() {
                if crate::common::postgres::database(stringify!($name)).is_some()
                    && crate::common::garage::Garage::available()
                {
                    super::$name(super::Backend::Scaleout)
                }
            })*
        }
    };
}

on_every_backend!(
    same_content_twice_is_stored_once,
    delete_and_gc_free_exactly_the_unshared_chunks,
    gc_spares_pinned_and_recently_zeroed_chunks,
    commit_with_a_missing_chunk_fails_naming_it,
    reopen_keeps_everything,
    a_store_refuses_other_chunking_parameters,
    crash_between_object_write_and_metadata_leaves_a_store_gc_cleans,
    verify_finds_and_repair_heals_a_corrupt_object,
    put_verifies_a_given_hash_and_stores_nothing_on_mismatch,
    many_hashes_are_checked_in_one_query,
    only_client_questions_and_received_chunks_count_as_dedup_hits,
    listing_is_newest_first_and_pages,
    empty_files_work,
    concurrent_puts_of_the_same_chunks_store_each_once,
    a_long_seed_upload_keeps_its_session_and_its_chunks,
    a_range_reads_part_of_a_chunk_and_checks_its_header,
);

/// Commits a file `f.bin` of `chunks`, already stored, whose lengths add up
/// to `size` (which a test may get wrong on purpose).
fn commit(store: &Store, size: u64, chunks: Vec<Entry>) -> depot::store::Result<depot::store::FileRecord> {
    let name = "f.bin".parse().unwrap();
    store.finish_file(NewFile {
        tenant: Tenant::default(),
        name,
        declared_type: None,
        size,
        chunks,
        content_hash: None,
    })
}

fn same_content_twice_is_stored_once(backend: Backend) {
    let (_home, store) = temp_store(backend);
    let data = pseudo_random(300_000, 1);
    let a = ingest(&store, "a.bin", &data);
    let after_one = store.stats().unwrap();
    let b = ingest(&store, "b.bin", &data);
    let after_two = store.stats().unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!(a.manifest_digest, b.manifest_digest);
    assert_eq!(after_two.files, 2);
    assert_eq!(after_two.logical_bytes, 600_000);
    assert_eq!(after_two.unique_chunks, after_one.unique_chunks);
    assert_eq!(after_two.unique_bytes, 300_000);
    assert!((after_two.dedup_ratio - 2.0).abs() < 1e-9);
    assert_eq!(read_range(&store, &b.id, 0, b.size), data);
    assert_eq!(a.content_hash, Some(ChunkId::of(&data)));
}

fn delete_and_gc_free_exactly_the_unshared_chunks(backend: Backend) {
    let home = Home::new(backend);
    let (store, clock) = home.open(test_options());
    let shared = pseudo_random(200_000, 2);
    let mut a_data = shared.clone();
    a_data.extend(pseudo_random(100_000, 3));
    let mut b_data = shared.clone();
    b_data.extend(pseudo_random(100_000, 4));
    let a = ingest(&store, "a.bin", &a_data);
    let b = ingest(&store, "b.bin", &b_data);
    let before = store.stats().unwrap();

    store.delete_file(&View::All, &a.id).unwrap();
    assert!(matches!(store.file(&a.id), Err(Error::FileNotFound(_))));
    // Nothing is due yet: grace and leases hold.
    assert_eq!(store.gc(true).unwrap().deleted_chunks, 0);
    clock.advance(Duration::from_secs(3600));
    let report = store.gc(true).unwrap();
    let after = store.stats().unwrap();

    // Exactly the bytes only `a` had are gone: a's tail, plus the chunk
    // straddling the shared prefix and the tail.
    let freed = before.unique_bytes - after.unique_bytes;
    assert_eq!(report.freed_bytes, freed);
    assert!((100_000..100_000 + 2 * 4096).contains(&freed), "freed {freed}");
    assert_eq!(after.files, 1);
    assert_eq!(after.logical_bytes, b.size);
    assert_eq!(read_range(&store, &b.id, 0, b.size), b_data);
    let v = store.verify(false).unwrap();
    assert!(v.is_clean(), "{v:?}");
    assert_eq!(v.objects, after.unique_chunks);
}

fn gc_spares_pinned_and_recently_zeroed_chunks(backend: Backend) {
    let home = Home::new(backend);
    let opts = test_options(); // grace 60 s, lease 600 s
    let (store, clock) = home.open(opts);
    let data = pseudo_random(3000, 5);
    let lease = store.now_ms() + 1_000_000;
    let put = store.put_chunk(&data, None, lease).unwrap();
    assert!(put.new);
    clock.advance(Duration::from_secs(120)); // past grace, inside the lease
    assert_eq!(store.gc(false).unwrap().deleted_chunks, 0);
    assert!(store.missing(&[put.id], 0).unwrap().is_empty());

    // Referenced then released: recently zeroed chunks wait out the grace.
    let f = commit(&store, 3000, vec![Entry { id: put.id, len: 3000 }]).unwrap();
    clock.advance(Duration::from_secs(2000)); // the lease is over
    store.delete_file(&View::All, &f.id).unwrap();
    clock.advance(Duration::from_secs(30));
    assert_eq!(store.gc(false).unwrap().deleted_chunks, 0, "inside grace");
    // A missing-chunks query renews the lease: still kept after the grace.
    let lease = store.now_ms() + 600_000;
    assert!(store.missing(&[put.id], lease).unwrap().is_empty());
    clock.advance(Duration::from_secs(120));
    let r = store.gc(false).unwrap();
    assert_eq!(r.deleted_chunks, 0, "leased");
    assert!(r.requeued >= 1);
    clock.advance(Duration::from_secs(600));
    assert_eq!(store.gc(false).unwrap().deleted_chunks, 1);
    assert_eq!(store.missing(&[put.id], 0).unwrap(), vec![put.id]);
    assert_eq!(store.stats().unwrap().unique_chunks, 0);
}

fn commit_with_a_missing_chunk_fails_naming_it(backend: Backend) {
    let (_home, store) = temp_store(backend);
    let here = store.put_chunk(b"present chunk", None, 0).unwrap();
    let absent = ChunkId::of(b"never sent");
    let err = commit(&store, 13 + 10, vec![Entry { id: here.id, len: 13 }, Entry { id: absent, len: 10 }])
        .unwrap_err();
    match err {
        Error::MissingChunks(m) => assert_eq!(m, vec![absent]),
        e => panic!("unexpected {e:?}"),
    }
    // Wrong lengths are refused too.
    let err = commit(&store, 14, vec![Entry { id: here.id, len: 14 }]).unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    assert_eq!(store.stats().unwrap().files, 0);
}

fn reopen_keeps_everything(backend: Backend) {
    let home = Home::new(backend);
    let data = pseudo_random(2_000_000, 6); // > 1024 chunks: a multi-segment manifest
    let (id, stats) = {
        let (store, _) = home.open(test_options());
        let rec = ingest(&store, "big.bin", &data);
        assert!(rec.segments.len() > 1);
        // Counted step by step: everything the file added is what the store holds.
        assert_eq!(rec.added_bytes, Some(store.stats().unwrap().unique_bytes));
        store.close().unwrap();
        (rec.id, store.stats().unwrap())
    };
    let (store, _) = home.open(test_options());
    assert!(!store.was_unclean());
    assert_eq!(store.stats().unwrap(), stats);
    let rec = store.file(&id).unwrap();
    assert_eq!(rec.size, data.len() as u64);
    assert_eq!(read_range(&store, &id, 0, rec.size), data);
    let (list, next) = store.list_files(&View::All, None, 10).unwrap();
    assert_eq!(list.len(), 1);
    assert!(next.is_none());
    assert!(store.verify(false).unwrap().is_clean());
}

fn a_store_refuses_other_chunking_parameters(backend: Backend) {
    let home = Home::new(backend);
    drop(home.open(test_options()));
    let mut other = test_options();
    other.chunking.max = 8192;
    let err = home.try_open(other, Arc::new(SystemClock)).err().unwrap();
    assert!(matches!(err, Error::ChunkerMismatch { .. }), "{err}");
}

#[test]
fn a_second_process_cannot_open_a_store_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, _) = open_store(dir.path(), test_options());
    let objects = Arc::new(FsObjects::open(&dir.path().join("objects"), test_options().fsync).unwrap());
    let err = Store::open_with(dir.path(), test_options(), objects, Arc::new(SystemClock)).err().unwrap();
    assert!(matches!(err, Error::Locked(_)), "{err}");
}

/// Chunks and ranges are handed out at their source's offset within a
/// 4 KiB page (an object starts at a page boundary of its file, loose or
/// in a pack), whether a blocking thread read them or the page cache
/// answered on the async thread: where a buffer from the system allocator
/// would put them instead, 16 bytes further on, the kernel's copy out of
/// the page cache is several times slower on AMD machines
/// (docs/PERFORMANCE.md, D1, "Reads placed at the page offset of their
/// source").
#[test]
fn reads_keep_their_sources_page_offset() {
    use depot::store::{Faulty, objects::Op};
    let dir = tempfile::tempdir().unwrap();
    let opts = test_options();
    let objects =
        Arc::new(Faulty::new(depot::store::open_objects(&opts, &dir.path().join("objects")).unwrap()));
    let store = Store::open_with(dir.path(), opts, objects.clone(), Arc::new(SystemClock)).unwrap();
    // Longer than one hop (`read::ONE_HOP`): a download's path.
    let data = pseudo_random(1_500_000, 17);
    let rec = ingest(&store, "a.bin", &data);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let pieces = |start: u64, end: u64| -> Vec<Bytes> {
        rt.block_on(async {
            let (rec, guard) = store.open_file(&rec.id).unwrap();
            store.read_range(&rec, guard, start, end).try_collect().await.unwrap()
        })
    };
    let reads = || {
        let a = store.activity();
        (a.chunk_reads_blocking, a.chunk_reads_cached)
    };
    let payloads_placed = |pieces: &[Bytes], how: &str| {
        for b in pieces {
            assert_eq!(b.as_ptr().addr() % 4096, object::HEADER_LEN, "a whole chunk's payload, {how}");
        }
    };
    // Read on a blocking thread (as from a disk: the reads from memory
    // alone answer nothing), then from the page cache.
    objects.fail_always(Op::GetCached, true);
    let (blocking, cached) = reads();
    let whole = pieces(0, rec.size);
    assert_eq!(whole.concat(), data);
    assert_eq!(reads(), (blocking + whole.len() as u64, cached), "every chunk read blocking");
    payloads_placed(&whole, "read blocking");
    objects.heal();
    let whole = pieces(0, rec.size);
    assert_eq!(reads(), (blocking + whole.len() as u64, cached + whole.len() as u64), "then cached");
    payloads_placed(&whole, "read from the page cache");
    // A range inside a chunk starts where its first byte sits in the file
    // (the first range looks the segment up on a blocking thread; the
    // second is read from the page cache).
    let entries = store.segment(&rec.id, 0).unwrap();
    let k = entries.iter().position(|e| e.len >= 1_000).unwrap();
    let from = entries[..k].iter().map(|e| u64::from(e.len)).sum::<u64>() + 300;
    let want = &data[from as usize..from as usize + 500];
    for how in ["read blocking", "read from the page cache"] {
        objects.fail_always(Op::GetCached, how == "read blocking");
        let (blocking, cached) = reads();
        let part = pieces(from, from + 500);
        let by_thread = if how == "read blocking" { (blocking + 1, cached) } else { (blocking, cached + 1) };
        assert_eq!(reads(), by_thread, "the range {how}");
        assert_eq!(part.concat(), want);
        assert_eq!(part[0].as_ptr().addr() % 4096, object::HEADER_LEN + 300, "a range's bytes, {how}");
    }
}

/// A chunk stored zstd whose object the page cache holds is read once, on
/// the async thread, and only decoded on a blocking one: no blocking read
/// of its object for a range (there were two: its header with the slice,
/// then the whole object) nor for a whole download (there was one). One
/// that does not check is still refused and marked damaged.
#[test]
fn a_cached_compressed_chunk_is_read_once_and_decoded_on_a_blocking_thread() {
    use depot::store::{Faulty, objects::Op};
    let dir = tempfile::tempdir().unwrap();
    let fs = FsObjects::open(&dir.path().join("objects"), test_options().fsync).unwrap();
    let objects = Arc::new(Faulty::new(Arc::new(fs)));
    let store = Store::open_with(dir.path(), test_options(), objects.clone(), Arc::new(SystemClock)).unwrap();
    let data: Vec<u8> =
        (0..4_000).flat_map(|i| format!("record {i}: a line that compresses well\n").into_bytes()).collect();
    let rec = ingest(&store, "log.txt", &data);
    assert!(store.stats().unwrap().stored_bytes * 2 < data.len() as u64, "stored zstd");
    let entries = store.segment(&rec.id, 0).unwrap();
    let at = |k: usize| entries[..k].iter().map(|e| u64::from(e.len)).sum::<u64>();
    let (a, b) = (1, entries.iter().skip(2).position(|e| e.len >= 2048).unwrap() + 2);
    let reads = || (objects.calls(Op::Get), objects.calls(Op::GetCached));
    let range = |k: usize, q: u64| {
        let (start, end) = (at(k) + q * 512, at(k) + q * 512 + 512);
        assert_eq!(
            read_range(&store, &rec.id, start, end),
            &data[start as usize..end as usize],
            "{start}..{end}"
        );
    };
    // The first range caches the file's manifest segment: read on a
    // blocking thread (the header with the slice, then the object).
    let before = reads();
    range(a, 0);
    assert_eq!((reads().0 - before.0, reads().1 - before.1), (2, 0));
    // Another chunk: its object from the page cache (the header with the
    // slice, then the object), decoded on a blocking thread.
    let before = reads();
    range(b, 1);
    assert_eq!((reads().0 - before.0, reads().1 - before.1), (0, 2), "read once, from the page cache");
    // Its next part, from the decoded chunk.
    let before = reads();
    range(b, 2);
    assert_eq!(reads(), before, "from memory");
    // A whole download: each chunk's object read once, from the page cache.
    let before = reads();
    assert_eq!(read_range(&store, &rec.id, 0, rec.size), data);
    assert_eq!((reads().0 - before.0, reads().1 - before.1), (0, entries.len() as u64));

    // A damaged object read so is read again on the blocking thread, refused
    // and marked damaged.
    let victim = entries[b + 1];
    let key = ObjectKey::plain(victim.id);
    let mut bytes = objects.get(&key).unwrap().unwrap();
    *bytes.last_mut().unwrap() ^= 0x01; // the payload's last byte
    objects.replace(&key, &[&bytes]).unwrap();
    let before = reads();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let got: Result<Vec<Bytes>, _> = rt.block_on(async {
        let (rec, guard) = store.open_file(&rec.id).unwrap();
        store.read_range(&rec, guard, at(b + 1), at(b + 1) + 100).try_collect().await
    });
    assert!(matches!(got, Err(Error::Corrupt { id, .. }) if id == victim.id), "{got:?}");
    assert_eq!(reads().0 - before.0, 2, "read again on the blocking thread");
    assert_eq!(store.missing(&[victim.id], 0).unwrap(), vec![victim.id]);
}

fn crash_between_object_write_and_metadata_leaves_a_store_gc_cleans(backend: Backend) {
    let home = Home::new(backend);
    let opts = test_options();
    let keep = pseudo_random(50_000, 7);
    {
        let (store, _) = home.open(opts.clone());
        ingest(&store, "kept.bin", &keep);
        // A chunk stored, never committed (an upload cut short)…
        store.put_chunk(&pseudo_random(3000, 8), None, 0).unwrap();
        // …and an object written whose row never made it (the crash).
        let raw = pseudo_random(2000, 9);
        let id = ChunkId::of(&raw);
        let key = ObjectKey::plain(id);
        assert!(home.objects().put_if_absent(&key, &object::encode_parts(&id, &raw, 1).parts()).unwrap());
        // No close(): the process dies here.
    }
    let (store, clock) = home.open(opts);
    assert!(store.was_unclean());
    let v = store.verify(false).unwrap();
    assert!(v.is_clean(), "{v:?}");
    assert_eq!(v.orphan_objects, 1);
    // Objects older than the grace period (by the store's clock) go.
    clock.advance(Duration::from_secs(24 * 3600));
    let r = store.gc(true).unwrap();
    assert_eq!(r.orphan_objects, 1);
    assert_eq!(r.deleted_chunks, 1);
    let v = store.verify(false).unwrap();
    assert!(v.is_clean() && v.orphan_objects == 0, "{v:?}");
    assert_eq!(store.stats().unwrap().files, 1);
}

fn verify_finds_and_repair_heals_a_corrupt_object(backend: Backend) {
    let (home, store) = temp_store(backend);
    let data = pseudo_random(20_000, 10);
    let rec = ingest(&store, "f.bin", &data);
    let victim = store.segment(&rec.id, 0).unwrap()[1].id;
    home.corrupt(&victim, |bytes| {
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
    });

    let v = store.verify(false).unwrap();
    assert_eq!(v.corrupt_objects.len(), 1);
    assert_eq!(v.corrupt_objects[0].0, victim);
    assert!(!v.is_clean());
    store.verify(true).unwrap();
    // Marked damaged: reported missing, so the next upload of it heals it.
    assert_eq!(store.missing(&[victim], 0).unwrap(), vec![victim]);
    ingest(&store, "again.bin", &data);
    assert!(store.missing(&[victim], 0).unwrap().is_empty());
    assert_eq!(read_range(&store, &rec.id, 0, rec.size), data);
    let v = store.verify(false).unwrap();
    assert!(v.is_clean(), "{v:?}");
}

fn a_range_reads_part_of_a_chunk_and_checks_its_header(backend: Backend) {
    let (home, store) = temp_store(backend);
    // Random bytes are stored raw; zeros compress (zstd objects are read
    // whole and sliced).
    let mut data = pseudo_random(40_000, 11);
    data.extend(std::iter::repeat_n(0u8, 40_000));
    let rec = ingest(&store, "f.bin", &data);
    let chunks = store.segment(&rec.id, 0).unwrap();
    assert!(chunks.len() >= 4, "{} chunks", chunks.len());
    for (start, end) in [(1, 2), (100, 39_000), (5_000, 75_000), (41_000, 79_999), (0, rec.size)] {
        assert_eq!(
            read_range(&store, &rec.id, start, end),
            &data[start as usize..end as usize],
            "{start}..{end}"
        );
    }
    // A part of a chunk whose header is damaged is refused and the chunk
    // marked damaged (reported missing), as a whole read would.
    let victim = chunks[1].id;
    home.corrupt(&victim, |bytes| bytes[30] ^= 0x01);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let at = u64::from(chunks[0].len) + 10;
    let got: Result<Vec<Bytes>, _> = rt.block_on(async {
        let (rec, guard) = store.open_file(&rec.id).unwrap();
        store.read_range(&rec, guard, at, at + 100).try_collect().await
    });
    assert!(matches!(got, Err(depot::store::Error::Corrupt { id, .. }) if id == victim), "{got:?}");
    assert_eq!(store.missing(&[victim], 0).unwrap(), vec![victim]);
}

fn put_verifies_a_given_hash_and_stores_nothing_on_mismatch(backend: Backend) {
    let (_home, store) = temp_store(backend);
    let wrong = ChunkId::of(b"other");
    let err = store.put_chunk(b"data", Some(&wrong), 0).unwrap_err();
    assert!(matches!(err, Error::HashMismatch { .. }));
    assert_eq!(store.stats().unwrap().unique_chunks, 0);
    // Zstd frames from clients are decoded, checked, capped.
    let raw = b"compressible ".repeat(500);
    let id = ChunkId::of(&raw);
    let frame = zstd::bulk::compress(&raw, 3).unwrap();
    let put = store.put_chunk_zstd(&frame, &id, 0, 4 << 20).unwrap();
    assert!(put.new && put.len as usize == raw.len());
    assert_eq!(store.read_chunk(&id, raw.len() as u32).unwrap(), raw);
    assert!(store.put_chunk_zstd(b"not zstd", &id, 0, 4 << 20).is_err());
}

fn many_hashes_are_checked_in_one_query(backend: Backend) {
    let (_home, store) = temp_store(backend);
    let chunks: Vec<Bytes> = (0..100u32).map(|i| Bytes::from(i.to_le_bytes().repeat(100))).collect();
    store.put_chunks(&chunks, 0).unwrap();
    let mut ids: Vec<ChunkId> = chunks.iter().map(|c| ChunkId::of(c)).collect();
    let absent: Vec<ChunkId> = (0..10_000u32).map(|i| ChunkId::of(&i.to_be_bytes())).collect();
    ids.extend(&absent);
    let missing = store.missing(&ids, 0).unwrap();
    assert_eq!(missing, absent);
}

fn only_client_questions_and_received_chunks_count_as_dedup_hits(backend: Backend) {
    let (_home, store) = temp_store(backend);
    // Cold, and large enough for the segment-by-segment commit, which leases
    // its chunks through the same query: none of that is a dedup hit.
    let rec = ingest(&store, "big.bin", &pseudo_random(2_500_000, 9));
    assert!(rec.segments.len() > 1, "{} segments", rec.segments.len());
    let a = store.activity();
    assert_eq!(a.chunks_known, 0);
    assert_eq!(a.chunks_new, store.stats().unwrap().unique_chunks);
    // A client asking about them is; each distinct chunk once.
    let ids: Vec<ChunkId> = (0..rec.segments.len() as u32)
        .flat_map(|i| store.segment(&rec.id, i).unwrap())
        .map(|e| e.id)
        .collect();
    let distinct = ids.iter().collect::<std::collections::HashSet<_>>().len() as u64;
    let twice: Vec<ChunkId> = ids.iter().chain(&ids).copied().collect();
    assert!(store.missing(&twice, 0).unwrap().is_empty());
    assert_eq!(store.activity().chunks_known, distinct);
}

fn listing_is_newest_first_and_pages(backend: Backend) {
    let home = Home::new(backend);
    let (store, clock) = home.open(test_options());
    let mut ids = Vec::new();
    for i in 0..7u64 {
        ids.push(ingest(&store, &format!("f{i}.txt"), format!("file {i}").as_bytes()).id);
        clock.advance(Duration::from_millis(5));
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = store.list_files(&View::All, cursor.as_ref(), 3).unwrap();
        seen.extend(page.iter().map(|r| r.id));
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids);
}

fn empty_files_work(backend: Backend) {
    let (_home, store) = temp_store(backend);
    let rec = ingest(&store, "empty.txt", b"");
    assert_eq!(rec.size, 0);
    assert_eq!(rec.chunks, 0);
    assert!(read_range(&store, &rec.id, 0, 0).is_empty());
    store.delete_file(&View::All, &rec.id).unwrap();
    assert!(store.verify(false).unwrap().is_clean());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn range_reads_equal_the_slice(ranges in proptest::collection::vec((0u64..1_500_000, 0u64..300_000), 1..8)) {
        // One file per backend, made once and read by every case.
        type Fixture = Vec<(Home, Store, FileId)>;
        static FIXTURE: std::sync::OnceLock<(Fixture, Vec<u8>)> = std::sync::OnceLock::new();
        let (stores, data) = FIXTURE.get_or_init(|| {
            let data = pseudo_random(1_400_000, 11);
            let stores = [Backend::Disk, Backend::Memory].map(|backend| {
                let (home, store) = temp_store(backend);
                let rec = ingest(&store, "r.bin", &data);
                assert!(rec.segments.len() > 1);
                (home, store, rec.id)
            });
            (stores.into(), data)
        });
        for (start, len) in ranges {
            let end = (start + len).min(data.len() as u64);
            let start = start.min(end);
            for (_, store, id) in stores {
                let got = read_range(store, id, start, end);
                prop_assert_eq!(&got[..], &data[start as usize..end as usize]);
            }
        }
    }
}

fn concurrent_puts_of_the_same_chunks_store_each_once(backend: Backend) {
    let (_home, store) = temp_store(backend);
    let news = put_the_same_chunks(std::slice::from_ref(&store));
    assert_eq!(news, 200, "each chunk is new exactly once");
    let st = store.stats().unwrap();
    assert_eq!(st.unique_chunks, 200);
    assert_eq!(st.unique_bytes, 600_000);
    let v = store.verify(false).unwrap();
    assert!(v.is_clean(), "{v:?}");
    assert_eq!(v.objects, 200);
}

fn a_long_seed_upload_keeps_its_session_and_its_chunks(backend: Backend) {
    use depot::store::{PieceState, SeedSpec};
    let home = Home::new(backend);
    let mut opts = test_options(); // sessions live an hour, grace a minute
    opts.chunk_lease = Duration::from_secs(60);
    let (store, clock) = home.open(opts);
    let data = pseudo_random(40_000, 12);
    let spec = SeedSpec {
        tenant: Tenant::default(),
        identifier: "slow".into(),
        name: "slow.bin".parse().unwrap(),
        size: 40_000,
        piece_size: 10_000,
        total_pieces: 4,
        declared_type: None,
    };
    // One piece every 40 minutes: the whole upload takes two hours, twice
    // the session's life, and GC runs in between.
    for n in 1..=4u32 {
        let piece = &data[(n as usize - 1) * 10_000..n as usize * 10_000];
        let state = store.put_piece(&spec, n, piece, None).unwrap();
        if n < 4 {
            assert_eq!(state, PieceState::Stored { received: n, total: 4 });
            clock.advance(Duration::from_secs(40 * 60));
            store.gc(true).unwrap();
        } else {
            let PieceState::Finished { file, .. } = state else { panic!("not finished: {state:?}") };
            assert_eq!(read_range(&store, &file.id, 0, 40_000), data);
        }
    }
}
