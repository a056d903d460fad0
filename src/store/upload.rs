//! Upload sessions, shared by every protocol: a session gathers pieces (seed
//! chunked uploads) until the file is whole, pins what it has, expires when
//! abandoned, and finishes into a file exactly once.
//!
//! State is one key per piece (`p` ‖ upload ‖ piece number) plus a counter,
//! changed only under the session's lock, never read-modify-write of one
//! shared value. [`Ingest`] is the other way in: a byte stream cut by the
//! server's chunker as it arrives.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use super::chunker::StreamChunker;
use super::meta::{Cf, Meta};
use super::{ChunkId, Entry, Error, FileId, FileRecord, NewFile, Result, Store, UploadId, lock};

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub id: UploadId,
    pub protocol: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_type: Option<String>,
    pub size: u64,
    pub total_pieces: u32,
    pub piece_size: u64,
    pub created_ms: u64,
    pub expires_ms: u64,
    pub state: UploadState,
    /// Set for append-only (tus) uploads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<super::stream::StreamState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum UploadState {
    Open,
    Finished { file: FileId },
}

/// What a seed (resumable.js / flow.js) client says about its upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedSpec {
    /// The client's identifier: scopes the session, proves nothing.
    pub identifier: String,
    pub name: String,
    pub size: u64,
    pub piece_size: u64,
    pub total_pieces: u32,
    pub declared_type: Option<String>,
}

impl SeedSpec {
    /// Checks the numbers against each other: the piece count must follow
    /// one of the two rules clients use (the last piece absorbs the
    /// remainder, or the last piece is the short one).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] / [`Error::TooLarge`] naming the problem.
    pub fn validate(&self, max_pieces: u32, max_file: u64) -> Result<()> {
        if self.piece_size == 0 {
            return Err(Error::InvalidInput("chunk size must be positive".into()));
        }
        if self.total_pieces == 0 {
            return Err(Error::InvalidInput("total chunks must be at least 1".into()));
        }
        if self.identifier.is_empty() || self.identifier.len() > 1024 {
            return Err(Error::InvalidInput("identifier must be 1 to 1024 bytes".into()));
        }
        if self.size > max_file {
            return Err(Error::TooLarge { what: "file", limit: max_file, got: self.size });
        }
        if self.total_pieces > max_pieces {
            return Err(Error::TooLarge {
                what: "piece count",
                limit: max_pieces.into(),
                got: self.total_pieces.into(),
            });
        }
        let floor = (self.size / self.piece_size).max(1);
        let ceil = self.size.div_ceil(self.piece_size).max(1);
        let t = u64::from(self.total_pieces);
        if t != floor && t != ceil {
            return Err(Error::InvalidInput(format!(
                "{t} chunks of {} bytes cannot make {} bytes",
                self.piece_size, self.size
            )));
        }
        Ok(())
    }

    /// The size piece `n` (1-based) must have.
    pub fn piece_len(&self, n: u32) -> u64 {
        if n < self.total_pieces {
            self.piece_size
        } else {
            self.size - (u64::from(self.total_pieces) - 1) * self.piece_size
        }
    }

    /// Sessions are per identifier, size, name and piece layout.
    pub fn upload_id(&self) -> UploadId {
        UploadId::derive(&[
            b"seed",
            self.identifier.as_bytes(),
            &self.size.to_le_bytes(),
            self.name.as_bytes(),
            &self.piece_size.to_le_bytes(),
            &self.total_pieces.to_le_bytes(),
        ])
    }
}

/// Where a piece stands after a test or a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PieceState {
    /// Recorded; `received` of `total` pieces are in.
    Stored { received: u32, total: u32 },
    /// The upload is complete: the file, and whether this call completed it.
    Finished { file: Box<FileRecord>, just_now: bool },
}

pub(super) fn record_key(id: &UploadId) -> Vec<u8> {
    [b"r".as_slice(), id.as_bytes()].concat()
}

fn piece_prefix(id: &UploadId) -> Vec<u8> {
    [b"p".as_slice(), id.as_bytes()].concat()
}

fn piece_key(id: &UploadId, n: u32) -> Vec<u8> {
    [b"p".as_slice(), id.as_bytes(), &n.to_be_bytes()].concat()
}

fn count_key(id: &UploadId) -> Vec<u8> {
    [b"c".as_slice(), id.as_bytes()].concat()
}

pub(super) fn encode_piece(id: &ChunkId, len: u64) -> Vec<u8> {
    [id.as_bytes().as_slice(), &len.to_le_bytes()].concat()
}

pub(super) fn decode_piece(b: &[u8]) -> Result<Entry> {
    if b.len() != 40 {
        return Err(Error::CorruptMetadata("upload piece has the wrong length".into()));
    }
    let len = u64::from_le_bytes(b[32..].try_into().unwrap_or_default());
    Ok(Entry {
        id: ChunkId::from_slice(&b[..32]).unwrap_or(ChunkId([0; 32])),
        len: u32::try_from(len).map_err(|_| Error::CorruptMetadata("piece length".into()))?,
    })
}

impl Store {
    pub(super) fn session_lock(&self, id: &UploadId) -> Arc<Mutex<()>> {
        lock(&self.0.sessions).entry(*id).or_default().clone()
    }

    /// A session's record.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn upload(&self, id: &UploadId) -> Result<Option<UploadRecord>> {
        self.meta()
            .get(Cf::Uploads, &record_key(id))?
            .map(|v| {
                serde_json::from_slice(&v).map_err(|e| Error::CorruptMetadata(format!("upload {id}: {e}")))
            })
            .transpose()
    }

    /// The open session for a seed upload, created (or restarted, when the
    /// old one expired) as needed. The caller holds the session lock.
    fn seed_session_locked(&self, spec: &SeedSpec) -> Result<UploadRecord> {
        let id = spec.upload_id();
        let now = self.now_ms();
        if let Some(rec) = self.upload(&id)? {
            // A session whose file was deleted since starts over, so that the
            // same upload can be made again.
            let file_gone = match rec.state {
                super::UploadState::Finished { file } => {
                    matches!(self.file(&file), Err(Error::FileNotFound(_)))
                }
                super::UploadState::Open => false,
            };
            if rec.expires_ms > now && !file_gone {
                return Ok(rec);
            }
            self.drop_session(&id)?;
        }
        let rec = UploadRecord {
            id,
            protocol: "seed".into(),
            name: spec.name.clone(),
            declared_type: spec.declared_type.clone(),
            size: spec.size,
            total_pieces: spec.total_pieces,
            piece_size: spec.piece_size,
            created_ms: now,
            expires_ms: now + self.0.opts.upload_expiry.as_millis() as u64,
            state: super::UploadState::Open,
            stream: None,
        };
        let mut b = WriteBatch::default();
        self.put_upload(&mut b, &rec)?;
        self.meta().write(b, false)?;
        Ok(rec)
    }

    pub(super) fn put_upload(&self, batch: &mut WriteBatch, rec: &UploadRecord) -> Result<()> {
        let v = serde_json::to_vec(rec).map_err(|e| Error::Task(e.to_string()))?;
        self.meta().put(batch, Cf::Uploads, &record_key(&rec.id), &v);
        Ok(())
    }

    fn received(&self, id: &UploadId) -> Result<u32> {
        Ok(self
            .meta()
            .get(Cf::Uploads, &count_key(id))?
            .and_then(|b| b.as_slice().try_into().ok().map(u32::from_le_bytes))
            .unwrap_or(0))
    }

    /// The "test" step of the seed protocol: whether piece `n` is already
    /// here. It is when the session has it, or when the client gave the
    /// piece's hash and the store has that chunk with the right length; the
    /// chunk then counts as received for this session and is pinned.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a piece number outside the upload.
    pub fn test_piece(&self, spec: &SeedSpec, n: u32, hash: Option<&ChunkId>) -> Result<Option<PieceState>> {
        if n == 0 || n > spec.total_pieces {
            return Err(Error::InvalidInput(format!("chunk {n} is outside 1..={}", spec.total_pieces)));
        }
        let lock_arc = self.session_lock(&spec.upload_id());
        let _g = lock(&lock_arc);
        let rec = self.seed_session_locked(spec)?;
        if let super::UploadState::Finished { file } = rec.state {
            return self.finished_state(&file).map(Some);
        }
        if self.meta().get(Cf::Uploads, &piece_key(&rec.id, n))?.is_some() {
            return Ok(Some(PieceState::Stored {
                received: self.received(&rec.id)?,
                total: rec.total_pieces,
            }));
        }
        let Some(hash) = hash else { return Ok(None) };
        let want = spec.piece_len(n);
        let present = match self.meta().chunk_row(hash)? {
            Some(r) if r.usable() && u64::from(r.raw_len) == want => self.has_chunk(hash, rec.expires_ms)?,
            _ => false,
        };
        if !present {
            return Ok(None);
        }
        self.record_piece_locked(&rec, n, &Entry { id: *hash, len: want as u32 }).map(Some)
    }

    /// Receives piece `n`: checks its size and (when given) its hash, stores
    /// it as a chunk pinned for the session's life, records it, and when it
    /// was the last one missing, finishes the file, exactly once.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a size that does not fit the upload,
    /// [`Error::HashMismatch`] (nothing stored), [`Error::TypeRejected`] at
    /// the end, and I/O.
    pub fn put_piece(
        &self,
        spec: &SeedSpec,
        n: u32,
        data: &[u8],
        hash: Option<&ChunkId>,
    ) -> Result<PieceState> {
        if n == 0 || n > spec.total_pieces {
            return Err(Error::InvalidInput(format!("chunk {n} is outside 1..={}", spec.total_pieces)));
        }
        let want = spec.piece_len(n);
        if data.len() as u64 != want {
            return Err(Error::InvalidInput(format!("chunk {n} should be {want} bytes, got {}", data.len())));
        }
        let lease = self.now_ms() + self.0.opts.upload_expiry.as_millis() as u64;
        // Hash and store outside the session lock: pieces of one upload
        // proceed in parallel.
        let put = self.put_chunk(data, hash, lease)?;
        let lock_arc = self.session_lock(&spec.upload_id());
        let _g = lock(&lock_arc);
        let rec = self.seed_session_locked(spec)?;
        if let super::UploadState::Finished { file } = rec.state {
            return self.finished_state(&file);
        }
        self.record_piece_locked(&rec, n, &Entry { id: put.id, len: put.len })
    }

    fn finished_state(&self, file: &FileId) -> Result<PieceState> {
        Ok(PieceState::Finished { file: Box::new(self.file(file)?), just_now: false })
    }

    /// Records a piece (idempotent) and finishes the upload when complete.
    /// The caller holds the session lock.
    fn record_piece_locked(&self, rec: &UploadRecord, n: u32, e: &Entry) -> Result<PieceState> {
        let key = piece_key(&rec.id, n);
        let m = self.meta();
        let mut received = self.received(&rec.id)?;
        let known = m.get(Cf::Uploads, &key)?;
        if known.as_deref() != Some(&encode_piece(&e.id, e.len.into())[..]) {
            let mut b = WriteBatch::default();
            m.put(&mut b, Cf::Uploads, &key, &encode_piece(&e.id, e.len.into()));
            if known.is_none() {
                received += 1;
                m.put(&mut b, Cf::Uploads, &count_key(&rec.id), &received.to_le_bytes());
            }
            // An active session lives on: when less than half of its life is
            // left, it is extended and its pieces' chunks leased to match.
            let now = self.now_ms();
            let life = self.0.opts.upload_expiry.as_millis() as u64;
            if rec.expires_ms < now + life / 2 {
                let mut renewed = rec.clone();
                renewed.expires_ms = now + life;
                let mut ids: Vec<ChunkId> = vec![e.id];
                for kv in m.scan(Cf::Uploads, &piece_prefix(&rec.id), None) {
                    ids.push(decode_piece(&kv?.1)?.id);
                }
                for group in ids.chunks(8192) {
                    self.lease_present(group, renewed.expires_ms)?;
                }
                self.put_upload(&mut b, &renewed)?;
            }
            // The piece is acknowledged: its object and this record are durable.
            self.objects().barrier()?;
            m.write(b, true)?;
        }
        if received < rec.total_pieces {
            return Ok(PieceState::Stored { received, total: rec.total_pieces });
        }
        self.finish_session_locked(rec).map(|f| PieceState::Finished { file: Box::new(f), just_now: true })
    }

    fn finish_session_locked(&self, rec: &UploadRecord) -> Result<FileRecord> {
        let mut chunks = Vec::with_capacity(rec.total_pieces as usize);
        let prefix = piece_prefix(&rec.id);
        for kv in self.meta().scan(Cf::Uploads, &prefix, None) {
            let (_, v) = kv?;
            chunks.push(decode_piece(&v)?);
        }
        if chunks.len() != rec.total_pieces as usize {
            return Err(Error::CorruptMetadata(format!(
                "upload {} counts {} pieces but holds {}",
                rec.id,
                rec.total_pieces,
                chunks.len()
            )));
        }
        let new = NewFile {
            name: rec.name.clone(),
            declared_type: rec.declared_type.clone(),
            size: rec.size,
            chunks,
            content_hash: None,
        };
        let id = rec.id;
        let mut done = rec.clone();
        self.finish_file_with(new, move |m: &Meta, b: &mut WriteBatch, file: &FileRecord| {
            done.state = super::UploadState::Finished { file: file.id };
            let v = serde_json::to_vec(&done).map_err(|e| Error::Task(e.to_string()))?;
            m.put(b, Cf::Uploads, &record_key(&id), &v);
            Ok(())
        })
    }

    /// Removes a session and its pieces (their chunks age out through GC).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn drop_session(&self, id: &UploadId) -> Result<()> {
        let m = self.meta();
        let mut b = WriteBatch::default();
        for prefix in [piece_prefix(id), super::stream::chunk_prefix(id)] {
            for kv in m.scan(Cf::Uploads, &prefix, None) {
                let (k, _) = kv?;
                m.delete(&mut b, Cf::Uploads, &k);
            }
        }
        m.delete(&mut b, Cf::Uploads, &count_key(id));
        m.delete(&mut b, Cf::Uploads, &record_key(id));
        m.write(b, false)?;
        let dir = self.data_dir().join("uploads").join(id.to_string());
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        Ok(())
    }

    /// Sessions that are open, and how many are.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn open_uploads(&self) -> Result<usize> {
        let now = self.now_ms();
        let mut n = 0;
        for kv in self.meta().scan(Cf::Uploads, b"r", None) {
            let (_, v) = kv?;
            if let Ok(rec) = serde_json::from_slice::<UploadRecord>(&v) {
                if rec.state == super::UploadState::Open && rec.expires_ms > now {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Drops every expired session.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn reap_uploads(&self) -> Result<u64> {
        let now = self.now_ms();
        let mut expired = Vec::new();
        for kv in self.meta().scan(Cf::Uploads, b"r", None) {
            let (_, v) = kv?;
            match serde_json::from_slice::<UploadRecord>(&v) {
                Ok(rec) if rec.expires_ms <= now => expired.push(rec.id),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "unreadable upload record skipped"),
            }
        }
        for id in &expired {
            let lock_arc = self.session_lock(id);
            let _g = lock(&lock_arc);
            // Re-check under the lock: it may have been renewed.
            if self.upload(id)?.is_some_and(|r| r.expires_ms <= now) {
                self.drop_session(id)?;
            }
            lock(&self.0.sessions).remove(id);
        }
        Ok(expired.len() as u64)
    }

    /// Starts cutting a byte stream into the store (a regular upload).
    pub fn ingest(&self) -> Ingest {
        Ingest {
            store: self.clone(),
            chunker: StreamChunker::new(self.chunker().clone()),
            entries: Vec::new(),
            pending: Vec::new(),
            pending_bytes: 0,
            size: 0,
            hasher: blake3::Hasher::new(),
            lease: self.default_lease(),
        }
    }
}

/// A byte stream on its way into the store: cut with the store's chunker as it
/// arrives, stored in batches (one durability barrier per batch), hashed
/// whole along the way. Blocking: feed it from a blocking thread.
pub struct Ingest {
    store: Store,
    chunker: StreamChunker,
    entries: Vec<Entry>,
    pending: Vec<Bytes>,
    pending_bytes: usize,
    size: u64,
    hasher: blake3::Hasher,
    lease: u64,
}

/// Chunks are stored in batches of about this many bytes.
const INGEST_BATCH: usize = 8 << 20;

impl Ingest {
    /// Adds bytes.
    ///
    /// # Errors
    /// [`Error::TooLarge`] once the stream passes the maximum file size; I/O.
    pub fn push(&mut self, data: &[u8]) -> Result<()> {
        self.size += data.len() as u64;
        let max = self.store.options().max_file_size;
        if self.size > max {
            return Err(Error::TooLarge { what: "file", limit: max, got: self.size });
        }
        self.hasher.update(data);
        for c in self.chunker.push(data) {
            self.pending_bytes += c.len();
            self.pending.push(c);
        }
        if self.pending_bytes >= INGEST_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let puts = self.store.put_chunks(&self.pending, self.lease)?;
        self.entries.extend(puts.iter().map(|p| Entry { id: p.id, len: p.len }));
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    /// Bytes received so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Ends the stream and commits it as a file.
    ///
    /// # Errors
    /// As [`Store::finish_file`].
    pub fn finish(mut self, name: &str, declared_type: Option<&str>) -> Result<FileRecord> {
        for c in self.chunker.finish_in_place() {
            self.pending_bytes += c.len();
            self.pending.push(c);
        }
        self.flush()?;
        self.store.finish_file(NewFile {
            name: name.to_string(),
            declared_type: declared_type.map(str::to_string),
            size: self.size,
            chunks: std::mem::take(&mut self.entries),
            content_hash: Some(self.hasher.finalize().into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(size: u64, piece: u64, total: u32) -> SeedSpec {
        SeedSpec {
            identifier: "id".into(),
            name: "f.bin".into(),
            size,
            piece_size: piece,
            total_pieces: total,
            declared_type: None,
        }
    }

    #[test]
    fn both_piece_count_rules_are_accepted() {
        // 10 bytes in pieces of 4: floor rule 2 pieces (4 + 6), ceil rule 3 (4 + 4 + 2).
        assert!(spec(10, 4, 2).validate(100, 1 << 30).is_ok());
        assert_eq!(spec(10, 4, 2).piece_len(2), 6);
        assert!(spec(10, 4, 3).validate(100, 1 << 30).is_ok());
        assert_eq!(spec(10, 4, 3).piece_len(3), 2);
        assert!(spec(10, 4, 4).validate(100, 1 << 30).is_err());
        assert!(spec(10, 4, 1).validate(100, 1 << 30).is_err());
        assert!(spec(0, 4, 1).validate(100, 1 << 30).is_ok());
        assert_eq!(spec(0, 4, 1).piece_len(1), 0);
        assert!(spec(10, 0, 1).validate(100, 1 << 30).is_err());
        assert!(spec(10, 4, 0).validate(100, 1 << 30).is_err());
        assert!(spec(1000, 1, 1000).validate(100, 1 << 30).is_err());
        assert!(spec(1000, 1000, 1).validate(100, 999).is_err());
    }

    #[test]
    fn sessions_are_scoped_by_everything_the_client_said() {
        let a = spec(10, 4, 2);
        let mut b = a.clone();
        b.name = "other".into();
        assert_ne!(a.upload_id(), b.upload_id());
        let mut c = a.clone();
        c.total_pieces = 3;
        assert_ne!(a.upload_id(), c.upload_id());
        assert_eq!(a.upload_id(), a.clone().upload_id());
    }
}
