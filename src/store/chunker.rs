//! Content-defined chunking: FastCDC 2020 with one set of parameters per
//! store, cut exactly where the `fastcdc` crate (pinned) cuts: its tables and
//! masks, in a loop of our own (`cut`; the crate is the reference its tests
//! compare against).
//!
//! Cut points depend only on the bytes, never on how they arrive: a cut is
//! looked for only once `max` bytes are buffered (or the input has ended), and
//! FastCDC never looks further than `max` bytes ahead. So the streaming
//! [`StreamChunker`] (server side: request bodies, tus PATCHes) and the reading
//! [`ReadChunker`] (client side: files) yield exactly the chunks of
//! [`Chunker::chunk_all`] over the whole input, and the same content uploaded
//! by any path lands on the same chunks.

use std::io::{self, Read};
#[cfg(test)]
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use fastcdc::v2020;
use serde::{Deserialize, Serialize};

/// FastCDC parameters: minimum, average (target) and maximum chunk size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkerParams {
    /// Smallest chunk, except the last of a file (bytes, power of two).
    pub min: u32,
    /// Target average chunk size (bytes, power of two).
    pub avg: u32,
    /// Largest chunk (bytes, power of two).
    pub max: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        Self { min: 64 * 1024, avg: 256 * 1024, max: 1024 * 1024 }
    }
}

/// The parameters are outside what FastCDC 2020 accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunking parameters: {0}")]
pub struct InvalidParams(pub String);

impl ChunkerParams {
    /// Checks the parameters: powers of two, `min < avg < max`, within
    /// FastCDC 2020's bounds.
    ///
    /// # Errors
    /// [`InvalidParams`] naming the problem.
    pub fn validate(&self) -> Result<(), InvalidParams> {
        let Self { min, avg, max } = *self;
        for (name, v) in [("min", min), ("avg", avg), ("max", max)] {
            if !v.is_power_of_two() {
                return Err(InvalidParams(format!("{name} = {v} is not a power of two")));
            }
        }
        if !(min < avg && avg < max) {
            return Err(InvalidParams(format!("need min < avg < max, got {min} / {avg} / {max}")));
        }
        if !(v2020::MINIMUM_MIN..=v2020::MINIMUM_MAX).contains(&min)
            || !(v2020::AVERAGE_MIN..=v2020::AVERAGE_MAX).contains(&avg)
            || !(v2020::MAXIMUM_MIN..=v2020::MAXIMUM_MAX).contains(&max)
        {
            return Err(InvalidParams(format!("sizes {min} / {avg} / {max} outside FastCDC 2020's bounds")));
        }
        Ok(())
    }

    /// The chunker id recorded in the store and in every file record: the
    /// algorithm, its normalisation level and the sizes. Content cut under
    /// one id deduplicates only against content cut under the same id.
    pub fn id(&self) -> String {
        format!("fastcdc2020-n1-{}-{}-{}", self.min, self.avg, self.max)
    }
}

/// FastCDC 2020 with fixed parameters and precomputed masks.
#[derive(Debug, Clone)]
pub struct Chunker {
    params: ChunkerParams,
    mask_s: u64,
    mask_l: u64,
}

impl Chunker {
    /// # Errors
    /// [`InvalidParams`] when the parameters do not validate.
    pub fn new(params: ChunkerParams) -> Result<Self, InvalidParams> {
        params.validate()?;
        // Normalisation level 1, as `fastcdc::v2020::FastCDC::new` uses.
        let bits = params.avg.trailing_zeros() as usize;
        Ok(Self { params, mask_s: v2020::MASKS[bits + 1], mask_l: v2020::MASKS[bits - 1] })
    }

    pub fn params(&self) -> ChunkerParams {
        self.params
    }

    /// [`Self::next_cut`], deciding as early as the bytes allow: a cut the
    /// gear hash finds in fewer than `max` bytes is final, so it is answered
    /// without waiting for `max` of them. `scan` carries the search over a
    /// `data` that ends undecided (`None`) to the next call, whose `data`
    /// must start with the same bytes, so that none is hashed twice; it
    /// starts at `ScanState::START` and is reset at each cut. The same cuts
    /// as `next_cut`. Only [`ReadChunker`] asks it: a [`StreamChunker`]'s
    /// tail is what a tus upload keeps across its requests, so the server's
    /// streams keep cutting as `next_cut` does.
    fn next_cut_early(&self, data: &[u8], eof: bool, scan: &mut ScanState) -> Option<usize> {
        let p = self.params;
        let found =
            cut_from(data, p.min as usize, p.avg as usize, p.max as usize, self.mask_s, self.mask_l, *scan);
        match found {
            Ok(n) => {
                *scan = ScanState::START;
                Some(n)
            }
            Err(_) if eof => {
                *scan = ScanState::START;
                Some(data.len())
            }
            Err(at) => {
                *scan = at;
                None
            }
        }
    }

    /// The length of the next chunk at the start of `data`, or `None` when
    /// more input is needed to decide (fewer than `max` bytes and not `eof`).
    /// At `eof` an empty `data` has no chunk: `Some(0)`.
    pub fn next_cut(&self, data: &[u8], eof: bool) -> Option<usize> {
        if !eof && data.len() < self.params.max as usize {
            return None;
        }
        if data.is_empty() {
            return Some(0);
        }
        let p = self.params;
        Some(cut(data, p.min as usize, p.avg as usize, p.max as usize, self.mask_s, self.mask_l))
    }

    /// Chunk lengths of a whole input held in memory.
    pub fn chunk_all(&self, data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let n = self.next_cut(&data[at..], true).unwrap_or(data.len() - at);
            out.push(n);
            at += n;
        }
        out
    }
}

/// FastCDC 2020's gear table (`fastcdc::v2020`'s, unseeded: one value per
/// byte), and each value shifted left by one.
struct Gear {
    one: [u64; 256],
    shifted: [u64; 256],
}

static GEAR: LazyLock<Gear> = LazyLock::new(|| {
    let (one, shifted) = v2020::get_gear_with_seed(0);
    Gear { one: *one, shifted: *shifted }
});

/// The length of the first chunk of `src` (non-empty): exactly what
/// `fastcdc::v2020::cut` answers with the masks `mask_s`, `mask_l` and
/// theirs shifted left by one, by the same steps (two bytes per step from
/// `min` rounded down to even; the small mask before `avg`, the large one
/// after; a cut either after the step's first byte, then of that byte's
/// offset, or after its second, of the second's; an odd last byte never
/// hashed), in a loop without the crate's two bounds checks per step: 8%
/// faster on the machine of docs/PERFORMANCE.md ("The chunker's loop").
fn cut(src: &[u8], min: usize, avg: usize, max: usize, mask_s: u64, mask_l: u64) -> usize {
    cut_from(src, min, avg, max, mask_s, mask_l, ScanState::START).unwrap_or(src.len())
}

/// How far a scan for the next cut got through a chunk's bytes that ended
/// before it decided: the next (even) offset to hash and the gear hash
/// there. A cut found by the scan depends only on the bytes before it, so
/// the scan goes on from here once more bytes follow, and cuts where a scan
/// of them all from the start would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ScanState {
    at: usize,
    hash: u64,
}

impl ScanState {
    const START: ScanState = ScanState { at: 0, hash: 0 };
}

/// [`cut`] from where `scan` left off: `Ok(the cut)` when it is decided (a
/// match of the gear hash, or `max` bytes), else `Err` of where to go on
/// from when more bytes follow `src` (`src` ran out first, under `max`
/// bytes; at the end of the input every byte of `src` is the last chunk).
fn cut_from(
    src: &[u8],
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    scan: ScanState,
) -> Result<usize, ScanState> {
    let len = src.len();
    if len <= min {
        return Err(scan);
    }
    let end = len.min(max);
    // The small mask up to `avg`, the large one from there; the last step
    // ends at or before `end` (an odd last byte is never hashed).
    let mid = (avg & !1).max(min & !1);
    let to = end & !1;
    // `scan` stopped at the end of an earlier `src` that these bytes start
    // with, so `from <= to`.
    debug_assert!(scan.at <= to, "a scan resumed on fewer bytes than it stopped at");
    let from = (min & !1).max(scan.at);
    let gear = &*GEAR;
    let mut hash = scan.hash;
    if from < mid {
        match self::scan(&src[from..mid.min(to)], from, hash, mask_s, gear) {
            Ok(h) => hash = h,
            Err(at) => return Ok(at),
        }
    }
    let from = from.max(mid);
    if from < to {
        match self::scan(&src[from..to], from, hash, mask_l, gear) {
            Ok(h) => hash = h,
            Err(at) => return Ok(at),
        }
    }
    if end == max { Ok(max) } else { Err(ScanState { at: to, hash }) }
}

/// Rolls the gear hash over `pairs` (an even number of bytes, found at
/// `offset` of the input) from `hash`: `Err(offset of the cut)` at the first
/// position whose hash has none of `mask`'s bits (`mask << 1` after a
/// step's first byte, as the crate's doubled hash there needs), else
/// `Ok(the hash)`.
#[inline(always)]
fn scan(pairs: &[u8], offset: usize, mut hash: u64, mask: u64, gear: &Gear) -> Result<u64, usize> {
    let mask_ls = mask << 1;
    for (k, p) in pairs.chunks_exact(2).enumerate() {
        hash = (hash << 2).wrapping_add(gear.shifted[usize::from(p[0])]);
        if hash & mask_ls == 0 {
            return Err(offset + 2 * k);
        }
        hash = hash.wrapping_add(gear.one[usize::from(p[1])]);
        if hash & mask == 0 {
            return Err(offset + 2 * k + 1);
        }
    }
    Ok(hash)
}

/// Chunks a stream pushed in pieces of any size. Holds at most `max` bytes
/// plus the last push.
#[derive(Debug)]
pub struct StreamChunker {
    chunker: Chunker,
    buf: BytesMut,
}

impl StreamChunker {
    pub fn new(chunker: Chunker) -> Self {
        Self::with_tail(chunker, &[])
    }

    /// Continues a stream whose bytes after its last cut point were `tail`
    /// (how a tus upload resumes across PATCH requests).
    pub fn with_tail(chunker: Chunker, tail: &[u8]) -> Self {
        let cap = chunker.params.max as usize * 2;
        Self::with_capacity(chunker, tail, cap)
    }

    /// [`Self::with_tail`] with a buffer of `cap` bytes at first. The chunks
    /// it returns are slices of that buffer: once every one of them is
    /// dropped, the buffer is reused in place (the bytes after the last cut
    /// move to its front) instead of a new one being allocated.
    pub fn with_capacity(chunker: Chunker, tail: &[u8], cap: usize) -> Self {
        let mut buf = BytesMut::with_capacity(cap.max(tail.len()));
        buf.extend_from_slice(tail);
        Self { chunker, buf }
    }

    /// Bytes that fit after what is buffered without growing the buffer.
    pub fn room(&self) -> usize {
        self.buf.capacity() - self.buf.len()
    }

    /// Adds input; returns every chunk now decided, in order.
    pub fn push(&mut self, data: &[u8]) -> Vec<Bytes> {
        self.buf.extend_from_slice(data);
        self.drain(false)
    }

    /// Ends the input; returns the remaining chunks.
    pub fn finish(mut self) -> Vec<Bytes> {
        self.drain(true)
    }

    /// Ends the input in place (the chunker is empty afterwards).
    pub fn finish_in_place(&mut self) -> Vec<Bytes> {
        self.drain(true)
    }

    /// Bytes after the last cut point: not yet a chunk.
    pub fn tail(&self) -> &[u8] {
        &self.buf
    }

    /// Forgets the buffered bytes (the stream restarts at a cut point).
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    fn drain(&mut self, eof: bool) -> Vec<Bytes> {
        let mut out = Vec::new();
        while !self.buf.is_empty() {
            match self.chunker.next_cut(&self.buf, eof) {
                Some(n) if n > 0 => out.push(self.buf.split_to(n).freeze()),
                _ => break,
            }
        }
        out
    }
}

/// Chunks anything readable (a file, stdin) with bounded memory; yields each
/// chunk's bytes in order.
///
/// Input is read in pieces of `READ_MAXES` (2) × `max` bytes, each straight
/// into a buffer after the bytes the last piece left uncut (fewer than
/// `max`), and the chunks are slices of that buffer: the bytes are copied
/// once by the kernel, and only a piece's uncut tail a second time. The
/// tail is only what follows the last cut the piece decides: a cut found
/// in fewer than `max` bytes is final, and the search over the tail goes on
/// where it stopped (`Chunker::next_cut_early`), so it is about an
/// average chunk, not the `max` bytes a cut can need. The
/// reader needs no buffer of its own (a `BufReader` would copy every byte
/// once more). A buffer is given back to the reader when the last chunk cut
/// from it is dropped, and read into again as it is: no new pages to fault
/// in, no zeroing (docs/PERFORMANCE.md, U1).
pub struct ReadChunker<R> {
    reader: R,
    chunker: Chunker,
    /// Bytes read and not yet cut (fewer than `max` once a piece is cut).
    pending: Bytes,
    /// How far the search for the next cut got through `pending`.
    scan: ScanState,
    ready: std::collections::VecDeque<Bytes>,
    eof: bool,
    pieces: Arc<Pieces>,
}

/// A read piece, in multiples of the largest chunk. With the default 1 MiB
/// largest chunk a buffer (the piece and a tail under `max`) is 3 MiB:
/// under the 4 MiB mmap threshold `depot put` sets (at 4 pieces, 5 MiB
/// buffers were each a fresh mapping: 317,000 page faults per GiB and three
/// times the system time).
const READ_MAXES: usize = 2;

/// Buffers kept for reuse at most. The reader keeps no more than were in
/// use at once (for `depot put`, by the bounds of its queues, its next
/// batch and its requests in flight, about 25 of 3 MiB); this only bounds
/// a consumer that holds chunks for long.
const PIECES_KEPT: usize = 32;

/// A reader's buffers given back: each of the same length, every byte
/// initialised (by the read that last filled it, or zeroed once when made),
/// so one is read into again without a memset.
///
/// Not the server's chunk-buffer pool (`store::buffer`, whose
/// `take_to_overwrite` reuses initialised bytes the same way): that pool is
/// one per process, capped at four batch-sized buffers for the server's
/// memory goal, and its 4 MiB class would put each 3 MiB piece above the
/// 4 MiB mmap threshold `depot put` sets; a put may hold about 25 pieces
/// (by the bounds of its queues, not measured). These buffers live as long
/// as the reader and its chunks.
#[derive(Default)]
struct Pieces {
    free: Mutex<Vec<Vec<u8>>>,
    /// Buffers made (not reused).
    #[cfg(test)]
    made: AtomicUsize,
}

impl Pieces {
    /// A buffer of `len` initialised bytes: a given-back one if there is one
    /// of that length. Its bytes are stale: hand out only what is read.
    fn take(&self, len: usize) -> Vec<u8> {
        let reused = self.free.lock().unwrap_or_else(PoisonError::into_inner).pop();
        match reused {
            Some(v) if v.len() == len => v,
            _ => {
                #[cfg(test)]
                self.made.fetch_add(1, Ordering::Relaxed);
                vec![0; len]
            }
        }
    }
}

/// One buffer of a [`ReadChunker`], owned by the chunks cut from it
/// ([`Bytes::from_owner`]); it goes back to its reader with the last.
struct Piece {
    vec: Vec<u8>,
    home: Arc<Pieces>,
}

impl AsRef<[u8]> for Piece {
    fn as_ref(&self) -> &[u8] {
        &self.vec
    }
}

impl Drop for Piece {
    fn drop(&mut self) {
        let mut free = self.home.free.lock().unwrap_or_else(PoisonError::into_inner);
        if free.len() < PIECES_KEPT {
            free.push(std::mem::take(&mut self.vec));
        }
    }
}

impl<R: Read> ReadChunker<R> {
    pub fn new(reader: R, chunker: Chunker) -> Self {
        Self {
            reader,
            chunker,
            pending: Bytes::new(),
            scan: ScanState::START,
            ready: Default::default(),
            eof: false,
            pieces: Arc::default(),
        }
    }

    /// Reads the next piece and cuts what it can; at the end of the input,
    /// cuts everything.
    fn fill(&mut self) -> io::Result<()> {
        let max = self.chunker.params.max as usize;
        let want = max * READ_MAXES;
        // One length for every buffer (the uncut tail is under `max`), so
        // that any given-back one serves the next piece.
        let mut buf = self.pieces.take(max + want);
        let before = self.pending.len();
        buf[..before].copy_from_slice(&self.pending);
        // Reads until `want` bytes or the end of the input (a short piece
        // means the end); interrupted reads are retried. Only what was read
        // is handed out: past it are another piece's stale bytes.
        let mut got = 0;
        while got < want {
            match self.reader.read(&mut buf[before + got..before + want]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.eof = got < want;
        let piece = Piece { vec: buf, home: Arc::clone(&self.pieces) };
        let mut data = Bytes::from_owner(piece).slice(..before + got);
        while !data.is_empty() {
            match self.chunker.next_cut_early(&data, self.eof, &mut self.scan) {
                Some(n) if n > 0 => self.ready.push_back(data.split_to(n)),
                _ => break,
            }
        }
        self.pending = data;
        Ok(())
    }
}

impl<R: Read> Iterator for ReadChunker<R> {
    type Item = io::Result<Bytes>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(c) = self.ready.pop_front() {
                return Some(Ok(c));
            }
            if self.eof {
                return None;
            }
            if let Err(e) = self.fill() {
                self.eof = true;
                return Some(Err(e));
            }
        }
    }
}

#[cfg(test)]
mod tests;
