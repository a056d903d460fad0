//! Chunks read back: whole, a part of one, from the page cache alone (on
//! an async thread) or as sent whole; every read checked (header, payload
//! CRC, the chunk it names) and placed at its source's offset within a
//! page (`buffer::page_lead`). Writes are `chunks.rs`.

use std::ops::Range;

use bytes::Bytes;

use super::buffer::{self, Buffer};
use super::error::{Error, Result};
use super::id::ChunkId;
use super::objects::ObjectKey;
use super::read::Cached;
use super::{Store, object};

/// A chunk's bytes as [`Store::chunk_to_send`] sends them.
pub enum ChunkBody {
    /// The raw bytes.
    Raw(Bytes),
    /// The zstd frame it is stored as.
    Zstd(Bytes),
}

impl Store {
    /// A chunk's bytes to send whole (`GET /api/chunks/{hash}`): its stored
    /// zstd frame when `zstd` (the reader takes it) and the chunk is stored
    /// so, else its raw bytes; the object checked once either way (header,
    /// payload CRC, the chunk it names), in a pooled buffer (see [`buffer`]).
    ///
    /// # Errors
    /// [`Error::ChunkNotFound`], [`Error::Corrupt`].
    pub fn chunk_to_send(&self, id: &ChunkId, zstd: bool) -> Result<ChunkBody> {
        let (len, key) = match self.0.meta.chunk_row(id)? {
            Some(r) if r.usable() => (r.raw_len, ObjectKey::new(*id, r.generation)),
            _ => return Err(Error::ChunkNotFound(*id)),
        };
        let (enc, object) = self.object_buffer(&key, len)?;
        let stored_zstd =
            object::Header::decode(&enc[object.clone()]).is_ok_and(|h| h.codec == object::Codec::Zstd);
        if !(zstd && stored_zstd) {
            return Ok(ChunkBody::Raw(self.decode_chunk(&key, enc, object)?));
        }
        let corrupt = |reason: &str| Error::Corrupt { id: *id, reason: reason.into() };
        let h = object::check(&enc[object.clone()]).map_err(|e| corrupt(e.0))?;
        if h.id != *id {
            return Err(corrupt("object holds another chunk"));
        }
        Ok(ChunkBody::Zstd(enc.freeze(object.start + object::HEADER_LEN..object.end)))
    }

    /// A chunk's `len` raw bytes (CRC-checked), in a pooled buffer that
    /// goes back when the bytes are dropped.
    ///
    /// # Errors
    /// [`Error::Corrupt`] (missing object, bad CRC, another chunk's object,
    /// a length other than `len`); I/O errors.
    pub fn read_chunk(&self, id: &ChunkId, len: u32) -> Result<Bytes> {
        self.read_chunk_at(&self.key_of(id)?, len)
    }

    /// [`Self::read_chunk`] of the object at `key` (its generation looked
    /// up by the caller, see [`Self::keys_of`]).
    ///
    /// # Errors
    /// As [`Self::read_chunk`].
    pub(super) fn read_chunk_at(&self, key: &ObjectKey, len: u32) -> Result<Bytes> {
        of_len(key, self.read_chunk_as_stored(key, len)?, len)
    }

    /// A chunk's raw bytes (CRC-checked), however long they are: `len` only
    /// sizes the buffer.
    pub(super) fn read_chunk_as_stored(&self, key: &ObjectKey, len: u32) -> Result<Bytes> {
        let (enc, object) = self.object_buffer(key, len)?;
        self.decode_chunk(key, enc, object)
    }

    /// The raw bytes of `enc[object]`, the encoded object read for chunk `key`:
    /// header and payload CRC checked, decompressed when stored so, and
    /// naming that chunk.
    ///
    /// # Errors
    /// [`Error::Corrupt`] saying which check failed.
    fn decode_chunk(&self, key: &ObjectKey, enc: Buffer, object: Range<usize>) -> Result<Bytes> {
        let id = &key.id;
        let (h, raw) = object::decode_buffer(enc, object, self.0.opts.max_object_size as usize, false)
            .map_err(|e| Error::Corrupt { id: *id, reason: e.0.into() })?;
        if h.id != *id {
            return Err(Error::Corrupt { id: *id, reason: "object holds another chunk".into() });
        }
        Ok(raw)
    }

    /// The encoded object of a chunk of `len` raw bytes, read into a pooled
    /// buffer with room for it (a stored payload is never longer than the
    /// raw bytes: compression is kept only when it pays): the buffer, and
    /// where in it the object is. The object starts at a page boundary of
    /// the buffer, as it does in its file (a loose object's, or a pack
    /// record), so the copy out of the page cache runs at full speed (see
    /// [`buffer::page_lead`]).
    fn object_buffer(&self, key: &ObjectKey, len: u32) -> Result<(Buffer, Range<usize>)> {
        let (mut enc, at) = buffer::take_to_append(object::HEADER_LEN + len as usize, 0);
        if !self.0.objects.get_into(key, &mut enc)? {
            return Err(Error::Corrupt { id: key.id, reason: "object missing".into() });
        }
        let end = enc.len();
        Ok((enc, at..end))
    }

    /// Where chunk `id`'s object is: generation 0 on a store that is
    /// neither generational nor packed (no lookup), else the generation its
    /// row names.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when a generational store has no row for it.
    pub(super) fn key_of(&self, id: &ChunkId) -> Result<ObjectKey> {
        if !self.located() {
            return Ok(ObjectKey::plain(*id));
        }
        match self.0.meta.chunk_row(id)? {
            Some(r) => Ok(ObjectKey::new(*id, r.generation)),
            None => Err(Error::Corrupt { id: *id, reason: "no chunk row names its object".into() }),
        }
    }

    /// [`Self::key_of`] for many chunks in one batched lookup (none on a
    /// store that is neither generational nor packed); `None` where no row names one (the
    /// read of that chunk then fails as [`Self::key_of`] does).
    ///
    /// # Errors
    /// Metadata backend errors.
    pub(super) fn keys_of(&self, ids: &[ChunkId]) -> Result<Vec<Option<ObjectKey>>> {
        if !self.located() {
            return Ok(ids.iter().map(|id| Some(ObjectKey::plain(*id))).collect());
        }
        let rows = self.0.meta.chunk_rows(ids)?;
        Ok(ids.iter().zip(rows).map(|(id, r)| r.map(|r| ObjectKey::new(*id, r.generation))).collect())
    }

    /// Bytes `from..to` of a chunk of `len` raw bytes.
    ///
    /// For a raw (uncompressed) object only the header and the slice are
    /// read: the header is checked (magic, version, its CRC, the chunk id,
    /// the length), the slice is not, since the payload CRC covers the
    /// whole payload. Whole-chunk reads ([`Self::read_chunk`], so every
    /// download of whole chunks), `depot get` (BLAKE3 of every chunk) and
    /// `depot verify` check the payload. A zstd object is read and
    /// checked whole, then sliced, and its raw bytes are kept for the
    /// ranges that follow (see [`super::cache::DecodedChunks`]; the reads
    /// for downloads look there first).
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a bad header, another chunk's object, a
    /// length other than `len`, or an object that ends early; I/O errors.
    pub fn read_chunk_part(&self, id: &ChunkId, len: u32, from: usize, to: usize) -> Result<Bytes> {
        self.read_chunk_part_at(&self.key_of(id)?, len, from, to)
    }

    /// [`Self::read_chunk_part`] of the object at `key`.
    ///
    /// # Errors
    /// As [`Self::read_chunk_part`].
    pub(super) fn read_chunk_part_at(
        &self,
        key: &ObjectKey,
        len: u32,
        from: usize,
        to: usize,
    ) -> Result<Bytes> {
        let id = &key.id;
        let corrupt = |reason: &str| Error::Corrupt { id: *id, reason: reason.into() };
        // The slice is read with the header (one open); for a zstd object
        // it goes unused and the whole object is read below. It is read
        // into a pooled buffer, not zeroed first: a fresh 64 KiB vector per
        // range was zeroed (2.4% of D2's server CPU) and freed at glibc's
        // consolidation threshold (docs/PERFORMANCE.md, D2). Its first
        // byte lands at its source's offset in a page (see `object_buffer`).
        let start = object::HEADER_LEN + from;
        let (mut part, at) = buffer::take_to_append((to - from).max(buffer::POOLED_MIN), start as u64);
        let head = self
            .0
            .objects
            .get_head_and_range(key, object::HEADER_LEN, start as u64, to - from, &mut part)?
            .ok_or_else(|| corrupt("object missing"))?;
        let h = part_header(&head, key, len)?;
        if h.codec != object::Codec::Raw {
            return self.decoded_slice(&key.id, from, to, || self.read_chunk_at(key, len));
        }
        if part.len() - at != to - from {
            return Err(corrupt("object shorter than its header says"));
        }
        Ok(part.freeze(at..at + to - from))
    }

    /// [`Self::read_chunk_part_at`] answered only when the kernel's caches
    /// hold the object's name and bytes (see
    /// [`ObjectStore::get_head_and_range_cached`]): no wait for a disk, so
    /// it may run on an async thread. A raw object's part is checked as the
    /// blocking read checks it; a zstd object is read whole and left for a
    /// blocking thread to check and decode ([`Cached::Encoded`]). `None`
    /// for anything else (not cached, a header that does not check): the
    /// blocking read then answers, and reports a damaged object.
    pub(super) fn read_chunk_part_cached(
        &self,
        key: &ObjectKey,
        len: u32,
        from: usize,
        to: usize,
    ) -> Option<Cached> {
        let start = object::HEADER_LEN + from;
        let (mut part, at) = buffer::take_placed(to - from, start as u64);
        let (head, n) = self.0.objects.get_head_and_range_cached(
            key,
            object::HEADER_LEN,
            start as u64,
            to - from,
            &mut part[at..],
        )?;
        if part_header(&head, key, len).ok()?.codec == object::Codec::Raw {
            // A short raw object is the blocking read's to report.
            return (n == to - from).then(|| Cached::Ready(part.freeze(at..at + n)));
        }
        drop(part);
        self.read_chunk_cached(key, len)
    }

    /// [`Self::read_chunk_at`] answered only when the kernel's caches hold
    /// the object's name and bytes (see
    /// [`ObjectStore::get_cached`](super::objects::ObjectStore::get_cached)):
    /// no wait for a disk, so it may run on an async thread. A raw object
    /// is checked as the blocking read checks it (header, payload CRC,
    /// chunk id, length); a zstd object is not decompressed there but
    /// handed back read ([`Cached::Encoded`]). `None` for anything else
    /// (not cached, a check that fails): the blocking read then answers,
    /// and reports a damaged object.
    pub(super) fn read_chunk_cached(&self, key: &ObjectKey, len: u32) -> Option<Cached> {
        let max = object::HEADER_LEN + len as usize;
        // Objects start at a page boundary of their files.
        let (mut enc, at) = buffer::take_placed(max + 1, 0);
        let n = self.0.objects.get_cached(key, max, &mut enc[at..])?;
        let object = at..at + n;
        if object::Header::decode(&enc[object.clone()]).ok()?.codec != object::Codec::Raw {
            return Some(Cached::Encoded(enc, object));
        }
        of_len(key, self.decode_chunk(key, enc, object).ok()?, len).ok().map(Cached::Ready)
    }

    /// The raw bytes of a chunk of `len` raw bytes from its object
    /// `enc[object]`, read before by [`Self::read_chunk_cached`]: checked
    /// (header, payload CRC, chunk id, length) and decoded, on a blocking
    /// thread.
    ///
    /// # Errors
    /// [`Error::Corrupt`] saying which check failed.
    pub(super) fn decode_read(
        &self,
        key: &ObjectKey,
        enc: Buffer,
        object: Range<usize>,
        len: u32,
    ) -> Result<Bytes> {
        of_len(key, self.decode_chunk(key, enc, object)?, len)
    }
}

/// `raw`, the bytes of chunk `key`, when they are the `len` its manifest
/// entry says.
///
/// # Errors
/// [`Error::Corrupt`] for another length.
fn of_len(key: &ObjectKey, raw: Bytes, len: u32) -> Result<Bytes> {
    if raw.len() != len as usize {
        return Err(Error::Corrupt {
            id: key.id,
            reason: format!("{} bytes, manifest says {len}", raw.len()),
        });
    }
    Ok(raw)
}

/// The header `head` of the object at `key`, checked for a part read of a
/// chunk of `len` raw bytes: it decodes (magic, version, its CRC), names
/// the chunk, and gives its length.
///
/// # Errors
/// [`Error::Corrupt`] saying which of them failed.
fn part_header(head: &[u8], key: &ObjectKey, len: u32) -> Result<object::Header> {
    let corrupt = |reason: String| Error::Corrupt { id: key.id, reason };
    let h = object::Header::decode(head).map_err(|e| corrupt(e.0.into()))?;
    if h.id != key.id {
        return Err(corrupt("object holds another chunk".into()));
    }
    if h.raw_len != len {
        return Err(corrupt(format!("{} bytes, manifest says {len}", h.raw_len)));
    }
    Ok(h)
}
