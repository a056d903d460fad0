//! The open-files cache: ready files' records and decoded manifest segments,
//! kept in memory so that a download, above all a small `Range` request,
//! reads no metadata (a RocksDB lookup and a JSON decode for the record, a
//! lookup and a decode of a ~37 KiB segment, each on a blocking thread).
//!
//! Why it is sound: a ready file never changes. Its record and manifest
//! are written once; the one change a ready record sees is a delete, which
//! takes the file out of this cache before it looks for readers, both under
//! the store's readers lock (`Store::delete_file`), so a request that
//! arrives after a delete misses here and finds the file gone in metadata.
//! A record read from metadata is inserted under the same lock, and only if
//! no file was taken out since the read began ([`FileCache::removals`]):
//! a delete racing a miss can never leave its file behind in the cache.
//! Entries are keyed by file id alone; whoever asks checks the tenant
//! (the caller's view) on every hit, exactly as after a metadata read. One
//! cache per process is enough because one process at a time opens a store
//! (RocksDB's lock; PostgreSQL's advisory lock, see `meta::postgres`).
//!
//! Memory is bounded by weight, an estimate of each entry's heap bytes:
//! at most [`RECORDS_BYTES`] of records and [`SEGMENTS_BYTES`] of segments,
//! evicted by quick_cache's scan-resistant policy (S3-FIFO). Segments
//! enter only on a ranged read of one segment (a `Range` request); a
//! whole-file download reads a segment from here when it is cached but
//! never adds one, so a long download does not fill the cache with a
//! manifest it reads once.
//!
//! The reader counts ([`Readers`]) live here too: the engine holds them
//! and the read path uses them, and this module depends on neither.
//!
//! [`DecodedChunks`] keeps the raw bytes of zstd-compressed chunks that
//! `Range` requests read parts of, so that consecutive small ranges of one
//! chunk (a player reading ahead, a download accelerator's pieces) read and
//! decompress it once, not once per range. Chunks are named by their
//! content, so an entry never goes stale: whatever happens to the object
//! afterwards (deleted by GC, moved aside as damaged, stored again under a
//! new generation), the bytes a chunk id names are the bytes it held when
//! it was read and checked. Raw objects do not enter: a range of one is a
//! positioned read of the slice, cheaper than a copy kept here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::Weighter;
use quick_cache::sync::Cache;

use bytes::Bytes;

use super::id::{ChunkId, FileId};
use super::manifest::Entry;
use super::record::FileRecord;

/// The records kept at most, in estimated heap bytes: about 3,000 files of
/// short names (a record weighs ~350 bytes plus 8 per manifest segment).
pub const RECORDS_BYTES: u64 = 1 << 20;

/// The decoded segments kept at most, in estimated heap bytes: about 110
/// full segments of 1,024 chunks (36 bytes an entry), the manifests of
/// about 28 GiB of files at the default 256 KiB average chunk.
pub const SEGMENTS_BYTES: u64 = 4 << 20;

/// The decoded chunks kept at most, in bytes of the buffers that hold
/// them: 15 chunks of the default chunking (a decoded chunk of 128 KiB or
/// more stays in the pooled buffer it was decoded into, sized for the
/// largest chunk), more of smaller ones.
pub const DECODED_BYTES: u64 = 16 << 20;

/// A decoded manifest segment, shared by the readers of its file.
pub type Segment = Arc<[Entry]>;

/// The downloads reading one file (the store's readers map holds one per
/// file being read).
#[derive(Debug, Default)]
pub(super) struct Readers {
    /// Live read guards.
    pub(super) n: usize,
    /// A delete (or a reader that found the file deleting) waits for the
    /// last guard: its drop finishes the delete.
    pub(super) delete_waits: bool,
}

/// Ready files' records and segments (see the module docs).
pub(super) struct FileCache {
    records: Cache<FileId, Arc<FileRecord>, RecordWeight>,
    segments: Cache<(FileId, u32), Segment, SegmentWeight>,
    removals: AtomicU64,
}

impl FileCache {
    pub(super) fn new() -> Self {
        FileCache {
            records: Cache::with_weighter(4096, RECORDS_BYTES, RecordWeight),
            segments: Cache::with_weighter(128, SEGMENTS_BYTES, SegmentWeight),
            removals: AtomicU64::new(0),
        }
    }

    /// A cached ready file's record.
    pub(super) fn record(&self, id: &FileId) -> Option<Arc<FileRecord>> {
        self.records.get(id)
    }

    /// How many files have been taken out so far: read before a record is
    /// read from metadata, handed back to [`Self::insert_record`].
    /// The caller holds the readers lock.
    pub(super) fn removals(&self) -> u64 {
        self.removals.load(Ordering::Acquire)
    }

    /// Caches a ready record read from metadata, unless a file was taken
    /// out since `removals_before` was read (the record may be the one
    /// deleted). The caller holds the readers lock.
    pub(super) fn insert_record(&self, rec: Arc<FileRecord>, removals_before: u64) {
        if self.removals() == removals_before {
            self.records.insert(rec.id, rec);
        }
    }

    /// Segment `seg` of a cached file's manifest.
    pub(super) fn segment(&self, id: &FileId, seg: u32) -> Option<Segment> {
        self.segments.get(&(*id, seg))
    }

    /// Caches segment `seg` of a ready file's manifest.
    pub(super) fn insert_segment(&self, id: &FileId, seg: u32, entries: Segment) {
        self.segments.insert((*id, seg), entries);
    }

    /// Takes a file out: its record and its `segments` segments. The caller
    /// holds the readers lock. A segment a reader of the deleted file
    /// inserts afterwards can no longer be reached (file ids are never
    /// reused) and only waits for eviction.
    pub(super) fn remove(&self, id: &FileId, segments: u32) {
        self.removals.fetch_add(1, Ordering::AcqRel);
        self.records.remove(id);
        for seg in 0..segments {
            self.segments.remove(&(*id, seg));
        }
    }
}

/// The raw bytes of compressed chunks that ranges were read from (see the
/// module docs), at most [`DECODED_BYTES`] of them, evicted by S3-FIFO: a
/// chunk read once and never again leaves before one read again.
pub(super) struct DecodedChunks {
    chunks: Cache<ChunkId, Bytes, DecodedWeight>,
}

impl DecodedChunks {
    pub(super) fn new() -> Self {
        DecodedChunks { chunks: Cache::with_weighter(64, DECODED_BYTES, DecodedWeight) }
    }

    /// Bytes `from..to` of chunk `id`, when its raw bytes are held; `None`
    /// also when they are shorter than `to` (the caller's manifest entry
    /// then disagrees with the chunk, and the read from the object says so).
    pub(super) fn part(&self, id: &ChunkId, from: usize, to: usize) -> Option<Bytes> {
        let raw = self.chunks.get(id)?;
        (from <= to && to <= raw.len()).then(|| raw.slice(from..to))
    }

    /// The raw bytes of chunk `id`: held, or made by `decode` (a read and
    /// check of its object) and kept. Readers asking for a chunk that
    /// another is decoding wait for it (on their blocking thread) instead
    /// of decoding it too, as concurrent ranges of one chunk do; when the
    /// decode fails, nothing is kept and a waiter decodes in its turn.
    ///
    /// What is kept is what `decode` returns, which for a chunk of 128 KiB
    /// or more is a pooled buffer sized for the largest chunk: weighed so,
    /// and back in the pool once evicted and written. Not a copy of its own
    /// length: above the server's mmap threshold every copy was a fresh
    /// mapping, faulted in and then unmapped on eviction (about 20% of the
    /// server's CPU under random ranges of compressed chunks, where few are
    /// asked again; docs/PERFORMANCE.md, D2).
    ///
    /// # Errors
    /// `decode`'s.
    pub(super) fn get_or_decode<E>(
        &self,
        id: &ChunkId,
        decode: impl FnOnce() -> Result<Bytes, E>,
    ) -> Result<Bytes, E> {
        self.chunks.get_or_insert_with(id, decode)
    }
}

/// Where chunks' records are in a store's pack files, as their rows said
/// when a read looked them up: a `Range` request of a chunk read before
/// then costs no row lookup, and can be read from the page cache on the
/// async thread (only a read that has the record's location may try that
/// on a store with packs). At most [`LOCATIONS`] chunks, evicted by
/// S3-FIFO.
///
/// Why a remembered location is sound: a row's location changes only in a
/// commit that calls [`Locations::moved`] after it (a chunk stored again
/// where its row was damaged or taken, compaction moving records, GC
/// dropping rows), which starts a new epoch; a location is answered only in
/// the epoch in which it was looked up, and the epoch is read before the
/// row is, so a lookup that raced such a commit is never answered. Between
/// those commits every location remembered is the row's. A read from it
/// checks the record's header (chunk id, length) all the same, and a pack
/// deleted since is no longer among the packs reads find open, so a read
/// there fails over to the blocking read, which looks the row up again.
pub(super) struct Locations {
    found: Cache<ChunkId, (u64, u64)>,
    epoch: AtomicU64,
}

/// Locations [`Locations`] keeps at most (about 100 bytes each with the
/// cache's own): 1.6 MiB, the chunks of 16 GiB of files at the default
/// 256 KiB average chunk.
pub const LOCATIONS: usize = 16 << 10;

impl Locations {
    pub(super) fn new() -> Self {
        Locations { found: Cache::new(LOCATIONS), epoch: AtomicU64::new(0) }
    }

    /// The epoch to remember a location in: read before the row is.
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// The generation (the record's location) remembered for chunk `id`
    /// in this epoch.
    pub(super) fn get(&self, id: &ChunkId) -> Option<u64> {
        let (generation, epoch) = self.found.get(id)?;
        (epoch == self.epoch()).then_some(generation)
    }

    /// Remembers that chunk `id`'s row named `generation` when read in
    /// `epoch` ([`Locations::epoch`] before the read).
    pub(super) fn remember(&self, id: ChunkId, generation: u64, epoch: u64) {
        self.found.insert(id, (generation, epoch));
    }

    /// After a commit that changed or dropped rows' locations: nothing
    /// remembered before it is answered again.
    pub(super) fn moved(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

/// A decoded chunk's heap bytes: the buffer it was decoded into (its
/// length and the one spare byte of the decoder, see
/// [`super::object::decompress_capped_into`]), and the entry's.
#[derive(Clone)]
struct DecodedWeight;

impl Weighter<ChunkId, Bytes> for DecodedWeight {
    fn weight(&self, _: &ChunkId, b: &Bytes) -> u64 {
        (64 + super::buffer::capacity_for(b.len() + 1)) as u64
    }
}

/// A record's estimated heap bytes: the struct, its strings and its
/// segment offsets.
#[derive(Clone)]
struct RecordWeight;

impl Weighter<FileId, Arc<FileRecord>> for RecordWeight {
    fn weight(&self, _: &FileId, r: &Arc<FileRecord>) -> u64 {
        let strings = r.name.len() + r.content_type.len() + r.chunker.len() + r.tenant.as_str().len();
        (size_of::<FileRecord>() + 64 + strings + r.segments.len() * size_of::<u64>()) as u64
    }
}

/// A segment's estimated heap bytes.
#[derive(Clone)]
struct SegmentWeight;

impl Weighter<(FileId, u32), Segment> for SegmentWeight {
    fn weight(&self, _: &(FileId, u32), s: &Segment) -> u64 {
        (64 + s.len() * size_of::<Entry>()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: FileId, segments: usize) -> Arc<FileRecord> {
        Arc::new(FileRecord {
            id,
            tenant: Default::default(),
            name: "a.bin".into(),
            size: 1,
            content_type: "application/octet-stream".into(),
            created_ms: 1,
            chunker: "fastcdc".into(),
            chunks: 1,
            manifest_digest: ChunkId::of(b""),
            content_hash: None,
            segments: vec![0; segments],
            state: crate::store::record::FileState::Ready,
            added_bytes: None,
        })
    }

    #[test]
    fn a_removal_during_a_read_keeps_the_record_out() {
        let c = FileCache::new();
        let id = FileId::new(1);
        let before = c.removals();
        c.remove(&FileId::new(2), 1);
        c.insert_record(record(id, 1), before);
        assert!(c.record(&id).is_none(), "a removal happened since the read began");
        c.insert_record(record(id, 1), c.removals());
        assert_eq!(c.record(&id).unwrap().id, id);
        c.insert_segment(&id, 0, Arc::from(vec![Entry { id: ChunkId::of(b"x"), len: 1 }]));
        assert!(c.segment(&id, 0).is_some());
        c.remove(&id, 1);
        assert!(c.record(&id).is_none() && c.segment(&id, 0).is_none());
    }

    #[test]
    fn memory_stays_within_the_bounds() {
        let c = FileCache::new();
        let full: Segment = Arc::from(vec![Entry { id: ChunkId::of(b"x"), len: 1 }; 1024]);
        for n in 0..20_000u64 {
            let id = FileId::new(n);
            c.insert_record(record(id, 64), c.removals());
            c.insert_segment(&id, 0, full.clone());
        }
        assert!(c.records.weight() <= RECORDS_BYTES, "records: {}", c.records.weight());
        assert!(c.segments.weight() <= SEGMENTS_BYTES, "segments: {}", c.segments.weight());
        assert!(c.records.len() > 100 && c.segments.len() > 50, "the cache still holds entries");
    }

    #[test]
    fn decoded_chunks_answer_parts_and_stay_within_their_bound() {
        let d = DecodedChunks::new();
        let id = ChunkId::of(b"a chunk");
        let raw = crate::testdata::pseudo_random(300_000, 1);
        // As `object::decode_buffer` hands a decoded chunk over: a pooled
        // buffer taken for its length and one spare byte.
        let decode = || {
            let mut b = crate::store::buffer::take(raw.len() + 1);
            b.extend_from_slice(&raw);
            Ok::<_, ()>(b.freeze(0..raw.len()))
        };
        assert!(d.part(&id, 0, 10).is_none(), "nothing held yet");
        assert_eq!(d.get_or_decode(&id, || Err(())), Err(()), "a failed decode");
        assert!(d.part(&id, 0, 10).is_none(), "a failed decode keeps nothing");
        let kept = d.get_or_decode(&id, decode).unwrap();
        assert!(kept == raw[..]);
        assert!(d.get_or_decode(&id, || Err(())).unwrap() == raw[..], "held: not decoded again");
        assert!(d.part(&id, 1_000, 66_536).unwrap() == raw[1_000..66_536]);
        assert!(d.part(&id, 0, raw.len() + 1).is_none(), "past the chunk's end");
        for n in 0..200u32 {
            d.get_or_decode(&ChunkId::of(&n.to_le_bytes()), decode).unwrap();
        }
        assert!(d.chunks.weight() <= DECODED_BYTES, "{}", d.chunks.weight());
        // Weighed as the buffers that hold them, not as their bytes: a
        // 300,000-byte chunk keeps a buffer sized for the largest chunk.
        let held = d.chunks.len() as u64 * crate::store::buffer::CLASS as u64;
        assert!(held <= DECODED_BYTES, "{} chunks hold {held} bytes of buffers", d.chunks.len());
        assert!(d.chunks.len() > 10, "the cache still holds chunks");
    }

    /// Readers of one chunk at once decode it once: the others wait for it.
    #[test]
    fn concurrent_readers_of_a_chunk_decode_it_once() {
        use std::sync::atomic::AtomicUsize;
        let d = DecodedChunks::new();
        let id = ChunkId::of(b"wanted by four");
        let decodes = AtomicUsize::new(0);
        let start = std::sync::Barrier::new(4);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    start.wait();
                    let got = d
                        .get_or_decode(&id, || {
                            decodes.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(100));
                            Ok::<_, ()>(Bytes::from_static(b"the raw bytes"))
                        })
                        .unwrap();
                    assert_eq!(&got[..], b"the raw bytes");
                });
            }
        });
        assert_eq!(decodes.load(Ordering::SeqCst), 1);
    }
}
