//! The contract (`contract.rs`), run against every local engine (the
//! directory, the memory twin and the fault wrapper), and what is
//! particular to each.

use std::fs;
use std::sync::Arc;

use super::*;

fn exercise(store: &dyn ObjectStore) {
    contract::check(store, contract::Breadth::EveryPrefix);
}

#[test]
fn fs_objects_behave() {
    for policy in [FsyncPolicy::Always, FsyncPolicy::Batch, FsyncPolicy::Never] {
        let dir = tempfile::tempdir().unwrap();
        let store = FsObjects::open(dir.path(), policy).unwrap();
        exercise(&store);
        let id = ObjectKey::plain(ChunkId::of(b"c"));
        store.put_if_absent(&id, &[b"c"]).unwrap();
        let p = store.path_of(&id);
        let hex = id.id.to_string();
        assert!(
            p.ends_with(format!("{}/{}/{}", &hex[..2], &hex[2..4], hex)),
            "generation 0 keeps today's name"
        );
        let g = ObjectKey::new(id.id, 0xab);
        assert!(store.path_of(&g).ends_with(format!("{}/{}/{hex}.00000000000000ab", &hex[..2], &hex[2..4])));
        assert!(!store.generational());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}

#[test]
fn both_write_paths_insert_without_replacing() {
    for unnamed in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FsObjects::open(dir.path(), FsyncPolicy::Always).unwrap();
        if unnamed && !store.tmpfile {
            eprintln!("skipped: this filesystem does not take O_TMPFILE");
            continue;
        }
        store.tmpfile = unnamed;
        exercise(&store);
        let id = ObjectKey::plain(ChunkId::of(b"d"));
        assert!(store.put_if_absent(&id, &[b"one"]).unwrap());
        assert!(!store.put_if_absent(&id, &[b"two"]).unwrap());
        assert_eq!(fs::read(store.path_of(&id)).unwrap(), b"one");
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "no temp file left");
    }
}

#[test]
fn mem_objects_behave() {
    exercise(&MemObjects::new());
    let g = MemObjects::generational();
    exercise(&g);
    assert!(g.generational() && !MemObjects::new().generational());
    assert!(Faulty::new(Arc::new(g)).generational(), "the wrapper forwards it");
}

#[test]
fn keys_name_and_parse_one_way() {
    let id = ChunkId::of(b"k");
    for g in [0, 1, 0xdead_beef, u64::MAX] {
        let k = ObjectKey::new(id, g);
        assert_eq!(ObjectKey::parse(&k.name()), Some(k));
    }
    assert_eq!(ObjectKey::new(id, 0).name(), id.to_string());
    let hex = id.to_string();
    for bad in [
        format!("{hex}.0000000000000000"), // generation 0 has no suffix
        format!("{hex}.00000000000000AB"),
        format!("{hex}.ab"),
        format!("{hex}.0000000000000001.tmp"),
        hex.to_uppercase(),
        "notes.txt".to_string(),
    ] {
        assert_eq!(ObjectKey::parse(&bad), None, "{bad}");
    }
}

#[test]
fn faulty_passes_through_and_fails_on_demand() {
    let inner = Arc::new(MemObjects::new());
    let f = Faulty::new(inner.clone());
    exercise(&f);
    let id = ObjectKey::plain(ChunkId::of(b"f"));
    f.fail_nth(Op::Put, 2);
    assert!(f.put_if_absent(&id, &[b"1"]).unwrap());
    assert!(f.put_if_absent(&id, &[b"2"]).is_err(), "the second put from now");
    assert!(!f.put_if_absent(&id, &[b"3"]).unwrap(), "only that one");
    f.fail_deletes(true);
    assert!(f.delete_many(&[id]).is_err());
    assert!(inner.contains(&id).unwrap(), "a failed call does nothing");
    f.heal();
    let pause = f.pause_next_delete();
    let f = Arc::new(f);
    let g = f.clone();
    let t = std::thread::spawn(move || g.delete_many(&[id]).unwrap());
    assert_eq!(pause.wait(std::time::Duration::from_secs(10)), Some(vec![id]));
    assert!(inner.contains(&id).unwrap(), "paused before deleting");
    pause.release();
    assert_eq!(t.join().unwrap(), 1);
    assert!(!inner.contains(&id).unwrap());
    assert_eq!(f.calls(Op::Delete), 6);
    // A put_many counts each object, and a failing one stops it there.
    let keys: Vec<ObjectKey> = (1..=3).map(|g| ObjectKey::new(id.id, g)).collect();
    let items: Vec<(ObjectKey, Vec<&[u8]>)> = keys.iter().map(|k| (*k, vec![&b"p"[..]])).collect();
    let puts = f.calls(Op::Put);
    f.fail_nth(Op::Put, 2);
    assert!(f.put_many(&items).is_err());
    assert_eq!(f.calls(Op::Put), puts + 2);
    assert!(inner.contains(&keys[0]).unwrap() && !inner.contains(&keys[1]).unwrap());
    assert!(!inner.contains(&keys[2]).unwrap(), "nothing after the failed one");
    // A pause before a put holds the keys it is about to write.
    let pause = f.pause_next(Op::Put);
    let g = f.clone();
    let t = std::thread::spawn(move || {
        let items: Vec<(ObjectKey, Vec<&[u8]>)> = keys.iter().map(|k| (*k, vec![&b"p"[..]])).collect();
        g.put_many(&items).unwrap()
    });
    assert_eq!(pause.wait(std::time::Duration::from_secs(10)).map(|k| k.len()), Some(3));
    assert!(!inner.contains(&ObjectKey::new(id.id, 3)).unwrap(), "paused before writing");
    pause.release();
    t.join().unwrap();
    assert!(inner.contains(&ObjectKey::new(id.id, 3)).unwrap());
}

#[test]
fn only_old_temp_files_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsObjects::open(dir.path(), FsyncPolicy::Never).unwrap();
    fs::write(dir.path().join("tmp/x.tmp"), b"junk").unwrap();
    assert_eq!(store.sweep_temp(Duration::from_secs(3600)).unwrap(), 0);
    assert_eq!(store.sweep_temp(Duration::ZERO).unwrap(), 1);
}

#[test]
fn listing_ignores_foreign_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsObjects::open(dir.path(), FsyncPolicy::Never).unwrap();
    let id = ObjectKey::plain(ChunkId::of(b"z"));
    store.put_if_absent(&id, &[b"z"]).unwrap();
    let d = store.path_of(&id).parent().unwrap().to_path_buf();
    fs::write(d.join("notes.txt"), b"").unwrap();
    fs::write(d.join(format!("{}.0000000000000000", id.id)), b"").unwrap();
    let l = store.list(id.id.as_bytes()[0], None, 100).unwrap();
    assert_eq!(l.len(), 1);
}

/// The directory's cached read answers what the blocking read answers, and
/// only from memory: nothing for an absent object, nothing once the
/// object's pages have left the page cache (the blocking read still has
/// them).
#[cfg(target_os = "linux")]
#[test]
fn cached_reads_answer_only_from_the_page_cache() {
    let (_dir, store, key, body) = one_synced_object(200_000);

    let (mut want, mut got) = (Vec::new(), vec![0; 65_535]);
    let head = store.get_head_and_range(&key, 16, 70_000, 65_536, &mut want).unwrap().unwrap();
    let short = store.get_head_and_range_cached(&key, 16, 70_000, 65_536, &mut got);
    assert_eq!(short, None, "a buffer without room for the slice");
    got.push(0);
    let cached = store.get_head_and_range_cached(&key, 16, 70_000, 65_536, &mut got);
    assert_eq!(cached, Some((head.clone(), 65_536)));
    assert_eq!(got, want);
    assert_eq!(got, body[70_000..135_536]);
    // Into a longer buffer: the slice in its first bytes, the rest as it was.
    let mut stale = vec![0xee; 100_000];
    assert!(store.get_head_and_range_cached(&key, 16, 70_000, 65_536, &mut stale).is_some());
    assert_eq!(stale.len(), 100_000, "the buffer is not cut to the slice");
    assert_eq!(stale[..65_536], body[70_000..135_536]);
    assert!(stale[65_536..].iter().all(|&b| b == 0xee), "bytes past the slice left as they were");
    let absent = ObjectKey::plain(ChunkId::of(b"absent"));
    assert_eq!(store.get_head_and_range_cached(&absent, 16, 0, 10, &mut got), None);
    assert_eq!(
        store.get_head_and_range_cached(&key, 16, 190_000, 65_536, &mut got),
        Some((head, 10_000)),
        "a slice past the end is short, and said so"
    );
    assert_eq!(got[..10_000], body[190_000..]);

    if evicted(&store, &key) {
        assert_eq!(store.get_head_and_range_cached(&key, 16, 70_000, 65_536, &mut got), None);
    }
    let mut again = Vec::new();
    store.get_head_and_range(&key, 16, 70_000, 65_536, &mut again).unwrap().unwrap();
    assert_eq!(again, want);
}

/// The whole-object cached read answers what the blocking read answers, and
/// only from memory: nothing for an absent object, an object longer than
/// the caller allows, or once the object's pages have left the page cache.
#[cfg(target_os = "linux")]
#[test]
fn whole_cached_reads_answer_only_from_the_page_cache() {
    let (_dir, store, key, body) = one_synced_object(300_000);

    // The caller's buffer holds `max + 1` bytes, or nothing is read.
    let mut got = vec![0; body.len()];
    assert_eq!(store.get_cached(&key, body.len(), &mut got), None, "a buffer without room for max + 1");
    got.push(0);
    assert_eq!(store.get_cached(&key, body.len(), &mut got), Some(body.len()));
    assert_eq!(got[..body.len()], body);
    // Into a buffer holding more than the object: its first bytes are the
    // object's, and the rest is left as it was (never cut, never zeroed).
    let mut stale = vec![0xee; body.len() + 100];
    assert_eq!(
        store.get_cached(&key, body.len() + 10, &mut stale),
        Some(body.len()),
        "a shorter object than allowed is read"
    );
    assert_eq!(stale.len(), body.len() + 100, "the buffer is not cut to the object");
    assert_eq!(stale[..body.len()], body);
    assert!(stale[body.len()..].iter().all(|&b| b == 0xee), "bytes past the object left as they were");
    assert_eq!(store.get_cached(&key, body.len() - 1, &mut got[..body.len()]), None, "longer than allowed");
    let absent = ObjectKey::plain(ChunkId::of(b"absent"));
    assert_eq!(store.get_cached(&absent, 10, &mut got), None);

    if evicted(&store, &key) {
        assert_eq!(store.get_cached(&key, body.len(), &mut got), None);
    }
    let mut again = Vec::new();
    assert!(store.get_into(&key, &mut again).unwrap());
    assert_eq!(again, body);
}

/// Direct writes store every length exactly (whole 4 KiB blocks, a tail,
/// both, neither) under both syncing policies, are on wherever the
/// filesystem takes `O_DIRECT`, and keep their whole blocks out of the
/// page cache (counted without reading the file: [`resident_bytes`]).
#[cfg(target_os = "linux")]
#[test]
fn direct_writes_store_every_length_and_bypass_the_page_cache() {
    for policy in [FsyncPolicy::Always, FsyncPolicy::Batch] {
        let dir = tempfile::tempdir().unwrap();
        let store = FsObjects::open(dir.path(), policy).unwrap().with_direct_writes(true);
        assert_eq!(
            store.writes_direct(),
            store.tmpfile && takes_direct(dir.path()),
            "on where the filesystem takes it"
        );
        if !store.writes_direct() {
            eprintln!("skipped: this filesystem does not take O_DIRECT (or O_TMPFILE)");
            return;
        }
        exercise(&store);
        for len in [0, 1, 4095, 4096, 4097, 3 * 4096 + 100, (1 << 20) + 33, (3 << 20) + 4100] {
            let body: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let key = ObjectKey::plain(ChunkId::of(&body));
            let split = len.min(13);
            assert!(store.put_if_absent(&key, &[&body[..split], &body[split..]]).unwrap());
            // The file's whole blocks went around the page cache; only the
            // tail under a block, written buffered, may be resident.
            let tail = len % 4096;
            let resident = resident_bytes(&store.path_of(&key));
            assert!(resident <= if tail > 0 { 4096 } else { 0 }, "{len} bytes: {resident} bytes resident");
            assert_eq!(fs::read(store.path_of(&key)).unwrap(), body, "{len} bytes");
        }
        assert!(store.writes_direct(), "still on");
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "no temp file left");
    }
    let dir = tempfile::tempdir().unwrap();
    let off = FsObjects::open(dir.path(), FsyncPolicy::Batch).unwrap().with_direct_writes(false);
    assert!(!off.writes_direct(), "off when asked off");
}

/// A direct write the filesystem refuses (`EINVAL`, as from one without
/// `O_DIRECT`) is written again through the page cache, and direct writes
/// stay off from then on.
#[cfg(target_os = "linux")]
#[test]
fn a_refused_direct_write_falls_back_to_the_page_cache() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsObjects::open(dir.path(), FsyncPolicy::Batch).unwrap().with_direct_writes(true);
    if !store.writes_direct() {
        eprintln!("skipped: this filesystem does not take O_DIRECT (or O_TMPFILE)");
        return;
    }
    store.refuse_direct.store(true, std::sync::atomic::Ordering::Relaxed);
    let body: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
    let key = ObjectKey::plain(ChunkId::of(&body));
    assert!(store.put_if_absent(&key, &[&body[..5], &body[5..]]).unwrap());
    assert!(!store.writes_direct(), "off for good after a refusal");
    assert_eq!(fs::read(store.path_of(&key)).unwrap(), body);
    assert!(
        !store.put_if_absent(&key, &[&body]).unwrap(),
        "and the store goes on: a second put is a dedup hit"
    );
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "no temp file left");
}

/// Whether the filesystem under `dir` takes a 4 KiB `O_DIRECT` write,
/// asked without the store's code.
#[cfg(target_os = "linux")]
pub(super) fn takes_direct(dir: &std::path::Path) -> bool {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let path = dir.join("direct-probe");
    let opened = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
        .open(&path);
    let buf = vec![1u8; 8192];
    let at = buf.as_ptr().align_offset(4096);
    let ok = opened.is_ok_and(|f| f.write_at(&buf[at..at + 4096], 0).is_ok());
    let _ = fs::remove_file(&path);
    ok
}

/// The bytes of the file at `path` the page cache holds, counted by
/// util-linux's `fincore` (`mincore(2)` or `cachestat(2)`), which never
/// reads the file. A `RWF_NOWAIT` read cannot tell: on a page it misses it
/// starts readahead, which can fill the page before the read looks again
/// (this test failed one run in five under load that way).
///
/// # Panics
/// Without `fincore` on `PATH` (Debian: `util-linux-extra`, which
/// `make test` installs), or on an answer that is not a number.
#[cfg(target_os = "linux")]
fn resident_bytes(path: &std::path::Path) -> u64 {
    let out = std::process::Command::new("fincore")
        .args(["--raw", "--noheadings", "--bytes", "--output", "RES"])
        .arg(path)
        .output()
        .expect("missing: fincore (Debian: apt-get install util-linux-extra)");
    assert!(out.status.success(), "fincore: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("fincore prints a byte count")
}

/// A directory (fsyncing each object) holding one object of `len` bytes:
/// the directory, the store, the object's key and its bytes.
#[cfg(target_os = "linux")]
fn one_synced_object(len: u32) -> (tempfile::TempDir, FsObjects, ObjectKey, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let store = FsObjects::open(dir.path(), FsyncPolicy::Always).unwrap();
    let key = ObjectKey::plain(ChunkId::of(&len.to_le_bytes()));
    let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    store.put_if_absent(&key, &[&body[..16], &body[16..]]).unwrap();
    (dir, store, key, body)
}

/// Drops the pages of the object at `key` from the page cache (written
/// with fsync, they are clean) and checks with [`resident_bytes`] that
/// none is left; `false`, and nothing to check, on tmpfs, which keeps
/// every page in memory, or when the kernel keeps some page through 20
/// tries (`POSIX_FADV_DONTNEED` is advice: the kernel skips a page it
/// cannot drop at that moment; once, in CI, a page stayed).
#[cfg(target_os = "linux")]
fn evicted(store: &FsObjects, key: &ObjectKey) -> bool {
    let path = store.path_of(key);
    let f = fs::File::open(&path).unwrap();
    if rustix::fs::fstatfs(&f).unwrap().f_type == 0x0102_1994 {
        eprintln!("tmpfs keeps every page in memory: the eviction case is not checked here");
        return false;
    }
    for _ in 0..20 {
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        if resident_bytes(&path) == 0 {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    eprintln!("the kernel kept some of the object's pages: the eviction case is not checked here");
    false
}

/// The descriptors the server leaves out of its connections' room: the
/// directory's share of the limit, none under 4,096, none for S3.
#[test]
fn only_the_directory_keeps_descriptors() {
    assert_eq!(ObjectsKind::Fs.kept_descriptors(1024), 0);
    assert_eq!(ObjectsKind::Fs.kept_descriptors(20_000), 2_500);
    assert_eq!(ObjectsKind::Fs.kept_descriptors(1 << 20), 4_096);
    for n in [1024, 20_000, 1 << 20] {
        assert_eq!(ObjectsKind::S3.kept_descriptors(n), 0, "{n}");
    }
}

/// A cached read keeps the object's descriptor and answers later reads
/// with it, while the file still has a name: an object replaced or deleted
/// by another process (another `FsObjects` on the same directory) is read
/// afresh, or not at all; one deleted by this store is let go at once.
#[cfg(target_os = "linux")]
#[test]
fn kept_descriptors_never_outlive_their_objects_name() {
    let (dir, store, key, body) = one_synced_object(100_000);
    let store = store.keeping_descriptors(4);
    let mut got = vec![0; body.len() + 1];
    assert_eq!(store.get_cached(&key, body.len(), &mut got), Some(body.len()));
    assert_eq!(store.descriptors_open(), 1);

    // The next read opens nothing: with the object's name moved elsewhere
    // (its file still linked, so still named), the kept descriptor answers.
    let path = store.path_of(&key);
    let aside = dir.path().join("aside");
    fs::hard_link(&path, &aside).unwrap();
    fs::remove_file(&path).unwrap();
    got.fill(0);
    assert_eq!(
        store.get_cached(&key, body.len(), &mut got),
        Some(body.len()),
        "answered by the kept descriptor"
    );
    assert_eq!(got[..body.len()], body);
    fs::rename(&aside, &path).unwrap();

    let other = FsObjects::open(dir.path(), FsyncPolicy::Never).unwrap();
    let mut healed = body.clone();
    healed[50_000] ^= 0xff;
    other.replace(&key, &[&healed]).unwrap();
    assert_eq!(store.get_cached(&key, body.len(), &mut got), Some(body.len()));
    assert!(got[..body.len()] == healed, "the replaced object's bytes, not the kept descriptor's");

    other.delete_many(&[key]).unwrap();
    assert_eq!(store.get_cached(&key, body.len(), &mut got), None, "a deleted object is not read");
    assert_eq!(store.descriptors_open(), 0);

    store.put_if_absent(&key, &[&body]).unwrap();
    assert_eq!(store.get_cached(&key, body.len(), &mut got), Some(body.len()));
    assert_eq!(store.descriptors_open(), 1);
    store.delete_many(&[key]).unwrap();
    assert_eq!(store.descriptors_open(), 0, "let go with the delete");
}
