//! Chunks: put (hash, compress, write the object, then the row), the
//! missing-query that serves resume and dedup at once, leases and damage
//! marking (reads are `chunk_read.rs`). Objects are written before any lock is taken; rows change
//! only under the stripe locks. On a generational object store (S3) a put
//! claims the row first and writes a fresh generation (`generations.rs`);
//! reads then take the object's generation from the row.

use std::collections::HashSet;

use bytes::Bytes;

use super::engine::bump;
use super::error::{Error, Result};
use super::frame::{decode_frame, kept_frame};
use super::id::ChunkId;
use super::manifest::Entry;
use super::meta::{self, Batch, Cf, ChunkRow, ChunkState};
use super::objects::{ObjectKey, packs};
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
        // No engine call (nor fault hook) for nothing on every put. None
        // while a backup runs (a row of its checkpoint may name them): the
        // orphan sweep takes them then, as objects of another generation.
        // Not a wait: this put still holds its stripe locks and its pack
        // writer's pin, which a backup holding deletions off waits for.
        if !unnamed.is_empty()
            && let Some(_deletes) = self.try_hold_deletes()
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
