//! [`FsObjects`]: the object directory on a local filesystem.
//!
//! Each object lives at `objects/ab/<64 hex>`, under one of 256
//! directories named by its first byte and made when the store is made
//! (the key layout of the S3 engine, `chunks/ab/<64 hex>`). Stores made
//! before 2026-12 keep the two levels they were made with,
//! `objects/ab/cd/<64 hex>` (65,536 directories, each made by the first
//! insert that needs it); the file `objects/layout` says which ([`Fanout`]).
//! One level because a young store's inserts almost all made a directory
//! too under two: two inodes per chunk (docs/PERFORMANCE.md, U1); ext4 and
//! XFS find a name in a large directory by its hash.
//!
//! The store keeps generation 0 here (this store is not generational: its
//! create-only insert is exact under the store's locks). Another
//! generation, which only a test or a copied bucket would bring, is
//! `<64 hex>.<16 hex>` beside it, so the directory holds any [`ObjectKey`].
//! An insert writes a temp file, then hard-links it to its final name,
//! which fails when the name exists: an object is never replaced, and
//! "already there" is a dedup hit. Durability is a separate step,
//! [`ObjectStore::barrier`], reached as the [`FsyncPolicy`] says.
//!
//! A listing walks one first byte's objects in key order a page at a time.
//! Under one level a walk reads that byte's directory once, at its first
//! page, and pages through the sorted names it kept (one walk at a time is
//! kept; an object inserted after a walk's first page is not in that walk);
//! under two, a page reads one `cd` directory at a time.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

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

/// How an object directory fans out; the file `layout` at its root holds
/// the name (`ab` or `ab/cd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fanout {
    /// `ab/<name>`: 256 directories, made with the store (stores made
    /// since 2026-12).
    One,
    /// `ab/cd/<name>`: 65,536 directories, each made by the first insert
    /// that needs it (stores made before).
    Two,
}

/// The file at the object directory's root that names its [`Fanout`].
const LAYOUT_FILE: &str = "layout";

impl Fanout {
    /// The name `layout` holds.
    pub fn name(self) -> &'static str {
        match self {
            Fanout::One => "ab",
            Fanout::Two => "ab/cd",
        }
    }

    /// The fan-out of the object directory at `root`, from its `layout`
    /// file; without one (a new store, or one made before the file was)
    /// decided here and written down durably: [`Fanout::Two`] when an `ab`
    /// directory holds a `cd` directory, [`Fanout::One`] otherwise.
    ///
    /// # Errors
    /// I/O failures; a `layout` naming a fan-out this build does not know
    /// (`InvalidData`, naming the file).
    pub fn of(root: &Path) -> io::Result<Fanout> {
        let file = root.join(LAYOUT_FILE);
        match fs::read_to_string(&file) {
            Ok(s) => {
                return [Fanout::One, Fanout::Two].into_iter().find(|f| f.name() == s.trim()).ok_or_else(
                    || {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "{}: unknown layout `{}` (this build knows `ab` and `ab/cd`)",
                                file.display(),
                                s.trim()
                            ),
                        )
                    },
                );
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let fanout = if has_second_level(root)? { Fanout::Two } else { Fanout::One };
        match fanout.write_down(root) {
            // A store on read-only media is read as it is (decided again
            // at each open, the same way).
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied
                ) =>
            {
                Ok(fanout)
            }
            other => other.map(|()| fanout),
        }
    }

    /// Writes `root/layout` whole, then renames it into place and syncs
    /// the directory: a crash leaves either no file (decided again, the
    /// same way) or the whole name.
    fn write_down(self, root: &Path) -> io::Result<()> {
        let tmp = root.join(format!("{LAYOUT_FILE}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(format!("{}\n", self.name()).as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, root.join(LAYOUT_FILE))?;
        File::open(root)?.sync_all()
    }
}

/// A directory name of two lowercase hex digits (a byte of an id).
fn hex_byte(name: &std::ffi::OsStr) -> Option<u8> {
    let n = name
        .to_str()
        .filter(|n| n.len() == 2 && n.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))?;
    u8::from_str_radix(n, 16).ok()
}

/// Whether some `root/ab` directory holds an `ab/cd` directory.
fn has_second_level(root: &Path) -> io::Result<bool> {
    let top = match fs::read_dir(root) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    for e in top {
        let e = e?;
        if hex_byte(&e.file_name()).is_none() || !e.file_type()?.is_dir() {
            continue;
        }
        for sub in fs::read_dir(e.path())? {
            let sub = sub?;
            if hex_byte(&sub.file_name()).is_some() && sub.file_type()?.is_dir() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Makes the 256 first-level directories that are missing, and syncs the
/// root once when it made any (so that no object is linked under a
/// directory whose own entry a crash could lose).
fn make_first_level(root: &Path) -> io::Result<()> {
    let mut made = false;
    for b in 0..=255u8 {
        match fs::create_dir(root.join(format!("{b:02x}"))) {
            Ok(()) => made = true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    if made {
        File::open(root)?.sync_all()?;
    }
    Ok(())
}

/// The object directory on a local filesystem.
pub struct FsObjects {
    root: PathBuf,
    tmp: PathBuf,
    quarantine: PathBuf,
    policy: FsyncPolicy,
    dirty_dirs: Mutex<HashSet<PathBuf>>,
    /// How the object directories fan out.
    fanout: Fanout,
    /// Two levels: which of the 65,536 `ab/cd` directories are known to
    /// exist (a bit each), so that an insert does not ask the filesystem
    /// every time. (One level: all 256 are made at open.)
    dirs_made: Vec<AtomicU64>,
    /// One level: the walk in progress, its first byte and its names sorted.
    walk: Mutex<Option<(u8, std::sync::Arc<Vec<ObjectKey>>)>>,
    /// Whether the filesystem takes `O_TMPFILE` (unnamed temp files) and
    /// `/proc` is there to link them: probed once at open.
    pub(super) tmpfile: bool,
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
        let fanout = Fanout::of(root)?;
        if fanout == Fanout::One {
            make_first_level(root)?;
        }
        Ok(Self {
            root: root.to_path_buf(),
            tmp,
            quarantine,
            policy,
            dirty_dirs: Mutex::new(HashSet::new()),
            fanout,
            dirs_made: match fanout {
                Fanout::One => Vec::new(),
                Fanout::Two => (0..1024).map(|_| AtomicU64::new(0)).collect(),
            },
            walk: Mutex::new(None),
            tmpfile,
            written: AtomicU64::new(0),
            synced: Mutex::new(0),
        })
    }

    /// How this store's directories fan out.
    pub fn fanout(&self) -> Fanout {
        self.fanout
    }

    fn dir_of(&self, id: &ChunkId) -> PathBuf {
        let b = id.as_bytes();
        let top = self.root.join(format!("{:02x}", b[0]));
        match self.fanout {
            Fanout::One => top,
            Fanout::Two => top.join(format!("{:02x}", b[1])),
        }
    }

    /// The path of an object (it may not exist): `root/ab/<name>` (or
    /// `root/ab/cd/<name>`, [`Fanout::Two`]), the name as
    /// [`ObjectKey::name`] gives it, built in one allocation (every read
    /// asks for it).
    pub fn path_of(&self, key: &ObjectKey) -> PathBuf {
        use std::fmt::Write as _;
        let b = key.id.as_bytes();
        let root = self.root.as_os_str();
        let mut p = std::ffi::OsString::with_capacity(root.len() + 90);
        p.push(root);
        let mut tail = String::with_capacity(90);
        let _ = match self.fanout {
            Fanout::One => write!(tail, "/{:02x}/{key}", b[0]),
            Fanout::Two => write!(tail, "/{:02x}/{:02x}/{key}", b[0], b[1]),
        };
        p.push(&tail);
        PathBuf::from(p)
    }

    /// Makes sure an object's directory exists (under one level, all do).
    fn ensure_dir(&self, id: &ChunkId, dir: &Path) -> io::Result<()> {
        if self.fanout == Fanout::One {
            return Ok(());
        }
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
            let mut f = open_unnamed(&self.tmp)?;
            self.fill(&mut f, parts)?;
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

    /// Writes `encoded` and, under `always`, fsyncs it.
    fn fill(&self, f: &mut File, parts: &[&[u8]]) -> io::Result<()> {
        for part in parts {
            f.write_all(part)?;
        }
        if self.policy == FsyncPolicy::Always {
            f.sync_all()?;
        }
        Ok(())
    }

    fn write_temp(&self, key: &ObjectKey, parts: &[&[u8]]) -> io::Result<PathBuf> {
        let tmp = self.tmp.join(format!("{key}.{:016x}.tmp", rand::random::<u64>()));
        match File::create(&tmp).and_then(|mut f| self.fill(&mut f, parts)) {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// A page of a walk under one level (see the module): the sorted
    /// names of `root/ab` are read at the walk's first page (`start_after`
    /// not in this byte) and kept for its later pages.
    fn list_one_level(
        &self,
        prefix: u8,
        start_after: Option<&ObjectKey>,
        limit: usize,
    ) -> io::Result<Vec<ObjectEntry>> {
        let after = match start_after {
            Some(a) if a.id.as_bytes()[0] > prefix => return Ok(Vec::new()),
            Some(a) if a.id.as_bytes()[0] == prefix => Some(*a),
            _ => None,
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let dir = self.root.join(format!("{prefix:02x}"));
        let kept = match (&after, lock(&self.walk).as_ref()) {
            (Some(_), Some((p, keys))) if *p == prefix => Some(keys.clone()),
            _ => None,
        };
        let keys = match kept {
            Some(keys) => keys,
            None => {
                let mut keys = Vec::new();
                let entries = match fs::read_dir(&dir) {
                    Ok(d) => d,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(e),
                };
                for obj in entries {
                    // Anything not named as a key is not an object of ours.
                    if let Some(key) = obj?.file_name().to_str().and_then(ObjectKey::parse) {
                        keys.push(key);
                    }
                }
                keys.sort_unstable();
                let keys = std::sync::Arc::new(keys);
                *lock(&self.walk) = Some((prefix, keys.clone()));
                keys
            }
        };
        let from = after.map_or(0, |a| keys.partition_point(|k| *k <= a));
        let mut out = Vec::new();
        for key in &keys[from..] {
            let Some(entry) = entry_of(&dir, *key)? else { continue };
            out.push(entry);
            if out.len() == limit {
                return Ok(out);
            }
        }
        // The walk has ended: let its names go.
        let mut walk = lock(&self.walk);
        if walk.as_ref().is_some_and(|(p, k)| *p == prefix && std::sync::Arc::ptr_eq(k, &keys)) {
            *walk = None;
        }
        Ok(out)
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
        self.note_written(dir);
        Ok(())
    }

    fn get(&self, key: &ObjectKey) -> io::Result<Option<Vec<u8>>> {
        not_found_is(fs::read(self.path_of(key)).map(Some), None)
    }

    fn get_into(&self, key: &ObjectKey, buf: &mut Vec<u8>) -> io::Result<bool> {
        use std::io::Read;
        buf.clear();
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
        buf.clear();
        buf.reserve(len);
        file.seek(SeekFrom::Start(start))?;
        (&mut file).take(len as u64).read_to_end(buf)?;
        Ok(Some(h))
    }

    fn contains(&self, key: &ObjectKey) -> io::Result<bool> {
        not_found_is(fs::metadata(self.path_of(key)).map(|_| true), false)
    }

    fn delete_many(&self, keys: &[ObjectKey]) -> io::Result<usize> {
        for key in keys {
            not_found_is(fs::remove_file(self.path_of(key)), ())?;
        }
        Ok(keys.len())
    }

    fn list(
        &self,
        prefix: u8,
        start_after: Option<&ObjectKey>,
        limit: usize,
    ) -> io::Result<Vec<ObjectEntry>> {
        if self.fanout == Fanout::One {
            return self.list_one_level(prefix, start_after, limit);
        }
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
            let Some(b) = hex_byte(&name) else { continue };
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
                let Some(entry) = entry_of(&sub, key)? else { continue };
                out.push(entry);
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
        not_found_is(fs::rename(self.path_of(key), dest).map(|_| true), false)
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

/// The listing entry of `key` in `dir`; `None` when it has gone.
fn entry_of(dir: &Path, key: ObjectKey) -> io::Result<Option<ObjectEntry>> {
    let meta = match fs::metadata(dir.join(key.name())) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(ObjectEntry {
        key,
        len: meta.len(),
        modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    }))
}

/// The file at `path` opened for reading, `None` when it does not exist.
fn open_existing(path: &Path) -> io::Result<Option<fs::File>> {
    not_found_is(fs::File::open(path).map(Some), None)
}

/// Bytes `start..start + len` of `file` by positioned reads; fewer when the
/// file ends first.
fn read_at_most(file: &fs::File, start: u64, len: usize) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut buf[got..], start + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}
