//! [`Faulty`]: faults on demand in front of any object store, for tests
//! that drive crashes and races deterministically (STYLE: cross-cutting
//! behaviour is a wrapper implementing the same trait).
//!
//! - Fail the Nth call of an operation from now ([`Faulty::fail_nth`]), or
//!   every call while set ([`Faulty::fail_always`]): the call does nothing
//!   and returns an error, as a process killed just before it would leave
//!   things.
//! - Pause before the next delete ([`Faulty::pause_next_delete`]): the
//!   deleting thread stops with its ids in hand until the test releases it,
//!   so the test can act at exactly that point (a commit of the same
//!   content, say) and then let the delete go on.
//! - Count calls per operation ([`Faulty::calls`]).

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{ObjectEntry, ObjectStore, lock};
use crate::store::id::ChunkId;

/// An operation of [`ObjectStore`], as the fault hooks name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Put,
    Replace,
    Get,
    Contains,
    Delete,
    List,
    Quarantine,
    Barrier,
    SyncAll,
    SweepTemp,
}

#[derive(Default)]
struct Hooks {
    calls: HashMap<Op, u64>,
    /// Call numbers (per operation, counted from the wrapper's creation)
    /// that fail.
    fail_at: HashSet<(Op, u64)>,
    fail_always: HashSet<Op>,
    pause: Option<(Sender<Vec<ChunkId>>, Receiver<()>)>,
}

/// Faults on demand in front of any object store.
pub struct Faulty {
    inner: Arc<dyn ObjectStore>,
    hooks: Mutex<Hooks>,
}

/// The test's end of a pause set by [`Faulty::pause_next_delete`]. Dropping
/// it releases the delete too.
pub struct Pause {
    reached: Receiver<Vec<ChunkId>>,
    release: Sender<()>,
}

impl Pause {
    /// Waits until a delete reaches the pause; returns the ids it is about
    /// to delete, or `None` if none arrives within `timeout`.
    pub fn wait(&self, timeout: Duration) -> Option<Vec<ChunkId>> {
        self.reached.recv_timeout(timeout).ok()
    }

    /// Lets the paused delete go on.
    pub fn release(self) {
        let _ = self.release.send(());
    }
}

impl Faulty {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Faulty { inner, hooks: Mutex::new(Hooks::default()) }
    }

    /// Makes the `n`th call of `op` from now (1 = the next) fail.
    pub fn fail_nth(&self, op: Op, n: u64) {
        let mut h = lock(&self.hooks);
        let at = h.calls.get(&op).copied().unwrap_or(0) + n.max(1);
        h.fail_at.insert((op, at));
    }

    /// Makes every call of `op` fail (`true`) or pass through (`false`).
    pub fn fail_always(&self, op: Op, on: bool) {
        let mut h = lock(&self.hooks);
        if on {
            h.fail_always.insert(op);
        } else {
            h.fail_always.remove(&op);
        }
    }

    /// Makes every delete fail (`true`) or pass through (`false`).
    pub fn fail_deletes(&self, on: bool) {
        self.fail_always(Op::Delete, on);
    }

    /// Clears every armed failure and pause.
    pub fn heal(&self) {
        let mut h = lock(&self.hooks);
        h.fail_at.clear();
        h.fail_always.clear();
        h.pause = None;
    }

    /// Stops the next delete before it deletes anything, until the returned
    /// handle releases it (or is dropped).
    pub fn pause_next_delete(&self) -> Pause {
        let (reached_tx, reached) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        lock(&self.hooks).pause = Some((reached_tx, release_rx));
        Pause { reached, release }
    }

    /// How many times `op` was called (failed calls included).
    pub fn calls(&self, op: Op) -> u64 {
        lock(&self.hooks).calls.get(&op).copied().unwrap_or(0)
    }

    /// How many times [`ObjectStore::sync_all`] was called.
    pub fn sync_all_calls(&self) -> u64 {
        self.calls(Op::SyncAll)
    }

    /// Counts a call of `op` and fails it when a hook says so.
    fn enter(&self, op: Op) -> io::Result<()> {
        let mut h = lock(&self.hooks);
        let n = h.calls.entry(op).or_insert(0);
        *n += 1;
        let n = *n;
        if h.fail_always.contains(&op) || h.fail_at.remove(&(op, n)) {
            return Err(io::Error::other(format!("injected fault: {op:?} call {n}")));
        }
        Ok(())
    }
}

impl ObjectStore for Faulty {
    fn put_if_absent(&self, id: &ChunkId, parts: &[&[u8]]) -> io::Result<bool> {
        self.enter(Op::Put)?;
        self.inner.put_if_absent(id, parts)
    }

    fn replace(&self, id: &ChunkId, parts: &[&[u8]]) -> io::Result<()> {
        self.enter(Op::Replace)?;
        self.inner.replace(id, parts)
    }

    fn get(&self, id: &ChunkId) -> io::Result<Option<Vec<u8>>> {
        self.enter(Op::Get)?;
        self.inner.get(id)
    }

    fn get_into(&self, id: &ChunkId, buf: &mut Vec<u8>) -> io::Result<bool> {
        self.enter(Op::Get)?;
        self.inner.get_into(id, buf)
    }

    fn get_range(&self, id: &ChunkId, start: u64, len: usize) -> io::Result<Option<Vec<u8>>> {
        self.enter(Op::Get)?;
        self.inner.get_range(id, start, len)
    }

    fn get_head_and_range(
        &self,
        id: &ChunkId,
        head: usize,
        start: u64,
        len: usize,
    ) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.enter(Op::Get)?;
        self.inner.get_head_and_range(id, head, start, len)
    }

    fn contains(&self, id: &ChunkId) -> io::Result<bool> {
        self.enter(Op::Contains)?;
        self.inner.contains(id)
    }

    fn delete_many(&self, ids: &[ChunkId]) -> io::Result<usize> {
        // The pause is taken out first, so that only one delete stops, and
        // the lock is not held while it waits.
        let pause = lock(&self.hooks).pause.take();
        if let Some((reached, release)) = pause {
            let _ = reached.send(ids.to_vec());
            let _ = release.recv();
        }
        self.enter(Op::Delete)?;
        self.inner.delete_many(ids)
    }

    fn list(&self, prefix: u8, start_after: Option<&ChunkId>, limit: usize) -> io::Result<Vec<ObjectEntry>> {
        self.enter(Op::List)?;
        self.inner.list(prefix, start_after, limit)
    }

    fn quarantine(&self, id: &ChunkId) -> io::Result<bool> {
        self.enter(Op::Quarantine)?;
        self.inner.quarantine(id)
    }

    fn barrier(&self) -> io::Result<()> {
        self.enter(Op::Barrier)?;
        self.inner.barrier()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.enter(Op::SyncAll)?;
        self.inner.sync_all()
    }

    fn sweep_temp(&self, age: Duration) -> io::Result<usize> {
        self.enter(Op::SweepTemp)?;
        self.inner.sweep_temp(age)
    }
}
