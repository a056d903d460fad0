//! A bound on the framing of a `multipart/form-data` body before its parser
//! sees it.
//!
//! The parser (multer, under axum's `Multipart`) streams each part's data,
//! but it holds everything before the first delimiter (the preamble) and
//! each part's header section until it finds their ends: a body of 200 MiB
//! of preamble, sent without `Content-Length`, made a server hold 200 MiB.
//! [`limit`] passes the body through unchanged and fails it (with
//! [`FramingTooLong`], which the handlers answer with 413) once a preamble
//! or a part's header section passes [`MAX_FRAMING`] bytes; the regions are
//! followed by [`crate::multipart::Framing`]. Part data is only scanned for
//! the next delimiter (about 0.06 s of CPU per GiB here), never held. The
//! seed's multipart routes use it, whose bodies may be as large as a piece
//! or a file; `POST /api/chunks` bounds its whole body instead (4 MiB and a
//! little, reserved before it is read).

use axum::body::Body;
use axum::extract::Request;
use axum::http::header;
use bytes::Bytes;
use futures_util::StreamExt;

use crate::multipart::Framing;
pub use crate::multipart::FramingTooLong;

/// Most bytes of a preamble, or of one part's header section (from its
/// delimiter to the empty line), that a multipart body may carry. A
/// browser's part headers are about 200 bytes.
pub const MAX_FRAMING: usize = 64 << 10;

/// `req` with its body bounded as described above, when its `Content-Type`
/// names a boundary; else as it is (the multipart extractor then refuses
/// it).
pub fn guarded(req: Request) -> Request {
    let boundary = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok());
    let Some(boundary) = boundary else { return req };
    let (parts, body) = req.into_parts();
    Request::from_parts(parts, limit(body, &boundary))
}

/// `body` (of a multipart body whose boundary is `boundary`, from its
/// `Content-Type`), failing with [`FramingTooLong`] as described above.
pub fn limit(body: Body, boundary: &str) -> Body {
    let mut scan = Framing::new(boundary, MAX_FRAMING);
    Body::from_stream(body.into_data_stream().map(move |piece| {
        let piece = piece.map_err(axum::BoxError::from)?;
        scan.feed(&piece)?;
        Ok::<Bytes, axum::BoxError>(piece)
    }))
}
