//! The driver's side of [`PgMeta`](super::PgMeta): how its errors map onto
//! the store's, and the bridge from blocking callers to its runtime.

use std::future::Future;
use std::sync::mpsc;

use tokio_postgres::error::SqlState;

use crate::store::error::{Error, Result};

pub(super) fn db(e: tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(d) if *d.code() == SqlState::DISK_FULL => {
            Error::Io(std::io::Error::new(std::io::ErrorKind::StorageFull, d.message().to_string()))
        }
        Some(d) if connection_lost(d.code()) => Error::Unavailable(format!("postgres: {}", d.message())),
        Some(d) if *d.code() == SqlState::OUT_OF_MEMORY => Error::Unavailable(format!(
            "postgres: {} (its shared lock table is full: raise max_locks_per_transaction)",
            d.message()
        )),
        Some(d) if *d.code() == SqlState::LOCK_NOT_AVAILABLE => {
            Error::Unavailable(format!("postgres: waited too long for a lock ({})", d.message()))
        }
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
pub(super) fn retryable(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE)
}

pub(super) fn pool_err(e: deadpool_postgres::PoolError) -> Error {
    use deadpool_postgres::PoolError as P;
    match e {
        P::Backend(e) => db(e),
        // No connection could be made or freed in time: the server is down
        // or overwhelmed.
        e @ (P::Timeout(_) | P::Closed) => Error::Unavailable(format!("postgres connection pool: {e}")),
        e => Error::Backend(format!("postgres connection pool: {e}").into()),
    }
}

/// Sends `work` to the runtime behind `handle` and waits for its answer
/// on a plain channel, which may block any thread, an async one included.
pub(super) fn block<T, F>(handle: &tokio::runtime::Handle, work: F) -> Result<T>
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
