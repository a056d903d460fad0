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
    m.flush().unwrap();
}

#[test]
fn memory_meets_the_contract() {
    contract(&MemMeta::new());
}

#[test]
fn rocksdb_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(&RocksMeta::open(dir.path()).unwrap());
}

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
