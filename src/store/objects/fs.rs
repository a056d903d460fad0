//! [`FsObjects`]: the object directory on a local filesystem.
//!
//! Each object lives at `objects/ab/cd/<64 hex>`: the store keeps
//! generation 0 here (this store is not generational: its create-only
//! insert is exact under the store's locks). Another generation, which only
//! a test or a copied bucket would bring, is `<64 hex>.<16 hex>` beside it,
//! so the directory holds any [`ObjectKey`]. An insert writes a temp
//! file, then hard-links it to its final name, which fails when the name
//! exists: an object is never replaced, and "already there" is a dedup hit.
//! Where the filesystem takes it, the temp file is written with `O_DIRECT`
//! ([`super::direct`], `storage.direct_writes`).
//! Durability is a separate step, [`ObjectStore::barrier`], reached as the
//! [`FsyncPolicy`] says. A listing page reads the names of one `ab`
//! directory's subdirectories and then one `cd` directory at a time, so it
//! never holds more than a directory's names and a page of entries.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::direct::{ALIGN, write_direct};
use super::{ObjectEntry, ObjectKey, ObjectStore, lock, not_found_is};
use crate::store::enums::keywords;
use crate::store::id::ChunkId;

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

keywords!(FsyncPolicy { "always" => Always, "batch" => Batch, "never" => Never });

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
    pub(super) tmpfile: bool,
    /// Whether new objects are written with `O_DIRECT` ([`super::direct`]):
    /// asked for, and the filesystem took a probe write at open; cleared
    /// for good if a write is refused later.
    pub(super) direct: AtomicBool,
    /// Tests: the next direct writes fail as a filesystem refusing
    /// `O_DIRECT` makes them fail (`EINVAL`).
    #[cfg(test)]
    pub(super) refuse_direct: AtomicBool,
    /// Inserts completed so far, and how many of them a barrier has covered:
    /// concurrent barriers coalesce into one flush.
    written: AtomicU64,
    synced: Mutex<u64>,
    /// Whether reads answered from the kernel's caches alone are tried
    /// ([`ObjectStore::get_head_and_range_cached`]); cleared for good when
    /// the kernel (before 5.12) or a sandbox refuses them.
    cached_reads: AtomicBool,
    /// The object directory itself (`O_PATH`), which cached reads open
    /// objects relative to: a walk of three names, not of the whole path.
    #[cfg(target_os = "linux")]
    root_fd: rustix::fd::OwnedFd,
    /// Descriptors of objects read lately by cached reads, so that reading
    /// a hot object again opens nothing (the open and close were 11% of a
    /// cached 64 KiB range's server time: docs/PERFORMANCE.md, D2). At
    /// most [`kept_descriptors`] of them; `None` when that is 0.
    #[cfg(target_os = "linux")]
    open: Option<quick_cache::sync::Cache<ObjectKey, std::sync::Arc<rustix::fd::OwnedFd>>>,
}

/// The most object descriptors cached reads keep open: none under a
/// descriptor limit of 4,096 (the server's connections and the store's
/// files need them), else an eighth of it, at most 4,096. `nofile` is the
/// process's soft `RLIMIT_NOFILE`; the server leaves these out of the
/// room it gives connections.
pub fn kept_descriptors(nofile: u64) -> usize {
    if nofile < 4096 { 0 } else { (nofile / 8).min(4096) as usize }
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
        let tmpfile = Path::new("/proc/self/fd").is_dir() && open_unnamed(&tmp, false).is_ok();
        Ok(Self {
            root: root.to_path_buf(),
            tmp,
            quarantine,
            policy,
            dirty_dirs: Mutex::new(HashSet::new()),
            dirs_made: (0..1024).map(|_| AtomicU64::new(0)).collect(),
            tmpfile,
            direct: AtomicBool::new(false),
            #[cfg(test)]
            refuse_direct: AtomicBool::new(false),
            written: AtomicU64::new(0),
            synced: Mutex::new(0),
            cached_reads: AtomicBool::new(true),
            #[cfg(target_os = "linux")]
            root_fd: rustix::fs::open(
                root,
                rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )?,
            #[cfg(target_os = "linux")]
            open: {
                let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
                match kept_descriptors(nofile.unwrap_or(u64::MAX)) {
                    0 => None,
                    n => Some(quick_cache::sync::Cache::new(n)),
                }
            },
        })
    }

    /// Writes new objects with `O_DIRECT` when `on` and the filesystem
    /// takes it (probed here with one 4 KiB write): their bytes go from a
    /// reused buffer to the device instead of being copied into the page
    /// cache first. Only objects written through an unnamed temp file
    /// (`O_TMPFILE`) are; see [`super::direct`]. Logs when asked for and
    /// not possible.
    #[must_use]
    pub fn with_direct_writes(self, on: bool) -> Self {
        let direct = on && self.tmpfile && probe_direct(&self.tmp);
        if on && !direct {
            tracing::info!(dir = %self.root.display(), "O_DIRECT (or O_TMPFILE) not taken here: objects are written through the page cache");
        }
        self.direct.store(direct, Ordering::Relaxed);
        self
    }

    /// Where quarantined objects go (`objects/quarantine`).
    pub fn quarantine_dir(&self) -> &Path {
        &self.quarantine
    }

    /// Whether new objects are being written with `O_DIRECT`.
    pub fn writes_direct(&self) -> bool {
        self.direct.load(Ordering::Relaxed)
    }

    fn dir_of(&self, id: &ChunkId) -> PathBuf {
        let b = id.as_bytes();
        self.root.join(format!("{:02x}", b[0])).join(format!("{:02x}", b[1]))
    }

    /// The path of an object (it may not exist): `root/ab/cd/<name>`, the
    /// name as [`ObjectKey::name`] gives it, built in one allocation (every
    /// read asks for it).
    pub fn path_of(&self, key: &ObjectKey) -> PathBuf {
        let root = self.root.as_os_str();
        let mut p = std::ffi::OsString::with_capacity(root.len() + 90);
        p.push(root);
        p.push("/");
        p.push(relative_path(key));
        PathBuf::from(p)
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
    fn write_new(&self, key: &ObjectKey, parts: &[&[u8]], path: &Path) -> io::Result<bool> {
        let linked = if self.tmpfile {
            let f = self.write_unnamed(parts)?;
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
            let tmp = self.write_temp(key, parts)?;
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

    /// An unnamed temp file holding `parts` (fsynced under `always`),
    /// written directly when the store does. A direct write the filesystem
    /// refuses turns direct writes off for good and is written again
    /// through the page cache.
    fn write_unnamed(&self, parts: &[&[u8]]) -> io::Result<File> {
        if self.writes_direct() {
            let written = open_unnamed(&self.tmp, true).and_then(|mut f| {
                #[cfg(test)]
                if self.refuse_direct.load(Ordering::Relaxed) {
                    return Err(rustix::io::Errno::INVAL.into());
                }
                self.fill(&mut f, parts, true).map(|()| f)
            });
            match written {
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                    tracing::warn!(error = %e, "a direct write was refused; objects go through the page cache from now on");
                    self.direct.store(false, Ordering::Relaxed);
                }
                other => return other,
            }
        }
        let mut f = open_unnamed(&self.tmp, false)?;
        self.fill(&mut f, parts, false)?;
        Ok(f)
    }

    /// Writes `parts` (with [`write_direct`] when `direct`: `f` was opened
    /// with `O_DIRECT`) and, under `always`, fsyncs it.
    fn fill(&self, f: &mut File, parts: &[&[u8]], direct: bool) -> io::Result<()> {
        if direct {
            write_direct(f, parts)?;
        } else {
            for part in parts {
                f.write_all(part)?;
            }
        }
        if self.policy == FsyncPolicy::Always {
            f.sync_all()?;
        }
        Ok(())
    }

    fn write_temp(&self, key: &ObjectKey, parts: &[&[u8]]) -> io::Result<PathBuf> {
        let tmp = self.tmp.join(format!("{key}.{:016x}.tmp", rand::random::<u64>()));
        match File::create(&tmp).and_then(|mut f| self.fill(&mut f, parts, false)) {
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

/// An unnamed temp file in `dir`, to be linked into place or dropped;
/// opened with `O_DIRECT` when `direct`.
fn open_unnamed(dir: &Path, direct: bool) -> io::Result<File> {
    use rustix::fs::{CWD, Mode, OFlags};
    let mut flags = OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC;
    if direct {
        flags |= OFlags::DIRECT;
    }
    let fd = rustix::fs::openat(CWD, dir, flags, Mode::from_raw_mode(0o644))?;
    Ok(File::from(fd))
}

/// Whether the filesystem under `dir` takes an `O_DIRECT` write into an
/// unnamed temp file (some refuse the open, others the write).
fn probe_direct(dir: &Path) -> bool {
    open_unnamed(dir, true).is_ok_and(|f| write_direct(&f, &[&[0u8; ALIGN]]).is_ok())
}

impl ObjectStore for FsObjects {
    fn put_if_absent(&self, key: &ObjectKey, parts: &[&[u8]]) -> io::Result<bool> {
        let dir = self.dir_of(&key.id);
        let path = dir.join(key.name());
        self.ensure_dir(&key.id, &dir)?;
        let written = self.write_new(key, parts, &path)?;
        if written {
            self.note_written(dir);
        }
        Ok(written)
    }

    fn replace(&self, key: &ObjectKey, parts: &[&[u8]]) -> io::Result<()> {
        let dir = self.dir_of(&key.id);
        self.ensure_dir(&key.id, &dir)?;
        let tmp = self.write_temp(key, parts)?;
        if let Err(e) = fs::rename(&tmp, dir.join(key.name())) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.forget_open(key);
        self.note_written(dir);
        Ok(())
    }

    fn get(&self, key: &ObjectKey) -> io::Result<Option<Vec<u8>>> {
        not_found_is(fs::read(self.path_of(key)).map(Some), None)
    }

    fn get_into(&self, key: &ObjectKey, buf: &mut Vec<u8>) -> io::Result<bool> {
        use std::io::Read;
        let Some(mut file) = open_existing(&self.path_of(key))? else { return Ok(false) };
        let len = file.metadata()?.len();
        buf.reserve(usize::try_from(len).unwrap_or(0));
        file.read_to_end(buf)?;
        Ok(true)
    }

    /// Positioned reads of just the bytes asked for: a Range request on a
    /// large chunk reads its slice, not the whole file.
    fn get_range(&self, key: &ObjectKey, start: u64, len: usize) -> io::Result<Option<Vec<u8>>> {
        let Some(file) = open_existing(&self.path_of(key))? else { return Ok(None) };
        read_at_most(&file, start, len).map(Some)
    }

    /// One open for both reads; the slice goes into `buf`'s spare
    /// capacity (a seek and a bounded `read_to_end`, which std fills
    /// without zeroing it first).
    fn get_head_and_range(
        &self,
        key: &ObjectKey,
        head: usize,
        start: u64,
        len: usize,
        buf: &mut Vec<u8>,
    ) -> io::Result<Option<Vec<u8>>> {
        use std::io::{Read, Seek, SeekFrom};
        let Some(mut file) = open_existing(&self.path_of(key))? else { return Ok(None) };
        let h = read_at_most(&file, 0, head)?;
        buf.reserve(len);
        file.seek(SeekFrom::Start(start))?;
        (&mut file).take(len as u64).read_to_end(buf)?;
        Ok(Some(h))
    }

    #[cfg(target_os = "linux")]
    fn answers_cached(&self) -> bool {
        self.cached_reads.load(Ordering::Relaxed)
    }

    #[cfg(target_os = "linux")]
    fn get_head_and_range_cached(
        &self,
        key: &ObjectKey,
        head: usize,
        start: u64,
        len: usize,
        buf: &mut [u8],
    ) -> Option<(Vec<u8>, usize)> {
        let fd = self.open_cached(key)?;
        let mut h = vec![0u8; head];
        // A short head (the end of the file) is for the blocking read; a
        // short slice is the caller's to judge by the head.
        (read_cached(&fd, 0, &mut h)? == head).then_some(())?;
        // The first `len` bytes are overwritten; any past them are left.
        Some((h, read_cached(&fd, start, buf.get_mut(..len)?)?))
    }

    #[cfg(target_os = "linux")]
    fn get_cached(&self, key: &ObjectKey, max: usize, buf: &mut [u8]) -> Option<usize> {
        // One byte more than `max`, so that a longer object is seen as such.
        let buf = buf.get_mut(..=max)?;
        let fd = self.open_cached(key)?;
        read_cached(&fd, 0, buf).filter(|&n| n <= max)
    }

    fn contains(&self, key: &ObjectKey) -> io::Result<bool> {
        not_found_is(fs::metadata(self.path_of(key)).map(|_| true), false)
    }

    fn delete_many(&self, keys: &[ObjectKey]) -> io::Result<usize> {
        for key in keys {
            not_found_is(fs::remove_file(self.path_of(key)), ())?;
            // Not kept open: a deleted object's space is freed now.
            self.forget_open(key);
        }
        Ok(keys.len())
    }

    fn list(
        &self,
        prefix: u8,
        start_after: Option<&ObjectKey>,
        limit: usize,
    ) -> io::Result<Vec<ObjectEntry>> {
        let mut out = Vec::new();
        // Where in this prefix the page starts: `start_after` may name an
        // id of an earlier prefix (start at the top) or a later one (empty).
        let after = match start_after {
            Some(a) if a.id.as_bytes()[0] > prefix => return Ok(out),
            Some(a) if a.id.as_bytes()[0] == prefix => Some(*a),
            _ => None,
        };
        if limit == 0 {
            return Ok(out);
        }
        let top = self.root.join(format!("{prefix:02x}"));
        let subdirs = match fs::read_dir(&top) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        // The `cd` directories at or past the start, in order: only their
        // names are read here, one directory of at most 256 entries.
        let from = after.map_or(0, |a| a.id.as_bytes()[1]);
        let mut seconds = Vec::new();
        for sub in subdirs {
            let sub = sub?;
            let name = sub.file_name();
            let Some(b) = name.to_str().filter(|n| n.len() == 2).and_then(|n| u8::from_str_radix(n, 16).ok())
            else {
                continue;
            };
            if b >= from && sub.file_type()?.is_dir() {
                seconds.push(b);
            }
        }
        seconds.sort_unstable();
        for b in seconds {
            let sub = top.join(format!("{b:02x}"));
            let mut keys: Vec<ObjectKey> = Vec::new();
            let entries = match fs::read_dir(&sub) {
                Ok(d) => d,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for obj in entries {
                // Anything not named as a key is not an object of ours.
                let name = obj?.file_name();
                match name.to_str().and_then(ObjectKey::parse) {
                    Some(key) if after.is_none_or(|a| key > a) => keys.push(key),
                    _ => {}
                }
            }
            keys.sort_unstable();
            for key in keys {
                let meta = match fs::metadata(sub.join(key.name())) {
                    Ok(m) => m,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                out.push(ObjectEntry {
                    key,
                    len: meta.len(),
                    modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
                if out.len() == limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    fn quarantine(&self, key: &ObjectKey) -> io::Result<bool> {
        let stamp =
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let dest = self.quarantine.join(format!("{key}.{stamp}"));
        let moved = not_found_is(fs::rename(self.path_of(key), dest).map(|_| true), false);
        self.forget_open(key);
        moved
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

/// The file at `path` opened for reading, `None` when it does not exist.
fn open_existing(path: &Path) -> io::Result<Option<fs::File>> {
    not_found_is(fs::File::open(path).map(Some), None)
}

impl FsObjects {
    /// The object at `key` opened only when the kernel's dentry cache holds
    /// every name on its path (`openat2` with `RESOLVE_CACHED`, relative to
    /// the object directory): no wait for a disk. `None` otherwise, and for
    /// good once the kernel (before 5.12) or a sandbox refuses the call.
    ///
    /// A descriptor kept from an earlier read is used while its file still
    /// has a name (`fstat`'s link count), which is what a replace (a rename
    /// over it) or a delete takes away, by this process or another. A file
    /// renamed elsewhere keeps its link: this store's own moves
    /// (quarantine) drop the descriptor, and nothing else moves objects
    /// while a server runs.
    #[cfg(target_os = "linux")]
    fn open_cached(&self, key: &ObjectKey) -> Option<std::sync::Arc<rustix::fd::OwnedFd>> {
        use rustix::fs::{Mode, OFlags, ResolveFlags};
        use rustix::io::Errno;
        if !self.cached_reads.load(Ordering::Relaxed) {
            return None;
        }
        if let Some(fd) = self.open.as_ref().and_then(|c| c.get(key)) {
            if rustix::fs::fstat(&*fd).is_ok_and(|st| st.st_nlink > 0) {
                return Some(fd);
            }
            self.forget_open(key);
        }
        let opened = rustix::fs::openat2(
            &self.root_fd,
            relative_path(key),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::CACHED,
        );
        match opened {
            Ok(fd) => {
                let fd = std::sync::Arc::new(fd);
                if let Some(c) = &self.open {
                    c.insert(*key, fd.clone());
                }
                Some(fd)
            }
            // No `openat2` (ENOSYS, or EPERM from a seccomp filter), or no
            // `RESOLVE_CACHED` (EINVAL): not asked again.
            Err(Errno::NOSYS | Errno::PERM | Errno::INVAL) => {
                self.cached_reads.store(false, Ordering::Relaxed);
                None
            }
            Err(_) => None,
        }
    }

    /// Drops the descriptor kept for `key`, if any.
    fn forget_open(&self, key: &ObjectKey) {
        #[cfg(target_os = "linux")]
        if let Some(c) = &self.open {
            c.remove(key);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = key;
    }

    /// Keeps at most `n` descriptors (none for 0) instead of what the
    /// descriptor limit gives ([`kept_descriptors`]): tests, whatever limit
    /// they run under.
    #[cfg(all(test, target_os = "linux"))]
    pub(super) fn keeping_descriptors(mut self, n: usize) -> Self {
        self.open = (n > 0).then(|| quick_cache::sync::Cache::new(n));
        self
    }

    /// How many object descriptors cached reads keep open now.
    #[cfg(all(test, target_os = "linux"))]
    pub(super) fn descriptors_open(&self) -> usize {
        self.open.as_ref().map_or(0, |c| c.len())
    }
}

/// An object's path below the object directory: `ab/cd/<key>`.
fn relative_path(key: &ObjectKey) -> String {
    use std::fmt::Write as _;
    let b = key.id.as_bytes();
    let mut p = String::with_capacity(90);
    let _ = write!(p, "{:02x}/{:02x}/{key}", b[0], b[1]);
    p
}

/// Reads `fd` from `start` into `buf` from what the page cache holds
/// (`RWF_NOWAIT`), until `buf` is full or the file ends: the bytes read, or
/// `None` when a page was not cached or the read failed.
#[cfg(target_os = "linux")]
pub(super) fn read_cached(fd: impl rustix::fd::AsFd, start: u64, buf: &mut [u8]) -> Option<usize> {
    use rustix::io::{Errno, ReadWriteFlags};
    let mut got = 0;
    while got < buf.len() {
        let mut iov = [io::IoSliceMut::new(&mut buf[got..])];
        match rustix::io::preadv2(&fd, &mut iov, start + got as u64, ReadWriteFlags::NOWAIT) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::INTR) => {}
            Err(_) => return None,
        }
    }
    Some(got)
}

/// Bytes `start..start + len` of `file` by positioned reads; fewer when the
/// file ends first.
fn read_at_most(file: &fs::File, start: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let got = read_full(file, start, &mut buf)?;
    buf.truncate(got);
    Ok(buf)
}

/// Fills `buf` from `file` at `at` by positioned reads; fewer bytes when
/// the file ends first. Returns how many.
pub(super) fn read_full(file: &fs::File, at: u64, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], at + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
