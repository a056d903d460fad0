//! Clients' zstd frames of chunks (`POST /api/chunks` with
//! `Content-Encoding: zstd`): decoded with a bounded window, and kept as the
//! stored object when they are one plain frame that saves space.

use super::error::{Error, Result};

/// A client's zstd frame of `raw`, when it is kept as the stored object:
/// one plain frame, smaller than `raw`.
pub(super) fn kept_frame<'a>(frame: &'a [u8], raw: &[u8]) -> Option<&'a [u8]> {
    let single = zstd::zstd_safe::find_frame_compressed_size(frame).is_ok_and(|n| n == frame.len());
    (single && frame.len() < raw.len()).then_some(frame)
}

/// Decodes a client's zstd frame, refusing anything over `max` bytes.
///
/// # Errors
/// [`Error::TooLarge`] or [`Error::InvalidInput`].
pub fn decode_frame(frame: &[u8], max: usize) -> Result<Vec<u8>> {
    use std::io::Read;
    let too_large = |got: u64| Error::TooLarge { what: "decoded chunk", limit: max as u64, got };
    // A declared size past the limit is refused before anything is decoded.
    if let Ok(Some(n)) = zstd::zstd_safe::get_frame_content_size(frame) {
        if n > max as u64 {
            return Err(too_large(n));
        }
    }
    let mut dec =
        zstd::stream::read::Decoder::new(frame).map_err(|e| Error::InvalidInput(format!("zstd: {e}")))?;
    // The decoder's window is what it allocates: no larger than a chunk can
    // need (and never the 128 MiB a hostile header may ask for).
    dec.window_log_max(window_log(max)).map_err(|e| Error::InvalidInput(format!("zstd: {e}")))?;
    let mut out = Vec::with_capacity(max.min(1 << 20));
    dec.take(max as u64 + 1).read_to_end(&mut out).map_err(|e| {
        Error::InvalidInput(format!("invalid zstd data (or a window larger than {max} bytes): {e}"))
    })?;
    if out.len() > max {
        return Err(too_large(out.len() as u64));
    }
    Ok(out)
}

/// The zstd window log a frame of at most `max` bytes may use: twice what
/// it needs (encoders round up), within 10 (zstd's minimum) and 23 (8 MiB,
/// the most RFC 9659 lets HTTP ask of a decoder).
fn window_log(max: usize) -> u32 {
    (usize::BITS - max.saturating_sub(1).leading_zeros() + 1).clamp(10, 23)
}
