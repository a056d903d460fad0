//! Reading files back: a stream of a byte range, chunks in manifest order,
//! each read and checked on a blocking thread (or, when the page cache
//! holds it, on a task of its own) with a bounded number read ahead, so
//! memory stays flat whatever the file size.
//!
//! A download registers itself as a reader of its file ([`ReadGuard`]); a
//! delete that arrives meanwhile hides the file at once but keeps its chunks
//! referenced until the last reader is gone, so the stream is never cut.
//!
//! Opening a file and finding a range's manifest segment are answered from
//! the open-files cache ([`super::cache`]) when it holds them, so that a
//! small `Range` request on a cached file costs at most one blocking-pool
//! hop, the read of its chunk parts, and none when the page cache holds
//! them (read on the async thread, see [`Store::read_range`]). What a read
//! checks: a whole chunk's payload CRC
//! and length ([`Store::read_chunk`]); for a part of a raw chunk, its
//! header only ([`Store::read_chunk_part`]); a part of a compressed chunk
//! is a slice of the whole chunk, checked and decoded once and then kept
//! for the ranges that follow ([`super::cache::DecodedChunks`]).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt, TryStreamExt};

use super::buffer::Buffer;
use super::cache::{Readers, Segment};
use super::manifest::Entry;
use super::name::View;
use super::objects::{ObjectKey, ObjectsKind};
use super::{ChunkId, Error, FileId, FileRecord, FileState, Result, Store, lock, manifest};

/// The longest read served in one blocking call (see [`Store::read_range`]).
pub const ONE_HOP: u64 = 1 << 20;

/// The longest range read on an async thread when the page cache holds it
/// (see [`Store::read_range`]): copying 256 KiB takes some tens of
/// microseconds, the order of a hop to the blocking pool and back.
pub const ON_THREAD: u64 = 256 << 10;

/// The longest whole chunk read on an async thread when the page cache
/// holds it (see [`Store::read_range`]): its copy and CRC take some tens of
/// microseconds per 256 KiB, and a whole-file download saves two thread
/// wake-ups per chunk.
pub const WHOLE_ON_THREAD: u32 = 1 << 20;

/// A stream of file bytes; an error ends it (the connection must then be
/// aborted: the body is short or wrong).
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// Keeps a file's chunks referenced while a download reads it.
pub struct ReadGuard {
    store: Store,
    id: FileId,
}

impl ReadGuard {
    /// Registers a reader of `id`; the caller holds the readers lock.
    fn register(store: &Store, readers: &mut std::collections::HashMap<FileId, Readers>, id: FileId) -> Self {
        readers.entry(id).or_default().n += 1;
        ReadGuard { store: store.clone(), id }
    }

    /// Drops the guard so that, if it is the last, the file's pending
    /// delete is finished (this hold may have made a delete wait, or made
    /// GC skip finishing one).
    fn drop_finishing_delete(self) {
        if let Some(r) = lock(&self.store.0.readers).get_mut(&self.id) {
            r.delete_waits = true;
        }
    }
}

/// Another hold on the same file (a multipart range answer reads it once
/// per part): the file's chunks stay until every hold is dropped.
impl Clone for ReadGuard {
    fn clone(&self) -> Self {
        ReadGuard::register(&self.store, &mut lock(&self.store.0.readers), self.id)
    }
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        let waited = {
            let mut readers = lock(&self.store.0.readers);
            let Some(r) = readers.get_mut(&self.id) else { return };
            r.n -= 1;
            if r.n > 0 {
                return;
            }
            readers.remove(&self.id).is_some_and(|r| r.delete_waits)
        };
        if !waited {
            return;
        }
        // The file was deleted while we read it: its references can go now.
        let (store, id) = (self.store.clone(), self.id);
        let finish = move || {
            if let Err(e) = store.resume_pending_file(&id) {
                tracing::warn!(file = %id, error = %e, "finishing a deferred delete failed; GC will retry");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn_blocking(finish);
            }
            Err(_) => finish(),
        }
    }
}

impl Store {
    /// Opens a visible file for reading: from the open-files cache when it
    /// holds the file, else from metadata (and then cached).
    ///
    /// # Errors
    /// [`Error::FileNotFound`]; metadata backend errors.
    pub fn open_file(&self, id: &FileId) -> Result<(Arc<FileRecord>, ReadGuard)> {
        // Registered before the read, so that a delete meanwhile waits for
        // this hold (or is seen by the read); the lock is not held across it.
        let (guard, removals) = {
            let mut readers = lock(&self.0.readers);
            let cached = self.0.cache.record(id).filter(|_| !self.0.opts.shared);
            let guard = ReadGuard::register(self, &mut readers, *id);
            if let Some(rec) = cached {
                return Ok((rec, guard));
            }
            (guard, self.0.cache.removals())
        };
        // Shared: the reader row before the record (see `super::readers`);
        // the cache is not asked, since another node may have deleted it.
        self.hold_across_nodes(id)?;
        match self.record(id)? {
            Some(rec) if rec.state == FileState::Ready => {
                let rec = Arc::new(rec);
                let _readers = lock(&self.0.readers);
                self.0.cache.insert_record(rec.clone(), removals);
                Ok((rec, guard))
            }
            Some(FileRecord { state: FileState::Deleting { .. }, .. }) => {
                guard.drop_finishing_delete();
                Err(Error::FileNotFound(id.to_string()))
            }
            _ => Err(Error::FileNotFound(id.to_string())),
        }
    }

    /// [`Store::open_file`] answered from the open-files cache alone: no
    /// metadata read and no I/O (a mutex held for a hash lookup), so it may
    /// run on an async thread. `None` when the cache does not hold the file.
    pub fn open_cached(&self, id: &FileId) -> Option<(Arc<FileRecord>, ReadGuard)> {
        if self.0.opts.shared {
            return None;
        }
        let mut readers = lock(&self.0.readers);
        let rec = self.0.cache.record(id)?;
        Some((rec, ReadGuard::register(self, &mut readers, *id)))
    }

    /// Opens a file `view` may see, for reading, from async code: from the
    /// cache on the calling thread when it holds the file, else
    /// [`Store::open_file`] on a blocking thread.
    ///
    /// # Errors
    /// [`Error::FileNotFound`], also for another tenant's file; metadata
    /// backend errors.
    pub async fn open_file_in(&self, view: &View, id: FileId) -> Result<(Arc<FileRecord>, ReadGuard)> {
        let (rec, guard) = match self.open_cached(&id) {
            Some(open) => open,
            None => self.blocking(move |s| s.open_file(&id)).await?,
        };
        if !view.sees(&rec.tenant) {
            return Err(Error::FileNotFound(id.to_string()));
        }
        Ok((rec, guard))
    }

    pub(crate) fn resume_pending_file(&self, id: &FileId) -> Result<()> {
        if let Some(FileRecord { state: FileState::Deleting { .. }, .. }) = self.record(id)? {
            if !self.is_being_read(id) && !self.read_elsewhere(id)? {
                self.finish_delete(id)?;
            }
        }
        Ok(())
    }

    /// Streams bytes `start..end` of an opened file. Must be polled inside a
    /// Tokio runtime.
    ///
    /// On the object directory, a range inside one manifest segment and at
    /// most [`ONE_HOP`] long (a typical `Range` request) is read in one
    /// blocking call: the chunk
    /// parts it covers, and its segment unless the open-files cache holds
    /// it (looked up here; a segment read for such a range is cached).
    /// A range of at most [`ON_THREAD`] whose segment is cached and whose
    /// bytes the page cache holds is read on the calling thread, without
    /// that hop. Longer reads stream segment by segment, with
    /// [`StoreOptions::read_ahead`](super::StoreOptions) chunks read ahead,
    /// each one the caches hold read on a task of its own (no blocking-pool
    /// hop), the others on the blocking pool.
    pub fn read_range(&self, rec: &FileRecord, guard: ReadGuard, start: u64, end: u64) -> ByteStream {
        let end = end.min(rec.size);
        if start >= end {
            return Box::pin(stream::empty());
        }
        let (Some(first), Some(last)) = (
            manifest::find_segment(&rec.segments, rec.size, start),
            manifest::find_segment(&rec.segments, rec.size, end - 1),
        ) else {
            return Box::pin(stream::empty());
        };
        let id = rec.id;
        // On S3 every GET is a round trip through the engine (a few ms
        // against Garage on loopback): a range's chunks are fetched side by
        // side below, not one after the other in one hop.
        if first == last && end - start <= ONE_HOP && self.0.opts.objects == ObjectsKind::Fs {
            let store = self.clone();
            let seg_start = rec.segments[first];
            let cached = self.0.cache.segment(&id, first as u32);
            let tried = match cached.as_ref().and_then(|e| self.parts_early(e, seg_start, start, end)) {
                Some(parts) => match self.all_ready(parts) {
                    Ok(bytes) => return held(stream::iter(bytes.into_iter().map(Ok)), guard),
                    Err(parts) => Some(parts),
                },
                None => None,
            };
            let parts = async move {
                store
                    .blocking(move |s| {
                        let parts = match (tried, cached) {
                            (Some(parts), _) => parts,
                            (None, cached) => {
                                let entries = match cached {
                                    Some(e) => e,
                                    None => s.segment_shared(&id, first as u32, true)?,
                                };
                                parts_in(entries, seg_start, start, end)
                                    .map(|(e, from, to)| (e, from, to, None))
                                    .collect()
                            }
                        };
                        parts
                            .into_iter()
                            .map(|(e, from, to, early)| s.finish_part(&e, None, from, to, early))
                            .collect()
                    })
                    .await
            };
            let s = stream::once(parts)
                .map_ok(|parts: Vec<Bytes>| stream::iter(parts.into_iter().map(Ok)))
                .try_flatten();
            return held(s, guard);
        }
        let starts = rec.segments.clone();
        let read_ahead = match self.0.opts.objects {
            ObjectsKind::S3 => self.0.opts.s3.read_ahead,
            ObjectsKind::Fs => self.0.opts.read_ahead,
        }
        .max(1);
        let seg_store = self.clone();
        let chunk_store = self.clone();
        // Each segment's parts with their objects' keys, looked up at once
        // (on a generational store: one batched lookup, not one per chunk).
        let s = stream::iter(first..=last)
            .then(move |seg| {
                let store = seg_store.clone();
                let seg_start = starts[seg];
                async move {
                    store
                        .blocking(move |s| {
                            let entries = s.segment_shared(&id, seg as u32, false)?;
                            let parts: Vec<(Entry, usize, usize)> =
                                parts_in(entries, seg_start, start, end).collect();
                            let ids: Vec<ChunkId> = parts.iter().map(|p| p.0.id).collect();
                            let keys = s.keys_of(&ids)?;
                            Ok(parts.into_iter().zip(keys).collect::<Vec<_>>())
                        })
                        .await
                }
            })
            .map_ok(|parts| stream::iter(parts.into_iter().map(Ok)))
            .try_flatten()
            .map_ok(move |((e, from, to), key)| {
                let store = chunk_store.clone();
                async move {
                    let early = match store.read_part_beside(&e, key, from, to).await {
                        Some(Early::Ready(b, path)) => return Ok(counted(store.reads(path), b)),
                        other => other,
                    };
                    store
                        .blocking(move |s| {
                            // A long download keeps holding deletes on other nodes.
                            s.hold_across_nodes(&id)?;
                            s.finish_part(&e, key, from, to, early)
                        })
                        .await
                }
            })
            .try_buffered(read_ahead);
        held(s, guard)
    }

    /// The parts of `start..end` (in a segment starting at `seg_start`),
    /// each with what the calling thread could read of it
    /// ([`Store::try_part_cached`]), when the range is at most
    /// [`ON_THREAD`] long; else `None`, and the caller reads on a blocking
    /// thread. A cached 64 KiB range then costs no hop to the blocking pool
    /// and back (two thread wake-ups, the largest cost left in a profile of
    /// `Range` requests: docs/PERFORMANCE.md, D2); when some part needs
    /// the hop, the parts read here are not read again there.
    fn parts_early(&self, entries: &Segment, seg_start: u64, start: u64, end: u64) -> Option<Vec<Part>> {
        if end - start > ON_THREAD {
            return None;
        }
        let parts = parts_in(entries.clone(), seg_start, start, end)
            .map(|(e, from, to)| {
                (e, from, to, self.try_part_cached(&e, self.remembered_key(&e.id), from, to))
            })
            .collect();
        Some(parts)
    }

    /// The key of chunk `id`'s object as an earlier range looked it up
    /// ([`super::cache::Locations`]) on a store with packs; `None` where
    /// none is remembered, and on a store without packs (whose reads need
    /// no lookup).
    fn remembered_key(&self, id: &ChunkId) -> Option<ObjectKey> {
        self.0.objects.packs()?;
        self.0.locations.get(id).map(|generation| ObjectKey::new(*id, generation))
    }

    /// [`Store::key_of`], remembered on a store with packs for the ranges
    /// that follow ([`Store::remembered_key`]).
    ///
    /// # Errors
    /// As [`Store::key_of`].
    fn key_to_remember(&self, id: &ChunkId) -> Result<ObjectKey> {
        if self.0.objects.packs().is_none() {
            return self.key_of(id);
        }
        let epoch = self.0.locations.epoch();
        let key = self.key_of(id)?;
        self.0.locations.remember(*id, key.generation, epoch);
        Ok(key)
    }

    /// The bytes of `parts` when the calling thread read all of them,
    /// counted; else the parts back, for a blocking thread to finish
    /// ([`Store::finish_part`]), which counts each part once.
    fn all_ready(&self, parts: Vec<Part>) -> std::result::Result<Vec<Bytes>, Vec<Part>> {
        if !parts.iter().all(|p| matches!(p.3, Some(Early::Ready(..)))) {
            return Err(parts);
        }
        Ok(parts
            .into_iter()
            .filter_map(|(.., early)| match early {
                Some(Early::Ready(b, path)) => Some(counted(self.reads(path), b)),
                _ => None,
            })
            .collect())
    }

    /// [`Store::try_part_cached`] on a task of its own, so that a long
    /// download's reads ahead run beside the task writing its response (on
    /// the runtime's other worker thread when it is free): one task switch
    /// per chunk, not the two thread wake-ups of a blocking-pool hop.
    /// `None` when the caches do not hold the chunk (or the task failed):
    /// the caller then reads on a blocking thread.
    async fn read_part_beside(
        &self,
        e: &Entry,
        key: Option<ObjectKey>,
        from: usize,
        to: usize,
    ) -> Option<Early> {
        // Nothing spawned for a read that would not be tried.
        if !self.tries_cached(e, key, from, to) {
            return None;
        }
        let (store, e) = (self.clone(), *e);
        tokio::spawn(async move { store.try_part_cached(&e, key, from, to) }).await.ok().flatten()
    }

    /// Bytes `from..to` of the chunk `e` names, as far as the calling
    /// thread gets with them when the kernel's caches hold them, not yet
    /// counted: a part of at most [`ON_THREAD`]
    /// ([`Store::read_chunk_part_cached`], header checked) or a whole chunk
    /// of at most [`WHOLE_ON_THREAD`] ([`Store::read_chunk_cached`], payload
    /// CRC checked), or the zstd object either is cut from, read but not
    /// decoded ([`Early::Encoded`]); else `None`, and the caller reads on a
    /// blocking thread ([`Store::read_part`], which also reports damage).
    /// The object is the one at `key` when the caller looked it up (or a
    /// range before it did: [`Store::remembered_key`]), else the chunk's
    /// generation 0 (never tried on a store with packs, where only the row
    /// knows a record's location).
    fn try_part_cached(&self, e: &Entry, key: Option<ObjectKey>, from: usize, to: usize) -> Option<Early> {
        if !self.tries_cached(e, key, from, to) {
            return None;
        }
        if let Some(b) = self.decoded_part(e, from, to) {
            return Some(Early::Ready(b, Path::Decoded));
        }
        let key = key.unwrap_or(ObjectKey::plain(e.id));
        let got = if is_whole(e, from, to) {
            self.read_chunk_cached(&key, e.len)
        } else {
            self.read_chunk_part_cached(&key, e.len, from, to)
        };
        Some(match got? {
            Cached::Ready(b) => Early::Ready(b, Path::Cached),
            Cached::Encoded(enc, object) => Early::Encoded(enc, object),
        })
    }

    /// Bytes `from..to` of chunk `e`, on a blocking thread, from what an
    /// async thread got of them (`early`): its bytes as they are, its zstd
    /// object checked and decoded (kept decoded when a part is asked, see
    /// [`Store::read_chunk_part`]), or, for `None`, read
    /// ([`Store::read_part`], from the object at `key` when given). A zstd
    /// object that does not check is read again by [`Store::read_part`],
    /// which reports the damage.
    ///
    /// # Errors
    /// As [`Store::read_part`].
    fn finish_part(
        &self,
        e: &Entry,
        key: Option<ObjectKey>,
        from: usize,
        to: usize,
        early: Option<Early>,
    ) -> Result<Bytes> {
        let (enc, object) = match early {
            Some(Early::Ready(b, path)) => return Ok(counted(self.reads(path), b)),
            Some(Early::Encoded(enc, object)) => (enc, object),
            None => return self.read_part(e, key, from, to),
        };
        let at = key.unwrap_or(ObjectKey::plain(e.id));
        let decode = || self.decode_read(&at, enc, object, e.len);
        let got = if is_whole(e, from, to) { decode() } else { self.decoded_slice(&e.id, from, to, decode) };
        match got {
            Ok(b) => Ok(counted(&self.0.activity.reads_cached, b)),
            Err(Error::Corrupt { .. }) => self.read_part(e, key, from, to),
            Err(other) => Err(other),
        }
    }

    /// Bytes `from..to` of compressed chunk `id`, from the decoded-chunk
    /// cache (keyed by chunk, whatever object holds it), filled by `decode`
    /// on a miss (the chunk is kept decoded: the next range of it is a
    /// slice).
    ///
    /// # Errors
    /// What `decode` returns; [`Error::Corrupt`] when the chunk is shorter
    /// than `to`.
    pub(super) fn decoded_slice(
        &self,
        id: &ChunkId,
        from: usize,
        to: usize,
        decode: impl FnOnce() -> Result<Bytes>,
    ) -> Result<Bytes> {
        let raw = self.0.decoded.get_or_decode(id, decode)?;
        if raw.len() < to {
            return Err(Error::Corrupt { id: *id, reason: "shorter than the manifest says".into() });
        }
        Ok(raw.slice(from..to))
    }

    /// The counter of reads answered by `path`.
    fn reads(&self, path: Path) -> &AtomicU64 {
        match path {
            Path::Cached => &self.0.activity.reads_cached,
            Path::Decoded => &self.0.activity.reads_decoded,
        }
    }

    /// Bytes `from..to` of chunk `e`, a part of a compressed chunk that an
    /// earlier range read and decoded ([`super::cache::DecodedChunks`]):
    /// memory only, so it may run on an async thread. Whole chunks are not
    /// looked for: a long download reads each once. Not counted here.
    fn decoded_part(&self, e: &Entry, from: usize, to: usize) -> Option<Bytes> {
        if is_whole(e, from, to) {
            return None;
        }
        self.0.decoded.part(&e.id, from, to)
    }

    /// Whether bytes `from..to` of chunk `e` are tried from the kernel's
    /// caches: only when the object store can answer so, never on a
    /// generational store, nor on one with packs unless the caller looked
    /// the object's `key` up (objects are named by their rows), nor on a shared one
    /// (a read renews this node's reader row first, a metadata write), and
    /// for a whole chunk of at most [`WHOLE_ON_THREAD`] or a part of at most
    /// [`ON_THREAD`].
    fn tries_cached(&self, e: &Entry, key: Option<ObjectKey>, from: usize, to: usize) -> bool {
        let fits =
            if is_whole(e, from, to) { e.len <= WHOLE_ON_THREAD } else { (to - from) as u64 <= ON_THREAD };
        let named = key.is_some() || self.0.objects.packs().is_none();
        fits && named
            && self.0.objects.answers_cached()
            && !self.0.objects.generational()
            && !self.0.opts.shared
    }

    /// Segment `seg` of a ready file's manifest, from the open-files cache
    /// when it holds it, else from metadata (cached there when `keep`).
    fn segment_shared(&self, id: &FileId, seg: u32, keep: bool) -> Result<Segment> {
        if let Some(e) = self.0.cache.segment(id, seg) {
            return Ok(e);
        }
        let entries: Segment = self.segment(id, seg)?.into();
        if keep {
            self.0.cache.insert_segment(id, seg, entries.clone());
        }
        Ok(entries)
    }

    /// Bytes `from..to` of the chunk `e` names: the whole chunk, or only
    /// the part (see [`Store::read_chunk_part`]), from the object at `key`
    /// when the caller looked it up (else it is looked up here). A chunk
    /// found damaged is marked so (the next upload of its content heals it).
    fn read_part(&self, e: &Entry, key: Option<ObjectKey>, from: usize, to: usize) -> Result<Bytes> {
        if let Some(b) = self.decoded_part(e, from, to) {
            return Ok(counted(&self.0.activity.reads_decoded, b));
        }
        super::engine::bump(&self.0.activity.reads_blocking, 1);
        let read = |key: &ObjectKey| {
            if is_whole(e, from, to) {
                self.read_chunk_at(key, e.len)
            } else {
                self.read_chunk_part_at(key, e.len, from, to)
            }
        };
        let mut key = match key {
            Some(k) => k,
            None => self.key_to_remember(&e.id)?,
        };
        let mut got = read(&key);
        if matches!(got, Err(Error::Corrupt { .. })) {
            // Looked up before this read: a re-upload may have healed the
            // chunk since (a new generation, the old object moved aside).
            // Only the row's current object decides.
            let now = self.key_of(&e.id)?;
            if now != key {
                key = now;
                got = read(&key);
            }
        }
        match got {
            Err(Error::Corrupt { id, reason }) => {
                // Not the object of a heal that flipped the row since.
                self.mark_damaged_at(&id, Some(key.generation), &reason)?;
                Err(Error::Corrupt { id, reason })
            }
            other => other,
        }
    }
}

/// A part of a chunk, `from..to` in chunk `e`, with what an async thread
/// got of it ([`Store::try_part_cached`]).
type Part = (Entry, usize, usize, Option<Early>);

/// A chunk read from the kernel's caches on an async thread
/// ([`Store::read_chunk_cached`], [`Store::read_chunk_part_cached`]).
pub(super) enum Cached {
    /// The bytes asked for, checked.
    Ready(Bytes),
    /// Its zstd object, `enc[object]`, read whole but neither checked nor
    /// decoded: decompressing takes longer than an async thread may be held,
    /// so a blocking thread finishes it ([`Store::decode_read`]) without
    /// reading the object again.
    Encoded(Buffer, std::ops::Range<usize>),
}

/// A part of a chunk as far as an async thread got with it
/// ([`Store::try_part_cached`]); a blocking thread finishes the rest
/// ([`Store::finish_part`]).
enum Early {
    /// Its bytes, answered by `Path` (counted once the answer is whole).
    Ready(Bytes, Path),
    /// Its chunk's zstd object, `enc[object]`, read from the page cache,
    /// to check and decode (see [`Cached::Encoded`]).
    Encoded(Buffer, std::ops::Range<usize>),
}

/// Which path answered a read on an async thread (and which counter of
/// `depot_chunk_reads_total` it goes to).
#[derive(Clone, Copy)]
enum Path {
    /// The page cache.
    Cached,
    /// The decoded chunks ([`super::cache::DecodedChunks`]).
    Decoded,
}

/// `b`, counted as a chunk read by the path `path` counts.
fn counted(path: &AtomicU64, b: Bytes) -> Bytes {
    super::engine::bump(path, 1);
    b
}

/// Whether bytes `from..to` of chunk `e` are all of it.
fn is_whole(e: &Entry, from: usize, to: usize) -> bool {
    from == 0 && to == e.len as usize
}

/// The entries of a segment starting at file offset `seg_start` that overlap
/// `start..end`, each with the part of it inside (`from..to` in the chunk).
/// Stops at the first entry past `end` (a short range reads a few entries
/// of the 1,024 a segment holds, not all of them).
fn parts_in(
    entries: Segment,
    seg_start: u64,
    start: u64,
    end: u64,
) -> impl Iterator<Item = (Entry, usize, usize)> {
    let mut at = seg_start;
    let mut i = 0;
    std::iter::from_fn(move || {
        while let Some(e) = entries.get(i) {
            i += 1;
            let (c_start, c_end) = (at, at + u64::from(e.len));
            at = c_end;
            if c_start >= end {
                break;
            }
            if c_end > start {
                return Some((
                    *e,
                    start.saturating_sub(c_start) as usize,
                    (end.min(c_end) - c_start) as usize,
                ));
            }
        }
        i = entries.len();
        None
    })
}

/// `s`, holding `guard` (the file's chunks) for as long as it lives.
fn held(s: impl Stream<Item = Result<Bytes>> + Send + 'static, guard: ReadGuard) -> ByteStream {
    Box::pin(s.map(move |item| {
        let _ = &guard;
        item
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `parts_in` against its definition: every entry that overlaps the
    /// range, found by looking at all of them.
    #[test]
    fn parts_in_finds_exactly_the_overlapping_entries() {
        let lens = [5u32, 1, 7, 3, 3, 10, 1, 1, 4];
        let entries: Segment =
            lens.iter().enumerate().map(|(i, &len)| Entry { id: ChunkId([i as u8; 32]), len }).collect();
        let seg_start = 100u64;
        let total: u64 = lens.iter().map(|&l| u64::from(l)).sum();
        for start in seg_start - 2..seg_start + total + 2 {
            for end in start..seg_start + total + 3 {
                let mut want = Vec::new();
                let mut at = seg_start;
                for e in entries.iter() {
                    let (a, b) = (at, at + u64::from(e.len));
                    at = b;
                    if b > start && a < end {
                        want.push((*e, start.saturating_sub(a) as usize, (end.min(b) - a) as usize));
                    }
                }
                let got: Vec<_> = parts_in(entries.clone(), seg_start, start, end).collect();
                assert_eq!(got, want, "range {start}..{end}");
            }
        }
    }
}
