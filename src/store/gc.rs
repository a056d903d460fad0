//! Garbage collection. Work is proportional to the garbage: chunks that may
//! become garbage wait in the `gcq` family keyed by the time they become
//! eligible, so a run reads only what is due.
//!
//! A chunk is deleted only when, under its stripe lock, its refcount is zero,
//! its grace period since reaching zero has passed, and no upload's lease
//! pins it. Deletion is restartable: the row is marked `Deleting` (synced),
//! the object unlinked, then the row dropped; a crash in between is finished
//! by the next run. Objects go in `delete_many` calls of up to 1,000. The
//! orphan sweep (objects with no row, which a crash between object write and
//! row write can leave) pages through the object listing and so is
//! proportional to the store: it runs on demand and after an unclean
//! shutdown.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use super::meta::{self, Batch, Cf, ChunkState, Counter};
use super::objects::{self, ObjectEntry};
use super::{ChunkId, Result, Store, object};

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
}

const ROUND: usize = 1024;
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
        let mut report = GcReport {
            finished_deletes: self.resume_pending()? as u64,
            expired_uploads: self.reap_uploads()?,
            expired_tenant_leases: self.reap_tenant_leases()?,
            ..Default::default()
        };
        loop {
            let now = self.now_ms();
            let due: Vec<(Box<[u8]>, ChunkId)> = self
                .meta()
                .scan(Cf::Gcq, b"", None)
                .take(ROUND)
                .filter_map(|kv| kv.ok())
                .take_while(|(k, _)| {
                    k.len() == 40 && u64::from_be_bytes(k[..8].try_into().unwrap_or_default()) <= now
                })
                .filter_map(|(k, _)| ChunkId::from_slice(&k[8..]).map(|id| (k, id)))
                .collect();
            if due.is_empty() {
                break;
            }
            self.collect_round(&due, now, &mut report)?;
            if due.len() < ROUND {
                break;
            }
        }
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

    fn collect_round(&self, due: &[(Box<[u8]>, ChunkId)], now: u64, report: &mut GcReport) -> Result<()> {
        let m = self.meta();
        let mut keys: HashMap<ChunkId, Vec<&[u8]>> = HashMap::new();
        for (k, id) in due {
            keys.entry(*id).or_default().push(k);
        }
        let ids: Vec<ChunkId> = keys.keys().copied().collect();
        let _guards = self.lock_stripes(&ids);
        let rows = m.chunk_rows(&ids)?;
        let grace = self.grace_ms();
        let mut mark = Batch::default();
        let mut doomed = Vec::new();
        for (id, row) in ids.iter().zip(rows) {
            for k in &keys[id] {
                mark.delete(Cf::Gcq, k);
            }
            let Some(mut r) = row else { continue };
            if r.refcount > 0 {
                continue;
            }
            match r.state {
                ChunkState::Zero => {
                    let eligible = (r.zero_since + grace).max(r.lease_until);
                    if eligible > now {
                        mark.put(Cf::Gcq, &meta::gcq_key(eligible, id), b"");
                        report.requeued += 1;
                        continue;
                    }
                    r.state = ChunkState::Deleting;
                    mark.put(Cf::Chunks, id.as_bytes(), &r.encode());
                    doomed.push((*id, r));
                }
                ChunkState::Deleting | ChunkState::Damaged => doomed.push((*id, r)),
                ChunkState::Live => {}
            }
        }
        // A doomed row keeps a queue entry until its row is dropped: a crash
        // between this batch and the drop leaves it where the next run
        // looks, never stranded in `Deleting`.
        for (id, _) in &doomed {
            mark.put(Cf::Gcq, &meta::gcq_key(now, id), b"");
        }
        m.write(mark, true)?;
        // A missing object counts as deleted (a crash after the unlink).
        let doomed_ids: Vec<ChunkId> = doomed.iter().map(|(id, _)| *id).collect();
        for page in doomed_ids.chunks(DELETE_PAGE) {
            self.objects().delete_many(page)?;
        }
        let mut drop = Batch::default();
        for (id, r) in &doomed {
            drop.delete(Cf::Gcq, &meta::gcq_key(now, id));
            drop.delete(Cf::Chunks, id.as_bytes());
            drop.add(Counter::UniqueChunks, -1);
            drop.add(Counter::UniqueBytes, -i64::from(r.raw_len));
            drop.add(Counter::StoredBytes, -(i64::from(r.stored_len) + object::HEADER_LEN as i64));
            report.deleted_chunks += 1;
            report.freed_bytes += u64::from(r.raw_len);
        }
        m.write(drop, false)
    }

    /// Deletes objects that have no row, once older than the grace period.
    /// Removes `uploads/<id>` directories older than `age` whose session
    /// has no record. Sessions write their directory before their record,
    /// so a young one may be a creation in flight: it is left alone.
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
            let lock_arc = self.session_lock(&id);
            let _g = super::lock(&lock_arc);
            if self.upload(&id)?.is_none() {
                std::fs::remove_dir_all(e.path())?;
                n += 1;
            }
            drop(_g);
            super::lock(&self.0.sessions).remove(&id);
        }
        Ok(n)
    }

    /// Deletes orphan objects older than the grace period. Returns how many
    /// went, and how many orphans from before this process opened the store
    /// (a crash's leftovers) are still too young to go: while there are
    /// any, the sweep stays due.
    fn sweep_orphans(&self) -> Result<(u64, u64)> {
        let now = self.now_ms();
        let grace = self.grace_ms();
        let opened = self.opened_ms();
        let mut n = 0;
        let mut young_ids = Vec::new();
        let mtime = |e: &ObjectEntry| {
            e.modified.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
        };
        for prefix in 0..=255u8 {
            objects::for_each_page(self.objects().as_ref(), prefix, LIST_PAGE, |entries| -> Result<()> {
                young_ids.extend(
                    entries.iter().filter(|e| mtime(e) + grace > now && mtime(e) < opened).map(|e| e.id),
                );
                let old: Vec<ChunkId> =
                    entries.iter().filter(|e| mtime(e) + grace <= now).map(|e| e.id).collect();
                if old.is_empty() {
                    return Ok(());
                }
                let rows = self.meta().chunk_rows(&old)?;
                let unnamed: Vec<ChunkId> =
                    old.iter().zip(rows).filter(|(_, row)| row.is_none()).map(|(id, _)| *id).collect();
                if unnamed.is_empty() {
                    return Ok(());
                }
                // Checked again under the locks: a put may have named one since.
                let _g = self.lock_stripes(&unnamed);
                let rows = self.meta().chunk_rows(&unnamed)?;
                let orphans: Vec<ChunkId> =
                    unnamed.iter().zip(rows).filter(|(_, row)| row.is_none()).map(|(id, _)| *id).collect();
                n += self.objects().delete_many(&orphans)? as u64;
                Ok(())
            })?;
        }
        let young_orphans = self.meta().chunk_rows(&young_ids)?.iter().filter(|r| r.is_none()).count();
        Ok((n, young_orphans as u64))
    }
}
