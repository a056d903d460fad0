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
        assert!(p.ends_with(format!("{}/{}", &hex[..2], hex)), "generation 0 keeps today's name");
        assert!(p.is_file());
        let g = ObjectKey::new(id.id, 0xab);
        assert!(store.path_of(&g).ends_with(format!("{}/{hex}.00000000000000ab", &hex[..2])));
        assert!(!store.generational());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}

/// A new store is made with one level, its 256 directories and a `layout`
/// file that says so; a store made with two levels (`ab/cd`, before the
/// file existed) is read and written as it was made, and keeps the
/// contract; the file is what later opens go by.
#[test]
fn fanout_is_decided_once_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsObjects::open(dir.path(), FsyncPolicy::Batch).unwrap();
    assert_eq!(store.fanout(), Fanout::One);
    assert_eq!(fs::read_to_string(dir.path().join("layout")).unwrap(), "ab\n");
    let top = fs::read_dir(dir.path()).unwrap().filter(|e| e.as_ref().unwrap().path().is_dir()).count();
    assert_eq!(top, 256 + 2, "00..ff, tmp and quarantine");
    let id = ObjectKey::plain(ChunkId::of(b"one"));
    assert!(store.put_if_absent(&id, &[b"one"]).unwrap());
    drop(store);
    let store = FsObjects::open(dir.path(), FsyncPolicy::Batch).unwrap();
    assert_eq!(store.fanout(), Fanout::One);
    assert_eq!(store.get(&id).unwrap().unwrap(), b"one");

    // A store of the old layout: one object at `ab/cd/<hex>`, no `layout`.
    let old = tempfile::tempdir().unwrap();
    let id = ObjectKey::plain(ChunkId::of(b"old"));
    let hex = id.id.to_string();
    let path = old.path().join(&hex[..2]).join(&hex[2..4]).join(&hex);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, b"old bytes").unwrap();
    let store = FsObjects::open(old.path(), FsyncPolicy::Batch).unwrap();
    assert_eq!(store.fanout(), Fanout::Two);
    assert_eq!(fs::read_to_string(old.path().join("layout")).unwrap(), "ab/cd\n");
    assert_eq!(store.path_of(&id), path);
    assert_eq!(store.get(&id).unwrap().unwrap(), b"old bytes");
    assert_eq!(store.list(id.id.as_bytes()[0], None, 10).unwrap()[0].key, id);
    exercise(&store);
    let new = ObjectKey::plain(ChunkId::of(b"new"));
    assert!(store.put_if_absent(&new, &[b"new"]).unwrap());
    let h = new.id.to_string();
    assert!(
        old.path().join(&h[..2]).join(&h[2..4]).join(&h).is_file(),
        "new objects go where the old ones are"
    );
    drop(store);
    // The file decides from now on, whatever the directories hold.
    fs::remove_dir_all(old.path().join(&hex[..2]).join(&hex[2..4])).unwrap();
    assert_eq!(FsObjects::open(old.path(), FsyncPolicy::Batch).unwrap().fanout(), Fanout::Two);

    fs::write(old.path().join("layout"), "abc/\n").unwrap();
    let e = FsObjects::open(old.path(), FsyncPolicy::Batch).err().unwrap();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    assert!(e.to_string().contains("unknown layout `abc/`"), "{e}");
}

/// Under one level a walk reads its byte's directory once and pages
/// through what it read: an object removed mid-walk is skipped, one added
/// mid-walk waits for the next walk, and a walk of another byte in between
/// does not make either walk lose its place.
#[test]
fn one_level_walks_page_through_one_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsObjects::open(dir.path(), FsyncPolicy::Never).unwrap();
    let mut keys: Vec<ObjectKey> = (0..20_000u32)
        .map(|i| ObjectKey::plain(ChunkId::of(&i.to_le_bytes())))
        .filter(|k| k.id.as_bytes()[0] == 7)
        .collect();
    keys.sort();
    for k in &keys {
        store.put_if_absent(k, &[b"x"]).unwrap();
    }
    let other = ObjectKey::plain(ChunkId::from_slice(&[8; 32]).unwrap());
    store.put_if_absent(&other, &[b"o"]).unwrap();
    let first = store.list(7, None, 10).unwrap();
    assert_eq!(first.iter().map(|e| e.key).collect::<Vec<_>>(), keys[..10]);
    // Meanwhile: one of the next page goes, a new one comes.
    store.delete_many(&[keys[12]]).unwrap();
    let late = (0u32..)
        .map(|i| ObjectKey::plain(ChunkId::of(&(i + 1_000_000).to_le_bytes())))
        .find(|k| k.id.as_bytes()[0] == 7 && *k > keys[15] && *k < keys[20])
        .unwrap();
    store.put_if_absent(&late, &[b"late"]).unwrap();
    let second = store.list(7, Some(&keys[9]), 10).unwrap();
    let mut want: Vec<ObjectKey> = keys[10..21].to_vec();
    want.remove(2);
    assert_eq!(second.iter().map(|e| e.key).collect::<Vec<_>>(), want, "the walk's own names");
    // A walk of another byte in between: the first goes on where it was.
    assert_eq!(store.list(8, None, 10).unwrap()[0].key, other);
    let third = store.list(7, Some(&keys[20]), 10).unwrap();
    assert_eq!(third.iter().map(|e| e.key).collect::<Vec<_>>(), keys[21..31]);
    let mut rest = Vec::new();
    crate::store::objects::for_each_page::<std::io::Error>(&store, 7, 1000, |p| {
        rest.extend(p.iter().map(|e| e.key));
        Ok(())
    })
    .unwrap();
    assert!(rest.contains(&late), "a new walk reads the directory again");
    assert_eq!(rest.len(), keys.len(), "one gone, one come");
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
