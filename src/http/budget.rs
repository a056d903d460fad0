//! The memory budget of request bodies (`limits.max_buffered`): a body the
//! server holds in memory (a chunk PUT, a seed piece, a JSON body, the
//! buffer of a streamed upload) reserves its size before a byte is read,
//! waiting for room. A body that goes quiet while other requests wait gives
//! back the part it has not received yet, so that stalled clients cannot
//! hold the budget against everyone else; it takes that part back before
//! it reads on.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;

/// How long a body may send nothing before it gives back what it has not
/// received to requests waiting for room (checked this often while it
/// stays quiet).
pub const QUIET: Duration = Duration::from_secs(1);

/// The budget: `limits.max_buffered` in KiB permits.
pub struct MemoryBudget {
    sem: Arc<Semaphore>,
    /// The whole budget, in KiB.
    kib: u32,
    /// Requests waiting for room now.
    waiting: AtomicUsize,
    /// `limits.body_idle_timeout`: also the longest a body that gave back
    /// its share waits to take it back.
    idle: Duration,
}

impl MemoryBudget {
    pub fn new(bytes: u64, idle: Duration) -> Arc<Self> {
        // A semaphore holds fewer than 2^61 permits; a u32 of KiB is 4 TiB.
        let kib = bytes.div_ceil(1024).clamp(1, u64::from(u32::MAX)) as u32;
        Arc::new(Self {
            sem: Arc::new(Semaphore::new(kib as usize)),
            kib,
            waiting: AtomicUsize::new(0),
            idle,
        })
    }

    /// `bytes` in KiB permits, at least one, at most the whole budget.
    fn kib_of(&self, bytes: u64) -> u32 {
        bytes.div_ceil(1024).clamp(1, u64::from(self.kib)) as u32
    }

    /// Reserves `bytes`, waiting for room. A reservation larger than the
    /// whole budget takes all of it.
    ///
    /// # Errors
    /// 503 once the budget is closed (the server is shutting down).
    pub async fn reserve(self: &Arc<Self>, bytes: u64) -> Result<Reservation, ApiError> {
        let kib = self.kib_of(bytes);
        let permit = self.acquire(kib).await?;
        Ok(Reservation { budget: self.clone(), permit, full: kib })
    }

    async fn acquire(&self, kib: u32) -> Result<OwnedSemaphorePermit, ApiError> {
        let closed = |_| ApiError::Unavailable("shutting down".into());
        match self.sem.clone().try_acquire_many_owned(kib) {
            Ok(p) => return Ok(p),
            Err(tokio::sync::TryAcquireError::Closed) => return Err(closed(())),
            Err(tokio::sync::TryAcquireError::NoPermits) => {}
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let got = self.sem.clone().acquire_many_owned(kib).await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        got.map_err(|_| closed(()))
    }

    /// Bytes of the budget no request holds now.
    pub fn free(&self) -> u64 {
        self.sem.available_permits() as u64 * 1024
    }

    /// Refuses every reservation from now on, waiting ones included (503).
    pub fn close(&self) {
        self.sem.close();
    }
}

/// What reading a body yields: bytes, its end, or an error.
pub trait BodyPiece {
    fn has_bytes(&self) -> bool;
}

/// A data stream's item.
impl<E> BodyPiece for Option<Result<bytes::Bytes, E>> {
    fn has_bytes(&self) -> bool {
        matches!(self, Some(Ok(_)))
    }
}

/// A multipart field's chunk.
impl<E> BodyPiece for Result<Option<bytes::Bytes>, E> {
    fn has_bytes(&self) -> bool {
        matches!(self, Ok(Some(_)))
    }
}

/// A share of the budget, given back when dropped.
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    permit: OwnedSemaphorePermit,
    /// The whole share, in KiB.
    full: u32,
}

impl Reservation {
    /// Awaits `next`, the next piece of a body of which `held` bytes are in
    /// memory so far. While `next` stays pending for [`QUIET`] with other
    /// requests waiting for room, the reservation shrinks to `held`; when
    /// `next` brings bytes, the reservation first grows back to its whole
    /// share, waiting at most `limits.body_idle_timeout`.
    ///
    /// # Errors
    /// 408 when the share does not come back in time (as for a body that
    /// went idle), 503 when the server is shutting down.
    pub async fn next<T: BodyPiece>(
        &mut self,
        held: u64,
        next: impl Future<Output = T>,
    ) -> Result<T, ApiError> {
        let mut next = std::pin::pin!(next);
        let quiet = QUIET.min(self.budget.idle);
        let item = loop {
            tokio::select! {
                item = &mut next => break item,
                () = tokio::time::sleep(quiet) => {
                    if self.budget.waiting.load(Ordering::Relaxed) > 0 {
                        self.shrink_to(held);
                    }
                }
            }
        };
        if item.has_bytes() {
            self.grow().await?;
        }
        Ok(item)
    }

    /// Gives back all but `held` bytes (at least 1 KiB is kept).
    fn shrink_to(&mut self, held: u64) {
        let keep = self.budget.kib_of(held) as usize;
        let have = self.permit.num_permits();
        if have > keep {
            drop(self.permit.split(have - keep));
        }
    }

    /// Takes the whole share back after [`Self::shrink_to`].
    async fn grow(&mut self) -> Result<(), ApiError> {
        let have = self.permit.num_permits() as u32;
        if have >= self.full {
            return Ok(());
        }
        let more = tokio::time::timeout(self.budget.idle, self.budget.acquire(self.full - have))
            .await
            .map_err(|_| {
                ApiError::RequestTimeout(
                    "the body stalled and its memory went to others; no room came back in time".into(),
                )
            })??;
        self.permit.merge(more);
        Ok(())
    }

    /// KiB held now (tests).
    #[cfg(test)]
    fn held_kib(&self) -> usize {
        self.permit.num_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_quiet_body_gives_back_its_share_only_while_others_wait() {
        // Quiet after 500 ms (the idle timeout, when shorter than QUIET).
        let quiet = Duration::from_millis(500);
        let budget = MemoryBudget::new(8 << 20, quiet);
        let mut a = budget.reserve(6 << 20).await.unwrap();
        // Quiet, nobody waits: the share stays.
        let (tx, rx) = tokio::sync::oneshot::channel::<Option<bytes::Bytes>>();
        let reading = tokio::spawn(async move {
            let r = a.next(1 << 20, rx).await;
            (a, r)
        });
        tokio::time::sleep(quiet * 3).await;
        assert_eq!(budget.free(), 2 << 20);
        // Someone waits for 4 MiB: within QUIET, A keeps only what it holds.
        let b = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.reserve(4 << 20).await })
        };
        tokio::time::sleep(quiet + Duration::from_millis(100)).await;
        let b = b.await.unwrap().unwrap();
        assert_eq!(b.held_kib(), 4 << 10);
        // A's next piece comes: it waits for its share until B is done.
        tx.send(Some(bytes::Bytes::from_static(b"more"))).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!reading.is_finished());
        drop(b);
        let (a, r) = reading.await.unwrap();
        r.unwrap().unwrap();
        assert_eq!(a.held_kib(), 6 << 10);
    }

    #[tokio::test]
    async fn a_share_that_does_not_come_back_in_time_is_408() {
        let quiet = Duration::from_millis(300);
        let budget = MemoryBudget::new(4 << 20, quiet);
        let mut a = budget.reserve(4 << 20).await.unwrap();
        let b = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.reserve(3 << 20).await })
        };
        let late = async {
            tokio::time::sleep(quiet * 2).await;
            Some(Ok::<_, ()>(bytes::Bytes::from_static(b"late")))
        };
        let r = a.next(0, late).await;
        // B took the room while A was quiet and holds it past the timeout.
        let held = b.await.unwrap().unwrap();
        assert_eq!(r.unwrap_err().status(), axum::http::StatusCode::REQUEST_TIMEOUT);
        drop(held);
        budget.close();
        assert_eq!(
            budget.reserve(1).await.err().unwrap().status(),
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
