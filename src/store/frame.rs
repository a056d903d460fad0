//! Clients' zstd frames of chunks (`POST /api/chunks` with
//! `Content-Encoding: zstd`): decoded with a bounded window, and kept as the
//! stored object when they are one plain frame that saves space.

use super::error::{Error, Result};

/// The widest window a client's zstd body may ask the decoder for: 8 MiB
/// (window log 23), the most RFC 9659 lets HTTP ask of a decoder, and
/// never the 128 MiB a hostile header may ask for. The decoder's window is
/// what it allocates.
pub const WINDOW_LOG_MAX: u32 = 23;

/// Whether `body` is exactly one zstd frame (no second frame, no trailing
/// bytes, not cut short).
pub fn single_frame(body: &[u8]) -> bool {
    zstd::zstd_safe::find_frame_compressed_size(body).is_ok_and(|n| n == body.len())
}

/// The decoded size a body of exactly one zstd frame declares in its
/// header (zstd checks the frame against it while decoding); `None` for
/// several frames, no declared size, or no frame.
pub fn declared_size(body: &[u8]) -> Option<u64> {
    single_frame(body).then(|| zstd::zstd_safe::get_frame_content_size(body).ok().flatten()).flatten()
}

/// A client's zstd frame of `raw`, when it is kept as the stored object:
/// one plain frame, smaller than `raw`.
pub(super) fn kept_frame<'a>(frame: &'a [u8], raw: &[u8]) -> Option<&'a [u8]> {
    (single_frame(frame) && frame.len() < raw.len()).then_some(frame)
}

/// Decodes a client's zstd frame of a chunk, refusing anything over `max`
/// bytes, through a window no wider than a chunk of `max` bytes needs.
///
/// # Errors
/// [`Error::TooLarge`] or [`Error::InvalidInput`].
pub fn decode_frame(frame: &[u8], max: usize) -> Result<Vec<u8>> {
    decode_within(frame, "decoded chunk", max, window_log(max))
}

/// Decodes a zstd body (one or more frames) of `what`, refusing anything
/// over `max` bytes (a declared size past it before anything is decoded),
/// through a window of at most `2^window_log` bytes (within
/// [`WINDOW_LOG_MAX`]).
///
/// # Errors
/// [`Error::TooLarge`] past `max`; [`Error::InvalidInput`] for a body that
/// is not zstd or asks for a wider window.
pub fn decode_within(body: &[u8], what: &'static str, max: usize, window_log: u32) -> Result<Vec<u8>> {
    use std::io::Read;
    let too_large = |got: u64| Error::TooLarge { what, limit: max as u64, got };
    if let Ok(Some(n)) = zstd::zstd_safe::get_frame_content_size(body) {
        if n > max as u64 {
            return Err(too_large(n));
        }
    }
    let window_log = window_log.min(WINDOW_LOG_MAX);
    let mut dec =
        zstd::stream::read::Decoder::new(body).map_err(|e| Error::InvalidInput(format!("zstd: {e}")))?;
    dec.window_log_max(window_log).map_err(|e| Error::InvalidInput(format!("zstd: {e}")))?;
    let mut out = Vec::with_capacity(max.min(1 << 20));
    dec.take(max as u64 + 1).read_to_end(&mut out).map_err(|e| {
        Error::InvalidInput(format!(
            "invalid zstd data (or a window wider than {} bytes): {e}",
            1u64 << window_log
        ))
    })?;
    if out.len() > max {
        return Err(too_large(out.len() as u64));
    }
    Ok(out)
}

/// The zstd window log a frame of at most `max` bytes may use: twice what
/// it needs (encoders round up), within 10 (zstd's minimum) and
/// [`WINDOW_LOG_MAX`].
fn window_log(max: usize) -> u32 {
    (usize::BITS - max.saturating_sub(1).leading_zeros() + 1).clamp(10, WINDOW_LOG_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_frame_declares_its_size_and_others_do_not() {
        let raw = vec![b'a'; 10_000];
        let one = zstd::bulk::compress(&raw, 3).unwrap();
        assert_eq!(declared_size(&one), Some(10_000));
        let two = [one.clone(), one.clone()].concat();
        assert_eq!(declared_size(&two), None, "two frames");
        assert_eq!(declared_size(&one[..one.len() - 1]), None, "a cut frame");
        assert_eq!(declared_size(b"{\"hashes\":[]}"), None, "not zstd");
        let mut streamed = Vec::new();
        zstd::stream::copy_encode(&raw[..], &mut streamed, 3).unwrap();
        assert_eq!(declared_size(&streamed), None, "a streamed frame declares none");
    }
}
