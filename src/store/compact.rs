//! Compaction of pack files (docs/PACKS.md, "Garbage collection and
//! compaction"), run by each GC run on a store with packs.
//!
//! GC frees nothing in a pack: dropping a chunk row lowers its pack's live
//! bytes ([`count_row`]). A closed pack (not pinned, see
//! [`super::objects::packs`]) whose live bytes are under half its length
//! is rewritten: each record a row still names is checked (header and
//! payload CRC) and appended to a new pack, the new packs are synced, then
//! under the stripe locks each row that still names the old location is
//! moved to the new one (a put or GC that changed the row meanwhile wins,
//! as in the generational flip). A record that fails its check is copied
//! to the quarantine directory and its row marked damaged (a re-upload of
//! its content heals it). Rows mid-delete are left to G3.
//!
//! A pack that no row names any more is deleted only after the grace
//! period (`gc.grace`), so that a download that looked up its locations
//! before the move finishes from it; a read that finds it gone looks the
//! row up again (`Store::read_part`). Work is bounded by the garbage: at
//! most as many bytes are copied as are freed.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::meta::{self, Batch, Cf, ChunkRow, ChunkState, Counter};
use super::objects::ObjectKey;
use super::objects::packs::{self, Packs};
use super::{ChunkId, Result, Store, object};

/// Adds to `batch` what a chunk row going from `old` to `new` (absent:
/// `None`) changes in the store-wide counters, as `verify` recounts them:
/// every row counts as a chunk, its raw bytes and its stored bytes. On a
/// store with `packs`, a row whose generation is not 0 also counts its
/// record's bytes (header and payload, padded to a page) as live in its pack
/// ([`meta::pack_live_key`]), which compaction reads.
pub(super) fn count_row(batch: &mut Batch, old: Option<&ChunkRow>, new: Option<&ChunkRow>, packs: bool) {
    if packs {
        match (old.and_then(live_in_pack), new.and_then(live_in_pack)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => {
                if let Some((p, n)) = a {
                    batch.add_at(&meta::pack_live_key(p), -n);
                }
                if let Some((p, n)) = b {
                    batch.add_at(&meta::pack_live_key(p), n);
                }
            }
        }
    }
    let figures = |r: Option<&ChunkRow>| {
        r.map_or([0; 3], |r| [1, i64::from(r.raw_len), i64::from(r.stored_len) + object::HEADER_LEN as i64])
    };
    let (a, b) = (figures(old), figures(new));
    for (c, (a, b)) in [Counter::UniqueChunks, Counter::UniqueBytes, Counter::StoredBytes]
        .into_iter()
        .zip(a.into_iter().zip(b))
    {
        if a != b {
            batch.add(c, b - a);
        }
    }
}

/// The pack a row's record is in and the bytes it counts as live there: as
/// the record takes room in its pack, padded to a page, so that a pack
/// whose records are all named counts as wholly live. `None` for a loose
/// object (generation 0).
pub(super) fn live_in_pack(r: &ChunkRow) -> Option<(u32, i64)> {
    let len = (u64::from(r.stored_len) + object::HEADER_LEN as u64).div_ceil(packs::PAGE) * packs::PAGE;
    (r.generation != 0).then(|| (packs::pack_of(r.generation), len as i64))
}

/// What compaction did in one GC run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CompactReport {
    /// Packs whose live records were moved to new packs.
    pub packs_compacted: u64,
    /// Records moved.
    pub records_moved: u64,
    /// Bytes of the records moved (headers and payloads).
    pub bytes_moved: u64,
    /// Packs deleted (emptied, their grace period over).
    pub packs_deleted: u64,
    /// Bytes of the packs deleted.
    pub bytes_freed: u64,
    /// Records found damaged while moving (quarantined, rows marked).
    pub damaged: u64,
}

/// Records moved per flip (one batch of row changes under the locks).
const FLIP: usize = 256;

/// What [`Store::pack_loose`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PackReport {
    /// Loose objects appended to packs, their rows moved, and deleted.
    pub objects_packed: u64,
    /// The bytes appended (headers and payloads).
    pub bytes_packed: u64,
    /// Loose objects left where they were: missing, or failing their check
    /// (`verify --repair` marks their chunks for re-upload).
    pub damaged: u64,
}

/// A record to move: its chunk, where it is, where it goes (0 and
/// `damaged`: it failed its check and is not copied).
struct Move {
    id: ChunkId,
    from: u64,
    to: u64,
    damaged: bool,
}

impl Store {
    /// Deletes emptied packs whose grace period is over, then compacts
    /// closed packs under half live. Nothing on a store without packs.
    ///
    /// # Errors
    /// Metadata backend and I/O errors; work done before stays done (a
    /// record copied but not flipped is dead bytes in the new pack).
    pub(super) fn compact_packs(&self) -> Result<CompactReport> {
        let mut report = CompactReport::default();
        let Some(packs) = self.objects().packs() else { return Ok(report) };
        let now = self.now_ms();
        let list = packs.list()?;
        let mut scheduled = HashSet::new();
        let mut drops = Batch::default();
        for kv in self.meta().scan(Cf::Meta, meta::PACK_DROP_PREFIX, None) {
            let (k, v) = kv?;
            let Some(n) = meta::pack_in_key(&k) else { continue };
            let due = <[u8; 8]>::try_from(&v[..]).map(u64::from_le_bytes).unwrap_or(0);
            let info = list.iter().find(|p| p.number == n);
            if due > now || info.is_some_and(|p| p.pinned) {
                scheduled.insert(n);
                continue;
            }
            drops.delete(Cf::Meta, &k);
            if self.pack_live(n)? > 0 {
                continue; // named again (a flip that lost): compacted again below
            }
            packs.delete(n)?;
            scheduled.insert(n); // gone: not looked at again below
            drops.delete(Cf::Meta, &meta::pack_live_key(n));
            report.packs_deleted += 1;
            report.bytes_freed += info.map_or(0, |p| p.len);
        }
        self.meta().write(drops, false)?;

        // Open packs under half live are closed first, so that a quiet
        // store's deleted bytes do not wait for its open packs to fill.
        // `close` is called under the idle list's lock: the counters are
        // read before it.
        let mut live = HashMap::new();
        for p in &list {
            live.insert(p.number, self.pack_live(p.number)?);
        }
        let closed = packs.close_idle(|n, len| live.get(&n).is_some_and(|l| !half_live(*l, len)));
        let list = if closed > 0 { packs.list()? } else { list };
        for p in list.iter().filter(|p| !p.pinned && !scheduled.contains(&p.number)) {
            let mut live = match live.get(&p.number) {
                Some(l) => *l,
                None => self.pack_live(p.number)?, // made since the counters were read
            };
            if half_live(live, p.len) {
                continue;
            }
            if live > 0 {
                self.compact_pack(packs, p.number, &mut report)?;
                report.packs_compacted += 1;
                live = self.pack_live(p.number)?;
            }
            if live <= 0 {
                let mut b = Batch::default();
                b.put(Cf::Meta, &meta::pack_drop_key(p.number), &(now + self.grace_ms()).to_le_bytes());
                self.meta().write(b, true)?;
            }
        }
        Ok(report)
    }

    /// The live bytes of pack `n` (see [`meta::pack_live_key`]).
    fn pack_live(&self, n: u32) -> Result<i64> {
        Ok(self.meta().get(Cf::Meta, &meta::pack_live_key(n))?.map_or(0, |v| meta::decode_counter(&v)))
    }

    /// Moves the live records of pack `n` to new packs (see the module docs).
    fn compact_pack(&self, packs: &Packs, n: u32, report: &mut CompactReport) -> Result<()> {
        let mut writer = packs.writer();
        let mut moves: Vec<Move> = Vec::new();
        packs.scan(n, |from, rec| -> Result<()> {
            let Ok(h) = object::Header::decode(rec) else { return Ok(()) };
            let Some(row) = self.meta().chunk_row(&h.id)? else { return Ok(()) };
            if row.generation != from || matches!(row.state, ChunkState::Deleting | ChunkState::Writing) {
                return Ok(());
            }
            let sound = row.state != ChunkState::Damaged && object::check(rec).is_ok_and(|c| c.id == h.id);
            if sound {
                let to = writer.append(&[rec])?;
                report.records_moved += 1;
                report.bytes_moved += rec.len() as u64;
                moves.push(Move { id: h.id, from, to, damaged: false });
            } else {
                if row.state != ChunkState::Damaged {
                    self.objects().quarantine(&ObjectKey::new(h.id, from))?;
                    tracing::error!(chunk = %h.id, pack = n, "damaged record found by compaction; row marked damaged");
                    report.damaged += 1;
                }
                moves.push(Move { id: h.id, from, to: 0, damaged: true });
            }
            if moves.len() >= FLIP {
                self.flip_moves(&std::mem::take(&mut moves))?;
            }
            Ok(())
        })?;
        self.flip_moves(&moves)?;
        drop(writer);
        Ok(())
    }

    /// Folds loose objects into packs (`depot pack`): each chunk whose row
    /// names a loose object (generation 0) and is neither damaged nor being
    /// written or deleted has its object checked (header, payload CRC,
    /// chunk id) and appended to a pack; once the packs are synced, the rows
    /// that still name the loose object move to the record (under the
    /// stripe locks, as compaction's do) and the loose objects are deleted.
    /// An object that fails its check is left where it is, counted in
    /// `damaged` (`verify --repair` marks it). A crash between a flip and
    /// the delete leaves loose objects no row names: orphans, which the
    /// sweep after an unclean stop removes.
    ///
    /// # Errors
    /// [`super::Error::InvalidInput`] on a store that does not append to
    /// packs; metadata backend and I/O errors (work done before stays done).
    pub fn pack_loose(&self) -> Result<PackReport> {
        let Some(packs) = self.objects().packs().filter(|p| p.appending()) else {
            return Err(super::Error::InvalidInput(
                "this store does not append to packs (storage.packs)".into(),
            ));
        };
        let mut report = PackReport::default();
        let mut writer = packs.writer();
        let mut moves: Vec<Move> = Vec::new();
        let mut bytes = 0u64;
        let finish = |moves: &mut Vec<Move>, report: &mut PackReport, bytes: &mut u64| -> Result<()> {
            let flipped = self.flip_moves(&std::mem::take(moves))?;
            let keys: Vec<ObjectKey> = flipped.iter().map(|id| ObjectKey::plain(*id)).collect();
            self.objects().delete_many(&keys)?;
            report.objects_packed += keys.len() as u64;
            report.bytes_packed += std::mem::take(bytes);
            Ok(())
        };
        for kv in self.meta().scan(Cf::Chunks, b"", None) {
            let (k, v) = kv?;
            let (Some(id), Ok(row)) = (ChunkId::from_slice(&k), ChunkRow::decode(&v)) else { continue };
            if row.generation != 0 || !matches!(row.state, ChunkState::Live | ChunkState::Zero) {
                continue;
            }
            let Some(obj) = self.objects().get(&ObjectKey::plain(id))? else {
                report.damaged += 1;
                continue;
            };
            if !object::check(&obj).is_ok_and(|h| h.id == id) {
                report.damaged += 1;
                continue;
            }
            let to = writer.append(&[&obj])?;
            bytes += obj.len() as u64;
            moves.push(Move { id, from: 0, to, damaged: false });
            if moves.len() >= FLIP {
                finish(&mut moves, &mut report, &mut bytes)?;
            }
        }
        finish(&mut moves, &mut report, &mut bytes)?;
        drop(writer);
        Ok(report)
    }

    /// Syncs the records `moves` copied, then moves each row that still
    /// names its old location to the new one, under the stripe locks.
    /// Returns the chunks whose rows moved.
    fn flip_moves(&self, moves: &[Move]) -> Result<Vec<ChunkId>> {
        if moves.is_empty() {
            return Ok(Vec::new());
        }
        self.objects().barrier()?;
        let ids: Vec<ChunkId> = moves.iter().map(|m| m.id).collect();
        let mut held = self.lock_stripes(&ids)?;
        let rows = self.meta().chunk_rows(&ids)?;
        let mut batch = Batch::default();
        let mut flipped = Vec::with_capacity(moves.len());
        for (m, row) in moves.iter().zip(rows) {
            let Some(old) = row.filter(|r| r.generation == m.from) else { continue };
            if matches!(old.state, ChunkState::Deleting | ChunkState::Writing) {
                continue;
            }
            let mut new = old;
            new.generation = m.to;
            if m.damaged {
                new.state = ChunkState::Damaged;
            }
            self.count_row(&mut batch, Some(&old), Some(&new));
            batch.put(Cf::Chunks, m.id.as_bytes(), &new.encode());
            flipped.push(m.id);
        }
        held.write(batch, false)?;
        self.0.locations.moved();
        Ok(flipped)
    }
}

/// Whether a pack `len` bytes long with `live` live bytes is kept as it is:
/// at least half of it live. Compaction copies the others' live records
/// out (or only deletes a pack with none), and closes an idle open pack
/// that is under half live so that it may.
fn half_live(live: i64, len: u64) -> bool {
    live > 0 && (live as u64).saturating_mul(2) >= len
}
