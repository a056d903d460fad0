//! Garbage collection. Work is proportional to the garbage: chunks that may
//! become garbage wait in the `gcq` family keyed by the time they become
//! eligible, so a run reads only what is due.
//!
//! A chunk is deleted only when, under its stripe lock, its refcount is zero,
//! its grace period since reaching zero has passed, and no upload's lease
//! pins it; or when a writer's claim on it (`Writing`) has passed its
//! deadline. Deletion is three idempotent steps (docs/DESIGN.md, "Garbage
//! collection"; scale-out design §3, "GC protocol"):
//!
//! - **G1, claim** (locked, synced): such rows go to `Deleting`, keeping
//!   their generation, and their queue entries are re-keyed, not dropped;
//! - **G2, delete**: the objects `(id, generation)` go, in `delete_many`
//!   calls of up to 1,000 (a missing one counts as deleted);
//! - **G3, drop** (locked): rows still `Deleting` *with that generation*
//!   are dropped with their queue entries and counter contributions.
//!
//! A crash between steps leaves `Deleting` rows with queue entries, which
//! the next run finishes. On a generational object store no lock is held
//! during G2: a put that takes a `Deleting` row over writes a new
//! generation, which the delete cannot touch, and G3 then leaves the row.
//! On the object directory (generation 0 only) the locks are held from G1
//! to G3, so no put of the same chunk can come between.
//!
//! On a store with pack files, G2 frees nothing for a packed object: G3's
//! row drop lowers its pack's live bytes, and compaction (`compact.rs`,
//! after the rounds) rewrites packs that are mostly dead.
//!
//! The orphan sweep (objects whose key no row names: no row, or a row of
//! another generation, which a crash between object write and row write or
//! a taken-over claim can leave) pages through the object listing and so is
//! proportional to the store: it runs on demand and after an unclean
//! shutdown.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use super::engine::stripes;
use super::meta::{self, Batch, Cf, ChunkRow, ChunkState, LockSpace};
use super::objects::{self, ObjectEntry, ObjectKey};
use super::{ChunkId, Result, Store};

/// What a GC run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Deletes that had waited for readers, or been cut by a crash, finished.
    pub finished_deletes: u64,
    pub expired_uploads: u64,
    /// Tenants' leases on chunks they sent and never committed, ended.
    pub expired_tenant_leases: u64,
    pub deleted_chunks: u64,
    /// Raw bytes of the deleted chunks.
    pub freed_bytes: u64,
    /// Candidates not yet due (leased again): put back in the queue.
    pub requeued: u64,
    pub orphan_objects: u64,
    pub temp_files: u64,
    /// `uploads/<id>` directories with no session record (a crash between
    /// making one and recording its session), removed.
    pub orphan_upload_dirs: u64,
    /// Pack files compacted and deleted (a store with packs).
    pub packs: super::compact::CompactReport,
}

const ROUND: usize = 1024;

/// A due GC queue entry: its key, its chunk and, for an entry G1 wrote,
/// the generation G1 claimed (the entry's value; other entries are empty).
struct Due {
    key: Box<[u8]>,
    id: ChunkId,
    claimed: Option<u64>,
}
const TEMP_AGE: Duration = Duration::from_secs(3600);
/// Objects per delete call (S3's `DeleteObjects` takes up to 1,000).
const DELETE_PAGE: usize = 1000;
/// Objects per listing page of the orphan sweep.
const LIST_PAGE: usize = 1000;

impl Store {
    /// Runs GC. With `orphans`, also sweeps objects that have no row and are
    /// older than the grace period (a walk of the whole object directory).
    ///
    /// # Errors
    /// Metadata backend and I/O errors; work done before the error stays done.
    pub fn gc(&self, orphans: bool) -> Result<GcReport> {
        // Not while a backup links what the rows of its checkpoint name.
        let _deletes = self.hold_deletes();
        let mut report = GcReport {
            finished_deletes: self.resume_pending()? as u64,
            expired_uploads: self.reap_uploads()?,
            expired_tenant_leases: self.reap_tenant_leases()?,
            ..Default::default()
        };
        loop {
            let now = self.now_ms();
            let due: Vec<Due> = self
                .meta()
                .scan(Cf::Gcq, b"", None)
                .take(ROUND)
                .filter_map(|kv| kv.ok())
                .take_while(|(k, _)| {
                    k.len() == 40 && u64::from_be_bytes(k[..8].try_into().unwrap_or_default()) <= now
                })
                .filter_map(|(k, v)| {
                    let claimed = <[u8; 8]>::try_from(&v[..]).ok().map(u64::from_le_bytes);
                    ChunkId::from_slice(&k[8..]).map(|id| Due { key: k, id, claimed })
                })
                .collect();
            if due.is_empty() {
                break;
            }
            self.collect_round(&due, now, &mut report)?;
            if due.len() < ROUND {
                break;
            }
        }
        report.packs = self.compact_packs()?;
        if orphans {
            let (swept, crash_left) = self.sweep_orphans()?;
            report.orphan_objects = swept;
            if crash_left == 0 {
                self.orphan_sweep_done();
            }
        }
        report.temp_files = self.objects().sweep_temp(TEMP_AGE)? as u64;
        report.orphan_upload_dirs = self.sweep_upload_dirs(TEMP_AGE)?;
        Ok(report)
    }

    fn collect_round(&self, due: &[Due], now: u64, report: &mut GcReport) -> Result<()> {
        let m = self.meta();
        let mut keys: HashMap<ChunkId, Vec<&Due>> = HashMap::new();
        for d in due {
            keys.entry(d.id).or_default().push(d);
        }
        let ids: Vec<ChunkId> = keys.keys().copied().collect();
        let generational = self.objects().generational();
        let mut held = self.lock_stripes(&ids)?;

        // G1: claim the rows that may go.
        let rows = m.chunk_rows(&ids)?;
        let grace = self.grace_ms();
        let mut mark = Batch::default();
        let mut doomed: Vec<ObjectKey> = Vec::new();
        // Generations an earlier run claimed whose rows a put took over
        // before that run's G3 (a crash came between): garbage, which no row
        // names and no writer will write again.
        let mut leftovers: Vec<ObjectKey> = Vec::new();
        // Their entries go only after G2 (with G3's batch).
        let mut leftover_entries: Vec<&[u8]> = Vec::new();
        for (id, row) in ids.iter().zip(rows) {
            for d in &keys[id] {
                match d.claimed {
                    Some(g) if row.is_none_or(|r| r.generation != g) => {
                        leftovers.push(ObjectKey::new(*id, g));
                        leftover_entries.push(&d.key);
                    }
                    _ => mark.delete(Cf::Gcq, &d.key),
                }
            }
            let Some(mut r) = row else { continue };
            let eligible = match r.state {
                // A writer's claim: due at its deadline, whatever the refcount.
                ChunkState::Writing => r.lease_until,
                _ if r.refcount > 0 => continue,
                ChunkState::Zero => (r.zero_since + grace).max(r.lease_until),
                ChunkState::Deleting | ChunkState::Damaged => now,
                ChunkState::Live => continue,
            };
            if eligible > now {
                mark.put(Cf::Gcq, &meta::gcq_key(eligible, id), b"");
                report.requeued += 1;
                continue;
            }
            if r.refcount > 0 {
                // A writer healing a chunk that files use never flipped:
                // the chunk is damaged again (a re-upload heals it); the
                // orphan sweep takes that generation's object, if any, once
                // a new claim names another.
                r.state = ChunkState::Damaged;
                mark.put(Cf::Chunks, id.as_bytes(), &r.encode());
                continue;
            }
            if r.state != ChunkState::Deleting {
                r.state = ChunkState::Deleting;
                mark.put(Cf::Chunks, id.as_bytes(), &r.encode());
            }
            // The row keeps a queue entry until G3 drops it, naming the
            // generation claimed: a crash in between leaves it where the
            // next run looks, and that run deletes this generation even if a
            // put has taken the row over meanwhile.
            mark.put(Cf::Gcq, &meta::gcq_key(now, id), &r.generation.to_le_bytes());
            doomed.push(ObjectKey::new(*id, r.generation));
        }
        held.write(mark, true)?;
        if generational {
            held.release(LockSpace::Chunks)?;
        }

        // G2: delete exactly the claimed generations.
        for page in doomed.chunks(DELETE_PAGE).chain(leftovers.chunks(DELETE_PAGE)) {
            self.objects().delete_many(page)?;
        }

        // G3: drop the rows no put took over meanwhile.
        let doomed_ids: Vec<ChunkId> = doomed.iter().map(|k| k.id).collect();
        held.take(LockSpace::Chunks, stripes(&doomed_ids))?;
        let rows = m.chunk_rows(&doomed_ids)?;
        let mut drop = Batch::default();
        for k in leftover_entries {
            drop.delete(Cf::Gcq, k);
        }
        for (key, row) in doomed.iter().zip(rows) {
            drop.delete(Cf::Gcq, &meta::gcq_key(now, &key.id));
            let still = |r: &ChunkRow| r.state == ChunkState::Deleting && r.generation == key.generation;
            let Some(r) = row.filter(still) else { continue };
            drop.delete(Cf::Chunks, key.id.as_bytes());
            self.count_row(&mut drop, Some(&r), None);
            report.deleted_chunks += 1;
            report.freed_bytes += u64::from(r.raw_len);
        }
        held.write(drop, false)?;
        self.0.locations.moved();
        Ok(())
    }

    /// Removes `uploads/<id>` directories older than `age` whose session
    /// has no record: tail files of sessions that ended without removing
    /// them (a young one is left alone all the same).
    fn sweep_upload_dirs(&self, age: Duration) -> Result<u64> {
        let dir = self.data_dir().join("uploads");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let now = std::time::SystemTime::now();
        let mut n = 0;
        for e in entries {
            let e = e?;
            let Some(id) = e.file_name().to_str().and_then(|s| s.parse::<super::UploadId>().ok()) else {
                continue;
            };
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() >= age);
            if !old {
                continue;
            }
            let _held = self.session_lock(&id)?;
            if self.upload(&id)?.is_none() {
                std::fs::remove_dir_all(e.path())?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Deletes orphan objects older than the grace period: objects whose
    /// key no row names (no row, or a row of another generation). Returns
    /// how many went, and how many orphans from before this process opened
    /// the store (a crash's leftovers) are still too young to go: while
    /// there are any, the sweep stays due.
    fn sweep_orphans(&self) -> Result<(u64, u64)> {
        let now = self.now_ms();
        let grace = self.grace_ms();
        let opened = self.opened_ms();
        let mut n = 0;
        let mut young_keys = Vec::new();
        let mtime = |e: &ObjectEntry| {
            e.modified.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
        };
        for prefix in 0..=255u8 {
            objects::for_each_page(self.objects().as_ref(), prefix, LIST_PAGE, |entries| -> Result<()> {
                young_keys.extend(
                    entries.iter().filter(|e| mtime(e) + grace > now && mtime(e) < opened).map(|e| e.key),
                );
                let old: Vec<ObjectKey> =
                    entries.iter().filter(|e| mtime(e) + grace <= now).map(|e| e.key).collect();
                let unnamed = self.unnamed(&old)?;
                if unnamed.is_empty() {
                    return Ok(());
                }
                // Checked again under the locks: a put may have named one since.
                let ids: Vec<ChunkId> = unnamed.iter().map(|k| k.id).collect();
                let _held = self.lock_stripes(&ids)?;
                let orphans = self.unnamed(&unnamed)?;
                n += self.objects().delete_many(&orphans)? as u64;
                Ok(())
            })?;
        }
        let young_orphans = self.unnamed(&young_keys)?.len();
        Ok((n, young_orphans as u64))
    }

    /// The keys of `keys` that no row names.
    fn unnamed(&self, keys: &[ObjectKey]) -> Result<Vec<ObjectKey>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<ChunkId> = keys.iter().map(|k| k.id).collect();
        let rows = self.meta().chunk_rows(&ids)?;
        Ok(keys
            .iter()
            .zip(rows)
            .filter(|(k, row)| row.is_none_or(|r| r.generation != k.generation))
            .map(|(k, _)| *k)
            .collect())
    }
}
