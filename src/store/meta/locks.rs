//! Locks over the store's rows, held against every process that shares the
//! metadata: the seam that lets several servers run on one store.
//!
//! A lock is a key in a [`LockSpace`]. [`Locked`] holds some, takes more,
//! releases a space's, and commits batches while they are held. Two layers:
//!
//! - [`LocalLocks`], one mutex per key, which every backend owns: on an
//!   in-process backend (RocksDB, memory) that is the whole lock, and two
//!   stores opened over one `MemMeta` exclude each other as two nodes
//!   would (the deterministic twin of the shared case);
//! - [`SharedLocks`], a backend session that other processes honour
//!   (PostgreSQL: session advisory locks on one connection), taken after
//!   the local layer so that threads of one process queue in memory and
//!   only one of them waits in the database.
//!
//! A write that must land only while the locks are held goes through
//! [`Locked::write`]: on a shared backend it runs on the session that holds
//! them, so a session that lost its locks (its connection dropped, or the
//! database ended it for idling with locks held: a paused process) cannot
//! commit anything afterwards. Its writes fail and the work is retried by
//! whoever holds the locks next.
//!
//! Order: a thread holding locks of several spaces takes them in
//! [`LockSpace`] order (sessions, files, chunks, quotas, settings) and each
//! space's keys in ascending order (one take sorts them), so that no two
//! takers wait on each other in a circle, in one process or across several.
//!
//! Nesting: a thread may make a second `Locked` while it holds one (an
//! upload session's lock held around the commit that takes chunk and quota
//! locks), provided the inner one takes only spaces after every space the
//! outer holds. Both then use *one* shared session (the first one the
//! thread opened on that backend): a thread never holds two database
//! sessions, so the session pool cannot run dry with every thread holding
//! one and waiting for a second; and the inner guard's writes are fenced by
//! the outer's locks too. The inner guard releases only its own keys.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Mutex, MutexGuard};

use super::{Batch, MetaStore};
use crate::store::error::Result;

/// What a lock guards. Each space has the keys `0..size()`; callers map
/// their rows onto them ([`LockSpace::Chunks`] by a chunk id's first byte,
/// and so on), so unrelated rows may share a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LockSpace {
    /// An upload session's record and rows while a request changes them:
    /// 64 keys.
    Sessions,
    /// A file record while it goes through its steps (delete): 64 keys.
    Files,
    /// Chunk rows and what is counted with them: 256 stripes.
    Chunks,
    /// A tenant's quota check together with its count: 16 keys.
    Quotas,
    /// Store-wide settings made once and then only read (the server's
    /// keys): 1 key.
    Settings,
}

impl LockSpace {
    /// Every space, in the order a thread takes them.
    pub const ALL: [LockSpace; 5] =
        [LockSpace::Sessions, LockSpace::Files, LockSpace::Chunks, LockSpace::Quotas, LockSpace::Settings];

    /// How many keys the space has.
    pub fn size(self) -> usize {
        match self {
            LockSpace::Sessions | LockSpace::Files => 64,
            LockSpace::Chunks => 256,
            LockSpace::Quotas => 16,
            LockSpace::Settings => 1,
        }
    }

    /// Position in [`LockSpace::ALL`] (the shared layer's space number).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The in-process layer: one mutex per key of every space.
pub struct LocalLocks {
    tables: [Vec<Mutex<()>>; LockSpace::ALL.len()],
}

impl Default for LocalLocks {
    fn default() -> Self {
        Self { tables: LockSpace::ALL.map(|s| (0..s.size()).map(|_| Mutex::new(())).collect()) }
    }
}

impl LocalLocks {
    fn lock(&self, space: LockSpace, key: u16) -> MutexGuard<'_, ()> {
        let m = &self.tables[space.index()][key as usize];
        m.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One session of locks shared with other processes. Dropping it releases
/// whatever it holds (or gives up its connection, which the database then
/// releases them with).
pub trait SharedLocks {
    /// Takes `keys` of `space` (ascending, distinct, none held yet),
    /// waiting while another session holds one.
    ///
    /// # Errors
    /// [`Error::Unavailable`](crate::store::Error::Unavailable) when the
    /// backend is unreachable or the wait outlasted its limit; then none
    /// of `keys` is held.
    fn take(&mut self, space: LockSpace, keys: &[u16]) -> Result<()>;

    /// Releases `keys` of `space`, which this session holds.
    ///
    /// # Errors
    /// Backend failures (the session is then unusable: drop it).
    fn release(&mut self, space: LockSpace, keys: &[u16]) -> Result<()>;

    /// Commits `batch` as [`MetaStore::write`] does, on this session, so
    /// that it lands only while the session's locks are held.
    ///
    /// # Errors
    /// Backend failures, among them a session that lost its locks;
    /// nothing of the batch is applied then.
    fn write(&mut self, batch: Batch, durable: bool) -> Result<()>;
}

/// A shared session and the thread's guards that use it.
type Session = Rc<RefCell<Box<dyn SharedLocks>>>;

thread_local! {
    /// Per backend (by address) on this thread: the shared session its
    /// guards use, and the spaces they hold (for the order checks).
    static OPEN: RefCell<Vec<Open>> = const { RefCell::new(Vec::new()) };
}

struct Open {
    backend: usize,
    session: Option<Session>,
    /// Spaces held by this thread's guards on the backend, one entry per
    /// guard and space.
    held: Vec<LockSpace>,
}

fn backend_key(meta: &dyn MetaStore) -> usize {
    std::ptr::from_ref(meta).cast::<()>() as usize
}

/// With this thread's entry for `backend` (made when missing, dropped when
/// left empty).
fn with_open<T>(backend: usize, f: impl FnOnce(&mut Open) -> T) -> T {
    OPEN.with(|open| {
        let mut open = open.borrow_mut();
        let i = match open.iter().position(|o| o.backend == backend) {
            Some(i) => i,
            None => {
                open.push(Open { backend, session: None, held: Vec::new() });
                open.len() - 1
            }
        };
        let out = f(&mut open[i]);
        if open[i].session.is_none() && open[i].held.is_empty() {
            open.swap_remove(i);
        }
        out
    })
}

/// Locks held, in both layers; all released when dropped. Not `Send`: a
/// lock is released by the thread that took it.
pub struct Locked<'a> {
    meta: &'a dyn MetaStore,
    /// Made at the first take, before any local lock, so that no thread
    /// waits for a database connection while it holds a lock; or the one
    /// an enclosing guard on this thread made (see the module).
    shared: Option<Session>,
    /// This guard made `shared` (and ends it when dropped).
    opened: bool,
    local: Vec<(LockSpace, u16, MutexGuard<'a, ()>)>,
}

impl<'a> Locked<'a> {
    /// Holds nothing yet.
    pub fn new(meta: &'a dyn MetaStore) -> Self {
        Self { meta, shared: None, opened: false, local: Vec::new() }
    }

    fn backend(&self) -> usize {
        backend_key(self.meta)
    }

    /// The thread's shared session on this backend, opened when it has none.
    fn session(&mut self) -> Result<()> {
        if self.shared.is_some() {
            return Ok(());
        }
        let backend = self.backend();
        if let Some(s) = with_open(backend, |o| o.session.clone()) {
            self.shared = Some(s);
            return Ok(());
        }
        if let Some(s) = self.meta.shared_locks()? {
            let s: Session = Rc::new(RefCell::new(s));
            with_open(backend, |o| o.session = Some(s.clone()));
            self.shared = Some(s);
            self.opened = true;
        }
        Ok(())
    }

    /// Takes `keys` of `space`, in ascending order, leaving those already
    /// held alone. Take spaces in [`LockSpace`] order (see the module), and
    /// each space's keys in one take: a take that adds keys to a space
    /// already held is a mistake (it could close a circle of waiters);
    /// release the space first.
    ///
    /// # Errors
    /// As [`SharedLocks::take`]; nothing more is held then.
    pub fn take(&mut self, space: LockSpace, keys: impl IntoIterator<Item = u16>) -> Result<()> {
        let mut keys: Vec<u16> =
            keys.into_iter().filter(|k| !self.local.iter().any(|(s, h, _)| *s == space && h == k)).collect();
        keys.sort_unstable();
        keys.dedup();
        if keys.is_empty() {
            return Ok(());
        }
        debug_assert!(keys.iter().all(|&k| (k as usize) < space.size()), "lock key out of {space:?}");
        debug_assert!(self.local.iter().all(|(s, _, _)| *s <= space), "locks taken out of order");
        // Keys of one space are taken in one go (ascending); adding to a
        // space already held could wait on a lower key held by someone who
        // waits for ours.
        debug_assert!(!self.local.iter().any(|(s, _, _)| *s == space), "a second take in {space:?}");
        // Nor may a nested guard take a space at or before one an enclosing
        // guard holds (the local layer's mutexes are not reentrant).
        debug_assert!(
            with_open(self.backend(), |o| o.held.iter().all(|s| *s < space)),
            "a nested take of {space:?} after a later or the same space"
        );
        self.session()?;
        let before = self.local.len();
        let table = self.meta.local_locks();
        self.local.extend(keys.iter().map(|&k| (space, k, table.lock(space, k))));
        if let Some(s) = &self.shared
            && let Err(e) = s.borrow_mut().take(space, &keys)
        {
            self.local.truncate(before);
            return Err(e);
        }
        with_open(self.backend(), |o| o.held.push(space));
        Ok(())
    }

    /// Releases every key of `space` this holds (the shared layer first,
    /// so that a local waiter next in line does not then wait on it).
    ///
    /// # Errors
    /// As [`SharedLocks::release`]; the keys stay held until the drop.
    pub fn release(&mut self, space: LockSpace) -> Result<()> {
        let keys: Vec<u16> = self.local.iter().filter(|(s, _, _)| *s == space).map(|(_, k, _)| *k).collect();
        if keys.is_empty() {
            return Ok(());
        }
        if let Some(s) = &self.shared {
            s.borrow_mut().release(space, &keys)?;
        }
        self.local.retain(|(s, _, _)| *s != space);
        self.forget(space);
        Ok(())
    }

    /// Drops one entry of `space` from the thread's held spaces.
    fn forget(&self, space: LockSpace) {
        with_open(self.backend(), |o| {
            if let Some(i) = o.held.iter().position(|s| *s == space) {
                o.held.swap_remove(i);
            }
        });
    }

    /// Commits `batch` while the locks are held (see the module): on the
    /// shared session when there is one, else as [`MetaStore::write`].
    ///
    /// # Errors
    /// Backend failures; nothing of the batch is applied then.
    pub fn write(&mut self, batch: Batch, durable: bool) -> Result<()> {
        match &self.shared {
            Some(s) => s.borrow_mut().write(batch, durable),
            None => self.meta.write(batch, durable),
        }
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let mut spaces: Vec<LockSpace> = self.local.iter().map(|(s, _, _)| *s).collect();
        spaces.dedup();
        // The shared layer first, as in `release`.
        if let Some(s) = self.shared.take() {
            if self.opened {
                with_open(self.backend(), |o| {
                    if o.session.as_ref().is_some_and(|o| Rc::ptr_eq(o, &s)) {
                        o.session = None;
                    }
                });
            }
            // Another guard of the thread still uses the session: give back
            // only this one's keys. (The last user's drop ends the session
            // with every lock on it.) A failure leaves the session unusable;
            // its next statement says so.
            if Rc::strong_count(&s) > 1 {
                for space in &spaces {
                    let keys: Vec<u16> =
                        self.local.iter().filter(|(sp, _, _)| sp == space).map(|(_, k, _)| *k).collect();
                    let _ = s.borrow_mut().release(*space, &keys);
                }
            }
        }
        for space in spaces {
            self.forget(space);
        }
        self.local.clear();
    }
}
