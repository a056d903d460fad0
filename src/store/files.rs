//! Files: commit a manifest (one synced batch, or segment by segment with
//! a pending record that resumes after a crash), read records and manifest
//! segments, list, delete (deferred while a download reads the file).

use std::collections::HashMap;

use super::engine::{bump, stripes};
use super::error::{Error, Result};
use super::filetype;
use super::id::{ChunkId, FileId};
use super::manifest::{self, Entry};
use super::meta::{self, Batch, Cf, ChunkRow, ChunkState, Counter, LockSpace};
use super::name::{Tenant, View};
use super::record::{FileRecord, FileState};
use super::session::UploadRecord;
use super::tenant::{self, occurrences};
use super::{FileName, Store, lock};

const PENDING_PREFIX: &[u8] = b"pending/";

/// A file to commit.
#[derive(Debug, Clone)]
pub struct NewFile {
    /// Who will own it.
    pub tenant: Tenant,
    pub name: FileName,
    /// What the client said the type is; detection decides.
    pub declared_type: Option<String>,
    pub size: u64,
    pub chunks: Vec<Entry>,
    pub content_hash: Option<ChunkId>,
}

impl NewFile {
    /// The file an upload session becomes, of `chunks`: its tenant, name,
    /// declared type and size.
    pub fn of_upload(rec: &UploadRecord, chunks: Vec<Entry>) -> NewFile {
        NewFile {
            tenant: rec.tenant.clone(),
            name: rec.name.clone(),
            declared_type: rec.declared_type.clone(),
            size: rec.size,
            chunks,
            content_hash: None,
        }
    }
}

impl Store {
    /// Validates the type and commits a file. See [`Store::commit_file`].
    ///
    /// # Errors
    /// [`Error::TypeRejected`], and those of [`Store::commit_file`].
    pub fn finish_file(&self, new: NewFile) -> Result<FileRecord> {
        self.finish_file_with(new, |_, _| Ok(()))
    }

    /// [`Store::finish_file`], adding `hook`'s writes to the batch that
    /// makes the file durable (an upload session marking itself finished).
    pub(super) fn finish_file_with(
        &self,
        mut new: NewFile,
        hook: impl FnOnce(&mut Batch, &FileRecord) -> Result<()>,
    ) -> Result<FileRecord> {
        if new.size > self.0.opts.max_file_size {
            return Err(Error::TooLarge { what: "file", limit: self.0.opts.max_file_size, got: new.size });
        }
        // An empty entry adds no bytes, but it must still name a chunk the
        // store has (only the empty chunk needs no object).
        let empty = ChunkId::of(b"");
        let hollow: Vec<ChunkId> =
            new.chunks.iter().filter(|e| e.len == 0 && e.id != empty).map(|e| e.id).collect();
        if !hollow.is_empty() {
            let missing = self.lease_present(&hollow, 0)?;
            if !missing.is_empty() {
                return Err(Error::MissingChunks(missing));
            }
        }
        new.chunks.retain(|e| e.len > 0);
        let head = self.head_bytes(&new.chunks, filetype::SNIFF_LEN).map_err(|e| match e {
            // A chunk that cannot be read for sniffing is a missing chunk.
            Error::Corrupt { id, .. } => Error::MissingChunks(vec![id]),
            e => e,
        });
        let head = match head {
            Ok(h) => h,
            Err(e) => {
                // Prefer reporting every missing chunk at once.
                self.check_chunks(&new.chunks)?;
                return Err(e);
            }
        };
        let content_type = self.0.opts.types.check(new.name.as_str(), &head, new.declared_type.as_deref())?;
        self.commit_file(new, content_type, hook)
    }

    fn check_chunks(&self, chunks: &[Entry]) -> Result<()> {
        let ids: Vec<ChunkId> = chunks.iter().map(|e| e.id).collect();
        let missing = self.lease_present(&ids, 0)?;
        if missing.is_empty() { Ok(()) } else { Err(Error::MissingChunks(missing)) }
    }

    /// Commits a manifest as a new file: the chunks must all be present with
    /// the lengths given; refcounts rise by each chunk's occurrences. Files up
    /// to one manifest segment commit in one synced batch; larger ones in
    /// steps that resume after a crash, visible only at the end.
    ///
    /// # Errors
    /// [`Error::MissingChunks`] listing every absent chunk; [`Error::InvalidInput`]
    /// when lengths disagree with the size or with the stored chunks.
    pub(super) fn commit_file(
        &self,
        new: NewFile,
        content_type: String,
        hook: impl FnOnce(&mut Batch, &FileRecord) -> Result<()>,
    ) -> Result<FileRecord> {
        let chunks: Vec<Entry> = new.chunks.into_iter().filter(|e| e.len > 0).collect();
        let total: u64 = chunks.iter().map(|e| u64::from(e.len)).sum();
        if total != new.size {
            return Err(Error::InvalidInput(format!(
                "chunk lengths add up to {total} bytes but the size is {}",
                new.size
            )));
        }
        let name = new.name.to_string();
        let segs = manifest::segments(&chunks);
        let mut digest = manifest::Digest::default();
        chunks.iter().for_each(|e| digest.update(e));
        let now = self.now_ms();
        let tenant = new.tenant.clone();
        let mut rec = FileRecord {
            id: FileId::new(now),
            tenant: new.tenant,
            name,
            size: new.size,
            content_type,
            created_ms: now,
            chunker: self.0.opts.chunking.id(),
            chunks: chunks.len() as u64,
            manifest_digest: digest.finish(),
            content_hash: new.content_hash,
            segments: segs.iter().map(|s| s.0).collect(),
            state: FileState::Ready,
            added_bytes: Some(0),
        };
        if segs.len() <= 1 {
            let ids: Vec<ChunkId> = chunks.iter().map(|e| e.id).collect();
            let mut held = self.lock_stripes(&ids)?;
            let mut batch = Batch::default();
            self.admit_commit(&mut held, &mut batch, &tenant, rec.size)?;
            rec.added_bytes = Some(self.increment(&mut batch, &chunks, true)?);
            self.tenant_refs(&mut batch, &tenant, &occurrences(&chunks), 1)?;
            batch.put(Cf::Tenants, &tenant::file_key(&tenant, &rec.id), b"");
            if let Some((_, seg)) = segs.first() {
                batch.put(Cf::Manifests, &meta::manifest_key(&rec.id.0, 0), &manifest::encode_segment(seg));
            }
            self.put_record(&mut batch, &rec)?;
            batch.add(Counter::Files, 1);
            batch.add(Counter::LogicalBytes, rec.size as i64);
            hook(&mut batch, &rec)?;
            self.0.objects.barrier()?;
            held.write(batch, true)?;
            bump(&self.0.activity.files, 1);
            return Ok(rec);
        }

        // Large file. Step 0: every chunk present, and leased so that GC
        // cannot take one while the steps run.
        let lease = now + self.0.opts.chunk_lease.as_millis() as u64;
        let mut missing = Vec::new();
        for group in chunks.chunks(8192) {
            let ids: Vec<ChunkId> = group.iter().map(|e| e.id).collect();
            missing.extend(self.lease_present(&ids, lease)?);
            self.check_lengths(group)?;
        }
        if !missing.is_empty() {
            missing.sort_unstable();
            missing.dedup();
            return Err(Error::MissingChunks(missing));
        }
        // Step 1: manifest and a pending record, invisible; the tenant's
        // usage counts it from here (the steps always run to the end).
        rec.state = FileState::Committing { next: 0 };
        let mut batch = Batch::default();
        let mut counted = self.locked();
        self.admit_commit(&mut counted, &mut batch, &tenant, rec.size)?;
        for (i, (_, seg)) in segs.iter().enumerate() {
            batch.put(
                Cf::Manifests,
                &meta::manifest_key(&rec.id.0, i as u32),
                &manifest::encode_segment(seg),
            );
        }
        self.put_record(&mut batch, &rec)?;
        batch.put(Cf::Meta, &pending_key(&rec.id), b"");
        hook(&mut batch, &rec)?;
        self.0.objects.barrier()?;
        counted.write(batch, true)?;
        drop(counted);
        // Step 2: refcounts, a segment at a time; the last step shows the file.
        let rec = self.resume_commit(rec)?;
        bump(&self.0.activity.files, 1);
        Ok(rec)
    }

    pub(super) fn check_lengths(&self, entries: &[Entry]) -> Result<()> {
        let ids: Vec<ChunkId> = entries.iter().map(|e| e.id).collect();
        for (e, row) in entries.iter().zip(self.0.meta.chunk_rows(&ids)?) {
            if let Some(r) = row {
                if r.raw_len != e.len {
                    return Err(Error::InvalidInput(format!(
                        "chunk {} is {} bytes, not {}",
                        e.id, r.raw_len, e.len
                    )));
                }
            }
        }
        Ok(())
    }

    /// Adds each entry's occurrences to its chunk's refcount, into `batch`,
    /// and returns the raw bytes of the chunks no file referenced before.
    /// The caller holds the stripes. With `strict`, an absent or unusable
    /// chunk or a length mismatch is an error; otherwise (resumed steps, whose
    /// chunks were checked and leased) a lost row is recreated as damaged.
    fn increment(&self, batch: &mut Batch, entries: &[Entry], strict: bool) -> Result<u64> {
        let mut counts: HashMap<ChunkId, (u64, u32)> = HashMap::new();
        for e in entries {
            counts.entry(e.id).or_insert((0, e.len)).0 += 1;
        }
        let ids: Vec<ChunkId> = counts.keys().copied().collect();
        let rows = self.0.meta.chunk_rows(&ids)?;
        let mut missing = Vec::new();
        let mut added = 0;
        for (id, row) in ids.iter().zip(rows) {
            let (n, len) = counts[id];
            let mut r = match row {
                Some(r) if strict && !r.usable() => {
                    missing.push(*id);
                    continue;
                }
                Some(r) => r,
                None if strict => {
                    missing.push(*id);
                    continue;
                }
                None => {
                    tracing::error!(chunk = %id, "chunk row vanished during a commit; marked damaged");
                    ChunkRow {
                        refcount: 0,
                        raw_len: len,
                        stored_len: 0,
                        codec: 0,
                        state: ChunkState::Damaged,
                        zero_since: 0,
                        lease_until: 0,
                        generation: 0,
                    }
                }
            };
            if strict && r.raw_len != len {
                return Err(Error::InvalidInput(format!("chunk {id} is {} bytes, not {len}", r.raw_len)));
            }
            if r.refcount == 0 {
                added += u64::from(r.raw_len);
            }
            r.refcount += n;
            if r.state == ChunkState::Zero {
                r.state = ChunkState::Live;
            }
            batch.put(Cf::Chunks, id.as_bytes(), &r.encode());
        }
        if !missing.is_empty() {
            missing.sort_unstable();
            return Err(Error::MissingChunks(missing));
        }
        Ok(added)
    }

    /// Runs a committing file's remaining steps (a segment's references
    /// each), under the file's lock and from the record as stored then, so
    /// that a step runs once even when another process resumes the same
    /// commit.
    pub(super) fn resume_commit(&self, rec: FileRecord) -> Result<FileRecord> {
        if !matches!(rec.state, FileState::Committing { .. }) {
            return Ok(rec);
        }
        let mut held = self.file_lock(&rec.id)?;
        let Some(mut rec) = self.record(&rec.id)? else {
            return Err(Error::FileNotFound(rec.id.to_string()));
        };
        let FileState::Committing { next } = rec.state else {
            return Ok(rec);
        };
        let nseg = rec.segments.len() as u32;
        for seg in next..nseg {
            let entries = self.segment(&rec.id, seg)?;
            let ids: Vec<ChunkId> = entries.iter().map(|e| e.id).collect();
            held.take(LockSpace::Chunks, stripes(&ids))?;
            let mut batch = Batch::default();
            let added = self.increment(&mut batch, &entries, false)?;
            // Step by step, in the record each step writes: a resumed
            // commit goes on from the sum its last step made.
            rec.added_bytes = rec.added_bytes.map(|b| b + added);
            self.tenant_refs(&mut batch, &rec.tenant, &occurrences(&entries), 1)?;
            let last = seg + 1 == nseg;
            rec.state = if last { FileState::Ready } else { FileState::Committing { next: seg + 1 } };
            self.put_record(&mut batch, &rec)?;
            if last {
                batch.delete(Cf::Meta, &pending_key(&rec.id));
                batch.put(Cf::Tenants, &tenant::file_key(&rec.tenant, &rec.id), b"");
                batch.add(Counter::Files, 1);
                batch.add(Counter::LogicalBytes, rec.size as i64);
            }
            held.write(batch, last)?;
            held.release(LockSpace::Chunks)?;
        }
        Ok(rec)
    }

    pub(super) fn put_record(&self, batch: &mut Batch, rec: &FileRecord) -> Result<()> {
        let v = serde_json::to_vec(rec).map_err(|e| Error::Task(e.to_string()))?;
        batch.put(Cf::Files, rec.id.as_bytes(), &v);
        Ok(())
    }

    pub(super) fn record(&self, id: &FileId) -> Result<Option<FileRecord>> {
        self.0
            .meta
            .get(Cf::Files, id.as_bytes())?
            .map(|v| {
                serde_json::from_slice(&v).map_err(|e| Error::CorruptMetadata(format!("file {id}: {e}")))
            })
            .transpose()
    }

    /// A visible file's record.
    ///
    /// # Errors
    /// [`Error::FileNotFound`].
    pub fn file(&self, id: &FileId) -> Result<FileRecord> {
        match self.record(id)? {
            Some(r) if r.state == FileState::Ready => Ok(r),
            _ => Err(Error::FileNotFound(id.to_string())),
        }
    }

    /// One manifest segment of a file.
    ///
    /// # Errors
    /// [`Error::CorruptMetadata`] when absent or undecodable.
    pub fn segment(&self, id: &FileId, seg: u32) -> Result<Vec<Entry>> {
        let v = self
            .0
            .meta
            .get(Cf::Manifests, &meta::manifest_key(&id.0, seg))?
            .ok_or_else(|| Error::CorruptMetadata(format!("file {id} lacks manifest segment {seg}")))?;
        manifest::decode_segment(&v).map_err(|e| Error::CorruptMetadata(format!("file {id}: {e}")))
    }

    /// A file's record if `view` may see it; otherwise the same
    /// [`Error::FileNotFound`] as for an id that never existed.
    ///
    /// # Errors
    /// [`Error::FileNotFound`].
    pub fn file_in(&self, view: &View, id: &FileId) -> Result<FileRecord> {
        self.file(id)?.seen_by(view)
    }

    /// Deletes a file `view` may see: it disappears at once; its chunks' refcounts fall as
    /// soon as no download is reading it (or at the next GC), and chunks
    /// left unreferenced go to GC.
    ///
    /// # Errors
    /// [`Error::FileNotFound`].
    pub fn delete_file(&self, view: &View, id: &FileId) -> Result<()> {
        let segments = {
            let mut held = self.file_lock(id)?;
            let mut rec = self.file_in(view, id)?;
            rec.state = FileState::Deleting { next: 0 };
            let mut batch = Batch::default();
            self.put_record(&mut batch, &rec)?;
            batch.delete(Cf::Tenants, &tenant::file_key(&rec.tenant, id));
            batch.put(Cf::Meta, &pending_key(id), b"");
            batch.add(Counter::Files, -1);
            batch.add(Counter::LogicalBytes, -(rec.size as i64));
            tenant::tally(&mut batch, &rec.tenant, -1, -(rec.size as i64));
            held.write(batch, true)?;
            rec.segments.len() as u32
        };
        // Out of the open-files cache and the readers checked in one step
        // under the readers lock: a download that opened the file from the
        // cache before this is counted, one after it misses and finds the
        // file deleting (see `store::cache`).
        let read = {
            let mut readers = lock(&self.0.readers);
            self.0.cache.remove(id, segments);
            readers.get_mut(id).filter(|r| r.n > 0).map(|r| r.delete_waits = true).is_some()
        };
        // Then other nodes' downloads (after the deleting record: see
        // `super::readers`); theirs finish at a later GC pass.
        if !read && !self.read_elsewhere(id)? {
            self.finish_delete(id)?;
        }
        Ok(())
    }

    pub(super) fn is_being_read(&self, id: &FileId) -> bool {
        lock(&self.0.readers).get(id).is_some_and(|r| r.n > 0)
    }

    /// Drops a deleting file's references, a segment at a time, then its
    /// record and manifest.
    pub(super) fn finish_delete(&self, id: &FileId) -> Result<()> {
        let mut held = self.file_lock(id)?;
        let Some(mut rec) = self.record(id)? else { return Ok(()) };
        let FileState::Deleting { next } = rec.state else { return Ok(()) };
        let nseg = rec.segments.len() as u32;
        for seg in next..nseg {
            let entries = self.segment(id, seg)?;
            let ids: Vec<ChunkId> = entries.iter().map(|e| e.id).collect();
            held.take(LockSpace::Chunks, stripes(&ids))?;
            let mut batch = Batch::default();
            self.decrement(&mut batch, &entries)?;
            self.tenant_refs(&mut batch, &rec.tenant, &occurrences(&entries), -1)?;
            rec.state = FileState::Deleting { next: seg + 1 };
            self.put_record(&mut batch, &rec)?;
            held.write(batch, false)?;
            held.release(LockSpace::Chunks)?;
        }
        let mut batch = Batch::default();
        for seg in 0..nseg {
            batch.delete(Cf::Manifests, &meta::manifest_key(&id.0, seg));
        }
        batch.delete(Cf::Files, id.as_bytes());
        batch.delete(Cf::Meta, &pending_key(id));
        held.write(batch, true)
    }

    fn decrement(&self, batch: &mut Batch, entries: &[Entry]) -> Result<()> {
        let mut counts: HashMap<ChunkId, u64> = HashMap::new();
        for e in entries {
            *counts.entry(e.id).or_default() += 1;
        }
        let ids: Vec<ChunkId> = counts.keys().copied().collect();
        let now = self.now_ms();
        for (id, row) in ids.iter().zip(self.0.meta.chunk_rows(&ids)?) {
            let Some(mut r) = row else {
                tracing::warn!(chunk = %id, "deleting a reference to a chunk with no row");
                continue;
            };
            r.refcount = r.refcount.saturating_sub(counts[id]);
            if r.refcount == 0 {
                if r.state == ChunkState::Live {
                    r.state = ChunkState::Zero;
                }
                r.zero_since = now;
                let at = (now + self.grace_ms()).max(r.lease_until);
                batch.put(Cf::Gcq, &meta::gcq_key(at, id), b"");
            }
            batch.put(Cf::Chunks, id.as_bytes(), &r.encode());
        }
        Ok(())
    }

    /// Finishes multi-step commits and deletes a crash interrupted, and
    /// deletes that waited for their last reader.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub fn resume_pending(&self) -> Result<usize> {
        let pending: Vec<FileId> = self
            .0
            .meta
            .scan(Cf::Meta, PENDING_PREFIX, None)
            .filter_map(|kv| kv.ok())
            .filter_map(|(k, _)| k.get(PENDING_PREFIX.len()..).and_then(FileId::from_slice))
            .collect();
        let mut done = 0;
        for id in pending {
            match self.record(&id)? {
                Some(rec @ FileRecord { state: FileState::Committing { .. }, .. }) => {
                    self.resume_commit(rec)?;
                    done += 1;
                }
                Some(FileRecord { state: FileState::Deleting { .. }, .. })
                    if !self.is_being_read(&id) && !self.read_elsewhere(&id)? =>
                {
                    self.finish_delete(&id)?;
                    done += 1;
                }
                Some(_) => {}
                None => {
                    let mut b = Batch::default();
                    b.delete(Cf::Meta, &pending_key(&id));
                    self.0.meta.write(b, false)?;
                }
            }
        }
        self.sweep_reader_rows()?;
        Ok(done)
    }
}

pub(super) fn pending_key(id: &FileId) -> Vec<u8> {
    let mut k = PENDING_PREFIX.to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}
