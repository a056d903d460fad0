//! Manifest segments and offset lookups.
//!
//! Invariants:
//! - `decode_segment` accepts exactly the byte strings that are a positive
//!   whole number of entries, at most `SEGMENT_ENTRIES`, and
//!   `encode_segment(decode_segment(b)) == b`; encode → decode is the
//!   identity for any entries;
//! - `segments` splits the manifest in order into full segments (the last
//!   may be short) whose start offsets begin at 0, are monotone and are the
//!   running sums of the entry lengths;
//! - for every offset, `find_segment` + `find_entry` land in the chunk that
//!   holds it, as a brute-force scan finds it (zero-length chunks hold no
//!   byte), and say `None` past the end;
//! - the manifest digest is BLAKE3 over the packed entries;
//! - `find_entry` from any segment start (whose segment ends within `u64`) agrees with a wide-integer scan.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use depot::store::ChunkId;
use depot::store::manifest::{
    Digest, ENTRY_LEN, Entry, SEGMENT_ENTRIES, decode_segment, encode_segment, find_entry, find_segment,
    segments,
};
use libfuzzer_sys::fuzz_target;

/// Chunk lengths: a pattern from the input, repeated to any count (so
/// manifests span several segments), in one of a few size classes.
fn lengths(u: &mut Unstructured) -> arbitrary::Result<Vec<u32>> {
    let count = match u.int_in_range(0..=3)? {
        0 => u.int_in_range(0..=8usize)?,
        1 => u.int_in_range(SEGMENT_ENTRIES - 2..=SEGMENT_ENTRIES + 2)?,
        _ => u.int_in_range(0..=4 * SEGMENT_ENTRIES + 3)?,
    };
    let class = u.int_in_range(0..=3u8)?;
    let pattern: Vec<u32> = (0..u.int_in_range(1..=16usize)?)
        .map(|_| {
            Ok(match class {
                0 => u32::from(u8::arbitrary(u)? % 4),
                1 => u32::from(u16::arbitrary(u)?),
                2 => u32::MAX - u32::from(u8::arbitrary(u)?),
                _ => u32::arbitrary(u)?,
            })
        })
        .collect::<arbitrary::Result<_>>()?;
    Ok((0..count).map(|i| pattern[i % pattern.len()]).collect())
}

/// The brute-force answer: the chunk holding `offset`, and its start.
fn brute(lens: &[u32], offset: u64) -> Option<(usize, u64)> {
    let mut at = 0u64;
    for (i, &l) in lens.iter().enumerate() {
        if offset >= at && offset < at + u64::from(l) {
            return Some((i, at));
        }
        at += u64::from(l);
    }
    None
}

fn check_lookups(u: &mut Unstructured, lens: &[u32]) -> arbitrary::Result<()> {
    let entries: Vec<Entry> = lens
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            Entry { id: ChunkId(id), len }
        })
        .collect();
    let segs = segments(&entries);
    let size: u64 = lens.iter().map(|&l| u64::from(l)).sum();

    // The segments, in order, are the manifest.
    assert_eq!(segs.len(), entries.len().div_ceil(SEGMENT_ENTRIES));
    let mut at = 0u64;
    let mut joined = Vec::with_capacity(entries.len());
    for (k, (start, seg)) in segs.iter().enumerate() {
        assert_eq!(*start, at, "segment {k} starts at the running sum");
        assert!(!seg.is_empty() && seg.len() <= SEGMENT_ENTRIES);
        if k + 1 < segs.len() {
            assert_eq!(seg.len(), SEGMENT_ENTRIES, "only the last segment is short");
        }
        at += seg.iter().map(|e| u64::from(e.len)).sum::<u64>();
        joined.extend_from_slice(seg);
        // Each segment survives storage.
        assert_eq!(decode_segment(&encode_segment(seg)).as_deref(), Ok(*seg));
    }
    assert_eq!(at, size);
    assert_eq!(joined, entries);
    let starts: Vec<u64> = segs.iter().map(|s| s.0).collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "segment starts are monotone");

    // The digest is BLAKE3 over the packed entries.
    let mut d = Digest::default();
    entries.iter().for_each(|e| d.update(e));
    assert_eq!(d.finish(), ChunkId::of(&encode_segment(&entries)));

    let lookup = |offset: u64| -> Option<(usize, u64)> {
        let s = find_segment(&starts, size, offset)?;
        let (i, chunk_start) = find_entry(segs[s].1, starts[s], offset)
            .unwrap_or_else(|| panic!("offset {offset} < {size} found segment {s} but no entry in it"));
        Some((s * SEGMENT_ENTRIES + i, chunk_start))
    };

    // Offsets to probe: around chunk boundaries, the ends, and arbitrary ones.
    let mut probes = vec![0, size.saturating_sub(1), size, size.saturating_add(1), u64::MAX];
    for _ in 0..u.int_in_range(0..=24)? {
        probes.push(match u.int_in_range(0..=2)? {
            0 => u.int_in_range(0..=size)?,
            1 => u64::arbitrary(u)?,
            _ => {
                // The first and last byte of a chunk, and the byte after it.
                let Some(j) = (!lens.is_empty()).then(|| u.int_in_range(0..=lens.len() - 1)).transpose()?
                else {
                    continue;
                };
                let start: u64 = lens[..j].iter().map(|&l| u64::from(l)).sum();
                let k = u.int_in_range(0..=2)?;
                [start, (start + u64::from(lens[j])).saturating_sub(1), start + u64::from(lens[j])][k]
            }
        });
    }
    for offset in probes {
        let got = lookup(offset);
        assert_eq!(got, brute(lens, offset), "offset {offset} of {size} bytes, lengths {lens:?}");
        if let Some((g, chunk_start)) = got {
            assert!(chunk_start <= offset && offset < chunk_start + u64::from(lens[g]));
        }
        if offset >= size {
            assert_eq!(find_segment(&starts, size, offset), None);
        }
    }
    // Before its start, a segment holds nothing.
    if let Some((start, seg)) = segs.iter().find(|s| s.0 > 0) {
        assert_eq!(find_entry(seg, *start, start - 1), None);
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut u = Unstructured::new(rest);
    match if mode == b's' { 0 } else { 1 + mode % 2 } {
        // Stored bytes: a segment as it comes out of the database (seeds:
        // real segments).
        0 => {
            let b = rest;
            match decode_segment(b) {
                Ok(entries) => {
                    assert!(
                        !b.is_empty() && b.len() % ENTRY_LEN == 0 && b.len() / ENTRY_LEN <= SEGMENT_ENTRIES
                    );
                    assert_eq!(entries.len(), b.len() / ENTRY_LEN);
                    assert_eq!(encode_segment(&entries), b);
                }
                Err(_) => {
                    assert!(b.is_empty() || b.len() % ENTRY_LEN != 0 || b.len() / ENTRY_LEN > SEGMENT_ENTRIES)
                }
            }
        }
        // Entries with arbitrary ids and lengths: encode → decode.
        1 => {
            let Ok(raw) = Vec::<([u8; 32], u32)>::arbitrary(&mut u) else { return };
            let entries: Vec<Entry> =
                raw.iter().map(|(id, len)| Entry { id: ChunkId(*id), len: *len }).collect();
            let enc = encode_segment(&entries);
            assert_eq!(enc.len(), entries.len() * ENTRY_LEN);
            if entries.is_empty() {
                assert!(decode_segment(&enc).is_err());
            } else if entries.len() <= SEGMENT_ENTRIES {
                assert_eq!(decode_segment(&enc).as_ref(), Ok(&entries));
            }
            // `find_entry` from any start agrees with a wide-integer scan (a
            // start is the size of the file before the segment, so the
            // segment's end fits in a u64).
            let (Ok(seg_start), Ok(delta)) = (u64::arbitrary(&mut u), u64::arbitrary(&mut u)) else { return };
            let total: u64 = entries.iter().map(|e| u64::from(e.len)).sum();
            let seg_start = seg_start.min(u64::MAX - total);
            let offset = seg_start.saturating_add(delta % (1 << 40));
            let mut at = u128::from(seg_start);
            let mut want = None;
            for (i, e) in entries.iter().enumerate() {
                let end = at + u128::from(e.len);
                if u128::from(offset) < end {
                    want = Some((i, at as u64));
                    break;
                }
                at = end;
            }
            assert_eq!(find_entry(&entries, seg_start, offset), want, "start {seg_start} offset {offset}");
        }
        // Lookups over arbitrary chunk lengths.
        _ => {
            let Ok(lens) = lengths(&mut u) else { return };
            let _ = check_lookups(&mut u, &lens);
        }
    }
});
