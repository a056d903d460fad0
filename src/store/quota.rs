//! Quotas: per-tenant caps on committed bytes, on files, and on bytes held
//! by unfinished uploads ("pending").
//!
//! - Committed usage (files, logical bytes) is a pair of counters per
//!   tenant in [`Cf::Meta`] (`usage/files/` ‖ T, `usage/bytes/` ‖ T), changed
//!   in the very batch that adds a file (the single commit batch, or the
//!   first step of a commit in steps, which always runs to its end) or that
//!   hides it (the first step of a delete). They cannot drift from the
//!   records: `verify` recounts them.
//! - Pending usage is counted when asked, from the tenant's open upload
//!   sessions (each counts its declared length, or what it has received when
//!   the length is not known yet). It is checked when a session is created.
//! - A commit checks and counts under a per-tenant lock, so concurrent
//!   commits of one tenant cannot pass the cap together on this node.
//!
//! The quota itself is a row `q` ‖ T ‖ `/` in [`Cf::Tenants`] (JSON); no row
//! means no cap. Quotas count logical bytes (what the tenant's files
//! weigh), not what deduplication saved: a tenant cannot learn from its
//! quota what other tenants store.

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::meta::{Batch, Cf, LockSpace, Locked, decode_counter};
use super::name::Tenant;
use super::record::{FileRecord, FileState};
use super::session::UploadState;
use super::tenant::{self, bytes_key, files_key, tally};
use super::{Store, UploadRecord};

/// The quota row kind in [`Cf::Tenants`].
pub(super) const QUOTA: u8 = b'q';

/// A tenant's caps; `None` is no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Logical bytes of committed files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Committed files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    /// Bytes declared by (or received into) open upload sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<u64>,
}

impl Quota {
    pub fn is_unlimited(&self) -> bool {
        *self == Quota::default()
    }
}

/// What a tenant uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub files: u64,
    pub bytes: u64,
    pub pending: u64,
}

fn quota_key(t: &Tenant) -> Vec<u8> {
    tenant::prefix(QUOTA, t)
}

/// Marks a store whose usage counters have been counted from its records.
const COUNTED: &[u8] = b"usage/counted";

/// Whether a file record counts in its tenant's committed usage.
pub(super) fn counts(rec: &FileRecord) -> bool {
    matches!(rec.state, FileState::Ready | FileState::Committing { .. })
}

/// What an open session holds against its tenant's pending quota.
fn pending_of(rec: &UploadRecord) -> u64 {
    let received = rec.stream.as_ref().map_or(0, |s| s.offset);
    rec.size.max(received)
}

fn exceeded(t: &Tenant, what: &'static str, limit: u64, would_be: u64) -> Error {
    Error::QuotaExceeded { tenant: t.to_string(), what, limit, would_be }
}

impl Store {
    /// `t`'s quota (no caps when none was set).
    ///
    /// # Errors
    /// Metadata backend errors; [`Error::CorruptMetadata`] for an unreadable row.
    pub fn quota(&self, t: &Tenant) -> Result<Quota> {
        match self.meta().get(Cf::Tenants, &quota_key(t))? {
            None => Ok(Quota::default()),
            Some(v) => serde_json::from_slice(&v)
                .map_err(|e| Error::CorruptMetadata(format!("quota of tenant {t}: {e}"))),
        }
    }

    /// Sets `t`'s quota; one without caps removes it. Existing files stay
    /// when usage is above the new caps; new uploads are refused.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub fn set_quota(&self, t: &Tenant, q: &Quota) -> Result<()> {
        let mut b = Batch::default();
        if q.is_unlimited() {
            b.delete(Cf::Tenants, &quota_key(t));
        } else {
            let v = serde_json::to_vec(q).map_err(|e| Error::InvalidInput(e.to_string()))?;
            b.put(Cf::Tenants, &quota_key(t), &v);
        }
        self.meta().write(b, true)
    }

    /// Every tenant with a quota, in name order.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub fn quotas(&self) -> Result<Vec<(Tenant, Quota)>> {
        let mut out = Vec::new();
        for kv in self.meta().scan(Cf::Tenants, &[QUOTA], None) {
            let (k, v) = kv?;
            if let Some((QUOTA, t, _)) = tenant::split_key(&k) {
                let q = serde_json::from_slice(&v)
                    .map_err(|e| Error::CorruptMetadata(format!("quota of tenant {t}: {e}")))?;
                out.push((t, q));
            }
        }
        Ok(out)
    }

    /// What `t` uses now.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub fn usage(&self, t: &Tenant) -> Result<Usage> {
        let (files, bytes) = self.committed_usage(t)?;
        Ok(Usage { files, bytes, pending: self.pending_usage(t)? })
    }

    fn committed_usage(&self, t: &Tenant) -> Result<(u64, u64)> {
        let m = self.meta();
        let read = |k: Vec<u8>| -> Result<u64> {
            Ok(m.get(Cf::Meta, &k)?.map_or(0, |v| decode_counter(&v)).max(0) as u64)
        };
        Ok((read(files_key(t))?, read(bytes_key(t))?))
    }

    /// Bytes `t`'s open, unexpired sessions hold.
    fn pending_usage(&self, t: &Tenant) -> Result<u64> {
        let now = self.now_ms();
        let mut sum = 0u64;
        for kv in self.meta().scan(Cf::Uploads, b"r", None) {
            let (_, v) = kv?;
            let Ok(rec) = serde_json::from_slice::<UploadRecord>(&v) else { continue };
            if rec.tenant == *t && rec.state == UploadState::Open && rec.expires_ms > now {
                sum = sum.saturating_add(pending_of(&rec));
            }
        }
        Ok(sum)
    }

    /// Whether `t` may open an upload session of `declared` bytes (unknown
    /// yet: `None`): it must fit the pending cap beside the other open
    /// sessions, and the bytes cap beside the committed files and those
    /// sessions, and one more file must fit the files cap.
    ///
    /// # Errors
    /// [`Error::QuotaExceeded`] naming the cap; metadata backend errors.
    pub fn admit_upload(&self, t: &Tenant, declared: Option<u64>) -> Result<()> {
        let q = self.quota(t)?;
        if q.is_unlimited() {
            return Ok(());
        }
        let (files, bytes) = self.committed_usage(t)?;
        if let Some(max) = q.files {
            if files + 1 > max {
                return Err(exceeded(t, "files", max, files + 1));
            }
        }
        let declared = declared.unwrap_or(0);
        let pending = if q.pending.is_some() || q.bytes.is_some() { self.pending_usage(t)? } else { 0 };
        if let Some(max) = q.pending {
            let would_be = pending.saturating_add(declared);
            if would_be > max {
                return Err(exceeded(t, "pending bytes", max, would_be));
            }
        }
        if let Some(max) = q.bytes {
            let would_be = bytes.saturating_add(pending).saturating_add(declared);
            if would_be > max {
                return Err(exceeded(t, "bytes", max, would_be));
            }
        }
        Ok(())
    }

    /// How many more bytes a stream of `t` may receive before it could not
    /// be committed under the bytes cap (`None`: no cap).
    ///
    /// # Errors
    /// Metadata backend errors.
    pub fn room(&self, t: &Tenant) -> Result<Option<u64>> {
        let Some(max) = self.quota(t)?.bytes else { return Ok(None) };
        let (_, bytes) = self.committed_usage(t)?;
        Ok(Some(max.saturating_sub(bytes)))
    }

    /// Whether `t` may send a chunk of `len` bytes: not when it is longer
    /// than what the bytes cap leaves, since no file holding it could then
    /// be committed.
    ///
    /// # Errors
    /// [`Error::QuotaExceeded`]; metadata backend errors.
    pub fn admit_chunk(&self, t: &Tenant, len: u64) -> Result<()> {
        match self.room(t)? {
            Some(room) if len > room => Err(self.room_exceeded(t, len)),
            _ => Ok(()),
        }
    }

    /// The error for a stream of `t` that passed `room` by reaching `got`.
    pub(super) fn room_exceeded(&self, t: &Tenant, got: u64) -> Error {
        let max = self.quota(t).ok().and_then(|q| q.bytes).unwrap_or(0);
        let used = self.committed_usage(t).map(|u| u.1).unwrap_or(0);
        exceeded(t, "bytes", max, used.saturating_add(got))
    }

    /// Checks that a file of `size` bytes fits `t`'s caps and counts it
    /// into `batch`, taking `t`'s quota lock into `held`: write the batch
    /// through `held` (the check and the count then land together, on any
    /// node).
    ///
    /// # Errors
    /// [`Error::QuotaExceeded`]; metadata backend errors.
    pub(super) fn admit_commit(
        &self,
        held: &mut Locked<'_>,
        batch: &mut Batch,
        t: &Tenant,
        size: u64,
    ) -> Result<()> {
        // By a hash every version and node agrees on (std's may change).
        let key =
            u16::from(blake3::hash(t.as_str().as_bytes()).as_bytes()[0]) % LockSpace::Quotas.size() as u16;
        held.take(LockSpace::Quotas, [key])?;
        let q = self.quota(t)?;
        if !q.is_unlimited() {
            let (files, bytes) = self.committed_usage(t)?;
            if let Some(max) = q.files.filter(|max| files + 1 > *max) {
                return Err(exceeded(t, "files", max, files + 1));
            }
            if let Some(max) = q.bytes.filter(|max| bytes.saturating_add(size) > *max) {
                return Err(exceeded(t, "bytes", max, bytes.saturating_add(size)));
            }
        }
        tally(batch, t, 1, size as i64);
        Ok(())
    }

    /// Counts the usage counters from the file records, once per store
    /// (stores made before quotas, and any store on its first open).
    ///
    /// # Errors
    /// Metadata backend errors.
    pub(super) fn count_usage_once(&self) -> Result<()> {
        let m = self.meta();
        if m.get(Cf::Meta, COUNTED)?.is_some() {
            return Ok(());
        }
        let mut b = Batch::default();
        for (t, (files, bytes)) in self.count_usage()? {
            b.put(Cf::Meta, &files_key(&t), &(files as i64).to_le_bytes());
            b.put(Cf::Meta, &bytes_key(&t), &(bytes as i64).to_le_bytes());
        }
        b.put(Cf::Meta, COUNTED, b"1");
        m.write(b, true)
    }

    /// Files and bytes per tenant, from the records.
    pub(super) fn count_usage(&self) -> Result<std::collections::BTreeMap<Tenant, (u64, u64)>> {
        let mut per = std::collections::BTreeMap::<Tenant, (u64, u64)>::new();
        for kv in self.meta().scan(Cf::Files, b"", None) {
            let (_, v) = kv?;
            let Ok(rec) = serde_json::from_slice::<FileRecord>(&v) else { continue };
            if counts(&rec) {
                let e = per.entry(rec.tenant).or_default();
                e.0 += 1;
                e.1 += rec.size;
            }
        }
        Ok(per)
    }

    /// The usage counters as stored, per tenant (for `verify`).
    pub(super) fn usage_counters(&self) -> Result<std::collections::BTreeMap<Tenant, (i64, i64)>> {
        let mut per = std::collections::BTreeMap::<Tenant, (i64, i64)>::new();
        for (prefix, files) in [(b"usage/files/".as_slice(), true), (b"usage/bytes/".as_slice(), false)] {
            for kv in self.meta().scan(Cf::Meta, prefix, None) {
                let (k, v) = kv?;
                let Some(t) =
                    std::str::from_utf8(&k[prefix.len()..]).ok().and_then(|s| Tenant::parse(s).ok())
                else {
                    continue;
                };
                let e = per.entry(t).or_default();
                if files {
                    e.0 = decode_counter(&v);
                } else {
                    e.1 = decode_counter(&v);
                }
            }
        }
        Ok(per)
    }
}
