//! Stores made before tenants existed (schema 1) are brought to schema 2 on
//! open: every file record belongs to `default` (records without a tenant
//! read as it) and gets its listing row and its chunks' committed rows, one
//! file per batch with its progress, so a crash resumes where it stopped.

use super::Store;
use super::error::Result;
use super::id::{ChunkId, FileId};
use super::meta::{Batch, Cf};
use super::record::FileState;
use super::tenant::{file_key, occurrences};

impl Store {
    /// Brings a store made before tenants (schema 1) to schema 2: every
    /// file record belongs to [`DEFAULT_TENANT`] (records without a tenant
    /// read as it), and gets its listing row and its chunks' committed rows.
    /// One file per batch, with the last file done, so a crash resumes.
    /// Segments a crashed commit or delete has not reached are counted as
    /// its resumption will count them.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub(super) fn migrate_tenants(&self) -> Result<u64> {
        const DONE: &[u8] = b"migrate/tenants";
        let m = self.meta();
        let from = m.get(Cf::Meta, DONE)?;
        let mut start = from.clone();
        if let Some(s) = start.as_mut() {
            s.push(0); // strictly after the last file done
        }
        let mut n = 0;
        let ids: Vec<FileId> = m
            .scan(Cf::Files, b"", start.as_deref())
            .filter_map(|kv| kv.ok())
            .filter_map(|(k, _)| FileId::from_slice(&k))
            .collect();
        for id in ids {
            let Some(rec) = self.record(&id)? else { continue };
            let nseg = rec.segments.len() as u32;
            let segs = match rec.state {
                FileState::Ready => 0..nseg,
                FileState::Committing { next } => 0..next,
                FileState::Deleting { next } => next..nseg,
            };
            let mut entries = Vec::new();
            for s in segs {
                entries.extend(self.segment(&id, s)?);
            }
            let counts = occurrences(&entries);
            let ids: Vec<ChunkId> = counts.keys().copied().collect();
            let mut held = self.lock_stripes(&ids)?;
            let mut b = Batch::default();
            self.tenant_refs(&mut b, &rec.tenant, &counts, 1)?;
            if !matches!(rec.state, FileState::Deleting { .. }) {
                b.put(Cf::Tenants, &file_key(&rec.tenant, &id), b"");
            }
            b.put(Cf::Meta, DONE, id.as_bytes());
            held.write(b, false)?;
            n += 1;
        }
        Ok(n)
    }
}
