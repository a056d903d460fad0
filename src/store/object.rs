//! The chunk object format: what one file under `objects/` holds.
//!
//! ```text
//! offset size field
//!      0    4 magic "DPCK"
//!      4    1 format version (1)
//!      5    1 codec (0 raw, 1 zstd)
//!      6    2 reserved, zero
//!      8    4 raw length (LE)
//!     12    4 stored (payload) length (LE)
//!     16    4 CRC32C of the payload (LE)
//!     20   32 BLAKE3 of the raw bytes: the chunk's id
//!     52    4 CRC32C of bytes 0..52 (LE)
//!     56    … payload
//! ```
//!
//! The CRCs make a bit-rot scan cheap and catch torn or foreign files before any
//! decompression; a full check also decompresses and re-hashes. Decoding never
//! panics: every malformed input is a [`CorruptObject`] error, and zstd output is
//! capped at the raw length the header declares (itself capped by the caller),
//! so a hostile frame cannot balloon.

use bytes::Bytes;

use super::buffer::{self, Buffer};
use super::enums::byte_enum;
use super::id::ChunkId;

/// CRC-32C (Castagnoli: RFC 3720 §12.1, examples in §B.4; `CRC-32/ISCSI`
/// in the catalogue) of `bytes`, as the format stores it. Folded with
/// carry-less multiplies where the CPU has them (`crc-fast`): about four
/// times the `crc32c` crate's speed on the development machine, and every
/// download checks every payload
/// (docs/PERFORMANCE.md, D1, "The payload CRC with carry-less
/// multiplies").
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, bytes) as u32
}

pub const MAGIC: &[u8; 4] = b"DPCK";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 56;

byte_enum!(
    /// How a chunk's payload is stored.
    pub enum Codec {
        Raw = 0,
        Zstd = 1,
    }
);

/// Why a stored object was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt chunk object: {0}")]
pub struct CorruptObject(pub &'static str);

/// A decoded object header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub codec: Codec,
    pub raw_len: u32,
    pub stored_len: u32,
    pub payload_crc: u32,
    pub id: ChunkId,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(MAGIC);
        h[4] = VERSION;
        h[5] = self.codec as u8;
        h[8..12].copy_from_slice(&self.raw_len.to_le_bytes());
        h[12..16].copy_from_slice(&self.stored_len.to_le_bytes());
        h[16..20].copy_from_slice(&self.payload_crc.to_le_bytes());
        h[20..52].copy_from_slice(self.id.as_bytes());
        let crc = crc32c(&h[..52]);
        h[52..56].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Parses and checks a header: magic, version, codec, reserved bytes, CRC.
    ///
    /// # Errors
    /// [`CorruptObject`] when any field is wrong.
    pub fn decode(b: &[u8]) -> Result<Self, CorruptObject> {
        if b.len() < HEADER_LEN {
            return Err(CorruptObject("shorter than the header"));
        }
        if &b[..4] != MAGIC {
            return Err(CorruptObject("bad magic"));
        }
        let le32 = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        if crc32c(&b[..52]) != le32(52) {
            return Err(CorruptObject("header checksum mismatch"));
        }
        if b[4] != VERSION {
            return Err(CorruptObject("unknown format version"));
        }
        let codec = Codec::from_u8(b[5]).ok_or(CorruptObject("unknown codec"))?;
        if b[6] != 0 || b[7] != 0 {
            return Err(CorruptObject("reserved bytes set"));
        }
        let raw_len = le32(8);
        let stored_len = le32(12);
        if codec == Codec::Raw && raw_len != stored_len {
            return Err(CorruptObject("raw object with differing lengths"));
        }
        let id = ChunkId::from_slice(&b[20..52]).ok_or(CorruptObject("bad hash field"))?;
        Ok(Header { codec, raw_len, stored_len, payload_crc: le32(16), id })
    }
}

/// An encoded object in two parts, the header and the payload, so that a
/// raw chunk is written from its own buffer rather than copied behind a
/// header first (an object store writes the parts in order).
#[derive(Debug, Clone)]
pub struct Encoded<'a> {
    pub header: Header,
    head: [u8; HEADER_LEN],
    payload: std::borrow::Cow<'a, [u8]>,
}

impl Encoded<'_> {
    /// The object's bytes, in order: `[header, payload]`.
    pub fn parts(&self) -> [&[u8]; 2] {
        [&self.head, &self.payload]
    }

    /// The object as one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        self.parts().concat()
    }
}

/// Encodes `raw` as an object, compressing with zstd at `level` when that saves
/// at least 1/32 of the size (level 0 disables compression). Returns the
/// encoded bytes and the codec chosen.
///
/// # Panics
/// If `raw` exceeds 4 GiB, which the store's chunk size limits rule out.
pub fn encode(id: &ChunkId, raw: &[u8], level: i32) -> Vec<u8> {
    encode_parts(id, raw, level).to_vec()
}

/// [`encode`] as two parts: a raw payload borrows `raw`.
///
/// # Panics
/// If `raw` exceeds 4 GiB, which the store's chunk size limits rule out.
pub fn encode_parts<'a>(id: &ChunkId, raw: &'a [u8], level: i32) -> Encoded<'a> {
    assert!(u32::try_from(raw.len()).is_ok(), "chunk larger than 4 GiB");
    let compressed = if level > 0 && raw.len() >= 512 && looks_compressible(raw) {
        zstd::bulk::compress(raw, level).ok().filter(|c| c.len() <= raw.len() - raw.len() / 32)
    } else {
        None
    };
    match compressed {
        Some(c) => assemble(id, Codec::Zstd, raw.len() as u32, c.into()),
        None => assemble(id, Codec::Raw, raw.len() as u32, raw.into()),
    }
}

/// Wraps an already-compressed zstd frame (as a client sent it) without
/// recompressing. The caller has checked that it decodes to `raw_len` bytes
/// hashing to `id`.
pub fn encode_zstd_frame(id: &ChunkId, raw_len: u32, frame: &[u8]) -> Vec<u8> {
    zstd_frame_parts(id, raw_len, frame).to_vec()
}

/// [`encode_zstd_frame`] as two parts, borrowing `frame`.
pub fn zstd_frame_parts<'a>(id: &ChunkId, raw_len: u32, frame: &'a [u8]) -> Encoded<'a> {
    assemble(id, Codec::Zstd, raw_len, frame.into())
}

/// An object: the header describing `payload`, then `payload`.
fn assemble<'a>(
    id: &ChunkId,
    codec: Codec,
    raw_len: u32,
    payload: std::borrow::Cow<'a, [u8]>,
) -> Encoded<'a> {
    let stored_len = payload.len() as u32;
    let header = Header { codec, raw_len, stored_len, payload_crc: crc32c(&payload), id: *id };
    Encoded { header, head: header.encode(), payload }
}

/// A cheap guess whether zstd will save anything: the order-0 entropy of a few
/// sampled windows. Random or already-compressed data measures close to 8 bits
/// a byte and is stored raw without trying; anything else is tried.
pub fn looks_compressible(raw: &[u8]) -> bool {
    const WINDOW: usize = 1024;
    const WINDOWS: usize = 4;
    let mut counts = [0u32; 256];
    let mut total = 0u32;
    let step = (raw.len() / WINDOWS).max(1);
    for w in 0..WINDOWS {
        let start = w * step;
        if start >= raw.len() {
            break;
        }
        let end = (start + WINDOW).min(raw.len());
        for &b in &raw[start..end] {
            counts[b as usize] += 1;
        }
        total += (end - start) as u32;
    }
    if total == 0 {
        return false;
    }
    let n = f64::from(total);
    let entropy: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum();
    // A sample of 4 KiB drawn from uniform random bytes measures ~7.95 bits.
    entropy < 7.5
}

/// Checks the header and payload CRC of an encoded object without decompressing.
///
/// # Errors
/// [`CorruptObject`] on any inconsistency.
pub fn check(encoded: &[u8]) -> Result<Header, CorruptObject> {
    let header = Header::decode(encoded)?;
    let payload = &encoded[HEADER_LEN..];
    if payload.len() != header.stored_len as usize {
        return Err(CorruptObject("payload length differs from header"));
    }
    if crc32c(payload) != header.payload_crc {
        return Err(CorruptObject("payload checksum mismatch"));
    }
    Ok(header)
}

/// Decodes an object to its raw bytes: header, CRC, decompression capped at
/// `max_raw` bytes, exact length. With `verify_hash` the BLAKE3 of the result
/// must equal the id in the header (the full check); without, the CRC alone
/// guards the bytes (the fast path for downloads).
///
/// # Errors
/// [`CorruptObject`] on any inconsistency.
pub fn decode(encoded: &[u8], max_raw: usize, verify_hash: bool) -> Result<(Header, Vec<u8>), CorruptObject> {
    let header = check(encoded)?;
    if header.raw_len as usize > max_raw {
        return Err(CorruptObject("raw length above the limit"));
    }
    let payload = &encoded[HEADER_LEN..];
    let raw = match header.codec {
        Codec::Raw => payload.to_vec(),
        Codec::Zstd => decompress_capped(payload, header.raw_len as usize)
            .ok_or(CorruptObject("zstd payload does not decode to its length"))?,
    };
    if verify_hash && ChunkId::of(&raw) != header.id {
        return Err(CorruptObject("content does not match its hash"));
    }
    Ok((header, raw))
}

/// [`decode`] of an object read into the bytes `object` of a pooled
/// [`Buffer`] (bytes around them, a reused buffer's, are ignored): a raw
/// payload is handed out in place (no copy), a zstd one is decompressed
/// into another pooled buffer. The buffers go back to the pool when the
/// bytes are dropped.
///
/// # Errors
/// [`CorruptObject`] on any inconsistency.
///
/// # Panics
/// When `object` is outside the buffer's length.
pub fn decode_buffer(
    encoded: Buffer,
    object: std::ops::Range<usize>,
    max_raw: usize,
    verify_hash: bool,
) -> Result<(Header, Bytes), CorruptObject> {
    let header = check(&encoded[object.clone()])?;
    let len = header.raw_len as usize;
    if len > max_raw {
        return Err(CorruptObject("raw length above the limit"));
    }
    let raw = match header.codec {
        Codec::Raw => encoded.freeze(object.start + HEADER_LEN..object.end),
        Codec::Zstd => {
            let mut out = buffer::take(len + 1);
            if !decompress_capped_into(&encoded[object.start + HEADER_LEN..object.end], len, &mut out) {
                return Err(CorruptObject("zstd payload does not decode to its length"));
            }
            out.freeze(0..len)
        }
    };
    if verify_hash && ChunkId::of(&raw) != header.id {
        return Err(CorruptObject("content does not match its hash"));
    }
    Ok((header, raw))
}

/// Decompresses one zstd frame into exactly `len` bytes; `None` when the frame
/// is broken, longer, or shorter.
pub fn decompress_capped(frame: &[u8], len: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    decompress_capped_into(frame, len, &mut out).then_some(out)
}

/// [`decompress_capped`] into `out` (cleared first; its capacity is used,
/// grown to `len + 1` when smaller): `false` when the frame is broken,
/// longer, or shorter than `len`.
pub fn decompress_capped_into(frame: &[u8], len: usize, out: &mut Vec<u8>) -> bool {
    out.clear();
    // One spare byte tells "exactly len" from "more than len"; the frame is
    // decoded into the spare capacity, never past it.
    out.reserve(len + 1);
    // One decompression context per thread, made once: making a fresh one
    // per chunk (`ZSTD_createDCtx`, about 94 KiB allocated and set up) was
    // 2.2% of a server's CPU serving random ranges of compressed chunks.
    // A frame carries all it needs; the context keeps no state from one
    // frame to the next that could leak into it. It lives as long as its
    // thread (a blocking-pool thread leaves after 10 s idle).
    thread_local! {
        static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    DECOMPRESSOR.with_borrow_mut(|d| {
        if d.is_none() {
            *d = zstd::bulk::Decompressor::new().ok();
        }
        d.as_mut().is_some_and(|d| matches!(d.decompress_to_buffer(frame, out), Ok(n) if n == len))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::pseudo_random;
    use proptest::prelude::*;

    /// The CRC is CRC-32C, so every object written before reads the same:
    /// the catalogue's check value and RFC 3720's examples.
    #[test]
    fn the_crc_is_crc32c() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA, "RFC 3720 B.4: 32 bytes of zeros");
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43, "RFC 3720 B.4: 32 bytes of ones");
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&ascending), 0x46DD_794E, "RFC 3720 B.4: 32 ascending bytes");
    }

    #[test]
    fn compressible_data_is_compressed_and_random_is_not() {
        let text = b"the quick brown fox jumps over the lazy dog. ".repeat(2000);
        let id = ChunkId::of(&text);
        let enc = encode(&id, &text, 1);
        assert_eq!(Header::decode(&enc).unwrap().codec, Codec::Zstd);
        assert!(enc.len() < text.len() / 4);
        assert_eq!(decode(&enc, 1 << 20, true).unwrap().1, text);

        let rnd = pseudo_random(256 * 1024, 7);
        assert!(!looks_compressible(&rnd));
        let id = ChunkId::of(&rnd);
        let enc = encode(&id, &rnd, 1);
        assert_eq!(Header::decode(&enc).unwrap().codec, Codec::Raw);
        assert_eq!(decode(&enc, 1 << 20, true).unwrap().1, rnd);
    }

    #[test]
    fn empty_chunk_round_trips() {
        let id = ChunkId::of(b"");
        let enc = encode(&id, b"", 1);
        assert_eq!(enc.len(), HEADER_LEN);
        assert_eq!(decode(&enc, 0, true).unwrap().1, b"");
    }

    #[test]
    fn zstd_bomb_is_capped() {
        let zeros = vec![0u8; 1 << 20];
        let frame = zstd::bulk::compress(&zeros, 1).unwrap();
        // Claim 1000 bytes but carry a 1 MiB frame.
        let enc = encode_zstd_frame(&ChunkId::of(&zeros[..1000]), 1000, &frame);
        assert!(decode(&enc, 1 << 20, false).is_err());
        // Claim more than the caller's limit.
        let enc = encode_zstd_frame(&ChunkId::of(&zeros), 1 << 20, &frame);
        assert_eq!(decode(&enc, 1 << 19, false).unwrap_err().0, "raw length above the limit");
        assert!(decode(&enc, 1 << 20, true).is_ok());
    }

    #[test]
    fn wrong_hash_is_caught_only_by_full_check() {
        let data = pseudo_random(5000, 3);
        let enc = encode(&ChunkId::of(b"something else"), &data, 1);
        assert!(decode(&enc, 1 << 20, false).is_ok());
        assert!(decode(&enc, 1 << 20, true).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..20_000), rep in 1usize..4, level in 0i32..4) {
            let data: Vec<u8> = data.repeat(rep);
            let id = ChunkId::of(&data);
            let enc = encode(&id, &data, level);
            let (h, raw) = decode(&enc, data.len(), true).unwrap();
            prop_assert_eq!(h.id, id);
            prop_assert_eq!(raw, data);
        }

        #[test]
        fn any_single_corruption_is_rejected(
            data in proptest::collection::vec(any::<u8>(), 0..4096),
            pos in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let data = data.repeat(3);
            let id = ChunkId::of(&data);
            let mut enc = encode(&id, &data, 1);
            let i = pos.index(enc.len());
            enc[i] ^= flip;
            prop_assert!(decode(&enc, data.len(), true).is_err());
        }

        #[test]
        fn truncation_and_extension_are_rejected(
            data in proptest::collection::vec(any::<u8>(), 1..4096),
            cut in any::<prop::sample::Index>(),
            extra in proptest::collection::vec(any::<u8>(), 1..16),
        ) {
            let id = ChunkId::of(&data);
            let enc = encode(&id, &data, 1);
            let n = cut.index(enc.len());
            prop_assert!(decode(&enc[..n], 1 << 20, true).is_err());
            let mut longer = enc.clone();
            longer.extend_from_slice(&extra);
            prop_assert!(decode(&longer, 1 << 20, true).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes, 1 << 20, true);
        }
    }
}
