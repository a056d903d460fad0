//! Tenants: who owns a file or an upload, and what a caller may learn about
//! chunks. Storage stays deduplicated across tenants (one object, one global
//! refcount); what a tenant can observe stays inside it:
//!
//! - `Committed(T)`: chunks referenced by T's files (row `c` ‖ T ‖ `/` ‖
//!   chunk → occurrences, changed in the same batches as the global
//!   refcounts);
//! - `Leased(T)`: chunks whose bytes T sent through the dedup protocol's
//!   chunk PUT and has not committed yet (row `l` ‖ T ‖ `/` ‖ chunk → lease
//!   end, unix ms; GC drops expired rows).
//!
//! A chunk is *known* to T when it is in either set. Presence answers,
//! commits by reference and chunk reads are allowed only for known chunks
//! ([`Store::missing_in`], [`Store::unknown_in`]); everything else must be
//! sent in full (and is still stored once). Listing uses the `f` ‖ T ‖ `/` ‖
//! file id index, so paging one tenant never walks another's files.
//!
//! All rows live in [`Cf::Tenants`]. Listing by tenant and tenant figures
//! are in `search`; the migration of stores made before tenants in
//! `migrate`.

use std::collections::{HashMap, HashSet};

use super::Store;
use super::error::Result;
use super::id::{ChunkId, FileId};
use super::manifest::Entry;
use super::meta::{Batch, Cf};
use super::name::{Tenant, View};

/// Row kinds: the listing index, committed chunks, leased chunks.
pub(super) const FILES: u8 = b'f';
pub(super) const REFS: u8 = b'c';
pub(super) const LEASES: u8 = b'l';

pub(super) fn prefix(kind: u8, t: &Tenant) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + t.as_str().len() + 32);
    k.push(kind);
    k.extend_from_slice(t.as_str().as_bytes());
    k.push(b'/');
    k
}

fn key(kind: u8, t: &Tenant, id: &[u8]) -> Vec<u8> {
    let mut k = prefix(kind, t);
    k.extend_from_slice(id);
    k
}

/// The listing index row of a file.
pub(super) fn file_key(t: &Tenant, id: &FileId) -> Vec<u8> {
    key(FILES, t, id.as_bytes())
}

/// The committed-chunk row of `t` for `id`.
pub(super) fn ref_key(t: &Tenant, id: &ChunkId) -> Vec<u8> {
    key(REFS, t, id.as_bytes())
}

/// Splits a row key of this family: kind (`f`, `c`, `l`), tenant, id bytes.
pub(super) fn split_key(k: &[u8]) -> Option<(u8, Tenant, &[u8])> {
    let (&kind, rest) = k.split_first()?;
    let slash = rest.iter().position(|b| *b == b'/')?;
    let t = Tenant::parse(std::str::from_utf8(&rest[..slash]).ok()?).ok()?;
    Some((kind, t, &rest[slash + 1..]))
}

/// `t`'s committed-files counter in [`Cf::Meta`] (see `quota`).
pub(super) fn files_key(t: &Tenant) -> Vec<u8> {
    [b"usage/files/".as_slice(), t.as_str().as_bytes()].concat()
}

/// `t`'s committed-bytes counter in [`Cf::Meta`] (see `quota`).
pub(super) fn bytes_key(t: &Tenant) -> Vec<u8> {
    [b"usage/bytes/".as_slice(), t.as_str().as_bytes()].concat()
}

/// Adds `files` and `bytes` to `t`'s committed usage, into `batch`.
pub(super) fn tally(batch: &mut Batch, t: &Tenant, files: i64, bytes: i64) {
    batch.add_at(&files_key(t), files);
    batch.add_at(&bytes_key(t), bytes);
}

/// Decodes a committed-chunk row's count.
pub(super) fn count_of(v: &[u8]) -> u64 {
    u64_of(Some(v))
}

pub(super) fn u64_of(v: Option<&[u8]>) -> u64 {
    v.and_then(|b| b.try_into().ok()).map(u64::from_le_bytes).unwrap_or(0)
}

/// Occurrences of each chunk in `entries`.
pub(super) fn occurrences(entries: &[Entry]) -> HashMap<ChunkId, u64> {
    let mut n: HashMap<ChunkId, u64> = HashMap::new();
    for e in entries {
        *n.entry(e.id).or_default() += 1;
    }
    n
}

impl Store {
    /// Adds (`sign` +1) or removes (-1) `counts` occurrences to `t`'s
    /// committed set, into `batch`. The caller holds the chunks' stripes.
    pub(super) fn tenant_refs(
        &self,
        batch: &mut Batch,
        t: &Tenant,
        counts: &HashMap<ChunkId, u64>,
        sign: i8,
    ) -> Result<()> {
        let keys: Vec<Vec<u8>> = counts.keys().map(|id| key(REFS, t, id.as_bytes())).collect();
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let now = self.meta().multi_get(Cf::Tenants, &refs)?;
        for ((id, k), old) in counts.keys().zip(&keys).zip(now) {
            let old = u64_of(old.as_deref());
            let new = if sign > 0 { old + counts[id] } else { old.saturating_sub(counts[id]) };
            if new == 0 {
                batch.delete(Cf::Tenants, k);
            } else {
                batch.put(Cf::Tenants, k, &new.to_le_bytes());
            }
        }
        Ok(())
    }

    /// Which of `ids` `view` knows: committed in its files or leased by its
    /// uploads (for [`View::All`], every one). In `ids` order.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub fn known_in(&self, view: &View, ids: &[ChunkId]) -> Result<Vec<bool>> {
        let View::Tenant(t) = view else { return Ok(vec![true; ids.len()]) };
        let refs: Vec<Vec<u8>> = ids.iter().map(|id| key(REFS, t, id.as_bytes())).collect();
        let leases: Vec<Vec<u8>> = ids.iter().map(|id| key(LEASES, t, id.as_bytes())).collect();
        let m = self.meta();
        let c = m.multi_get(Cf::Tenants, &refs.iter().map(Vec::as_slice).collect::<Vec<_>>())?;
        let l = m.multi_get(Cf::Tenants, &leases.iter().map(Vec::as_slice).collect::<Vec<_>>())?;
        let now = self.now_ms();
        Ok(c.iter().zip(&l).map(|(c, l)| c.is_some() || u64_of(l.as_deref()) > now).collect())
    }

    /// The chunks of `ids` that `view` does not know, in order, once each.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub fn unknown_in(&self, view: &View, ids: &[ChunkId]) -> Result<Vec<ChunkId>> {
        let mut seen = HashSet::with_capacity(ids.len());
        let known = self.known_in(view, ids)?;
        Ok(ids.iter().zip(known).filter(|(id, k)| !k && seen.insert(**id)).map(|(id, _)| *id).collect())
    }

    /// [`Store::missing`] as `view` may learn it: a chunk is present only
    /// when `view` knows it *and* the store has it usable; the known,
    /// present ones are leased until `lease_until`. The global store is not
    /// consulted for chunks `view` does not know.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub fn missing_in(&self, view: &View, ids: &[ChunkId], lease_until: u64) -> Result<Vec<ChunkId>> {
        if *view == View::All {
            return self.missing(ids, lease_until);
        }
        let known = self.known_in(view, ids)?;
        let candidates: Vec<ChunkId> =
            ids.iter().zip(&known).filter(|(_, k)| **k).map(|(id, _)| *id).collect();
        let absent: HashSet<ChunkId> = self.missing(&candidates, lease_until)?.into_iter().collect();
        let mut seen = HashSet::with_capacity(ids.len());
        Ok(ids
            .iter()
            .zip(known)
            .filter(|(id, k)| (!k || absent.contains(id)) && seen.insert(**id))
            .map(|(id, _)| *id)
            .collect())
    }

    /// Records that `t` sent the bytes of `ids` itself: they are known to it
    /// until `until` (unix ms), or for ever once committed in its files.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub fn lease_to(&self, t: &Tenant, ids: &[ChunkId], until: u64) -> Result<()> {
        let mut b = Batch::default();
        for id in ids {
            b.put(Cf::Tenants, &key(LEASES, t, id.as_bytes()), &until.to_le_bytes());
        }
        self.meta().write(b, false)
    }

    /// Drops tenant leases that have ended. Returns how many.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub fn reap_tenant_leases(&self) -> Result<u64> {
        let now = self.now_ms();
        let mut b = Batch::default();
        let mut n = 0;
        for kv in self.meta().scan(Cf::Tenants, &[LEASES], None) {
            let (k, v) = kv?;
            if u64_of(Some(&v)) <= now {
                b.delete(Cf::Tenants, &k);
                n += 1;
            }
            if b.len() >= 4096 {
                self.meta().write(std::mem::take(&mut b), false)?;
            }
        }
        self.meta().write(b, false)?;
        Ok(n)
    }
}
