//! What GC has not collected yet, and when it will: the chunks no file
//! uses that wait for their grace period or an upload's lease. `depot gc`
//! reports it, so that a run that frees nothing says why. Read-only; the
//! work is proportional to the queue, like GC itself.

use std::collections::HashSet;

use serde::Serialize;

use super::id::ChunkId;
use super::meta::{Cf, ChunkState};
use super::{Result, Store};

/// Unreferenced chunks still on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcBacklog {
    /// Chunks no file uses, kept by their grace period or a lease.
    pub chunks: u64,
    /// Their raw bytes.
    pub bytes: u64,
    /// Unix ms when the first of them may go (GC takes it at its next run
    /// after that).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_due_ms: Option<u64>,
    /// Unix ms when the last of them may go.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_due_ms: Option<u64>,
}

impl Store {
    /// The chunks queued for GC that no file uses, and when they become
    /// eligible: `max(zero_since + gc.grace, lease_until)` from each row.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub fn gc_backlog(&self) -> Result<GcBacklog> {
        let grace = self.grace_ms();
        let mut seen = HashSet::new();
        let mut out = GcBacklog::default();
        for kv in self.meta().scan(Cf::Gcq, b"", None) {
            let (k, _) = kv?;
            let Some(id) = k.get(8..).and_then(ChunkId::from_slice) else { continue };
            if !seen.insert(id) {
                continue;
            }
            let Some(row) = self.meta().chunk_row(&id)? else { continue };
            if row.refcount != 0 || row.state != ChunkState::Zero {
                continue;
            }
            let due = (row.zero_since + grace).max(row.lease_until);
            out.chunks += 1;
            out.bytes += u64::from(row.raw_len);
            out.first_due_ms = Some(out.first_due_ms.map_or(due, |d| d.min(due)));
            out.last_due_ms = Some(out.last_due_ms.map_or(due, |d| d.max(due)));
        }
        Ok(out)
    }
}
