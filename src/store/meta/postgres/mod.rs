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
//! `array_agg`, `SET LOCAL synchronous_commit`, `txid_current()`, session
//! advisory locks with one and two keys, exclusive and shared
//! (`pg_advisory_lock`, `pg_try_advisory_lock[_shared]`,
//! `pg_advisory_unlock[_all]`, `pg_advisory_xact_lock`), `lock_timeout` and
//! `idle_session_timeout`. PostgreSQL 14 or later has them all (the last is
//! the newest); a wire-compatible engine needs the same. TLS is not
//! supported yet (`sslmode=disable` or `prefer`).
//!
//! # The store's lock: one process, or several nodes
//!
//! Each `PgMeta` holds the store's advisory lock for its lifetime:
//! exclusively by default ([`PgMeta::open`]: a server alone), or shared,
//! as one of several nodes ([`PgMeta::open_with`] without `exclusive`: a
//! server with `storage.shared`); the two kinds refuse each other ([`Error::Locked`]). The
//! lock lives as long as its session: when the database restarts or the
//! connection drops, every call answers [`Error::Unavailable`] (HTTP 503
//! with `Retry-After`) until the lock is taken again, and if a process of
//! the other kind took it meanwhile, this one stays unavailable rather than
//! share the store. Connection-level failures of any call (SQLSTATE class
//! 08, the `57P0x` shutdown states, a closed connection, a pool timeout)
//! and a lock wait past its limit are [`Error::Unavailable`] too; the pool
//! replaces closed connections on its own.
//!
//! # Row locks
//!
//! The store's chunk-row, file and quota locks ([`super::locks`]) are
//! session advisory locks here, held by one connection of a separate lock
//! pool ([`locks::PgLocks`]); writes under them run on that connection, and
//! a holder that idles past [`LOCK_IDLE`] loses them with its session. So
//! they exclude across nodes. Each space maps onto at most 64 advisory
//! locks (the 256 chunk stripes four to one), so a session holds at most
//! 209 entries of the server's shared lock table
//! (`max_locks_per_transaction` × `max_connections` slots): with several
//! nodes, raise `max_locks_per_transaction` (say to 256).
//!
//! # Blocking
//!
//! The trait blocks; the driver (`tokio-postgres`, pooled by `deadpool`)
//! is async. `PgMeta` runs its own small runtime and each call sends its
//! work there and waits on a channel, so it may be called from any thread:
//! a blocking-pool thread, a plain thread, or even an async worker (where
//! the `postgres` crate's `block_on` would panic).

mod driver;
mod locks;
mod plan;

use std::collections::HashMap;
use std::future::Future;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime as PoolRuntime};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use self::driver::{block, db, pool_err};
#[cfg(test)]
pub(crate) use self::locks::LOCK_CLASS;
pub use self::locks::LOCK_IDLE;
use self::locks::{LOCK_POOL_SIZE, LOCK_WAIT, PgLocks, SCHEMA_LOCK_KEY, check_held, hold_lock, try_lock};
pub use self::plan::SHARDS;
use self::plan::{Plan, commit};
use super::paged::{Paged, scan_bounds, scan_rev_bounds};
use super::{Batch, Cf, Counter, KeyValue, KvIter, LocalLocks, MetaStore, SharedLocks, decode_counter};
use crate::store::error::{Error, Result};
use crate::store::meta_backend::redact_url;

/// The table layout this code reads and writes.
pub const PG_LAYOUT_VERSION: i32 = 1;
/// Rows a scan reads per query.
pub const PAGE: usize = 256;
/// Connections in the pool (each a PostgreSQL backend process).
const POOL_SIZE: usize = 16;

/// How [`PgMeta::open_with`] opens the store.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Take the store for this process alone (a server without
    /// `storage.shared`); without it, as one of several nodes, each of
    /// which shares the store's lock.
    pub exclusive: bool,
    /// See [`LOCK_IDLE`] (tests shorten it).
    pub lock_idle: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self { exclusive: true, lock_idle: LOCK_IDLE }
    }
}

/// The metadata in a PostgreSQL database.
pub struct PgMeta {
    /// Drives the pool's connections; `None` only while dropping.
    rt: Option<tokio::runtime::Runtime>,
    pool: Pool,
    /// Connections of lock sessions ([`PgLocks`]).
    lock_pool: Pool,
    locks: LocalLocks,
    lock_idle: Duration,
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
        Self::open_with(url, PgOptions::default())
    }

    /// [`PgMeta::open`] with options: as one of several nodes when not
    /// `exclusive` (refused, as [`Error::Locked`], while a process holds the
    /// store alone, and the other way round).
    ///
    /// # Errors
    /// As [`PgMeta::open`].
    pub fn open_with(url: &str, opts: PgOptions) -> Result<Self> {
        let shown = redact_url(url);
        let config: tokio_postgres::Config =
            url.parse().map_err(|e| Error::InvalidInput(format!("storage.meta `{shown}`: {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("depot-postgres")
            .enable_all()
            .build()?;
        let pool_of = |size: usize, recycling_method| {
            let mgr = Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method });
            Pool::builder(mgr)
                .max_size(size)
                .runtime(PoolRuntime::Tokio1)
                .wait_timeout(Some(Duration::from_secs(60)))
                .create_timeout(Some(Duration::from_secs(10)))
                .build()
                .map_err(|e| Error::Backend(format!("postgres connection pool: {e}").into()))
        };
        let pool = pool_of(POOL_SIZE, RecyclingMethod::Fast)?;
        // A lock session's connection goes back to the pool only after it
        // released its locks and limits, and is given up after any failure
        // (see `PgLocks`), so the pool need not clean it (`DISCARD ALL`
        // would cost a round trip per session).
        let lock_pool = pool_of(LOCK_POOL_SIZE, RecyclingMethod::Fast)?;
        let shared = !opts.exclusive;
        let at = |e: Error| match e {
            Error::Backend(m) => Error::Backend(format!("{m} (at {shown})").into()),
            Error::Unavailable(m) => Error::Unavailable(format!("{m} (at {shown})")),
            e => e,
        };
        let lock_config = config.clone();
        let session = block(rt.handle(), async move {
            let deadline = Instant::now() + LOCK_WAIT;
            let mut session = None;
            while !try_lock(&config, &mut session, shared).await? {
                if Instant::now() >= deadline {
                    return Err(Error::Locked(String::new()));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let (client, conn) = session.expect("a session holds the lock");
            // Nodes opening at once would race on the catalog.
            let create = format!(
                "BEGIN; SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY}); {} COMMIT;",
                create_tables()
            );
            client.batch_execute(&create).await.map_err(db)?;
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
        rt.spawn(hold_lock(lock_config, session, held.clone(), shared));
        Ok(Self {
            rt: Some(rt),
            pool,
            lock_pool,
            locks: LocalLocks::default(),
            lock_idle: opts.lock_idle,
            held,
        })
    }

    /// Runs `work` on the backend's runtime and waits for its answer.
    fn run<T, F>(&self, work: impl FnOnce(Pool) -> F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        self.check_held()?;
        block(self.handle(), work(self.pool.clone()))
    }

    fn check_held(&self) -> Result<()> {
        check_held(&self.held)
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.rt.as_ref().expect("runtime present until drop").handle()
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
            commit(&mut client, plan, durable).await
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

    fn local_locks(&self) -> &LocalLocks {
        &self.locks
    }

    fn clock_ms(&self) -> Result<Option<u64>> {
        self.run(|pool| async move {
            let client = pool.get().await.map_err(pool_err)?;
            let sql = "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint";
            let row = client.query_one(sql, &[]).await.map_err(db)?;
            Ok(Some(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)))
        })
    }

    fn shared_locks(&self) -> Result<Option<Box<dyn SharedLocks>>> {
        let session = PgLocks::open(self.handle(), &self.lock_pool, self.held.clone(), self.lock_idle)?;
        Ok(Some(Box::new(session)))
    }
}

#[cfg(test)]
mod tests {
    use super::summed;

    #[test]
    fn a_meta_value_is_its_base_plus_its_shards() {
        assert_eq!(summed(None, Some(vec![2, 3])), Some(5i64.to_le_bytes().to_vec()));
        assert_eq!(
            summed(Some(3i64.to_le_bytes().to_vec()), Some(vec![2])),
            Some(5i64.to_le_bytes().to_vec())
        );
        assert_eq!(summed(Some(b"raw".to_vec()), None), Some(b"raw".to_vec()));
    }
}
