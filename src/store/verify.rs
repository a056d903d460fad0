//! `verify`: the store checked against itself. Every object: name, header,
//! CRCs, length, decompression, BLAKE3. Every row: an object behind it, the
//! one of the row's generation (an object of another generation is an
//! orphan). A `Writing` row may lack its object (a writer is PUTting it).
//! On a store with pack files, each pack is scanned from its start and its
//! records checked the same way; a record no row names is dead bytes, not
//! an orphan. Every manifest: decodes, adds up, names chunks that exist. Refcounts are
//! recomputed from the manifests and compared; so are the counters (each
//! pack's live bytes too, against the rows that name its records). With
//! `repair`, corrupt objects are moved aside and their rows marked damaged
//! (reported missing, so the next upload of that content heals them),
//! refcounts and counters are rewritten.
//!
//! The recount keeps one map entry per chunk in memory (~48 bytes each).

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::compact::live_in_pack;
use super::meta::{self, Batch, Cf, ChunkRow, ChunkState, Counter};
use super::name::Tenant;
use super::objects::{self, ObjectKey};
use super::quota;
use super::tenant;
use super::{ChunkId, FileId, FileRecord, FileState, Result, Store, manifest, object};

/// Objects per listing page.
const LIST_PAGE: usize = 1000;

/// What verify found (and, with repair, fixed).
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub objects: u64,
    pub object_bytes: u64,
    pub rows: u64,
    pub files: u64,
    /// Objects that a row names and that failed a check, with the reason:
    /// damage to acknowledged data.
    pub corrupt_objects: Vec<(ChunkId, String)>,
    /// Objects that failed a check but that no row names: writes a crash
    /// cut before they were acknowledged. Orphans for GC to sweep, not
    /// damage; counted in `orphan_objects` too.
    pub corrupt_orphans: Vec<(ChunkId, String)>,
    /// Rows whose object is missing.
    pub missing_objects: Vec<ChunkId>,
    /// Objects with no row (GC sweeps them after the grace period).
    pub orphan_objects: u64,
    /// Files whose manifest is broken, with the reason.
    pub bad_files: Vec<(String, String)>,
    /// (chunk, refcount in its row, references in manifests).
    pub refcount_mismatches: Vec<(ChunkId, u64, u64)>,
    /// (counter, stored value, recomputed value).
    pub counter_mismatches: Vec<(String, i64, i64)>,
    /// Tenant rows (listing index, committed chunks) that disagree with the
    /// file records and manifests: what a tenant may see would be wrong.
    pub tenant_row_mismatches: u64,
    /// Rows left mid-delete by a crash (GC finishes them).
    pub deleting_rows: u64,
    /// Rows a writer has claimed and not flipped yet (a put in flight, or
    /// one a crash cut: GC reaps it at its deadline).
    pub writing_rows: u64,
    /// Of the `Deleting` and `Writing` rows, those with no GC queue entry:
    /// no GC run would ever find them (a crash between GC's steps on
    /// versions before the queue entry was kept). A finding; `--repair`
    /// queues them so the next GC finishes them.
    pub stranded_deleting: Vec<ChunkId>,
    /// Rows marked damaged, awaiting a re-upload.
    pub damaged_rows: u64,
    pub repaired: bool,
}

impl VerifyReport {
    /// Nothing wrong with what was acknowledged: every object a row names
    /// is sound and every mid-delete row is queued for GC (orphans, corrupt
    /// or not, queued mid-delete rows and already-marked damage aside, which
    /// GC or a re-upload resolve).
    pub fn is_clean(&self) -> bool {
        self.corrupt_objects.is_empty()
            && self.missing_objects.is_empty()
            && self.bad_files.is_empty()
            && self.refcount_mismatches.is_empty()
            && self.tenant_row_mismatches == 0
            && self.counter_mismatches.is_empty()
            && self.stranded_deleting.is_empty()
    }
}

impl Store {
    /// Checks everything; with `repair`, fixes what can be fixed.
    ///
    /// # Errors
    /// Metadata backend and I/O errors (findings are in the report, not errors).
    pub fn verify(&self, repair: bool) -> Result<VerifyReport> {
        let mut rep = VerifyReport { repaired: repair, ..Default::default() };
        let m = self.meta();
        let max = self.options().max_object_size as usize;

        // Objects.
        let mut present: HashSet<ObjectKey> = HashSet::new();
        let mut corrupt: HashMap<ObjectKey, String> = HashMap::new();
        for prefix in 0..=255u8 {
            objects::for_each_page(self.objects().as_ref(), prefix, LIST_PAGE, |page| -> Result<()> {
                for e in page {
                    rep.objects += 1;
                    rep.object_bytes += e.len;
                    let bad = match self.objects().get(&e.key)? {
                        None => continue,
                        Some(enc) => match object::decode(&enc, max, true) {
                            Ok((h, _)) if h.id == e.key.id => None,
                            Ok(_) => Some("object holds another chunk".to_string()),
                            Err(err) => Some(err.0.to_string()),
                        },
                    };
                    match bad {
                        None => {
                            present.insert(e.key);
                        }
                        Some(reason) => {
                            corrupt.insert(e.key, reason);
                        }
                    }
                }
                Ok(())
            })?;
        }

        // Pack files: every record, by a scan of each pack from its start.
        if let Some(packs) = self.objects().packs() {
            for p in packs.list()? {
                packs.scan(p.number, |at, rec| -> Result<()> {
                    let Ok(h) = object::Header::decode(rec) else { return Ok(()) };
                    let key = ObjectKey::new(h.id, at);
                    rep.objects += 1;
                    rep.object_bytes += rec.len() as u64;
                    match object::decode(rec, max, true) {
                        Ok((d, _)) if d.id == h.id => {
                            present.insert(key);
                        }
                        Ok(_) => {
                            corrupt.insert(key, "object holds another chunk".to_string());
                        }
                        Err(err) => {
                            corrupt.insert(key, err.0.to_string());
                        }
                    }
                    Ok(())
                })?;
            }
        }
        // A record in a pack that no row names is dead bytes (compaction
        // reclaims them), not an orphan.
        let packed = self.objects().packs().is_some();
        let dead = |k: &ObjectKey| packed && k.generation != 0;

        // Manifests: recount references.
        let mut refs: HashMap<ChunkId, u64> = HashMap::new();
        let mut trefs: HashMap<(Tenant, ChunkId), u64> = HashMap::new();
        let mut listed: HashSet<(Tenant, FileId)> = HashSet::new();
        let (mut files, mut logical) = (0i64, 0i64);
        // Each tenant's files and bytes, as its usage counters should say.
        let mut usage: std::collections::BTreeMap<Tenant, (u64, u64)> = Default::default();
        for kv in m.scan(Cf::Files, b"", None) {
            let (k, v) = kv?;
            rep.files += 1;
            let rec: FileRecord = match serde_json::from_slice(&v) {
                Ok(r) => r,
                Err(e) => {
                    rep.bad_files.push((format!("{k:02x?}"), format!("record: {e}")));
                    continue;
                }
            };
            if quota::counts(&rec) {
                let u = usage.entry(rec.tenant.clone()).or_default();
                u.0 += 1;
                u.1 += rec.size;
            }
            if rec.state == FileState::Ready {
                files += 1;
                logical += rec.size as i64;
                listed.insert((rec.tenant.clone(), rec.id));
            }
            if let Err(reason) = self.check_manifest(&rec, &mut refs, &mut trefs) {
                rep.bad_files.push((rec.id.to_string(), reason));
            }
        }

        // Chunks the GC queue names, to find mid-delete rows it would miss.
        let mut queued: HashSet<ChunkId> = HashSet::new();
        for kv in m.scan(Cf::Gcq, b"", None) {
            let (k, _) = kv?;
            if let Some(id) = k.get(8..).and_then(ChunkId::from_slice) {
                queued.insert(id);
            }
        }

        // Rows.
        let mut fix = Batch::default();
        let (mut chunks, mut unique, mut stored) = (0i64, 0i64, 0i64);
        let mut rows_seen: HashSet<ChunkId> = HashSet::new();
        // The object key each row names.
        let mut named: HashSet<ObjectKey> = HashSet::new();
        // Each pack's live bytes, as its counter should say.
        let mut live: HashMap<u32, i64> = HashMap::new();
        let now = self.now_ms();
        for kv in m.scan(Cf::Chunks, b"", None) {
            let (k, v) = kv?;
            let Some(id) = ChunkId::from_slice(&k) else { continue };
            let Ok(mut row) = ChunkRow::decode(&v) else {
                rep.bad_files.push((id.to_string(), "undecodable chunk row".into()));
                continue;
            };
            rep.rows += 1;
            rows_seen.insert(id);
            let key = ObjectKey::new(id, row.generation);
            named.insert(key);
            if let Some((pack, n)) = live_in_pack(&row).filter(|_| packed) {
                *live.entry(pack).or_default() += n;
            }
            chunks += 1;
            unique += i64::from(row.raw_len);
            stored += i64::from(row.stored_len) + object::HEADER_LEN as i64;
            let mut changed = false;
            match row.state {
                ChunkState::Deleting | ChunkState::Writing => {
                    if row.state == ChunkState::Deleting {
                        rep.deleting_rows += 1;
                    } else {
                        rep.writing_rows += 1;
                    }
                    if !queued.contains(&id) {
                        rep.stranded_deleting.push(id);
                        fix.put(Cf::Gcq, &meta::gcq_key(now, &id), b"");
                    }
                }
                ChunkState::Damaged => rep.damaged_rows += 1,
                _ if !present.contains(&key) => {
                    if !corrupt.contains_key(&key) {
                        rep.missing_objects.push(id);
                    }
                    row.state = ChunkState::Damaged;
                    changed = true;
                }
                _ => {}
            }
            let actual = refs.get(&id).copied().unwrap_or(0);
            if row.refcount != actual {
                rep.refcount_mismatches.push((id, row.refcount, actual));
                row.refcount = actual;
                if actual == 0 && row.state == ChunkState::Live {
                    row.state = ChunkState::Zero;
                    row.zero_since = now;
                    fix.put(Cf::Gcq, &meta::gcq_key(now + self.grace_ms(), &id), b"");
                } else if actual > 0 && row.state == ChunkState::Zero {
                    row.state = ChunkState::Live;
                }
                changed = true;
            }
            if changed {
                fix.put(Cf::Chunks, id.as_bytes(), &row.encode());
            }
        }
        // A corrupt object is damage only when a row names it; one that no
        // row names was never acknowledged (a crash cut its write).
        let mut corrupt: Vec<(ObjectKey, String)> = corrupt.into_iter().collect();
        corrupt.sort();
        for (key, reason) in corrupt {
            if named.contains(&key) {
                if repair {
                    self.objects().quarantine(&key)?;
                }
                rep.corrupt_objects.push((key.id, reason));
            } else if !dead(&key) {
                rep.corrupt_orphans.push((key.id, reason));
            }
        }
        rep.orphan_objects = present.iter().filter(|k| !named.contains(k) && !dead(k)).count() as u64
            + rep.corrupt_orphans.len() as u64;
        for id in refs.keys() {
            if !rows_seen.contains(id) {
                rep.bad_files.push((id.to_string(), "referenced chunk has no row".into()));
            }
        }

        // Tenant rows: what each tenant may list and reference.
        for kv in m.scan(Cf::Tenants, b"", None) {
            let (k, v) = kv?;
            match tenant::split_key(&k) {
                Some((b'f', t, id)) => {
                    let ok = FileId::from_slice(id).is_some_and(|id| listed.remove(&(t, id)));
                    if !ok {
                        rep.tenant_row_mismatches += 1;
                        fix.delete(Cf::Tenants, &k);
                    }
                }
                Some((b'c', t, id)) => {
                    let want = ChunkId::from_slice(id).and_then(|id| trefs.remove(&(t, id))).unwrap_or(0);
                    if want != tenant::count_of(&v) {
                        rep.tenant_row_mismatches += 1;
                        if want == 0 {
                            fix.delete(Cf::Tenants, &k);
                        } else {
                            fix.put(Cf::Tenants, &k, &want.to_le_bytes());
                        }
                    }
                }
                Some((b'l' | quota::QUOTA, ..)) => {}
                _ => {
                    rep.tenant_row_mismatches += 1;
                    fix.delete(Cf::Tenants, &k);
                }
            }
        }
        for (t, id) in listed {
            rep.tenant_row_mismatches += 1;
            fix.put(Cf::Tenants, &tenant::file_key(&t, &id), b"");
        }
        for ((t, id), n) in trefs {
            rep.tenant_row_mismatches += 1;
            fix.put(Cf::Tenants, &tenant::ref_key(&t, &id), &n.to_le_bytes());
        }

        // Counters.
        for (c, want) in [
            (Counter::Files, files),
            (Counter::LogicalBytes, logical),
            (Counter::UniqueChunks, chunks),
            (Counter::UniqueBytes, unique),
            (Counter::StoredBytes, stored),
        ] {
            let have = m.counter(c)?;
            if have != want {
                rep.counter_mismatches.push((format!("{c:?}"), have, want));
                fix.set_counter(c, want);
            }
        }
        // Each pack's live bytes against the rows that name its records.
        for kv in m.scan(Cf::Meta, meta::PACK_LIVE_PREFIX, None) {
            let (k, v) = kv?;
            let Some(pack) = meta::pack_in_key(&k) else { continue };
            let (have, want) = (meta::decode_counter(&v), live.remove(&pack).unwrap_or(0));
            if have != want {
                rep.counter_mismatches.push((format!("pack/live/{pack}"), have, want));
                fix.set_at(&k, want);
            }
        }
        for (pack, want) in live {
            rep.counter_mismatches.push((format!("pack/live/{pack}"), 0, want));
            fix.set_at(&meta::pack_live_key(pack), want);
        }
        // Each tenant's usage counters against its records.
        let mut want = usage;
        for (t, (files, bytes)) in self.usage_counters()? {
            let (wf, wb) = want.remove(&t).unwrap_or_default();
            for (name, have, want, key) in [
                ("files", files, wf as i64, tenant::files_key(&t)),
                ("bytes", bytes, wb as i64, tenant::bytes_key(&t)),
            ] {
                if have != want {
                    rep.counter_mismatches.push((format!("usage/{name}/{t}"), have, want));
                    fix.put(Cf::Meta, &key, &want.to_le_bytes());
                }
            }
        }
        for (t, (files, bytes)) in want {
            rep.counter_mismatches.push((format!("usage/files/{t}"), 0, files as i64));
            rep.counter_mismatches.push((format!("usage/bytes/{t}"), 0, bytes as i64));
            fix.put(Cf::Meta, &tenant::files_key(&t), &(files as i64).to_le_bytes());
            fix.put(Cf::Meta, &tenant::bytes_key(&t), &(bytes as i64).to_le_bytes());
        }
        if repair {
            m.write(fix, true)?;
        }
        Ok(rep)
    }

    /// Checks one file's manifest and adds its live references to `refs`.
    fn check_manifest(
        &self,
        rec: &FileRecord,
        refs: &mut HashMap<ChunkId, u64>,
        trefs: &mut HashMap<(Tenant, ChunkId), u64>,
    ) -> std::result::Result<(), String> {
        let nseg = rec.segments.len() as u32;
        let counted = |seg: u32| match rec.state {
            FileState::Ready => true,
            FileState::Committing { next } => seg < next,
            FileState::Deleting { next } => seg >= next,
        };
        let mut at = 0u64;
        let mut n = 0u64;
        let mut digest = manifest::Digest::default();
        for seg in 0..nseg {
            if rec.segments[seg as usize] != at {
                return Err(format!(
                    "segment {seg} starts at {at}, record says {}",
                    rec.segments[seg as usize]
                ));
            }
            let entries = self.segment(&rec.id, seg).map_err(|e| e.to_string())?;
            for e in &entries {
                at += u64::from(e.len);
                n += 1;
                digest.update(e);
                if counted(seg) {
                    *refs.entry(e.id).or_default() += 1;
                    *trefs.entry((rec.tenant.clone(), e.id)).or_default() += 1;
                }
            }
        }
        if at != rec.size {
            return Err(format!("chunks add up to {at} bytes, size is {}", rec.size));
        }
        if n != rec.chunks {
            return Err(format!("{n} chunks, record says {}", rec.chunks));
        }
        if digest.finish() != rec.manifest_digest {
            return Err("manifest digest differs".into());
        }
        Ok(())
    }
}
