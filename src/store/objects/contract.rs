//! The [`ObjectStore`] contract as one function every engine runs: the
//! directory, the memory twin and the fault wrapper in unit tests, and
//! [`super::S3Objects`] against a real engine in `tests/s3_objects.rs`.
//! Public so that integration tests can reach it; it panics on a broken
//! promise and is of no use outside tests.

use std::io;

use super::{ObjectKey, ObjectStore, for_each_page};
use crate::store::id::ChunkId;

/// How many objects the paging check writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breadth {
    /// 3,000 objects spread over every listing prefix (cheap locally).
    EveryPrefix,
    /// Only those of the 3,000 in one prefix and its two neighbours (about
    /// 35 objects): the same boundaries, for engines where a write is a
    /// network round trip.
    Neighbours,
}

/// Runs the whole contract against an empty `store`, which it leaves empty.
///
/// # Panics
/// When `store` breaks a promise of [`ObjectStore`] (or fails a call).
pub fn check(store: &dyn ObjectStore, breadth: Breadth) {
    let id = ObjectKey::plain(ChunkId::of(b"a"));
    let other = ObjectKey::plain(ChunkId::of(b"b"));
    assert!(store.get(&id).unwrap().is_none());
    assert!(store.get_range(&id, 0, 4).unwrap().is_none());
    let mut part = b"kept:".to_vec();
    assert!(store.get_head_and_range(&id, 2, 1, 4, &mut part).unwrap().is_none());
    let mut buf = b"kept:".to_vec();
    assert!(!store.get_into(&id, &mut buf).unwrap());
    assert_eq!((&part[..], &buf[..]), (&b"kept:"[..], &b"kept:"[..]), "an absent object adds nothing");
    assert!(store.put_if_absent(&id, &[b"fir", b"st"]).unwrap());
    assert!(!store.put_if_absent(&id, &[b"second"]).unwrap(), "never replaces");
    assert_eq!(store.get(&id).unwrap().unwrap(), b"first");
    assert_eq!(store.get_range(&id, 1, 3).unwrap().unwrap(), b"irs");
    assert_eq!(store.get_range(&id, 3, 10).unwrap().unwrap(), b"st", "cut at the end");
    assert_eq!(store.get_range(&id, 9, 10).unwrap().unwrap(), b"", "past the end");
    let head = store.get_head_and_range(&id, 2, 3, 10, &mut part).unwrap().unwrap();
    assert_eq!((&head[..], &part[..]), (&b"fi"[..], &b"kept:st"[..]), "a header and a slice, cut at the end");
    part.clear();
    store.get_head_and_range(&id, 0, 1, 2, &mut part).unwrap().unwrap();
    assert_eq!(part, b"ir");
    assert!(store.get_into(&id, &mut buf).unwrap());
    assert_eq!(buf, b"kept:first", "appended to what the buffer held");
    assert!(store.contains(&id).unwrap());
    assert!(store.put_if_absent(&other, &[b"x"]).unwrap());
    store.barrier().unwrap();
    let listed = store.list(id.id.as_bytes()[0], None, 10).unwrap();
    assert!(listed.iter().any(|e| e.key == id && e.len == 5));
    store.replace(&id, &[b"healed"]).unwrap();
    assert_eq!(store.get(&id).unwrap().unwrap(), b"healed");
    assert!(store.quarantine(&id).unwrap());
    assert!(!store.contains(&id).unwrap());
    assert!(!store.quarantine(&id).unwrap(), "nothing left to quarantine");
    assert_eq!(store.delete_many(&[other, other]).unwrap(), 2, "absent counts as deleted");
    assert!(!store.contains(&other).unwrap());
    generations(store);
    pages(store, breadth);
}

/// Generations of one chunk are distinct objects: written together by
/// `put_many`, listed in generation order after generation 0, deleted one
/// at a time; and a `put_many` of nothing does nothing.
fn generations(store: &dyn ObjectStore) {
    let id = ChunkId::of(b"g");
    let keys = [ObjectKey::new(id, 0), ObjectKey::new(id, 7), ObjectKey::new(id, u64::MAX - 1)];
    store.put_many(&[]).unwrap();
    let items: Vec<(ObjectKey, Vec<&[u8]>)> = keys
        .iter()
        .zip([&b"zero"[..], b"seven", b"last"])
        .map(|(k, b)| (*k, vec![&b[..2], &b[2..]]))
        .collect();
    store.put_many(&items).unwrap();
    store.barrier().unwrap();
    for (k, b) in keys.iter().zip([&b"zero"[..], b"seven", b"last"]) {
        assert_eq!(store.get(k).unwrap().as_deref(), Some(b), "{k}");
    }
    store.put_many(&[(keys[1], vec![&b"again"[..]])]).unwrap();
    assert_eq!(store.get(&keys[1]).unwrap().unwrap(), b"again", "put_many overwrites");
    let listed: Vec<ObjectKey> = store
        .list(id.as_bytes()[0], None, 100)
        .unwrap()
        .iter()
        .map(|e| e.key)
        .filter(|k| k.id == id)
        .collect();
    assert_eq!(listed, keys, "id, then generation");
    let after: Vec<ObjectKey> =
        store.list(id.as_bytes()[0], Some(&keys[0]), 100).unwrap().iter().map(|e| e.key).collect();
    assert_eq!(after.first(), Some(&keys[1]), "a page may start between two generations of one id");
    assert_eq!(store.delete_many(&keys[1..2]).unwrap(), 1);
    assert!(
        store.contains(&keys[0]).unwrap() && store.contains(&keys[2]).unwrap(),
        "only that generation goes"
    );
    assert!(!store.contains(&keys[1]).unwrap());
    assert_eq!(store.delete_many(&keys).unwrap(), 3);
    assert!(store.list(id.as_bytes()[0], None, 100).unwrap().iter().all(|e| e.key.id != id));
}

/// Many objects under one prefix, listed a page at a time: every one
/// once, in order, and nothing of another prefix.
fn pages(store: &dyn ObjectStore, breadth: Breadth) {
    // Every fifth chunk has a second generation: pages cut between them too.
    let all: Vec<ObjectKey> = (0..3000u32)
        .flat_map(|i| {
            let id = ChunkId::of(&i.to_le_bytes());
            let second = (i % 5 == 0).then(|| ObjectKey::new(id, u64::from(i) + 1));
            std::iter::once(ObjectKey::plain(id)).chain(second)
        })
        .collect();
    let prefix = all[0].id.as_bytes()[0];
    let written: Vec<ObjectKey> = match breadth {
        Breadth::EveryPrefix => all.clone(),
        Breadth::Neighbours => {
            all.iter().copied().filter(|k| k.id.as_bytes()[0].abs_diff(prefix) <= 1).collect()
        }
    };
    for id in &written {
        store.put_if_absent(id, &[b"o"]).unwrap();
    }
    let mut ids = written.clone();
    ids.retain(|k| k.id.as_bytes()[0] == prefix);
    ids.sort();
    assert!(ids.len() > 5, "the prefix holds a few pages");
    for limit in [1, 2, 5, 1000] {
        let mut seen = Vec::new();
        let mut calls = 0;
        for_each_page::<io::Error>(store, prefix, limit, |page| {
            assert!(page.len() <= limit);
            calls += 1;
            seen.extend(page.iter().map(|e| e.key));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, ids, "limit {limit}");
        assert!(calls >= ids.len() / limit);
    }
    // A start past the prefix gives an empty page; one before it, the top.
    let last = *ids.last().unwrap();
    assert!(store.list(prefix, Some(&last), 10).unwrap().is_empty());
    let before = ObjectKey::plain(ChunkId::from_slice(&[prefix.wrapping_sub(1); 32]).unwrap());
    if prefix > 0 {
        assert_eq!(store.list(prefix, Some(&before), 1).unwrap()[0].key, ids[0]);
    }
    let after = ObjectKey::plain(ChunkId::from_slice(&[prefix.wrapping_add(1); 32]).unwrap());
    if prefix < 255 {
        assert!(store.list(prefix, Some(&after), 10).unwrap().is_empty());
    }
    assert_eq!(store.delete_many(&written).unwrap(), written.len());
    assert!(store.list(prefix, None, 10).unwrap().is_empty());
}
