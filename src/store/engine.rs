//! The store's operations on RocksDB and the object directory: opening,
//! chunks (put, missing, read), files (commit, list, delete), counters. Read
//! paths, upload sessions, GC and verify extend [`Store`] in sibling modules.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use super::chunker::{Chunker, ChunkerParams};
use super::clock::{Clock, SystemClock};
use super::error::{Error, Result};
use super::filetype::{self, TypePolicy};
use super::id::{ChunkId, FileId, UploadId};
use super::manifest::{self, Entry};
use super::meta::{self, Cf, ChunkRow, ChunkState, Counter, Meta};
use super::object;
use super::objects::{FsObjects, FsyncPolicy, ObjectStore};

/// How the store behaves; built from the server's configuration.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub chunking: ChunkerParams,
    /// zstd level for chunk objects; 0 stores everything raw.
    pub compression_level: i32,
    pub fsync: FsyncPolicy,
    /// Largest raw chunk the store accepts (covers seed pieces too).
    pub max_object_size: u32,
    /// Largest file.
    pub max_file_size: u64,
    /// Chunks read ahead of the one being sent, per download.
    pub read_ahead: usize,
    /// How long an unreferenced chunk is kept before GC may take it.
    pub gc_grace: Duration,
    /// How long a chunk an upload sent or was told about stays pinned.
    pub chunk_lease: Duration,
    /// How long an idle upload session lives.
    pub upload_expiry: Duration,
    pub types: TypePolicy,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            chunking: ChunkerParams::default(),
            compression_level: 1,
            fsync: FsyncPolicy::default(),
            max_object_size: 64 << 20,
            max_file_size: 1 << 40,
            read_ahead: 4,
            gc_grace: Duration::from_secs(3600),
            chunk_lease: Duration::from_secs(24 * 3600),
            upload_expiry: Duration::from_secs(24 * 3600),
            types: TypePolicy::default(),
        }
    }
}

/// A stored file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub id: FileId,
    pub name: String,
    pub size: u64,
    pub content_type: String,
    /// Unix milliseconds.
    pub created_ms: u64,
    /// The chunker id the manifest was cut with.
    pub chunker: String,
    /// Number of chunks in the manifest.
    pub chunks: u64,
    /// BLAKE3 of the manifest: the file's strong ETag.
    pub manifest_digest: ChunkId,
    /// BLAKE3 of the whole content, when the server saw it stream past.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<ChunkId>,
    /// Start offset of each manifest segment.
    pub segments: Vec<u64>,
    pub state: FileState,
}

/// A file record's life: only `Ready` files are visible. The other states
/// mark multi-step work that resumes after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum FileState {
    Ready,
    /// Refcounts of segments before `next` are incremented.
    Committing {
        next: u32,
    },
    /// Refcounts of segments before `next` are decremented.
    Deleting {
        next: u32,
    },
}

/// A file to commit.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub name: String,
    /// What the client said the type is; detection decides.
    pub declared_type: Option<String>,
    pub size: u64,
    pub chunks: Vec<Entry>,
    pub content_hash: Option<ChunkId>,
}

/// Store-wide figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub files: u64,
    /// Sum of the sizes of all files.
    pub logical_bytes: u64,
    pub unique_chunks: u64,
    /// Sum of the raw sizes of all chunks, stored once each.
    pub unique_bytes: u64,
    /// Bytes on disk in chunk objects (after compression, with headers).
    pub stored_bytes: u64,
    /// logical / unique bytes: what deduplication saves.
    pub dedup_ratio: f64,
    /// logical / stored bytes: deduplication and compression together.
    pub space_ratio: f64,
}

/// What the store has done since it was opened (in memory, for metrics).
#[derive(Debug, Default)]
pub(super) struct ActivityCounters {
    chunks_new: std::sync::atomic::AtomicU64,
    chunks_known: std::sync::atomic::AtomicU64,
    files: std::sync::atomic::AtomicU64,
}

/// A snapshot of [`ActivityCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Activity {
    /// Chunks received and stored for the first time.
    pub chunks_new: u64,
    /// Chunks received, or asked about, that the store already had.
    pub chunks_known: u64,
    /// Files committed.
    pub files_created: u64,
}

fn bump(c: &std::sync::atomic::AtomicU64, by: u64) {
    c.fetch_add(by, std::sync::atomic::Ordering::Relaxed);
}

/// The outcome of storing one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Put {
    pub id: ChunkId,
    pub len: u32,
    /// This call stored it; `false`: the store already had it.
    pub new: bool,
}

const STRIPES: usize = 256;
const META_SCHEMA: &[u8] = b"schema_version";
const META_CHUNKER: &[u8] = b"chunker_id";
const META_OPEN: &[u8] = b"open";
const PENDING_PREFIX: &[u8] = b"pending/";

/// The store. Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct Store(pub(super) Arc<Inner>);

pub(super) struct Inner {
    pub(super) data_dir: PathBuf,
    pub(super) meta: Meta,
    objects: Arc<dyn ObjectStore>,
    chunker: Chunker,
    pub(super) opts: StoreOptions,
    clock: Arc<dyn Clock>,
    stripes: Vec<Mutex<()>>,
    file_locks: Vec<Mutex<()>>,
    pub(super) sessions: Mutex<HashMap<UploadId, Arc<Mutex<()>>>>,
    pub(super) readers: Mutex<HashMap<FileId, usize>>,
    /// What this process has done, for metrics.
    pub(super) activity: ActivityCounters,
    /// Append-only sessions with an appender running.
    pub(super) appending: Mutex<super::stream::Appending>,
    /// The last run did not close cleanly: orphan objects are possible.
    unclean: bool,
    /// Set while the recovery an unclean shutdown calls for (the orphan
    /// sweep) has not run; [`Store::close`] keeps the crash marker until it
    /// has, so an offline `verify` or `stats` never hides it from the server.
    orphan_sweep_due: std::sync::atomic::AtomicBool,
    /// When this process opened the store (the store clock).
    opened_ms: u64,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Store {
    /// Opens (or creates) the store in `data_dir`: objects under
    /// `objects/`, metadata under `meta/`, upload scratch under `uploads/`.
    ///
    /// # Errors
    /// [`Error::Locked`] when another process has the store open;
    /// [`Error::SchemaMismatch`] / [`Error::ChunkerMismatch`] when the store
    /// was made by another version or with other chunking parameters.
    pub fn open(data_dir: &Path, opts: StoreOptions) -> Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let objects = Arc::new(FsObjects::open(&data_dir.join("objects"), opts.fsync)?);
        Self::open_with(data_dir, opts, objects, Arc::new(SystemClock))
    }

    /// Opens with a given object store and clock (tests, benches).
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_with(
        data_dir: &Path,
        opts: StoreOptions,
        objects: Arc<dyn ObjectStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let chunker = Chunker::new(opts.chunking).map_err(|e| Error::InvalidInput(e.to_string()))?;
        std::fs::create_dir_all(data_dir.join("uploads"))?;
        let meta = Meta::open(&data_dir.join("meta"))?;
        let chunker_id = opts.chunking.id();
        match meta.get(Cf::Meta, META_SCHEMA)? {
            None => {
                let mut b = WriteBatch::default();
                meta.put(&mut b, Cf::Meta, META_SCHEMA, meta::SCHEMA_VERSION.to_string().as_bytes());
                meta.put(&mut b, Cf::Meta, META_CHUNKER, chunker_id.as_bytes());
                meta.write(b, true)?;
            }
            Some(v) => {
                let found = String::from_utf8_lossy(&v).into_owned();
                if found != meta::SCHEMA_VERSION.to_string() {
                    return Err(Error::SchemaMismatch { found, expected: meta::SCHEMA_VERSION.to_string() });
                }
                let found = meta
                    .get(Cf::Meta, META_CHUNKER)?
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .unwrap_or_default();
                if found != chunker_id {
                    return Err(Error::ChunkerMismatch { found, expected: chunker_id });
                }
            }
        }
        let unclean = meta.get(Cf::Meta, META_OPEN)?.is_some();
        if unclean {
            // Objects a killed predecessor wrote but never synced would
            // count as present from now on: make them durable first.
            objects.sync_all()?;
        }
        let mut b = WriteBatch::default();
        meta.put(&mut b, Cf::Meta, META_OPEN, b"1");
        meta.write(b, true)?;
        let opened_ms = clock.now_ms();
        let store = Store(Arc::new(Inner {
            data_dir: data_dir.to_path_buf(),
            meta,
            objects,
            chunker,
            opts,
            clock,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            file_locks: (0..64).map(|_| Mutex::new(())).collect(),
            sessions: Mutex::new(HashMap::new()),
            readers: Mutex::new(HashMap::new()),
            appending: Mutex::new(HashSet::new()),
            activity: ActivityCounters::default(),
            unclean,
            orphan_sweep_due: std::sync::atomic::AtomicBool::new(unclean),
            opened_ms,
        }));
        store.resume_pending()?;
        Ok(store)
    }

    /// Flushes and marks the store as cleanly closed. Other clones must be
    /// dropped by the caller; the database closes with the last one.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn close(&self) -> Result<()> {
        self.0.objects.barrier()?;
        self.0.meta.flush()?;
        if self.orphan_sweep_due() {
            // Recovery is still owed: leave the marker for whoever opens next.
            return Ok(());
        }
        let mut b = WriteBatch::default();
        self.0.meta.delete(&mut b, Cf::Meta, META_OPEN);
        self.0.meta.write(b, true)
    }

    /// Runs `f` on a blocking thread with a clone of the store.
    ///
    /// # Errors
    /// Whatever `f` returns, or [`Error::Task`] if it panicked.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
    {
        let s = self.clone();
        tokio::task::spawn_blocking(move || f(&s)).await?
    }

    pub fn options(&self) -> &StoreOptions {
        &self.0.opts
    }

    pub fn chunker(&self) -> &Chunker {
        &self.0.chunker
    }

    pub fn data_dir(&self) -> &Path {
        &self.0.data_dir
    }

    pub fn now_ms(&self) -> u64 {
        self.0.clock.now_ms()
    }

    /// What this process has done since it opened the store.
    pub fn activity(&self) -> Activity {
        let a = &self.0.activity;
        let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        Activity {
            chunks_new: get(&a.chunks_new),
            chunks_known: get(&a.chunks_known),
            files_created: get(&a.files),
        }
    }

    /// Whether the previous run ended without [`Store::close`].
    pub fn was_unclean(&self) -> bool {
        self.0.unclean
    }

    /// Whether an unclean shutdown left an orphan sweep that has not run
    /// yet (GC with orphans clears it).
    pub fn orphan_sweep_due(&self) -> bool {
        self.0.orphan_sweep_due.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(super) fn opened_ms(&self) -> u64 {
        self.0.opened_ms
    }

    pub(super) fn orphan_sweep_done(&self) {
        self.0.orphan_sweep_due.store(false, std::sync::atomic::Ordering::Release);
    }

    /// The lease end for chunks an upload touches now.
    pub fn default_lease(&self) -> u64 {
        self.now_ms() + self.0.opts.chunk_lease.as_millis() as u64
    }

    pub(super) fn lock_stripes<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a ChunkId>,
    ) -> Vec<MutexGuard<'_, ()>> {
        let mut idx: Vec<u8> = ids.into_iter().map(|i| i.as_bytes()[0]).collect();
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter().map(|i| lock(&self.0.stripes[i as usize])).collect()
    }

    fn file_lock(&self, id: &FileId) -> MutexGuard<'_, ()> {
        lock(&self.0.file_locks[id.as_bytes()[15] as usize % self.0.file_locks.len()])
    }

    pub(super) fn grace_ms(&self) -> u64 {
        self.0.opts.gc_grace.as_millis() as u64
    }

    // ----- chunks -----------------------------------------------------------

    /// Stores one chunk given as raw bytes. With `expected`, the bytes must
    /// hash to it. `lease_until` pins the chunk against GC (unix ms).
    ///
    /// # Errors
    /// [`Error::HashMismatch`] (nothing is stored), [`Error::TooLarge`], I/O.
    pub fn put_chunk(&self, data: &[u8], expected: Option<&ChunkId>, lease_until: u64) -> Result<Put> {
        let id = ChunkId::of(data);
        if let Some(e) = expected {
            if *e != id {
                return Err(Error::HashMismatch { expected: *e, actual: id });
            }
        }
        Ok(self.put_hashed(&[ChunkIn { id, raw: data, frame: None }], lease_until)?[0])
    }

    /// Stores a chunk a client sent as a zstd frame: decoded (capped at the
    /// maximum object size), hashed, compared with `expected`, and kept as
    /// the client's frame when that is smaller than raw.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a broken frame, otherwise as [`Store::put_chunk`].
    pub fn put_chunk_zstd(&self, frame: &[u8], expected: &ChunkId, lease_until: u64) -> Result<Put> {
        let max = self.0.opts.max_object_size as usize;
        let raw = decode_frame(frame, max)?;
        let id = ChunkId::of(&raw);
        if id != *expected {
            return Err(Error::HashMismatch { expected: *expected, actual: id });
        }
        let keep = (frame.len() < raw.len()).then_some(frame);
        Ok(self.put_hashed(&[ChunkIn { id, raw: &raw, frame: keep }], lease_until)?[0])
    }

    /// Stores chunks in one batch: one durability barrier and one metadata
    /// write for all of them.
    ///
    /// # Errors
    /// As [`Store::put_chunk`].
    pub fn put_chunks(&self, chunks: &[Bytes], lease_until: u64) -> Result<Vec<Put>> {
        let ids: Vec<ChunkId> = chunks.iter().map(|c| ChunkId::of(c)).collect();
        let items: Vec<ChunkIn> =
            ids.iter().zip(chunks).map(|(id, c)| ChunkIn { id: *id, raw: &c[..], frame: None }).collect();
        self.put_hashed(&items, lease_until)
    }

    fn put_hashed(&self, items: &[ChunkIn], lease_until: u64) -> Result<Vec<Put>> {
        let max = self.0.opts.max_object_size;
        for ChunkIn { raw, .. } in items {
            if raw.len() as u64 > u64::from(max) {
                return Err(Error::TooLarge { what: "chunk", limit: max.into(), got: raw.len() as u64 });
            }
        }
        let ids: Vec<ChunkId> = items.iter().map(|i| i.id).collect();
        // Objects of chunks that look new are compressed and written before
        // any lock is taken: an insert never replaces, so racing writers of
        // one chunk are harmless, and the locks cover only metadata.
        let before = self.0.meta.chunk_rows(&ids)?;
        let level = self.0.opts.compression_level;
        let mut placed: Vec<Option<object::Header>> = vec![None; items.len()];
        let mut firsts = HashSet::new();
        let mut wrote = false;
        for (i, (ChunkIn { id, raw, frame }, row)) in items.iter().zip(&before).enumerate() {
            if row.is_some() || !firsts.insert(*id) {
                continue; // known (or damaged: repaired under the lock), or a repeat
            }
            let enc = encode_item(id, raw, *frame, level);
            if self.0.objects.put_if_absent(id, &enc)? {
                placed[i] = Some(object::Header::decode(&enc).map_err(|e| Error::Task(e.to_string()))?);
                wrote = true;
            }
        }
        if wrote {
            self.0.objects.barrier()?;
        }

        let _guards = self.lock_stripes(&ids);
        let rows = self.0.meta.chunk_rows(&ids)?;
        let now = self.now_ms();
        let mut batch = WriteBatch::default();
        let mut out = Vec::with_capacity(items.len());
        let mut seen = HashSet::new();
        let mut late = false;
        for (i, (ChunkIn { id, raw, frame }, row)) in items.iter().zip(rows).enumerate() {
            let len = raw.len() as u32;
            if !seen.insert(*id) {
                out.push(Put { id: *id, len, new: false });
                continue;
            }
            match row {
                Some(mut r) if r.usable() => {
                    if r.lease_until < lease_until {
                        r.lease_until = lease_until;
                        self.0.meta.put(&mut batch, Cf::Chunks, id.as_bytes(), &r.encode());
                    }
                    out.push(Put { id: *id, len, new: false });
                }
                old => {
                    let stored = match (old, placed[i]) {
                        // Written above by this call: complete and durable.
                        (None, Some(h)) => h,
                        // Someone else's object, a damaged one, or one GC
                        // took meanwhile: checked or rewritten under the lock.
                        _ => {
                            late = true;
                            self.place_object(id, &encode_item(id, raw, *frame, level), old.is_some())?
                        }
                    };
                    let refcount = old.map_or(0, |r| r.refcount);
                    let new_row = ChunkRow {
                        refcount,
                        raw_len: len,
                        stored_len: stored.stored_len,
                        codec: stored.codec as u8,
                        state: if refcount > 0 { ChunkState::Live } else { ChunkState::Zero },
                        zero_since: now,
                        lease_until: lease_until.max(old.map_or(0, |r| r.lease_until)),
                    };
                    let stored_total = u64::from(stored.stored_len) + object::HEADER_LEN as u64;
                    match old {
                        None => {
                            self.0.meta.add(&mut batch, Counter::UniqueChunks, 1);
                            self.0.meta.add(&mut batch, Counter::UniqueBytes, len.into());
                            self.0.meta.add(&mut batch, Counter::StoredBytes, stored_total as i64);
                        }
                        Some(o) => {
                            // A damaged or half-deleted row is still counted.
                            let old_total = u64::from(o.stored_len) + object::HEADER_LEN as u64;
                            self.0.meta.add(
                                &mut batch,
                                Counter::StoredBytes,
                                stored_total as i64 - old_total as i64,
                            );
                        }
                    }
                    if refcount == 0 {
                        let at = (now + self.grace_ms()).max(new_row.lease_until);
                        self.0.meta.put(&mut batch, Cf::Gcq, &meta::gcq_key(at, id), b"");
                    }
                    self.0.meta.put(&mut batch, Cf::Chunks, id.as_bytes(), &new_row.encode());
                    out.push(Put { id: *id, len, new: true });
                }
            }
        }
        if late {
            self.0.objects.barrier()?;
        }
        self.0.meta.write(batch, false)?;
        let new = out.iter().filter(|p| p.new).count() as u64;
        bump(&self.0.activity.chunks_new, new);
        bump(&self.0.activity.chunks_known, out.len() as u64 - new);
        Ok(out)
    }

    /// Puts an encoded object in place for a chunk that has no usable row,
    /// keeping a valid object that is already there (an orphan from a crash)
    /// and replacing an invalid one. Returns the header of what is stored.
    fn place_object(&self, id: &ChunkId, enc: &[u8], had_row: bool) -> Result<object::Header> {
        if had_row {
            // Damaged or mid-delete: whatever is there is not trusted.
            self.0.objects.replace(id, enc)?;
        } else if !self.0.objects.put_if_absent(id, enc)? {
            let max = self.0.opts.max_object_size as usize;
            match self.0.objects.get(id)? {
                Some(existing) => match object::decode(&existing, max, true) {
                    Ok((h, _)) if h.id == *id => return Ok(h),
                    _ => self.0.objects.replace(id, enc)?,
                },
                None => self.0.objects.replace(id, enc)?,
            }
        }
        object::Header::decode(enc).map_err(|e| Error::Task(e.to_string()))
    }

    /// Which of `ids` the store lacks, in the order given (duplicates once).
    /// The ones present are leased until `lease_until` so GC cannot take them
    /// before the client commits. One batched multi-get for all of them.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn missing(&self, ids: &[ChunkId], lease_until: u64) -> Result<Vec<ChunkId>> {
        let missing = self.lease_present(ids, lease_until)?;
        let asked = ids.iter().collect::<HashSet<_>>().len();
        bump(&self.0.activity.chunks_known, (asked - missing.len()) as u64);
        Ok(missing)
    }

    /// [`Store::missing`] for the store's own checks (commits, lease
    /// renewals): the same answer and leases, not counted as dedup hits.
    pub(super) fn lease_present(&self, ids: &[ChunkId], lease_until: u64) -> Result<Vec<ChunkId>> {
        let _guards = self.lock_stripes(ids);
        let rows = self.0.meta.chunk_rows(ids)?;
        let mut batch = WriteBatch::default();
        let mut missing = Vec::new();
        let mut seen = HashSet::with_capacity(ids.len());
        // Refresh a lease only when it would otherwise end within a minute of
        // the requested time: a re-upload does not rewrite every row.
        let slack = 60_000;
        for (id, row) in ids.iter().zip(rows) {
            if !seen.insert(*id) {
                continue;
            }
            match row {
                Some(mut r) if r.usable() => {
                    if r.lease_until + slack < lease_until {
                        r.lease_until = lease_until;
                        self.0.meta.put(&mut batch, Cf::Chunks, id.as_bytes(), &r.encode());
                    }
                }
                _ => missing.push(*id),
            }
        }
        self.0.meta.write(batch, false)?;
        Ok(missing)
    }

    /// Whether the store has a usable chunk `id`; leases it when it has.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn has_chunk(&self, id: &ChunkId, lease_until: u64) -> Result<bool> {
        Ok(self.missing(std::slice::from_ref(id), lease_until)?.is_empty())
    }

    /// A chunk's stored object (header checked), for serving it as is.
    ///
    /// # Errors
    /// [`Error::ChunkNotFound`], [`Error::Corrupt`].
    pub fn chunk_object(&self, id: &ChunkId) -> Result<(object::Header, Vec<u8>)> {
        match self.0.meta.chunk_row(id)? {
            Some(r) if r.usable() => {}
            _ => return Err(Error::ChunkNotFound(*id)),
        }
        let enc =
            self.0.objects.get(id)?.ok_or(Error::Corrupt { id: *id, reason: "object missing".into() })?;
        let h = object::check(&enc).map_err(|e| Error::Corrupt { id: *id, reason: e.0.into() })?;
        if h.id != *id {
            return Err(Error::Corrupt { id: *id, reason: "object holds another chunk".into() });
        }
        Ok((h, enc))
    }

    /// A chunk's raw bytes (CRC-checked).
    ///
    /// # Errors
    /// [`Error::ChunkNotFound`], [`Error::Corrupt`].
    pub fn read_chunk(&self, id: &ChunkId) -> Result<Vec<u8>> {
        let enc =
            self.0.objects.get(id)?.ok_or(Error::Corrupt { id: *id, reason: "object missing".into() })?;
        let (h, raw) = object::decode(&enc, self.0.opts.max_object_size as usize, false)
            .map_err(|e| Error::Corrupt { id: *id, reason: e.0.into() })?;
        if h.id != *id {
            return Err(Error::Corrupt { id: *id, reason: "object holds another chunk".into() });
        }
        Ok(raw)
    }

    /// Moves a chunk's object aside after a read found it damaged, and marks
    /// its row so that the missing-chunks query reports it (the next upload
    /// of that content heals it) and downloads fail fast.
    ///
    /// # Errors
    /// RocksDB and I/O errors.
    pub fn mark_damaged(&self, id: &ChunkId, reason: &str) -> Result<()> {
        let _g = self.lock_stripes([id]);
        let Some(mut r) = self.0.meta.chunk_row(id)? else { return Ok(()) };
        if r.state == ChunkState::Damaged {
            return Ok(());
        }
        self.0.objects.quarantine(id)?;
        r.state = ChunkState::Damaged;
        let mut batch = WriteBatch::default();
        self.0.meta.put(&mut batch, Cf::Chunks, id.as_bytes(), &r.encode());
        self.0.meta.write(batch, true)?;
        tracing::error!(chunk = %id, reason, "damaged chunk moved aside; the next upload of its content heals it");
        Ok(())
    }

    /// The first bytes of a manifest's content, for type detection.
    ///
    /// # Errors
    /// Chunk read errors.
    pub fn head_bytes(&self, chunks: &[Entry], n: usize) -> Result<Vec<u8>> {
        let mut head = Vec::new();
        for e in chunks {
            if head.len() >= n {
                break;
            }
            if e.len == 0 {
                continue;
            }
            let raw = self.read_chunk(&e.id)?;
            head.extend_from_slice(&raw[..raw.len().min(n - head.len())]);
        }
        Ok(head)
    }

    // ----- files ------------------------------------------------------------

    /// Validates the type and commits a file. See [`Store::commit_file`].
    ///
    /// # Errors
    /// [`Error::TypeRejected`], and those of [`Store::commit_file`].
    pub fn finish_file(&self, new: NewFile) -> Result<FileRecord> {
        self.finish_file_with(new, |_, _, _| Ok(()))
    }

    /// [`Store::finish_file`], adding `hook`'s writes to the batch that
    /// makes the file durable (an upload session marking itself finished).
    pub(super) fn finish_file_with(
        &self,
        mut new: NewFile,
        hook: impl FnOnce(&Meta, &mut WriteBatch, &FileRecord) -> Result<()>,
    ) -> Result<FileRecord> {
        if new.size > self.0.opts.max_file_size {
            return Err(Error::TooLarge { what: "file", limit: self.0.opts.max_file_size, got: new.size });
        }
        new.chunks.retain(|e| e.len > 0);
        let head = self.head_bytes(&new.chunks, filetype::SNIFF_LEN).map_err(|e| match e {
            // A chunk that cannot be read for sniffing is a missing chunk.
            Error::Corrupt { id, .. } => Error::MissingChunks(vec![id]),
            e => e,
        });
        let head = match head {
            Ok(h) => h,
            Err(e) => {
                // Prefer reporting every missing chunk at once.
                self.check_chunks(&new.chunks)?;
                return Err(e);
            }
        };
        let content_type = self.0.opts.types.check(&new.name, &head, new.declared_type.as_deref())?;
        self.commit_file(new, content_type, hook)
    }

    fn check_chunks(&self, chunks: &[Entry]) -> Result<()> {
        let ids: Vec<ChunkId> = chunks.iter().map(|e| e.id).collect();
        let missing = self.lease_present(&ids, 0)?;
        if missing.is_empty() { Ok(()) } else { Err(Error::MissingChunks(missing)) }
    }

    /// Commits a manifest as a new file: the chunks must all be present with
    /// the lengths given; refcounts rise by each chunk's occurrences. Files up
    /// to one manifest segment commit in one synced batch; larger ones in
    /// steps that resume after a crash, visible only at the end.
    ///
    /// # Errors
    /// [`Error::MissingChunks`] listing every absent chunk; [`Error::InvalidInput`]
    /// when lengths disagree with the size or with the stored chunks.
    pub(super) fn commit_file(
        &self,
        new: NewFile,
        content_type: String,
        hook: impl FnOnce(&Meta, &mut WriteBatch, &FileRecord) -> Result<()>,
    ) -> Result<FileRecord> {
        let chunks: Vec<Entry> = new.chunks.into_iter().filter(|e| e.len > 0).collect();
        let total: u64 = chunks.iter().map(|e| u64::from(e.len)).sum();
        if total != new.size {
            return Err(Error::InvalidInput(format!(
                "chunk lengths add up to {total} bytes but the size is {}",
                new.size
            )));
        }
        let name = sanitize_name(&new.name)?;
        let segs = manifest::segments(&chunks);
        let mut digest = manifest::Digest::default();
        chunks.iter().for_each(|e| digest.update(e));
        let now = self.now_ms();
        let mut rec = FileRecord {
            id: FileId::new(now),
            name,
            size: new.size,
            content_type,
            created_ms: now,
            chunker: self.0.opts.chunking.id(),
            chunks: chunks.len() as u64,
            manifest_digest: digest.finish(),
            content_hash: new.content_hash,
            segments: segs.iter().map(|s| s.0).collect(),
            state: FileState::Ready,
        };
        let m = &self.0.meta;

        if segs.len() <= 1 {
            let ids: Vec<ChunkId> = chunks.iter().map(|e| e.id).collect();
            let _guards = self.lock_stripes(&ids);
            let mut batch = WriteBatch::default();
            self.increment(&mut batch, &chunks, true)?;
            if let Some((_, seg)) = segs.first() {
                m.put(
                    &mut batch,
                    Cf::Manifests,
                    &meta::manifest_key(&rec.id.0, 0),
                    &manifest::encode_segment(seg),
                );
            }
            self.put_record(&mut batch, &rec)?;
            m.add(&mut batch, Counter::Files, 1);
            m.add(&mut batch, Counter::LogicalBytes, rec.size as i64);
            hook(m, &mut batch, &rec)?;
            self.0.objects.barrier()?;
            m.write(batch, true)?;
            bump(&self.0.activity.files, 1);
            return Ok(rec);
        }

        // Large file. Step 0: every chunk present, and leased so that GC
        // cannot take one while the steps run.
        let lease = now + self.0.opts.chunk_lease.as_millis() as u64;
        let mut missing = Vec::new();
        for group in chunks.chunks(8192) {
            let ids: Vec<ChunkId> = group.iter().map(|e| e.id).collect();
            missing.extend(self.lease_present(&ids, lease)?);
            self.check_lengths(group)?;
        }
        if !missing.is_empty() {
            missing.sort_unstable();
            missing.dedup();
            return Err(Error::MissingChunks(missing));
        }
        // Step 1: manifest and a pending record, invisible.
        rec.state = FileState::Committing { next: 0 };
        let mut batch = WriteBatch::default();
        for (i, (_, seg)) in segs.iter().enumerate() {
            m.put(
                &mut batch,
                Cf::Manifests,
                &meta::manifest_key(&rec.id.0, i as u32),
                &manifest::encode_segment(seg),
            );
        }
        self.put_record(&mut batch, &rec)?;
        m.put(&mut batch, Cf::Meta, &pending_key(&rec.id), b"");
        hook(m, &mut batch, &rec)?;
        self.0.objects.barrier()?;
        m.write(batch, true)?;
        // Step 2: refcounts, a segment at a time; the last step shows the file.
        let rec = self.resume_commit(rec)?;
        bump(&self.0.activity.files, 1);
        Ok(rec)
    }

    fn check_lengths(&self, entries: &[Entry]) -> Result<()> {
        let ids: Vec<ChunkId> = entries.iter().map(|e| e.id).collect();
        for (e, row) in entries.iter().zip(self.0.meta.chunk_rows(&ids)?) {
            if let Some(r) = row {
                if r.raw_len != e.len {
                    return Err(Error::InvalidInput(format!(
                        "chunk {} is {} bytes, not {}",
                        e.id, r.raw_len, e.len
                    )));
                }
            }
        }
        Ok(())
    }

    /// Adds each entry's occurrences to its chunk's refcount, into `batch`.
    /// The caller holds the stripes. With `strict`, an absent or unusable
    /// chunk or a length mismatch is an error; otherwise (resumed steps, whose
    /// chunks were checked and leased) a lost row is recreated as damaged.
    fn increment(&self, batch: &mut WriteBatch, entries: &[Entry], strict: bool) -> Result<()> {
        let mut counts: HashMap<ChunkId, (u64, u32)> = HashMap::new();
        for e in entries {
            counts.entry(e.id).or_insert((0, e.len)).0 += 1;
        }
        let ids: Vec<ChunkId> = counts.keys().copied().collect();
        let rows = self.0.meta.chunk_rows(&ids)?;
        let mut missing = Vec::new();
        for (id, row) in ids.iter().zip(rows) {
            let (n, len) = counts[id];
            let mut r = match row {
                Some(r) if strict && !r.usable() => {
                    missing.push(*id);
                    continue;
                }
                Some(r) => r,
                None if strict => {
                    missing.push(*id);
                    continue;
                }
                None => {
                    tracing::error!(chunk = %id, "chunk row vanished during a commit; marked damaged");
                    ChunkRow {
                        refcount: 0,
                        raw_len: len,
                        stored_len: 0,
                        codec: 0,
                        state: ChunkState::Damaged,
                        zero_since: 0,
                        lease_until: 0,
                    }
                }
            };
            if strict && r.raw_len != len {
                return Err(Error::InvalidInput(format!("chunk {id} is {} bytes, not {len}", r.raw_len)));
            }
            r.refcount += n;
            if r.state == ChunkState::Zero {
                r.state = ChunkState::Live;
            }
            self.0.meta.put(batch, Cf::Chunks, id.as_bytes(), &r.encode());
        }
        if !missing.is_empty() {
            missing.sort_unstable();
            return Err(Error::MissingChunks(missing));
        }
        Ok(())
    }

    fn resume_commit(&self, mut rec: FileRecord) -> Result<FileRecord> {
        let m = &self.0.meta;
        let FileState::Committing { next } = rec.state else {
            return Ok(rec);
        };
        let nseg = rec.segments.len() as u32;
        for seg in next..nseg {
            let entries = self.segment(&rec.id, seg)?;
            let ids: Vec<ChunkId> = entries.iter().map(|e| e.id).collect();
            let _guards = self.lock_stripes(&ids);
            let mut batch = WriteBatch::default();
            self.increment(&mut batch, &entries, false)?;
            let last = seg + 1 == nseg;
            rec.state = if last { FileState::Ready } else { FileState::Committing { next: seg + 1 } };
            self.put_record(&mut batch, &rec)?;
            if last {
                m.delete(&mut batch, Cf::Meta, &pending_key(&rec.id));
                m.add(&mut batch, Counter::Files, 1);
                m.add(&mut batch, Counter::LogicalBytes, rec.size as i64);
            }
            m.write(batch, last)?;
        }
        Ok(rec)
    }

    fn put_record(&self, batch: &mut WriteBatch, rec: &FileRecord) -> Result<()> {
        let v = serde_json::to_vec(rec).map_err(|e| Error::Task(e.to_string()))?;
        self.0.meta.put(batch, Cf::Files, rec.id.as_bytes(), &v);
        Ok(())
    }

    pub(super) fn record(&self, id: &FileId) -> Result<Option<FileRecord>> {
        self.0
            .meta
            .get(Cf::Files, id.as_bytes())?
            .map(|v| {
                serde_json::from_slice(&v).map_err(|e| Error::CorruptMetadata(format!("file {id}: {e}")))
            })
            .transpose()
    }

    /// A visible file's record.
    ///
    /// # Errors
    /// [`Error::FileNotFound`].
    pub fn file(&self, id: &FileId) -> Result<FileRecord> {
        match self.record(id)? {
            Some(r) if r.state == FileState::Ready => Ok(r),
            _ => Err(Error::FileNotFound(id.to_string())),
        }
    }

    /// One manifest segment of a file.
    ///
    /// # Errors
    /// [`Error::CorruptMetadata`] when absent or undecodable.
    pub fn segment(&self, id: &FileId, seg: u32) -> Result<Vec<Entry>> {
        let v = self
            .0
            .meta
            .get(Cf::Manifests, &meta::manifest_key(&id.0, seg))?
            .ok_or_else(|| Error::CorruptMetadata(format!("file {id} lacks manifest segment {seg}")))?;
        manifest::decode_segment(&v).map_err(|e| Error::CorruptMetadata(format!("file {id}: {e}")))
    }

    /// Visible files, newest first, after `cursor` (the last id of the
    /// previous page). Returns the page and the cursor of the next, if any.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn list_files(
        &self,
        cursor: Option<&FileId>,
        limit: usize,
    ) -> Result<(Vec<FileRecord>, Option<FileId>)> {
        let mut out = Vec::new();
        let before = cursor.map(|c| c.0);
        for kv in self.0.meta.scan_rev(Cf::Files, before.as_ref().map(|b| &b[..])) {
            let (_, v) = kv?;
            let rec: FileRecord = serde_json::from_slice(&v)
                .map_err(|e| Error::CorruptMetadata(format!("file record: {e}")))?;
            if rec.state != FileState::Ready {
                continue;
            }
            if out.len() == limit {
                let next = out.last().map(|r: &FileRecord| r.id);
                return Ok((out, next));
            }
            out.push(rec);
        }
        Ok((out, None))
    }

    /// Deletes a file: it disappears at once; its chunks' refcounts fall as
    /// soon as no download is reading it (or at the next GC), and chunks
    /// left unreferenced go to GC.
    ///
    /// # Errors
    /// [`Error::FileNotFound`].
    pub fn delete_file(&self, id: &FileId) -> Result<()> {
        {
            let _g = self.file_lock(id);
            let mut rec = self.file(id)?;
            rec.state = FileState::Deleting { next: 0 };
            let mut batch = WriteBatch::default();
            self.put_record(&mut batch, &rec)?;
            self.0.meta.put(&mut batch, Cf::Meta, &pending_key(id), b"");
            self.0.meta.add(&mut batch, Counter::Files, -1);
            self.0.meta.add(&mut batch, Counter::LogicalBytes, -(rec.size as i64));
            self.0.meta.write(batch, true)?;
        }
        if !self.is_being_read(id) {
            self.finish_delete(id)?;
        }
        Ok(())
    }

    pub(super) fn is_being_read(&self, id: &FileId) -> bool {
        lock(&self.0.readers).get(id).is_some_and(|n| *n > 0)
    }

    /// Drops a deleting file's references, a segment at a time, then its
    /// record and manifest.
    pub(super) fn finish_delete(&self, id: &FileId) -> Result<()> {
        let _g = self.file_lock(id);
        let Some(mut rec) = self.record(id)? else { return Ok(()) };
        let FileState::Deleting { next } = rec.state else { return Ok(()) };
        let m = &self.0.meta;
        let nseg = rec.segments.len() as u32;
        for seg in next..nseg {
            let entries = self.segment(id, seg)?;
            let ids: Vec<ChunkId> = entries.iter().map(|e| e.id).collect();
            let _guards = self.lock_stripes(&ids);
            let mut batch = WriteBatch::default();
            self.decrement(&mut batch, &entries)?;
            rec.state = FileState::Deleting { next: seg + 1 };
            self.put_record(&mut batch, &rec)?;
            m.write(batch, false)?;
        }
        let mut batch = WriteBatch::default();
        for seg in 0..nseg {
            m.delete(&mut batch, Cf::Manifests, &meta::manifest_key(&id.0, seg));
        }
        m.delete(&mut batch, Cf::Files, id.as_bytes());
        m.delete(&mut batch, Cf::Meta, &pending_key(id));
        m.write(batch, true)
    }

    fn decrement(&self, batch: &mut WriteBatch, entries: &[Entry]) -> Result<()> {
        let mut counts: HashMap<ChunkId, u64> = HashMap::new();
        for e in entries {
            *counts.entry(e.id).or_default() += 1;
        }
        let ids: Vec<ChunkId> = counts.keys().copied().collect();
        let now = self.now_ms();
        for (id, row) in ids.iter().zip(self.0.meta.chunk_rows(&ids)?) {
            let Some(mut r) = row else {
                tracing::warn!(chunk = %id, "deleting a reference to a chunk with no row");
                continue;
            };
            r.refcount = r.refcount.saturating_sub(counts[id]);
            if r.refcount == 0 {
                if r.state == ChunkState::Live {
                    r.state = ChunkState::Zero;
                }
                r.zero_since = now;
                let at = (now + self.grace_ms()).max(r.lease_until);
                self.0.meta.put(batch, Cf::Gcq, &meta::gcq_key(at, id), b"");
            }
            self.0.meta.put(batch, Cf::Chunks, id.as_bytes(), &r.encode());
        }
        Ok(())
    }

    /// Finishes multi-step commits and deletes a crash interrupted, and
    /// deletes that waited for their last reader.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn resume_pending(&self) -> Result<usize> {
        let pending: Vec<FileId> = self
            .0
            .meta
            .scan(Cf::Meta, PENDING_PREFIX, None)
            .filter_map(|kv| kv.ok())
            .filter_map(|(k, _)| k.get(PENDING_PREFIX.len()..).and_then(FileId::from_slice))
            .collect();
        let mut done = 0;
        for id in pending {
            match self.record(&id)? {
                Some(rec @ FileRecord { state: FileState::Committing { .. }, .. }) => {
                    self.resume_commit(rec)?;
                    done += 1;
                }
                Some(FileRecord { state: FileState::Deleting { .. }, .. }) if !self.is_being_read(&id) => {
                    self.finish_delete(&id)?;
                    done += 1;
                }
                Some(_) => {}
                None => {
                    let mut b = WriteBatch::default();
                    self.0.meta.delete(&mut b, Cf::Meta, &pending_key(&id));
                    self.0.meta.write(b, false)?;
                }
            }
        }
        Ok(done)
    }

    /// Store-wide counters.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn stats(&self) -> Result<Stats> {
        let c = |k| self.0.meta.counter(k).map(|v| v.max(0) as u64);
        let (files, logical, chunks, unique, stored) = (
            c(Counter::Files)?,
            c(Counter::LogicalBytes)?,
            c(Counter::UniqueChunks)?,
            c(Counter::UniqueBytes)?,
            c(Counter::StoredBytes)?,
        );
        let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
        Ok(Stats {
            files,
            logical_bytes: logical,
            unique_chunks: chunks,
            unique_bytes: unique,
            stored_bytes: stored,
            dedup_ratio: ratio(logical, unique),
            space_ratio: ratio(logical, stored),
        })
    }

    pub(super) fn meta(&self) -> &Meta {
        &self.0.meta
    }

    pub(super) fn objects(&self) -> &Arc<dyn ObjectStore> {
        &self.0.objects
    }
}

fn pending_key(id: &FileId) -> Vec<u8> {
    let mut k = PENDING_PREFIX.to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

/// One chunk on its way in: its id, raw bytes, and the client's zstd frame
/// when it sent one worth keeping.
struct ChunkIn<'a> {
    id: ChunkId,
    raw: &'a [u8],
    frame: Option<&'a [u8]>,
}

fn encode_item(id: &ChunkId, raw: &[u8], frame: Option<&[u8]>, level: i32) -> Vec<u8> {
    match frame {
        Some(f) => object::encode_zstd_frame(id, raw.len() as u32, f),
        None => object::encode(id, raw, level),
    }
}

/// Decodes a client's zstd frame, refusing anything over `max` bytes.
///
/// # Errors
/// [`Error::TooLarge`] or [`Error::InvalidInput`].
pub fn decode_frame(frame: &[u8], max: usize) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    let dec =
        zstd::stream::read::Decoder::new(frame).map_err(|e| Error::InvalidInput(format!("zstd: {e}")))?;
    dec.take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::InvalidInput(format!("invalid zstd data: {e}")))?;
    if out.len() > max {
        return Err(Error::TooLarge { what: "decoded chunk", limit: max as u64, got: out.len() as u64 });
    }
    Ok(out)
}

/// Checks a file name for storage: no control characters, bounded length,
/// reduced to its last path component. The name is only ever shown and sent
/// back (never used as a path), but a clean one spares every consumer.
///
/// # Errors
/// [`Error::InvalidInput`] naming the problem.
pub fn sanitize_name(name: &str) -> Result<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("").trim();
    if base.is_empty() || base == "." || base == ".." {
        return Err(Error::InvalidInput("file name is empty".into()));
    }
    if base.chars().any(char::is_control) {
        return Err(Error::InvalidInput("file name contains control characters".into()));
    }
    if base.len() > 255 {
        return Err(Error::InvalidInput(format!("file name is {} bytes; the limit is 255", base.len())));
    }
    Ok(base.to_string())
}
