//! Append-only upload sessions (what tus needs, in store terms): bytes arrive
//! in order across any number of requests; the server's chunker cuts them as
//! they stream, so the cut points are those of the whole file and the upload
//! deduplicates against the same content uploaded any other way.
//!
//! Durability: the bytes after the last cut point (the *tail*) are stored
//! as a chunk of their own, named in the record (`StreamState::tail`), so
//! that any node can read them back. A durable point stores the new chunks
//! and the tail chunk, then writes the new chunk list entries, the tail and
//! the new offset in one synced batch. A crash before the batch leaves only
//! unnamed chunks (GC takes them); after it, the record names exactly the
//! acknowledged bytes. So an acknowledged offset survives a crash with no
//! byte lost or repeated, and an unacknowledged one is simply not there.
//! That is on a shared store (several nodes); a store of its own keeps the
//! tail in `uploads/<id>/tail-<base>` (rewritten and synced at each durable
//! point, read only up to the recorded offset), which costs no chunk that
//! GC must later collect.
//!
//! One appender at a time, across nodes: a request that starts appending
//! raises the session's `epoch` (under the session's lock, durably), and
//! every record write an appender makes checks, under the same lock, that
//! the epoch is still its own (the chunks it stores before are only
//! garbage if it lost). A newer request therefore takes the upload over at once, and
//! the older one, wherever it runs (paused, cut off, or just slow), can no
//! longer change it: its next durable point fails with
//! [`Error::TakenOver`] and its bytes since the last one are dropped.
//!
//! A request whose bytes must be all-or-nothing (a checksum to check at the
//! end) makes no durable point before its end, and rolls back by dropping
//! its in-memory state.

use std::fs;

use super::FileName;
use super::ingest::ChunkSink;
use super::meta::{Batch, Cf, Locked};
use super::name::{Tenant, View};
use super::session::{Concat, StreamState, chunk_key, chunk_prefix, decode_piece, encode_piece, record_key};
use super::{ChunkId, Entry, Error, FileRecord, NewFile, Result, Store, UploadId, UploadRecord, UploadState};

/// A new append-only session.
#[derive(Debug, Clone)]
pub struct NewStream {
    /// Who owns it.
    pub tenant: Tenant,
    pub length: Option<u64>,
    pub name: FileName,
    pub declared_type: Option<String>,
    pub metadata: String,
    pub partial: bool,
}

/// Where an append left the session.
#[derive(Debug, Clone)]
pub struct AppendOutcome {
    pub record: UploadRecord,
    /// The file, when this append completed the upload into one.
    pub file: Option<FileRecord>,
}

impl Store {
    /// Creates an append-only session. A zero-length upload completes at once.
    ///
    /// # Errors
    /// [`Error::TooLarge`] over the maximum file size; I/O.
    pub fn create_stream(&self, new: NewStream) -> Result<AppendOutcome> {
        let max = self.options().max_file_size;
        if let Some(len) = new.length {
            if len > max {
                return Err(Error::TooLarge { what: "upload", limit: max, got: len });
            }
        }
        self.admit_upload(&new.tenant, new.length)?;
        self.ensure_space()?;
        let id = UploadId::random();
        let concat = if new.partial { Concat::Partial } else { Concat::None };
        let state = StreamState::new(new.length, 0, 0, new.metadata, concat, self.default_lease());
        let rec = self.stream_record(new.tenant, id, new.name, new.declared_type, state);
        let mut b = Batch::default();
        self.put_upload(&mut b, &rec)?;
        self.meta().write(b, true)?;
        if new.length == Some(0) {
            let app = self.begin_append(&id, 0)?;
            return app.finish(true);
        }
        Ok(AppendOutcome { record: rec, file: None })
    }

    /// An append-only session, if it exists and has not expired.
    ///
    /// # Errors
    /// [`Error::UploadNotFound`], [`Error::UploadExpired`].
    pub fn stream_upload(&self, id: &UploadId) -> Result<UploadRecord> {
        match self.upload(id)? {
            Some(r) if r.stream.is_some() => {
                if r.expires_ms <= self.now_ms() {
                    Err(Error::UploadExpired(id.to_string()))
                } else {
                    Ok(r)
                }
            }
            _ => Err(Error::UploadNotFound(id.to_string())),
        }
    }

    /// [`Store::stream_upload`] when `view` may see the upload; another
    /// tenant's is answered as an unknown one.
    ///
    /// # Errors
    /// [`Error::UploadNotFound`], [`Error::UploadExpired`].
    pub fn stream_upload_in(&self, view: &View, id: &UploadId) -> Result<UploadRecord> {
        self.check_owner(view, id)?;
        self.stream_upload(id)
    }

    /// `Ok` when upload `id` exists and `view` may see it; otherwise the
    /// same [`Error::UploadNotFound`] whether it never existed or is another
    /// tenant's. Check it before anything that acts on the upload.
    ///
    /// # Errors
    /// [`Error::UploadNotFound`].
    pub fn check_owner(&self, view: &View, id: &UploadId) -> Result<()> {
        match self.upload(id)? {
            Some(r) if view.sees(&r.tenant) => Ok(()),
            _ => Err(Error::UploadNotFound(id.to_string())),
        }
    }

    /// Sets the length of an upload created without one.
    ///
    /// # Errors
    /// [`Error::Conflict`] when the length is already set or below the
    /// offset; [`Error::TooLarge`].
    pub fn set_stream_length(&self, id: &UploadId, length: u64) -> Result<UploadRecord> {
        let mut held = self.session_lock(id)?;
        let mut rec = self.stream_upload(id)?;
        let max = self.options().max_file_size;
        let st = rec.stream.as_mut().ok_or_else(|| Error::UploadNotFound(id.to_string()))?;
        match st.length {
            Some(l) if l == length => return Ok(rec),
            Some(l) => return Err(Error::Conflict(format!("the upload's length is already {l}"))),
            None => {}
        }
        if length < st.offset {
            return Err(Error::Conflict(format!(
                "length {length} is below the {} bytes already received",
                st.offset
            )));
        }
        if length > max {
            return Err(Error::TooLarge { what: "upload", limit: max, got: length });
        }
        st.length = Some(length);
        rec.size = length;
        let mut b = Batch::default();
        self.put_upload(&mut b, &rec)?;
        held.write(b, true)?;
        Ok(rec)
    }

    /// Starts appending at `offset`, which must be the session's offset,
    /// taking the upload over from any appender before it (see the module).
    ///
    /// # Errors
    /// [`Error::Conflict`] on an offset mismatch;
    /// [`Error::UploadNotFound`] / [`Error::UploadExpired`].
    pub fn begin_append(&self, id: &UploadId, offset: u64) -> Result<Appender> {
        // The tail first, outside the lock: a tail that cannot be read
        // leaves the upload to whoever appends now.
        let seen = self.stream_upload(id)?;
        let st = seen.stream.as_ref().ok_or_else(|| Error::UploadNotFound(id.to_string()))?;
        if offset != st.offset {
            return Err(Error::Conflict(format!("the upload is at offset {}, not {offset}", st.offset)));
        }
        let want = st.offset - st.tail_base;
        let tail = match st.tail {
            _ if st.complete || want == 0 => Vec::new(),
            Some(chunk) => {
                let len = u32::try_from(want)
                    .map_err(|_| Error::CorruptMetadata(format!("upload {id}: a tail of {want} bytes")))?;
                self.read_chunk(&chunk, len)?.to_vec()
            }
            None => self.read_tail_file(id, st.tail_base, want)?,
        };
        // Then the takeover, if nothing moved meanwhile; durable, so that a
        // database crash cannot hand one epoch to two appenders.
        let mut held = self.session_lock(id)?;
        let mut rec = self.stream_upload(id)?;
        let st = rec.stream.as_mut().ok_or_else(|| Error::UploadNotFound(id.to_string()))?;
        let before = seen.stream.as_ref().map(|s| (s.offset, s.tail_base, s.tail, s.complete));
        if before != Some((st.offset, st.tail_base, st.tail, st.complete)) {
            return Err(Error::Conflict(format!("the upload is at offset {}, not {offset}", st.offset)));
        }
        if !st.complete {
            st.epoch += 1;
            let mut b = Batch::default();
            self.put_upload(&mut b, &rec)?;
            held.write(b, true)?;
        }
        drop(held);
        // A stream of unknown length may grow only as far as the tenant's
        // bytes cap lets it become a file.
        let room = match rec.stream.as_ref().and_then(|s| s.length) {
            Some(_) => None,
            None => self.room(&rec.tenant)?,
        };
        Ok(Appender { room, sink: ChunkSink::with_tail(self, &tail), store: self.clone(), rec, offset })
    }

    /// Session `id` as stored, if the appender of `epoch` still holds it.
    /// The caller holds the session lock.
    fn held_by(&self, id: &UploadId, epoch: u64) -> Result<UploadRecord> {
        let rec = self.stream_upload(id)?;
        match &rec.stream {
            Some(st) if st.epoch == epoch => Ok(rec),
            _ => Err(Error::TakenOver(id.to_string())),
        }
    }

    /// The chunks recorded for an append-only session, in order.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub fn stream_chunks(&self, id: &UploadId) -> Result<Vec<Entry>> {
        let prefix = chunk_prefix(id);
        self.meta()
            .scan(Cf::Uploads, &prefix, None)
            .map(|kv| kv.and_then(|(_, v)| decode_piece(&v)))
            .collect()
    }

    /// Ends a session (tus termination): its record, chunk list and tail go;
    /// its chunks age out through GC.
    ///
    /// An appender still running (on any node) fails at its next durable
    /// point.
    ///
    /// # Errors
    /// [`Error::UploadNotFound`].
    pub fn terminate_stream(&self, id: &UploadId) -> Result<()> {
        let mut held = self.session_lock(id)?;
        if self.upload(id)?.and_then(|r| r.stream).is_none() {
            return Err(Error::UploadNotFound(id.to_string()));
        }
        self.drop_session(&mut held, id)
    }

    /// Commits a complete session's chunks as a file and records the outcome
    /// (the file, or why it was refused) in the same batch. `recorded` is how
    /// many of `chunks` already have keys. The caller holds the session
    /// lock (`held`).
    pub(super) fn complete_into_file(
        &self,
        held: &mut Locked<'_>,
        rec: &mut UploadRecord,
        chunks: Vec<Entry>,
        recorded: u32,
    ) -> Result<AppendOutcome> {
        let id = rec.id;
        let new = NewFile {
            tenant: rec.tenant.clone(),
            name: rec.name.clone(),
            declared_type: rec.declared_type.clone(),
            size: rec.size,
            chunks: chunks.clone(),
            content_hash: None,
        };
        let mut done = rec.clone();
        let result = self.finish_file_with(new, |b: &mut Batch, file: &FileRecord| {
            for (i, e) in chunks.iter().enumerate().skip(recorded as usize) {
                b.put(Cf::Uploads, &chunk_key(&id, i as u32), &encode_piece(&e.id, e.len.into()));
            }
            if let Some(st) = done.stream.as_mut() {
                st.file = Some(file.id);
                st.chunks = chunks.len() as u32;
            }
            done.state = UploadState::Finished { file: file.id };
            let v = serde_json::to_vec(&done).map_err(|e| Error::Task(e.to_string()))?;
            b.put(Cf::Uploads, &record_key(&id), &v);
            Ok(())
        });
        match result {
            Ok(file) => {
                *rec = done;
                Ok(AppendOutcome { record: rec.clone(), file: Some(file) })
            }
            Err(Error::TypeRejected(reason)) => {
                // The bytes are all in but will not become a file.
                if let Some(st) = rec.stream.as_mut() {
                    st.rejected = Some(reason.clone());
                }
                let mut b = Batch::default();
                self.put_upload(&mut b, rec)?;
                held.write(b, true)?;
                Err(Error::TypeRejected(reason))
            }
            Err(e) => Err(e),
        }
    }
}

/// Bytes on their way into an append-only session. Blocking: use it from a
/// blocking thread.
pub struct Appender {
    store: Store,
    rec: UploadRecord,
    /// Cuts and stores; its entries are the chunks since the last durable
    /// point, in order.
    sink: ChunkSink,
    /// Bytes received (acknowledged or not).
    offset: u64,
    /// Bytes the tenant's quota leaves a stream of unknown length.
    room: Option<u64>,
}

impl Appender {
    fn state(&self) -> &StreamState {
        // Only stream records make appenders.
        self.rec.stream.as_ref().expect("stream record")
    }

    /// Bytes received so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn length(&self) -> Option<u64> {
        self.state().length
    }

    /// Adds bytes.
    ///
    /// # Errors
    /// [`Error::TooLarge`] past the upload's length (nothing of `data` is
    /// taken); I/O.
    pub fn push(&mut self, data: &[u8]) -> Result<()> {
        let end = self.offset + data.len() as u64;
        let limit = self.state().length.unwrap_or(self.store.options().max_file_size);
        if end > limit {
            return Err(Error::TooLarge { what: "upload", limit, got: end });
        }
        if self.room.is_some_and(|room| end > room) {
            return Err(self.store.room_exceeded(&self.rec.tenant, end));
        }
        self.offset = end;
        let lease = self.lease();
        self.sink.push(data, lease)?;
        Ok(())
    }

    /// The lease for chunks this upload stores: at least as long as the
    /// session's own.
    fn lease(&self) -> u64 {
        self.state().leased_until.max(self.store.default_lease())
    }

    /// Makes everything received so far durable and acknowledged.
    ///
    /// # Errors
    /// [`Error::TakenOver`] when a newer request took the upload (nothing
    /// of this one's since its last durable point is kept); I/O and
    /// metadata backend errors.
    pub fn persist(&mut self) -> Result<()> {
        if self.offset == self.state().offset && self.sink.entries().is_empty() && !self.sink.has_pending() {
            return Ok(());
        }
        let lease = self.lease();
        self.sink.flush(lease)?;
        let id = self.rec.id;
        let st = self.state().clone();
        let tail = self.sink.tail();
        let base = self.offset - tail.len() as u64;
        // Shared: a chunk any node reads; alone: a file (no chunk to collect).
        let tail_chunk = match tail.is_empty() {
            false if self.store.options().shared => Some(self.store.put_chunk(tail, None, lease)?.id),
            false => self.store.write_tail_file(&id, base, tail).map(|()| None)?,
            true => None,
        };

        let now = self.store.now_ms();
        let mut next = st.clone();
        let mut b = Batch::default();
        for (i, e) in self.sink.entries().iter().enumerate() {
            b.put(Cf::Uploads, &chunk_key(&id, st.chunks + i as u32), &encode_piece(&e.id, e.len.into()));
        }
        next.offset = self.offset;
        next.tail_base = base;
        next.tail = tail_chunk;
        next.chunks = st.chunks + self.sink.entries().len() as u32;
        // Keep the upload's chunks pinned while it is active: renew their
        // leases when half of the lease has gone.
        let half = self.store.options().chunk_lease.as_millis() as u64 / 2;
        if next.leased_until < now + half {
            let lease = self.store.default_lease();
            let mut ids: Vec<ChunkId> = self.store.stream_chunks(&id)?.iter().map(|e| e.id).collect();
            ids.extend(self.sink.entries().iter().map(|e| e.id));
            ids.extend(tail_chunk);
            for group in ids.chunks(8192) {
                self.store.lease_present(group, lease)?;
            }
            next.leased_until = lease;
        }
        self.store.objects().barrier()?;
        let mut held = self.store.session_lock(&id)?;
        // From the record's change to the removal of the tail file it no
        // longer names: not across a backup's checkpoint and copy of
        // `uploads/` (the new tail file, written above, needs no hold: a
        // record is read only as far as it says).
        let _tails = self.store.hold_tails();
        // The record as stored (another request may have set its length
        // meanwhile), moved on by this request's progress only.
        let mut rec = self.store.held_by(&id, st.epoch)?;
        let cur = rec.stream.as_mut().ok_or_else(|| Error::UploadNotFound(id.to_string()))?;
        if (cur.offset, cur.chunks) != (st.offset, st.chunks) {
            return Err(Error::TakenOver(id.to_string()));
        }
        if cur.length.is_some_and(|l| l < self.offset) {
            return Err(Error::Conflict(format!("the upload's length is now below {}", self.offset)));
        }
        (cur.offset, cur.tail_base, cur.tail, cur.chunks, cur.leased_until) =
            (next.offset, next.tail_base, next.tail, next.chunks, next.leased_until);
        rec.expires_ms = now + self.store.options().upload_expiry.as_millis() as u64;
        self.store.put_upload(&mut b, &rec)?;
        held.write(b, true)?;
        drop(held);
        self.rec = rec;
        if st.tail.is_none() && st.offset > st.tail_base && (tail_chunk.is_some() || base != st.tail_base) {
            let _ = fs::remove_file(self.store.tail_path(&id, st.tail_base));
        }
        self.sink.take_entries();
        Ok(())
    }

    /// Ends this request's bytes: with `keep`, makes them durable and, when
    /// the upload is now complete, cuts its last chunk and turns it into a
    /// file (or, for a partial upload, marks it complete); without `keep`,
    /// drops everything since the last durable point (a checksum mismatch).
    ///
    /// # Errors
    /// [`Error::TypeRejected`] when the completed file is refused;
    /// [`Error::TakenOver`] as for [`Appender::persist`]; I/O.
    pub fn finish(mut self, keep: bool) -> Result<AppendOutcome> {
        if !keep {
            let rec = self.store.stream_upload(&self.rec.id)?;
            return Ok(AppendOutcome { record: rec, file: None });
        }
        if self.state().length.is_none() {
            // Another request may have set the length since this one began.
            let now = self.store.stream_upload(&self.rec.id)?;
            if let (Some(cur), Some(mine)) = (now.stream, self.rec.stream.as_mut()) {
                if cur.epoch == mine.epoch {
                    (mine.length, self.rec.size) = (cur.length, now.size);
                }
            }
        }
        let complete = self.state().length == Some(self.offset);
        if !complete {
            self.persist()?;
            return Ok(AppendOutcome { record: self.rec.clone(), file: None });
        }
        if self.state().complete {
            return Ok(AppendOutcome { record: self.rec.clone(), file: None });
        }
        // The end: the tail becomes the last chunk(s).
        self.sink.finish(self.lease())?;
        let id = self.rec.id;
        let st = self.state().clone();
        let mut chunks = self.store.stream_chunks(&id)?;
        // Only what the record counts (keys past it are no appender's).
        chunks.truncate(st.chunks as usize);
        let recorded = chunks.len() as u32;
        chunks.append(&mut self.sink.take_entries());
        let mut rec = self.rec.clone();
        if let Some(s) = rec.stream.as_mut() {
            s.offset = self.offset;
            s.tail_base = self.offset;
            s.tail = None;
            s.complete = true;
            s.chunks = chunks.len() as u32;
        }
        self.store.objects().barrier()?;
        let mut held = self.store.session_lock(&id)?;
        // From the record's end to its tail file's removal (see `persist`).
        let _tails = self.store.hold_tails();
        self.store.held_by(&id, st.epoch)?;
        let outcome = if st.concat == Concat::Partial {
            let mut b = Batch::default();
            for (i, e) in chunks.iter().enumerate().skip(recorded as usize) {
                b.put(Cf::Uploads, &chunk_key(&id, i as u32), &encode_piece(&e.id, e.len.into()));
            }
            self.store.put_upload(&mut b, &rec)?;
            held.write(b, true)?;
            Ok(AppendOutcome { record: rec, file: None })
        } else {
            // Chunk keys, completion and the file in one batch.
            self.store.complete_into_file(&mut held, &mut rec, chunks, recorded)
        };
        drop(held);
        if st.tail.is_none() && st.offset > st.tail_base {
            let _ = fs::remove_file(self.store.tail_path(&id, st.tail_base));
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ChunkerParams, FsObjects, FsyncPolicy, ManualClock, StoreOptions};
    use crate::testdata::pseudo_random;
    use proptest::prelude::*;
    use std::sync::Arc;

    /// A store over `dir` with small chunks and no fsync; `opts` gives the rest.
    fn store_with(dir: &std::path::Path, opts: StoreOptions) -> Store {
        let opts = StoreOptions {
            chunking: ChunkerParams { min: 256, avg: 1024, max: 4096 },
            fsync: FsyncPolicy::Never,
            ..opts
        };
        let objects = Arc::new(FsObjects::open(&dir.join("objects"), FsyncPolicy::Never).unwrap());
        Store::open_with(dir, opts, objects, ManualClock::new()).unwrap()
    }

    fn store(dir: &std::path::Path) -> Store {
        store_with(dir, StoreOptions::default())
    }

    /// A new upload of `length` bytes named `f.bin`.
    fn new_stream(s: &Store, length: u64, metadata: &str, partial: bool) -> AppendOutcome {
        let name = "f.bin".parse().unwrap();
        let spec = NewStream {
            tenant: Tenant::default(),
            length: Some(length),
            name,
            declared_type: None,
            metadata: metadata.into(),
            partial,
        };
        s.create_stream(spec).unwrap()
    }

    fn upload(s: &Store, bytes: &[u8], splits: &[usize], partial: bool) -> AppendOutcome {
        let rec = new_stream(s, bytes.len() as u64, "", partial);
        if bytes.is_empty() {
            return rec;
        }
        let id = rec.record.id;
        let mut at = 0;
        let mut last = None;
        let mut cuts: Vec<usize> = splits.iter().map(|s| s % bytes.len()).collect();
        cuts.push(bytes.len());
        cuts.sort_unstable();
        for end in cuts {
            if end <= at {
                continue;
            }
            let mut a = s.begin_append(&id, at as u64).unwrap();
            a.push(&bytes[at..end]).unwrap();
            last = Some(a.finish(true).unwrap());
            at = end;
        }
        last.unwrap()
    }

    #[test]
    fn appends_cut_like_the_whole_file_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = pseudo_random(50_000, 1);
        let s = store(dir.path());
        let rec = new_stream(&s, 50_000, "k dg==", false).record;
        let mut a = s.begin_append(&rec.id, 0).unwrap();
        a.push(&bytes[..20_000]).unwrap();
        // A second writer takes the upload over: the first one, still
        // running, can record nothing more.
        let mut b = s.begin_append(&rec.id, 0).unwrap();
        assert!(matches!(a.finish(true), Err(Error::TakenOver(_))));
        assert_eq!(s.stream_upload(&rec.id).unwrap().stream.unwrap().offset, 0);
        b.push(&bytes[..20_000]).unwrap();
        b.finish(true).unwrap();
        assert!(matches!(s.begin_append(&rec.id, 0), Err(Error::Conflict(_))), "offset mismatch");
        drop(s);
        let s = store(dir.path());
        let mut a = s.begin_append(&rec.id, 20_000).unwrap();
        a.push(&bytes[20_000..]).unwrap();
        let out = a.finish(true).unwrap();
        let file = out.file.unwrap();
        let whole = s.chunker().chunk_all(&bytes);
        let chunks: Vec<u32> = s.stream_chunks(&rec.id).unwrap().iter().map(|e| e.len).collect();
        assert_eq!(chunks, whole.iter().map(|&n| n as u32).collect::<Vec<_>>());
        assert_eq!(file.size, 50_000);
        assert!(s.head_bytes(&s.stream_chunks(&rec.id).unwrap(), 50_000).unwrap() == bytes);
    }

    /// A tail in `uploads/<id>/tail-<base>` with bytes a crash left past the
    /// recorded offset: the upload resumes from exactly the recorded bytes;
    /// its next durable point writes the new tail to the file of its new
    /// base (a store of its own) and drops the old file.
    #[test]
    fn an_upload_with_a_tail_file_resumes_from_its_recorded_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = pseudo_random(30_000, 5);
        let s = store(dir.path());
        let id = new_stream(&s, 30_000, "", false).record.id;
        // The old layout: 100 bytes recorded, all of them in the tail file,
        // and 50 more that a crash wrote but never recorded.
        let mut rec = s.upload(&id).unwrap().unwrap();
        let st = rec.stream.as_mut().unwrap();
        (st.offset, st.tail_base, st.tail) = (100, 0, None);
        let mut b = Batch::default();
        s.put_upload(&mut b, &rec).unwrap();
        s.meta().write(b, true).unwrap();
        fs::create_dir_all(s.upload_dir(&id)).unwrap();
        let mut junk = bytes[..100].to_vec();
        junk.extend_from_slice(&pseudo_random(50, 6));
        fs::write(s.tail_path(&id, 0), &junk).unwrap();

        let mut a = s.begin_append(&id, 100).unwrap();
        a.push(&bytes[100..20_000]).unwrap();
        a.persist().unwrap();
        assert!(!s.tail_path(&id, 0).exists(), "the tail file of an old base outlived its record");
        let st = s.upload(&id).unwrap().unwrap().stream.unwrap();
        assert_eq!((st.offset, st.tail), (20_000, None), "a store of its own keeps its tail in a file");
        assert!(st.tail_base > 0, "no chunk was cut from 19,900 bytes");
        let tail = fs::read(s.tail_path(&id, st.tail_base)).unwrap();
        assert_eq!(tail, bytes[st.tail_base as usize..20_000], "the new tail file holds the recorded tail");
        let mut a = s.begin_append(&id, 20_000).unwrap();
        a.push(&bytes[20_000..]).unwrap();
        let file = a.finish(true).unwrap().file.unwrap();
        let all = s.stream_chunks(&id).unwrap();
        assert_eq!(s.head_bytes(&all, 30_000).unwrap(), bytes, "the stored file differs from the source");
        assert_eq!(file.size, 30_000);
    }

    #[test]
    fn a_rolled_back_append_leaves_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = pseudo_random(30_000, 2);
        let s = store(dir.path());
        let id = new_stream(&s, 30_000, "", false).record.id;
        let mut a = s.begin_append(&id, 0).unwrap();
        a.push(&bytes[..10_000]).unwrap();
        a.finish(true).unwrap();
        let mut a = s.begin_append(&id, 10_000).unwrap();
        a.push(&pseudo_random(10_000, 99)).unwrap();
        let out = a.finish(false).unwrap();
        assert_eq!(out.record.stream.unwrap().offset, 10_000);
        let mut a = s.begin_append(&id, 10_000).unwrap();
        a.push(&bytes[10_000..]).unwrap();
        let f = a.finish(true).unwrap().file.unwrap();
        let all = s.stream_chunks(&id).unwrap();
        assert_eq!(s.head_bytes(&all, 30_000).unwrap(), bytes);
        assert_eq!(f.size, 30_000);
    }

    #[test]
    fn an_oversized_concatenation_is_refused_before_anything_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let s = store_with(dir.path(), StoreOptions { max_file_size: 30_000, ..StoreOptions::default() });
        let parts: Vec<UploadId> =
            (0..2).map(|i| upload(&s, &pseudo_random(20_000, 7 + i), &[3_333], true).record.id).collect();
        let before = s.stats().unwrap();
        let err = s
            .concat_streams(&Tenant::default(), &parts, &"whole.bin".parse().unwrap(), None, "")
            .unwrap_err();
        assert!(matches!(err, Error::TooLarge { got: 40_000, .. }), "{err}");
        let after = s.stats().unwrap();
        assert_eq!((after.unique_chunks, after.stored_bytes), (before.unique_chunks, before.stored_bytes));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn concatenation_equals_the_whole(seed in any::<u64>(), len in 1usize..60_000, seams in proptest::collection::vec(any::<prop::sample::Index>(), 1..4), splits in proptest::collection::vec(0usize..100_000, 0..4)) {
            let dir = tempfile::tempdir().unwrap();
            let s = store(dir.path());
            let bytes = pseudo_random(len, seed);
            let mut cuts: Vec<usize> = seams.iter().map(|i| i.index(len)).filter(|&c| c > 0).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let mut parts = Vec::new();
            let mut at = 0;
            for end in cuts.into_iter().chain([len]) {
                let out = upload(&s, &bytes[at..end], &splits, true);
                prop_assert!(out.file.is_none());
                parts.push(out.record.id);
                at = end;
            }
            let fin = s.concat_streams(&Tenant::default(), &parts, &"whole.bin".parse().unwrap(), None, "").unwrap();
            let got: Vec<usize> = s.stream_chunks(&fin.record.id).unwrap().iter().map(|e| e.len as usize).collect();
            prop_assert_eq!(got, s.chunker().chunk_all(&bytes));
            let file = fin.file.unwrap();
            prop_assert_eq!(file.size, len as u64);
        }
    }
}
