//! Manifests: a file's ordered list of `(chunk id, length)`, stored in
//! segments of at most [`SEGMENT_ENTRIES`] so that no value grows with the file
//! and a byte offset finds its chunk with one binary search over segment
//! starts, one `get`, and one search inside the segment.
//!
//! A segment is packed `[u32 LE length][32-byte hash]` entries. Pure code: no
//! I/O, fuzzed by `fuzz/fuzz_targets/manifest.rs`.

use serde::{Deserialize, Serialize};

use super::id::ChunkId;

pub const SEGMENT_ENTRIES: usize = 1024;
pub const ENTRY_LEN: usize = 36;

/// One chunk of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: ChunkId,
    pub len: u32,
}

/// A segment's bytes do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt manifest segment: {0}")]
pub struct CorruptSegment(pub &'static str);

pub fn encode_segment(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY_LEN);
    for e in entries {
        out.extend_from_slice(&e.len.to_le_bytes());
        out.extend_from_slice(e.id.as_bytes());
    }
    out
}

/// # Errors
/// [`CorruptSegment`] when the length is not a whole number of entries, or
/// there are none or too many.
pub fn decode_segment(b: &[u8]) -> Result<Vec<Entry>, CorruptSegment> {
    if b.is_empty() || b.len() % ENTRY_LEN != 0 {
        return Err(CorruptSegment("length is not a positive multiple of the entry size"));
    }
    if b.len() / ENTRY_LEN > SEGMENT_ENTRIES {
        return Err(CorruptSegment("too many entries"));
    }
    Ok(b.chunks_exact(ENTRY_LEN)
        .map(|e| Entry {
            len: u32::from_le_bytes([e[0], e[1], e[2], e[3]]),
            id: ChunkId::from_slice(&e[4..]).unwrap_or(ChunkId([0; 32])),
        })
        .collect())
}

/// The digest of a whole manifest (a file's strong ETag): BLAKE3 over the
/// packed entries in order.
#[derive(Default)]
pub struct Digest(blake3::Hasher);

impl Digest {
    pub fn update(&mut self, e: &Entry) {
        self.0.update(&e.len.to_le_bytes());
        self.0.update(e.id.as_bytes());
    }

    pub fn finish(&self) -> ChunkId {
        self.0.finalize().into()
    }
}

/// Splits a manifest into segments; returns them with each segment's start
/// offset in the file.
pub fn segments(entries: &[Entry]) -> Vec<(u64, &[Entry])> {
    let mut at = 0u64;
    entries
        .chunks(SEGMENT_ENTRIES)
        .map(|seg| {
            let start = at;
            at += seg.iter().map(|e| u64::from(e.len)).sum::<u64>();
            (start, seg)
        })
        .collect()
}

/// The index of the segment holding byte `offset`, given each segment's
/// start offset (ascending) and the file size. `None` past the end.
pub fn find_segment(starts: &[u64], size: u64, offset: u64) -> Option<usize> {
    if offset >= size || starts.is_empty() {
        return None;
    }
    // The last segment whose start is <= offset.
    Some(starts.partition_point(|&s| s <= offset).saturating_sub(1))
}

/// Within a segment starting at `seg_start`, the index of the entry holding
/// byte `offset` and that entry's start offset. `None` when the offset is
/// outside the segment.
pub fn find_entry(entries: &[Entry], seg_start: u64, offset: u64) -> Option<(usize, u64)> {
    let mut at = seg_start;
    if offset < at {
        return None;
    }
    for (i, e) in entries.iter().enumerate() {
        let end = at + u64::from(e.len);
        if offset < end {
            return Some((i, at));
        }
        at = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entries(lens: &[u32]) -> Vec<Entry> {
        lens.iter().enumerate().map(|(i, &len)| Entry { id: ChunkId::of(&i.to_le_bytes()), len }).collect()
    }

    #[test]
    fn segment_round_trip_and_rejects() {
        let e = entries(&[1, 2, 3]);
        assert_eq!(decode_segment(&encode_segment(&e)).unwrap(), e);
        assert!(decode_segment(&[]).is_err());
        assert!(decode_segment(&[0; 35]).is_err());
        assert!(decode_segment(&vec![0; ENTRY_LEN * (SEGMENT_ENTRIES + 1)]).is_err());
    }

    proptest! {
        #[test]
        fn every_offset_lands_in_its_chunk(lens in proptest::collection::vec(1u32..5000, 1..3000), probe in any::<prop::sample::Index>()) {
            let e = entries(&lens);
            let segs = segments(&e);
            let starts: Vec<u64> = segs.iter().map(|s| s.0).collect();
            let size: u64 = lens.iter().map(|&l| u64::from(l)).sum();
            prop_assert!(starts.windows(2).all(|w| w[0] < w[1]));
            let offset = probe.index(size as usize) as u64;
            let s = find_segment(&starts, size, offset).unwrap();
            let (i, chunk_start) = find_entry(segs[s].1, starts[s], offset).unwrap();
            prop_assert!(chunk_start <= offset && offset < chunk_start + u64::from(segs[s].1[i].len));
            // Brute force agrees.
            let global = s * SEGMENT_ENTRIES + i;
            let brute: u64 = lens[..global].iter().map(|&l| u64::from(l)).sum();
            prop_assert_eq!(brute, chunk_start);
            prop_assert!(find_segment(&starts, size, size).is_none());
        }
    }
}
