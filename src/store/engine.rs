//! The store's core: opening over a metadata backend and an object store,
//! closing, locks (taken from the metadata, see [`meta::locks`]), options
//! and counters. Chunks, files, read
//! paths, upload sessions, GC and verify extend [`Store`] in sibling modules.
//! Nothing here names a metadata engine; [`Store::open`] picks the defaults.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::chunker::{Chunker, ChunkerParams};
use super::clock::{Clock, DB_CLOCK_EVERY, SystemClock};
use super::error::{Error, Result};
use super::filetype::TypePolicy;
use super::id::{ChunkId, FileId};
use super::meta::{self, Batch, Cf, Counter, LockSpace, Locked, MetaStore, RocksMeta};
use super::meta_backend::MetaBackend;
use super::objects::{FsObjects, FsyncPolicy, ObjectStore, ObjectsKind, PackedObjects, Packs, S3Options};

/// How the store behaves; built from the server's configuration.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub chunking: ChunkerParams,
    /// zstd level for chunk objects; 0 stores everything raw.
    pub compression_level: i32,
    pub fsync: FsyncPolicy,
    /// Write new objects of the local object directory with `O_DIRECT`
    /// where the filesystem takes it ([`FsObjects::with_direct_writes`]).
    pub direct_writes: bool,
    /// Append new chunks of the local object directory to pack files
    /// (docs/PACKS.md; the default) instead of writing a file each. Both
    /// layouts are read whatever this says.
    pub packs: bool,
    /// Bytes after which a pack is closed and a new one started.
    pub pack_size: u64,
    /// Which engine [`Store::open`] keeps chunk objects in.
    pub objects: ObjectsKind,
    /// The bucket, for [`ObjectsKind::S3`].
    pub s3: S3Options,
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
    /// Free bytes kept on the data dir's filesystem (0: no check); see
    /// [`Store::ensure_space`].
    pub min_free: u64,
    /// Where [`Store::open`] finds the metadata (RocksDB under the data dir
    /// by default).
    pub meta: MetaBackend,
    /// Several nodes share the metadata and objects: downloads keep reader
    /// rows (see [`super::readers`]), files are opened from their record
    /// every time, and there is no store-wide crash marker (each node's
    /// start sweeps orphans once).
    pub shared: bool,
    /// How long a download's reader row holds a delete on other nodes
    /// without being renewed (see [`super::readers`]).
    pub reader_ttl: Duration,
    /// On a generational (S3) store, how long a writer's claim on a new
    /// chunk lasts: its PUT must be done by then, or another writer (or GC)
    /// takes the chunk over. A writer that died holding claims blocks their
    /// chunks this long.
    pub claim_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            chunking: ChunkerParams::default(),
            compression_level: 1,
            fsync: FsyncPolicy::default(),
            direct_writes: true,
            packs: true,
            pack_size: 64 << 20,
            objects: ObjectsKind::default(),
            s3: S3Options::default(),
            max_object_size: 64 << 20,
            max_file_size: 1 << 40,
            read_ahead: 4,
            gc_grace: Duration::from_secs(3600),
            chunk_lease: Duration::from_secs(24 * 3600),
            upload_expiry: Duration::from_secs(24 * 3600),
            types: TypePolicy::default(),
            min_free: 0,
            meta: MetaBackend::RocksDb,
            shared: false,
            reader_ttl: Duration::from_secs(60),
            claim_timeout: Duration::from_secs(60),
        }
    }
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

impl Stats {
    /// The figures with their ratios (1.0 over nothing).
    pub fn new(
        files: u64,
        logical_bytes: u64,
        unique_chunks: u64,
        unique_bytes: u64,
        stored_bytes: u64,
    ) -> Self {
        let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
        Stats {
            files,
            logical_bytes,
            unique_chunks,
            unique_bytes,
            stored_bytes,
            dedup_ratio: ratio(logical_bytes, unique_bytes),
            space_ratio: ratio(logical_bytes, stored_bytes),
        }
    }
}

/// What the store has done since it was opened (in memory, for metrics).
#[derive(Debug, Default)]
pub(super) struct ActivityCounters {
    pub(super) chunks_new: std::sync::atomic::AtomicU64,
    pub(super) chunks_known: std::sync::atomic::AtomicU64,
    pub(super) files: std::sync::atomic::AtomicU64,
    pub(super) reads_cached: std::sync::atomic::AtomicU64,
    pub(super) reads_blocking: std::sync::atomic::AtomicU64,
    pub(super) reads_decoded: std::sync::atomic::AtomicU64,
    pub(super) tokens_cached: std::sync::atomic::AtomicU64,
    pub(super) tokens_read: std::sync::atomic::AtomicU64,
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
    /// Chunk reads for downloads (a whole chunk or the part a range needs)
    /// answered from the kernel's page cache on an async thread, with no
    /// hop to the blocking pool (see `Store::try_part_cached`); a
    /// compressed chunk's object read so is decoded on a blocking thread,
    /// not read again.
    pub chunk_reads_cached: u64,
    /// Chunk reads for downloads made on a blocking thread: not cached, too
    /// long to try from the cache, on a store that cannot answer so, or
    /// refused there by a check (the blocking read then reports the damage).
    pub chunk_reads_blocking: u64,
    /// Parts of compressed chunks answered from the decoded chunks a range
    /// read before (see `super::cache::DecodedChunks`): no read and no
    /// decompression.
    pub chunk_reads_decoded: u64,
    /// Token records that requests' token and link checks found in memory
    /// (read within [`super::token_rows::TOKEN_CACHE_TTL`]; see
    /// [`Store::authenticate_cached`]).
    pub token_checks_cached: u64,
    /// Token records those checks read from the metadata.
    pub token_checks_read: u64,
}

pub(super) fn bump(c: &std::sync::atomic::AtomicU64, by: u64) {
    c.fetch_add(by, std::sync::atomic::Ordering::Relaxed);
}

const META_SCHEMA: &[u8] = b"schema_version";
const META_CHUNKER: &[u8] = b"chunker_id";
const META_OPEN: &[u8] = b"open";

/// The store. Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct Store(pub(super) Arc<Inner>);

pub(super) struct Inner {
    pub(super) data_dir: PathBuf,
    pub(super) meta: Arc<dyn MetaStore>,
    pub(super) objects: Arc<dyn ObjectStore>,
    pub(super) chunker: Chunker,
    pub(super) opts: StoreOptions,
    pub(super) clock: Arc<dyn Clock>,
    /// Downloads reading each file, and whether a delete waits for them.
    pub(super) readers: Mutex<HashMap<FileId, super::cache::Readers>>,
    /// This process among the nodes of a shared store (random per open).
    pub(super) node: [u8; 16],
    /// The ends of this node's reader rows (see [`super::readers`]).
    pub(super) reader_rows: Mutex<HashMap<FileId, u64>>,
    /// Ready files' records and manifest segments (see [`super::cache`]).
    pub(super) cache: super::cache::FileCache,
    /// Compressed chunks that ranges read parts of, decoded (see
    /// [`super::cache::DecodedChunks`]).
    pub(super) decoded: super::cache::DecodedChunks,
    /// Where packed chunks' records are, as ranges looked them up (see
    /// [`super::cache::Locations`]).
    pub(super) locations: super::cache::Locations,
    /// What this process has done, for metrics.
    pub(super) activity: ActivityCounters,
    /// Server keys read or made so far (they never change once made):
    /// token and link checks on every request read no metadata for them.
    pub(super) keys: Mutex<HashMap<String, [u8; 32]>>,
    /// Token records read for requests' checks, for a while (see
    /// [`super::token_rows::TokenCache`]).
    pub(super) tokens: super::token_rows::TokenCache,
    /// The last run did not close cleanly: orphan objects are possible.
    pub(super) unclean: bool,
    /// Set while the recovery an unclean shutdown calls for (the orphan
    /// sweep) has not run; [`Store::close`] keeps the crash marker until it
    /// has, so an offline `verify` or `stats` never hides it from the server.
    pub(super) orphan_sweep_due: std::sync::atomic::AtomicBool,
    /// When this process opened the store (the store clock).
    pub(super) opened_ms: u64,
    /// What a backup and the deletions and tail writes it must not overlap
    /// take (see [`super::holds`]).
    pub(super) holds: super::holds::Holds,
}

/// The object store `opts.objects` names, as [`Store::open`] opens it:
/// [`FsObjects`] at `dir` (the `objects/` directory of a data dir), under
/// [`PackedObjects`] when `opts.packs` asks for pack files or `dir/packs`
/// already holds some; or `S3Objects` on `opts.s3` with the environment's
/// credentials.
///
/// # Errors
/// [`Error::Io`] when the directory cannot be made or read, or the bucket
/// cannot be reached; [`Error::InvalidInput`] for S3 in a build without
/// the `s3` feature.
pub fn open_objects(opts: &StoreOptions, dir: &Path) -> Result<Arc<dyn ObjectStore>> {
    match opts.objects {
        ObjectsKind::Fs => {
            let loose = FsObjects::open(dir, opts.fsync)?.with_direct_writes(opts.direct_writes);
            let packs = dir.join("packs");
            if !opts.packs && !packs.is_dir() {
                return Ok(Arc::new(loose));
            }
            let packs = Packs::open(&packs, opts.fsync, opts.pack_size, opts.packs)?
                .with_direct_writes(loose.writes_direct());
            Ok(Arc::new(PackedObjects::new(loose, packs)))
        }
        #[cfg(feature = "s3")]
        ObjectsKind::S3 => Ok(Arc::new(super::objects::S3Objects::open(&opts.s3)?)),
        #[cfg(not(feature = "s3"))]
        ObjectsKind::S3 => Err(Error::InvalidInput("this depot was built without the `s3` feature".into())),
    }
}

/// Tells `clock` where the metadata's clock stands (read halfway through
/// the round trip); `false` when the metadata has none of its own.
fn follow_db_clock(meta: &dyn MetaStore, clock: &dyn Clock) -> Result<bool> {
    let before = SystemClock.now_ms();
    let Some(db) = meta.clock_ms()? else { return Ok(false) };
    let after = SystemClock.now_ms();
    clock.follow(db, before + after.saturating_sub(before) / 2);
    Ok(true)
}

/// The [`LockSpace::Chunks`] keys of chunk rows: a stripe per first byte of
/// the id (ids are hashes, so stripes are even).
pub(super) fn stripes<'a>(ids: impl IntoIterator<Item = &'a ChunkId>) -> impl Iterator<Item = u16> {
    ids.into_iter().map(|i| u16::from(i.as_bytes()[0]))
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Store {
    /// Opens (or creates) the store in `data_dir`: objects under
    /// `objects/` (or in the S3 bucket `opts.s3` names, when `opts.objects`
    /// says so), metadata where [`StoreOptions::meta`] says (RocksDB under
    /// `meta/`, or PostgreSQL), upload scratch under `uploads/`.
    ///
    /// # Errors
    /// [`Error::Io`] when the object store cannot be opened (for S3: missing
    /// credentials or endpoint, an unreachable bucket);
    /// [`Error::Locked`] when another process has the store open;
    /// [`Error::SchemaMismatch`] / [`Error::ChunkerMismatch`] when the store
    /// was made by another version or with other chunking parameters;
    /// [`Error::InvalidInput`] for a PostgreSQL URL in a build without the
    /// `postgres` feature; [`Error::Backend`] when the database cannot be
    /// reached.
    pub fn open(data_dir: &Path, opts: StoreOptions) -> Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let objects = open_objects(&opts, &data_dir.join("objects"))?;
        // The wall clock unless the metadata has its own (see `DbClock`).
        Self::open_with(data_dir, opts, objects, super::clock::DbClock::new())
    }

    /// Opens with a given object store and clock (tests, benches); the
    /// metadata is where [`StoreOptions::meta`] says.
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_with(
        data_dir: &Path,
        opts: StoreOptions,
        objects: Arc<dyn ObjectStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let meta: Arc<dyn MetaStore> = match &opts.meta {
            MetaBackend::RocksDb => Arc::new(RocksMeta::open(&data_dir.join("meta"))?),
            #[cfg(feature = "postgres")]
            MetaBackend::Postgres(url) => Arc::new(meta::PgMeta::open_with(
                url,
                meta::PgOptions { exclusive: !opts.shared, ..meta::PgOptions::default() },
            )?),
            #[cfg(not(feature = "postgres"))]
            MetaBackend::Postgres(_) => {
                return Err(Error::InvalidInput(
                    "storage.meta names PostgreSQL, but this build has no `postgres` feature".into(),
                ));
            }
        };
        Self::open_on(data_dir, opts, meta, objects, clock)
    }

    /// Opens over given backends: metadata, objects and clock. `data_dir`
    /// holds only upload scratch (`uploads/`). A store "reopened" over the
    /// same backends sees what the last one wrote, as after a restart.
    ///
    /// # Errors
    /// [`Error::SchemaMismatch`] / [`Error::ChunkerMismatch`] as for
    /// [`Store::open`]; backend failures.
    pub fn open_on(
        data_dir: &Path,
        opts: StoreOptions,
        meta: Arc<dyn MetaStore>,
        objects: Arc<dyn ObjectStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let chunker = Chunker::new(opts.chunking).map_err(|e| Error::InvalidInput(e.to_string()))?;
        std::fs::create_dir_all(data_dir.join("uploads"))?;
        // Nodes keep their deadlines on the database's clock; a process
        // alone has one clock anyway.
        let follows_db = opts.shared && follow_db_clock(&*meta, &*clock)?;
        let chunker_id = opts.chunking.id();
        match meta.get(Cf::Meta, META_SCHEMA)? {
            None => {
                let mut b = Batch::default();
                b.put(Cf::Meta, META_SCHEMA, meta::SCHEMA_VERSION.to_string().as_bytes());
                b.put(Cf::Meta, META_CHUNKER, chunker_id.as_bytes());
                meta.write(b, true)?;
            }
            Some(v) => {
                let found = String::from_utf8_lossy(&v).into_owned();
                let known = [
                    meta::SCHEMA_VERSION,
                    meta::SCHEMA_BEFORE_PACKS,
                    meta::SCHEMA_BEFORE_GENERATIONS,
                    meta::SCHEMA_BEFORE_TENANTS,
                ];
                if !known.iter().any(|v| found == v.to_string()) {
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
        // Shared, one node's clean stop says nothing of the others: every
        // start counts as after a crash (an orphan sweep, once).
        let unclean = opts.shared || meta.get(Cf::Meta, META_OPEN)?.is_some();
        if unclean {
            // Objects a killed predecessor wrote but never synced would
            // count as present from now on: make them durable first.
            objects.sync_all()?;
        }
        if !opts.shared {
            let mut b = Batch::default();
            b.put(Cf::Meta, META_OPEN, b"1");
            meta.write(b, true)?;
        }
        let opened_ms = clock.now_ms();
        let store = Store(Arc::new(Inner {
            data_dir: data_dir.to_path_buf(),
            meta,
            objects,
            chunker,
            opts,
            clock,
            readers: Mutex::new(HashMap::new()),
            node: rand::random(),
            reader_rows: Mutex::new(HashMap::new()),
            cache: super::cache::FileCache::new(),
            decoded: super::cache::DecodedChunks::new(),
            locations: super::cache::Locations::new(),
            keys: Mutex::new(HashMap::new()),
            tokens: super::token_rows::TokenCache::new(),
            activity: ActivityCounters::default(),
            unclean,
            orphan_sweep_due: std::sync::atomic::AtomicBool::new(unclean),
            opened_ms,
            holds: Default::default(),
        }));
        let version = store.0.meta.get(Cf::Meta, META_SCHEMA)?.unwrap_or_default();
        let version = String::from_utf8_lossy(&version).into_owned();
        if version == meta::SCHEMA_BEFORE_TENANTS.to_string() {
            // Before resuming anything: resumed steps count tenant rows.
            let n = store.migrate_tenants()?;
            tracing::info!(
                files = n,
                "store migrated past schema 1: existing files belong to tenant `default`"
            );
        }
        if version != meta::SCHEMA_VERSION.to_string() {
            // v1 chunk rows read as generation 0, and every row of a store
            // before packs names a loose object: nothing else to rewrite.
            let mut b = Batch::default();
            b.put(Cf::Meta, META_SCHEMA, meta::SCHEMA_VERSION.to_string().as_bytes());
            store.0.meta.write(b, true)?;
            tracing::info!(from = %version, "store schema is now {}", meta::SCHEMA_VERSION);
        }
        store.count_usage_once()?;
        store.resume_pending()?;
        if store.0.opts.shared {
            store.start_renewing_readers()?;
        }
        if follows_db {
            store.start_following_db_clock()?;
        }
        Ok(store)
    }

    /// Samples the metadata's clock every [`DB_CLOCK_EVERY`] (see
    /// [`super::clock::DbClock`]), on a thread that ends soon after the last
    /// clone of the store is dropped.
    fn start_following_db_clock(&self) -> Result<()> {
        let store = Arc::downgrade(&self.0);
        std::thread::Builder::new().name("depot-db-clock".into()).spawn(move || {
            loop {
                std::thread::sleep(DB_CLOCK_EVERY);
                let Some(inner) = store.upgrade() else { return };
                if let Err(e) = follow_db_clock(&*inner.meta, &*inner.clock) {
                    tracing::debug!(error = %e, "reading the database's clock failed; keeping the last offset");
                }
            }
        })?;
        Ok(())
    }

    /// Flushes and marks the store as cleanly closed. Other clones must be
    /// dropped by the caller; the database closes with the last one.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub fn close(&self) -> Result<()> {
        self.0.objects.barrier()?;
        self.0.meta.flush()?;
        if self.orphan_sweep_due() || self.0.opts.shared {
            // Recovery is still owed: leave the marker for whoever opens
            // next. (A shared store has none.)
            return Ok(());
        }
        let mut b = Batch::default();
        b.delete(Cf::Meta, META_OPEN);
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
            chunk_reads_cached: get(&a.reads_cached),
            chunk_reads_blocking: get(&a.reads_blocking),
            chunk_reads_decoded: get(&a.reads_decoded),
            token_checks_cached: get(&a.tokens_cached),
            token_checks_read: get(&a.tokens_read),
        }
    }

    /// Bytes an unprivileged writer may still use on the data dir's
    /// filesystem (`statvfs`: available blocks × fragment size); `None` when
    /// the filesystem cannot say.
    pub fn free_bytes(&self) -> Option<u64> {
        let s = rustix::fs::statvfs(&self.0.data_dir).ok()?;
        Some(s.f_bavail.saturating_mul(s.f_frsize))
    }

    /// Refuses new data while the data dir's filesystem is below the
    /// `min_free` reserve, so that a full disk never stops the metadata
    /// database from opening. Called before new chunk objects are written
    /// and before an upload session is made.
    ///
    /// # Errors
    /// [`Error::InsufficientStorage`] with the free bytes and the reserve.
    pub fn ensure_space(&self) -> Result<()> {
        let reserve = self.0.opts.min_free;
        match self.free_bytes() {
            Some(free) if reserve > 0 && free < reserve => Err(Error::InsufficientStorage { free, reserve }),
            _ => Ok(()),
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

    /// No locks yet: take them with [`Locked::take`] (see [`meta::locks`]
    /// for the order), write under them with [`Locked::write`].
    pub(super) fn locked(&self) -> Locked<'_> {
        Locked::new(self.meta())
    }

    /// The chunk-row locks of `ids`: see [`stripes`].
    ///
    /// # Errors
    /// [`Error::Unavailable`] when a shared backend cannot give them.
    pub(super) fn lock_stripes<'a>(&self, ids: impl IntoIterator<Item = &'a ChunkId>) -> Result<Locked<'_>> {
        let mut held = self.locked();
        held.take(LockSpace::Chunks, stripes(ids))?;
        Ok(held)
    }

    /// The lock of file `id`'s record while it goes through its steps.
    ///
    /// # Errors
    /// As [`Store::lock_stripes`].
    pub(super) fn file_lock(&self, id: &FileId) -> Result<Locked<'_>> {
        let mut held = self.locked();
        held.take(LockSpace::Files, [u16::from(id.as_bytes()[15]) % LockSpace::Files.size() as u16])?;
        Ok(held)
    }

    pub(super) fn grace_ms(&self) -> u64 {
        self.0.opts.gc_grace.as_millis() as u64
    }

    // ----- chunks -----------------------------------------------------------

    /// Store-wide counters.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub fn stats(&self) -> Result<Stats> {
        let c = |k| self.0.meta.counter(k).map(|v| v.max(0) as u64);
        let (files, logical, chunks, unique, stored) = (
            c(Counter::Files)?,
            c(Counter::LogicalBytes)?,
            c(Counter::UniqueChunks)?,
            c(Counter::UniqueBytes)?,
            c(Counter::StoredBytes)?,
        );
        Ok(Stats::new(files, logical, chunks, unique, stored))
    }

    pub(super) fn meta(&self) -> &dyn MetaStore {
        &*self.0.meta
    }

    pub(super) fn objects(&self) -> &Arc<dyn ObjectStore> {
        &self.0.objects
    }
}
