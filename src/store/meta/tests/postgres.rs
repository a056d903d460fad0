//! The contract and PostgreSQL's own promises, on a real server (started
//! by the integration tests' harness; skipped without PostgreSQL unless
//! `DEPOT_SCALEOUT=1`).

#[path = "../../../../tests/common/postgres.rs"]
mod harness;

use super::super::postgres::{LOCK_CLASS, LOCK_IDLE, SHARDS};
use super::*;

fn open(test: &str) -> Option<(String, PgMeta)> {
    let url = harness::database(test)?;
    let m = PgMeta::open(&url).unwrap();
    Some((url, m))
}

#[test]
fn postgres_meets_the_contract() {
    let Some((_, m)) = open("contract") else { return };
    contract(&m);
}

/// The database's clock, which nodes keep their deadlines on: the
/// server's time (on this machine, the wall clock's, within a second).
#[test]
fn postgres_tells_its_clock() {
    use crate::store::Clock as _;
    let Some((_, m)) = open("clock") else { return };
    let db = m.clock_ms().unwrap().expect("PostgreSQL has a clock");
    let wall = crate::store::SystemClock.now_ms();
    assert!(db.abs_diff(wall) < 1_000, "database {db} ms, wall {wall} ms");
    assert_eq!(MemMeta::new().clock_ms().unwrap(), None);
}

#[test]
fn postgres_counters_match_rocksdb() {
    let Some((_, m)) = open("counters") else { return };
    assert_eq!(counter_semantics(&m), counter_semantics(&MemMeta::new()));
}

#[test]
fn counter_adds_spread_over_shards_and_sum() {
    let Some((url, m)) = open("shards") else { return };
    for _ in 0..64 {
        let mut b = Batch::default();
        b.add(Counter::StoredBytes, 3);
        m.write(b, false).unwrap();
    }
    assert_eq!(m.counter(Counter::StoredBytes).unwrap(), 192);
    let rows: i64 = harness::sql(&url, "SELECT count(*) FROM counters").parse().unwrap();
    assert!(rows > 1 && rows <= i64::from(SHARDS), "{rows} shard rows");
    // A repair overwrites the sum and drops the shards.
    let mut b = Batch::default();
    b.set_counter(Counter::StoredBytes, 5);
    m.write(b, true).unwrap();
    assert_eq!(m.counter(Counter::StoredBytes).unwrap(), 5);
    assert_eq!(harness::sql(&url, "SELECT count(*) FROM counters"), "0");
}

#[test]
fn a_failed_batch_leaves_nothing() {
    let Some((url, m)) = open("atomic") else { return };
    let mut b = Batch::default();
    b.put(Cf::Chunks, b"before", b"1");
    b.add(Counter::Files, 1);
    m.write(b, true).unwrap();
    // The server refuses one row of the next batch: none of it may land.
    harness::sql(
        &url,
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN IF NEW.k = 'bad'::bytea THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON files FOR EACH ROW EXECUTE FUNCTION refuse();",
    );
    let mut b = Batch::default();
    b.put(Cf::Chunks, b"new", b"1");
    b.delete(Cf::Chunks, b"before");
    b.add(Counter::Files, 1);
    b.put(Cf::Meta, b"note", b"x");
    b.put(Cf::Files, b"bad", b"1");
    let err = m.write(b, true).unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    assert_eq!(m.get(Cf::Chunks, b"new").unwrap(), None);
    assert_eq!(m.get(Cf::Chunks, b"before").unwrap(), Some(b"1".to_vec()));
    assert_eq!(m.get(Cf::Meta, b"note").unwrap(), None);
    assert_eq!(m.counter(Counter::Files).unwrap(), 1);
    // The pool's connection is usable after the rollback.
    let mut b = Batch::default();
    b.put(Cf::Files, b"good", b"1");
    m.write(b, true).unwrap();
    assert_eq!(m.get(Cf::Files, b"good").unwrap(), Some(b"1".to_vec()));
}

#[test]
fn a_reopened_backend_sees_what_was_written_and_one_process_holds_it() {
    let Some((url, m)) = open("reopen") else { return };
    let mut b = Batch::default();
    b.put(Cf::Uploads, b"r1", b"session");
    b.add(Counter::UniqueBytes, 7);
    m.write(b, false).unwrap();
    m.flush().unwrap();
    let second = PgMeta::open(&url).map(|_| ()).unwrap_err();
    assert!(matches!(second, crate::store::Error::Locked(_)), "{second}");
    drop(m);
    let m = PgMeta::open(&url).unwrap();
    assert_eq!(m.get(Cf::Uploads, b"r1").unwrap(), Some(b"session".to_vec()));
    assert_eq!(m.counter(Counter::UniqueBytes).unwrap(), 7);
}

#[test]
fn calls_work_from_any_thread_even_an_async_worker() {
    let Some((_, m)) = open("threads") else { return };
    let m = std::sync::Arc::new(m);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let on_worker = m.clone();
    // The sync `postgres` crate panics here ("Cannot start a runtime from
    // within a runtime"); this backend must not.
    let n = rt.block_on(async move {
        let mut b = Batch::default();
        b.add(Counter::Files, 2);
        on_worker.write(b, true).unwrap();
        let blocking = on_worker.clone();
        tokio::task::spawn_blocking(move || blocking.counter(Counter::Files).unwrap()).await.unwrap()
    });
    assert_eq!(n, 2);
    let plain = m.clone();
    assert_eq!(std::thread::spawn(move || plain.counter(Counter::Files).unwrap()).join().unwrap(), 2);
    // Dropped inside a runtime: no panic either.
    rt.block_on(async move { drop(m) });
}

#[test]
fn errors_never_show_the_password() {
    let url = "postgres://depot:hunter2@127.0.0.1:1/none?connect_timeout=2";
    let err = PgMeta::open(url).map(|_| ()).unwrap_err().to_string();
    assert!(!err.contains("hunter2") && err.contains("depot:***@127.0.0.1:1"), "{err}");
}

fn node(url: &str, lock_idle: std::time::Duration) -> PgMeta {
    PgMeta::open_with(url, super::super::PgOptions { exclusive: false, lock_idle }).unwrap()
}

/// Takes `keys` of `space` on `m` on a thread; the receiver hears when
/// they are held, and the thread holds them until told to stop.
fn taker(
    m: std::sync::Arc<PgMeta>,
    space: LockSpace,
    keys: Vec<u16>,
) -> (std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        let mut l = Locked::new(&*m);
        l.take(space, keys).unwrap();
        held_tx.send(()).unwrap();
        let _ = stop_rx.recv();
    });
    (held_rx, stop_tx, t)
}

const SHORT: std::time::Duration = std::time::Duration::from_millis(400);
const LONG: std::time::Duration = std::time::Duration::from_secs(20);

#[test]
fn row_locks_exclude_across_nodes_and_pass_on_release() {
    let Some(url) = harness::database("row_locks") else { return };
    let (a, b) = (node(&url, LOCK_IDLE), std::sync::Arc::new(node(&url, LOCK_IDLE)));
    let mut la = Locked::new(&a);
    la.take(LockSpace::Files, [3]).unwrap();
    la.take(LockSpace::Chunks, [5, 200]).unwrap();
    let (held, stop, t) = taker(b.clone(), LockSpace::Chunks, vec![200, 7]);
    assert!(held.recv_timeout(SHORT).is_err(), "B took a chunk lock A holds");
    // A write under the locks lands; releasing the chunk space lets B in
    // while A keeps its file lock.
    let mut batch = Batch::default();
    batch.put(Cf::Chunks, b"x", b"1");
    la.write(batch, false).unwrap();
    la.release(LockSpace::Chunks).unwrap();
    held.recv_timeout(LONG).expect("B takes the lock A released");
    assert_eq!(b.get(Cf::Chunks, b"x").unwrap(), Some(b"1".to_vec()));
    let mut lb = Locked::new(&*b);
    let (files, stop_files, t_files) = taker(b.clone(), LockSpace::Files, vec![3]);
    assert!(files.recv_timeout(SHORT).is_err(), "B took the file lock A holds");
    drop(la);
    files.recv_timeout(LONG).expect("B takes the file lock once A drops its guard");
    lb.take(LockSpace::Quotas, [1]).unwrap();
    drop(lb);
    for s in [stop, stop_files] {
        s.send(()).unwrap();
    }
    t.join().unwrap();
    t_files.join().unwrap();
}

/// The database ends the session holding A's locks (a network cut, an
/// operator, a restart): B gets them at once, and A can no longer write
/// under them, nor take more on that guard.
#[test]
fn a_holder_that_lost_its_session_cannot_write() {
    let Some(url) = harness::database("lost_session") else { return };
    let (a, b) = (node(&url, LOCK_IDLE), std::sync::Arc::new(node(&url, LOCK_IDLE)));
    let mut la = Locked::new(&a);
    la.take(LockSpace::Chunks, [7]).unwrap();
    let (held, stop, t) = taker(b.clone(), LockSpace::Chunks, vec![7]);
    assert!(held.recv_timeout(SHORT).is_err(), "B took a lock A holds");
    let class = LOCK_CLASS | LockSpace::Chunks.index() as i32;
    let ended = harness::sql(
        &url,
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks \
             WHERE locktype = 'advisory' AND granted AND classid = {class} AND objid = 7 AND objsubid = 2"
        ),
    );
    assert_eq!(ended.trim(), "1", "A's lock session");
    held.recv_timeout(LONG).expect("B takes the lock once A's session is gone");
    let mut batch = Batch::default();
    batch.put(Cf::Chunks, b"late", b"1");
    let err = la.write(batch, false).unwrap_err();
    assert!(matches!(err, crate::store::Error::Unavailable(_)), "{err}");
    assert!(la.take(LockSpace::Quotas, [0]).is_err(), "a lost session takes nothing more");
    assert_eq!(b.get(Cf::Chunks, b"late").unwrap(), None, "nothing of A's write landed");
    stop.send(()).unwrap();
    t.join().unwrap();
}

/// A holder that idles past its limit with locks held (a paused process)
/// loses them: B gets them, and A's write afterwards fails.
#[test]
fn a_paused_holder_loses_its_locks_after_the_idle_limit() {
    let Some(url) = harness::database("idle_holder") else { return };
    let a = node(&url, std::time::Duration::from_secs(1));
    let b = std::sync::Arc::new(node(&url, LOCK_IDLE));
    let mut la = Locked::new(&a);
    la.take(LockSpace::Chunks, [9]).unwrap();
    let started = std::time::Instant::now();
    let (held, stop, t) = taker(b.clone(), LockSpace::Chunks, vec![9]);
    held.recv_timeout(LONG).expect("B takes the lock once A has idled past its limit");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900), "B did not wait for A's limit");
    let mut batch = Batch::default();
    batch.put(Cf::Chunks, b"paused", b"1");
    assert!(la.write(batch, false).is_err(), "a paused holder's write after its limit");
    assert_eq!(b.get(Cf::Chunks, b"paused").unwrap(), None);
    stop.send(()).unwrap();
    t.join().unwrap();
}
