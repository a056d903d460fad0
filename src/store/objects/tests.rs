//! One contract, run against every engine (the directory, the memory twin
//! and the fault wrapper), and what is particular to each.

use std::fs;
use std::sync::Arc;

use super::*;

fn exercise(store: &dyn ObjectStore) {
    let id = ChunkId::of(b"a");
    let other = ChunkId::of(b"b");
    assert!(store.get(&id).unwrap().is_none());
    assert!(store.put_if_absent(&id, &[b"first"]).unwrap());
    assert!(!store.put_if_absent(&id, &[b"second"]).unwrap(), "never replaces");
    assert_eq!(store.get(&id).unwrap().unwrap(), b"first");
    assert!(store.contains(&id).unwrap());
    assert!(store.put_if_absent(&other, &[b"x"]).unwrap());
    store.barrier().unwrap();
    let listed = store.list(id.as_bytes()[0], None, 10).unwrap();
    assert!(listed.iter().any(|e| e.id == id && e.len == 5));
    store.replace(&id, &[b"healed"]).unwrap();
    assert_eq!(store.get(&id).unwrap().unwrap(), b"healed");
    assert!(store.quarantine(&id).unwrap());
    assert!(!store.contains(&id).unwrap());
    assert_eq!(store.delete_many(&[other, other]).unwrap(), 2, "absent counts as deleted");
    assert!(!store.contains(&other).unwrap());
    pages(store);
}

/// Many objects under one prefix, listed a page at a time: every one
/// once, in order, and nothing of another prefix.
fn pages(store: &dyn ObjectStore) {
    let mut ids: Vec<ChunkId> = (0..3000u32).map(|i| ChunkId::of(&i.to_le_bytes())).collect();
    for id in &ids {
        store.put_if_absent(id, &[b"o"]).unwrap();
    }
    let prefix = ids[0].as_bytes()[0];
    ids.retain(|id| id.as_bytes()[0] == prefix);
    ids.sort();
    assert!(ids.len() > 5, "the prefix holds a few pages");
    for limit in [1, 2, 5, 1000] {
        let mut seen = Vec::new();
        let mut calls = 0;
        for_each_page::<io::Error>(store, prefix, limit, |page| {
            assert!(page.len() <= limit);
            calls += 1;
            seen.extend(page.iter().map(|e| e.id));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, ids, "limit {limit}");
        assert!(calls >= ids.len() / limit);
    }
    // A start past the prefix gives an empty page; one before it, the top.
    let last = *ids.last().unwrap();
    assert!(store.list(prefix, Some(&last), 10).unwrap().is_empty());
    let before = ChunkId::from_slice(&[prefix.wrapping_sub(1); 32]).unwrap();
    if prefix > 0 {
        assert_eq!(store.list(prefix, Some(&before), 1).unwrap()[0].id, ids[0]);
    }
    let all: Vec<ChunkId> = (0..3000u32).map(|i| ChunkId::of(&i.to_le_bytes())).collect();
    assert_eq!(store.delete_many(&all).unwrap(), all.len());
    assert!(store.list(prefix, None, 10).unwrap().is_empty());
}

#[test]
fn fs_objects_behave() {
    for policy in [FsyncPolicy::Always, FsyncPolicy::Batch, FsyncPolicy::Never] {
        let dir = tempfile::tempdir().unwrap();
        let store = FsObjects::open(dir.path(), policy).unwrap();
        exercise(&store);
        let id = ChunkId::of(b"c");
        store.put_if_absent(&id, &[b"c"]).unwrap();
        let p = store.path_of(&id);
        let hex = id.to_string();
        assert!(p.ends_with(format!("{}/{}/{}", &hex[..2], &hex[2..4], hex)));
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
        let id = ChunkId::of(b"d");
        assert!(store.put_if_absent(&id, &[b"one"]).unwrap());
        assert!(!store.put_if_absent(&id, &[b"two"]).unwrap());
        assert_eq!(fs::read(store.path_of(&id)).unwrap(), b"one");
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "no temp file left");
    }
}

#[test]
fn mem_objects_behave() {
    exercise(&MemObjects::new());
}

#[test]
fn faulty_passes_through_and_fails_on_demand() {
    let inner = Arc::new(MemObjects::new());
    let f = Faulty::new(inner.clone());
    exercise(&f);
    let id = ChunkId::of(b"f");
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
    assert_eq!(f.calls(Op::Delete), 4);
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
    let id = ChunkId::of(b"z");
    store.put_if_absent(&id, &[b"z"]).unwrap();
    let d = store.path_of(&id).parent().unwrap().to_path_buf();
    fs::write(d.join("notes.txt"), b"").unwrap();
    let l = store.list(id.as_bytes()[0], None, 100).unwrap();
    assert_eq!(l.len(), 1);
}
