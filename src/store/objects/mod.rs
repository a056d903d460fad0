//! Where chunk objects live, behind the small [`ObjectStore`] trait.
//!
//! The trait is shaped for a remote object store as much as for a
//! directory: create-only put, overwrite, get, head, delete-many (absent
//! counts as deleted) and a paginated, ordered listing that never builds an
//! unbounded list. The four calls whose mechanics are local-disk ones keep a
//! meaning on any engine and a default for engines where it is nothing:
//! [`ObjectStore::barrier`] ("inserts so far are durable": a no-op where an
//! acknowledged put is durable), [`ObjectStore::sync_all`] (after a crash,
//! "everything stored is durable"), [`ObjectStore::sweep_temp`] ("abandoned
//! partial writes go": temp files here, stale multipart uploads on S3) and
//! [`ObjectStore::quarantine`] ("move aside, keep for inspection").
//!
//! - [`FsObjects`] (`fs.rs`): `objects/ab/cd/<64 hex>` on a local filesystem.
//! - [`MemObjects`] (`memory.rs`): the in-memory twin for tests, benches, fuzzing.
//! - [`Faulty`] (`faulty.rs`): a wrapper around any store that fails the Nth
//!   call of an operation and pauses before a delete, for deterministic
//!   crash and race tests.
//!
//! Everything here is blocking I/O: call it from a blocking thread (a remote
//! engine runs its async client on its own runtime).

mod faulty;
mod fs;
mod memory;

use std::io;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::id::ChunkId;

pub use self::faulty::{Faulty, Op, Pause};
pub use self::fs::{FsObjects, FsyncPolicy};
pub use self::memory::MemObjects;

/// One object as a listing sees it.
#[derive(Debug, Clone)]
pub struct ObjectEntry {
    pub id: ChunkId,
    pub len: u64,
    pub modified: SystemTime,
}

/// Storage for encoded chunk objects, keyed by chunk id.
pub trait ObjectStore: Send + Sync + 'static {
    /// Stores the object whose bytes are the concatenation of `parts` (a
    /// header and a payload, written without copying them into one buffer)
    /// under `id`, unless an object is already there (a create-only put).
    /// Returns `true` when this call wrote it.
    ///
    /// # Errors
    /// I/O failures.
    fn put_if_absent(&self, id: &ChunkId, parts: &[&[u8]]) -> io::Result<bool>;

    /// Replaces whatever is stored under `id` with the concatenation of
    /// `parts` (healing a corrupt object).
    ///
    /// # Errors
    /// I/O failures.
    fn replace(&self, id: &ChunkId, parts: &[&[u8]]) -> io::Result<()>;

    /// The encoded object, or `None` when absent.
    ///
    /// # Errors
    /// I/O failures other than absence.
    fn get(&self, id: &ChunkId) -> io::Result<Option<Vec<u8>>>;

    /// Bytes `start..start + len` of the encoded object (fewer when the
    /// object ends first), or `None` when absent: what a ranged `GET` gives
    /// on a remote object store. The default reads the whole object.
    ///
    /// # Errors
    /// I/O failures other than absence.
    fn get_range(&self, id: &ChunkId, start: u64, len: usize) -> io::Result<Option<Vec<u8>>> {
        Ok(self.get(id)?.map(|o| {
            let from = usize::try_from(start).unwrap_or(usize::MAX).min(o.len());
            o[from..o.len().min(from.saturating_add(len))].to_vec()
        }))
    }

    /// Reads the encoded object into `buf`, cleared first; `false` when
    /// absent. The buffer's capacity is used when it suffices (a reused
    /// buffer costs no allocation). The default copies what
    /// [`ObjectStore::get`] returns.
    ///
    /// # Errors
    /// I/O failures other than absence.
    fn get_into(&self, id: &ChunkId, buf: &mut Vec<u8>) -> io::Result<bool> {
        buf.clear();
        Ok(self.get(id)?.map(|o| buf.extend_from_slice(&o)).is_some())
    }

    /// Whether an object exists under `id`.
    ///
    /// # Errors
    /// I/O failures other than absence.
    fn contains(&self, id: &ChunkId) -> io::Result<bool>;

    /// Removes the objects; an absent one counts as deleted. Returns how
    /// many ids were handled (all of them when it succeeds). On an error
    /// some may be gone and some not: calling again finishes the job.
    ///
    /// # Errors
    /// I/O failures other than absence.
    fn delete_many(&self, ids: &[ChunkId]) -> io::Result<usize>;

    /// One page of the objects whose id starts with the byte `prefix`, in
    /// ascending id order, past `start_after` when given, at most `limit`.
    /// A page shorter than `limit` is the last; the next page starts after
    /// the last id of this one. See [`for_each_page`].
    ///
    /// # Errors
    /// I/O failures.
    fn list(&self, prefix: u8, start_after: Option<&ChunkId>, limit: usize) -> io::Result<Vec<ObjectEntry>>;

    /// Moves the object out of the way: no longer served, kept for
    /// inspection (a directory here, a `quarantine/` key prefix remotely).
    /// `false` when it was not there.
    ///
    /// # Errors
    /// I/O failures.
    fn quarantine(&self, id: &ChunkId) -> io::Result<bool>;

    /// Makes every insert that returned before this call durable. The
    /// store calls it before any metadata write that makes an object
    /// referenced or acknowledged. The default does nothing: right for an
    /// engine whose acknowledged put is already durable.
    ///
    /// # Errors
    /// I/O failures.
    fn barrier(&self) -> io::Result<()> {
        Ok(())
    }

    /// Makes every object already stored durable, whoever wrote it: after an
    /// unclean shutdown, a killed predecessor's unsynced objects are in the
    /// page cache and would otherwise be acknowledged (as already present)
    /// without ever being synced. The default does nothing, as for
    /// [`ObjectStore::barrier`].
    ///
    /// # Errors
    /// I/O failures.
    fn sync_all(&self) -> io::Result<()> {
        Ok(())
    }

    /// Removes abandoned partial writes older than `age` (temp files here,
    /// stale multipart uploads remotely); returns how many. The default,
    /// for engines that leave none, removes nothing.
    ///
    /// # Errors
    /// I/O failures.
    fn sweep_temp(&self, age: Duration) -> io::Result<usize> {
        let _ = age;
        Ok(0)
    }
}

/// Calls `f` with each page of the objects under `prefix`, `limit` at a
/// time, in id order, until the listing ends or `f` fails.
///
/// # Errors
/// The store's listing errors, or `f`'s.
pub fn for_each_page<E: From<io::Error>>(
    store: &dyn ObjectStore,
    prefix: u8,
    limit: usize,
    mut f: impl FnMut(&[ObjectEntry]) -> Result<(), E>,
) -> Result<(), E> {
    let mut after: Option<ChunkId> = None;
    loop {
        let page = store.list(prefix, after.as_ref(), limit)?;
        f(&page)?;
        match page.last() {
            Some(last) if page.len() >= limit => after = Some(last.id),
            _ => return Ok(()),
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn not_found_is<T>(r: io::Result<T>, absent: T) -> io::Result<T> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(absent),
        other => other,
    }
}

#[cfg(test)]
mod tests;
