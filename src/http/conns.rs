//! Open connections under a cap (`limits.max_connections`, and never more
//! than the descriptor limit leaves). When every place is taken, a new
//! connection takes the place of the oldest idle one (no request in flight:
//! silent, half-sent headers, keep-alive between requests, HTTP/2 without
//! streams), as web servers reuse their keep-alive connections, so idle
//! connections cannot shut everyone else out. Only when every connection is
//! busy is a new one closed at once.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// How long a new connection waits for the place of the idle connection it
/// closes.
const TAKEOVER: Duration = Duration::from_millis(500);

/// The open connections.
pub struct Connections {
    places: Arc<Semaphore>,
    /// By order of arrival.
    open: Mutex<BTreeMap<u64, Arc<Shared>>>,
    next_id: AtomicU64,
}

/// What a connection's task and the cap share.
#[derive(Default)]
struct Shared {
    /// Requests in flight, from the call of the service to the end of the
    /// response body.
    busy: AtomicUsize,
    /// Told to close (once), to make room or at shutdown.
    told: AtomicBool,
    close: Notify,
}

impl Connections {
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            places: Arc::new(Semaphore::new(cap.max(1))),
            open: Mutex::default(),
            next_id: AtomicU64::new(0),
        })
    }

    /// A place for a new connection: at once under the cap; else the place
    /// of the oldest idle connection, which is told to close; `None` when
    /// every connection is busy.
    pub async fn admit(self: &Arc<Self>) -> Option<Place> {
        let permit = match self.places.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if !self.tell_idle(false) {
                    return None;
                }
                tokio::time::timeout(TAKEOVER, self.places.clone().acquire_owned()).await.ok()?.ok()?
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(Shared::default());
        self.lock().insert(id, shared.clone());
        Some(Place { conns: self.clone(), id, shared, _permit: permit })
    }

    /// Tells the oldest idle connection (`all`: every one) to close; whether
    /// there was one.
    fn tell_idle(&self, all: bool) -> bool {
        let mut told = false;
        for s in self.lock().values() {
            if s.busy.load(Ordering::Acquire) == 0 && !s.told.swap(true, Ordering::AcqRel) {
                s.close.notify_one();
                told = true;
                if !all {
                    break;
                }
            }
        }
        told
    }

    /// At shutdown: idle connections close now (busy ones finish their
    /// requests first).
    pub fn close_idle(&self) {
        self.tell_idle(true);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Shared>>> {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A connection's place under the cap, given back when dropped.
pub struct Place {
    conns: Arc<Connections>,
    id: u64,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
}

impl Place {
    /// Counts a request in flight until the guard is dropped: keep it in the
    /// response body ([`Held`]).
    pub fn busy(&self) -> Busy {
        self.shared.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.shared.clone())
    }

    /// Resolves when the connection is told to close while it has no
    /// request in flight. A connection told while busy (a request came in
    /// between) stays, and can be told again.
    ///
    /// Requests only start in the connection's own task (hyper calls the
    /// service while that task polls the connection), so a task that sees
    /// no request in flight here can drop the connection without cutting
    /// one off.
    pub async fn told_to_close(&self) {
        loop {
            self.shared.close.notified().await;
            if self.shared.busy.load(Ordering::Acquire) == 0 {
                return;
            }
            self.shared.told.store(false, Ordering::Release);
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.conns.lock().remove(&self.id);
    }
}

/// One request in flight on a connection.
pub struct Busy(Arc<Shared>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in flight until it
/// has been sent (or dropped).
pub struct Held {
    body: axum::body::Body,
    _busy: Busy,
}

impl Held {
    pub fn new(body: axum::body::Body, busy: Busy) -> Self {
        Self { body, _busy: busy }
    }
}

impl http_body::Body for Held {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_new_connection_takes_the_place_of_the_oldest_idle_one() {
        let conns = Connections::new(2);
        let a = conns.admit().await.unwrap();
        let b = conns.admit().await.unwrap();
        let busy = b.busy();
        // Full: A (idle, the oldest) is told to close; its task drops it.
        let a_task = tokio::spawn(async move {
            a.told_to_close().await;
        });
        let c = conns.admit().await.unwrap();
        a_task.await.unwrap();
        // Full and C is idle: C goes. Then only B, busy, is left: no place.
        let c_task = tokio::spawn(async move { c.told_to_close().await });
        let d = conns.admit().await.unwrap();
        c_task.await.unwrap();
        let d_busy = d.busy();
        assert!(conns.admit().await.is_none(), "every connection is busy");
        drop((busy, d_busy));
        conns.close_idle();
        tokio::time::timeout(Duration::from_secs(1), b.told_to_close()).await.unwrap();
    }
}
