//! Chunks: put (hash, compress, write the object, then the row), the
//! missing-query that serves resume and dedup at once, leases, reads and
//! damage marking. Objects are written before any lock is taken; rows change
//! only under the stripe locks. On a generational object store (S3) a put
//! claims the row first and writes a fresh generation (`generations.rs`);
//! reads then take the object's generation from the row.

use std::collections::HashSet;

use bytes::Bytes;

use super::buffer::{self, Buffer};
use super::engine::bump;
use super::error::{Error, Result};
use super::frame::{decode_frame, kept_frame};
use super::id::ChunkId;
use super::manifest::Entry;
use super::meta::{self, Batch, Cf, ChunkRow, ChunkState};
use super::objects::{ObjectKey, packs};
use super::read::Cached;
use super::{Store, object};

/// The outcome of storing one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Put {
    pub id: ChunkId,
    pub len: u32,
    /// This call stored it; `false`: the store already had it.
    pub new: bool,
}

impl Store {
    /// Stores one chunk given as raw bytes. With `expected`, the bytes must
    /// hash to it. `lease_until` pins the chunk against GC (unix ms).
    ///
    /// # Errors
    /// [`Error::HashMismatch`] (nothing is stored), [`Error::TooLarge`], I/O;
    /// on a generational object store, [`Error::Conflict`] when another
    /// writer or GC took the chunk over (send it again).
    pub fn put_chunk(&self, data: &[u8], expected: Option<&ChunkId>, lease_until: u64) -> Result<Put> {
        let id = ChunkId::of(data);
        if let Some(e) = expected {
            if *e != id {
                return Err(Error::HashMismatch { expected: *e, actual: id });
            }
        }
        Ok(self.put_hashed(&[ChunkIn { id, raw: data, frame: None }], lease_until)?[0])
    }

    /// Stores a chunk a client sent as a zstd frame: decoded (at most `max`
    /// bytes, with a bounded window: see [`super::frame::decode_frame`]), hashed, compared
    /// with `expected`, and kept as the client's frame only when it is one
    /// plain frame smaller than raw; anything else (several frames,
    /// skippable frames) is stored as the server encodes it.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a broken frame, [`Error::TooLarge`] past
    /// `max`, otherwise as [`Store::put_chunk`].
    pub fn put_chunk_zstd(
        &self,
        frame: &[u8],
        expected: &ChunkId,
        lease_until: u64,
        max: usize,
    ) -> Result<Put> {
        Ok(self.put_sent_chunks(&[(*expected, frame, true)], lease_until, max)?[0])
    }

    /// Stores chunks a client sent together (`POST /api/chunks`): each
    /// `(name, body, zstd)` is checked as [`Store::put_chunk`] or
    /// [`Store::put_chunk_zstd`] check it (`max` raw bytes at most), all of
    /// them before any is stored; then one batch, one durability barrier.
    /// The answer is in the order given; a repeat is not new.
    ///
    /// # Errors
    /// The first part's error, with nothing stored; otherwise as
    /// [`Store::put_chunks`].
    pub fn put_sent_chunks<B: AsRef<[u8]>>(
        &self,
        sent: &[(ChunkId, B, bool)],
        lease_until: u64,
        max: usize,
    ) -> Result<Vec<Put>> {
        let max = max.min(self.0.opts.max_object_size as usize);
        let mut decoded: Vec<Option<Vec<u8>>> = Vec::with_capacity(sent.len());
        for (name, body, zstd) in sent {
            let body = body.as_ref();
            let raw = if *zstd { Some(decode_frame(body, max)?) } else { None };
            let bytes = raw.as_deref().unwrap_or(body);
            if bytes.len() > max {
                return Err(Error::TooLarge { what: "chunk", limit: max as u64, got: bytes.len() as u64 });
            }
            let id = ChunkId::of(bytes);
            if id != *name {
                return Err(Error::HashMismatch { expected: *name, actual: id });
            }
            decoded.push(raw);
        }
        let items: Vec<ChunkIn> = sent
            .iter()
            .zip(&decoded)
            .map(|((id, body, _), raw)| match raw {
                Some(raw) => ChunkIn { id: *id, raw, frame: kept_frame(body.as_ref(), raw) },
                None => ChunkIn { id: *id, raw: body.as_ref(), frame: None },
            })
            .collect();
        self.put_hashed(&items, lease_until)
    }

    /// Stores chunks in one batch: one durability barrier and one metadata
    /// write for all of them (on a generational object store: one claim,
    /// one PUT per new chunk side by side, one flip; docs/DESIGN.md
    /// "Generations").
    ///
    /// # Errors
    /// As [`Store::put_chunk`].
    pub fn put_chunks(&self, chunks: &[Bytes], lease_until: u64) -> Result<Vec<Put>> {
        let ids: Vec<ChunkId> = chunks.iter().map(|c| ChunkId::of(c)).collect();
        let items: Vec<ChunkIn> =
            ids.iter().zip(chunks).map(|(id, c)| ChunkIn { id: *id, raw: &c[..], frame: None }).collect();
        self.put_hashed(&items, lease_until)
    }

    fn put_hashed(&self, items: &[ChunkIn], lease_until: u64) -> Result<Vec<Put>> {
        let max = self.0.opts.max_object_size;
        for ChunkIn { raw, .. } in items {
            if raw.len() as u64 > u64::from(max) {
                return Err(Error::TooLarge { what: "chunk", limit: max.into(), got: raw.len() as u64 });
            }
        }
        let ids: Vec<ChunkId> = items.iter().map(|i| i.id).collect();
        let level = self.0.opts.compression_level;
        if self.0.objects.generational() {
            let lens: Vec<u32> = items.iter().map(|i| i.raw.len() as u32).collect();
            let encode = |i: usize| encode_item(&items[i].id, items[i].raw, items[i].frame, level);
            let new = self.put_generational(&ids, &lens, &encode, lease_until)?;
            let out: Vec<Put> =
                ids.iter().zip(lens).zip(new).map(|((id, len), new)| Put { id: *id, len, new }).collect();
            self.count_puts(&out);
            return Ok(out);
        }
        // Objects of chunks that look new are compressed and written before
        // any lock is taken: an insert never replaces, so racing writers of
        // one chunk are harmless, and the locks cover only metadata.
        let before = self.0.meta.chunk_rows(&ids)?;
        if before.iter().any(Option::is_none) {
            // New data: refused below the reserve (known chunks cost nothing).
            self.ensure_space()?;
        }
        // Each new object's header and generation: 0 for a loose object, a
        // location in a pack when the store appends to packs (held by
        // `writer` until the rows are written, see `packs`).
        let mut placed: Vec<Option<(object::Header, u64)>> = vec![None; items.len()];
        let mut writer = self.0.objects.packs().filter(|p| p.appending()).map(packs::Packs::writer);
        let mut firsts = HashSet::new();
        let mut wrote = false;
        // On a store with packs, the batch's new objects are appended in one
        // write (see `packs::Writer::append_all`).
        let mut appends = Vec::new();
        for (i, (ChunkIn { id, raw, frame }, row)) in items.iter().zip(&before).enumerate() {
            if row.is_some() || !firsts.insert(*id) {
                continue; // known (or damaged: repaired under the lock), or a repeat
            }
            let enc = encode_item(id, raw, *frame, level);
            if writer.is_some() {
                appends.push((i, enc));
            } else if self.0.objects.put_if_absent(&ObjectKey::plain(*id), &enc.parts())? {
                placed[i] = Some((enc.header, 0));
                wrote = true;
            }
        }
        if let (Some(w), false) = (writer.as_mut(), appends.is_empty()) {
            let parts: Vec<[&[u8]; 2]> = appends.iter().map(|(_, enc)| enc.parts()).collect();
            let records: Vec<&[&[u8]]> = parts.iter().map(|p| &p[..]).collect();
            for ((i, enc), at) in appends.iter().zip(w.append_all(&records)?) {
                placed[*i] = Some((enc.header, at));
            }
            wrote = true;
        }
        if wrote {
            self.0.objects.barrier()?;
        }

        let mut held = self.lock_stripes(&ids)?;
        let rows = self.0.meta.chunk_rows(&ids)?;
        let now = self.now_ms();
        let mut batch = Batch::default();
        let mut out = Vec::with_capacity(items.len());
        let mut seen = HashSet::new();
        let mut late = false;
        // Loose objects of chunks stored again in a pack: no row names them
        // once the batch is written.
        let mut unnamed = Vec::new();
        for (i, (ChunkIn { id, raw, frame }, row)) in items.iter().zip(rows).enumerate() {
            let len = raw.len() as u32;
            if !seen.insert(*id) {
                out.push(Put { id: *id, len, new: false });
                continue;
            }
            match row {
                Some(mut r) if r.usable() => {
                    if r.lease_until < lease_until {
                        r.lease_until = lease_until;
                        batch.put(Cf::Chunks, id.as_bytes(), &r.encode());
                    }
                    out.push(Put { id: *id, len, new: false });
                }
                old => {
                    let (stored, generation) = match (old, placed[i]) {
                        // Written above by this call: complete and durable.
                        (None, Some(placed)) => placed,
                        // Someone else's object, a damaged one, or one GC
                        // took meanwhile: written again under the lock, to
                        // this put's pack on a store that appends to packs
                        // (a damaged record stays, dead bytes for
                        // compaction), else checked or rewritten in place.
                        _ => {
                            late = true;
                            let enc = encode_item(id, raw, *frame, level);
                            match writer.as_mut() {
                                Some(w) => {
                                    if old.is_some_and(|r| r.generation == 0) {
                                        unnamed.push(ObjectKey::plain(*id));
                                    }
                                    (enc.header, w.append(&enc.parts())?)
                                }
                                None => (self.place_object(id, &enc, old.is_some())?, 0),
                            }
                        }
                    };
                    let refcount = old.map_or(0, |r| r.refcount);
                    let new_row = ChunkRow {
                        refcount,
                        raw_len: len,
                        stored_len: stored.stored_len,
                        codec: stored.codec as u8,
                        state: if refcount > 0 { ChunkState::Live } else { ChunkState::Zero },
                        zero_since: now,
                        lease_until: lease_until.max(old.map_or(0, |r| r.lease_until)),
                        generation,
                    };
                    // A damaged or half-deleted row is still counted.
                    self.count_row(&mut batch, old.as_ref(), Some(&new_row));
                    if refcount == 0 {
                        let at = (now + self.grace_ms()).max(new_row.lease_until);
                        batch.put(Cf::Gcq, &meta::gcq_key(at, id), b"");
                    }
                    batch.put(Cf::Chunks, id.as_bytes(), &new_row.encode());
                    out.push(Put { id: *id, len, new: true });
                }
            }
        }
        if late {
            self.0.objects.barrier()?;
        }
        held.write(batch, false)?;
        if late {
            self.0.locations.moved();
        }
        // No engine call (nor fault hook) for nothing on every put.
        if !unnamed.is_empty()
            && let Err(e) = self.0.objects.delete_many(&unnamed)
        {
            // Stored and named elsewhere: only room is lost, until an orphan
            // sweep (`depot gc`, or after an unclean stop) deletes them.
            tracing::warn!(error = %e, objects = unnamed.len(), "loose objects of re-stored chunks not deleted");
        }
        drop(writer);
        self.count_puts(&out);
        Ok(out)
    }

    /// [`super::compact::count_row`] for this store (with its packs, if any).
    pub(super) fn count_row(&self, batch: &mut Batch, old: Option<&ChunkRow>, new: Option<&ChunkRow>) {
        super::compact::count_row(batch, old, new, self.0.objects.packs().is_some());
    }

    /// Whether reads take an object's key from its chunk's row: on a
    /// generational store, and on one with packs (a packed object's
    /// generation is its location). Elsewhere every object is generation 0.
    pub(super) fn located(&self) -> bool {
        self.0.objects.generational() || self.0.objects.packs().is_some()
    }

    /// Counts a put's chunks as new or known, for metrics.
    fn count_puts(&self, out: &[Put]) {
        let new = out.iter().filter(|p| p.new).count() as u64;
        bump(&self.0.activity.chunks_new, new);
        bump(&self.0.activity.chunks_known, out.len() as u64 - new);
    }

    /// Puts an encoded object in place for a chunk that has no usable row,
    /// keeping a valid object that is already there (an orphan from a crash)
    /// and replacing an invalid one. Returns the header of what is stored.
    fn place_object(&self, id: &ChunkId, enc: &object::Encoded<'_>, had_row: bool) -> Result<object::Header> {
        let parts = enc.parts();
        let key = ObjectKey::plain(*id);
        if had_row {
            // Damaged or mid-delete: whatever is there is not trusted.
            self.0.objects.replace(&key, &parts)?;
        } else if !self.0.objects.put_if_absent(&key, &parts)? {
            let max = self.0.opts.max_object_size as usize;
            match self.0.objects.get(&key)? {
                Some(existing) => match object::decode(&existing, max, true) {
                    Ok((h, _)) if h.id == *id => return Ok(h),
                    _ => self.0.objects.replace(&key, &parts)?,
                },
                None => self.0.objects.replace(&key, &parts)?,
            }
        }
        Ok(enc.header)
    }

    /// Which of `ids` the store lacks, in the order given (duplicates once).
    /// The ones present are leased until `lease_until` so GC cannot take them
    /// before the client commits. One batched multi-get for all of them.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub fn missing(&self, ids: &[ChunkId], lease_until: u64) -> Result<Vec<ChunkId>> {
        let missing = self.lease_present(ids, lease_until)?;
        let asked = ids.iter().collect::<HashSet<_>>().len();
        bump(&self.0.activity.chunks_known, (asked - missing.len()) as u64);
        Ok(missing)
    }

    /// [`Store::missing`] for the store's own checks (commits, lease
    /// renewals): the same answer and leases, not counted as dedup hits.
    pub(super) fn lease_present(&self, ids: &[ChunkId], lease_until: u64) -> Result<Vec<ChunkId>> {
        let mut held = self.lock_stripes(ids)?;
        let rows = self.0.meta.chunk_rows(ids)?;
        let mut batch = Batch::default();
        let mut missing = Vec::new();
        let mut seen = HashSet::with_capacity(ids.len());
        // Refresh a lease only when it would otherwise end within a minute of
        // the requested time: a re-upload does not rewrite every row.
        let slack = 60_000;
        for (id, row) in ids.iter().zip(rows) {
            if !seen.insert(*id) {
                continue;
            }
            match row {
                Some(mut r) if r.usable() => {
                    if r.lease_until + slack < lease_until {
                        r.lease_until = lease_until;
                        batch.put(Cf::Chunks, id.as_bytes(), &r.encode());
                    }
                }
                _ => missing.push(*id),
            }
        }
        held.write(batch, false)?;
        Ok(missing)
    }

    /// Whether the store has a usable chunk `id`; leases it when it has.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub fn has_chunk(&self, id: &ChunkId, lease_until: u64) -> Result<bool> {
        Ok(self.missing(std::slice::from_ref(id), lease_until)?.is_empty())
    }

    /// A chunk's stored object (header checked), for serving it as is: the
    /// bytes `object` of a pooled buffer (see [`buffer`]).
    ///
    /// # Errors
    /// [`Error::ChunkNotFound`], [`Error::Corrupt`].
    pub fn chunk_object(&self, id: &ChunkId) -> Result<(object::Header, Buffer, std::ops::Range<usize>)> {
        let (len, key) = match self.0.meta.chunk_row(id)? {
            Some(r) if r.usable() => (r.raw_len, ObjectKey::new(*id, r.generation)),
            _ => return Err(Error::ChunkNotFound(*id)),
        };
        let (enc, object) = self.object_buffer(&key, len)?;
        let h = object::check(&enc[object.clone()])
            .map_err(|e| Error::Corrupt { id: *id, reason: e.0.into() })?;
        if h.id != *id {
            return Err(Error::Corrupt { id: *id, reason: "object holds another chunk".into() });
        }
        Ok((h, enc, object))
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
    fn read_chunk_as_stored(&self, key: &ObjectKey, len: u32) -> Result<Bytes> {
        let (enc, object) = self.object_buffer(key, len)?;
        self.decode_chunk(key, enc, object)
    }

    /// The raw bytes of `enc[object]`, the encoded object read for chunk `key`:
    /// header and payload CRC checked, decompressed when stored so, and
    /// naming that chunk.
    ///
    /// # Errors
    /// [`Error::Corrupt`] saying which check failed.
    fn decode_chunk(&self, key: &ObjectKey, enc: Buffer, object: std::ops::Range<usize>) -> Result<Bytes> {
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
    fn object_buffer(&self, key: &ObjectKey, len: u32) -> Result<(Buffer, std::ops::Range<usize>)> {
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
        object: std::ops::Range<usize>,
        len: u32,
    ) -> Result<Bytes> {
        of_len(key, self.decode_chunk(key, enc, object)?, len)
    }

    /// Moves a chunk's object aside after a read found it damaged, and marks
    /// its row so that the missing-chunks query reports it (the next upload
    /// of that content heals it) and downloads fail fast.
    ///
    /// # Errors
    /// Metadata backend and I/O errors.
    pub fn mark_damaged(&self, id: &ChunkId, reason: &str) -> Result<()> {
        self.mark_damaged_at(id, None, reason)
    }

    /// [`Store::mark_damaged`] of the object at `generation` (a read's):
    /// nothing when the row names another object by then (a heal's).
    pub(super) fn mark_damaged_at(&self, id: &ChunkId, generation: Option<u64>, reason: &str) -> Result<()> {
        let mut held = self.lock_stripes([id])?;
        let Some(mut r) = self.0.meta.chunk_row(id)? else { return Ok(()) };
        // A `Writing` row is being healed by a writer whose object may not
        // be there yet: its flip decides.
        if matches!(r.state, ChunkState::Damaged | ChunkState::Writing) {
            return Ok(());
        }
        if generation.is_some_and(|g| self.located() && g != r.generation) {
            return Ok(());
        }
        self.0.objects.quarantine(&ObjectKey::new(*id, r.generation))?;
        r.state = ChunkState::Damaged;
        let mut batch = Batch::default();
        batch.put(Cf::Chunks, id.as_bytes(), &r.encode());
        held.write(batch, true)?;
        tracing::error!(chunk = %id, reason, "damaged chunk moved aside; the next upload of its content heals it");
        Ok(())
    }

    /// The first bytes of a manifest's content, for type detection.
    ///
    /// # Errors
    /// Chunk read errors.
    pub fn head_bytes(&self, chunks: &[Entry], n: usize) -> Result<Vec<u8>> {
        let mut head = Vec::new();
        for e in chunks {
            if head.len() >= n {
                break;
            }
            if e.len == 0 {
                continue;
            }
            // The length is the commit's to check, with its own error.
            let raw = self.read_chunk_as_stored(&self.key_of(&e.id)?, e.len)?;
            head.extend_from_slice(&raw[..raw.len().min(n - head.len())]);
        }
        Ok(head)
    }

    // ----- files ------------------------------------------------------------
}

/// One chunk on its way in: its id, raw bytes, and the client's zstd frame
/// when it sent one worth keeping.
struct ChunkIn<'a> {
    id: ChunkId,
    raw: &'a [u8],
    frame: Option<&'a [u8]>,
}

fn encode_item<'a>(id: &ChunkId, raw: &'a [u8], frame: Option<&'a [u8]>, level: i32) -> object::Encoded<'a> {
    match frame {
        Some(f) => object::zstd_frame_parts(id, raw.len() as u32, f),
        None => object::encode_parts(id, raw, level),
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
