//! Upload sessions, whatever the protocol: the record (`UploadRecord`,
//! with piece or append-only state), the key layout of the `uploads`
//! family, the per-session lock, expiry and reaping. Pieces
//! ([`super::pieces`]), appends ([`super::append`]) and concatenation
//! ([`super::concat`]) build on it; it builds on none of them.
//!
//! Keys: `r` ‖ id the record; `p` ‖ id ‖ n a seed piece; `c` ‖ id the piece
//! count; `k` ‖ id ‖ n an append-only session's n-th chunk; `s` ‖ id ‖ n a
//! commit in parts' n-th segment, and `m` ‖ id the file id its finish is
//! writing a manifest under ([`super::staging`]).

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::name::Tenant;

use super::meta::{Batch, Cf, LockSpace, Locked};
use super::{ChunkId, Entry, Error, FileId, FileName, Result, Store, UploadId};

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub id: UploadId,
    pub protocol: String,
    /// Who owns it (sessions made before tenants read as `default`); no
    /// other tenant can see or change it.
    #[serde(default)]
    pub tenant: Tenant,
    /// Checked when the session was created.
    pub name: FileName,
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
    pub stream: Option<StreamState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum UploadState {
    Open,
    Finished { file: FileId },
}

/// A session row's key: its kind's tag byte, then the upload id.
fn tagged(tag: u8, id: &UploadId) -> Vec<u8> {
    [[tag].as_slice(), id.as_bytes()].concat()
}

/// A numbered row's key (piece, chunk or segment `n`): [`tagged`], then
/// `n` big-endian, so that a scan of the prefix meets the rows in order.
fn numbered(tag: u8, id: &UploadId, n: u32) -> Vec<u8> {
    [[tag].as_slice(), id.as_bytes(), &n.to_be_bytes()].concat()
}

pub(super) fn record_key(id: &UploadId) -> Vec<u8> {
    tagged(b'r', id)
}

pub(super) fn piece_prefix(id: &UploadId) -> Vec<u8> {
    tagged(b'p', id)
}

pub(super) fn piece_key(id: &UploadId, n: u32) -> Vec<u8> {
    numbered(b'p', id, n)
}

pub(super) fn count_key(id: &UploadId) -> Vec<u8> {
    tagged(b'c', id)
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

/// An append-only session's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamState {
    /// Total length, once known.
    pub length: Option<u64>,
    /// Bytes acknowledged.
    pub offset: u64,
    /// File offset of the first byte not yet in a chunk.
    pub tail_base: u64,
    /// Chunks recorded (keys `k` ‖ upload ‖ index).
    pub chunks: u32,
    /// The client's metadata, as it sent it.
    pub metadata: String,
    pub concat: Concat,
    /// All bytes are in (offset == length).
    pub complete: bool,
    /// The file the upload became.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileId>,
    /// Why it did not become a file (type rejected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    /// The upload's chunks are leased at least until then.
    pub leased_until: u64,
    /// Raised by every request that starts appending: only the request
    /// that raised it last may record anything, so one that was paused or
    /// cut off on another node when a newer one took over changes nothing.
    #[serde(default)]
    pub epoch: u64,
    /// The tail (the bytes from `tail_base` to `offset`) as a stored chunk
    /// any node can read (a shared store). `None` with bytes in the tail:
    /// the tail is the file `uploads/<id>/tail-<base>` (a store of its own,
    /// and uploads made before tails could be chunks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<ChunkId>,
}

/// Concatenation (tus `Upload-Concat`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Concat {
    None,
    /// A part of a later final upload: completes without becoming a file.
    Partial,
    /// Made of these partial uploads, end to end.
    Final {
        parts: Vec<UploadId>,
    },
}

pub(super) fn chunk_prefix(id: &UploadId) -> Vec<u8> {
    tagged(b'k', id)
}

pub(super) fn chunk_key(id: &UploadId, n: u32) -> Vec<u8> {
    numbered(b'k', id, n)
}

pub(super) fn segment_prefix(id: &UploadId) -> Vec<u8> {
    tagged(b's', id)
}

pub(super) fn segment_key(id: &UploadId, n: u32) -> Vec<u8> {
    numbered(b's', id, n)
}

/// The segment number in a [`segment_key`].
pub(super) fn segment_number(key: &[u8]) -> Result<u32> {
    key.get(17..21)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| Error::CorruptMetadata("commit segment key has the wrong length".into()))
}

pub(super) fn plan_key(id: &UploadId) -> Vec<u8> {
    [b"m".as_slice(), id.as_bytes()].concat()
}

impl StreamState {
    /// An append-only session's state at `offset` (everything before it is
    /// in `chunks` recorded chunks; the tail starts there), not complete.
    pub(super) fn new(
        length: Option<u64>,
        offset: u64,
        chunks: u32,
        metadata: String,
        concat: Concat,
        leased_until: u64,
    ) -> Self {
        StreamState {
            length,
            offset,
            tail_base: offset,
            chunks,
            metadata,
            concat,
            complete: false,
            file: None,
            rejected: None,
            leased_until,
            epoch: 0,
            tail: None,
        }
    }
}

impl Store {
    /// A new append-only session's record, open, expiring after the
    /// configured upload expiry.
    pub(super) fn stream_record(
        &self,
        tenant: Tenant,
        id: UploadId,
        name: FileName,
        declared_type: Option<String>,
        state: StreamState,
    ) -> UploadRecord {
        let now = self.now_ms();
        UploadRecord {
            id,
            protocol: "tus".into(),
            tenant,
            name,
            declared_type,
            size: state.length.unwrap_or(0),
            total_pieces: 0,
            piece_size: 0,
            created_ms: now,
            expires_ms: now + self.options().upload_expiry.as_millis() as u64,
            state: UploadState::Open,
            stream: Some(state),
        }
    }
    /// The lock of session `id` (a key of [`LockSpace::Sessions`]), held
    /// while a request reads and changes the session's rows; writes that
    /// must land only under it go through the guard. A commit the session
    /// makes takes its own locks nested in it (see [`super::meta::locks`]).
    ///
    /// # Errors
    /// [`Error::Unavailable`] when a shared backend cannot give it.
    pub(super) fn session_lock(&self, id: &UploadId) -> Result<Locked<'_>> {
        let key = blake3::hash(id.as_bytes()).as_bytes()[0] % LockSpace::Sessions.size() as u8;
        let mut held = self.locked();
        held.take(LockSpace::Sessions, [u16::from(key)])?;
        Ok(held)
    }

    pub(super) fn upload_dir(&self, id: &UploadId) -> PathBuf {
        self.data_dir().join("uploads").join(id.to_string())
    }

    /// The tail file of an upload whose record names no tail chunk
    /// ([`StreamState::tail`]).
    pub(super) fn tail_path(&self, id: &UploadId, base: u64) -> PathBuf {
        self.upload_dir(id).join(format!("tail-{base}"))
    }

    /// The first `want` bytes of the tail file `uploads/<id>/tail-<base>`
    /// (bytes past them are a crash's, never recorded).
    pub(super) fn read_tail_file(&self, id: &UploadId, base: u64, want: u64) -> Result<Vec<u8>> {
        let mut tail = Vec::new();
        let mut f = File::open(self.tail_path(id, base))
            .map_err(|e| Error::CorruptMetadata(format!("upload {id}: tail file: {e}")))?;
        Read::by_ref(&mut f).take(want).read_to_end(&mut tail)?;
        if (tail.len() as u64) < want {
            return Err(Error::CorruptMetadata(format!(
                "upload {id}: the tail holds {} bytes, the offset needs {want}",
                tail.len()
            )));
        }
        Ok(tail)
    }

    /// Writes `tail` (the bytes from file offset `base`) to the tail file of
    /// a store of its own, synced, before the record names them: the whole
    /// tail from the file's start, cut to its length (at an unchanged base
    /// the old bytes are a prefix of the new, so a crash midway leaves the
    /// recorded bytes intact).
    pub(super) fn write_tail_file(&self, id: &UploadId, base: u64, tail: &[u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        std::fs::create_dir_all(self.upload_dir(id))?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(self.tail_path(id, base))?;
        f.write_all_at(tail, 0)?;
        f.set_len(tail.len() as u64)?;
        f.sync_data()?;
        File::open(self.upload_dir(id))?.sync_all()?;
        Ok(())
    }

    /// A session's record.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub fn upload(&self, id: &UploadId) -> Result<Option<UploadRecord>> {
        self.meta()
            .get(Cf::Uploads, &record_key(id))?
            .map(|v| {
                serde_json::from_slice(&v).map_err(|e| Error::CorruptMetadata(format!("upload {id}: {e}")))
            })
            .transpose()
    }

    pub(super) fn put_upload(&self, batch: &mut Batch, rec: &UploadRecord) -> Result<()> {
        let v = serde_json::to_vec(rec).map_err(|e| Error::Task(e.to_string()))?;
        batch.put(Cf::Uploads, &record_key(&rec.id), &v);
        Ok(())
    }

    /// Removes a session and its pieces (their chunks age out through GC),
    /// under its lock.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub(super) fn drop_session(&self, held: &mut Locked<'_>, id: &UploadId) -> Result<()> {
        let m = self.meta();
        // The record and its directory go together for a backup.
        let _tails = self.hold_tails();
        let mut b = Batch::default();
        for prefix in [piece_prefix(id), chunk_prefix(id), segment_prefix(id)] {
            for kv in m.scan(Cf::Uploads, &prefix, None) {
                let (k, _) = kv?;
                b.delete(Cf::Uploads, &k);
            }
        }
        self.drop_plan(&mut b, id)?;
        b.delete(Cf::Uploads, &count_key(id));
        b.delete(Cf::Uploads, &record_key(id));
        held.write(b, false)?;
        let dir = self.upload_dir(id);
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        Ok(())
    }

    /// Into `b`: the end of a commit in parts' plan (`m` ‖ id), with the
    /// manifest rows a finish cut short wrote under the file id it names
    /// (only while no file record has that id: the batch that writes the
    /// record drops the plan).
    pub(super) fn drop_plan(&self, b: &mut Batch, id: &UploadId) -> Result<()> {
        let m = self.meta();
        let Some(v) = m.get(Cf::Uploads, &plan_key(id))? else { return Ok(()) };
        if let Some(file) = FileId::from_slice(&v) {
            if m.get(Cf::Files, file.as_bytes())?.is_none() {
                for kv in m.scan(Cf::Manifests, file.as_bytes(), None) {
                    b.delete(Cf::Manifests, &kv?.0);
                }
            }
        }
        b.delete(Cf::Uploads, &plan_key(id));
        Ok(())
    }

    /// Sessions that are open, and how many are.
    ///
    /// # Errors
    /// Metadata backend errors.
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
    /// Metadata backend errors.
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
            let mut held = self.session_lock(id)?;
            // Re-check under the lock: it may have been renewed.
            if self.upload(id)?.is_some_and(|r| r.expires_ms <= now) {
                self.drop_session(&mut held, id)?;
            }
        }
        Ok(expired.len() as u64)
    }
}
