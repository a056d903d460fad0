//! One contract, run against every backend: what the store relies on.

use super::*;

fn keys(it: KvIter<'_>) -> Vec<Vec<u8>> {
    it.map(|kv| kv.unwrap().0.to_vec()).collect()
}

fn fill(m: &dyn MetaStore) {
    let mut b = Batch::default();
    for k in [&b"a1"[..], b"a2", b"a3", b"b1", b"b\xff", b"c", b"\xff\xff"] {
        b.put(Cf::Uploads, k, k);
    }
    m.write(b, true).unwrap();
}

fn contract(m: &dyn MetaStore) {
    fill(m);
    let v = |k: &[u8]| k.to_vec();
    assert_eq!(m.get(Cf::Uploads, b"a2").unwrap(), Some(v(b"a2")));
    assert_eq!(m.get(Cf::Files, b"a2").unwrap(), None, "families are separate");
    assert_eq!(
        m.multi_get(Cf::Uploads, &[b"c", b"zz", b"a1"]).unwrap(),
        [Some(v(b"c")), None, Some(v(b"a1"))]
    );

    assert_eq!(keys(m.scan(Cf::Uploads, b"a", None)), [v(b"a1"), v(b"a2"), v(b"a3")]);
    assert_eq!(keys(m.scan(Cf::Uploads, b"a", Some(b"a2"))), [v(b"a2"), v(b"a3")]);
    assert_eq!(keys(m.scan(Cf::Uploads, b"b", Some(b"a"))), [v(b"b1"), v(b"b\xff")], "start before prefix");
    assert!(keys(m.scan(Cf::Uploads, b"a", Some(b"b"))).is_empty(), "start past prefix");
    assert_eq!(keys(m.scan(Cf::Uploads, b"", None)).len(), 7);
    assert_eq!(keys(m.scan(Cf::Uploads, b"\xff", None)), [v(b"\xff\xff")]);

    assert_eq!(keys(m.scan_rev(Cf::Uploads, b"", None)).first(), Some(&v(b"\xff\xff")));
    assert_eq!(keys(m.scan_rev(Cf::Uploads, b"", Some(b"b1"))), [v(b"a3"), v(b"a2"), v(b"a1")]);
    assert_eq!(keys(m.scan_rev(Cf::Uploads, b"b", None)), [v(b"b\xff"), v(b"b1")]);
    assert_eq!(keys(m.scan_rev(Cf::Uploads, b"a", Some(b"zz"))), [v(b"a3"), v(b"a2"), v(b"a1")]);
    assert_eq!(keys(m.scan_rev(Cf::Uploads, b"a", Some(b"a2"))), [v(b"a1")]);
    assert!(keys(m.scan_rev(Cf::Uploads, b"b", Some(b"a"))).is_empty(), "before below prefix");

    // Later writes in a batch win; counters add and can be overwritten.
    let mut b = Batch::default();
    b.put(Cf::Files, b"k", b"1");
    b.delete(Cf::Files, b"k");
    b.put(Cf::Files, b"j", b"1");
    b.put(Cf::Files, b"j", b"2");
    b.add(Counter::Files, 5);
    b.add(Counter::Files, -2);
    b.add(Counter::LogicalBytes, 0);
    m.write(b, false).unwrap();
    assert_eq!(m.get(Cf::Files, b"k").unwrap(), None);
    assert_eq!(m.get(Cf::Files, b"j").unwrap(), Some(v(b"2")));
    assert_eq!(m.counter(Counter::Files).unwrap(), 3);
    assert_eq!(m.counter(Counter::LogicalBytes).unwrap(), 0);
    let mut b = Batch::default();
    b.set_counter(Counter::Files, 10);
    b.add(Counter::Files, 1);
    m.write(b, true).unwrap();
    assert_eq!(m.counter(Counter::Files).unwrap(), 11);

    // A long scan pages correctly, and sees keys in order.
    let mut b = Batch::default();
    for i in 0u32..1000 {
        b.put(Cf::Gcq, &i.to_be_bytes(), b"");
    }
    m.write(b, false).unwrap();
    let fwd: Vec<_> = keys(m.scan(Cf::Gcq, b"", None));
    assert_eq!(fwd.len(), 1000);
    assert!(fwd.windows(2).all(|w| w[0] < w[1]));
    let rev: Vec<_> = keys(m.scan_rev(Cf::Gcq, b"", None));
    assert_eq!(rev.into_iter().rev().collect::<Vec<_>>(), fwd);

    // Bounded scans over several pages, starting mid-range, with neighbours
    // just outside the prefix on both sides.
    let mut b = Batch::default();
    for i in 0u32..700 {
        b.put(Cf::Manifests, &[&b"p"[..], &i.to_be_bytes()].concat(), &i.to_le_bytes());
    }
    b.put(Cf::Manifests, b"o\xff\xff", b"");
    b.put(Cf::Manifests, b"q", b"");
    m.write(b, false).unwrap();
    let key = |i: u32| [&b"p"[..], &i.to_be_bytes()].concat();
    let fwd = keys(m.scan(Cf::Manifests, b"p", Some(&key(100))));
    assert_eq!(fwd, (100..700).map(key).collect::<Vec<_>>());
    let rev = keys(m.scan_rev(Cf::Manifests, b"p", Some(&key(650))));
    assert_eq!(rev, (0..650).rev().map(key).collect::<Vec<_>>());
    let all = m.scan(Cf::Manifests, b"p", None).map(|kv| kv.unwrap()).collect::<Vec<_>>();
    assert_eq!(all.len(), 700);
    assert!(all.iter().enumerate().all(|(i, (_, v))| v[..] == (i as u32).to_le_bytes()));

    // A multi-get of several batches answers in the order asked, whatever
    // order the backend looks keys up in: descending, with absent keys and
    // repeats between them. Flushed first, so that RocksDB answers from its
    // table files, where its batched lookup relies on the order it is told.
    m.flush().unwrap();
    let asked: Vec<u32> = (0..800).rev().map(|i| if i % 7 == 0 { 699 - i % 700 } else { i }).collect();
    let asked_keys: Vec<Vec<u8>> = asked.iter().map(|&i| key(i)).collect();
    let refs: Vec<&[u8]> = asked_keys.iter().map(Vec::as_slice).collect();
    let got = m.multi_get(Cf::Manifests, &refs).unwrap();
    let want: Vec<_> = asked.iter().map(|&i| (i < 700).then(|| i.to_le_bytes().to_vec())).collect();
    assert_eq!(got, want);
    m.flush().unwrap();
}

/// Counters as RocksDB's merge operator defines them, over a mix of puts,
/// deletes and adds, read back by get, multi-get and a scan of more than a
/// page: what every backend must answer alike.
fn counter_semantics(m: &dyn MetaStore) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut b = Batch::default();
    b.add_at(b"usage/a", 5);
    b.put(Cf::Meta, b"usage/b", &7i64.to_le_bytes());
    b.add_at(b"usage/c", 1);
    b.add_at(b"usage/c", -1);
    b.put(Cf::Meta, b"plain", b"text");
    m.write(b, true).unwrap();
    for delta in [3, -1, 10] {
        let mut b = Batch::default();
        b.add_at(b"usage/a", delta);
        b.add_at(b"usage/b", delta);
        m.write(b, false).unwrap();
    }
    let mut b = Batch::default();
    b.put(Cf::Meta, b"usage/d", &100i64.to_le_bytes());
    b.add_at(b"usage/d", 1);
    b.add_at(b"usage/e", 4);
    b.delete(Cf::Meta, b"usage/e");
    b.add_at(b"usage/f", 4);
    m.write(b, true).unwrap();
    let mut b = Batch::default();
    b.put(Cf::Meta, b"usage/f", &1i64.to_le_bytes());
    b.add_at(b"usage/f", 1);
    m.write(b, true).unwrap();
    let mut b = Batch::default();
    for i in 0u32..300 {
        b.add_at(&[&b"usage/t"[..], &i.to_be_bytes()].concat(), i64::from(i) + 1);
    }
    m.write(b, false).unwrap();

    let get = |k: &[u8]| m.get(Cf::Meta, k).unwrap().map(|v| decode_counter(&v));
    assert_eq!(get(b"usage/a"), Some(17));
    assert_eq!(get(b"usage/b"), Some(19));
    assert_eq!(
        m.get(Cf::Meta, b"usage/c").unwrap(),
        Some(0i64.to_le_bytes().to_vec()),
        "a zero sum is a value"
    );
    assert_eq!(get(b"usage/d"), Some(101));
    assert_eq!(get(b"usage/e"), None, "a delete drops earlier adds");
    assert_eq!(get(b"usage/f"), Some(2), "a put resets earlier adds");
    assert_eq!(get(b"usage/none"), None);
    assert_eq!(m.get(Cf::Meta, b"plain").unwrap(), Some(b"text".to_vec()));
    let many = m.multi_get(Cf::Meta, &[b"usage/b", b"plain", b"usage/none", b"usage/a"]).unwrap();
    assert_eq!(many[0], Some(19i64.to_le_bytes().to_vec()));
    assert_eq!(many[1], Some(b"text".to_vec()));
    assert_eq!((many[2].clone(), many[3].clone()), (None, Some(17i64.to_le_bytes().to_vec())));
    let scanned: Vec<_> = m
        .scan(Cf::Meta, b"usage/", None)
        .map(|kv| kv.unwrap())
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    assert_eq!(scanned.len(), 5 + 300);
    let tallies: Vec<i64> =
        scanned.iter().filter(|(k, _)| k.starts_with(b"usage/t")).map(|(_, v)| decode_counter(v)).collect();
    assert_eq!(tallies, (1..=300).collect::<Vec<_>>());
    let mut rev: Vec<_> = m
        .scan_rev(Cf::Meta, b"usage/", None)
        .map(|kv| kv.unwrap())
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    rev.reverse();
    assert_eq!(rev, scanned);
    scanned
}

#[test]
fn memory_meets_the_contract() {
    contract(&MemMeta::new());
    counter_semantics(&MemMeta::new());
}

#[test]
fn rocksdb_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(&RocksMeta::open(dir.path()).unwrap());
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(counter_semantics(&RocksMeta::open(dir.path()).unwrap()), counter_semantics(&MemMeta::new()));
}

#[cfg(feature = "postgres")]
mod postgres;

#[test]
fn rocksdb_counters_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let m = RocksMeta::open(dir.path()).unwrap();
        let mut b = Batch::default();
        b.add(Counter::UniqueBytes, 7);
        m.write(b, true).unwrap();
        assert!(matches!(RocksMeta::open(dir.path()), Err(crate::store::Error::Locked(_))));
    }
    assert_eq!(RocksMeta::open(dir.path()).unwrap().counter(Counter::UniqueBytes).unwrap(), 7);
}
