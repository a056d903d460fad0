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
    let mut end = src.len();
    if end <= min {
        return end;
    }
    let mut center = avg;
    if end > max {
        end = max;
    } else if end < center {
        center = end;
    }
    let from = min & !1;
    let mid = (center & !1).max(from);
    let to = (end & !1).max(mid);
    let gear = &*GEAR;
    match scan(&src[from..mid], from, 0, mask_s, gear) {
        Err(at) => at,
        Ok(hash) => scan(&src[mid..to], mid, hash, mask_l, gear).err().unwrap_or(end),
    }
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
/// reader needs no buffer of its own (a `BufReader` would copy every byte
/// once more). A buffer is given back to the reader when the last chunk cut
/// from it is dropped, and read into again as it is: no new pages to fault
/// in, no zeroing (docs/PERFORMANCE.md, U1).
pub struct ReadChunker<R> {
    reader: R,
    chunker: Chunker,
    /// Bytes read and not yet cut (fewer than `max` once a piece is cut).
    pending: Bytes,
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
            match self.chunker.next_cut(&data, self.eof) {
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
mod tests {
    use super::*;
    use crate::testdata::golden_input;
    use proptest::prelude::*;

    /// A reader that hands out its data in pieces of the given sizes, in
    /// turn (a pipe that delivers a little at a time).
    struct Trickle<'a> {
        data: &'a [u8],
        at: usize,
        sizes: &'a [usize],
        i: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let size = self.sizes.get(self.i % self.sizes.len().max(1)).copied().unwrap_or(7);
            self.i += 1;
            let n = size.min(out.len()).min(self.data.len() - self.at);
            out[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn small() -> Chunker {
        Chunker::new(ChunkerParams { min: 256, avg: 1024, max: 4096 }).unwrap()
    }

    #[test]
    fn golden_cut_points() {
        // If this fails, cut points moved: every stored file would stop
        // deduplicating against new uploads. Never update it casually.
        let data = golden_input(4 << 20);
        let lens = Chunker::new(ChunkerParams::default()).unwrap().chunk_all(&data);
        let mut offsets = Vec::new();
        let mut at = 0;
        for n in &lens {
            at += n;
            offsets.push(at);
        }
        assert_eq!(offsets, GOLDEN_DEFAULT);
        // And the same through the crate's own whole-input iterator.
        let theirs: Vec<usize> =
            v2020::FastCDC::new(&data, 65536, 262144, 1048576).map(|c| c.length).collect();
        assert_eq!(lens, theirs);
    }

    const GOLDEN_DEFAULT: &[usize] =
        &[329537, 873798, 1477169, 2141508, 2496592, 2803379, 3108076, 3423689, 3781079, 4194304];

    #[test]
    fn golden_cut_points_small() {
        // Many cut points, for ports of the chunker (the Python client's).
        let data = golden_input(64 << 10);
        let lens = small().chunk_all(&data);
        let theirs: Vec<usize> = v2020::FastCDC::new(&data, 256, 1024, 4096).map(|c| c.length).collect();
        assert_eq!(lens, theirs);
        let offsets: Vec<usize> = lens
            .iter()
            .scan(0, |at, n| {
                *at += n;
                Some(*at)
            })
            .collect();
        assert_eq!(offsets, GOLDEN_SMALL);
    }

    const GOLDEN_SMALL: &[usize] = &[
        866, 2054, 3292, 4428, 6082, 8549, 9295, 10876, 12502, 13490, 15356, 15633, 17225, 18689, 20334,
        21809, 24030, 28126, 29158, 30354, 32931, 33210, 34292, 35684, 36725, 37755, 38305, 38854, 40119,
        41006, 42606, 44883, 46032, 46425, 48529, 49558, 50569, 51277, 52934, 54453, 55526, 56554, 57905,
        59068, 59379, 60994, 62030, 63777, 64167, 65536,
    ];

    #[test]
    fn params_are_validated() {
        assert!(ChunkerParams::default().validate().is_ok());
        assert!(ChunkerParams { min: 100, avg: 1024, max: 4096 }.validate().is_err());
        assert!(ChunkerParams { min: 4096, avg: 1024, max: 8192 }.validate().is_err());
        assert!(ChunkerParams { min: 32, avg: 1024, max: 4096 }.validate().is_err());
        assert_eq!(ChunkerParams::default().id(), "fastcdc2020-n1-65536-262144-1048576");
    }

    #[test]
    fn empty_input_has_no_chunks() {
        assert!(small().chunk_all(&[]).is_empty());
        assert!(StreamChunker::new(small()).finish().is_empty());
        assert_eq!(ReadChunker::new(&[][..], small()).count(), 0);
    }

    /// Chunks dropped as they come give their buffer back, and the reader
    /// reads into it again: two buffers serve the whole input (the piece
    /// being cut and the one its uncut tail came from). Reused buffers hold
    /// an earlier piece's bytes; a short last read and short reads in between
    /// must hand out only what was read.
    #[test]
    fn read_buffers_are_reused_and_only_what_was_read_is_handed_out() {
        let c = small();
        let data = golden_input(200_003);
        let sizes = [5000, 1, 3000, 7777, 12_288];
        let mut rc = ReadChunker::new(Trickle { data: &data, at: 0, sizes: &sizes, i: 0 }, c.clone());
        let (mut at, mut lens) = (0, Vec::new());
        for chunk in &mut rc {
            let chunk = chunk.unwrap();
            assert_eq!(&chunk[..], &data[at..at + chunk.len()], "chunk at {at}");
            at += chunk.len();
            lens.push(chunk.len());
        }
        assert_eq!(lens, c.chunk_all(&data));
        let pieces = data.len() / (4096 * READ_MAXES);
        let made = rc.pieces.made.load(Ordering::Relaxed);
        assert!(made <= 2, "{made} buffers made for about {pieces} pieces");
    }

    #[test]
    fn zeros_cut_at_max() {
        let c = small();
        let lens = c.chunk_all(&vec![0u8; 10_000]);
        assert_eq!(lens, vec![4096, 4096, 1808]);
    }

    proptest! {
        #[test]
        fn streaming_equals_whole_input(
            seed in any::<u64>(),
            len in 0usize..60_000,
            splits in proptest::collection::vec(1usize..9000, 0..40),
        ) {
            let splits_again = splits.clone();
            let c = small();
            let mut x = seed | 1;
            let data: Vec<u8> = (0..len).map(|_| { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x as u8 }).collect();
            let whole = c.chunk_all(&data);

            let mut s = StreamChunker::new(c.clone());
            let mut got: Vec<usize> = Vec::new();
            let mut at = 0;
            for n in splits {
                let end = (at + n).min(data.len());
                got.extend(s.push(&data[at..end]).iter().map(|b| b.len()));
                at = end;
            }
            got.extend(s.push(&data[at..]).iter().map(|b| b.len()));
            got.extend(s.finish().iter().map(|b| b.len()));
            prop_assert_eq!(&got, &whole);

            let via_read: Vec<usize> = ReadChunker::new(&data[..], c.clone()).map(|r| r.unwrap().len()).collect();
            prop_assert_eq!(&via_read, &whole);
            // Read in short pieces of varying sizes (a pipe): the same chunks,
            // and their bytes are the input's.
            let trickle = Trickle { data: &data, at: 0, sizes: &splits_again, i: 0 };
            let chunks: Vec<Bytes> = ReadChunker::new(trickle, c.clone()).map(|r| r.unwrap()).collect();
            prop_assert_eq!(chunks.iter().map(|b| b.len()).collect::<Vec<_>>(), whole.clone());
            prop_assert_eq!(chunks.concat(), data.clone());
            // And each chunk dropped before the next is read, so that the
            // reader reuses its buffers: the same bytes.
            let mut at = 0;
            for chunk in ReadChunker::new(Trickle { data: &data, at: 0, sizes: &splits_again, i: 0 }, c.clone()) {
                let chunk = chunk.unwrap();
                prop_assert_eq!(&chunk[..], &data[at..at + chunk.len()]);
                at += chunk.len();
            }
            prop_assert_eq!(at, data.len());

            // Sizes within bounds, and concatenation gives the input back.
            for (i, n) in whole.iter().enumerate() {
                prop_assert!(*n <= 4096);
                if i + 1 < whole.len() { prop_assert!(*n >= 256); }
            }
            prop_assert_eq!(whole.iter().sum::<usize>(), data.len());
        }

        /// The loop cuts where the crate does, for every length around
        /// the bounds (odd and even, under `min`, past `max`) and for
        /// inputs of few distinct bytes (long runs without a cut).
        #[test]
        fn cuts_where_the_crate_cuts(
            seed in any::<u64>(),
            len in 1usize..20_000,
            kinds in 1u64..=256,
            sizes in prop::sample::select(vec![(64usize, 256usize, 1024usize), (256, 1024, 4096), (1024, 2048, 8192), (64, 512, 8192)]),
        ) {
            let (min, avg, max) = sizes;
            let c = Chunker::new(ChunkerParams { min: min as u32, avg: avg as u32, max: max as u32 }).unwrap();
            let mut x = seed | 1;
            let data: Vec<u8> = (0..len).map(|_| { x ^= x << 13; x ^= x >> 7; x ^= x << 17; (x % kinds) as u8 }).collect();
            let mut at = 0;
            while at < data.len() {
                let rest = &data[at..];
                let theirs = v2020::cut(rest, min, avg, max, c.mask_s, c.mask_l, c.mask_s << 1, c.mask_l << 1).1;
                prop_assert_eq!(cut(rest, min, avg, max, c.mask_s, c.mask_l), theirs, "at {}", at);
                at += theirs.max(1);
            }
        }

        #[test]
        fn resuming_from_a_tail_continues_the_same_cuts(seed in any::<u64>(), len in 0usize..40_000, at in any::<prop::sample::Index>()) {
            let c = small();
            let mut x = seed | 1;
            let data: Vec<u8> = (0..len).map(|_| { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x as u8 }).collect();
            let split = at.index(data.len() + 1);
            let mut first = StreamChunker::new(c.clone());
            let mut got: Vec<usize> = first.push(&data[..split]).iter().map(|b| b.len()).collect();
            let mut second = StreamChunker::with_tail(c.clone(), first.tail());
            got.extend(second.push(&data[split..]).iter().map(|b| b.len()));
            got.extend(second.finish().iter().map(|b| b.len()));
            prop_assert_eq!(got, c.chunk_all(&data));
        }
    }
}
