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
    /// Stores `encoded` under `id` unless an object is already there
    /// (a create-only put). Returns `true` when this call wrote it.
    ///
    /// # Errors
    /// I/O failures.
    fn put_if_absent(&self, id: &ChunkId, encoded: &[u8]) -> io::Result<bool>;

    /// Replaces whatever is stored under `id` (healing a corrupt object).
    ///
    /// # Errors
    /// I/O failures.
    fn replace(&self, id: &ChunkId, encoded: &[u8]) -> io::Result<()>;

    /// The encoded object, or `None` when absent.
    ///
    /// # Errors
    /// I/O failures other than absence.
    fn get(&self, id: &ChunkId) -> io::Result<Option<Vec<u8>>>;

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
mod tests {
    use std::fs;
    use std::sync::Arc;

    use super::*;

    fn exercise(store: &dyn ObjectStore) {
        let id = ChunkId::of(b"a");
        let other = ChunkId::of(b"b");
        assert!(store.get(&id).unwrap().is_none());
        assert!(store.put_if_absent(&id, b"first").unwrap());
        assert!(!store.put_if_absent(&id, b"second").unwrap(), "never replaces");
        assert_eq!(store.get(&id).unwrap().unwrap(), b"first");
        assert!(store.contains(&id).unwrap());
        assert!(store.put_if_absent(&other, b"x").unwrap());
        store.barrier().unwrap();
        let listed = store.list(id.as_bytes()[0], None, 10).unwrap();
        assert!(listed.iter().any(|e| e.id == id && e.len == 5));
        store.replace(&id, b"healed").unwrap();
        assert_eq!(store.get(&id).unwrap().unwrap(), b"healed");
        assert!(store.quarantine(&id).unwrap());
        assert!(!store.contains(&id).unwrap());
        assert_eq!(store.delete_many(&[other, other]).unwrap(), 2, "absent counts as deleted");
        assert!(!store.contains(&other).unwrap());
        pages(store);
    }

    /// Many objects under one prefix, listed a page at a time: every one
    /// once, in order, and nothing of another prefix.
    fn pages(store: &dyn ObjectStore) {
        let mut ids: Vec<ChunkId> = (0..3000u32).map(|i| ChunkId::of(&i.to_le_bytes())).collect();
        for id in &ids {
            store.put_if_absent(id, b"o").unwrap();
        }
        let prefix = ids[0].as_bytes()[0];
        ids.retain(|id| id.as_bytes()[0] == prefix);
        ids.sort();
        assert!(ids.len() > 5, "the prefix holds a few pages");
        for limit in [1, 2, 5, 1000] {
            let mut seen = Vec::new();
            let mut calls = 0;
            for_each_page::<io::Error>(store, prefix, limit, |page| {
                assert!(page.len() <= limit);
                calls += 1;
                seen.extend(page.iter().map(|e| e.id));
                Ok(())
            })
            .unwrap();
            assert_eq!(seen, ids, "limit {limit}");
            assert!(calls >= ids.len() / limit);
        }
        // A start past the prefix gives an empty page; one before it, the top.
        let last = *ids.last().unwrap();
        assert!(store.list(prefix, Some(&last), 10).unwrap().is_empty());
        let before = ChunkId::from_slice(&[prefix.wrapping_sub(1); 32]).unwrap();
        if prefix > 0 {
            assert_eq!(store.list(prefix, Some(&before), 1).unwrap()[0].id, ids[0]);
        }
        let all: Vec<ChunkId> = (0..3000u32).map(|i| ChunkId::of(&i.to_le_bytes())).collect();
        assert_eq!(store.delete_many(&all).unwrap(), all.len());
        assert!(store.list(prefix, None, 10).unwrap().is_empty());
    }

    #[test]
    fn fs_objects_behave() {
        for policy in [FsyncPolicy::Always, FsyncPolicy::Batch, FsyncPolicy::Never] {
            let dir = tempfile::tempdir().unwrap();
            let store = FsObjects::open(dir.path(), policy).unwrap();
            exercise(&store);
            let id = ChunkId::of(b"c");
            store.put_if_absent(&id, b"c").unwrap();
            let p = store.path_of(&id);
            let hex = id.to_string();
            assert!(p.ends_with(format!("{}/{}/{}", &hex[..2], &hex[2..4], hex)));
            assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        }
    }

    #[test]
    fn both_write_paths_insert_without_replacing() {
        for unnamed in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let mut store = FsObjects::open(dir.path(), FsyncPolicy::Always).unwrap();
            if unnamed && !store.tmpfile {
                eprintln!("skipped: this filesystem does not take O_TMPFILE");
                continue;
            }
            store.tmpfile = unnamed;
            exercise(&store);
            let id = ChunkId::of(b"d");
            assert!(store.put_if_absent(&id, b"one").unwrap());
            assert!(!store.put_if_absent(&id, b"two").unwrap());
            assert_eq!(fs::read(store.path_of(&id)).unwrap(), b"one");
            assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "no temp file left");
        }
    }

    #[test]
    fn mem_objects_behave() {
        exercise(&MemObjects::new());
    }

    #[test]
    fn faulty_passes_through_and_fails_on_demand() {
        let inner = Arc::new(MemObjects::new());
        let f = Faulty::new(inner.clone());
        exercise(&f);
        let id = ChunkId::of(b"f");
        f.fail_nth(Op::Put, 2);
        assert!(f.put_if_absent(&id, b"1").unwrap());
        assert!(f.put_if_absent(&id, b"2").is_err(), "the second put from now");
        assert!(!f.put_if_absent(&id, b"3").unwrap(), "only that one");
        f.fail_deletes(true);
        assert!(f.delete_many(&[id]).is_err());
        assert!(inner.contains(&id).unwrap(), "a failed call does nothing");
        f.heal();
        let pause = f.pause_next_delete();
        let f = Arc::new(f);
        let g = f.clone();
        let t = std::thread::spawn(move || g.delete_many(&[id]).unwrap());
        assert_eq!(pause.wait(std::time::Duration::from_secs(10)), Some(vec![id]));
        assert!(inner.contains(&id).unwrap(), "paused before deleting");
        pause.release();
        assert_eq!(t.join().unwrap(), 1);
        assert!(!inner.contains(&id).unwrap());
        assert_eq!(f.calls(Op::Delete), 4);
    }

    #[test]
    fn only_old_temp_files_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsObjects::open(dir.path(), FsyncPolicy::Never).unwrap();
        fs::write(dir.path().join("tmp/x.tmp"), b"junk").unwrap();
        assert_eq!(store.sweep_temp(Duration::from_secs(3600)).unwrap(), 0);
        assert_eq!(store.sweep_temp(Duration::ZERO).unwrap(), 1);
    }

    #[test]
    fn listing_ignores_foreign_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsObjects::open(dir.path(), FsyncPolicy::Never).unwrap();
        let id = ChunkId::of(b"z");
        store.put_if_absent(&id, b"z").unwrap();
        let d = store.path_of(&id).parent().unwrap().to_path_buf();
        fs::write(d.join("notes.txt"), b"").unwrap();
        let l = store.list(id.as_bytes()[0], None, 100).unwrap();
        assert_eq!(l.len(), 1);
    }
}
