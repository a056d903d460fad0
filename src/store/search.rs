//! Finding files by name. There is no name index: a search walks the file
//! records newest first from the cursor, skipping those that do not match,
//! so its cost is the number of records between two matches. Names are
//! compared as stored (after sanitising), exactly or as a substring
//! ignoring case.

use super::Store;
use super::error::{Error, Result};
use super::files::{FileRecord, FileState};
use super::id::FileId;
use super::meta::Cf;
use super::tenant::View;

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
        if filters.is_empty() {
            return self.list_files(view, cursor, limit);
        }
        let mut out: Vec<FileRecord> = Vec::new();
        if let View::Tenant(t) = view {
            // Walk the tenant's own index, never other tenants' records.
            let mut at = cursor.copied();
            loop {
                let (page, next) = self.list_tenant_files(t, at.as_ref(), 256)?;
                for rec in page {
                    if !filters.iter().all(|f| f.matches(&rec.name)) {
                        continue;
                    }
                    if out.len() == limit {
                        let next = out.last().map(|r| r.id);
                        return Ok((out, next));
                    }
                    out.push(rec);
                }
                match next {
                    Some(n) => at = Some(n),
                    None => return Ok((out, None)),
                }
            }
        }
        let before = cursor.map(|c| c.0);
        for kv in self.meta().scan_rev(Cf::Files, b"", before.as_ref().map(|b| &b[..])) {
            let (_, v) = kv?;
            let rec: FileRecord = serde_json::from_slice(&v)
                .map_err(|e| Error::CorruptMetadata(format!("file record: {e}")))?;
            if rec.state != FileState::Ready
                || !view.sees(&rec.tenant)
                || !filters.iter().all(|f| f.matches(&rec.name))
            {
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
