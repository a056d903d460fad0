//! The object directory: where chunk objects live, behind the small
//! [`ObjectStore`] trait so a later S3-compatible backend is an addition.
//!
//! [`FsObjects`] keeps each object at `objects/ab/cd/<64 hex>`. An insert writes
//! a temp file, then hard-links it to its final name, which fails when the name
//! exists: an object is never replaced, and "already there" is a dedup hit.
//! Durability is a separate step, [`ObjectStore::barrier`], which the store
//! calls before any metadata write that makes an object referenced or
//! acknowledged; how it is reached depends on the [`FsyncPolicy`].
//! [`MemObjects`] is the in-memory twin for tests, benches and fuzzing.
//!
//! Everything here is blocking I/O: call it from a blocking thread.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::id::ChunkId;

/// One object as a listing sees it.
#[derive(Debug, Clone)]
pub struct ObjectEntry {
    pub id: ChunkId,
    pub len: u64,
    pub modified: SystemTime,
}

/// Storage for encoded chunk objects, keyed by chunk id.
pub trait ObjectStore: Send + Sync + 'static {
    /// Stores `encoded` under `id` unless an object is already there.
    /// Returns `true` when this call wrote it.
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

    /// Removes the object; `false` when it was not there.
    ///
    /// # Errors
    /// I/O failures other than absence.
    fn delete(&self, id: &ChunkId) -> io::Result<bool>;

    /// Every object whose id starts with the byte `prefix`.
    ///
    /// # Errors
    /// I/O failures.
    fn list(&self, prefix: u8) -> io::Result<Vec<ObjectEntry>>;

    /// Moves the object out of the way (kept for inspection, no longer served).
    ///
    /// # Errors
    /// I/O failures.
    fn quarantine(&self, id: &ChunkId) -> io::Result<bool>;

    /// Makes every insert that returned before this call durable.
    ///
    /// # Errors
    /// I/O failures.
    fn barrier(&self) -> io::Result<()>;

    /// Makes every object already stored durable, whoever wrote it: after an
    /// unclean shutdown, a killed predecessor's unsynced objects are in the
    /// page cache and would otherwise be acknowledged (as already present)
    /// without ever being synced.
    ///
    /// # Errors
    /// I/O failures.
    fn sync_all(&self) -> io::Result<()>;

    /// Removes abandoned temp files older than `age`; returns how many.
    ///
    /// # Errors
    /// I/O failures.
    fn sweep_temp(&self, age: Duration) -> io::Result<usize>;
}

/// When object writes reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Each object is fsynced before it is linked into place; the barrier
    /// fsyncs each directory touched since the last barrier.
    Always,
    /// Objects are written without fsync; the barrier flushes the whole
    /// filesystem once (`syncfs`), so concurrent uploads share one flush.
    #[default]
    Batch,
    /// Never fsync: for throwaway stores (benchmarks). A crash may lose
    /// acknowledged data.
    Never,
}

/// The object directory on a local filesystem.
pub struct FsObjects {
    root: PathBuf,
    tmp: PathBuf,
    quarantine: PathBuf,
    policy: FsyncPolicy,
    dirty_dirs: Mutex<HashSet<PathBuf>>,
    /// Which of the 65,536 `ab/cd` directories are known to exist (a bit
    /// each), so that an insert does not ask the filesystem every time.
    dirs_made: Vec<AtomicU64>,
    /// Whether the filesystem takes `O_TMPFILE` (unnamed temp files) and
    /// `/proc` is there to link them: probed once at open.
    tmpfile: bool,
    /// Inserts completed so far, and how many of them a barrier has covered:
    /// concurrent barriers coalesce into one flush.
    written: AtomicU64,
    synced: Mutex<u64>,
}

impl FsObjects {
    /// Opens (creating when needed) the object directory at `root`.
    ///
    /// # Errors
    /// I/O failures creating the directories.
    pub fn open(root: &Path, policy: FsyncPolicy) -> io::Result<Self> {
        let tmp = root.join("tmp");
        let quarantine = root.join("quarantine");
        fs::create_dir_all(&tmp)?;
        fs::create_dir_all(&quarantine)?;
        let tmpfile = Path::new("/proc/self/fd").is_dir() && open_unnamed(&tmp).is_ok();
        Ok(Self {
            root: root.to_path_buf(),
            tmp,
            quarantine,
            policy,
            dirty_dirs: Mutex::new(HashSet::new()),
            dirs_made: (0..1024).map(|_| AtomicU64::new(0)).collect(),
            tmpfile,
            written: AtomicU64::new(0),
            synced: Mutex::new(0),
        })
    }

    fn dir_of(&self, id: &ChunkId) -> PathBuf {
        let b = id.as_bytes();
        self.root.join(format!("{:02x}", b[0])).join(format!("{:02x}", b[1]))
    }

    /// The path of an object (it may not exist).
    pub fn path_of(&self, id: &ChunkId) -> PathBuf {
        self.dir_of(id).join(id.to_string())
    }

    /// Makes sure an object's `ab/cd` directory exists.
    fn ensure_dir(&self, id: &ChunkId, dir: &Path) -> io::Result<()> {
        let b = id.as_bytes();
        let n = (usize::from(b[0]) << 8) | usize::from(b[1]);
        let (word, bit) = (&self.dirs_made[n / 64], 1u64 << (n % 64));
        if word.load(Ordering::Relaxed) & bit == 0 {
            fs::create_dir_all(dir)?;
            word.fetch_or(bit, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Writes an object into place without ever replacing one: an unnamed
    /// `O_TMPFILE` linked to its name where the filesystem allows, a named
    /// temp file hard-linked and unlinked elsewhere. `false`: the name exists.
    fn write_new(&self, id: &ChunkId, encoded: &[u8], path: &Path) -> io::Result<bool> {
        let linked = if self.tmpfile {
            let mut f = open_unnamed(&self.tmp)?;
            self.fill(&mut f, encoded)?;
            let fd = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&f));
            rustix::fs::linkat(
                rustix::fs::CWD,
                fd.as_str(),
                rustix::fs::CWD,
                path,
                rustix::fs::AtFlags::SYMLINK_FOLLOW,
            )
            .map_err(io::Error::from)
        } else {
            let tmp = self.write_temp(id, encoded)?;
            let linked = fs::hard_link(&tmp, path);
            let _ = fs::remove_file(&tmp);
            linked
        };
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes `encoded` and, under `always`, fsyncs it.
    fn fill(&self, f: &mut File, encoded: &[u8]) -> io::Result<()> {
        f.write_all(encoded)?;
        if self.policy == FsyncPolicy::Always {
            f.sync_all()?;
        }
        Ok(())
    }

    fn write_temp(&self, id: &ChunkId, encoded: &[u8]) -> io::Result<PathBuf> {
        let tmp = self.tmp.join(format!("{id}.{:016x}.tmp", rand::random::<u64>()));
        match File::create(&tmp).and_then(|mut f| self.fill(&mut f, encoded)) {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    fn note_written(&self, dir: PathBuf) {
        if self.policy == FsyncPolicy::Always {
            lock(&self.dirty_dirs).insert(dir);
        }
        self.written.fetch_add(1, Ordering::Release);
    }
}

/// An unnamed temp file in `dir`, to be linked into place or dropped.
fn open_unnamed(dir: &Path) -> io::Result<File> {
    use rustix::fs::{CWD, Mode, OFlags};
    let fd = rustix::fs::openat(
        CWD,
        dir,
        OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?;
    Ok(File::from(fd))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn not_found_is<T>(r: io::Result<T>, absent: T) -> io::Result<T> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(absent),
        other => other,
    }
}

impl ObjectStore for FsObjects {
    fn put_if_absent(&self, id: &ChunkId, encoded: &[u8]) -> io::Result<bool> {
        let dir = self.dir_of(id);
        let path = dir.join(id.to_string());
        self.ensure_dir(id, &dir)?;
        let written = self.write_new(id, encoded, &path)?;
        if written {
            self.note_written(dir);
        }
        Ok(written)
    }

    fn replace(&self, id: &ChunkId, encoded: &[u8]) -> io::Result<()> {
        let dir = self.dir_of(id);
        self.ensure_dir(id, &dir)?;
        let tmp = self.write_temp(id, encoded)?;
        if let Err(e) = fs::rename(&tmp, dir.join(id.to_string())) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.note_written(dir);
        Ok(())
    }

    fn get(&self, id: &ChunkId) -> io::Result<Option<Vec<u8>>> {
        not_found_is(fs::read(self.path_of(id)).map(Some), None)
    }

    fn contains(&self, id: &ChunkId) -> io::Result<bool> {
        not_found_is(fs::metadata(self.path_of(id)).map(|_| true), false)
    }

    fn delete(&self, id: &ChunkId) -> io::Result<bool> {
        not_found_is(fs::remove_file(self.path_of(id)).map(|_| true), false)
    }

    fn list(&self, prefix: u8) -> io::Result<Vec<ObjectEntry>> {
        let top = self.root.join(format!("{prefix:02x}"));
        let mut out = Vec::new();
        let subdirs = match fs::read_dir(&top) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for sub in subdirs {
            let sub = sub?;
            if !sub.file_type()?.is_dir() {
                continue;
            }
            for obj in fs::read_dir(sub.path())? {
                let obj = obj?;
                let name = obj.file_name();
                // Anything not named by a full hash is not an object of ours.
                let Some(id) = name.to_str().and_then(|n| n.parse::<ChunkId>().ok()) else {
                    continue;
                };
                let meta = match obj.metadata() {
                    Ok(m) => m,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                out.push(ObjectEntry {
                    id,
                    len: meta.len(),
                    modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
        Ok(out)
    }

    fn quarantine(&self, id: &ChunkId) -> io::Result<bool> {
        let stamp =
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let dest = self.quarantine.join(format!("{id}.{stamp}"));
        not_found_is(fs::rename(self.path_of(id), dest).map(|_| true), false)
    }

    fn barrier(&self) -> io::Result<()> {
        if self.policy == FsyncPolicy::Never {
            return Ok(());
        }
        let target = self.written.load(Ordering::Acquire);
        let mut synced = lock(&self.synced);
        if *synced >= target {
            return Ok(());
        }
        // Everything counted in `written` by now is covered by this flush.
        let now = self.written.load(Ordering::Acquire);
        match self.policy {
            FsyncPolicy::Always => {
                let dirs: Vec<PathBuf> = lock(&self.dirty_dirs).drain().collect();
                for dir in dirs {
                    File::open(&dir)?.sync_all()?;
                }
            }
            FsyncPolicy::Batch => {
                let root = File::open(&self.root)?;
                rustix::fs::syncfs(&root)?;
            }
            FsyncPolicy::Never => {}
        }
        *synced = now;
        Ok(())
    }

    fn sync_all(&self) -> io::Result<()> {
        if self.policy == FsyncPolicy::Never {
            return Ok(());
        }
        // One syncfs covers objects and directory entries alike, for both
        // policies: `always` syncs a directory only at its writer's barrier.
        let root = File::open(&self.root)?;
        rustix::fs::syncfs(&root)?;
        Ok(())
    }

    fn sweep_temp(&self, age: Duration) -> io::Result<usize> {
        let mut n = 0;
        let now = SystemTime::now();
        for e in fs::read_dir(&self.tmp)? {
            let e = e?;
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| now.duration_since(t).unwrap_or_default() >= age)
                .unwrap_or(false);
            if old && fs::remove_file(e.path()).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// The in-memory twin of [`FsObjects`], with settable modification times.
#[derive(Default)]
pub struct MemObjects {
    objects: Mutex<HashMap<ChunkId, (Vec<u8>, SystemTime)>>,
    quarantined: Mutex<Vec<(ChunkId, Vec<u8>)>>,
}

impl MemObjects {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets an object's modification time (to test age-based sweeps).
    pub fn set_modified(&self, id: &ChunkId, t: SystemTime) {
        if let Some(o) = lock(&self.objects).get_mut(id) {
            o.1 = t;
        }
    }

    /// Overwrites an object's bytes in place (to test corruption handling).
    pub fn corrupt(&self, id: &ChunkId, f: impl FnOnce(&mut Vec<u8>)) {
        if let Some(o) = lock(&self.objects).get_mut(id) {
            f(&mut o.0);
        }
    }

    pub fn len(&self) -> usize {
        lock(&self.objects).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ObjectStore for MemObjects {
    fn put_if_absent(&self, id: &ChunkId, encoded: &[u8]) -> io::Result<bool> {
        let mut m = lock(&self.objects);
        if m.contains_key(id) {
            return Ok(false);
        }
        m.insert(*id, (encoded.to_vec(), SystemTime::now()));
        Ok(true)
    }

    fn replace(&self, id: &ChunkId, encoded: &[u8]) -> io::Result<()> {
        lock(&self.objects).insert(*id, (encoded.to_vec(), SystemTime::now()));
        Ok(())
    }

    fn get(&self, id: &ChunkId) -> io::Result<Option<Vec<u8>>> {
        Ok(lock(&self.objects).get(id).map(|o| o.0.clone()))
    }

    fn contains(&self, id: &ChunkId) -> io::Result<bool> {
        Ok(lock(&self.objects).contains_key(id))
    }

    fn delete(&self, id: &ChunkId) -> io::Result<bool> {
        Ok(lock(&self.objects).remove(id).is_some())
    }

    fn list(&self, prefix: u8) -> io::Result<Vec<ObjectEntry>> {
        Ok(lock(&self.objects)
            .iter()
            .filter(|(id, _)| id.as_bytes()[0] == prefix)
            .map(|(id, (b, t))| ObjectEntry { id: *id, len: b.len() as u64, modified: *t })
            .collect())
    }

    fn quarantine(&self, id: &ChunkId) -> io::Result<bool> {
        match lock(&self.objects).remove(id) {
            Some((b, _)) => {
                lock(&self.quarantined).push((*id, b));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn barrier(&self) -> io::Result<()> {
        Ok(())
    }

    fn sync_all(&self) -> io::Result<()> {
        Ok(())
    }

    fn sweep_temp(&self, _age: Duration) -> io::Result<usize> {
        Ok(0)
    }
}

/// Faults on demand in front of any object store, for tests that drive
/// crashes and races deterministically (STYLE: cross-cutting behaviour is a
/// wrapper implementing the same trait). While `fail_deletes` is set, every
/// delete fails as a process killed before the unlink would leave things;
/// `sync_all` calls are counted.
pub struct Faulty {
    inner: std::sync::Arc<dyn ObjectStore>,
    fail_deletes: std::sync::atomic::AtomicBool,
    sync_all_calls: AtomicU64,
}

impl Faulty {
    pub fn new(inner: std::sync::Arc<dyn ObjectStore>) -> Self {
        Faulty { inner, fail_deletes: false.into(), sync_all_calls: AtomicU64::new(0) }
    }

    /// Makes every delete fail (`true`) or pass through (`false`).
    pub fn fail_deletes(&self, on: bool) {
        self.fail_deletes.store(on, Ordering::SeqCst);
    }

    /// How many times [`ObjectStore::sync_all`] was called.
    pub fn sync_all_calls(&self) -> u64 {
        self.sync_all_calls.load(Ordering::SeqCst)
    }
}

impl ObjectStore for Faulty {
    fn put_if_absent(&self, id: &ChunkId, encoded: &[u8]) -> io::Result<bool> {
        self.inner.put_if_absent(id, encoded)
    }

    fn replace(&self, id: &ChunkId, encoded: &[u8]) -> io::Result<()> {
        self.inner.replace(id, encoded)
    }

    fn get(&self, id: &ChunkId) -> io::Result<Option<Vec<u8>>> {
        self.inner.get(id)
    }

    fn contains(&self, id: &ChunkId) -> io::Result<bool> {
        self.inner.contains(id)
    }

    fn delete(&self, id: &ChunkId) -> io::Result<bool> {
        if self.fail_deletes.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected fault: delete"));
        }
        self.inner.delete(id)
    }

    fn list(&self, prefix: u8) -> io::Result<Vec<ObjectEntry>> {
        self.inner.list(prefix)
    }

    fn quarantine(&self, id: &ChunkId) -> io::Result<bool> {
        self.inner.quarantine(id)
    }

    fn barrier(&self) -> io::Result<()> {
        self.inner.barrier()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync_all_calls.fetch_add(1, Ordering::SeqCst);
        self.inner.sync_all()
    }

    fn sweep_temp(&self, age: Duration) -> io::Result<usize> {
        self.inner.sweep_temp(age)
    }
}

#[cfg(test)]
mod tests {
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
        let listed = store.list(id.as_bytes()[0]).unwrap();
        assert!(listed.iter().any(|e| e.id == id && e.len == 5));
        store.replace(&id, b"healed").unwrap();
        assert_eq!(store.get(&id).unwrap().unwrap(), b"healed");
        assert!(store.quarantine(&id).unwrap());
        assert!(!store.contains(&id).unwrap());
        assert!(store.delete(&other).unwrap());
        assert!(!store.delete(&other).unwrap());
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
        let l = store.list(id.as_bytes()[0]).unwrap();
        assert_eq!(l.len(), 1);
    }
}
