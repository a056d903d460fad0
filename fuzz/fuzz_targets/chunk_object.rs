//! The on-disk chunk object format.
//!
//! Invariants:
//! - any bytes: `decode` with verification is an error or a chunk of exactly
//!   the header's raw length whose BLAKE3 is the header's id; `decode` agrees
//!   with `check` and `Header::decode`, and the header re-encodes to the
//!   bytes it came from; without verification a success is the payload
//!   itself (raw) or the frame's exact decompression (zstd), never more than
//!   the caller's limit;
//! - the same for objects whose CRCs are fixed up, so that decoding reaches
//!   the length checks and zstd (real frames, truncated or mislabelled
//!   frames, arbitrary payloads);
//! - `encode` → `decode` round-trips any raw data at levels 0–3, choosing zstd
//!   only when it saves a thirty-second, and `encode_zstd_frame` of a real
//!   frame decodes to its data;
//! - a single byte flip anywhere in an encoded object, a truncation or an
//!   extension is always rejected.

#![no_main]

use std::io::Read;

use arbitrary::{Arbitrary, Unstructured};
use depot::store::ChunkId;
use depot::store::object::{Codec, HEADER_LEN, Header, check, decode, encode, encode_zstd_frame};
use libfuzzer_sys::fuzz_target;

/// The largest raw chunk the target lets `decode` produce.
const MAX_RAW: usize = 1 << 20;

/// The reference decompression: the frame(s) streamed, at most `cap` bytes.
/// No bytes are no frames, which decode to nothing (as zstd's one-shot
/// decompression has it; the streaming decoder wants a frame header).
fn zstd_reference(frame: &[u8], cap: usize) -> Option<Vec<u8>> {
    if frame.is_empty() {
        return Some(Vec::new());
    }
    let mut out = Vec::new();
    let dec = zstd::stream::read::Decoder::new(frame).ok()?;
    dec.take(cap as u64 + 1).read_to_end(&mut out).ok()?;
    Some(out)
}

fn check_any(encoded: &[u8], max_raw: usize) {
    let verified = decode(encoded, max_raw, true);
    let fast = decode(encoded, max_raw, false);
    let header = Header::decode(encoded);
    let checked = check(encoded);
    if let Ok(h) = &header {
        assert_eq!(&h.encode()[..], &encoded[..HEADER_LEN], "the header re-encodes to its bytes");
    }
    if let Ok(h) = &checked {
        assert_eq!(Ok(h), header.as_ref());
        assert_eq!(encoded.len(), HEADER_LEN + h.stored_len as usize);
    }
    if let Ok((h, raw)) = &verified {
        assert_eq!(ChunkId::of(raw), h.id, "a verified chunk hashes to its id");
        assert_eq!(fast.as_ref(), Ok(&(*h, raw.clone())), "verification only adds the hash check");
    }
    match &fast {
        Ok((h, raw)) => {
            assert_eq!(Ok(h), checked.as_ref(), "decode implies check");
            assert_eq!(raw.len(), h.raw_len as usize, "exact length");
            assert!(raw.len() <= max_raw, "capped at the caller's limit");
            let payload = &encoded[HEADER_LEN..];
            match h.codec {
                Codec::Raw => assert_eq!(raw.as_slice(), payload),
                Codec::Zstd => {
                    let want = zstd_reference(payload, raw.len());
                    assert_eq!(want.as_ref(), Some(raw), "zstd payload decodes to exactly the raw bytes");
                }
            }
            if verified.is_err() {
                assert_ne!(ChunkId::of(raw), h.id, "only the hash check separates the two");
            }
        }
        Err(_) => assert!(verified.is_err(), "verification cannot rescue a broken object"),
    }
}

/// An object from arbitrary fields, with correct CRCs.
fn forged(u: &mut Unstructured) -> arbitrary::Result<Vec<u8>> {
    let data = Vec::<u8>::arbitrary(u)?;
    let (codec, payload) = match u.int_in_range(0..=3u8)? {
        0 => (Codec::Raw, data.clone()),
        1 => (Codec::Zstd, data.clone()),
        _ => {
            let level = u.int_in_range(1..=3)?;
            let mut frame = zstd::bulk::compress(&data, level).expect("compressing in memory");
            if u.ratio(1, 2)? {
                let cut = u.int_in_range(0..=frame.len())?;
                frame.truncate(cut);
            }
            if u.ratio(1, 3)? && !frame.is_empty() {
                let i = u.int_in_range(0..=frame.len() - 1)?;
                frame[i] ^= u.int_in_range(1..=255u8)?;
            }
            (Codec::Zstd, frame)
        }
    };
    // The declared raw length: right, off by a little, or anything.
    let raw_len = match u.int_in_range(0..=3u8)? {
        0 | 1 => data.len() as u32,
        2 => (data.len() as u32).wrapping_add(u.int_in_range(0..=2u32)?).wrapping_sub(1),
        _ => u32::arbitrary(u)?,
    };
    let raw_len = if codec == Codec::Raw && u.ratio(3, 4)? { payload.len() as u32 } else { raw_len };
    let id = if u.ratio(3, 4)? { ChunkId::of(&data) } else { ChunkId(<[u8; 32]>::arbitrary(u)?) };
    let header = Header {
        codec,
        raw_len,
        stored_len: payload.len() as u32,
        payload_crc: crc32c::crc32c(&payload),
        id,
    };
    let mut out = header.encode().to_vec();
    out.extend_from_slice(&payload);
    Ok(out)
}

fn round_trip(u: &mut Unstructured) -> arbitrary::Result<()> {
    let mut data = Vec::<u8>::arbitrary(u)?;
    // Repeat it, so that zstd pays often.
    let rep = u.int_in_range(1..=64usize)?.min((128 << 10) / (data.len() + 1) + 1);
    data = data.repeat(rep);
    let level = u.int_in_range(0..=3)?;
    let id = ChunkId::of(&data);
    let enc = encode(&id, &data, level);
    let h = Header::decode(&enc).expect("an encoded header decodes");
    assert_eq!((h.id, h.raw_len as usize), (id, data.len()));
    assert_eq!(enc.len(), HEADER_LEN + h.stored_len as usize);
    assert_eq!(
        h.payload_crc,
        crc32c::crc32c(&enc[HEADER_LEN..]),
        "the payload CRC is CRC-32C (a second implementation)"
    );
    match h.codec {
        Codec::Raw => assert_eq!(&enc[HEADER_LEN..], &data[..]),
        Codec::Zstd => {
            assert!(level > 0 && data.len() >= 512, "zstd only when asked and worth it");
            assert!(h.stored_len as usize <= data.len() - data.len() / 32, "zstd only when it saves");
        }
    }
    assert_eq!(decode(&enc, data.len(), true), Ok((h, data.clone())));
    if !data.is_empty() {
        assert!(decode(&enc, data.len() - 1, false).is_err(), "over the caller's limit");
    }
    check_any(&enc, MAX_RAW.max(data.len()));

    // One byte flipped anywhere.
    let mut bad = enc.clone();
    let i = u.int_in_range(0..=bad.len() - 1)?;
    bad[i] ^= u.int_in_range(1..=255u8)?;
    assert!(decode(&bad, MAX_RAW.max(data.len()), true).is_err(), "flip at {i} of {} accepted", bad.len());
    check_any(&bad, MAX_RAW.max(data.len()));
    // Truncated, or with bytes after the payload.
    let cut = u.int_in_range(0..=enc.len() - 1)?;
    assert!(decode(&enc[..cut], MAX_RAW.max(data.len()), true).is_err(), "truncation at {cut} accepted");
    let mut longer = enc.clone();
    longer.extend_from_slice(&Vec::<u8>::arbitrary(u)?);
    if longer.len() > enc.len() {
        assert!(decode(&longer, MAX_RAW.max(data.len()), true).is_err(), "extension accepted");
    }

    // A client's own zstd frame, stored as is.
    let frame = zstd::bulk::compress(&data, level.max(1)).expect("compressing in memory");
    let enc = encode_zstd_frame(&id, data.len() as u32, &frame);
    assert_eq!(decode(&enc, data.len(), true).map(|(_, raw)| raw), Ok(data));
    Ok(())
}

fuzz_target!(|bytes: &[u8]| {
    let Some((&mode, rest)) = bytes.split_first() else { return };
    match mode {
        // A literal object (seeds: real objects from `object::encode`), at
        // the default limit and just under its declared length.
        b'o' => {
            check_any(rest, MAX_RAW);
            if let Ok(h) = Header::decode(rest) {
                check_any(rest, (h.raw_len as usize).saturating_sub(1).min(MAX_RAW));
            }
        }
        _ => {
            let mut u = Unstructured::new(rest);
            match mode % 3 {
                0 => {
                    let Ok(max_raw) = u.int_in_range(0..=MAX_RAW) else { return };
                    check_any(u.take_rest(), max_raw);
                }
                1 => {
                    let (Ok(enc), Ok(max_raw)) = (forged(&mut u), u.int_in_range(0..=MAX_RAW)) else {
                        return;
                    };
                    check_any(&enc, max_raw);
                    check_any(&enc, MAX_RAW);
                }
                _ => {
                    let _ = round_trip(&mut u);
                }
            }
        }
    }
});
