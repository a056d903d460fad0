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
//! Objects are addressed by an [`ObjectKey`]: the chunk id and a
//! generation (docs/DESIGN.md, "Generations"; scale-out design §3 and §5).
//! Generation 0 is the name every object had before generations
//! (`<64 hex>`); any other generation `g` is `<64 hex>.<g as 16 hex>`. A
//! store that is [`ObjectStore::generational`] gets a fresh random
//! generation for every write of a chunk, so a key is never written twice
//! and a late DELETE can only hit garbage; the others (the directory) keep
//! generation 0 and create-only puts.
//!
//! - [`FsObjects`] (`fs.rs`): `objects/ab/cd/<64 hex>` on a local filesystem;
//!   not generational.
//! - [`S3Objects`] (`s3.rs`, feature `s3`): `{prefix}chunks/ab/<64 hex>.<16 hex>`
//!   in an S3 bucket; generational. Garage is the reference engine.
//! - [`PackedObjects`] (`packed.rs`): the directory with pack files
//!   (`packs.rs`, docs/PACKS.md): generation 0 a loose object, any other a
//!   record's location in a pack; not generational (a location is known
//!   only once the record is appended, see [`ObjectStore::packs`]).
//! - [`MemObjects`] (`memory.rs`): the in-memory twin for tests, benches,
//!   fuzzing; generational or not, as it is made.
//! - [`Faulty`] (`faulty.rs`): a wrapper around any store that fails the Nth
//!   call of an operation and pauses before a put or a delete, for
//!   deterministic crash and race tests.
//!
//! Everything here is blocking I/O: call it from a blocking thread (a remote
//! engine runs its async client on its own runtime).

pub mod contract;
mod direct;
mod faulty;
mod fs;
mod memory;
mod packed;
pub mod packs;
#[cfg(feature = "s3")]
mod quickack;
#[cfg(feature = "s3")]
mod s3;

use std::io;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::enums::keywords;
use super::id::ChunkId;

pub use self::direct::start_chunk;
pub use self::faulty::{Faulty, Op, Pause};
pub use self::fs::{FsObjects, FsyncPolicy, kept_descriptors};
pub use self::memory::MemObjects;
pub use self::packed::PackedObjects;
pub use self::packs::Packs;
#[cfg(feature = "s3")]
pub use self::s3::{S3Credentials, S3Objects};

/// Where one object lives: a chunk id and a generation. Ordered by id,
/// then generation: the order listings return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub id: ChunkId,
    /// (`gen` in the design notes; a keyword in Rust 2024.)
    /// 0: the name objects had before generations (and every object of a
    /// store that is not [`ObjectStore::generational`]); otherwise a random
    /// number a writer drew when it claimed the chunk's row.
    pub generation: u64,
}

impl ObjectKey {
    /// The key of generation `generation` of chunk `id`.
    pub fn new(id: ChunkId, generation: u64) -> Self {
        ObjectKey { id, generation }
    }

    /// Generation 0 of `id`: what a non-generational store holds.
    pub fn plain(id: ChunkId) -> Self {
        ObjectKey { id, generation: 0 }
    }

    /// The object's name within its `ab/` directory: `<64 hex>` for
    /// generation 0, `<64 hex>.<16 hex>` otherwise.
    pub fn name(&self) -> String {
        self.to_string()
    }

    /// Parses what [`ObjectKey::name`] makes; `None` for any other name
    /// (not an object of ours).
    pub fn parse(name: &str) -> Option<Self> {
        let (hex, generation) = match name.split_once('.') {
            None => (name, 0),
            // Lower-case and not 0, so that one key has one name.
            Some((hex, g)) if g.len() == 16 && g.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => {
                (hex, u64::from_str_radix(g, 16).ok().filter(|g| *g != 0)?)
            }
            Some(_) => return None,
        };
        let lower = hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        Some(ObjectKey { id: hex.parse().ok().filter(|_| lower)?, generation })
    }
}

/// The name ([`ObjectKey::name`]), written without an intermediate string.
impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.generation {
            0 => write!(f, "{}", self.id),
            g => write!(f, "{}.{g:016x}", self.id),
        }
    }
}

/// One object as a listing sees it.
#[derive(Debug, Clone)]
pub struct ObjectEntry {
    pub key: ObjectKey,
    pub len: u64,
    pub modified: SystemTime,
}

/// Storage for encoded chunk objects, keyed by [`ObjectKey`].
pub trait ObjectStore: Send + Sync + 'static {
    /// Whether the store wants a fresh generation for every write of a
    /// chunk (the claim → PUT → flip protocol of scale-out design §3): an
    /// engine where create-only puts cannot be had (Garage ignores
    /// `If-None-Match`) and a PUT and a DELETE of one key are ordered by
    /// clocks. `false` (the default): generation 0 and
    /// [`ObjectStore::put_if_absent`], exact under the store's locks.
    fn generational(&self) -> bool {
        false
    }

    /// The pack files new objects are appended to (docs/PACKS.md), when
    /// this store has them: an object whose generation is not 0 is then a
    /// record there, at the location its generation names, and a put of a
    /// new chunk appends it ([`Packs::writer`]) when [`Packs::appending`]
    /// instead of writing under a key. `None` (the default): every object
    /// is written under its key.
    fn packs(&self) -> Option<&Packs> {
        None
    }

    /// Stores the object whose bytes are the concatenation of `parts` (a
    /// header and a payload, written without copying them into one buffer)
    /// under `key`, unless an object is already there (a create-only put).
    /// Returns `true` when this call wrote it.
    ///
    /// # Errors
    /// I/O failures.
    fn put_if_absent(&self, key: &ObjectKey, parts: &[&[u8]]) -> io::Result<bool>;

    /// Replaces whatever is stored under `key` with the concatenation of
    /// `parts` (healing a corrupt object).
    ///
    /// # Errors
    /// I/O failures.
    fn replace(&self, key: &ObjectKey, parts: &[&[u8]]) -> io::Result<()>;

    /// Stores each object (key, parts), overwriting anything there: one
    /// PUT each, as many in flight as the engine allows (S3:
    /// `max_in_flight`). On an error some may be stored and some not. The
    /// default calls [`ObjectStore::replace`] for each in turn.
    ///
    /// # Errors
    /// The first I/O failure.
    fn put_many(&self, items: &[(ObjectKey, Vec<&[u8]>)]) -> io::Result<()> {
        for (key, parts) in items {
            self.replace(key, parts)?;
        }
        Ok(())
    }

    /// The encoded object, or `None` when absent.
    ///
    /// # Errors
    /// I/O failures other than absence.
    fn get(&self, key: &ObjectKey) -> io::Result<Option<Vec<u8>>>;

    /// Bytes `start..start + len` of the encoded object (fewer when the
    /// object ends first), or `None` when absent: what a ranged `GET` gives
    /// on a remote object store. The default reads the whole object.
    ///
    /// # Errors
    /// I/O failures other than absence.
    fn get_range(&self, key: &ObjectKey, start: u64, len: usize) -> io::Result<Option<Vec<u8>>> {
        Ok(self.get(key)?.map(|o| {
            let from = usize::try_from(start).unwrap_or(usize::MAX).min(o.len());
            o[from..o.len().min(from.saturating_add(len))].to_vec()
        }))
    }

    /// The first `head` bytes of the encoded object, with its bytes
    /// `start..start + len` appended to `buf` (each fewer when the object
    /// ends first), or `None` when absent: a header and a slice read
    /// together, the slice into the caller's (reused) buffer. What `buf`
    /// held before is kept, as [`std::io::Read::read_to_end`] keeps it, so
    /// that a caller can choose where in a page the slice lands (see
    /// [`crate::store::buffer::page_lead`]). The default
    /// makes two [`ObjectStore::get_range`] calls (two ranged `GET`s
    /// remotely); the directory opens the file once and reads the slice
    /// straight into `buf`'s spare capacity.
    ///
    /// # Errors
    /// I/O failures other than absence.
    fn get_head_and_range(
        &self,
        key: &ObjectKey,
        head: usize,
        start: u64,
        len: usize,
        buf: &mut Vec<u8>,
    ) -> io::Result<Option<Vec<u8>>> {
        let Some(h) = self.get_range(key, 0, head)? else { return Ok(None) };
        let Some(r) = self.get_range(key, start, len)? else { return Ok(None) };
        buf.extend_from_slice(&r);
        Ok(Some(h))
    }

    /// [`ObjectStore::get_head_and_range`] answered from memory alone, so
    /// that it may run on an async thread: `Some((head, n))` with `n` bytes
    /// of the slice in `buf[..n]` (`buf` holds at least `len` bytes, else
    /// `None`; bytes past `n` are left as they were) when the object
    /// was found and both reads went to its end or the slice's without
    /// waiting for a disk; `n < len` only where the object ends first (a
    /// zstd object, shorter than the raw range asked for, is told so by its
    /// head, not refused). `None` when anything would have waited, or was
    /// absent, a short head or failed (the caller then makes the blocking
    /// call, which reports what went wrong). The default is always `None`; the directory answers
    /// from the kernel's caches (Linux: `openat2` with `RESOLVE_CACHED`,
    /// `preadv2` with `RWF_NOWAIT`).
    fn get_head_and_range_cached(
        &self,
        _key: &ObjectKey,
        _head: usize,
        _start: u64,
        _len: usize,
        _buf: &mut [u8],
    ) -> Option<(Vec<u8>, usize)> {
        None
    }

    /// Whether [`ObjectStore::get_cached`] and
    /// [`ObjectStore::get_head_and_range_cached`] can answer at all (so that
    /// a caller need not arrange to try them): `false` by default, and for
    /// the directory once the kernel or a sandbox refused them.
    fn answers_cached(&self) -> bool {
        false
    }

    /// The whole encoded object into `buf[..n]` from memory alone, so that
    /// it may run on an async thread: `Some(n)`, its length, when the
    /// object was found, is at most `max` bytes long and was read without
    /// waiting for a disk; `None` for anything else, and when `buf` holds
    /// fewer than `max + 1` bytes (the caller then makes the blocking call,
    /// [`ObjectStore::get_into`], which reports what went wrong). Bytes of
    /// `buf` past `n` are left as they were (a reused buffer then costs no
    /// zeroing). Every object starts at a 4 KiB boundary of its file, so a
    /// `buf` that starts at one too takes the fast copy (see
    /// [`crate::store::buffer::page_lead`]). The default is always `None`;
    /// the directory answers from the kernel's caches as
    /// [`ObjectStore::get_head_and_range_cached`] does.
    fn get_cached(&self, _key: &ObjectKey, _max: usize, _buf: &mut [u8]) -> Option<usize> {
        None
    }

    /// Appends the encoded object to `buf` (what it held before is kept, as
    /// [`std::io::Read::read_to_end`] keeps it: a caller chooses where in
    /// a page the object lands); `false` when absent. The buffer's capacity
    /// is used when it suffices (a reused buffer costs no allocation). The
    /// default copies what [`ObjectStore::get`] returns.
    ///
    /// # Errors
    /// I/O failures other than absence.
    fn get_into(&self, key: &ObjectKey, buf: &mut Vec<u8>) -> io::Result<bool> {
        Ok(self.get(key)?.map(|o| buf.extend_from_slice(&o)).is_some())
    }

    /// Whether an object exists under `key`.
    ///
    /// # Errors
    /// I/O failures other than absence.
    fn contains(&self, key: &ObjectKey) -> io::Result<bool>;

    /// Removes the objects; an absent one counts as deleted. Returns how
    /// many keys were handled (all of them when it succeeds). On an error
    /// some may be gone and some not: calling again finishes the job.
    ///
    /// # Errors
    /// I/O failures other than absence.
    fn delete_many(&self, keys: &[ObjectKey]) -> io::Result<usize>;

    /// One page of the objects whose id starts with the byte `prefix`, in
    /// ascending key order (id, then generation), past `start_after` when
    /// given, at most `limit`. A page shorter than `limit` is the last; the
    /// next page starts after the last key of this one. See
    /// [`for_each_page`].
    ///
    /// # Errors
    /// I/O failures.
    fn list(&self, prefix: u8, start_after: Option<&ObjectKey>, limit: usize)
    -> io::Result<Vec<ObjectEntry>>;

    /// Moves the object out of the way: no longer served, kept for
    /// inspection (a directory here, a `quarantine/` key prefix remotely).
    /// `false` when it was not there.
    ///
    /// # Errors
    /// I/O failures.
    fn quarantine(&self, key: &ObjectKey) -> io::Result<bool>;

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

/// Which engine holds the chunk objects (`storage.objects`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectsKind {
    /// [`FsObjects`] under the data dir.
    #[default]
    Fs,
    /// [`S3Objects`], as `[storage.s3]` says.
    S3,
}

keywords!(ObjectsKind { "fs" => Fs, "s3" => S3 });

impl ObjectsKind {
    /// The most descriptors this engine keeps open for reads under a soft
    /// `RLIMIT_NOFILE` of `nofile`: [`kept_descriptors`] for the directory,
    /// none for S3 (its objects are not files). The server leaves these out
    /// of the connections' room.
    pub fn kept_descriptors(self, nofile: u64) -> usize {
        match self {
            ObjectsKind::Fs => kept_descriptors(nofile),
            ObjectsKind::S3 => 0,
        }
    }
}

/// Where an S3 engine is and how to talk to it (`[storage.s3]`).
/// Credentials are never here: they come from `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY` (see [`S3Objects::open`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Options {
    /// Base URL of the S3 API (`http://127.0.0.1:3900`, `https://s3.example.com`).
    /// Empty: `AWS_ENDPOINT_URL`. Requests are path-style (`endpoint/bucket/key`).
    pub endpoint: String,
    /// The bucket, which must exist.
    pub bucket: String,
    /// The region requests are signed for; Garage's default is `garage`.
    pub region: String,
    /// Key prefix for everything depot writes (`depot/`); empty: the bucket's root.
    pub prefix: String,
    /// Most requests in flight at once, over all callers.
    pub max_in_flight: usize,
    /// Chunks read ahead per download (in place of `storage.read_ahead`):
    /// a remote read is bound by a request's latency, not a disk's, so more
    /// at once pay (bench E1: 16 against 4 took a 1 GiB download from
    /// Garage 24% faster; on a local directory 16 was slower than 4).
    pub read_ahead: usize,
    /// Allows a plain `http://` endpoint (a loopback or private network).
    pub allow_http: bool,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            bucket: "depot".into(),
            region: "garage".into(),
            prefix: String::new(),
            max_in_flight: 32,
            read_ahead: 16,
            allow_http: false,
        }
    }
}

impl S3Options {
    /// Checks the values on their own (an empty endpoint is allowed here:
    /// `AWS_ENDPOINT_URL` may fill it when the store opens).
    ///
    /// # Errors
    /// A message naming the `storage.s3` key at fault.
    pub fn check(&self) -> Result<(), String> {
        if self.bucket.is_empty() {
            return Err("storage.s3.bucket is empty".into());
        }
        if self.region.is_empty() {
            return Err("storage.s3.region is empty (Garage's default region is `garage`)".into());
        }
        if self.max_in_flight == 0 {
            return Err("storage.s3.max_in_flight must be at least 1".into());
        }
        if self.read_ahead == 0 {
            return Err("storage.s3.read_ahead must be at least 1".into());
        }
        let e = &self.endpoint;
        if !e.is_empty() && !e.starts_with("https://") && !e.starts_with("http://") {
            return Err(format!("storage.s3.endpoint `{e}` is not an http:// or https:// URL"));
        }
        if e.starts_with("http://") && !self.allow_http {
            return Err(format!(
                "storage.s3.endpoint `{e}` is plain http: set storage.s3.allow_http = true \
                 (DEPOT_S3_ALLOW_HTTP=true) to allow it"
            ));
        }
        let p = self.prefix.trim_matches('/');
        if !p.is_empty()
            && p.split('/').any(|seg| {
                seg.is_empty()
                    || seg == "."
                    || seg == ".."
                    || !seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            })
        {
            return Err(format!(
                "storage.s3.prefix `{}` must be `/`-separated segments of letters, digits, `-`, `_`, `.`",
                self.prefix
            ));
        }
        Ok(())
    }

    /// The prefix as keys start with it: `""` or `"a/b/"`.
    pub fn key_prefix(&self) -> String {
        let p = self.prefix.trim_matches('/');
        if p.is_empty() { String::new() } else { format!("{p}/") }
    }
}

/// Calls `f` with each page of the objects under `prefix`, `limit` at a
/// time, in key order, until the listing ends or `f` fails.
///
/// # Errors
/// The store's listing errors, or `f`'s.
pub fn for_each_page<E: From<io::Error>>(
    store: &dyn ObjectStore,
    prefix: u8,
    limit: usize,
    mut f: impl FnMut(&[ObjectEntry]) -> Result<(), E>,
) -> Result<(), E> {
    let mut after: Option<ObjectKey> = None;
    loop {
        let page = store.list(prefix, after.as_ref(), limit)?;
        f(&page)?;
        match page.last() {
            Some(last) if page.len() >= limit => after = Some(last.key),
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
