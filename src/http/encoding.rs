//! Request bodies in a content coding (RFC 9110 §8.4): the JSON API takes
//! `Content-Encoding: zstd` (RFC 8878 §7.2). The long bodies of an upload
//! are lists of hex hashes (the missing-chunks query, the manifest a
//! commit carries, a commit's segments), about 150 bytes per chunk of
//! 256 KiB; in zstd they take about half. `GET /api/chunking` says the
//! server takes them (`request_encodings`), so a client compresses only
//! where it will be understood.
//!
//! The coded body is read within `limits.max_json_body` like any other,
//! and decoded within the same limit: what the handler parses is never
//! more than a plain body could be. The memory decoding takes is reserved
//! in the memory budget first ([`decode`]).

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState, Reservation};

/// The content codings the JSON API takes, as `GET /api/chunking` lists
/// them and a 415 names them in `Accept-Encoding` (RFC 9110 §12.5.3).
pub const REQUEST_ENCODINGS: &[&str] = &["zstd"];

/// How a request body is coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Zstd,
}

/// The body's coding from its `Content-Encoding` fields: none, empty or
/// `identity` is [`Coding::Identity`]; `zstd` (any case, `identity` beside
/// it ignored) is [`Coding::Zstd`].
///
/// # Errors
/// [`Unsupported`] for any other coding or more than one.
pub fn coding(headers: &HeaderMap) -> Result<Coding, Unsupported> {
    let mut codings = Vec::new();
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let Ok(value) = value.to_str() else { return Err(Unsupported("an unreadable coding".into())) };
        codings.extend(
            value.split(',').map(str::trim).filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity")),
        );
    }
    match codings.as_slice() {
        [] => Ok(Coding::Identity),
        [c] if c.eq_ignore_ascii_case("zstd") => Ok(Coding::Zstd),
        [c] => Err(Unsupported(format!("\"{c}\""))),
        _ => Err(Unsupported("more than one coding".into())),
    }
}

/// A body in a coding the JSON API does not take (what it is in): 415,
/// naming the codings taken in `Accept-Encoding` (RFC 9110 §12.5.3).
#[derive(Debug)]
pub struct Unsupported(String);

impl IntoResponse for Unsupported {
    fn into_response(self) -> Response {
        let mut r = ApiError::UnsupportedMediaType(format!(
            "the body is in {}; JSON bodies may be sent plain or in {}",
            self.0,
            REQUEST_ENCODINGS.join(", ")
        ))
        .into_response();
        r.headers_mut().insert(header::ACCEPT_ENCODING, HeaderValue::from_static("zstd"));
        r
    }
}

/// The largest window a streamed frame may ask the decoder for: 8 MiB,
/// the most RFC 9659 lets HTTP ask of a decoder (and not the 128 MiB a
/// hostile header may ask for).
const WINDOW_LOG_MAX: u32 = 23;

/// Decodes a zstd body (one or more frames) into at most `limit` bytes,
/// reserving the memory it takes in the budget first. A lone frame that
/// declares its size (as `zstd::bulk` and `zstd -c FILE` write it) is
/// decoded in one pass into exactly that many bytes, which are reserved;
/// any other body is streamed through a window of at most 8 MiB, and
/// `limit` plus that window are reserved. Returns the bytes and their
/// reservation, to be held until the answer.
///
/// # Errors
/// 413 when the frame declares, or decodes to, more than `limit`; 400 for
/// a body that is not zstd, asks for a larger window, or does not decode to
/// the size it declares; 503 when the server is shutting down.
pub async fn decode(st: &AppState, coded: &[u8], limit: usize) -> Result<(Bytes, Reservation), ApiError> {
    let not_zstd = |e: &dyn std::fmt::Display| {
        ApiError::BadRequest(format!("the body is not zstd that decodes within an 8 MiB window: {e}"))
    };
    if let Some(n) = declared_size(coded) {
        if n > limit as u64 {
            return Err(too_large(limit, &format!("declares {n}")));
        }
        let share = st.reserve_body(n).await?;
        let mut out = Vec::new();
        if !crate::store::object::decompress_capped_into(coded, n as usize, &mut out) {
            return Err(ApiError::BadRequest(format!(
                "the zstd frame does not decode to the {n} bytes its header declares"
            )));
        }
        return Ok((Bytes::from(out), share));
    }
    let share = st.reserve_body(limit as u64 + (1 << WINDOW_LOG_MAX)).await?;
    let mut decoder = zstd::stream::read::Decoder::with_buffer(coded).map_err(|e| not_zstd(&e))?;
    decoder.window_log_max(WINDOW_LOG_MAX).map_err(|e| not_zstd(&e))?;
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(decoder, limit as u64 + 1), &mut out)
        .map_err(|e| not_zstd(&e))?;
    if out.len() > limit {
        return Err(too_large(limit, "decodes to more"));
    }
    Ok((Bytes::from(out), share))
}

/// The decoded size a body of exactly one zstd frame declares in its
/// header; `None` for several frames, no declared size, or no frame.
fn declared_size(coded: &[u8]) -> Option<u64> {
    use zstd::zstd_safe;
    let one_frame = zstd_safe::find_frame_compressed_size(coded).is_ok_and(|n| n == coded.len());
    one_frame.then(|| zstd_safe::get_frame_content_size(coded).ok().flatten()).flatten()
}

fn too_large(limit: usize, what: &str) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "a JSON body may be at most {limit} bytes decoded; this zstd body {what}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::CONTENT_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn codings_are_read_as_rfc_9110_lists() {
        assert_eq!(coding(&headers(&[])).unwrap(), Coding::Identity);
        assert_eq!(coding(&headers(&["identity"])).unwrap(), Coding::Identity);
        assert_eq!(coding(&headers(&[""])).unwrap(), Coding::Identity);
        assert_eq!(coding(&headers(&["zstd"])).unwrap(), Coding::Zstd);
        assert_eq!(coding(&headers(&[" ZStd "])).unwrap(), Coding::Zstd);
        assert_eq!(coding(&headers(&["identity, zstd"])).unwrap(), Coding::Zstd);
        for refused in [&["gzip"][..], &["zstd, zstd"], &["zstd", "gzip"], &["br"]] {
            let r = coding(&headers(refused)).unwrap_err().into_response();
            assert_eq!(r.status(), 415, "{refused:?}");
            assert_eq!(r.headers()[header::ACCEPT_ENCODING], "zstd", "{refused:?}");
        }
    }

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
