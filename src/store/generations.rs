//! The put protocol on a generational object store (docs/DESIGN.md,
//! "Generations"; scale-out design §3, "Put (S3 mode)"): claim → PUT →
//! flip, so that no object key is ever written twice and a DELETE, however
//! late, can only hit a generation no row names.
//!
//! 1. **Claim** (under the stripe locks): each distinct chunk whose row is
//!    absent, `Deleting`, `Damaged` or an expired `Writing` gets the row
//!    `Writing` with a fresh random generation and a deadline
//!    ([`StoreOptions::claim_timeout`](super::StoreOptions) from now, a
//!    minute by default), plus a GC queue entry at that deadline. A usable
//!    row is a dedup hit (its lease is extended); a live claim of another
//!    writer is waited for (see [`BUSY_WAIT`]), then answered
//!    [`Error::Unavailable`] (the client sends the chunk again later: a
//!    writer that died holding a claim holds it only to its deadline).
//! 2. **PUT** (no lock held): one PUT per claimed chunk, side by side
//!    ([`ObjectStore::put_many`](super::objects::ObjectStore::put_many)), then
//!    the barrier. No HEAD, no LIST.
//! 3. **Flip** (under the locks): a row still `Writing` with this writer's
//!    generation becomes `Zero` (or `Live` if files already reference it)
//!    with the lease and queue entry of any new chunk. A row that changed
//!    meanwhile was taken over after the deadline (by GC or another
//!    writer): this writer's key is garbage, so it deletes it and the put
//!    fails with [`Error::Conflict`]; sending the chunk again claims anew.
//!
//! A PUT that fails releases the claims (their deadline becomes now, so a
//! retry takes them over at once and GC may reap them) and deletes what it
//! may have written. A crash between the steps leaves a `Writing` row (and
//! maybe its object): GC reaps it at its deadline like any other row,
//! deleting exactly that generation. Nothing here is used on a store that is not generational
//! (the object directory), which keeps create-only puts under the locks.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::compact::count_row;
use super::error::{Error, Result};
use super::id::ChunkId;
use super::meta::{self, Batch, Cf, ChunkRow, ChunkState};
use super::objects::ObjectKey;
use super::{Store, object};

/// How long a put waits for another writer's live claim on the same chunk
/// (polling its row) before it gives up with [`Error::Unavailable`]. Another
/// writer's claim normally flips within one PUT's time; only a writer that
/// died holding it keeps it to its deadline.
pub const BUSY_WAIT: Duration = Duration::from_secs(30);

/// The first and the longest pause between two looks at a busy row.
const RECHECK: (Duration, Duration) = (Duration::from_millis(5), Duration::from_millis(500));

/// A chunk this writer claimed: where it is in the batch, the generation
/// it drew and the deadline of its claim.
struct Claim {
    index: usize,
    generation: u64,
    until: u64,
}

/// A fresh generation: random, never 0 (the name of objects written
/// before generations) and never `not` (the row's last one).
pub(super) fn fresh_generation(not: u64) -> u64 {
    loop {
        let g = rand::random::<u64>();
        if g != 0 && g != not {
            return g;
        }
    }
}

impl Store {
    /// Stores a batch of chunks on a generational object store by the
    /// protocol of this module. `ids[i]` is chunk `i` (repeats allowed),
    /// `lens[i]` its raw length, `encode(i)` its encoded object (called
    /// only for chunks this writer claims). Returns, for each, whether this
    /// call stored it (`false`: it was usable already, or a repeat).
    ///
    /// # Errors
    /// [`Error::Conflict`] when a claim was taken over before its flip (the
    /// writer's object is deleted; sending the chunks again stores them);
    /// [`Error::Unavailable`] when another writer's claim did not end within
    /// [`BUSY_WAIT`];
    /// [`Error::InsufficientStorage`]; metadata and object store errors
    /// (rows claimed so far stay `Writing` until GC reaps them).
    pub(super) fn put_generational<'a>(
        &self,
        ids: &[ChunkId],
        lens: &[u32],
        encode: &dyn Fn(usize) -> object::Encoded<'a>,
        lease_until: u64,
    ) -> Result<Vec<bool>> {
        let mut new = vec![false; ids.len()];
        let mut seen = HashSet::new();
        let mut pending: Vec<usize> = (0..ids.len()).filter(|&i| seen.insert(ids[i])).collect();
        let started = Instant::now();
        let mut pause = RECHECK.0;
        loop {
            let (claims, busy) = self.claim(ids, lens, &pending, lease_until)?;
            if !claims.is_empty() {
                let encoded: Vec<object::Encoded<'a>> = claims.iter().map(|c| encode(c.index)).collect();
                let items: Vec<(ObjectKey, Vec<&[u8]>)> = claims
                    .iter()
                    .zip(&encoded)
                    .map(|(c, e)| (ObjectKey::new(ids[c.index], c.generation), e.parts().to_vec()))
                    .collect();
                let stored = self.0.objects.put_many(&items).and_then(|()| self.0.objects.barrier());
                if let Err(e) = stored {
                    self.release(ids, &claims);
                    return Err(e.into());
                }
                let headers: Vec<object::Header> = encoded.iter().map(|e| e.header).collect();
                self.flip(ids, &claims, &headers, lease_until, &mut new)?;
            }
            if busy.is_empty() {
                return Ok(new);
            }
            if started.elapsed() >= BUSY_WAIT {
                return Err(Error::Unavailable(format!(
                    "chunk {} is being written by another upload; send it again later",
                    ids[busy[0]]
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(RECHECK.1);
            pending = busy;
        }
    }

    /// Step 1: claims the chunks at `pending` that need an object, extends
    /// the lease of the usable ones. Returns the claims and the chunks
    /// another writer's live claim holds.
    fn claim(
        &self,
        ids: &[ChunkId],
        lens: &[u32],
        pending: &[usize],
        lease_until: u64,
    ) -> Result<(Vec<Claim>, Vec<usize>)> {
        let want: Vec<ChunkId> = pending.iter().map(|&i| ids[i]).collect();
        let mut held = self.lock_stripes(&want)?;
        let rows = self.0.meta.chunk_rows(&want)?;
        let now = self.now_ms();
        let until = now + self.0.opts.claim_timeout.as_millis() as u64;
        let mut batch = Batch::default();
        let (mut claims, mut busy) = (Vec::new(), Vec::new());
        for (&i, row) in pending.iter().zip(rows) {
            let id = &ids[i];
            match row {
                Some(mut r) if r.usable() => {
                    if r.lease_until < lease_until {
                        r.lease_until = lease_until;
                        batch.put(Cf::Chunks, id.as_bytes(), &r.encode());
                    }
                }
                Some(r) if r.state == ChunkState::Writing && r.lease_until > now => busy.push(i),
                old => {
                    if claims.is_empty() {
                        // New data: refused below the reserve.
                        self.ensure_space()?;
                    }
                    let generation = fresh_generation(old.map_or(0, |r| r.generation));
                    let row = ChunkRow {
                        refcount: old.map_or(0, |r| r.refcount),
                        raw_len: lens[i],
                        stored_len: 0,
                        codec: 0,
                        state: ChunkState::Writing,
                        zero_since: now,
                        lease_until: until,
                        generation,
                    };
                    count_row(&mut batch, old.as_ref(), Some(&row), false);
                    batch.put(Cf::Chunks, id.as_bytes(), &row.encode());
                    batch.put(Cf::Gcq, &meta::gcq_key(until, id), b"");
                    claims.push(Claim { index: i, generation, until });
                }
            }
        }
        held.write(batch, false)?;
        Ok((claims, busy))
    }

    /// After a failed PUT: ends this writer's claims now (rows still
    /// `Writing` with its generations), so that sending the chunks again
    /// takes them over at once instead of waiting for the deadline, and
    /// GC may reap them; then deletes the keys it may have written. Best
    /// effort: what fails here, GC does at the claims' deadline.
    fn release(&self, ids: &[ChunkId], claims: &[Claim]) {
        let keys: Vec<ObjectKey> =
            claims.iter().map(|c| ObjectKey::new(ids[c.index], c.generation)).collect();
        let want: Vec<ChunkId> = keys.iter().map(|k| k.id).collect();
        let released = self.lock_stripes(&want).and_then(|mut held| {
            let now = self.now_ms();
            self.0.meta.chunk_rows(&want).and_then(|rows| {
                let mut batch = Batch::default();
                for (key, row) in keys.iter().zip(rows) {
                    let Some(mut r) = row else { continue };
                    if r.state == ChunkState::Writing && r.generation == key.generation {
                        r.lease_until = now;
                        batch.put(Cf::Chunks, key.id.as_bytes(), &r.encode());
                        batch.put(Cf::Gcq, &meta::gcq_key(now, &key.id), b"");
                    }
                }
                held.write(batch, false)
            })
        });
        if let Err(e) = released {
            tracing::warn!(error = %e, "releasing the claims of a failed put failed; they end at their deadline");
        }
        if let Err(e) = self.0.objects.delete_many(&keys) {
            tracing::warn!(error = %e, "deleting the objects of a failed put failed; GC will");
        }
    }

    /// Step 3: flips the rows still claimed by this writer; deletes the
    /// objects of the claims that were taken over, and fails naming them.
    fn flip(
        &self,
        ids: &[ChunkId],
        claims: &[Claim],
        headers: &[object::Header],
        lease_until: u64,
        new: &mut [bool],
    ) -> Result<()> {
        let want: Vec<ChunkId> = claims.iter().map(|c| ids[c.index]).collect();
        let mut lost = Vec::new();
        {
            let mut held = self.lock_stripes(&want)?;
            let rows = self.0.meta.chunk_rows(&want)?;
            let now = self.now_ms();
            let mut batch = Batch::default();
            for ((c, h), row) in claims.iter().zip(headers).zip(rows) {
                let id = &ids[c.index];
                let mut r = match row {
                    Some(r) if r.state == ChunkState::Writing && r.generation == c.generation => r,
                    _ => {
                        lost.push(ObjectKey::new(*id, c.generation));
                        continue;
                    }
                };
                let old = r;
                r.stored_len = h.stored_len;
                r.codec = h.codec as u8;
                r.state = if r.refcount > 0 { ChunkState::Live } else { ChunkState::Zero };
                r.zero_since = now;
                r.lease_until = lease_until;
                count_row(&mut batch, Some(&old), Some(&r), false);
                batch.put(Cf::Chunks, id.as_bytes(), &r.encode());
                batch.delete(Cf::Gcq, &meta::gcq_key(c.until, id));
                if r.refcount == 0 {
                    let at = (now + self.grace_ms()).max(lease_until);
                    batch.put(Cf::Gcq, &meta::gcq_key(at, id), b"");
                }
                new[c.index] = true;
            }
            held.write(batch, false)?;
        }
        if lost.is_empty() {
            return Ok(());
        }
        // No row names these keys and none ever will (a generation is never
        // drawn twice): garbage. If this delete fails, the orphan sweep
        // finds them.
        if let Err(e) = self.0.objects.delete_many(&lost) {
            tracing::warn!(error = %e, "deleting the objects of claims taken over failed; the orphan sweep will");
        }
        Err(Error::Conflict(format!(
            "{} chunk(s) (the first {}) were taken over while being written (a claim outlived its {} s); \
             send them again",
            lost.len(),
            lost[0].id,
            self.0.opts.claim_timeout.as_secs()
        )))
    }
}
