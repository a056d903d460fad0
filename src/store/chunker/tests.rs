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
    let theirs: Vec<usize> = v2020::FastCDC::new(&data, 65536, 262144, 1048576).map(|c| c.length).collect();
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
    866, 2054, 3292, 4428, 6082, 8549, 9295, 10876, 12502, 13490, 15356, 15633, 17225, 18689, 20334, 21809,
    24030, 28126, 29158, 30354, 32931, 33210, 34292, 35684, 36725, 37755, 38305, 38854, 40119, 41006, 42606,
    44883, 46032, 46425, 48529, 49558, 50569, 51277, 52934, 54453, 55526, 56554, 57905, 59068, 59379, 60994,
    62030, 63777, 64167, 65536,
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

/// A piece's uncut tail is what follows the last cut found in it, not
/// the up to `max` bytes after the last cut that `max` bytes decided.
#[test]
fn a_piece_is_cut_as_far_as_its_bytes_decide() {
    let c = small();
    let data = golden_input(64 << 10);
    let mut rc = ReadChunker::new(&data[..], c);
    rc.next().unwrap().unwrap();
    let piece = 4096 * READ_MAXES;
    let last = GOLDEN_SMALL.iter().copied().filter(|&at| at <= piece).max().unwrap();
    // 6082: 2110 bytes left, where waiting for `max` bytes left 3764
    // (the cut after 4428 decided with 3764 bytes unread).
    assert_eq!(rc.pending.len(), piece - last);
    assert_eq!(rc.ready.len() + 1, GOLDEN_SMALL.iter().filter(|&&at| at <= piece).count());
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

    /// A search that ran out of bytes goes on from where it stopped and
    /// cuts where a search of all of them from the start does; a cut
    /// it decides early is that cut too.
    #[test]
    fn a_search_goes_on_where_it_stopped(
        seed in any::<u64>(),
        len in 1usize..20_000,
        kinds in 1u64..=256,
        stops in proptest::collection::vec(any::<prop::sample::Index>(), 1..6),
        sizes in prop::sample::select(vec![(64usize, 256usize, 1024usize), (256, 1024, 4096), (64, 512, 8192)]),
    ) {
        let (min, avg, max) = sizes;
        let c = Chunker::new(ChunkerParams { min: min as u32, avg: avg as u32, max: max as u32 }).unwrap();
        let mut x = seed | 1;
        let data: Vec<u8> = (0..len).map(|_| { x ^= x << 13; x ^= x >> 7; x ^= x << 17; (x % kinds) as u8 }).collect();
        let whole = cut(&data, min, avg, max, c.mask_s, c.mask_l);
        let mut ends: Vec<usize> = stops.iter().map(|i| i.index(data.len() + 1)).collect();
        ends.sort_unstable();
        ends.push(data.len());
        let mut scan = ScanState::START;
        let mut got = None;
        for end in ends {
            match cut_from(&data[..end], min, avg, max, c.mask_s, c.mask_l, scan) {
                Ok(n) => { got = Some(n); break; }
                Err(next) => scan = next,
            }
        }
        prop_assert_eq!(got.unwrap_or(data.len()), whole);
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
