//! The two locks a backup ([`super::backup`]) takes for writing, and what
//! it must not overlap takes for reading ([`crate::store::Store::backup`]
//! has the why).

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

#[derive(Default)]
pub(super) struct Holds {
    /// Held by every deletion of objects, packs or upload directories (a
    /// GC run, a put's clean-up of loose objects it re-stored in a pack)
    /// and, for writing, by a backup from its checkpoint to its last link.
    deletes: RwLock<()>,
    /// Held (after the session's lock) from an upload record's change to
    /// the removal of the tail files or directory it no longer names; for
    /// writing, by a backup through its checkpoint and its copy of
    /// `uploads/`. A tail file written before its record needs no hold: a
    /// record is read only as far as it says, and a tail rewritten at an
    /// unchanged base keeps its recorded bytes as they were.
    tails: RwLock<()>,
}

impl Holds {
    pub(super) fn deletes(&self) -> RwLockReadGuard<'_, ()> {
        self.deletes.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// `None` at once while a backup holds (or waits for) `deletes`.
    pub(super) fn try_deletes(&self) -> Option<RwLockReadGuard<'_, ()>> {
        match self.deletes.try_read() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    pub(super) fn tails(&self) -> RwLockReadGuard<'_, ()> {
        self.tails.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A backup's: no deletion until it is dropped.
    pub(super) fn exclude_deletes(&self) -> RwLockWriteGuard<'_, ()> {
        self.deletes.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// A backup's: no upload record changes until it is dropped.
    pub(super) fn exclude_tails(&self) -> RwLockWriteGuard<'_, ()> {
        self.tails.write().unwrap_or_else(PoisonError::into_inner)
    }
}
