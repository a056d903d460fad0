//! Piece sessions (resumable.js / flow.js chunked uploads): a session
//! gathers pieces until the file is whole, pins what it has, and finishes
//! into a file exactly once.
//!
//! State is one key per piece (`p` ‖ upload ‖ piece number) plus a counter,
//! changed only under the session's lock, never read-modify-write of one
//! shared value.

use super::meta::{Batch, Cf, Locked};
use super::name::{Tenant, View};
use super::session::{
    UploadRecord, count_key, decode_piece, encode_piece, piece_key, piece_prefix, record_key,
};
use super::{ChunkId, Entry, Error, FileId, FileName, FileRecord, NewFile, Result, Store, UploadId};

/// What a seed (resumable.js / flow.js) client says about its upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedSpec {
    /// Who uploads: part of the session's id, so no other tenant can reach
    /// the session whatever identifier it sends.
    pub tenant: Tenant,
    /// The client's identifier: scopes the session, proves nothing.
    pub identifier: String,
    pub name: FileName,
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
            self.tenant.as_str().as_bytes(),
            self.identifier.as_bytes(),
            &self.size.to_le_bytes(),
            self.name.as_str().as_bytes(),
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

impl Store {
    /// The open session for a seed upload, created (or restarted, when the
    /// old one expired) as needed. The caller holds the session lock.
    fn seed_session_locked(&self, held: &mut Locked<'_>, spec: &SeedSpec) -> Result<UploadRecord> {
        let id = spec.upload_id();
        let now = self.now_ms();
        if let Some(rec) = self.live_session_locked(spec)? {
            return Ok(rec);
        }
        if self.upload(&id)?.is_some() {
            self.drop_session(held, &id)?;
        }
        self.admit_upload(&spec.tenant, Some(spec.size))?;
        let rec = UploadRecord {
            id,
            protocol: "seed".into(),
            tenant: spec.tenant.clone(),
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
        let mut b = Batch::default();
        self.put_upload(&mut b, &rec)?;
        held.write(b, false)?;
        Ok(rec)
    }

    /// The session for `spec` if it exists and is still good: not expired,
    /// and (once finished) its file not deleted since, so that the same
    /// upload can be made again. The caller holds the session lock.
    fn live_session_locked(&self, spec: &SeedSpec) -> Result<Option<UploadRecord>> {
        let Some(rec) = self.upload(&spec.upload_id())? else { return Ok(None) };
        let file_gone = match rec.state {
            super::UploadState::Finished { file } => matches!(self.file(&file), Err(Error::FileNotFound(_))),
            super::UploadState::Open => false,
        };
        Ok((rec.expires_ms > self.now_ms() && !file_gone).then_some(rec))
    }

    fn received(&self, id: &UploadId) -> Result<u32> {
        Ok(self
            .meta()
            .get(Cf::Uploads, &count_key(id))?
            .and_then(|b| b.as_slice().try_into().ok().map(u32::from_le_bytes))
            .unwrap_or(0))
    }

    /// The "test" step of the seed protocol: whether piece `n` is already
    /// here. It is when the session (the caller's own: its id includes the
    /// tenant) has it, or when the client gave the piece's hash and the
    /// chunk is one `view` knows ([`Store::known_in`]: a hash alone proves
    /// nothing) with the right length; the chunk then counts as received for
    /// the session, as if the piece had been sent, and is pinned. An answer
    /// of "absent" changes nothing (no session is made).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a piece number outside the upload.
    pub fn test_piece(
        &self,
        view: &View,
        spec: &SeedSpec,
        n: u32,
        hash: Option<&ChunkId>,
    ) -> Result<Option<PieceState>> {
        if n == 0 || n > spec.total_pieces {
            return Err(Error::InvalidInput(format!("chunk {n} is outside 1..={}", spec.total_pieces)));
        }
        let mut held = self.session_lock(&spec.upload_id())?;
        let live = self.live_session_locked(spec)?;
        if let Some(rec) = &live {
            if let super::UploadState::Finished { file } = rec.state {
                return self.finished_state(&file).map(Some);
            }
            if self.meta().get(Cf::Uploads, &piece_key(&rec.id, n))?.is_some() {
                return Ok(Some(PieceState::Stored {
                    received: self.received(&rec.id)?,
                    total: rec.total_pieces,
                }));
            }
        }
        let Some(hash) = hash else { return Ok(None) };
        if !self.known_in(view, std::slice::from_ref(hash))?[0] {
            return Ok(None);
        }
        let want = spec.piece_len(n);
        let lease = self.now_ms() + self.0.opts.upload_expiry.as_millis() as u64;
        let present = match self.meta().chunk_row(hash)? {
            Some(r) if r.usable() && u64::from(r.raw_len) == want => self.has_chunk(hash, lease)?,
            _ => false,
        };
        if !present {
            return Ok(None);
        }
        let rec = match live {
            Some(rec) => rec,
            None => self.seed_session_locked(&mut held, spec)?,
        };
        self.record_piece_locked(&mut held, &rec, n, &Entry { id: *hash, len: want as u32 }).map(Some)
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
        let mut held = self.session_lock(&spec.upload_id())?;
        let rec = self.seed_session_locked(&mut held, spec)?;
        if let super::UploadState::Finished { file } = rec.state {
            return self.finished_state(&file);
        }
        self.record_piece_locked(&mut held, &rec, n, &Entry { id: put.id, len: put.len })
    }

    fn finished_state(&self, file: &FileId) -> Result<PieceState> {
        Ok(PieceState::Finished { file: Box::new(self.file(file)?), just_now: false })
    }

    /// Records a piece (idempotent) and finishes the upload when complete.
    /// The caller holds the session lock.
    fn record_piece_locked(
        &self,
        held: &mut Locked<'_>,
        rec: &UploadRecord,
        n: u32,
        e: &Entry,
    ) -> Result<PieceState> {
        let key = piece_key(&rec.id, n);
        let m = self.meta();
        let mut received = self.received(&rec.id)?;
        let known = m.get(Cf::Uploads, &key)?;
        if known.as_deref() != Some(&encode_piece(&e.id, e.len.into())[..]) {
            let mut b = Batch::default();
            b.put(Cf::Uploads, &key, &encode_piece(&e.id, e.len.into()));
            if known.is_none() {
                received += 1;
                b.put(Cf::Uploads, &count_key(&rec.id), &received.to_le_bytes());
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
            held.write(b, true)?;
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
        let new = NewFile::of_upload(rec, chunks);
        let id = rec.id;
        let mut done = rec.clone();
        self.finish_file_with(new, move |b: &mut Batch, file: &FileRecord| {
            done.state = super::UploadState::Finished { file: file.id };
            let v = serde_json::to_vec(&done).map_err(|e| Error::Task(e.to_string()))?;
            b.put(Cf::Uploads, &record_key(&id), &v);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Sizes and piece sizes from everywhere, the u64 extremes weighted in.
    fn extreme() -> impl Strategy<Value = u64> {
        crate::testdata::extreme_u64(1 << 20, 1 << 20)
    }

    proptest! {
        /// A layout that validates never overflows: pieces before the last
        /// fit in the size, and the lengths add up to it exactly. Both
        /// count rules are tried for every size and piece size, plus
        /// arbitrary counts, at the u64 extremes (overflow checks are on in
        /// tests and in release builds).
        #[test]
        fn validated_layouts_add_up_without_overflow(size in extreme(), piece in extreme(), any_total in any::<u32>()) {
            let floor = size.checked_div(piece).map(|t| t.max(1));
            let ceil = (piece > 0).then(|| size.div_ceil(piece).max(1));
            let totals = [floor, ceil, Some(u64::from(any_total))];
            for total in totals.into_iter().flatten().filter_map(|t| u32::try_from(t).ok()) {
                let s = spec(size, piece, total);
                if s.validate(u32::MAX, u64::MAX).is_err() {
                    continue;
                }
                let before_last = u64::from(total - 1).checked_mul(piece);
                prop_assert!(before_last.is_some_and(|b| b <= size), "{size} {piece} {total}");
                prop_assert_eq!(before_last.unwrap() + s.piece_len(total), size);
                if total > 1 {
                    prop_assert_eq!(s.piece_len(1), piece);
                }
            }
        }
    }

    fn spec(size: u64, piece: u64, total: u32) -> SeedSpec {
        SeedSpec {
            tenant: Tenant::default(),
            identifier: "id".into(),
            name: "f.bin".parse().unwrap(),
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
        b.name = "other".parse().unwrap();
        assert_ne!(a.upload_id(), b.upload_id());
        let mut c = a.clone();
        c.total_pieces = 3;
        assert_ne!(a.upload_id(), c.upload_id());
        assert_eq!(a.upload_id(), a.clone().upload_id());
    }
}
