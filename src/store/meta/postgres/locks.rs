//! Advisory locks on PostgreSQL: the store's own (one process alone, or
//! several nodes sharing it) and the row locks of [`PgLocks`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_postgres::NoTls;

use super::driver::{block, db, pool_err};
use super::plan::{Plan, commit};
use crate::store::error::{Error, Result};
use crate::store::meta::{Batch, LockSpace, SharedLocks};

/// The store's advisory lock: held exclusively by a process that has the
/// store to itself, shared by each of several nodes (so the two kinds
/// never mix).
pub(super) const LOCK_KEY: i64 = 0x6465_706f_745f_6d31; // "depot_m1"
/// The advisory lock that serializes creating the tables.
pub(super) const SCHEMA_LOCK_KEY: i64 = 0x6465_706f_745f_7331; // "depot_s1"
/// The first key of depot's two-key advisory locks (row locks, see
/// [`PgLocks`]); the second is the lock key within its space. (Two-key and
/// one-key advisory locks never conflict.)
pub(crate) const LOCK_CLASS: i32 = 0x6470_0000; // "dp" ‖ space
/// Advisory locks per space at most: a space's keys map onto `key % 64`
/// (the chunk space's 256 stripes onto 64, four each; coarser keys
/// exclude at least as much), so that a session holds at most 209 entries
/// of PostgreSQL's shared lock table, which has `max_locks_per_transaction`
/// (64) × `max_connections` (100) slots by default; a full table is
/// [`Error::Unavailable`] (raise `max_locks_per_transaction`).
const SHARED_KEYS: u16 = 64;
/// Connections for lock sessions, apart from the pool for everything else,
/// so that a lock holder never waits for a connection a waiter holds.
pub(super) const LOCK_POOL_SIZE: usize = 32;
/// How long a lock session may sit idle holding locks before the server
/// ends it (`idle_session_timeout`): a paused process loses its locks, and
/// its later writes through them fail.
pub const LOCK_IDLE: Duration = Duration::from_secs(60);
/// The longest wait for a lock another session holds (`lock_timeout`):
/// past it, the call answers [`Error::Unavailable`].
const LOCK_WAIT_LIMIT: Duration = Duration::from_secs(180);
/// How long open waits for a previous holder's lock (a restarted server
/// whose predecessor's session is still closing).
pub(super) const LOCK_WAIT: Duration = Duration::from_secs(5);
/// How often a process that lost its lock session tries to take it again.
const RELOCK_EVERY: Duration = Duration::from_millis(250);

/// A session holding the store's advisory lock: its client, and the task
/// driving its connection, which ends when the session does.
pub(super) type LockSession = (tokio_postgres::Client, tokio::task::JoinHandle<()>);

/// Tries the store's advisory lock once on `session`'s connection (in
/// `shared` mode for a node), connecting first when there is none or it
/// closed (so that retries reuse one connection). `true`: the session
/// holds the lock.
pub(super) async fn try_lock(
    config: &tokio_postgres::Config,
    session: &mut Option<LockSession>,
    shared: bool,
) -> Result<bool> {
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
    let sql =
        if shared { "SELECT pg_try_advisory_lock_shared($1)" } else { "SELECT pg_try_advisory_lock($1)" };
    let row = client.query_one(sql, &[&LOCK_KEY]).await.map_err(db)?;
    Ok(row.get::<_, bool>(0))
}

/// Keeps the store's advisory lock for as long as the process runs: when
/// its session ends, marks the lock lost (calls answer
/// [`Error::Unavailable`]) and takes it again, every [`RELOCK_EVERY`],
/// for as long as it takes. If another process took the store in between,
/// this one stays unavailable rather than share it.
pub(super) async fn hold_lock(
    config: tokio_postgres::Config,
    first: LockSession,
    held: Arc<AtomicBool>,
    shared: bool,
) {
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
            match try_lock(&config, &mut session, shared).await {
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

/// A lock session: one connection of the lock pool holding session
/// advisory locks `(LOCK_CLASS | space, key % SHARED_KEYS)`, taken in
/// ascending order by one statement (`unnest` yields the sorted keys in
/// order, and each row takes its lock before the next). Writes under the locks run on this
/// connection, so they commit only while it holds them. The session
/// idles at most `lock_idle` with locks held (`idle_session_timeout`,
/// PostgreSQL 14 or later): a paused holder's connection is then ended,
/// its locks go to the next waiter, and its later writes fail. After any
/// error the connection is given up (closing it releases everything) and
/// the session answers [`Error::Unavailable`].
pub(super) struct PgLocks {
    handle: tokio::runtime::Handle,
    /// Whether the process holds the store's lock (see [`hold_lock`]).
    held: Arc<AtomicBool>,
    lock_idle: Duration,
    client: Option<deadpool_postgres::Object>,
    /// No statement has run on the session yet: the first sets its limits.
    fresh: bool,
}

/// [`Error::Unavailable`] while the process does not hold the store's lock.
pub(super) fn check_held(held: &AtomicBool) -> Result<()> {
    if held.load(Ordering::Acquire) {
        Ok(())
    } else {
        Err(Error::Unavailable("postgres: taking the store's lock again after its session ended".into()))
    }
}

impl PgLocks {
    /// A session on a connection of `pool` (the lock pool), driven by the
    /// runtime behind `handle`.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when no connection can be had.
    pub(super) fn open(
        handle: &tokio::runtime::Handle,
        pool: &Pool,
        held: Arc<AtomicBool>,
        lock_idle: Duration,
    ) -> Result<Self> {
        check_held(&held)?;
        let pool = pool.clone();
        let client = block(handle, async move { pool.get().await.map_err(pool_err) })?;
        Ok(Self { handle: handle.clone(), held, lock_idle, client: Some(client), fresh: true })
    }

    /// Runs `work` on the session's connection; gives the connection up
    /// when it fails.
    fn on_session<T, F>(
        &mut self,
        work: impl FnOnce(deadpool_postgres::Object) -> F + Send + 'static,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = (deadpool_postgres::Object, Result<T>)> + Send + 'static,
    {
        check_held(&self.held)?;
        let client = self.client.take().ok_or_else(|| {
            Error::Unavailable("postgres: a lock session failed earlier; its locks are gone".into())
        })?;
        let (client, r) = block(&self.handle, async move { Ok(work(client).await) })?;
        match r {
            Ok(v) => {
                self.client = Some(client);
                Ok(v)
            }
            Err(e) => {
                drop(deadpool_postgres::Object::take(client));
                Err(e)
            }
        }
    }

    /// `SELECT count(f(class, k)) FROM unnest('{keys}')` over the keys'
    /// advisory locks ([`SHARED_KEYS`], ascending): integers only, so the
    /// statement can go by the simple protocol with the limits.
    fn each_key(f: &str, space: LockSpace, keys: &[u16]) -> String {
        let mut shared: Vec<u16> = keys.iter().map(|k| k % SHARED_KEYS).collect();
        shared.sort_unstable();
        shared.dedup();
        let list: Vec<String> = shared.iter().map(u16::to_string).collect();
        format!(
            "SELECT count({f}({}, k)) FROM unnest('{{{}}}'::int4[]) AS k;",
            LOCK_CLASS | space.index() as i32,
            list.join(",")
        )
    }
}

impl SharedLocks for PgLocks {
    fn take(&mut self, space: LockSpace, keys: &[u16]) -> Result<()> {
        let mut sql = String::new();
        if std::mem::take(&mut self.fresh) {
            // Idle in a transaction too: a holder paused between a batch's
            // statements loses its locks the same way.
            let idle = self.lock_idle.as_millis().max(1);
            sql = format!(
                "SET idle_session_timeout = {idle}; SET idle_in_transaction_session_timeout = {idle}; \
                 SET lock_timeout = {};",
                LOCK_WAIT_LIMIT.as_millis()
            );
        }
        sql.push_str(&Self::each_key("pg_advisory_lock", space, keys));
        self.on_session(move |client| async move {
            let r = client.batch_execute(&sql).await.map_err(db);
            (client, r)
        })
    }

    fn release(&mut self, space: LockSpace, keys: &[u16]) -> Result<()> {
        let sql = Self::each_key("pg_advisory_unlock", space, keys);
        self.on_session(move |client| async move {
            let r = client.batch_execute(&sql).await.map_err(db);
            (client, r)
        })
    }

    fn write(&mut self, batch: Batch, durable: bool) -> Result<()> {
        let plan = Plan::of(batch);
        if plan.is_empty() {
            return Ok(());
        }
        self.on_session(move |mut client| async move {
            let r = commit(&mut client, plan, durable).await;
            (client, r)
        })
    }
}

impl Drop for PgLocks {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else { return };
        // Back to the pool without locks, its limits back to the server's
        // defaults, or given up.
        let unlocked = block(&self.handle, async move {
            let sql = "SELECT pg_advisory_unlock_all(); RESET idle_session_timeout; \
                       RESET idle_in_transaction_session_timeout; RESET lock_timeout;";
            let r = client.batch_execute(sql).await;
            Ok((client, r))
        });
        match unlocked {
            Ok((client, Ok(()))) => drop(client),
            Ok((client, Err(_))) => drop(deadpool_postgres::Object::take(client)),
            // The task ended without an answer (the runtime is shutting
            // down): the connection closed with it.
            Err(_) => {}
        }
    }
}
