//! Reading files back: a stream of a byte range, chunks in manifest order,
//! each read and checked on a blocking thread with a bounded number read
//! ahead, so memory stays flat whatever the file size.
//!
//! A download registers itself as a reader of its file ([`ReadGuard`]); a
//! delete that arrives meanwhile hides the file at once but keeps its chunks
//! referenced until the last reader is gone, so the stream is never cut.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt, TryStreamExt};

use super::manifest::Entry;
use super::{Error, FileId, FileRecord, FileState, Result, Store, lock, manifest};

/// The longest read served in one blocking call (see [`Store::read_range`]).
pub const ONE_HOP: u64 = 1 << 20;

/// A stream of file bytes; an error ends it (the connection must then be
/// aborted: the body is short or wrong).
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// Keeps a file's chunks referenced while a download reads it.
pub struct ReadGuard {
    store: Store,
    id: FileId,
}

/// Another hold on the same file (a multipart range answer reads it once
/// per part): the file's chunks stay until every hold is dropped.
impl Clone for ReadGuard {
    fn clone(&self) -> Self {
        *lock(&self.store.0.readers).entry(self.id).or_default() += 1;
        ReadGuard { store: self.store.clone(), id: self.id }
    }
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        let last = {
            let mut readers = lock(&self.store.0.readers);
            let n = readers.get_mut(&self.id).map(|n| {
                *n -= 1;
                *n
            });
            if n == Some(0) {
                readers.remove(&self.id);
            }
            n == Some(0)
        };
        if !last {
            return;
        }
        // If the file was deleted while we read it, its references can go now.
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
    /// Opens a visible file for reading.
    ///
    /// # Errors
    /// [`Error::FileNotFound`].
    pub fn open_file(&self, id: &FileId) -> Result<(FileRecord, ReadGuard)> {
        let mut readers = lock(&self.0.readers);
        let rec = self.file(id)?;
        *readers.entry(*id).or_default() += 1;
        drop(readers);
        Ok((rec, ReadGuard { store: self.clone(), id: *id }))
    }

    pub(crate) fn resume_pending_file(&self, id: &FileId) -> Result<()> {
        if let Some(FileRecord { state: FileState::Deleting { .. }, .. }) = self.record(id)? {
            if !self.is_being_read(id) {
                self.finish_delete(id)?;
            }
        }
        Ok(())
    }

    /// Streams bytes `start..end` of an opened file. Must be polled inside a
    /// Tokio runtime.
    ///
    /// A range inside one manifest segment and at most [`ONE_HOP`] long (a
    /// typical `Range` request) is read in one blocking call: its segment
    /// and the chunk parts it covers. Longer reads stream segment by
    /// segment, with [`StoreOptions::read_ahead`](super::StoreOptions)
    /// chunks read ahead.
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
        let starts = rec.segments.clone();
        if first == last && end - start <= ONE_HOP {
            let store = self.clone();
            let seg_start = starts[first];
            let parts = async move {
                store
                    .blocking(move |s| {
                        let entries = s.segment(&id, first as u32)?;
                        parts_in(entries, seg_start, start, end)
                            .map(|(e, from, to)| s.read_part(&e, from, to))
                            .collect()
                    })
                    .await
            };
            let s = stream::once(parts)
                .map_ok(|parts: Vec<Bytes>| stream::iter(parts.into_iter().map(Ok)))
                .try_flatten();
            return held(s, guard);
        }
        let read_ahead = self.0.opts.read_ahead.max(1);
        let seg_store = self.clone();
        let chunk_store = self.clone();
        let s = stream::iter(first..=last)
            .then(move |seg| {
                let store = seg_store.clone();
                async move { store.blocking(move |s| s.segment(&id, seg as u32)).await.map(|e| (seg, e)) }
            })
            .map_ok(move |(seg, entries)| stream::iter(parts_in(entries, starts[seg], start, end).map(Ok)))
            .try_flatten()
            .map_ok(move |(e, from, to)| {
                let store = chunk_store.clone();
                async move { store.blocking(move |s| s.read_part(&e, from, to)).await }
            })
            .try_buffered(read_ahead);
        held(s, guard)
    }

    /// Bytes `from..to` of the chunk `e` names: the whole chunk, or only
    /// the part (see [`Store::read_chunk_part`]). A chunk found damaged is
    /// marked so (the next upload of its content heals it).
    fn read_part(&self, e: &Entry, from: usize, to: usize) -> Result<Bytes> {
        let got = if from > 0 || to < e.len as usize {
            self.read_chunk_part(&e.id, e.len, from, to).map(Bytes::from)
        } else {
            self.read_chunk(&e.id, e.len)
        };
        match got {
            Err(Error::Corrupt { id, reason }) => {
                self.mark_damaged(&id, &reason)?;
                Err(Error::Corrupt { id, reason })
            }
            other => other,
        }
    }
}

/// The entries of a segment starting at file offset `seg_start` that overlap
/// `start..end`, each with the part of it inside (`from..to` in the chunk).
fn parts_in(
    entries: Vec<Entry>,
    seg_start: u64,
    start: u64,
    end: u64,
) -> impl Iterator<Item = (Entry, usize, usize)> {
    let mut at = seg_start;
    entries.into_iter().filter_map(move |e| {
        let (c_start, c_end) = (at, at + u64::from(e.len));
        at = c_end;
        if c_end <= start || c_start >= end {
            return None;
        }
        Some((e, start.saturating_sub(c_start) as usize, (end.min(c_end) - c_start) as usize))
    })
}

/// `s`, holding `guard` (the file's chunks) for as long as it lives.
fn held(s: impl Stream<Item = Result<Bytes>> + Send + 'static, guard: ReadGuard) -> ByteStream {
    Box::pin(s.map(move |item| {
        let _ = &guard;
        item
    }))
}
