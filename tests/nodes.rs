//! Two nodes on one store: two `Store`s opened over the same metadata and
//! the same objects, as two servers behind a load balancer would be. The
//! chunk-row, file and quota locks come from the metadata (`meta::locks`),
//! so the nodes exclude each other: over the in-memory twin (one `MemMeta`,
//! whose locks both stores share) and over PostgreSQL (two `PgMeta`s opened
//! as nodes, each with its own connections: the locks are advisory locks
//! on the server; skipped without PostgreSQL unless `DEPOT_SCALEOUT=1`).
//! Objects are the in-memory twins behind fault hooks, the directory's and
//! the generational (S3) one, so a node can be stopped at a named point.
//! Also: the server's keys, made once by whichever node asks first; a
//! token revoked on one node, refused by the other within the token rows'
//! time in memory; a download on one node holding a delete made on the
//! other; an append-only upload moving between nodes, the appender before
//! fenced.

mod common;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{ingest, put_the_same_chunks, read_all, test_options};
use depot::store::meta::{MetaStore, PgMeta, PgOptions};
use depot::store::objects::{Op, Pause};
use depot::store::{
    Error, Faulty, FileRecord, GcReport, ManualClock, MemMeta, MemObjects, NewStream, ObjectKey, ObjectStore,
    Scopes, Store, StoreOptions, TOKEN_CACHE_TTL, Tenant, View,
};
use depot::testdata::pseudo_random;
use futures_util::TryStreamExt;

const DAY: Duration = Duration::from_secs(24 * 3600);
const WAIT: Duration = Duration::from_secs(30);

/// What the two nodes share for metadata.
#[derive(Debug, Clone, Copy)]
enum Shared {
    /// One `MemMeta`.
    Memory,
    /// One PostgreSQL database, two `PgMeta`s.
    Postgres,
}

/// Two nodes' backends: each node's metadata handle, the shared objects
/// and clock.
struct Nodes {
    dir: tempfile::TempDir,
    metas: [Arc<dyn MetaStore>; 2],
    objects: Arc<MemObjects>,
    clock: Arc<ManualClock>,
}

impl Nodes {
    /// `None` where PostgreSQL is not installed (and not required).
    fn new(shared: Shared, generational: bool, test: &str) -> Option<Self> {
        let metas: [Arc<dyn MetaStore>; 2] = match shared {
            Shared::Memory => {
                let m = Arc::new(MemMeta::new());
                [m.clone(), m]
            }
            Shared::Postgres => {
                let url = common::postgres::database(test)?;
                let node = || {
                    let opts = PgOptions { exclusive: false, ..PgOptions::default() };
                    Arc::new(PgMeta::open_with(&url, opts).unwrap()) as Arc<dyn MetaStore>
                };
                [node(), node()]
            }
        };
        Some(Nodes {
            dir: tempfile::tempdir().unwrap(),
            metas,
            objects: Arc::new(if generational { MemObjects::generational() } else { MemObjects::new() }),
            clock: ManualClock::new(),
        })
    }

    /// Opens node `n` (0 or 1) of a shared store, with fault hooks in
    /// front of the objects. Reader rows live an hour.
    fn open(&self, n: usize) -> (Store, Arc<Faulty>) {
        let faulty = Arc::new(Faulty::new(self.objects.clone()));
        let opts = StoreOptions { shared: true, reader_ttl: Duration::from_secs(3600), ..test_options() };
        let store = Store::open_on(
            &self.dir.path().join(n.to_string()),
            opts,
            self.metas[n].clone(),
            faulty.clone(),
            self.clock.clone(),
        )
        .unwrap();
        (store, faulty)
    }
}

fn assert_clean(store: &Store) {
    let v = store.verify(false).unwrap();
    assert!(v.is_clean(), "{v:?}");
    assert_eq!(v.deleting_rows, 0, "{v:?}");
    assert_eq!(v.objects, v.rows, "every object has its row and no more: {v:?}");
}

type GcThread = thread::JoinHandle<depot::store::Result<GcReport>>;

/// GC on node B has marked a deleted file's chunks `Deleting` and is about
/// to delete their objects when node A uploads the same content. Over the
/// directory's twin GC holds the chunks' locks until their rows are gone,
/// so A's upload must wait for B (with locks of its own process only, it
/// would go on and name objects B then deletes); over the generational
/// twin A claims the rows with new generations and B deletes only the old
/// ones. Either way the file reads back whole on both nodes, before and
/// after more GC, and verify is clean.
fn gc_on_one_node_and_the_same_content_on_the_other(shared: Shared, generational: bool) {
    let Some(nodes) = Nodes::new(shared, generational, "gc_commit") else { return };
    let (a, faulty_a) = nodes.open(0);
    let (b, faulty_b) = nodes.open(1);

    let data = pseudo_random(200_000, 41);
    let rec = ingest(&a, "doomed.bin", &data);
    let chunks = a.stats().unwrap().unique_chunks;
    assert!(chunks > 10, "{chunks}");
    a.delete_file(&View::All, &rec.id).unwrap();
    nodes.clock.advance(DAY);

    let pause: Pause = faulty_b.pause_next_delete();
    let gc: GcThread = {
        let b = b.clone();
        thread::spawn(move || b.gc(false))
    };
    let doomed: Vec<ObjectKey> = pause.wait(WAIT).expect("GC on B reached its delete");
    assert_eq!(doomed.len() as u64, chunks, "every chunk of the deleted file is doomed");

    // The same content behind new bytes: the upload's first batch writes
    // the new chunks' objects and reaches a barrier only after it has
    // looked up every chunk of the batch, and found the shared ones
    // `Deleting`.
    let mut content = pseudo_random(50_000, 42);
    content.extend_from_slice(&data);
    let barriers = faulty_a.calls(Op::Barrier);
    let upload = {
        let (a, c) = (a.clone(), content.clone());
        thread::spawn(move || ingest(&a, "again.bin", &c))
    };
    let deadline = Instant::now() + WAIT;
    while faulty_a.calls(Op::Barrier) == barriers {
        assert!(Instant::now() < deadline, "the upload never reached its barrier");
        thread::yield_now();
    }
    if generational {
        // A does not wait for B: its put claims the rows anew.
        let rec = upload.join().unwrap();
        pause.release();
        let report = gc.join().unwrap().unwrap();
        assert!(report.deleted_chunks < chunks, "the shared rows were taken over: {report:?}");
        assert!(doomed.iter().all(|k| !nodes.objects.contains(k).unwrap()), "the claimed generations went");
        check(&nodes, &a, &b, &rec, &content);
    } else {
        // A waits on the locks B's GC holds, for as long as B is stopped.
        let since = Instant::now();
        while since.elapsed() < Duration::from_millis(500) {
            assert!(!upload.is_finished(), "A's upload went on while B's GC held the chunks' locks");
            thread::sleep(Duration::from_millis(20));
        }
        pause.release();
        let report = gc.join().unwrap().unwrap();
        assert_eq!(report.deleted_chunks, chunks, "{report:?}");
        let rec = upload.join().unwrap();
        check(&nodes, &a, &b, &rec, &content);
    }
}

fn check(nodes: &Nodes, a: &Store, b: &Store, rec: &FileRecord, content: &[u8]) {
    for node in [a, b] {
        assert!(read_all(node, &rec.id) == content, "the committed file differs from its content");
    }
    assert_clean(a);
    nodes.clock.advance(DAY);
    b.gc(true).unwrap();
    a.gc(true).unwrap();
    for node in [a, b] {
        assert!(read_all(node, &rec.id) == content, "a later GC took part of the file");
    }
    assert_clean(b);
}

#[test]
fn gc_on_one_node_and_the_same_content_on_the_other_over_the_twin() {
    for generational in [false, true] {
        gc_on_one_node_and_the_same_content_on_the_other(Shared::Memory, generational);
    }
}

#[test]
fn gc_on_one_node_and_the_same_content_on_the_other_over_postgres() {
    for generational in [false, true] {
        gc_on_one_node_and_the_same_content_on_the_other(Shared::Postgres, generational);
    }
}

/// Eight threads, four on each node, put the same 200 new chunks in
/// different orders: each chunk is new exactly once across both nodes,
/// and the store-wide counters count it once.
fn puts_on_two_nodes_count_each_new_chunk_once(shared: Shared, generational: bool) {
    let Some(nodes) = Nodes::new(shared, generational, "puts") else { return };
    let stores = [nodes.open(0).0, nodes.open(1).0];
    let news = put_the_same_chunks(&stores);
    assert_eq!(news, 200, "each chunk is new exactly once");
    for store in &stores {
        let st = store.stats().unwrap();
        assert_eq!((st.unique_chunks, st.unique_bytes), (200, 600_000));
    }
    let v = stores[1].verify(false).unwrap();
    assert!(v.is_clean(), "{v:?}");
    assert_eq!(v.objects, 200);
}

#[test]
fn puts_on_two_nodes_count_each_new_chunk_once_over_the_twin() {
    for generational in [false, true] {
        puts_on_two_nodes_count_each_new_chunk_once(Shared::Memory, generational);
    }
}

#[test]
fn puts_on_two_nodes_count_each_new_chunk_once_over_postgres() {
    for generational in [false, true] {
        puts_on_two_nodes_count_each_new_chunk_once(Shared::Postgres, generational);
    }
}

/// A node and a process that has the store alone never share it.
#[test]
fn nodes_and_an_exclusive_process_refuse_each_other() {
    let Some(url) = common::postgres::database("kinds") else { return };
    let node = PgMeta::open_with(&url, PgOptions { exclusive: false, ..PgOptions::default() }).unwrap();
    let err = PgMeta::open(&url).map(|_| ()).unwrap_err();
    assert!(matches!(err, depot::store::Error::Locked(_)), "{err}");
    let second = PgMeta::open_with(&url, PgOptions { exclusive: false, ..PgOptions::default() });
    assert!(second.is_ok(), "a second node joins");
    drop((node, second));
    let alone = PgMeta::open(&url).unwrap();
    let err = PgMeta::open_with(&url, PgOptions { exclusive: false, ..PgOptions::default() })
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, depot::store::Error::Locked(_)), "{err}");
    drop(alone);
}

/// Two nodes asking for the same server keys at once (token and link
/// signing): both get the same key, the one stored, whichever made it.
/// Only over PostgreSQL: in memory the window between a node's read and
/// its write is too short for the race to show without the lock.
fn two_nodes_agree_on_the_server_keys(shared: Shared) {
    let Some(nodes) = Nodes::new(shared, false, "keys") else { return };
    let stores = [nodes.open(0).0, nodes.open(1).0];
    let names: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
    let barrier = std::sync::Barrier::new(2);
    let got: Vec<Vec<[u8; 32]>> = thread::scope(|scope| {
        let handles: Vec<_> = stores
            .iter()
            .map(|store| {
                let (names, barrier) = (&names, &barrier);
                scope.spawn(move || {
                    names
                        .iter()
                        .map(|n| {
                            barrier.wait();
                            store.server_key(n).unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(got[0] == got[1], "the nodes hold different keys under one name");
    let fresh = nodes.open(1).0;
    assert!(names.iter().zip(&got[0]).all(|(n, k)| fresh.server_key(n).unwrap() == *k), "the stored keys");
}

#[test]
fn two_nodes_agree_on_the_server_keys_over_postgres() {
    two_nodes_agree_on_the_server_keys(Shared::Postgres);
}

/// A token revoked on node B is refused by node A, which had just checked
/// it, once `TOKEN_CACHE_TTL` has passed (A checks from its memory until
/// then, the bound the docs give); B refuses it at once.
fn a_token_revoked_on_one_node_is_refused_by_the_other_within_the_ttl(shared: Shared) {
    let Some(nodes) = Nodes::new(shared, false, "revoke") else { return };
    let ((a, _), (b, _)) = (nodes.open(0), nodes.open(1));
    let (rec, token) =
        a.issue_token(Tenant::default(), Scopes::parse(&["read"]).unwrap(), None, None).unwrap();
    let checked = |s: &Store| s.authenticate(&token).unwrap().map(|r| r.id);
    assert_eq!(checked(&a), Some(rec.id));
    assert_eq!(checked(&b), Some(rec.id));
    b.revoke_token(&rec.id).unwrap();
    assert_eq!(checked(&b), None, "the node that revoked it");
    assert_eq!(a.authenticate_cached(&token).map(|r| r.map(|r| r.id)), Some(Some(rec.id)), "A, from memory");
    nodes.clock.advance(TOKEN_CACHE_TTL - Duration::from_millis(1));
    assert_eq!(checked(&a), Some(rec.id), "A within the TTL");
    nodes.clock.advance(Duration::from_millis(1));
    assert_eq!(a.authenticate_cached(&token), None, "A's row is stale: the metadata must be read");
    assert_eq!(checked(&a), None, "A past the TTL");
}

#[test]
fn a_token_revoked_on_one_node_is_refused_by_the_other_within_the_ttl_over_the_twin() {
    a_token_revoked_on_one_node_is_refused_by_the_other_within_the_ttl(Shared::Memory);
}

#[test]
fn a_token_revoked_on_one_node_is_refused_by_the_other_within_the_ttl_over_postgres() {
    a_token_revoked_on_one_node_is_refused_by_the_other_within_the_ttl(Shared::Postgres);
}

/// A download on node A holds a delete made on node B: GC on B (past every
/// lease and grace) takes none of the file's chunks while A's reader row
/// lives, and A reads the file whole; once the row has run out, B's GC
/// finishes the delete and the chunks go.
fn a_download_on_one_node_holds_a_delete_on_the_other(shared: Shared) {
    let Some(nodes) = Nodes::new(shared, true, "reader") else { return };
    let ((a, _), (b, _)) = (nodes.open(0), nodes.open(1));
    let data = pseudo_random(300_000, 51);
    let rec = ingest(&a, "read.bin", &data);
    let chunks = a.stats().unwrap().unique_chunks;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (open, guard) = a.open_file(&rec.id).unwrap();
    b.delete_file(&View::All, &rec.id).unwrap();
    assert!(b.open_file(&rec.id).is_err(), "the file is gone at once");
    nodes.clock.advance(Duration::from_secs(1200)); // past leases and grace, not the reader row
    let report = b.gc(false).unwrap();
    assert_eq!((report.finished_deletes, report.deleted_chunks), (0, 0), "{report:?}");
    let parts: Vec<bytes::Bytes> =
        rt.block_on(a.read_range(&open, guard, 0, rec.size).try_collect()).expect("the download on A");
    assert!(parts.concat() == data, "the download on A differs from the file");

    nodes.clock.advance(Duration::from_secs(7200)); // the reader row ran out
    let report = b.gc(false).unwrap();
    assert_eq!(report.finished_deletes, 1, "{report:?}");
    nodes.clock.advance(DAY);
    let report = b.gc(false).unwrap();
    assert_eq!(report.deleted_chunks, chunks, "{report:?}");
    assert_clean(&a);
}

#[test]
fn a_download_on_one_node_holds_a_delete_on_the_other_over_the_twin() {
    a_download_on_one_node_holds_a_delete_on_the_other(Shared::Memory);
}

#[test]
fn a_download_on_one_node_holds_a_delete_on_the_other_over_postgres() {
    a_download_on_one_node_holds_a_delete_on_the_other(Shared::Postgres);
}

/// An append-only (tus) upload begun on node A goes on from node B (its
/// tail is a chunk both read), then A takes it back while B is still
/// appending: B can record nothing more, and the file is the source.
fn an_append_moves_between_nodes_and_fences_the_one_before(shared: Shared) {
    let Some(nodes) = Nodes::new(shared, true, "append") else { return };
    let ((a, _), (b, _)) = (nodes.open(0), nodes.open(1));
    let data = pseudo_random(100_000, 61);
    let new = NewStream {
        tenant: Tenant::default(),
        length: Some(data.len() as u64),
        name: "moved.bin".parse().unwrap(),
        declared_type: None,
        metadata: String::new(),
        partial: false,
    };
    let id = a.create_stream(new).unwrap().record.id;
    let mut on_a = a.begin_append(&id, 0).unwrap();
    on_a.push(&data[..30_000]).unwrap();
    on_a.finish(true).unwrap();
    let mut on_b = b.begin_append(&id, 30_000).unwrap();
    on_b.push(&data[30_000..60_000]).unwrap();
    on_b.persist().unwrap();
    on_b.push(&pseudo_random(20_000, 62)).unwrap();
    let mut again = a.begin_append(&id, 60_000).unwrap();
    let stale = on_b.finish(true).unwrap_err();
    assert!(matches!(stale, Error::TakenOver(_)), "{stale}");
    assert_eq!(b.stream_upload(&id).unwrap().stream.unwrap().offset, 60_000, "B moved the offset");
    again.push(&data[60_000..]).unwrap();
    let file = again.finish(true).unwrap().file.expect("the upload completed");
    assert!(read_all(&b, &file.id) == data, "the file differs from the source");
    assert_clean(&b);
}

#[test]
fn an_append_moves_between_nodes_and_fences_the_one_before_over_the_twin() {
    an_append_moves_between_nodes_and_fences_the_one_before(Shared::Memory);
}

#[test]
fn an_append_moves_between_nodes_and_fences_the_one_before_over_postgres() {
    an_append_moves_between_nodes_and_fences_the_one_before(Shared::Postgres);
}
