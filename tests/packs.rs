//! Pack files (docs/PACKS.md) on a real object directory and RocksDB:
//! chunks appended to packs read back across a restart, GC compacts packs
//! mostly dead and deletes emptied ones after the grace period, a torn
//! tail (a crash mid-append) is dead bytes, and `verify` checks records.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::stored::loose_objects;
use common::{ingest, read_all, read_range, test_options};
use depot::store::{FsObjects, FsyncPolicy, ManualClock, Packs, Store, StoreOptions, View};
use depot::testdata::pseudo_random as random_bytes;

fn pack_options() -> StoreOptions {
    StoreOptions { packs: true, pack_size: 256 << 10, ..test_options() }
}

/// A store with packs over `dir`, as `Store::open` makes it.
fn open_packed(dir: &Path, opts: StoreOptions) -> (Store, Arc<ManualClock>) {
    let clock = ManualClock::new();
    let objects = depot::store::open_objects(&opts, &dir.join("objects")).unwrap();
    (Store::open_with(dir, opts, objects, clock.clone()).unwrap(), clock)
}

/// Pack files under `dir` and their total bytes.
fn packs_on_disk(dir: &Path) -> (usize, u64) {
    let files: Vec<_> = std::fs::read_dir(dir.join("objects/packs")).unwrap().map(|e| e.unwrap()).collect();
    (files.len(), files.iter().map(|e| e.metadata().unwrap().len()).sum())
}

#[test]
fn chunks_go_to_packs_and_read_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(3 << 20, 1);
    let id = {
        let (store, _) = open_packed(dir.path(), pack_options());
        let rec = ingest(&store, "a.bin", &data);
        assert_eq!(read_all(&store, &rec.id), data);
        store.close().unwrap();
        rec.id
    };
    let (packs, bytes) = packs_on_disk(dir.path());
    assert!(packs >= 3, "3 MiB of chunks in 256 KiB packs: {packs} packs");
    assert!(bytes >= data.len() as u64, "{bytes} bytes in packs");
    assert!(loose_objects(dir.path()).is_empty(), "no file per chunk");

    let (store, _) = open_packed(dir.path(), pack_options());
    assert_eq!(read_all(&store, &id), data);
    assert_eq!(read_range(&store, &id, 1_000_001, 1_070_001), data[1_000_001..1_070_001]);
    let v = store.verify(false).unwrap();
    assert!(v.is_clean(), "{v:?}");
    assert_eq!(v.orphan_objects, 0);
    assert!(v.objects >= store.stats().unwrap().unique_chunks, "{v:?}");
    // Every record is named (small chunks, most of each 4 KiB page padding):
    // nothing to compact.
    let gc = store.gc(false).unwrap();
    assert_eq!(gc.packs, Default::default(), "{gc:?}");

    // Switched off, the packs are still read and new chunks go loose.
    store.close().unwrap();
    drop(store);
    let (store, _) = open_packed(dir.path(), StoreOptions { packs: false, ..pack_options() });
    assert_eq!(read_all(&store, &id), data);
    let more = random_bytes(100_000, 2);
    let rec = ingest(&store, "b.bin", &more);
    assert_eq!(read_all(&store, &rec.id), more);
    assert!(!loose_objects(dir.path()).is_empty());
    assert!(store.verify(false).unwrap().is_clean());
}

#[test]
fn gc_compacts_mostly_dead_packs_and_deletes_them_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let (store, clock) = open_packed(dir.path(), pack_options());
    // Interleaved, so that each pack holds chunks of both files.
    let (a, b) = (random_bytes(2 << 20, 3), random_bytes(1 << 20, 4));
    let mut ra = Vec::new();
    let mut rb = Vec::new();
    for i in 0..4 {
        let q = a.len() / 4;
        ra.push(ingest(&store, &format!("a{i}.bin"), &a[i * q..(i + 1) * q]));
        let q = b.len() / 4;
        rb.push(ingest(&store, &format!("b{i}.bin"), &b[i * q..(i + 1) * q]));
    }
    let (_, before) = packs_on_disk(dir.path());
    for r in &ra {
        store.delete_file(&View::All, &r.id).unwrap();
    }
    clock.advance(Duration::from_secs(3600)); // past grace and leases
    let report = store.gc(false).unwrap();
    assert!(report.deleted_chunks > 0, "{report:?}");
    assert!(report.packs.packs_compacted > 0, "{report:?}");
    assert!(report.packs.records_moved > 0, "{report:?}");
    assert_eq!(report.packs.packs_deleted, 0, "not before the grace period: {report:?}");
    for (i, r) in rb.iter().enumerate() {
        let q = b.len() / 4;
        assert_eq!(read_all(&store, &r.id), b[i * q..(i + 1) * q], "read from the new packs");
    }
    assert!(store.verify(false).unwrap().is_clean());

    clock.advance(Duration::from_secs(120));
    let report = store.gc(false).unwrap();
    assert!(report.packs.packs_deleted > 0, "{report:?}");
    assert!(report.packs.bytes_freed > 0, "{report:?}");
    let (_, after) = packs_on_disk(dir.path());
    assert!(after < before * 2 / 3, "packs hold {after} bytes, {before} before the delete");
    for (i, r) in rb.iter().enumerate() {
        let q = b.len() / 4;
        assert_eq!(read_all(&store, &r.id), b[i * q..(i + 1) * q]);
    }
    let v = store.verify(false).unwrap();
    assert!(v.is_clean(), "{v:?}");
    // A pack deleted is not scheduled, nor counted, again.
    clock.advance(Duration::from_secs(3600));
    let report = store.gc(false).unwrap();
    assert_eq!(report.packs, Default::default(), "{report:?}");
}

/// A pack still open for appends (here the only one: the pack size is far
/// off) that deletes leave mostly dead is closed by GC, compacted, and
/// deleted after the grace period: a quiet store's deleted bytes do not
/// wait for its open pack to fill.
#[test]
fn gc_closes_an_open_pack_that_deletes_left_mostly_dead() {
    let dir = tempfile::tempdir().unwrap();
    let (store, clock) = open_packed(dir.path(), StoreOptions { pack_size: 64 << 20, ..pack_options() });
    let (keep, gone) = (random_bytes(300_000, 21), random_bytes(900_000, 22));
    let kept = ingest(&store, "keep.bin", &keep);
    let deleted = ingest(&store, "gone.bin", &gone);
    assert_eq!(packs_on_disk(dir.path()).0, 1, "one open pack");
    // Not mostly dead: left open, nothing compacted.
    clock.advance(Duration::from_secs(3600));
    assert_eq!(store.gc(false).unwrap().packs, Default::default());
    let more = ingest(&store, "more.bin", &random_bytes(50_000, 23));
    let (packs, before) = packs_on_disk(dir.path());
    assert_eq!(packs, 1, "still appended to");

    store.delete_file(&View::All, &deleted.id).unwrap();
    clock.advance(Duration::from_secs(3600));
    let report = store.gc(false).unwrap();
    assert_eq!(report.packs.packs_compacted, 1, "{report:?}");
    assert_eq!(report.packs.packs_deleted, 0, "not before the grace period: {report:?}");
    clock.advance(Duration::from_secs(120));
    let report = store.gc(false).unwrap();
    assert_eq!(report.packs.packs_deleted, 1, "{report:?}");
    let (packs, bytes) = packs_on_disk(dir.path());
    assert_eq!(packs, 1, "the live records' new pack");
    // A quarter of the chunks live (each record padded to a page).
    assert!(bytes * 3 < before, "packs hold {bytes} bytes, {before} before the delete");
    assert_eq!(read_all(&store, &kept.id), keep);
    assert_eq!(read_all(&store, &more.id), random_bytes(50_000, 23));
    let v = store.verify(false).unwrap();
    assert!(v.is_clean() && v.counter_mismatches.is_empty(), "{v:?}");
}

#[test]
fn a_torn_tail_is_dead_bytes_and_the_store_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(600_000, 5);
    let id = {
        let (store, _) = open_packed(dir.path(), StoreOptions { pack_size: 64 << 20, ..pack_options() });
        let id = ingest(&store, "a.bin", &data).id;
        // A crash mid-append: half a header and some payload past the last
        // record, never named by a row; no clean close.
        let pack = std::fs::read_dir(dir.path().join("objects/packs")).unwrap().next().unwrap().unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(pack.path()).unwrap();
        std::io::Write::write_all(&mut f, b"DPCK\x01garbage").unwrap();
        drop(store); // no clean close
        id
    };
    let (store, _) = open_packed(dir.path(), StoreOptions { pack_size: 64 << 20, ..pack_options() });
    assert_eq!(read_all(&store, &id), data);
    let v = store.verify(false).unwrap();
    assert!(v.is_clean(), "{v:?}");
    let more = random_bytes(300_000, 6);
    let rec = ingest(&store, "b.bin", &more);
    assert_eq!(read_all(&store, &rec.id), more);
    assert_eq!(packs_on_disk(dir.path()).0, 2, "a new process appends to a new pack");
    assert!(store.verify(false).unwrap().is_clean());
}

#[test]
fn verify_finds_a_damaged_record_in_a_pack() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_packed(dir.path(), StoreOptions { pack_size: 64 << 20, ..pack_options() });
    let data = random_bytes(200_000, 7);
    let rec = ingest(&store, "a.bin", &data);
    assert!(store.verify(false).unwrap().is_clean());
    // One payload byte of the first chunk's record flipped (past its
    // 56-byte header).
    let first = store.segment(&rec.id, 0).unwrap()[0];
    common::stored::flip_bit(dir.path(), &first.id, |_| 100);
    let v = store.verify(false).unwrap();
    assert!(!v.is_clean(), "{v:?}");
    assert_eq!(v.corrupt_objects.len(), 1, "{v:?}");
    assert_eq!(v.corrupt_objects[0].1, "payload checksum mismatch", "{v:?}");
    assert_eq!(v.orphan_objects, 0, "{v:?}");
}

/// A range read again takes the location the first read looked up from
/// the page cache (no row lookup, no blocking read), and a chunk stored
/// again after damage is read from its new object, not from the location
/// remembered before.
#[cfg(target_os = "linux")]
#[test]
fn ranges_remember_locations_until_a_row_moves() {
    use depot::store::ObjectStore;
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_packed(dir.path(), StoreOptions { pack_size: 64 << 20, ..pack_options() });
    let data = random_bytes(200_000, 8);
    let rec = ingest(&store, "a.bin", &data);
    let first = store.segment(&rec.id, 0).unwrap()[0];
    assert!(first.len > 100, "the range lies in the first chunk");

    let before = store.activity();
    assert_eq!(read_range(&store, &rec.id, 10, 100), data[10..100]);
    let looked_up = store.activity();
    assert_eq!(
        looked_up.chunk_reads_blocking,
        before.chunk_reads_blocking + 1,
        "the first read looks the row up"
    );
    assert_eq!(read_range(&store, &rec.id, 10, 100), data[10..100]);
    let again = store.activity();
    if FsObjects::open(&dir.path().join("objects"), FsyncPolicy::Never).unwrap().answers_cached() {
        assert_eq!(again.chunk_reads_blocking, looked_up.chunk_reads_blocking, "no lookup the second time");
        assert_eq!(again.chunk_reads_cached, looked_up.chunk_reads_cached + 1, "from the page cache");
    }

    // The first chunk's record damaged (a payload byte in the range read),
    // marked so, and stored again by a new upload: a second record of it,
    // appended to a pack (no loose object).
    common::stored::flip_bit(dir.path(), &first.id, |_| 56 + 50);
    store.mark_damaged(&first.id, "test").unwrap();
    ingest(&store, "b.bin", &data);
    assert!(loose_objects(dir.path()).is_empty(), "the healed chunk is not loose");
    assert_eq!(common::stored::places(dir.path(), &first.id).len(), 2, "the damaged record and the new one");
    assert_eq!(read_range(&store, &rec.id, 10, 100), data[10..100], "not the remembered damaged record");
    assert_eq!(read_all(&store, &rec.id), data);
}

/// Records appended with `O_DIRECT` (where the filesystem takes it; each
/// at its own offset, from buffers of any alignment) read back, across a
/// restart too, and packs hold whole pages.
#[test]
fn direct_appends_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || StoreOptions { direct_writes: true, fsync: FsyncPolicy::Batch, ..pack_options() };
    let data = random_bytes(3 << 20, 9);
    let id = {
        let (store, _) = open_packed(dir.path(), opts());
        let rec = ingest(&store, "a.bin", &data);
        assert_eq!(read_all(&store, &rec.id), data);
        store.close().unwrap();
        rec.id
    };
    let direct =
        FsObjects::open(&dir.path().join("objects"), FsyncPolicy::Never).unwrap().with_direct_writes(true);
    if !direct.writes_direct() {
        eprintln!("this filesystem takes no O_DIRECT writes: appends went through the page cache");
    }
    for e in std::fs::read_dir(dir.path().join("objects/packs")).unwrap() {
        let len = e.unwrap().metadata().unwrap().len();
        assert_eq!(len % 4096, 0, "a pack of whole pages: {len} bytes");
    }
    let (store, _) = open_packed(dir.path(), opts());
    assert_eq!(read_all(&store, &id), data);
    assert_eq!(read_range(&store, &id, 2_000_003, 2_100_003), data[2_000_003..2_100_003]);
    let v = store.verify(false).unwrap();
    assert!(v.is_clean(), "{v:?}");
    assert!(loose_objects(dir.path()).is_empty());
}

/// `verify` recounts each pack's live bytes from the rows that name its
/// records: a counter drifted by hand (or one for a pack no row names) is
/// reported with the stored and the recounted value, and `repair` sets it
/// back.
#[test]
fn verify_recounts_each_packs_live_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || StoreOptions { pack_size: 64 << 20, ..pack_options() };
    {
        let (store, _) = open_packed(dir.path(), opts());
        ingest(&store, "a.bin", &random_bytes(300_000, 10));
        let v = store.verify(false).unwrap();
        assert!(v.is_clean() && v.counter_mismatches.is_empty(), "{v:?}");
        store.close().unwrap();
    }
    let live_key = |pack: u32| [&b"pack/live/"[..], &pack.to_be_bytes()].concat();
    let meta = depot::store::RocksMeta::open(&dir.path().join("meta")).unwrap();
    let mut b = depot::store::Batch::default();
    b.add_at(&live_key(1), 4096);
    b.add_at(&live_key(7), 100);
    depot::store::MetaStore::write(&meta, b, true).unwrap();
    drop(meta);

    let (store, _) = open_packed(dir.path(), opts());
    let mut found = store.verify(false).unwrap().counter_mismatches;
    found.sort();
    assert_eq!(found.len(), 2, "{found:?}");
    let (name, have, live) = found[0].clone();
    assert_eq!((name.as_str(), have), ("pack/live/1", live + 4096));
    assert!(live > 300_000 && live % 4096 == 0, "pack 1 holds every record, in whole pages: {live}");
    assert_eq!(found[1], ("pack/live/7".to_string(), 100, 0));
    store.verify(true).unwrap();
    let v = store.verify(false).unwrap();
    assert!(v.is_clean() && v.counter_mismatches.is_empty(), "{v:?}");
}

/// `pack_loose` (`depot pack`) folds a store's loose objects into packs:
/// each checked, appended, its row moved, the file deleted; the files read
/// back and `verify` (live bytes included) is clean. A loose object that
/// fails its check stays where it is, counted as damaged. A store that
/// does not append to packs refuses.
#[test]
fn pack_loose_folds_loose_objects_into_packs() {
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(400_000, 11);
    let loose_opts = || StoreOptions { packs: false, ..pack_options() };
    let (id, chunks) = {
        let (store, _) = open_packed(dir.path(), loose_opts());
        let rec = ingest(&store, "a.bin", &data);
        let e = store.pack_loose().unwrap_err();
        assert!(matches!(e, depot::store::Error::InvalidInput(_)), "{e}");
        let chunks = store.stats().unwrap().unique_chunks;
        store.close().unwrap();
        (rec.id, chunks)
    };
    assert_eq!(loose_objects(dir.path()).len() as u64, chunks);
    // One loose object damaged (a payload byte flipped).
    let one = loose_objects(dir.path()).remove(0);
    let mut bytes = std::fs::read(&one).unwrap();
    *bytes.last_mut().unwrap() ^= 0xff;
    std::fs::write(&one, &bytes).unwrap();

    let (store, _) = open_packed(dir.path(), pack_options());
    let r = store.pack_loose().unwrap();
    assert_eq!((r.objects_packed, r.damaged), (chunks - 1, 1), "{r:?}");
    assert!(r.bytes_packed > data.len() as u64 - 5_000, "{r:?}");
    assert_eq!(loose_objects(dir.path()), vec![one], "only the damaged object is left loose");
    let (packs, _) = packs_on_disk(dir.path());
    assert!(packs >= 1);
    let v = store.verify(false).unwrap();
    assert_eq!(v.corrupt_objects.len(), 1, "{v:?}");
    assert!(v.counter_mismatches.is_empty() && v.orphan_objects == 0, "{v:?}");
    store.verify(true).unwrap();
    // The damaged chunk heals with a new upload; everything reads back.
    ingest(&store, "b.bin", &data);
    assert_eq!(read_all(&store, &id), data);
    assert_eq!(read_range(&store, &id, 123_457, 190_001), data[123_457..190_001]);
    // The healed chunk was appended to a pack and its damaged loose object
    // deleted: nothing is left loose.
    assert!(loose_objects(dir.path()).is_empty());
    assert_eq!(store.pack_loose().unwrap(), Default::default());
    assert_eq!(read_all(&store, &id), data);
    assert!(store.verify(false).unwrap().is_clean());
}

/// A writer's batches appended with `O_DIRECT` (where the filesystem takes
/// it) from chunk bytes at any alignment, across packs of 64 KiB: no
/// append was refused (which would turn direct appends off), a scan of
/// the packs finds every record, whole, where its location says, and the
/// reads by location append each record (or a slice of it) to what their
/// buffer held.
#[test]
fn direct_batches_stay_direct_and_scan_back() {
    use depot::store::{ChunkId, object};
    let dir = tempfile::tempdir().unwrap();
    let takes =
        FsObjects::open(&dir.path().join("objects"), FsyncPolicy::Never).unwrap().with_direct_writes(true);
    if !takes.writes_direct() {
        eprintln!("skipped: this filesystem takes no O_DIRECT writes");
        return;
    }
    let packs = Packs::open(&dir.path().join("packs"), FsyncPolicy::Batch, 64 << 10, true)
        .unwrap()
        .with_direct_writes(true);
    let body = random_bytes(400_000, 13);
    let raws: Vec<&[u8]> = (0..40).map(|i| &body[i * 977 + i..i * 977 + i + 1_000 + i * 211]).collect();
    let encoded: Vec<_> = raws.iter().map(|r| object::encode_parts(&ChunkId::of(r), r, 0)).collect();
    let parts: Vec<[&[u8]; 2]> = encoded.iter().map(|e| e.parts()).collect();
    let records: Vec<&[&[u8]]> = parts.iter().map(|p| &p[..]).collect();
    let mut w = packs.writer();
    let mut at = w.append_all(&records[..25]).unwrap();
    at.extend(w.append_all(&records[25..]).unwrap());
    drop(w);
    packs.sync().unwrap();
    assert!(packs.writes_direct(), "appends stayed direct");
    let list = packs.list().unwrap();
    assert!(list.len() > 1, "the batches filled more than one pack: {list:?}");
    let mut found = std::collections::HashMap::new();
    for p in &list {
        packs
            .scan(p.number, |loc, rec| -> std::io::Result<()> {
                found.insert(loc, rec.to_vec());
                Ok(())
            })
            .unwrap();
    }
    assert_eq!(found.len(), records.len());
    for (loc, e) in at.iter().zip(&encoded) {
        assert!(found[loc] == e.to_vec(), "the record at {loc:#x}");
        let whole = e.to_vec();
        // A small buffer (a second read past its capacity) and a large one.
        for room in [0, 1 << 20] {
            let mut buf = Vec::with_capacity(room);
            buf.extend_from_slice(b"kept");
            assert!(packs.read_into(*loc, &mut buf).unwrap());
            assert!(buf[..4] == *b"kept" && buf[4..] == whole[..], "read_into {loc:#x}, room {room}");
        }
        let mut buf = b"kept".to_vec();
        let head = packs.read_head_and_range(*loc, 10, 100, 300, &mut buf).unwrap().unwrap();
        assert!(head == whole[..10] && buf[..4] == *b"kept" && buf[4..] == whole[100..400], "at {loc:#x}");
    }
}
