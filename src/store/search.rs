//! Listing files (all, or one tenant's by its index) and finding them by
//! name; a tenant's figures. There is no name index: a search walks the file
//! records newest first from the cursor, skipping those that do not match,
//! so its cost is the number of records between two matches. Names are
//! compared as stored (after sanitising), exactly or as a substring
//! ignoring case.

use super::error::{Error, Result};
use super::id::{ChunkId, FileId};
use super::meta::Cf;
use super::name::{Tenant, View};
use super::record::{FileRecord, FileState};
use super::tenant::{FILES, REFS, file_key, prefix};
use super::{Stats, Store};

/// Which names a search keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameFilter {
    /// The name equals this, byte for byte.
    Exact(String),
    /// The name contains this, ignoring ASCII and Unicode case.
    Contains(String),
}

impl NameFilter {
    /// A substring filter, folded once.
    pub fn contains(needle: &str) -> Self {
        NameFilter::Contains(needle.to_lowercase())
    }

    /// Whether `name` passes.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            NameFilter::Exact(n) => name == n,
            NameFilter::Contains(n) => name.to_lowercase().contains(n.as_str()),
        }
    }
}

impl Store {
    /// Visible files `view` may see, newest first, after `cursor` (the last
    /// id of the previous page). Returns the page and the cursor of the
    /// next, if any.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub fn list_files(
        &self,
        view: &View,
        cursor: Option<&FileId>,
        limit: usize,
    ) -> Result<(Vec<FileRecord>, Option<FileId>)> {
        self.find_files(view, &[], cursor, limit)
    }

    /// `t`'s visible files, newest first, after `cursor`, at most `limit`;
    /// with the cursor of the next page.
    pub(super) fn list_tenant_files(
        &self,
        t: &Tenant,
        cursor: Option<&FileId>,
        limit: usize,
    ) -> Result<(Vec<FileRecord>, Option<FileId>)> {
        self.find_files(&View::Tenant(t.clone()), &[], cursor, limit)
    }

    /// One tenant's figures: its files and logical bytes, and the chunks its
    /// files use (each counted once within the tenant, whatever other
    /// tenants hold: nothing here reflects global uniqueness). Costs a walk
    /// of the tenant's index rows.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub fn tenant_stats(&self, t: &Tenant) -> Result<Stats> {
        let (mut files, mut logical) = (0u64, 0u64);
        let mut cursor = None;
        loop {
            let (page, next) = self.list_tenant_files(t, cursor.as_ref(), 1000)?;
            files += page.len() as u64;
            logical += page.iter().map(|r| r.size).sum::<u64>();
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        let (mut chunks, mut unique, mut stored) = (0u64, 0u64, 0u64);
        let p = prefix(REFS, t);
        let mut ids = Vec::new();
        let mut tally = |ids: &mut Vec<ChunkId>| -> Result<()> {
            for row in self.meta().chunk_rows(ids)?.into_iter().flatten() {
                chunks += 1;
                unique += u64::from(row.raw_len);
                stored += u64::from(row.stored_len);
            }
            ids.clear();
            Ok(())
        };
        for kv in self.meta().scan(Cf::Tenants, &p, None) {
            let (k, _) = kv?;
            if let Some(id) = k.get(p.len()..).and_then(ChunkId::from_slice) {
                ids.push(id);
            }
            if ids.len() == 4096 {
                tally(&mut ids)?;
            }
        }
        tally(&mut ids)?;
        Ok(Stats::new(files, logical, chunks, unique, stored))
    }

    /// Visible files whose name passes every filter, newest first, after
    /// `cursor` (the last id of the previous page). Returns the page and the
    /// cursor of the next, if any. With no filters this is
    /// [`Store::list_files`].
    ///
    /// # Errors
    /// Metadata backend errors.
    pub fn find_files(
        &self,
        view: &View,
        filters: &[NameFilter],
        cursor: Option<&FileId>,
        limit: usize,
    ) -> Result<(Vec<FileRecord>, Option<FileId>)> {
        let keep = |r: &FileRecord| r.state == FileState::Ready && filters.iter().all(|f| f.matches(&r.name));
        if let View::Tenant(t) = view {
            // The tenant's own index, never other tenants' records.
            let p = prefix(FILES, t);
            let before = cursor.map(|c| file_key(t, c));
            let records = self.meta().scan_rev(Cf::Tenants, &p, before.as_deref()).filter_map(|kv| {
                let id = match kv {
                    Ok((k, _)) => FileId::from_slice(k.get(p.len()..)?)?,
                    Err(e) => return Some(Err(e)),
                };
                self.record(&id).transpose()
            });
            return page(records, keep, limit);
        }
        let before = cursor.map(|c| c.0);
        let records = self.meta().scan_rev(Cf::Files, b"", before.as_ref().map(|b| &b[..])).map(|kv| {
            serde_json::from_slice::<FileRecord>(&kv?.1)
                .map_err(|e| Error::CorruptMetadata(format!("file record: {e}")))
        });
        page(records, keep, limit)
    }
}

/// The first `limit` records `keep` takes, and the cursor of the next page
/// (the last id taken) when there is more.
fn page(
    records: impl Iterator<Item = Result<FileRecord>>,
    keep: impl Fn(&FileRecord) -> bool,
    limit: usize,
) -> Result<(Vec<FileRecord>, Option<FileId>)> {
    let mut out: Vec<FileRecord> = Vec::new();
    for rec in records {
        let rec = rec?;
        if !keep(&rec) {
            continue;
        }
        if out.len() == limit {
            let next = out.last().map(|r| r.id);
            return Ok((out, next));
        }
        out.push(rec);
    }
    Ok((out, None))
}

#[cfg(test)]
mod tests {
    use super::NameFilter;

    #[test]
    fn filters_match() {
        assert!(NameFilter::Exact("a.txt".into()).matches("a.txt"));
        assert!(!NameFilter::Exact("a.txt".into()).matches("A.txt"));
        assert!(NameFilter::contains("REP").matches("final report.pdf"));
        assert!(NameFilter::contains("ü").matches("MÜNCHEN.txt"));
        assert!(!NameFilter::contains("x").matches("abc"));
    }
}
