//! One writer per upload, for every resumable protocol (tus today): a
//! request that writes to an upload holds its slot; a newer request for
//! the same upload asks the holder to stop (it keeps what it received, as
//! tusd does) and takes over. In-process: across nodes, the store's epoch
//! fence does the same (a newer request on any node takes the upload over,
//! and the older one can record nothing more; see `store::append`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedMutexGuard, watch};

use super::ApiError;
use crate::store::UploadId;

/// How long a request waits for the one it interrupted to let go.
const TAKEOVER_WAIT: Duration = Duration::from_secs(10);

/// Per-upload request slots: a lock held by the request writing to the
/// upload, and a way to ask it to stop.
#[derive(Default)]
pub struct Slots(Mutex<HashMap<UploadId, Arc<Slot>>>);

struct Slot {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Bumped by a request that wants the upload: the holder stops.
    takeover: watch::Sender<u64>,
}

/// A request's hold on an upload. Dropping it lets the upload go and, when no
/// other request has the slot, removes the slot: the map holds only uploads
/// in use.
pub struct Held {
    guard: Option<OwnedMutexGuard<()>>,
    slot: Arc<Slot>,
    slots: Arc<Slots>,
    id: UploadId,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.guard.take();
        let mut m = self.slots.0.lock().unwrap_or_else(|p| p.into_inner());
        // Clones are made under this mutex: the map's and ours are the only
        // ones unless another request is on its way to the lock.
        if m.get(&self.id).is_some_and(|s| Arc::ptr_eq(s, &self.slot) && Arc::strong_count(s) == 2) {
            m.remove(&self.id);
        }
    }
}

impl Slots {
    fn slot(&self, id: &UploadId) -> Arc<Slot> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(*id)
            .or_insert_with(|| {
                Arc::new(Slot { lock: Arc::new(tokio::sync::Mutex::new(())), takeover: watch::channel(0).0 })
            })
            .clone()
    }

    /// Takes the upload: ends whatever request holds it and waits for it to
    /// let go. Returns the guard and a receiver that fires when a later
    /// request wants the upload in turn.
    pub async fn take(self: &Arc<Self>, id: &UploadId) -> Result<(Held, watch::Receiver<u64>), ApiError> {
        let slot = self.slot(id);
        let guard = match slot.lock.clone().try_lock_owned() {
            Ok(g) => g,
            Err(_) => {
                slot.takeover.send_modify(|n| *n += 1);
                tokio::time::timeout(TAKEOVER_WAIT, slot.lock.clone().lock_owned())
                    .await
                    .map_err(|_| ApiError::Locked("another request holds this upload; try again".into()))?
            }
        };
        let mut rx = slot.takeover.subscribe();
        rx.mark_unchanged();
        Ok((Held { guard: Some(guard), slot, slots: self.clone(), id: *id }, rx))
    }

    /// How many uploads have a slot (requests holding or waiting for them).
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
