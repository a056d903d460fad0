//! [`Faulty`]: faults on demand in front of any object store, for tests
//! that drive crashes and races deterministically (STYLE: cross-cutting
//! behaviour is a wrapper implementing the same trait).
//!
//! - Fail the Nth call of an operation from now ([`Faulty::fail_nth`]), or
//!   every call while set ([`Faulty::fail_always`]): the call does nothing
//!   and returns an error, as a process killed just before it would leave
//!   things.
//! - Pause before the next put, delete or barrier ([`Faulty::pause_next`]):
//!   the calling thread stops with its keys in hand until the test releases
//!   it (or forever: a process frozen, or dead, at that point),
//!   so the test can act at exactly that point (a commit of the same
//!   content, a GC run past a writer's claim) and then let the call go on.
//! - Count calls per operation ([`Faulty::calls`]); a put counts once per
//!   object, whether it came alone or in a [`ObjectStore::put_many`].
//!
//! Everything else, [`ObjectStore::generational`] included, is forwarded:
//! the wrapper behaves as the store it wraps.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{ObjectEntry, ObjectKey, ObjectStore, lock};

/// An operation of [`ObjectStore`], as the fault hooks name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// One object written by [`ObjectStore::put_if_absent`] or
    /// [`ObjectStore::put_many`].
    Put,
    Replace,
    /// A blocking read: `get`, `get_into`, `get_range`,
    /// `get_head_and_range`.
    Get,
    /// A read from memory alone: `get_cached`, `get_head_and_range_cached`
    /// (a failed one answers `None`, as one the kernel's caches could not).
    GetCached,
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
    /// Armed pauses: the next call of the operation stops there.
    pauses: HashMap<Op, (Sender<Vec<ObjectKey>>, Receiver<()>)>,
}

/// Faults on demand in front of any object store.
pub struct Faulty {
    inner: Arc<dyn ObjectStore>,
    hooks: Mutex<Hooks>,
}

/// The test's end of a pause set by [`Faulty::pause_next`]. Dropping it
/// releases the paused call too.
pub struct Pause {
    reached: Receiver<Vec<ObjectKey>>,
    release: Sender<()>,
}

impl Pause {
    /// Waits until a call reaches the pause; returns the keys it is about
    /// to write or delete, or `None` if none arrives within `timeout`.
    pub fn wait(&self, timeout: Duration) -> Option<Vec<ObjectKey>> {
        self.reached.recv_timeout(timeout).ok()
    }

    /// Lets the paused call go on.
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
        h.pauses.clear();
    }

    /// Stops the next call of `op` ([`Op::Put`]: a `put_if_absent` or a
    /// `put_many`; [`Op::Get`]: any read; [`Op::Delete`]; [`Op::Barrier`],
    /// which has no keys)
    /// before it does anything, until the returned handle releases it (or
    /// is dropped). Other operations are not paused.
    pub fn pause_next(&self, op: Op) -> Pause {
        let (reached_tx, reached) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        lock(&self.hooks).pauses.insert(op, (reached_tx, release_rx));
        Pause { reached, release }
    }

    /// [`Faulty::pause_next`] for the next delete.
    pub fn pause_next_delete(&self) -> Pause {
        self.pause_next(Op::Delete)
    }

    /// Stops here when a pause is armed for `op`. The pause is taken out
    /// first, so that only one call stops, and the lock is not held while
    /// it waits.
    fn pause_point(&self, op: Op, keys: &[ObjectKey]) {
        let pause = lock(&self.hooks).pauses.remove(&op);
        if let Some((reached, release)) = pause {
            let _ = reached.send(keys.to_vec());
            let _ = release.recv();
        }
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
    fn generational(&self) -> bool {
        self.inner.generational()
    }

    fn packs(&self) -> Option<&super::Packs> {
        self.inner.packs()
    }

    fn put_if_absent(&self, key: &ObjectKey, parts: &[&[u8]]) -> io::Result<bool> {
        self.pause_point(Op::Put, std::slice::from_ref(key));
        self.enter(Op::Put)?;
        self.inner.put_if_absent(key, parts)
    }

    /// Counts each object as a put; when one of them is to fail, the ones
    /// before it are stored and it and the rest are not.
    fn put_many(&self, items: &[(ObjectKey, Vec<&[u8]>)]) -> io::Result<()> {
        let keys: Vec<ObjectKey> = items.iter().map(|(k, _)| *k).collect();
        self.pause_point(Op::Put, &keys);
        for i in 0..items.len() {
            if let Err(e) = self.enter(Op::Put) {
                self.inner.put_many(&items[..i])?;
                return Err(e);
            }
        }
        self.inner.put_many(items)
    }

    fn replace(&self, key: &ObjectKey, parts: &[&[u8]]) -> io::Result<()> {
        self.enter(Op::Replace)?;
        self.inner.replace(key, parts)
    }

    fn get(&self, key: &ObjectKey) -> io::Result<Option<Vec<u8>>> {
        self.pause_point(Op::Get, std::slice::from_ref(key));
        self.enter(Op::Get)?;
        self.inner.get(key)
    }

    fn get_into(&self, key: &ObjectKey, buf: &mut Vec<u8>) -> io::Result<bool> {
        self.pause_point(Op::Get, std::slice::from_ref(key));
        self.enter(Op::Get)?;
        self.inner.get_into(key, buf)
    }

    fn get_range(&self, key: &ObjectKey, start: u64, len: usize) -> io::Result<Option<Vec<u8>>> {
        self.pause_point(Op::Get, std::slice::from_ref(key));
        self.enter(Op::Get)?;
        self.inner.get_range(key, start, len)
    }

    fn get_head_and_range(
        &self,
        key: &ObjectKey,
        head: usize,
        start: u64,
        len: usize,
        buf: &mut Vec<u8>,
    ) -> io::Result<Option<Vec<u8>>> {
        self.pause_point(Op::Get, std::slice::from_ref(key));
        self.enter(Op::Get)?;
        self.inner.get_head_and_range(key, head, start, len, buf)
    }

    fn answers_cached(&self) -> bool {
        self.inner.answers_cached()
    }

    fn get_head_and_range_cached(
        &self,
        key: &ObjectKey,
        head: usize,
        start: u64,
        len: usize,
        buf: &mut [u8],
    ) -> Option<(Vec<u8>, usize)> {
        self.enter(Op::GetCached).ok()?;
        self.inner.get_head_and_range_cached(key, head, start, len, buf)
    }

    fn get_cached(&self, key: &ObjectKey, max: usize, buf: &mut [u8]) -> Option<usize> {
        self.enter(Op::GetCached).ok()?;
        self.inner.get_cached(key, max, buf)
    }

    fn contains(&self, key: &ObjectKey) -> io::Result<bool> {
        self.enter(Op::Contains)?;
        self.inner.contains(key)
    }

    fn delete_many(&self, keys: &[ObjectKey]) -> io::Result<usize> {
        self.pause_point(Op::Delete, keys);
        self.enter(Op::Delete)?;
        self.inner.delete_many(keys)
    }

    fn list(
        &self,
        prefix: u8,
        start_after: Option<&ObjectKey>,
        limit: usize,
    ) -> io::Result<Vec<ObjectEntry>> {
        self.enter(Op::List)?;
        self.inner.list(prefix, start_after, limit)
    }

    fn quarantine(&self, key: &ObjectKey) -> io::Result<bool> {
        self.enter(Op::Quarantine)?;
        self.inner.quarantine(key)
    }

    fn barrier(&self) -> io::Result<()> {
        self.pause_point(Op::Barrier, &[]);
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
