//! Chunk-sized buffers, reused.
//!
//! The server pins glibc's mmap threshold at 128 KiB (so that freed upload
//! batches go back to the system instead of staying in per-thread heaps), so
//! every buffer of a chunk's size (64 KiB – 1 MiB by default, 256 KiB on
//! average) would be a fresh mapping: faulted in page by page, then unmapped.
//! Measured on a 1 GiB download, that was two fresh mappings per chunk
//! (514,000 page faults, 1.41 s of server CPU against 0.56 s without the
//! pinned threshold). Reading into a buffer that was used before touches no
//! new page.
//!
//! [`take`] hands out a [`Buffer`] with room for at least the bytes asked
//! for; dropping it (or the [`Bytes`] made from it by [`Buffer::freeze`],
//! once the last clone is gone) gives it back. The pool keeps
//! [`POOLED_BYTES`] of free capacity, and more while its buffers, free and
//! in use together, stay within the burst set by [`set_burst`]; [`decay`],
//! called every few seconds, frees what stayed unused beyond
//! [`POOLED_BYTES`]. Buffers it does not keep are freed as usual. Buffers
//! below [`POOLED_MIN`] are ordinary allocations: the allocator's heaps
//! already reuse them.

use std::ops::{Deref, DerefMut, Range};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

/// The page size [`page_lead`] aligns to, in bytes.
pub const PAGE: usize = 4096;

/// How many bytes into `buf` a read from file offset `offset` should land
/// so that each byte sits at the same offset within a 4 KiB page as its
/// source (0 to 4095). The kernel's copy out of the page cache slows down
/// about fivefold on the AMD EPYC machines of docs/PERFORMANCE.md when the
/// destination runs 16 bytes ahead of the source within a page, which is
/// where a large allocation from the system allocator starts (a mapping of
/// its own, past a 16-byte header) and a page-aligned source lands: a
/// whole chunk read that way spent 62% of a download's server CPU in that
/// copy (D1, "Reads placed at the page offset of their source").
pub fn page_lead(buf: &[u8], offset: u64) -> usize {
    (offset as usize).wrapping_sub(buf.as_ptr().addr()) & (PAGE - 1)
}

/// [`take_to_overwrite`] for a read of at most `len` bytes from file offset
/// `offset`, and where in it the read should start ([`page_lead`]): the
/// buffer holds at least `len` initialised bytes past that.
pub fn take_placed(len: usize, offset: u64) -> (Buffer, usize) {
    let b = take_to_overwrite(PAGE + len);
    let at = page_lead(&b, offset);
    (b, at)
}

/// [`take`] for a read of at most `len` bytes from file offset `offset`
/// that appends to the buffer (as the object stores' blocking reads do):
/// the buffer holds [`page_lead`] zeros, so that each byte read lands at
/// its source's offset within a page, and has room for `len` more; with
/// where the read starts.
pub fn take_to_append(len: usize, offset: u64) -> (Buffer, usize) {
    let mut b = take(PAGE + len);
    let at = page_lead(&b, offset);
    b.vec.resize(at, 0);
    (b, at)
}

/// The smallest capacity worth pooling: the server's mmap threshold.
pub const POOLED_MIN: usize = 128 * 1024;

/// The largest capacity kept: a 4 MiB chunk (the largest allowed) and its
/// object header, rounded to the pool's step.
pub const POOLED_MAX: usize = 4 * 1024 * 1024 + STEP;

/// The free capacity the pool keeps whatever the burst ([`set_burst`]), in
/// bytes: four buffers of [`POOLED_MAX`], one `depot put`'s batches (4 in
/// flight, each read into one buffer: `POST /api/chunks`), or fifteen of
/// [`CLASS`] (a download reads 4 chunks ahead of the ones being written).
/// The buffers stay resident, each as far as its largest use touched it, so
/// this is what reuse costs when idle. A put also keeps up to four
/// [`CLASS`] buffers busy beside its batches (the staging of direct writes
/// into pack files), which a pool of only this much never kept. The pool holds no more buffers than
/// were in use at once; with per-chunk buffers of several sizes, a cap of
/// 16 MiB once let a long upload's peak memory grow as the pool filled up
/// (bench M1: 8 GiB against 1 GiB, 1.21x).
pub const POOLED_BYTES: usize = 4 * POOLED_MAX;

/// The capacity of every pooled buffer up to it: a default-sized largest
/// chunk (1 MiB) with its object header, or decoded with the one spare byte
/// of [`super::object::decompress_capped_into`]. One size for all means a
/// buffer given back fits any later request, so the pool holds no more
/// buffers than were ever in use at once, however long the server runs
/// (with sizes rounded to steps instead, it kept adding buffers of sizes it
/// lacked until its cap, and peak memory grew with the length of a
/// transfer). Larger requests (a batch of chunks read into one buffer,
/// `POST /api/chunks`; a chunk of a store with larger chunks) all get
/// [`POOLED_MAX`], for the same reason: batches are as long as the chunks
/// they carry, and with capacities rounded to 64 KiB the pool filled with
/// buffers a little too short for the next batch, while new ones were
/// made beside them (bench M1: an upload's peak memory grew by 6 MiB from
/// 1 GiB to 8 GiB, 1.12x).
pub const CLASS: usize = 1024 * 1024 + STEP;

/// The room above a power of two that [`CLASS`] and [`POOLED_MAX`] leave
/// for an object's header.
const STEP: usize = 64 * 1024;

static POOL: Pool = Pool::new();

/// Sets the burst, in bytes: beyond [`POOLED_BYTES`] of free buffers, the
/// pool keeps a buffer given back while the capacity of its buffers, free
/// and in use together, stays within it. The server passes
/// `limits.max_buffered`, the memory its request bodies may hold, so that
/// what the pool keeps does not double that. 0 until set: a client
/// process keeps [`POOLED_BYTES`] at most, as when the burst is lower.
///
/// Without it, buffers beyond [`POOLED_BYTES`] were each a new mapping,
/// faulted in page by page: one `depot put` of 1 GiB took 48,000–71,000
/// page faults in the server, against 13,000–15,400 with the burst
/// (docs/PERFORMANCE.md, C1, "The pool's burst").
pub fn set_burst(bytes: usize) {
    POOL.burst.store(bytes, Ordering::Relaxed);
}

/// Frees the pooled buffers that stayed unused since the last call, beyond
/// [`POOLED_BYTES`] (the oldest given back first); returns the capacity
/// freed, in bytes. A pool drained to [`POOLED_BYTES`] or below at some
/// point since the last call frees nothing; an idle one is back at
/// [`POOLED_BYTES`] or below after at most two calls (the first after a
/// burst may find it drained). The server calls it every few seconds.
pub fn decay() -> usize {
    POOL.decay()
}

/// The capacity of the buffers the pool holds for reuse now, in bytes
/// (the `depot_buffer_pool_bytes` gauge).
pub fn pooled_bytes() -> usize {
    POOL.bytes()
}

/// Free buffers, their total capacity, the lowest that total has been
/// since the last [`Pool::decay`], and the capacity of the pool-sized
/// buffers handed out and not given back.
struct Free {
    bufs: Vec<Vec<u8>>,
    bytes: usize,
    low: usize,
    out: usize,
}

struct Pool {
    inner: Mutex<Free>,
    /// See [`set_burst`].
    burst: AtomicUsize,
}

impl Pool {
    const fn new() -> Self {
        Pool {
            inner: Mutex::new(Free { bufs: Vec::new(), bytes: 0, low: 0, out: 0 }),
            burst: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Free> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn take(&'static self, len: usize) -> Buffer {
        let mut b = self.take_stale(len);
        b.vec.clear();
        b
    }

    /// A buffer with room for `len` bytes, holding what its last use left
    /// (a pooled buffer keeps its length when given back).
    fn take_stale(&'static self, len: usize) -> Buffer {
        if !(POOLED_MIN..=POOLED_MAX).contains(&len) {
            return Buffer { vec: Vec::with_capacity(len), pool: self, padding: 0, counted: 0 };
        }
        let mut free = self.lock();
        let reused = {
            let best = free
                .bufs
                .iter()
                .enumerate()
                .filter(|(_, v)| v.capacity() >= len)
                .min_by_key(|(_, v)| v.capacity())
                .map(|(i, _)| i);
            best.map(|i| {
                // `remove`, not `swap_remove`: the front stays the buffers
                // given back longest ago, which `decay` frees first.
                let v = free.bufs.remove(i);
                free.bytes -= v.capacity();
                free.low = free.low.min(free.bytes);
                v
            })
        };
        let counted = reused.as_ref().map_or(capacity_for(len), Vec::capacity);
        free.out += counted;
        drop(free);
        // A new buffer is allocated outside the lock.
        let vec = reused.unwrap_or_else(|| Vec::with_capacity(counted));
        Buffer { vec, pool: self, padding: 0, counted }
    }

    /// Takes back `vec`, handed out as `counted` bytes of capacity (0 when
    /// not pool-sized then).
    fn give(&self, vec: Vec<u8>, counted: usize) {
        let cap = vec.capacity();
        let pooled = (POOLED_MIN..=POOLED_MAX).contains(&cap);
        if counted == 0 && !pooled {
            // Neither counted nor kept: no lock (small buffers are dropped
            // on every request).
            return;
        }
        let burst = self.burst.load(Ordering::Relaxed);
        let mut free = self.lock();
        free.out -= counted;
        if !pooled {
            return;
        }
        if free.bytes + cap <= POOLED_BYTES || free.bytes + free.out + cap <= burst {
            // Its length is kept: those bytes are initialised, so a reader
            // that overwrites them ([`take_to_overwrite`]) need not zero
            // them again.
            free.bytes += cap;
            free.bufs.push(vec);
        }
    }

    fn decay(&self) -> usize {
        let freed: Vec<Vec<u8>> = {
            let mut free = self.lock();
            // What stayed unused beyond the floor goes, to within one
            // buffer below the target rather than one above.
            let spare = free.low.min(free.bytes).saturating_sub(POOLED_BYTES);
            let target = free.bytes - spare;
            let mut n = 0;
            while free.bytes > target {
                free.bytes -= free.bufs[n].capacity();
                n += 1;
            }
            free.low = free.bytes;
            free.bufs.drain(..n).collect()
        };
        // Unmapped outside the lock.
        freed.iter().map(Vec::capacity).sum()
    }

    fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

/// The capacity of a new buffer [`take`] makes for `len` bytes, and so the
/// memory it may keep while in use: `len` below [`POOLED_MIN`] and above
/// [`POOLED_MAX`] (not pooled), else [`CLASS`] up to it and [`POOLED_MAX`]
/// above it. (A reused buffer may be larger: the smallest free one that
/// fits.) Capacity past what a buffer's uses touch is address space, not
/// resident memory: buffers this large are mappings of their own.
pub fn capacity_for(len: usize) -> usize {
    match len {
        _ if !(POOLED_MIN..=POOLED_MAX).contains(&len) => len,
        _ if len <= CLASS => CLASS,
        _ => POOLED_MAX,
    }
}

/// An empty buffer with room for at least `len` bytes: a reused one when the
/// pool has one that fits (the smallest such), else a new one.
pub fn take(len: usize) -> Buffer {
    POOL.take(len)
}

/// A buffer of at least `len` initialised bytes (length, not just
/// capacity) for a reader that overwrites its first `len` and hands out
/// only what it read (`freeze(0..n)`, or `n` passed along; never
/// truncated): its bytes are what earlier uses left, zeroes only past the
/// longest of them, and it goes back to the pool at that length, so a
/// reused buffer costs no memset (a whole-chunk read into a zeroed buffer
/// spent 9% of a download's server CPU on the zeroing, and a buffer cut to
/// each chunk's length still 4.6%: docs/PERFORMANCE.md, D1). Those stale
/// bytes are other chunks': never hand out more than was read. Pooled even
/// when `len` is below [`POOLED_MIN`] (a range's 64 KiB).
pub fn take_to_overwrite(len: usize) -> Buffer {
    let mut b = POOL.take_stale(len.max(POOLED_MIN));
    if b.vec.len() < len {
        b.vec.resize(len, 0);
    }
    b
}

/// A byte buffer that goes back to the pool when dropped. Dereferences to
/// the `Vec<u8>` it wraps (empty when taken).
pub struct Buffer {
    vec: Vec<u8>,
    pool: &'static Pool,
    /// The capacity counted as handed out when it was taken.
    counted: usize,
    /// Zeros appended by [`Buffer::pad_to`] since it was taken.
    padding: usize,
}

impl Buffer {
    /// The bytes `range` of the buffer as [`Bytes`], without a copy; the
    /// buffer goes back to the pool when the last clone is dropped.
    ///
    /// # Panics
    /// When `range` is outside the buffer's length.
    pub fn freeze(self, range: Range<usize>) -> Bytes {
        assert!(range.start <= range.end && range.end <= self.vec.len(), "range outside the buffer");
        if range.start == 0 && range.end == self.vec.len() && self.vec.capacity() < POOLED_MIN {
            return Bytes::from(self.into_vec());
        }
        Bytes::from_owner(self).slice(range)
    }

    /// Pads with zeros so that the next byte appended lands `phase` bytes
    /// past an `align`-aligned address (`align` a power of two, `phase`
    /// below it; `objects::start_chunk` asks for where a direct write
    /// takes a chunk from without copying it). The padding comes only from
    /// the capacity beyond `reserved` bytes of content (what the request
    /// may still bring, and has brought), so appending them never makes the
    /// buffer grow and move what was placed; without the room, nothing is
    /// appended.
    pub fn pad_to(&mut self, phase: usize, align: usize, reserved: usize) {
        debug_assert!(align.is_power_of_two() && phase < align);
        let spare = self.vec.capacity().saturating_sub(reserved + self.padding);
        let next = self.vec.as_ptr().addr() + self.vec.len();
        let pad = phase.wrapping_sub(next) & (align - 1);
        if pad <= spare {
            self.vec.resize(self.vec.len() + pad, 0);
            self.padding += pad;
        }
    }

    /// Zeros appended by [`Self::pad_to`] so far.
    pub fn padding(&self) -> usize {
        self.padding
    }

    /// Bytes appended that are content, not padding: what a body's memory
    /// budget counts as held.
    pub fn held(&self) -> usize {
        self.vec.len() - self.padding
    }

    /// The plain vector, no longer pooled.
    pub fn into_vec(mut self) -> Vec<u8> {
        std::mem::take(&mut self.vec)
    }
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("len", &self.vec.len())
            .field("capacity", &self.vec.capacity())
            .finish()
    }
}

impl AsRef<[u8]> for Buffer {
    fn as_ref(&self) -> &[u8] {
        &self.vec
    }
}

impl Deref for Buffer {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.vec
    }
}

impl DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.vec
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.vec), self.counted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `page_lead` places a byte at its source's offset within a page, for
    /// any buffer address and source offset, skipping less than a page.
    #[test]
    fn page_lead_matches_the_sources_page_offset() {
        let buf = vec![0u8; 3 * PAGE];
        for skip in [0, 1, 16, 4095] {
            let b = &buf[skip..];
            for offset in [0u64, 56, 4096, 4152, 12_345, (1 << 33) + 7] {
                let lead = page_lead(b, offset);
                assert!(lead < PAGE);
                assert_eq!((b.as_ptr().addr() + lead) % PAGE, offset as usize % PAGE, "{skip} {offset}");
            }
        }
        let (b, at) = take_placed(300_000, 56);
        assert!(b.len() - at >= 300_000 && (b.as_ptr().addr() + at) % PAGE == 56, "room past the lead");
        let (b, at) = take_to_append(300_000, 4152);
        assert_eq!(b.len(), at, "the lead, nothing more");
        assert!(b.capacity() - at >= 300_000 && (b.as_ptr().addr() + at) % PAGE == 56, "room past the lead");
    }

    #[test]
    fn a_buffer_given_back_is_taken_again_and_bytes_give_it_back_when_dropped() {
        static P: Pool = Pool::new();
        let len = 300 * 1024 + 17;
        let mut b = P.take(len);
        assert!(b.capacity() >= len && b.is_empty());
        assert_eq!(b.capacity(), CLASS, "one size for chunk-sized requests");
        b.extend_from_slice(&vec![7u8; len]);
        let ptr = b.as_ptr();
        let bytes = b.freeze(10..20);
        assert_eq!(&bytes[..], &[7u8; 10]);
        let clone = bytes.clone();
        drop(bytes);
        assert_eq!(P.bytes(), 0, "a live clone keeps the buffer");
        drop(clone);
        assert_eq!(P.bytes(), CLASS);
        let again = P.take(len - 1000);
        assert_eq!(again.as_ptr(), ptr, "the same allocation, reused");
        assert!(again.is_empty(), "handed out empty");
        assert_eq!(P.bytes(), 0);
    }

    #[test]
    fn a_buffer_to_overwrite_reuses_what_was_written_before() {
        static P: Pool = Pool::new();
        let mut b = P.take(400 * 1024);
        b.extend_from_slice(&vec![9u8; 300 * 1024]);
        let ptr = b.as_ptr();
        drop(b);
        let mut again = P.take_stale(200 * 1024);
        assert_eq!(again.as_ptr(), ptr);
        assert_eq!(again.len(), 300 * 1024, "its initialised length is kept");
        again.resize(350 * 1024, 0);
        assert!(again[..300 * 1024].iter().all(|&x| x == 9), "not zeroed again");
        assert!(again[300 * 1024..].iter().all(|&x| x == 0));
        drop(again);
        assert!(P.take(100 * 1024).is_empty(), "a plain take is still empty");
    }

    #[test]
    fn padding_places_the_next_byte_at_the_phase_asked_for_within_the_room_beyond_what_is_reserved() {
        static P: Pool = Pool::new();
        let mut b = P.take(1 << 20);
        let cap = b.capacity();
        let reserved = cap - 64 * 1024;
        for (phase, len) in [(56, 0), (56, 1), (0, 4097), (4095, 9000), (56, 12_345)] {
            let padded = b.padding();
            let to = b.len() + len;
            b.resize(to, 1);
            let from = b.len();
            b.pad_to(phase, 4096, reserved);
            let pad = b.padding() - padded;
            assert!(pad < 4096, "{phase} after {len}");
            assert_eq!(b.len(), from + pad);
            assert_eq!((b.as_ptr().addr() + b.len()) % 4096, phase, "{phase} after {len}");
            assert!(b[from..].iter().all(|&x| x == 0), "zeros");
            assert_eq!(b.held() + b.padding(), b.len(), "held is what is not padding");
            b.pad_to(phase, 4096, reserved);
            assert_eq!(b.padding() - padded, pad, "already there: nothing more");
        }
        let to = b.len() + 1;
        b.resize(to, 1);
        let need = 56usize.wrapping_sub(b.as_ptr().addr() + b.len()) & 4095;
        let (len, padded) = (b.len(), b.padding());
        b.pad_to(56, 4096, cap - padded - (need - 1));
        assert_eq!((b.len(), b.padding()), (len, padded), "not within the room: nothing appended");
        assert_eq!(b.capacity(), cap, "never moved");
    }

    #[test]
    fn the_smallest_fitting_buffer_is_reused() {
        static P: Pool = Pool::new();
        let (big, small) = (P.take(2 * 1024 * 1024), P.take(300 * 1024));
        let small_ptr = small.as_ptr();
        drop((big, small));
        assert_eq!(P.take(200 * 1024).as_ptr(), small_ptr);
    }

    #[test]
    fn a_batch_sized_buffer_given_back_fits_any_later_batch() {
        static P: Pool = Pool::new();
        let short = P.take(2 * 1024 * 1024 + 1);
        assert_eq!(short.capacity(), POOLED_MAX, "one size for every request above CLASS");
        let ptr = short.as_ptr();
        drop(short);
        let long = P.take(POOLED_MAX);
        assert_eq!(long.as_ptr(), ptr, "the shorter batch's buffer serves the longest one");
        drop(long);
        assert_eq!(P.bytes(), POOLED_MAX, "and no second buffer was made beside it");
    }

    #[test]
    fn small_and_huge_buffers_are_not_pooled() {
        static P: Pool = Pool::new();
        let small = P.take(1000);
        assert!(small.capacity() >= 1000 && small.capacity() < POOLED_MIN);
        let mut huge = P.take(POOLED_MAX + 1);
        huge.push(1);
        assert_eq!(&huge.freeze(0..1)[..], &[1]);
        drop(small);
        assert_eq!(P.bytes(), 0);
    }

    #[test]
    fn a_busy_pool_keeps_up_to_its_burst_and_an_idle_one_gives_the_rest_back() {
        static P: Pool = Pool::new();
        P.burst.store(16 * POOLED_MAX, Ordering::Relaxed);
        let held: Vec<Buffer> = (0..12).map(|_| P.take(POOLED_MAX)).collect();
        drop(held);
        assert_eq!(P.bytes(), 12 * POOLED_MAX, "kept beyond POOLED_BYTES, within the burst");
        assert_eq!(P.decay(), 0, "drained since the last decay: all of it was in use");
        let again: Vec<Buffer> = (0..6).map(|_| P.take(POOLED_MAX)).collect();
        drop(again);
        assert_eq!(P.decay(), 2 * POOLED_MAX, "six stayed unused: all but the floor's four go");
        assert_eq!(P.bytes(), 10 * POOLED_MAX);
        assert_eq!(P.decay(), 6 * POOLED_MAX, "idle since: back to the floor");
        assert_eq!(P.bytes(), POOLED_BYTES);
        assert_eq!(P.decay(), 0, "never below the floor");
        let held: Vec<Buffer> = (0..20).map(|_| P.take(POOLED_MAX)).collect();
        drop(held);
        assert_eq!(P.bytes(), 16 * POOLED_MAX, "beyond the burst, freed as before");
    }

    #[test]
    fn beyond_the_floor_the_pool_keeps_only_what_fits_within_the_burst_beside_the_buffers_in_use() {
        static P: Pool = Pool::new();
        P.burst.store(8 * POOLED_MAX, Ordering::Relaxed);
        let mut held: Vec<Buffer> = (0..12).map(|_| P.take(POOLED_MAX)).collect();
        held.truncate(6);
        assert_eq!(
            P.bytes(),
            POOLED_BYTES,
            "the floor's four: with six in use, a fifth would pass the burst"
        );
        drop(held);
        assert_eq!(P.bytes(), 8 * POOLED_MAX, "none in use: up to the burst");
    }

    #[test]
    fn an_idle_pool_of_chunk_sized_buffers_ends_at_or_just_below_the_floor() {
        static P: Pool = Pool::new();
        P.burst.store(64 * CLASS, Ordering::Relaxed);
        let held: Vec<Buffer> = (0..40).map(|_| P.take(CLASS)).collect();
        drop(held);
        P.decay();
        assert!(P.decay() > 0);
        assert!(P.bytes() <= POOLED_BYTES && P.bytes() > POOLED_BYTES - CLASS, "{}", P.bytes());
    }

    #[test]
    fn the_pool_never_holds_more_than_its_cap() {
        static P: Pool = Pool::new();
        let held: Vec<Buffer> = (0..40).map(|_| P.take(POOLED_MAX)).collect();
        drop(held);
        assert!(P.bytes() <= POOLED_BYTES);
        assert!(P.bytes() > POOLED_BYTES - POOLED_MAX, "filled up to the cap");
    }
}
