//! [`PgMeta`]: the metadata on PostgreSQL, for several servers sharing one
//! store (`storage.meta = "postgres://…"`). It owns the SQL, the table
//! layout, the connection pool and the runtime that drives it; like
//! [`RocksMeta`](super::RocksMeta) it knows nothing of what the rows mean.
//!
//! # Tables (layout version [`PG_LAYOUT_VERSION`], in `depot_schema`)
//!
//! | table | columns | holds |
//! |---|---|---|
//! | one per [`Cf`], named [`Cf::name`] (`chunks`, `gcq`, `files`, `manifests`, `uploads`, `meta`, `tenants`, `auth`) | `k bytea primary key, v bytea not null` | the family's pairs, values in depot's own encodings |
//! | `counters` | `name bytea, shard smallint, v bigint`, key `(name, shard)` | additions to the [`Cf::Meta`] value at `name`, spread over [`SHARDS`] rows |
//! | `depot_schema` | `id boolean primary key, version integer` | one row: the layout version |
//!
//! Tables are created on open (`CREATE TABLE IF NOT EXISTS`) in the
//! connection's `search_path`: give depot its own database or schema. A
//! layout made by another version is refused ([`Error::SchemaMismatch`]).
//!
//! # Counters
//!
//! [`Op::Add`] never reads: it adds to one of [`SHARDS`] rows of its name,
//! chosen at random, so concurrent writers (on any node) rarely meet on a
//! row. A read of a [`Cf::Meta`] key (get, multi-get, scan) sums its shards
//! onto the `meta` value (the base a [`Op::Put`] or [`Op::SetCounter`] set,
//! 0 when absent) and returns the total as 8 bytes of i64 LE, exactly what
//! RocksDB's merge operator yields; a put or delete of the key drops its
//! shards. A shard overflowing i64 is an error (RocksDB wraps).
//!
//! # Writes, reads, scans
//!
//! A [`Batch`] is reduced to each key's last write (later writes win, adds
//! accumulate) and applied in one transaction with array statements
//! (`unnest`, `= ANY`): a few round trips whatever its size, nothing of it
//! visible or kept if any statement fails. Keys are written in sorted
//! order, so concurrent batches take row locks in one order; a batch the
//! server still aborts as a deadlock victim or serialization failure is
//! tried again whole (3 tries). `durable = false` commits with
//! `SET LOCAL synchronous_commit = off`. Multi-gets are one query. Scans
//! read pages of [`PAGE`] rows by keyset pagination on the primary key
//! (`k > last ORDER BY k LIMIT n`), never an unbounded result; pages are
//! separate statements, so a scan is not a snapshot (as with
//! [`MemMeta`](super::MemMeta)).
//!
//! # What PostgreSQL must provide
//!
//! `bytea` compared bytewise (its only ordering), B-tree primary keys,
//! `INSERT … ON CONFLICT DO UPDATE`, `unnest` of arrays, `= ANY(array)`,
//! `array_agg`, `SET LOCAL synchronous_commit`, `txid_current()` and
//! session advisory locks (`pg_try_advisory_lock`). PostgreSQL 9.5 or
//! later has them all; a wire-compatible engine needs the same. TLS is not
//! supported yet (`sslmode=disable` or `prefer`).
//!
//! # One process at a time, for now
//!
//! The store still serializes chunk rows with in-process stripe locks, so
//! one `PgMeta` holds a session advisory lock for its lifetime and a second
//! opener gets [`Error::Locked`]. The lock lives as long as its session:
//! when the database restarts or the connection drops, every call answers
//! [`Error::Unavailable`] (HTTP 503 with `Retry-After`) until the lock is
//! taken again, and if another process took it meanwhile, this one stays
//! unavailable rather than share the store. Connection-level failures of
//! any call (SQLSTATE class 08, the `57P0x` shutdown states, a closed
//! connection, a pool timeout) are [`Error::Unavailable`] too; the pool
//! replaces closed connections on its own. Row locks, generation keys,
//! fenced leases and reader rows (the cross-node protocols of the
//! scale-out design) are not part of this backend yet.
//!
//! # Blocking
//!
//! The trait blocks; the driver (`tokio-postgres`, pooled by `deadpool`)
//! is async. `PgMeta` runs its own small runtime and each call sends its
//! work there and waits on a channel, so it may be called from any thread:
//! a blocking-pool thread, a plain thread, or even an async worker (where
//! the `postgres` crate's `block_on` would panic).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime as PoolRuntime};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::paged::{Paged, scan_bounds, scan_rev_bounds};
use super::{Batch, Cf, Counter, KeyValue, KvIter, MetaStore, Op, decode_counter};
use crate::store::error::{Error, Result};
use crate::store::meta_backend::redact_url;

/// The table layout this code reads and writes.
pub const PG_LAYOUT_VERSION: i32 = 1;
/// Rows a scan reads per query.
pub const PAGE: usize = 256;
/// Rows each counter's additions are spread over.
pub const SHARDS: i16 = 16;
/// Connections in the pool (each a PostgreSQL backend process).
const POOL_SIZE: usize = 16;
/// The advisory lock that keeps a second process off the store.
const LOCK_KEY: i64 = 0x6465_706f_745f_6d31; // "depot_m1"
/// How long open waits for a previous holder's lock (a restarted server
/// whose predecessor's session is still closing).
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// How often a process that lost its lock session tries to take it again.
const RELOCK_EVERY: Duration = Duration::from_millis(250);
/// Attempts at a batch the server aborted as a deadlock victim.
const WRITE_TRIES: u32 = 3;

fn db(e: tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(d) if *d.code() == SqlState::DISK_FULL => {
            Error::Io(std::io::Error::new(std::io::ErrorKind::StorageFull, d.message().to_string()))
        }
        Some(d) if connection_lost(d.code()) => Error::Unavailable(format!("postgres: {}", d.message())),
        Some(d) => Error::Backend(format!("postgres: {} ({})", d.message(), d.code().code()).into()),
        // No server error: the connection closed, or could not be made or
        // used (an I/O error underneath), unless it is a driver error such
        // as a type mismatch, which is ours.
        None if e.is_closed() || io_underneath(&e) => Error::Unavailable(format!("postgres: {e}")),
        None => Error::Backend(format!("postgres: {e}").into()),
    }
}

/// SQLSTATEs that mean the server ended or refused the session, not the
/// statement: class 08 (connection exception) and the shutdown states
/// `57P01` (admin shutdown), `57P02` (crash shutdown), `57P03` (cannot
/// connect now: starting up or shutting down). PostgreSQL manual,
/// appendix A.
fn connection_lost(code: &SqlState) -> bool {
    code.code().starts_with("08")
        || [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW].contains(code)
}

fn io_underneath(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = e.source();
    while let Some(s) = cur {
        if s.is::<std::io::Error>() {
            return true;
        }
        cur = s.source();
    }
    false
}

/// Whether a failed transaction may succeed when tried again unchanged.
fn retryable(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE)
}

fn pool_err(e: deadpool_postgres::PoolError) -> Error {
    use deadpool_postgres::PoolError as P;
    match e {
        P::Backend(e) => db(e),
        // No connection could be made or freed in time: the server is down
        // or overwhelmed.
        e @ (P::Timeout(_) | P::Closed) => Error::Unavailable(format!("postgres connection pool: {e}")),
        e => Error::Backend(format!("postgres connection pool: {e}").into()),
    }
}

/// The metadata in a PostgreSQL database.
pub struct PgMeta {
    /// Drives the pool's connections; `None` only while dropping.
    rt: Option<tokio::runtime::Runtime>,
    pool: Pool,
    /// Whether this process holds the store's advisory lock now. The lock
    /// lives as long as its session: when that ends (the server restarted,
    /// the network dropped it), [`hold_lock`] takes it again, and until it
    /// has, every call fails with [`Error::Unavailable`], since another
    /// process may have taken the store meanwhile.
    held: Arc<AtomicBool>,
}

impl PgMeta {
    /// Connects to the database at `url` (`postgres://user:pass@host:port/db`),
    /// takes the store's advisory lock and creates the tables if absent.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `url` does not parse; [`Error::Locked`]
    /// when another process holds the store; [`Error::SchemaMismatch`] for
    /// tables of another layout version; [`Error::Unavailable`] when the
    /// server cannot be reached, [`Error::Backend`] when it refuses
    /// (messages name the URL with its password redacted).
    pub fn open(url: &str) -> Result<Self> {
        let shown = redact_url(url);
        let config: tokio_postgres::Config =
            url.parse().map_err(|e| Error::InvalidInput(format!("storage.meta `{shown}`: {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("depot-postgres")
            .enable_all()
            .build()?;
        let mgr = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(mgr)
            .max_size(POOL_SIZE)
            .runtime(PoolRuntime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(60)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| Error::Backend(format!("postgres connection pool: {e}").into()))?;
        let at = |e: Error| match e {
            Error::Backend(m) => Error::Backend(format!("{m} (at {shown})").into()),
            Error::Unavailable(m) => Error::Unavailable(format!("{m} (at {shown})")),
            e => e,
        };
        let lock_config = config.clone();
        let session = block(rt.handle(), async move {
            let deadline = Instant::now() + LOCK_WAIT;
            let mut session = None;
            while !try_lock(&config, &mut session).await? {
                if Instant::now() >= deadline {
                    return Err(Error::Locked(String::new()));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let (client, conn) = session.expect("a session holds the lock");
            client.batch_execute(&create_tables()).await.map_err(db)?;
            let found: i32 =
                client.query_one("SELECT version FROM depot_schema", &[]).await.map_err(db)?.get(0);
            if found != PG_LAYOUT_VERSION {
                return Err(Error::SchemaMismatch {
                    found: format!("postgres layout {found}"),
                    expected: format!("postgres layout {PG_LAYOUT_VERSION}"),
                });
            }
            Ok((client, conn))
        })
        .map_err(|e| match e {
            Error::Locked(_) => Error::Locked(shown.clone()),
            e => at(e),
        })?;
        let held = Arc::new(AtomicBool::new(true));
        rt.spawn(hold_lock(lock_config, session, held.clone()));
        Ok(Self { rt: Some(rt), pool, held })
    }

    /// Runs `work` on the backend's runtime and waits for its answer.
    fn run<T, F>(&self, work: impl FnOnce(Pool) -> F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        if !self.held.load(Ordering::Acquire) {
            return Err(Error::Unavailable(
                "postgres: taking the store's lock again after its session ended".into(),
            ));
        }
        let rt = self.rt.as_ref().expect("runtime present until drop");
        block(rt.handle(), work(self.pool.clone()))
    }

    /// Up to [`PAGE`] pairs of `cf` within the bounds, in the scan's order.
    fn page(&self, cf: Cf, lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>, rev: bool) -> Result<Vec<KeyValue>> {
        let mut params: Vec<Vec<u8>> = Vec::new();
        let mut range = |col: &str| {
            let mut conds = Vec::new();
            for (b, incl, excl) in [(lo, ">=", ">"), (hi, "<=", "<")] {
                match b {
                    Bound::Included(v) | Bound::Excluded(v) => {
                        params.push(v.clone());
                        let op = if matches!(b, Bound::Included(_)) { incl } else { excl };
                        conds.push(format!("{col} {op} ${}", params.len()));
                    }
                    Bound::Unbounded => {}
                }
            }
            if conds.is_empty() { "TRUE".to_string() } else { conds.join(" AND ") }
        };
        let dir = if rev { "DESC" } else { "ASC" };
        let sql = if cf == Cf::Meta {
            let (on_k, on_name) = (range("k"), range("name"));
            format!(
                "SELECT ks.k, m.v, (SELECT array_agg(c.v) FROM counters c WHERE c.name = ks.k) \
                 FROM (SELECT k FROM ( \
                   (SELECT k FROM meta WHERE {on_k} ORDER BY k {dir} LIMIT {PAGE}) \
                   UNION \
                   (SELECT DISTINCT name AS k FROM counters WHERE {on_name} ORDER BY k {dir} LIMIT {PAGE}) \
                 ) u ORDER BY k {dir} LIMIT {PAGE}) ks \
                 LEFT JOIN meta m ON m.k = ks.k ORDER BY ks.k {dir}"
            )
        } else {
            format!("SELECT k, v FROM {} WHERE {} ORDER BY k {dir} LIMIT {PAGE}", cf.name(), range("k"))
        };
        self.run(|pool| async move {
            let client = pool.get().await.map_err(pool_err)?;
            let stmt = client.prepare_cached(&sql).await.map_err(db)?;
            let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            let rows = client.query(&stmt, &refs).await.map_err(db)?;
            Ok(rows
                .iter()
                .filter_map(|r| {
                    let k: Vec<u8> = r.get(0);
                    let v = if cf == Cf::Meta { summed(r.get(1), r.get(2)) } else { Some(r.get(1)) };
                    v.map(|v| (k.into_boxed_slice(), v.into_boxed_slice()))
                })
                .collect())
        })
    }

    /// The values of `keys` in [`Cf::Meta`], counters summed, in `keys` order.
    fn meta_values(&self, keys: Vec<Vec<u8>>) -> Result<Vec<Option<Vec<u8>>>> {
        self.run(|pool| async move {
            let client = pool.get().await.map_err(pool_err)?;
            let stmt = client
                .prepare_cached(
                    "SELECT q.k, m.v, (SELECT array_agg(c.v) FROM counters c WHERE c.name = q.k) \
                     FROM unnest($1::bytea[]) AS q(k) LEFT JOIN meta m ON m.k = q.k",
                )
                .await
                .map_err(db)?;
            let rows = client.query(&stmt, &[&keys]).await.map_err(db)?;
            let mut found: HashMap<Vec<u8>, Vec<u8>> = HashMap::with_capacity(rows.len());
            for r in rows {
                if let Some(v) = summed(r.get(1), r.get(2)) {
                    found.insert(r.get(0), v);
                }
            }
            Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
        })
    }
}

impl Drop for PgMeta {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics on an async thread;
        // shutting it down in the background never does. Its connections
        // close with it (and the advisory lock with the session).
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// A session holding the store's advisory lock: its client, and the task
/// driving its connection, which ends when the session does.
type LockSession = (tokio_postgres::Client, tokio::task::JoinHandle<()>);

/// Tries the store's advisory lock once on `session`'s connection,
/// connecting first when there is none or it closed (so that retries reuse
/// one connection). `true`: the session holds the lock.
async fn try_lock(config: &tokio_postgres::Config, session: &mut Option<LockSession>) -> Result<bool> {
    if session.as_ref().is_none_or(|(client, _)| client.is_closed()) {
        let (client, conn) = config.connect(NoTls).await.map_err(db)?;
        let conn = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "postgres lock session ended");
            }
        });
        *session = Some((client, conn));
    }
    let (client, _) = session.as_ref().expect("connected above");
    let row = client.query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY]).await.map_err(db)?;
    Ok(row.get::<_, bool>(0))
}

/// Keeps the store's advisory lock for as long as the process runs: when
/// its session ends, marks the lock lost (calls answer
/// [`Error::Unavailable`]) and takes it again, every [`RELOCK_EVERY`],
/// for as long as it takes. If another process took the store in between,
/// this one stays unavailable rather than share it.
async fn hold_lock(config: tokio_postgres::Config, first: LockSession, held: Arc<AtomicBool>) {
    let (mut _client, mut conn) = first;
    loop {
        let _ = (&mut conn).await;
        held.store(false, Ordering::Release);
        tracing::warn!(
            "the PostgreSQL session holding the store's lock ended; answering 503 until it is taken again"
        );
        let (mut told, mut session) = (false, None);
        loop {
            tokio::time::sleep(RELOCK_EVERY).await;
            match try_lock(&config, &mut session).await {
                Ok(true) => break,
                Ok(false) if !told => {
                    told = true;
                    tracing::error!("another process holds the store's lock now; this one stays unavailable");
                }
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "postgres still unreachable"),
            }
        }
        (_client, conn) = session.expect("a session holds the lock");
        held.store(true, Ordering::Release);
        tracing::info!("took the store's lock again; serving");
    }
}

/// Sends `work` to the runtime behind `handle` and waits for its answer
/// on a plain channel, which may block any thread, an async one included.
fn block<T, F>(handle: &tokio::runtime::Handle, work: F) -> Result<T>
where
    T: Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(work.await);
    });
    rx.recv().map_err(|_| Error::Task("the PostgreSQL task stopped without an answer".into()))?
}

/// A [`Cf::Meta`] value from its `meta` row and its counter shards.
fn summed(base: Option<Vec<u8>>, shards: Option<Vec<i64>>) -> Option<Vec<u8>> {
    match shards {
        None => base,
        Some(s) => {
            let start = base.as_deref().map_or(0, decode_counter);
            Some(s.into_iter().fold(start, i64::wrapping_add).to_le_bytes().to_vec())
        }
    }
}

fn create_tables() -> String {
    let mut sql = String::from(
        "CREATE TABLE IF NOT EXISTS depot_schema \
           (id boolean PRIMARY KEY DEFAULT true CHECK (id), version integer NOT NULL);\n\
         CREATE TABLE IF NOT EXISTS counters \
           (name bytea NOT NULL, shard smallint NOT NULL, v bigint NOT NULL, PRIMARY KEY (name, shard));\n",
    );
    for cf in Cf::ALL {
        sql.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {} (k bytea PRIMARY KEY, v bytea NOT NULL);\n",
            cf.name()
        ));
    }
    sql.push_str(&format!(
        "INSERT INTO depot_schema (version) VALUES ({PG_LAYOUT_VERSION}) ON CONFLICT (id) DO NOTHING;"
    ));
    sql
}

/// What a [`Cf::Meta`] key ends up as after a batch.
#[derive(Debug, Clone, PartialEq)]
enum MetaWrite {
    /// A put (`Some`) or delete (`None`): replaces the value, drops shards.
    Set(Option<Vec<u8>>),
    /// Only additions: a delta for one shard.
    Add(i64),
}

/// A batch reduced to each key's last write: what [`PgMeta::write`] applies.
#[derive(Debug, Default, Clone)]
struct Plan {
    /// Per family (but [`Cf::Meta`]): key → value, or `None` to delete.
    kv: BTreeMap<usize, BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
    meta: BTreeMap<Vec<u8>, MetaWrite>,
}

impl Plan {
    fn of(batch: Batch) -> Self {
        let mut p = Plan::default();
        for op in batch.into_ops() {
            match op {
                Op::Put { cf: Cf::Meta, key, value } => p.set_meta(key.into(), Some(value.into())),
                Op::Delete { cf: Cf::Meta, key } => p.set_meta(key.into(), None),
                Op::Put { cf, key, value } => {
                    p.kv.entry(cf.index()).or_default().insert(key.into(), Some(value.into()));
                }
                Op::Delete { cf, key } => {
                    p.kv.entry(cf.index()).or_default().insert(key.into(), None);
                }
                Op::SetCounter { counter, value } => {
                    p.set_meta(counter.key().to_vec(), Some(value.to_le_bytes().to_vec()))
                }
                Op::Add { key, delta } => {
                    let w = p.meta.entry(key.into()).or_insert(MetaWrite::Add(0));
                    *w = match w {
                        MetaWrite::Add(d) => MetaWrite::Add(d.wrapping_add(delta)),
                        // After a put or delete, the sum is known: fold it in.
                        MetaWrite::Set(base) => {
                            let v = base.as_deref().map_or(0, decode_counter).wrapping_add(delta);
                            MetaWrite::Set(Some(v.to_le_bytes().to_vec()))
                        }
                    };
                }
            }
        }
        p
    }

    fn set_meta(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.meta.insert(key, MetaWrite::Set(value));
    }

    fn is_empty(&self) -> bool {
        self.kv.is_empty() && self.meta.is_empty()
    }

    /// Applies the plan inside the transaction `tx`.
    async fn apply(self, tx: &tokio_postgres::Transaction<'_>) -> Result<(), tokio_postgres::Error> {
        let mut meta_kv = BTreeMap::new();
        let (mut reset, mut names, mut shards, mut deltas) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (k, w) in self.meta {
            match w {
                MetaWrite::Set(v) => {
                    reset.push(k.clone());
                    meta_kv.insert(k, v);
                }
                MetaWrite::Add(d) => {
                    names.push(k);
                    shards.push(rand::random_range(0..SHARDS));
                    deltas.push(d);
                }
            }
        }
        if !reset.is_empty() {
            tx.execute("DELETE FROM counters WHERE name = ANY($1::bytea[])", &[&reset]).await?;
        }
        if !names.is_empty() {
            tx.execute(
                "INSERT INTO counters (name, shard, v) \
                 SELECT * FROM unnest($1::bytea[], $2::int2[], $3::int8[]) \
                 ON CONFLICT (name, shard) DO UPDATE SET v = counters.v + EXCLUDED.v",
                &[&names, &shards, &deltas],
            )
            .await?;
        }
        let families = self.kv.into_iter().map(|(i, t)| (Cf::ALL[i], t));
        for (cf, writes) in families.chain(std::iter::once((Cf::Meta, meta_kv))) {
            let (mut keys, mut values, mut gone) = (Vec::new(), Vec::new(), Vec::new());
            for (k, v) in writes {
                match v {
                    Some(v) => {
                        keys.push(k);
                        values.push(v);
                    }
                    None => gone.push(k),
                }
            }
            let t = cf.name();
            if !gone.is_empty() {
                let sql = format!("DELETE FROM {t} WHERE k = ANY($1::bytea[])");
                tx.execute(&sql, &[&gone]).await?;
            }
            if !keys.is_empty() {
                let sql = format!(
                    "INSERT INTO {t} (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
                     ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
                );
                tx.execute(&sql, &[&keys, &values]).await?;
            }
        }
        Ok(())
    }
}

impl MetaStore for PgMeta {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.multi_get(cf, &[key])?.pop().flatten())
    }

    fn multi_get(&self, cf: Cf, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
        if cf == Cf::Meta {
            return self.meta_values(keys);
        }
        let sql = format!("SELECT k, v FROM {} WHERE k = ANY($1::bytea[])", cf.name());
        self.run(|pool| async move {
            let client = pool.get().await.map_err(pool_err)?;
            let stmt = client.prepare_cached(&sql).await.map_err(db)?;
            let rows = client.query(&stmt, &[&keys]).await.map_err(db)?;
            let found: HashMap<Vec<u8>, Vec<u8>> = rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
            Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
        })
    }

    fn scan<'a>(&'a self, cf: Cf, prefix: &'a [u8], start: Option<&'a [u8]>) -> KvIter<'a> {
        Paged::boxed(scan_bounds(prefix, start), false, PAGE, move |lo, hi, rev| self.page(cf, lo, hi, rev))
    }

    fn scan_rev<'a>(&'a self, cf: Cf, prefix: &'a [u8], before: Option<&'a [u8]>) -> KvIter<'a> {
        Paged::boxed(scan_rev_bounds(prefix, before), true, PAGE, move |lo, hi, rev| {
            self.page(cf, lo, hi, rev)
        })
    }

    fn counter(&self, counter: Counter) -> Result<i64> {
        Ok(self.get(Cf::Meta, counter.key())?.map(|b| decode_counter(&b)).unwrap_or(0))
    }

    fn write(&self, batch: Batch, durable: bool) -> Result<()> {
        let plan = Plan::of(batch);
        if plan.is_empty() {
            return Ok(());
        }
        self.run(|pool| async move {
            let mut client = pool.get().await.map_err(pool_err)?;
            let mut tries = 0;
            loop {
                tries += 1;
                let attempt = async {
                    let tx = client.transaction().await?;
                    if !durable {
                        tx.batch_execute("SET LOCAL synchronous_commit = off").await?;
                    }
                    plan.clone().apply(&tx).await?;
                    tx.commit().await
                };
                match attempt.await {
                    Ok(()) => return Ok(()),
                    // Keys are written in sorted order, so writers rarely
                    // deadlock; when the server says one did (or that a
                    // serialization failed), the whole batch is tried again.
                    Err(e) if tries < WRITE_TRIES && retryable(&e) => continue,
                    Err(e) => return Err(db(e)),
                }
            }
        })
    }

    fn flush(&self) -> Result<()> {
        // Commits without synchronous_commit are durable once a later
        // commit's WAL flush covers them. A statement that takes a
        // transaction id commits a record, and waits for its flush.
        self.run(|pool| async move {
            let client = pool.get().await.map_err(pool_err)?;
            client.batch_execute("SELECT txid_current()").await.map_err(db)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_keeps_each_keys_last_write_and_folds_adds() {
        let mut b = Batch::default();
        b.put(Cf::Files, b"a", b"1");
        b.delete(Cf::Files, b"a");
        b.put(Cf::Files, b"b", b"1");
        b.put(Cf::Files, b"b", b"2");
        b.add_at(b"t", 2);
        b.add_at(b"t", 3);
        b.put(Cf::Meta, b"s", &7i64.to_le_bytes());
        b.add_at(b"s", 1);
        b.delete(Cf::Meta, b"d");
        b.add_at(b"d", -4);
        b.add_at(b"z", 5);
        b.add_at(b"z", -5);
        let p = Plan::of(b);
        let files = &p.kv[&Cf::Files.index()];
        assert_eq!(files[&b"a"[..]], None);
        assert_eq!(files[&b"b"[..]], Some(b"2".to_vec()));
        assert_eq!(p.meta[&b"t"[..]], MetaWrite::Add(5));
        assert_eq!(p.meta[&b"s"[..]], MetaWrite::Set(Some(8i64.to_le_bytes().to_vec())));
        assert_eq!(p.meta[&b"d"[..]], MetaWrite::Set(Some((-4i64).to_le_bytes().to_vec())));
        // A zero sum is still written: RocksDB's merge leaves an 8-byte 0.
        assert_eq!(p.meta[&b"z"[..]], MetaWrite::Add(0));
        assert_eq!(summed(None, Some(vec![2, 3])), Some(5i64.to_le_bytes().to_vec()));
        assert_eq!(summed(Some(b"raw".to_vec()), None), Some(b"raw".to_vec()));
    }
}
