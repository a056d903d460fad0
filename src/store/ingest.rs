//! The one way a byte stream becomes chunks: a [`ChunkSink`] cuts bytes
//! with the store's chunker as they arrive, stores the chunks in batches
//! (one durability barrier per batch) and keeps their entries in order. The
//! regular upload ([`Ingest`]), tus appends ([`super::Appender`]) and the
//! seams of a concatenation all feed one; none of them cuts, batches or
//! puts on its own.

use bytes::Bytes;

use super::chunker::StreamChunker;
use super::error::{Error, Result};
use super::files::NewFile;
use super::manifest::Entry;
use super::name::Tenant;
use super::record::FileRecord;
use super::{ChunkId, FileName, Store};

/// Chunks are stored in batches of about this many bytes.
const PUT_BATCH: usize = 8 << 20;

impl Store {
    /// The most a streamed upload holds in memory on its way to the store:
    /// a batch of cut chunks waiting to be put, and the chunker's window of
    /// up to two chunks. A streaming request reserves this much (or its
    /// declared length, when smaller) of the server's body budget.
    pub fn stream_buffer(&self) -> u64 {
        PUT_BATCH as u64 + 2 * u64::from(self.0.opts.chunking.max)
    }
}

/// Bytes on their way to becoming chunks. Blocking: use it from a blocking
/// thread. Entries come out in stream order, whether cut here or handed in
/// as chunks the store already has ([`ChunkSink::push_known`]).
pub(super) struct ChunkSink {
    store: Store,
    chunker: StreamChunker,
    /// Cut, not yet stored.
    pending: Vec<Bytes>,
    pending_bytes: usize,
    /// Stored (or known), in order, not yet taken by the owner.
    entries: Vec<Entry>,
}

impl ChunkSink {
    /// A sink that starts with `tail` (bytes after the last cut point of
    /// an earlier part of the same stream) in its chunker.
    pub(super) fn with_tail(store: &Store, tail: &[u8]) -> Self {
        ChunkSink {
            store: store.clone(),
            // Room for a batch and the window: see `push`.
            chunker: StreamChunker::with_capacity(
                store.chunker().clone(),
                tail,
                store.stream_buffer() as usize,
            ),
            pending: Vec::new(),
            pending_bytes: 0,
            entries: Vec::new(),
        }
    }

    pub(super) fn new(store: &Store) -> Self {
        Self::with_tail(store, &[])
    }

    /// Cuts `data` into the stream; stores a batch once enough is cut, its
    /// chunks leased until `lease`. Returns how many chunks `data` ended.
    ///
    /// # Errors
    /// As [`Store::put_chunks`].
    pub(super) fn push(&mut self, data: &[u8], lease: u64) -> Result<usize> {
        if data.len() > self.chunker.room() && !self.pending.is_empty() {
            // The pending chunks are slices of the chunker's buffer: stored
            // and dropped first, they leave it to be reused in place. A new
            // buffer instead would be a fresh mapping whose every page
            // faults in (measured: 561,000 faults for a 1 GiB upload).
            self.flush(lease)?;
        }
        let cut = self.chunker.push(data);
        let n = cut.len();
        for c in cut {
            self.pending_bytes += c.len();
            self.pending.push(c);
        }
        if self.pending_bytes >= PUT_BATCH {
            self.flush(lease)?;
        }
        Ok(n)
    }

    /// Appends a chunk the store already holds, after everything cut so far.
    ///
    /// # Errors
    /// As [`Store::put_chunks`] (what is pending is stored first).
    pub(super) fn push_known(&mut self, e: Entry, lease: u64) -> Result<()> {
        self.flush(lease)?;
        self.entries.push(e);
        Ok(())
    }

    /// Stores what is cut and pending.
    ///
    /// # Errors
    /// As [`Store::put_chunks`].
    pub(super) fn flush(&mut self, lease: u64) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let puts = self.store.put_chunks(&self.pending, lease)?;
        self.entries.extend(puts.iter().map(|p| Entry { id: p.id, len: p.len }));
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    /// Ends the stream: the bytes after the last cut become its last
    /// chunk(s), and everything is stored.
    ///
    /// # Errors
    /// As [`Store::put_chunks`].
    pub(super) fn finish(&mut self, lease: u64) -> Result<()> {
        for c in self.chunker.finish_in_place() {
            self.pending_bytes += c.len();
            self.pending.push(c);
        }
        self.flush(lease)
    }

    /// The bytes after the last cut point (not stored yet).
    pub(super) fn tail(&self) -> &[u8] {
        self.chunker.tail()
    }

    /// Drops the bytes after the last cut point (they are known to be the
    /// start of chunks the caller will hand in whole).
    pub(super) fn clear_tail(&mut self) {
        self.chunker.clear();
    }

    /// Whether chunks are cut but not stored.
    pub(super) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Entries stored since the last take, in order.
    pub(super) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub(super) fn take_entries(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.entries)
    }
}

impl Store {
    /// Starts cutting a byte stream into the store (a regular upload) as
    /// a file of `tenant`.
    ///
    /// # Errors
    /// Metadata backend errors (reading the tenant's quota).
    pub fn ingest(&self, tenant: Tenant) -> Result<Ingest> {
        Ok(Ingest {
            room: self.room(&tenant)?,
            tenant,
            sink: ChunkSink::new(self),
            size: 0,
            hasher: blake3::Hasher::new(),
            lease: self.default_lease(),
        })
    }
}

/// A byte stream on its way into the store as one file: a [`ChunkSink`]
/// that also counts and hashes the whole content. Blocking: feed it from a
/// blocking thread.
pub struct Ingest {
    tenant: Tenant,
    sink: ChunkSink,
    size: u64,
    hasher: blake3::Hasher,
    lease: u64,
    /// Bytes the tenant's quota leaves for this file (`None`: no cap).
    room: Option<u64>,
}

impl Ingest {
    /// Adds bytes.
    ///
    /// # Errors
    /// [`Error::TooLarge`] once the stream passes the maximum file size; I/O.
    pub fn push(&mut self, data: &[u8]) -> Result<()> {
        self.size += data.len() as u64;
        let max = self.sink.store.options().max_file_size;
        if self.size > max {
            return Err(Error::TooLarge { what: "file", limit: max, got: self.size });
        }
        if self.room.is_some_and(|room| self.size > room) {
            return Err(self.sink.store.room_exceeded(&self.tenant, self.size));
        }
        self.hasher.update(data);
        self.sink.push(data, self.lease)?;
        Ok(())
    }

    /// Bytes received so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Ends the stream and commits it as a file.
    ///
    /// # Errors
    /// As [`Store::finish_file`].
    pub fn finish(mut self, name: &FileName, declared_type: Option<&str>) -> Result<FileRecord> {
        self.sink.finish(self.lease)?;
        let content_hash: ChunkId = self.hasher.finalize().into();
        self.sink.store.clone().finish_file(NewFile {
            tenant: self.tenant.clone(),
            name: name.clone(),
            declared_type: declared_type.map(str::to_string),
            size: self.size,
            chunks: self.sink.take_entries(),
            content_hash: Some(content_hash),
        })
    }
}
