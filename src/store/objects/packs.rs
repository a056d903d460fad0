//! Pack files (docs/PACKS.md): chunk objects appended to shared files
//! instead of one file each, so that a new chunk costs no inode and no
//! directory entry, and a read no `openat`.
//!
//! `objects/packs/<16 hex>` is pack number `n`; a process numbers new packs
//! past every pack there, so no number is reused while a location read
//! from a row may still be held (a restart drops them all).
//! A record is an object exactly as the directory stores one (the 56-byte
//! header, then the payload), padded with zeros to a [`PAGE`] boundary, so
//! a pack describes itself: [`Packs::scan`] finds every record from its
//! start. Where a record is, is its [`super::ObjectKey`]'s generation:
//! the pack number in the high 32 bits, the page in the low 32
//! ([`location`]); generation 0 stays the loose object
//! (`objects/ab/cd/<64 hex>`).
//!
//! Each [`Writer`] appends to a pack of its own, so appends take no lock;
//! a pack is closed once it reaches the pack size, or when a backup seals
//! it ([`Packs::seal`]) before linking it. A process never appends
//! to a pack an earlier process wrote: after a crash, a torn tail holds
//! only bytes no row names (rows are written after the barrier), which
//! compaction reclaims. Durability follows the [`FsyncPolicy`]: `batch`
//! makes [`Packs::sync`] `fdatasync` each pack appended to since the last
//! one; `always` syncs every append; `never` nothing. A new pack's
//! directory entry is synced when it is made.
//!
//! Appends go to the device with `O_DIRECT` where the object directory
//! writes so ([`Packs::with_direct_writes`], `storage.direct_writes`; see
//! [`super::direct`]): a record padded to whole pages needs no tail through
//! the page cache. Reads are positioned reads through the page cache on
//! descriptors of their own.
//!
//! A pack is *pinned* while a writer appends to it or a put that appended
//! to it has not released its [`Writer`] (its rows may not be written
//! yet): compaction leaves pinned packs alone.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::direct::pwritev_all;
use super::fs::read_full;
use super::{FsyncPolicy, lock, not_found_is};
use crate::store::object::{HEADER_LEN, Header};

/// Records start on multiples of this many bytes.
pub const PAGE: u64 = 4096;

/// The most slices one buffered append hands the kernel (under `IOV_MAX`,
/// 1,024 on Linux).
const MAX_SLICES: usize = 1000;

/// Packs whose descriptors reads keep open.
const KEPT_FILES: usize = 256;

/// The generation naming the record at byte `offset` (a multiple of
/// [`PAGE`]) of pack `pack`.
pub fn location(pack: u32, offset: u64) -> u64 {
    (u64::from(pack) << 32) | (offset / PAGE)
}

/// The pack a packed generation names (0 for a loose object).
pub fn pack_of(generation: u64) -> u32 {
    (generation >> 32) as u32
}

/// The byte offset within its pack of the record a generation names.
pub fn offset_of(generation: u64) -> u64 {
    (generation & 0xffff_ffff) * PAGE
}

/// One pack file as [`Packs::list`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackInfo {
    pub number: u32,
    /// Bytes in the file.
    pub len: u64,
    /// A writer appends to it or a put that did has not finished.
    pub pinned: bool,
}

/// A pack a writer appends to.
struct OpenPack {
    number: u32,
    file: Arc<File>,
    len: u64,
    /// Opened with `O_DIRECT`.
    direct: bool,
}

/// The pack files of one object directory.
pub struct Packs {
    dir: PathBuf,
    policy: FsyncPolicy,
    pack_size: u64,
    appending: bool,
    /// Whether appends are written with `O_DIRECT`.
    direct: AtomicBool,
    next: AtomicU32,
    /// Packs numbered below this are sealed ([`Packs::seal`]): a writer
    /// that holds one closes it when done instead of leaving it idle.
    sealed_below: AtomicU32,
    /// Open packs no writer holds now, for the next writer.
    idle: Mutex<Vec<OpenPack>>,
    /// Pins per pack (see the module docs).
    pins: Mutex<HashMap<u32, usize>>,
    /// Packs appended to since the last [`Packs::sync`] (policy `batch`).
    dirty: Mutex<HashMap<u32, Arc<File>>>,
    /// Held through a sync, so that a sync that finds nothing dirty
    /// returns only once the one running has finished.
    syncing: Mutex<()>,
    /// Descriptors for reads.
    files: quick_cache::sync::Cache<u32, Arc<File>>,
}

impl Packs {
    /// Opens (creating when needed) the pack directory `dir`. New packs
    /// are numbered past every pack there. `appending`: whether new chunks
    /// go to packs (`storage.packs`); packs are read either way.
    ///
    /// # Errors
    /// I/O failures creating or reading the directory.
    pub fn open(dir: &Path, policy: FsyncPolicy, pack_size: u64, appending: bool) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut last = 0u32;
        for e in fs::read_dir(dir)? {
            if let Some(n) = e?.file_name().to_str().and_then(parse_name) {
                last = last.max(n);
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            policy,
            pack_size: pack_size.max(PAGE),
            appending,
            direct: AtomicBool::new(false),
            next: AtomicU32::new(last + 1),
            sealed_below: AtomicU32::new(0),
            idle: Mutex::new(Vec::new()),
            pins: Mutex::new(HashMap::new()),
            dirty: Mutex::new(HashMap::new()),
            syncing: Mutex::new(()),
            files: quick_cache::sync::Cache::new(KEPT_FILES),
        })
    }

    /// Appends with `O_DIRECT` when `on`: pass what the object directory
    /// on the same filesystem found it takes
    /// ([`super::FsObjects::writes_direct`]). An append the filesystem
    /// refuses so turns direct appends off for good and is written again
    /// through the page cache.
    #[must_use]
    pub fn with_direct_writes(self, on: bool) -> Self {
        self.direct.store(on, Ordering::Relaxed);
        self
    }

    /// Whether appends are written with `O_DIRECT`.
    pub fn writes_direct(&self) -> bool {
        self.direct.load(Ordering::Relaxed)
    }

    /// Whether new chunks are appended here (else written as loose objects).
    pub fn appending(&self) -> bool {
        self.appending
    }

    fn path(&self, number: u32) -> PathBuf {
        self.dir.join(format!("{number:016x}"))
    }

    /// A writer, with an open pack of its own when one is idle.
    pub fn writer(&self) -> Writer<'_> {
        let open = lock(&self.idle).pop();
        Writer { packs: self, open, touched: Vec::new() }
    }

    /// Makes a new, empty pack (its name durable unless policy `never`).
    fn create(&self) -> io::Result<OpenPack> {
        // Numbered and pinned in one step, so that a seal that finds this
        // number below its own finds it pinned too ([`Packs::seal`]).
        let number = {
            let mut pins = lock(&self.pins);
            let number = self.next.fetch_add(1, Ordering::Relaxed);
            if number == u32::MAX {
                return Err(io::Error::other("pack numbers exhausted"));
            }
            *pins.entry(number).or_default() += 1;
            number
        };
        let made = self.make(number);
        if made.is_err() {
            self.unpin(number);
        }
        made
    }

    /// Creates pack `number`, pinned by the caller.
    fn make(&self, number: u32) -> io::Result<OpenPack> {
        let direct = self.writes_direct();
        let mut options = OpenOptions::new();
        options.read(true).write(true).create_new(true);
        if direct {
            use std::os::unix::fs::OpenOptionsExt;
            options.custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32);
        }
        let file = options.open(self.path(number))?;
        if self.policy != FsyncPolicy::Never {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(OpenPack { number, file: Arc::new(file), len: 0, direct })
    }

    fn unpin(&self, number: u32) {
        let mut pins = lock(&self.pins);
        if let Some(n) = pins.get_mut(&number) {
            *n -= 1;
            if *n == 0 {
                pins.remove(&number);
            }
        }
    }

    /// Makes every append that returned before this call durable
    /// (`fdatasync` of each pack appended to since the last sync; nothing
    /// under policies `always`, whose appends are synced already, and
    /// `never`).
    ///
    /// # Errors
    /// I/O failures; the packs not synced stay due for the next call.
    pub fn sync(&self) -> io::Result<()> {
        if self.policy != FsyncPolicy::Batch {
            return Ok(());
        }
        let _one = lock(&self.syncing);
        let due: Vec<(u32, Arc<File>)> = lock(&self.dirty).drain().collect();
        for (i, (_, file)) in due.iter().enumerate() {
            if let Err(e) = file.sync_data() {
                lock(&self.dirty).extend(due[i..].iter().cloned());
                return Err(e);
            }
        }
        Ok(())
    }

    /// A descriptor of pack `number` for reads; `None` when it is gone.
    fn file(&self, number: u32) -> io::Result<Option<Arc<File>>> {
        if let Some(f) = self.files.get(&number) {
            return Ok(Some(f));
        }
        let Some(f) = not_found_is(File::open(self.path(number)).map(Some), None)? else { return Ok(None) };
        let f = Arc::new(f);
        self.files.insert(number, f.clone());
        Ok(Some(f))
    }

    /// The pack and offset a packed generation names, with the pack's
    /// descriptor; `None` when the pack is gone (compacted away).
    fn at(&self, generation: u64) -> io::Result<Option<(Arc<File>, u64)>> {
        Ok(self.file(pack_of(generation))?.map(|f| (f, offset_of(generation))))
    }

    /// The record at `generation` appended to `buf` (what it held is
    /// kept): its header and payload, as long as its header says, or what
    /// the pack holds there when that is no header. `false` when the pack
    /// is gone. Reads to `buf`'s capacity at once when that holds the
    /// record (one `pread`).
    ///
    /// # Errors
    /// I/O failures.
    pub fn read_into(&self, generation: u64, buf: &mut Vec<u8>) -> io::Result<bool> {
        let Some((file, at)) = self.at(generation)? else { return Ok(false) };
        let base = buf.len();
        let guess = buf.capacity().max(base + HEADER_LEN);
        buf.resize(guess, 0);
        let n = read_full(&file, at, &mut buf[base..])?;
        buf.truncate(base + n);
        let Ok(h) = Header::decode(&buf[base..]) else { return Ok(true) };
        let want = base + record_len(&h) as usize;
        if want <= buf.len() {
            buf.truncate(want);
        } else {
            let have = buf.len();
            buf.resize(want, 0);
            let n = read_full(&file, at + (have - base) as u64, &mut buf[have..])?;
            buf.truncate(have + n);
        }
        Ok(true)
    }

    /// The valid header at byte `at` of `file`, if there is one.
    fn header_in(file: &File, at: u64) -> io::Result<Option<Header>> {
        let mut h = [0u8; HEADER_LEN];
        let n = read_full(file, at, &mut h)?;
        Ok(Header::decode(&h[..n]).ok())
    }

    /// Bytes `start..start + len` of the record at `generation`, fewer
    /// where it ends first (by its header; by the pack's end where there is
    /// no header); `None` when the pack is gone.
    ///
    /// # Errors
    /// I/O failures.
    pub fn read_range(&self, generation: u64, start: u64, len: usize) -> io::Result<Option<Vec<u8>>> {
        let mut buf = Vec::new();
        Ok(self.read_head_and_range(generation, HEADER_LEN, start, len, &mut buf)?.map(|_| buf))
    }

    /// [`super::ObjectStore::get_head_and_range`] of a record: its first
    /// `head` bytes, and bytes `start..start + len` appended to `buf`.
    ///
    /// # Errors
    /// I/O failures.
    pub fn read_head_and_range(
        &self,
        generation: u64,
        head: usize,
        start: u64,
        len: usize,
        buf: &mut Vec<u8>,
    ) -> io::Result<Option<Vec<u8>>> {
        let Some((file, at)) = self.at(generation)? else { return Ok(None) };
        let mut h = vec![0u8; head];
        let n = read_full(&file, at, &mut h)?;
        h.truncate(n);
        let end = Header::decode(&h).map_or(u64::MAX, |x| record_len(&x));
        let len = end.saturating_sub(start).min(len as u64) as usize;
        let base = buf.len();
        buf.resize(base + len, 0);
        let n = read_full(&file, at + start, &mut buf[base..])?;
        buf.truncate(base + n);
        Ok(Some(h))
    }

    /// [`super::ObjectStore::get_head_and_range_cached`] of a record: from
    /// the page cache alone (`RWF_NOWAIT`), `None` for anything else.
    #[cfg(target_os = "linux")]
    pub fn read_head_and_range_cached(
        &self,
        generation: u64,
        head: usize,
        start: u64,
        len: usize,
        buf: &mut [u8],
    ) -> Option<(Vec<u8>, usize)> {
        let buf = buf.get_mut(..len)?;
        let file = self.files.get(&pack_of(generation))?;
        let at = offset_of(generation);
        let mut h = vec![0u8; head];
        (super::fs::read_cached(&*file, at, &mut h)? == head).then_some(())?;
        let end = record_len(&Header::decode(&h).ok()?);
        let len = end.saturating_sub(start).min(len as u64) as usize;
        Some((h, super::fs::read_cached(&*file, at + start, &mut buf[..len])?))
    }

    /// [`super::ObjectStore::get_cached`] of a record: the whole record into
    /// `buf[..n]` from the page cache alone when it is at most `max` bytes
    /// (`None` when `buf` holds fewer than `max.max(HEADER_LEN)`).
    #[cfg(target_os = "linux")]
    pub fn read_cached(&self, generation: u64, max: usize, buf: &mut [u8]) -> Option<usize> {
        let buf = buf.get_mut(..max.max(HEADER_LEN))?;
        let file = self.files.get(&pack_of(generation))?;
        let at = offset_of(generation);
        (super::fs::read_cached(&*file, at, &mut buf[..HEADER_LEN])? == HEADER_LEN).then_some(())?;
        let want = record_len(&Header::decode(&buf[..HEADER_LEN]).ok()?) as usize;
        if want > max {
            return None;
        }
        let rest = super::fs::read_cached(&*file, at + HEADER_LEN as u64, &mut buf[HEADER_LEN..want])?;
        Some(HEADER_LEN + rest)
    }

    /// Whether the record at `generation` has a valid header (its payload
    /// is not read).
    ///
    /// # Errors
    /// I/O failures.
    pub fn header_at(&self, generation: u64) -> io::Result<Option<Header>> {
        let Some((file, at)) = self.at(generation)? else { return Ok(None) };
        Self::header_in(&file, at)
    }

    /// Closes each idle open pack (one no writer holds now) for which
    /// `close` answers `true`, given its number and length in bytes: no
    /// writer appends to it again, and it is unpinned once no put that
    /// appended to it holds its writer, so compaction may take it. Returns
    /// how many were closed. Compaction closes open packs that are mostly
    /// dead, which would otherwise keep deleted bytes until they fill.
    pub fn close_idle(&self, mut close: impl FnMut(u32, u64) -> bool) -> usize {
        let closing: Vec<OpenPack> = {
            let mut idle = lock(&self.idle);
            let (closing, kept) =
                std::mem::take(&mut *idle).into_iter().partition(|o| close(o.number, o.len));
            *idle = kept;
            closing
        };
        for o in &closing {
            self.unpin(o.number);
        }
        closing.len()
    }

    /// Seals every pack made so far: no writer takes one of them again
    /// (the idle ones are closed now, those a writer holds when it lets
    /// them go), so once [`Packs::pinned_below`] is false, none of them
    /// changes again but by its deletion. Returns the first number not
    /// sealed. A backup links packs after this.
    pub fn seal(&self) -> u32 {
        let below = self.next.load(Ordering::Relaxed);
        // Under the idle list's lock, as a writer letting its pack go
        // reads it: that pack is closed either here or by the writer.
        {
            let _idle = lock(&self.idle);
            self.sealed_below.fetch_max(below, Ordering::Relaxed);
        }
        self.close_idle(|n, _| n < below);
        below
    }

    /// Whether a writer or a put not yet finished holds a pack numbered
    /// below `below`.
    pub fn pinned_below(&self, below: u32) -> bool {
        lock(&self.pins).keys().any(|&n| n < below)
    }

    /// Every pack, in number order.
    ///
    /// # Errors
    /// I/O failures reading the directory.
    pub fn list(&self) -> io::Result<Vec<PackInfo>> {
        let pins = lock(&self.pins).clone();
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir)? {
            let e = e?;
            let Some(number) = e.file_name().to_str().and_then(parse_name) else { continue };
            let len = match e.metadata() {
                Ok(m) => m.len(),
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            };
            out.push(PackInfo { number, len, pinned: pins.contains_key(&number) });
        }
        out.sort_unstable_by_key(|p| p.number);
        Ok(out)
    }

    /// Calls `f` with each record of pack `number` in order: its generation
    /// and its bytes (header and payload; the header is valid, the payload
    /// unchecked). Stops at the first place that holds no valid header, or
    /// a record the file ends inside (a torn tail): returns that offset, the
    /// pack's end when every byte was read. `Ok(None)` when the pack is gone.
    ///
    /// # Errors
    /// I/O failures, or `f`'s.
    pub fn scan<E: From<io::Error>>(
        &self,
        number: u32,
        mut f: impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<Option<u64>, E> {
        let Some(file) = not_found_is(File::open(self.path(number)).map(Some), None)? else {
            return Ok(None);
        };
        let end = file.metadata()?.len();
        let mut at = 0u64;
        let mut buf = Vec::new();
        while at + HEADER_LEN as u64 <= end {
            let Some(len) = Self::header_in(&file, at)?.map(|h| record_len(&h)) else { break };
            if at + len > end {
                break;
            }
            buf.resize(len as usize, 0);
            let n = read_full(&file, at, &mut buf)?;
            if n < buf.len() {
                break;
            }
            f(location(number, at), &buf)?;
            at += len.div_ceil(PAGE) * PAGE;
        }
        Ok(Some(at.min(end)))
    }

    /// Removes pack `number` (gone already counts as removed).
    ///
    /// # Errors
    /// I/O failures.
    pub fn delete(&self, number: u32) -> io::Result<()> {
        self.files.remove(&number);
        not_found_is(fs::remove_file(self.path(number)), ())
    }
}

/// Appends records for one caller; returns its pack to the idle ones and
/// releases its pins when dropped (see the module docs).
pub struct Writer<'a> {
    packs: &'a Packs,
    open: Option<OpenPack>,
    /// Packs this writer appended to, pinned until it is dropped.
    touched: Vec<u32>,
}

impl Writer<'_> {
    /// Appends the record whose bytes are the concatenation of `parts`
    /// (an object's header and payload), padded to a [`PAGE`] boundary,
    /// and returns its location ([`location`]). Durable after the next
    /// [`Packs::sync`] (at once under policy `always`).
    ///
    /// # Errors
    /// As [`Writer::append_all`].
    pub fn append(&mut self, parts: &[&[u8]]) -> io::Result<u64> {
        Ok(self.append_all(&[parts])?[0])
    }

    /// Appends `records` (each the concatenation of its parts, padded to a
    /// [`PAGE`] boundary) in order and returns their locations. The records
    /// that fit the open pack go in one write (one `pwritev`; with
    /// `O_DIRECT` one request of many blocks, see
    /// [`super::direct::write_direct_at`]), and under policy `always`
    /// one `fdatasync`; a pack that reaches the pack size is closed and the
    /// rest go to a new one. Durable after the next [`Packs::sync`] (at
    /// once under `always`).
    ///
    /// # Errors
    /// I/O failures; the pack written to is then left for a new one (a
    /// partial record in it is named by no row).
    pub fn append_all(&mut self, records: &[&[&[u8]]]) -> io::Result<Vec<u64>> {
        static ZEROS: [u8; PAGE as usize] = [0; PAGE as usize];
        let packs = self.packs;
        let mut out = Vec::with_capacity(records.len());
        let mut rest = records;
        while !rest.is_empty() {
            if self.open.is_none() {
                self.open = Some(packs.create()?);
            }
            let Some(open) = self.open.as_mut() else { unreachable!("opened above") };
            let (number, file, from, direct) = (open.number, open.file.clone(), open.len, open.direct);
            // The records this write takes: at least one (the open pack is
            // not full), then while the pack stays under its size.
            let (mut at, mut taken, mut slices) = (from, 0, Vec::new());
            for rec in rest {
                if taken > 0 && (packs.is_full(at) || slices.len() + rec.len() + 1 > MAX_SLICES) {
                    break;
                }
                let len: u64 = rec.iter().map(|p| p.len() as u64).sum();
                let pad = (len.div_ceil(PAGE) * PAGE - len) as usize;
                out.push(location(number, at));
                slices.extend_from_slice(rec);
                slices.push(&ZEROS[..pad]);
                (at, taken) = (at + len + pad as u64, taken + 1);
            }
            let written =
                packs.write_records(&file, direct, &slices, from).and_then(|()| match packs.policy {
                    FsyncPolicy::Always => file.sync_data(),
                    _ => Ok(()),
                });
            if let Err(e) = written {
                self.close();
                return Err(e);
            }
            open.len = at;
            let full = packs.is_full(at);
            if packs.policy == FsyncPolicy::Batch {
                lock(&packs.dirty).entry(number).or_insert(file);
            }
            if !self.touched.contains(&number) {
                self.touched.push(number);
                *lock(&packs.pins).entry(number).or_default() += 1;
            }
            if full {
                self.close();
            }
            rest = &rest[taken..];
        }
        Ok(out)
    }

    /// Closes the open pack: no writer appends to it again.
    fn close(&mut self) {
        if let Some(o) = self.open.take() {
            self.packs.unpin(o.number);
        }
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        if let Some(o) = self.open.take() {
            let mut idle = lock(&self.packs.idle);
            if o.number < self.packs.sealed_below.load(Ordering::Relaxed) {
                drop(idle);
                self.packs.unpin(o.number);
            } else {
                idle.push(o);
            }
        }
        for n in self.touched.drain(..) {
            self.packs.unpin(n);
        }
    }
}

impl Packs {
    /// Whether a pack `len` bytes long takes no more records: it reached
    /// the pack size, or its pages the 32 bits of a location.
    fn is_full(&self, len: u64) -> bool {
        len >= self.pack_size || len / PAGE >= u64::from(u32::MAX)
    }

    /// Writes `parts` (records and their padding: whole pages) at `at` of
    /// the open pack `file`: directly when it was opened with `O_DIRECT`
    /// (`direct`) and appends still are, else through the page cache.
    fn write_records(&self, file: &File, direct: bool, parts: &[&[u8]], at: u64) -> io::Result<()> {
        if direct && self.writes_direct() {
            match super::direct::write_direct_at(file, parts, at) {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                    tracing::warn!(error = %e, "a direct append was refused; packs are appended through the page cache from now on");
                    self.direct.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        if direct {
            // Opened with `O_DIRECT` before direct appends were turned off.
            rustix::fs::fcntl_setfl(file, rustix::fs::OFlags::empty())?;
        }
        let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        pwritev_all(file, &mut slices, at)
    }
}

/// The bytes of the record `h` heads (header and payload, no padding).
fn record_len(h: &Header) -> u64 {
    HEADER_LEN as u64 + u64::from(h.stored_len)
}

/// A pack's number from its file name (16 lower-case hex digits, not 0).
pub(crate) fn parse_name(name: &str) -> Option<u32> {
    if name.len() != 16 || !name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(name, 16).ok().and_then(|n| u32::try_from(n).ok()).filter(|n| *n != 0)
}
