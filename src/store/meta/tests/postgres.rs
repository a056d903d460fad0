//! The contract and PostgreSQL's own promises, on a real server (started
//! by the integration tests' harness; skipped without PostgreSQL unless
//! `DEPOT_SCALEOUT=1`).

#[path = "../../../../tests/common/postgres.rs"]
mod harness;

use super::super::postgres::SHARDS;
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
