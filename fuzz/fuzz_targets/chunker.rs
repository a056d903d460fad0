//! Content-defined chunking.
//!
//! Invariants, for small fixed parameters (64 / 256 / 1024) and for
//! parameters derived from the input within FastCDC 2020's bounds:
//! - the chunks concatenate to the input; none is empty; every chunk is at
//!   most `max`, and every one but the last at least `min`;
//! - `chunk_all` cuts exactly where the `fastcdc` crate's own iterator does;
//! - cut points do not depend on how the input arrives: a `StreamChunker` fed
//!   at arbitrary split points, one resumed from its `tail()` at arbitrary
//!   points (`with_tail`, as tus PATCHes continue), and a `ReadChunker` over
//!   a reader returning arbitrary short reads and interruptions all yield the
//!   chunks of `chunk_all`; a streaming chunker never buffers `max` bytes
//!   after a push;
//! - `ChunkerParams::validate` accepts exactly powers of two with
//!   `min < avg < max` within FastCDC's bounds, and `Chunker::new` never
//!   panics.

#![no_main]

use std::io::{self, Read};

use arbitrary::{Arbitrary, Unstructured};
use depot::store::chunker::{ReadChunker, StreamChunker};
use depot::store::{Chunker, ChunkerParams};
use depot::testdata::pseudo_random;
use fastcdc::v2020;
use libfuzzer_sys::fuzz_target;

/// Input bytes: the fuzzer's own, or expanded to a longer stream from a seed
/// (random bytes cut at content-defined points, runs cut at `max`).
fn input(u: &mut Unstructured) -> arbitrary::Result<Vec<u8>> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => Vec::<u8>::arbitrary(u)?,
        1 => {
            let n = u.int_in_range(0..=48 * 1024usize)?;
            pseudo_random(n, u64::arbitrary(u)?)
        }
        2 => {
            // A short pattern repeated: few cut points, many at `max`.
            let pat = Vec::<u8>::arbitrary(u)?;
            let n = u.int_in_range(0..=16 * 1024usize)?;
            if pat.is_empty() { vec![0; n] } else { pat.iter().copied().cycle().take(n).collect() }
        }
        _ => {
            // Random with the input's bytes spliced in (edits).
            let seed = u64::arbitrary(u)?;
            let mut v = pseudo_random(u.int_in_range(0..=16 * 1024usize)?, seed);
            let at = u.int_in_range(0..=v.len())?;
            let splice = Vec::<u8>::arbitrary(u)?;
            v.splice(at..at, splice);
            v
        }
    })
}

/// Valid parameters derived from the input, kept small so runs stay fast.
fn params(u: &mut Unstructured) -> arbitrary::Result<ChunkerParams> {
    let min_bits = u.int_in_range(6..=12u32)?;
    let avg_bits = u.int_in_range(min_bits.max(7) + 1..=14)?;
    let max_bits = u.int_in_range(avg_bits.max(9) + 1..=16)?;
    Ok(ChunkerParams { min: 1 << min_bits, avg: 1 << avg_bits, max: 1 << max_bits })
}

/// Split points: lengths of successive pushes.
fn splits(u: &mut Unstructured, max: usize) -> arbitrary::Result<Vec<usize>> {
    let n = u.int_in_range(0..=32)?;
    (0..n)
        .map(|_| {
            Ok(match u.int_in_range(0..=3u8)? {
                0 => u.int_in_range(0..=16)?,
                1 => u.int_in_range(max - 1..=max + 1)?,
                _ => u.int_in_range(0..=3 * max)?,
            })
        })
        .collect()
}

/// A reader that returns at most the next split length per read, and
/// sometimes `Interrupted`.
struct ShortReads<'a> {
    data: &'a [u8],
    lens: Vec<usize>,
    i: usize,
    interrupted: bool,
}

impl Read for ShortReads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = if self.lens.is_empty() { buf.len() } else { self.lens[self.i % self.lens.len()] };
        self.i += 1;
        // A zero in the lengths is one interruption (never two in a row).
        if want == 0 && !self.interrupted && !self.data.is_empty() {
            self.interrupted = true;
            return Err(io::ErrorKind::Interrupted.into());
        }
        self.interrupted = false;
        let n = want.max(1).min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn check(c: &Chunker, data: &[u8], u: &mut Unstructured) -> arbitrary::Result<()> {
    let p = c.params();
    let (min, max) = (p.min as usize, p.max as usize);
    let whole = c.chunk_all(data);
    assert_eq!(whole.iter().sum::<usize>(), data.len(), "chunks cover the input");
    for (i, &n) in whole.iter().enumerate() {
        assert!(n > 0 && n <= max, "chunk {i} of {n} bytes, params {p:?}");
        if i + 1 < whole.len() {
            assert!(n >= min, "chunk {i} of {n} bytes below min, params {p:?}");
        }
    }
    let theirs: Vec<usize> = v2020::FastCDC::new(data, p.min, p.avg, p.max).map(|c| c.length).collect();
    assert_eq!(whole, theirs, "params {p:?}");
    assert_eq!(c.next_cut(&data[..data.len().min(max - 1)], false), None, "a cut needs max bytes or the end");

    // Streaming, with resumption from the tail at some split points.
    let lens = splits(u, max)?;
    let resume_mask = u64::arbitrary(u)?;
    let mut s = StreamChunker::new(c.clone());
    let mut got: Vec<u8> = Vec::with_capacity(data.len());
    let mut cuts = Vec::with_capacity(whole.len());
    let mut at = 0;
    for (k, n) in lens.iter().enumerate() {
        let end = (at + n).min(data.len());
        for b in s.push(&data[at..end]) {
            cuts.push(b.len());
            got.extend_from_slice(&b);
        }
        assert!(s.tail().len() < max, "buffered {} bytes after a push, max {max}", s.tail().len());
        assert_eq!(&data[got.len()..end], s.tail(), "the tail is the bytes after the last cut");
        at = end;
        if resume_mask >> (k % 64) & 1 == 1 {
            s = StreamChunker::with_tail(c.clone(), s.tail());
        }
    }
    for b in s.push(&data[at..]).into_iter().chain(s.finish()) {
        cuts.push(b.len());
        got.extend_from_slice(&b);
    }
    assert_eq!(cuts, whole, "streaming cuts at {lens:?}, params {p:?}");
    assert_eq!(got, data);

    // Reading, with short reads.
    let r = ShortReads { data, lens, i: 0, interrupted: false };
    let via_read: Vec<usize> =
        ReadChunker::new(r, c.clone()).map(|b| b.expect("no real errors").len()).collect();
    assert_eq!(via_read, whole, "reader, params {p:?}");
    Ok(())
}

fuzz_target!(|bytes: &[u8]| {
    let Some((&mode, rest)) = bytes.split_first() else { return };
    if mode == b'd' {
        // Literal data (seeds: text, an image, zeros), cut with the small
        // parameters, pushed and read in pieces drawn from a fixed pattern.
        let c = Chunker::new(ChunkerParams { min: 64, avg: 256, max: 1024 }).expect("valid parameters");
        let pieces: Vec<u8> = [1u8, 0, 7, 0xff, 0x03, 0xff, 0x04, 0x01, 0x04, 0x02, 0x04].to_vec();
        let _ = check(&c, rest, &mut Unstructured::new(&pieces));
        return;
    }
    let mut u = Unstructured::new(rest);
    match mode % 3 {
        0 | 1 => {
            let p = if mode % 3 == 0 {
                ChunkerParams { min: 64, avg: 256, max: 1024 }
            } else {
                let Ok(p) = params(&mut u) else { return };
                p
            };
            let c = Chunker::new(p).expect("valid parameters");
            let Ok(data) = input(&mut u) else { return };
            let _ = check(&c, &data, &mut u);
        }
        // Any parameters: validation is exact and construction never panics.
        _ => {
            let Ok((min, avg, max)) = <(u32, u32, u32)>::arbitrary(&mut u) else { return };
            let p = ChunkerParams { min, avg, max };
            let ok = [min, avg, max].iter().all(|v| v.is_power_of_two())
                && min < avg
                && avg < max
                && (v2020::MINIMUM_MIN..=v2020::MINIMUM_MAX).contains(&min)
                && (v2020::AVERAGE_MIN..=v2020::AVERAGE_MAX).contains(&avg)
                && (v2020::MAXIMUM_MIN..=v2020::MAXIMUM_MAX).contains(&max);
            assert_eq!(p.validate().is_ok(), ok, "{p:?}");
            assert_eq!(Chunker::new(p).is_ok(), ok, "{p:?}");
        }
    }
});
