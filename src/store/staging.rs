//! Commits in parts: a native commit sent as numbered segments of at most
//! [`SEGMENT_ENTRIES`] entries, so that neither a request nor a step of the
//! server grows with the file.
//!
//! A session is an [`UploadRecord`] of protocol [`COMMIT_PROTOCOL`] (owner,
//! expiry, lock and reaping as for every upload session), opened with the
//! file's name, size and declared type. Each segment is checked when it
//! arrives by the rules of a one-shot commit (its chunks known to the
//! caller's tenant and present, every missing one named at once; lengths
//! as stored), its chunks are leased for the session's life, and it is kept
//! under the session's keys (`s` ‖ id ‖ n) after a synced write: sending
//! the same segment again changes nothing, another body for the same
//! number is a conflict.
//!
//! Finishing reads the segments one at a time, in order: a first pass
//! checks that they are numbered `0..k` without gaps, that their lengths
//! add up to the size, that every chunk is still there (leased again) and
//! sniffs the type from the first bytes; a second pass re-cuts them into
//! manifest segments of [`SEGMENT_ENTRIES`] while the manifest digest runs,
//! so the file equals (ETag included) a one-shot commit of the same chunks.
//! Memory is a segment or two, never the whole list.
//!
//! Crash safety: a file of at most one manifest segment is committed by
//! [`Store::commit_file`] in one synced batch that also marks the session
//! finished. A larger one first records which file id it writes under (the
//! plan, `m` ‖ id), writes the manifest a segment per batch, then in one
//! synced batch the pending record, the `pending/` marker and the session's
//! `finished` state, and drops the plan; the refcount steps run as for any
//! large commit and resume when the store opens. A crash before that batch
//! leaves the session open with its segments (the next finish, or the end
//! of the session, drops the manifest rows the plan names); after it, the
//! commit is finished. A file is never half visible.

use std::collections::HashSet;

use super::engine::bump;
use super::files::pending_key;
use super::filetype::SNIFF_LEN;
use super::manifest::{self, SEGMENT_ENTRIES};
use super::meta::{self, Batch, Cf, Locked};
use super::name::{Tenant, View};
use super::session::{plan_key, segment_key, segment_number, segment_prefix};
use super::{
    ChunkId, Entry, Error, FileId, FileName, FileRecord, FileState, NewFile, Result, Store, UploadId,
    UploadRecord, UploadState,
};

/// The `protocol` of a commit-in-parts session.
pub const COMMIT_PROTOCOL: &str = "commit";

/// Segments are numbered `0..MAX_SEGMENTS`.
pub const MAX_SEGMENTS: u32 = 1 << 16;

/// A commit in parts to open.
#[derive(Debug, Clone)]
pub struct NewCommit {
    /// Who will own the file.
    pub tenant: Tenant,
    pub name: FileName,
    /// What the client said the type is; detection decides at the end.
    pub declared_type: Option<String>,
    pub size: u64,
}

/// Where a commit in parts stands.
#[derive(Debug, Clone)]
pub struct CommitProgress {
    pub record: UploadRecord,
    /// The numbers of the segments received, ascending.
    pub segments: Vec<u32>,
    /// Entries in them, as sent (zero-length ones included).
    pub entries: u64,
    /// Their lengths added up.
    pub bytes: u64,
    /// The file, once the commit is finished (and while it exists).
    pub file: Option<FileRecord>,
}

/// What the first pass of a finish found.
struct Checked {
    /// Non-empty entries.
    chunks: u64,
    head: Vec<u8>,
}

/// Whether an entry must name a chunk the store has: all but a
/// zero-length one naming the empty chunk, which needs no object (as in a
/// one-shot commit).
fn needs_object(e: &Entry) -> bool {
    e.len > 0 || e.id != ChunkId::of(b"")
}

fn decode(v: &[u8]) -> Result<Vec<Entry>> {
    manifest::decode_segment(v).map_err(|e| Error::CorruptMetadata(format!("commit segment: {e}")))
}

impl Store {
    /// Opens a commit in parts.
    ///
    /// # Errors
    /// [`Error::TooLarge`] past the maximum file size;
    /// [`Error::InsufficientStorage`] below the free-space reserve.
    pub fn open_commit(&self, new: NewCommit) -> Result<UploadRecord> {
        let max = self.options().max_file_size;
        if new.size > max {
            return Err(Error::TooLarge { what: "file", limit: max, got: new.size });
        }
        self.admit_upload(&new.tenant, Some(new.size))?;
        self.ensure_space()?;
        let now = self.now_ms();
        let rec = UploadRecord {
            id: UploadId::random(),
            protocol: COMMIT_PROTOCOL.into(),
            tenant: new.tenant,
            name: new.name,
            declared_type: new.declared_type,
            size: new.size,
            total_pieces: 0,
            piece_size: 0,
            created_ms: now,
            expires_ms: now + self.life_ms(),
            state: UploadState::Open,
            stream: None,
        };
        let mut b = Batch::default();
        self.put_upload(&mut b, &rec)?;
        self.meta().write(b, true)?;
        Ok(rec)
    }

    fn life_ms(&self) -> u64 {
        self.options().upload_expiry.as_millis() as u64
    }

    /// Commit session `id` if `view` may see it (otherwise the same
    /// [`Error::UploadNotFound`] as for an id that never existed); an open
    /// one past its expiry is [`Error::UploadExpired`] unless `expired_ok`.
    fn commit_session(&self, view: &View, id: &UploadId, expired_ok: bool) -> Result<UploadRecord> {
        match self.upload(id)? {
            Some(r) if r.protocol == COMMIT_PROTOCOL && view.sees(&r.tenant) => {
                if !expired_ok && r.state == UploadState::Open && r.expires_ms <= self.now_ms() {
                    return Err(Error::UploadExpired(id.to_string()));
                }
                Ok(r)
            }
            _ => Err(Error::UploadNotFound(id.to_string())),
        }
    }

    /// Receives segment `n`. `Ok(true)` when it was stored now, `Ok(false)`
    /// when the same entries were already there.
    ///
    /// # Errors
    /// [`Error::MissingChunks`] naming every chunk the caller's tenant does
    /// not hold or the store lacks; [`Error::InvalidInput`] for a number out
    /// of range, an empty or oversized segment, more bytes than the file or
    /// lengths that disagree with the stored chunks; [`Error::Conflict`]
    /// when segment `n` holds other entries or the commit is finished.
    pub fn put_segment(&self, view: &View, id: &UploadId, n: u32, entries: &[Entry]) -> Result<bool> {
        if n >= MAX_SEGMENTS {
            return Err(Error::InvalidInput(format!("segment numbers go from 0 to {}", MAX_SEGMENTS - 1)));
        }
        if entries.is_empty() || entries.len() > SEGMENT_ENTRIES {
            return Err(Error::InvalidInput(format!(
                "a segment holds 1 to {SEGMENT_ENTRIES} entries, this one {}",
                entries.len()
            )));
        }
        let mut held = self.session_lock(id)?;
        let rec = self.commit_session(view, id, false)?;
        if rec.state != UploadState::Open {
            return Err(Error::Conflict(format!("commit {id} is finished")));
        }
        let bytes: u64 = entries.iter().map(|e| u64::from(e.len)).sum();
        if bytes > rec.size {
            return Err(Error::InvalidInput(format!(
                "segment {n} holds {bytes} bytes, more than the file's {}",
                rec.size
            )));
        }
        let key = segment_key(id, n);
        let value = manifest::encode_segment(entries);
        match self.meta().get(Cf::Uploads, &key)? {
            Some(v) if v == value => return Ok(false),
            Some(_) => return Err(Error::Conflict(format!("segment {n} was received with other entries"))),
            None => {}
        }
        let mut b = Batch::default();
        let renewed = self.renewed_locked(&rec)?;
        let lease = renewed.as_ref().unwrap_or(&rec).expires_ms;
        self.check_entries(view, entries, lease)?;
        b.put(Cf::Uploads, &key, &value);
        if let Some(r) = &renewed {
            self.put_upload(&mut b, r)?;
        }
        // The segment is acknowledged: durable before the answer.
        held.write(b, true)?;
        Ok(true)
    }

    /// The session renewed when less than half of its life is left, with
    /// its segments' chunks leased to match; `None` when not due. The
    /// caller holds the session lock and writes the record.
    fn renewed_locked(&self, rec: &UploadRecord) -> Result<Option<UploadRecord>> {
        let now = self.now_ms();
        let life = self.life_ms();
        if rec.expires_ms >= now + life / 2 {
            return Ok(None);
        }
        let mut r = rec.clone();
        r.expires_ms = now + life;
        for kv in self.meta().scan(Cf::Uploads, &segment_prefix(&rec.id), None) {
            let ids: Vec<ChunkId> = decode(&kv?.1)?.iter().map(|e| e.id).collect();
            self.lease_present(&ids, r.expires_ms)?;
        }
        Ok(Some(r))
    }

    /// A segment's entries by the rules of a one-shot commit: every chunk
    /// known to `view` and present (all missing ones at once; a zero-length
    /// entry needs no object only when it names the empty chunk), leased
    /// until `lease`; non-empty lengths as stored.
    fn check_entries(&self, view: &View, entries: &[Entry], lease: u64) -> Result<()> {
        let ids: Vec<ChunkId> = entries.iter().map(|e| e.id).collect();
        let mut missing = self.unknown_in(view, &ids)?;
        let unknown: HashSet<ChunkId> = missing.iter().copied().collect();
        let need: Vec<ChunkId> =
            entries.iter().filter(|e| needs_object(e) && !unknown.contains(&e.id)).map(|e| e.id).collect();
        missing.extend(self.lease_present(&need, lease)?);
        if !missing.is_empty() {
            missing.sort_unstable();
            missing.dedup();
            return Err(Error::MissingChunks(missing));
        }
        let full: Vec<Entry> = entries.iter().filter(|e| e.len > 0).copied().collect();
        self.check_lengths(&full)
    }

    /// Where commit `id` stands: what a client resumes from.
    ///
    /// # Errors
    /// [`Error::UploadNotFound`], [`Error::UploadExpired`].
    pub fn commit_progress(&self, view: &View, id: &UploadId) -> Result<CommitProgress> {
        let _held = self.session_lock(id)?;
        let record = self.commit_session(view, id, false)?;
        let mut p = CommitProgress { record, segments: Vec::new(), entries: 0, bytes: 0, file: None };
        if let UploadState::Finished { file } = p.record.state {
            p.file = self.file(&file).ok();
            return Ok(p);
        }
        for kv in self.meta().scan(Cf::Uploads, &segment_prefix(id), None) {
            let (k, v) = kv?;
            let entries = decode(&v)?;
            p.segments.push(segment_number(&k)?);
            p.entries += entries.len() as u64;
            p.bytes += entries.iter().map(|e| u64::from(e.len)).sum::<u64>();
        }
        Ok(p)
    }

    /// Finishes commit `id` into a file, exactly once: the file and whether
    /// this call made it (a finished commit answers its file again).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a gap in the segments or lengths that do
    /// not add up to the size; [`Error::MissingChunks`] listing every chunk
    /// gone since its segment arrived; [`Error::TypeRejected`]; nothing is
    /// committed then, and the session stays open.
    pub fn finish_commit(&self, view: &View, id: &UploadId) -> Result<(FileRecord, bool)> {
        let mut held = self.session_lock(id)?;
        let rec = self.commit_session(view, id, false)?;
        if let UploadState::Finished { file } = rec.state {
            return Ok((self.file(&file)?, false));
        }
        let lease = self.default_lease().max(rec.expires_ms);
        let checked = self.check_staged(&rec, lease)?;
        let content_type =
            self.options().types.check(rec.name.as_str(), &checked.head, rec.declared_type.as_deref())?;
        let mut done = rec.clone();
        done.expires_ms = self.now_ms() + self.life_ms();
        let file = if checked.chunks <= SEGMENT_ENTRIES as u64 {
            let mut chunks = Vec::with_capacity(checked.chunks as usize);
            for kv in self.meta().scan(Cf::Uploads, &segment_prefix(id), None) {
                chunks.extend(decode(&kv?.1)?.into_iter().filter(|e| e.len > 0));
            }
            let new = NewFile::of_upload(&rec, chunks);
            self.commit_file(new, content_type, |b: &mut Batch, file: &FileRecord| {
                done.state = UploadState::Finished { file: file.id };
                self.drop_plan(b, id)?;
                self.put_upload(b, &done)
            })?
        } else {
            self.commit_staged(&mut held, &rec, &mut done, content_type)?
        };
        self.drop_segments(&mut held, id)?;
        Ok((file, true))
    }

    /// The first pass of a finish: segments `0..k` without gaps, lengths
    /// adding up to the size, every chunk present (leased until `lease`)
    /// with its stored length, and the first bytes for sniffing.
    fn check_staged(&self, rec: &UploadRecord, lease: u64) -> Result<Checked> {
        let mut total = 0u64;
        let mut checked = Checked { chunks: 0, head: Vec::new() };
        let mut missing = Vec::new();
        for (next, kv) in self.meta().scan(Cf::Uploads, &segment_prefix(&rec.id), None).enumerate() {
            let (k, v) = kv?;
            if segment_number(&k)? as usize != next {
                return Err(Error::InvalidInput(format!(
                    "segment {next} is missing: segments are numbered from 0 without gaps"
                )));
            }
            let entries = decode(&v)?;
            let need: Vec<ChunkId> = entries.iter().filter(|e| needs_object(e)).map(|e| e.id).collect();
            let lost = self.lease_present(&need, lease)?;
            let full: Vec<Entry> = entries.into_iter().filter(|e| e.len > 0).collect();
            total += full.iter().map(|e| u64::from(e.len)).sum::<u64>();
            checked.chunks += full.len() as u64;
            if lost.is_empty() {
                self.check_lengths(&full)?;
            }
            if lost.is_empty() && missing.is_empty() && checked.head.len() < SNIFF_LEN {
                match self.head_bytes(&full, SNIFF_LEN - checked.head.len()) {
                    Ok(h) => checked.head.extend_from_slice(&h),
                    // A chunk that cannot be read for sniffing is missing.
                    Err(Error::Corrupt { id, .. }) => missing.push(id),
                    Err(e) => return Err(e),
                }
            }
            missing.extend(lost);
        }
        if !missing.is_empty() {
            missing.sort_unstable();
            missing.dedup();
            return Err(Error::MissingChunks(missing));
        }
        if total != rec.size {
            return Err(Error::InvalidInput(format!(
                "chunk lengths add up to {total} bytes but the size is {}",
                rec.size
            )));
        }
        Ok(checked)
    }

    /// The second pass for a file of several manifest segments: the plan,
    /// the manifest a segment per batch, then the pending record with the
    /// session finished; the refcount steps show the file.
    fn commit_staged(
        &self,
        held: &mut Locked<'_>,
        rec: &UploadRecord,
        done: &mut UploadRecord,
        content_type: String,
    ) -> Result<FileRecord> {
        let m = self.meta();
        // The tenant's quota, before writing anything (and again, binding,
        // in the batch that makes the file).
        self.admit_commit(&mut self.locked(), &mut Batch::default(), &rec.tenant, rec.size)?;
        // A finish a crash cut short left manifest rows under its plan.
        let mut b = Batch::default();
        self.drop_plan(&mut b, &rec.id)?;
        let now = self.now_ms();
        let file_id = FileId::new(now);
        b.put(Cf::Uploads, &plan_key(&rec.id), file_id.as_bytes());
        held.write(b, false)?;

        let mut digest = manifest::Digest::default();
        let mut starts: Vec<u64> = Vec::new();
        let mut seg: Vec<Entry> = Vec::with_capacity(SEGMENT_ENTRIES);
        let (mut at, mut chunks) = (0u64, 0u64);
        let mut write = |n: usize, seg: &[Entry]| -> Result<()> {
            let mut b = Batch::default();
            b.put(Cf::Manifests, &meta::manifest_key(&file_id.0, n as u32), &manifest::encode_segment(seg));
            held.write(b, false)
        };
        for kv in m.scan(Cf::Uploads, &segment_prefix(&rec.id), None) {
            for e in decode(&kv?.1)?.into_iter().filter(|e| e.len > 0) {
                if seg.is_empty() {
                    starts.push(at);
                }
                digest.update(&e);
                at += u64::from(e.len);
                chunks += 1;
                seg.push(e);
                if seg.len() == SEGMENT_ENTRIES {
                    write(starts.len() - 1, &seg)?;
                    seg.clear();
                }
            }
        }
        if !seg.is_empty() {
            write(starts.len() - 1, &seg)?;
        }
        let file = FileRecord {
            id: file_id,
            tenant: rec.tenant.clone(),
            name: rec.name.to_string(),
            size: rec.size,
            content_type,
            created_ms: now,
            chunker: self.options().chunking.id(),
            chunks,
            manifest_digest: digest.finish(),
            content_hash: None,
            segments: starts,
            state: FileState::Committing { next: 0 },
            added_bytes: Some(0),
        };
        done.state = UploadState::Finished { file: file_id };
        let mut b = Batch::default();
        let mut counted = self.locked();
        self.admit_commit(&mut counted, &mut b, &rec.tenant, rec.size)?;
        self.put_record(&mut b, &file)?;
        b.put(Cf::Meta, &pending_key(&file_id), b"");
        self.put_upload(&mut b, done)?;
        b.delete(Cf::Uploads, &plan_key(&rec.id));
        self.objects().barrier()?;
        counted.write(b, true)?;
        drop(counted);
        let file = self.resume_commit(file)?;
        bump(&self.0.activity.files, 1);
        Ok(file)
    }

    /// Drops a finished commit's segments, a batch at a time (what a crash
    /// leaves goes with the session).
    fn drop_segments(&self, held: &mut Locked<'_>, id: &UploadId) -> Result<()> {
        let mut b = Batch::default();
        for kv in self.meta().scan(Cf::Uploads, &segment_prefix(id), None) {
            b.delete(Cf::Uploads, &kv?.0);
            if b.len() >= 4096 {
                held.write(std::mem::take(&mut b), false)?;
            }
        }
        held.write(b, false)
    }

    /// Ends commit `id`: its segments go (their chunks age out through
    /// GC); a finished commit's file stays.
    ///
    /// # Errors
    /// [`Error::UploadNotFound`].
    pub fn cancel_commit(&self, view: &View, id: &UploadId) -> Result<()> {
        let mut held = self.session_lock(id)?;
        self.commit_session(view, id, true)?;
        self.drop_session(&mut held, id)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::store::objects::{Faulty, MemObjects, ObjectStore, Op};
    use crate::store::{ManualClock, MemMeta, MetaStore, StoreOptions};

    /// A store over `meta` and `objects` (a "restart" when they are reused).
    fn open(dir: &std::path::Path, meta: &Arc<MemMeta>, objects: Arc<dyn ObjectStore>) -> Store {
        let opts = StoreOptions { upload_expiry: std::time::Duration::from_secs(3600), ..Default::default() };
        Store::open_on(dir, opts, meta.clone(), objects, ManualClock::new()).unwrap()
    }

    /// `n` distinct small chunks, stored: the manifest.
    fn chunks(store: &Store, n: usize) -> Vec<Entry> {
        let data: Vec<Bytes> = (0..n).map(|i| Bytes::from(format!("chunk number {i}"))).collect();
        store.put_chunks(&data, store.default_lease()).unwrap();
        data.iter().map(|d| Entry { id: ChunkId::of(d), len: d.len() as u32 }).collect()
    }

    fn manifest_rows(meta: &MemMeta) -> usize {
        meta.scan(Cf::Manifests, b"", None).count()
    }

    /// A finish that fails after writing part of its manifest (the object
    /// barrier before its last batch fails, as a process killed there would
    /// stop) leaves an open commit; after a restart the next finish drops
    /// the leftovers and makes the file, equal to a one-shot commit's. A
    /// cancel drops the leftovers too.
    #[test]
    fn a_finish_cut_short_leaves_an_open_commit_and_no_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(MemMeta::new());
        let mem: Arc<dyn ObjectStore> = Arc::new(MemObjects::new());
        let faulty = Arc::new(Faulty::new(mem.clone()));
        let store = open(dir.path(), &meta, faulty.clone());
        let entries = chunks(&store, 2500);
        let size: u64 = entries.iter().map(|e| u64::from(e.len)).sum();
        let new = |name: &str| NewCommit {
            tenant: Tenant::default(),
            name: FileName::parse(name).unwrap(),
            declared_type: None,
            size,
        };
        let all = View::All;
        let rec = store.open_commit(new("parts.txt")).unwrap();
        for (n, seg) in entries.chunks(700).enumerate() {
            assert!(store.put_segment(&all, &rec.id, n as u32, seg).unwrap());
        }
        faulty.fail_always(Op::Barrier, true);
        assert!(store.finish_commit(&all, &rec.id).is_err());
        assert_eq!(manifest_rows(&meta), 3, "the manifest written before the cut");
        assert!(store.meta().get(Cf::Uploads, &plan_key(&rec.id)).unwrap().is_some());
        drop(store);

        let store = open(dir.path(), &meta, mem.clone());
        let p = store.commit_progress(&all, &rec.id).unwrap();
        assert_eq!((p.record.state, p.segments), (UploadState::Open, vec![0, 1, 2, 3]));
        let (file, new_now) = store.finish_commit(&all, &rec.id).unwrap();
        assert!(new_now);
        assert_eq!((file.state, file.chunks, file.segments.len()), (FileState::Ready, 2500, 3));
        assert_eq!(manifest_rows(&meta), 3, "the cut finish's rows are gone");
        assert!(store.meta().get(Cf::Uploads, &plan_key(&rec.id)).unwrap().is_none());
        assert!(store.meta().scan(Cf::Uploads, &segment_prefix(&rec.id), None).next().is_none());
        let (again, new_now) = store.finish_commit(&all, &rec.id).unwrap();
        assert_eq!((again.id, new_now), (file.id, false));
        let whole = NewFile {
            tenant: Tenant::default(),
            name: FileName::parse("whole.txt").unwrap(),
            declared_type: None,
            size,
            chunks: entries.clone(),
            content_hash: None,
        };
        let whole = store.finish_file(whole).unwrap();
        assert_eq!(whole.manifest_digest, file.manifest_digest);
        assert_eq!(whole.segments, file.segments);
        for seg in 0..3 {
            assert_eq!(store.segment(&whole.id, seg).unwrap(), store.segment(&file.id, seg).unwrap());
        }
        assert_eq!(store.verify(false).unwrap().refcount_mismatches, vec![]);
        drop(store);

        // Cut short again, then cancelled.
        let faulty = Arc::new(Faulty::new(mem));
        let store = open(dir.path(), &meta, faulty.clone());
        let rec = store.open_commit(new("cancelled.txt")).unwrap();
        for (n, seg) in entries.chunks(1024).enumerate() {
            store.put_segment(&all, &rec.id, n as u32, seg).unwrap();
        }
        faulty.fail_always(Op::Barrier, true);
        assert!(store.finish_commit(&all, &rec.id).is_err());
        assert_eq!(manifest_rows(&meta), 9);
        store.cancel_commit(&all, &rec.id).unwrap();
        assert_eq!(manifest_rows(&meta), 6, "only the two files' manifests are left");
        assert!(matches!(store.commit_progress(&all, &rec.id), Err(Error::UploadNotFound(_))));
    }
}
