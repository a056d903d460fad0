//! Request bodies in a content coding (RFC 9110 §8.4): the JSON API takes
//! `Content-Encoding: zstd` (RFC 8878 §7.2). The long bodies of an upload
//! are lists of hex hashes (the missing-chunks query, the manifest a
//! commit carries, a commit's segments), about 130 bytes per chunk of
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
use crate::store;

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

/// Decodes a zstd body (one or more frames) into at most `limit` bytes,
/// reserving the memory it takes in the budget first. A lone frame that
/// declares its size (as `zstd::bulk` and `zstd -c FILE` write it) is
/// decoded in one pass into exactly that many bytes, which are reserved;
/// any other body is streamed through a window of at most 8 MiB
/// ([`store::WINDOW_LOG_MAX`]: an encoder that did not know the size takes
/// its level's window, however short the body), and `limit` plus that
/// window are reserved. Returns the bytes and their reservation, to be
/// held until the answer.
///
/// # Errors
/// 413 when the frame declares, or decodes to, more than `limit`; 400 for
/// a body that is not zstd, asks for a wider window, or does not decode to
/// the size it declares; 503 when the server is shutting down.
pub async fn decode(st: &AppState, coded: &[u8], limit: usize) -> Result<(Bytes, Reservation), ApiError> {
    if let Some(n) = store::declared_size(coded) {
        if n > limit as u64 {
            return Err(too_large(limit, &format!("declares {n}")));
        }
        let share = st.reserve_body(n).await?;
        let mut out = Vec::new();
        if !store::object::decompress_capped_into(coded, n as usize, &mut out) {
            return Err(ApiError::BadRequest(format!(
                "the zstd frame does not decode to the {n} bytes its header declares"
            )));
        }
        return Ok((Bytes::from(out), share));
    }
    let share = st.reserve_body(limit as u64 + (1 << store::WINDOW_LOG_MAX)).await?;
    match store::decode_within(coded, "decoded JSON body", limit, store::WINDOW_LOG_MAX) {
        Ok(raw) => Ok((Bytes::from(raw), share)),
        Err(store::Error::TooLarge { .. }) => Err(too_large(limit, "decodes to more")),
        Err(e) => Err(ApiError::BadRequest(format!("the body is not zstd (Content-Encoding: zstd): {e}"))),
    }
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
}
