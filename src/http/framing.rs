//! A bound on the framing of a `multipart/form-data` body (RFC 7578, RFC
//! 2046 §5.1.1) before its parser sees it.
//!
//! The parser (multer, under axum's `Multipart`) streams each part's data,
//! but it holds everything before the first delimiter (the preamble) and
//! each part's header section until it finds their ends: a body of 200 MiB
//! of preamble, sent without `Content-Length`, made a server hold 200 MiB.
//! [`limit`] passes the body through unchanged and fails it (with
//! [`FramingTooLong`], which the handlers answer with 413) once a preamble
//! or a part's header section passes [`MAX_FRAMING`] bytes. Part data is
//! only scanned for the next delimiter (about 0.06 s of CPU per GiB here),
//! never held. The seed's multipart routes use it, whose bodies may be as
//! large as a piece or a file; `POST /api/chunks` bounds its whole body
//! instead (4 MiB and a little, reserved before it is read).

use axum::body::Body;
use axum::extract::Request;
use axum::http::header;
use bytes::Bytes;
use futures_util::StreamExt;
use memchr::memmem;

/// Most bytes of a preamble, or of one part's header section (from its
/// delimiter to the empty line), that a multipart body may carry. A
/// browser's part headers are about 200 bytes.
pub const MAX_FRAMING: usize = 64 << 10;

/// A multipart body's preamble or a part's header section ran past
/// [`MAX_FRAMING`] bytes.
#[derive(Debug, thiserror::Error)]
#[error("the multipart body's {0} ran past {MAX_FRAMING} bytes")]
pub struct FramingTooLong(&'static str);

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
    let mut scan = Scan::new(boundary);
    Body::from_stream(body.into_data_stream().map(move |piece| {
        let piece = piece.map_err(axum::BoxError::from)?;
        scan.feed(&piece)?;
        Ok::<Bytes, axum::BoxError>(piece)
    }))
}

/// Where in the body the bytes seen so far end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Before the first delimiter (`--boundary`).
    Preamble,
    /// Just past a delimiter: `--` closes the body, anything else is the
    /// rest of the delimiter's line.
    Delimiter,
    /// In the rest of a delimiter's line (transport padding), up to its
    /// CRLF: the header section starts after it, where the parser starts
    /// looking for the section's end.
    Line,
    /// In a part's header section, up to its empty line.
    Headers,
    /// In a part's data, up to the next `CRLF--boundary`.
    Data,
    /// Past the closing delimiter: nothing more is parsed.
    Closed,
}

/// The scanner: the position, the bytes counted in the current preamble or
/// header section, and the last bytes of the previous piece that may begin
/// the pattern being looked for.
struct Scan {
    /// `--boundary`.
    first: memmem::Finder<'static>,
    /// `CRLF--boundary`.
    next: memmem::Finder<'static>,
    /// `CRLF CRLF`, a header section's end.
    blank: memmem::Finder<'static>,
    /// `CRLF`, a delimiter line's end.
    crlf: memmem::Finder<'static>,
    at: At,
    counted: usize,
    carry: Vec<u8>,
}

impl Scan {
    fn new(boundary: &str) -> Self {
        let first = format!("--{boundary}").into_bytes();
        let next = [b"\r\n".as_slice(), &first].concat();
        Scan {
            first: memmem::Finder::new(&first).into_owned(),
            next: memmem::Finder::new(&next).into_owned(),
            blank: memmem::Finder::new(b"\r\n\r\n").into_owned(),
            crlf: memmem::Finder::new(b"\r\n").into_owned(),
            at: At::Preamble,
            counted: 0,
            carry: Vec::new(),
        }
    }

    /// Takes the next piece of the body.
    fn feed(&mut self, mut piece: &[u8]) -> Result<(), FramingTooLong> {
        while !piece.is_empty() {
            let used = match self.at {
                At::Closed => return Ok(()),
                At::Preamble => self.counting(piece, "preamble", At::Delimiter)?,
                At::Line => self.counting(piece, "part headers", At::Headers)?,
                At::Headers => self.counting(piece, "part headers", At::Data)?,
                At::Data => match find(&mut self.carry, &self.next, piece) {
                    Some(n) => {
                        self.to(At::Delimiter);
                        n
                    }
                    None => piece.len(),
                },
                At::Delimiter => {
                    // Two bytes decide; they may come in two pieces.
                    let n = (2 - self.carry.len()).min(piece.len());
                    self.carry.extend_from_slice(&piece[..n]);
                    if self.carry.len() == 2 {
                        if self.carry == b"--" {
                            self.to(At::Closed);
                        } else {
                            // They are the start of the delimiter's line
                            // (most often its CRLF), still carried so that
                            // the line's end is found in them.
                            self.at = At::Line;
                            self.counted = 2;
                        }
                    }
                    n
                }
            };
            piece = &piece[used..];
        }
        Ok(())
    }

    /// In a counted region: looks for its end (`--boundary` in a
    /// preamble, CRLF on a delimiter's line, the empty line in a header
    /// section); how many bytes of `piece` it used.
    fn counting(&mut self, piece: &[u8], what: &'static str, then: At) -> Result<usize, FramingTooLong> {
        let pattern = match self.at {
            At::Preamble => &self.first,
            At::Line => &self.crlf,
            _ => &self.blank,
        };
        let found = find(&mut self.carry, pattern, piece);
        let used = found.unwrap_or(piece.len());
        self.counted += used;
        if self.counted > MAX_FRAMING {
            return Err(FramingTooLong(what));
        }
        if found.is_some() {
            self.to(then);
        }
        Ok(used)
    }

    /// Moves to `at`, counting and carrying nothing yet.
    fn to(&mut self, at: At) {
        self.at = at;
        self.counted = 0;
        self.carry.clear();
    }
}

/// Where `pattern` ends in `carry` (the last bytes of the pieces before,
/// at most as many as the pattern) followed by `piece`: how many bytes of
/// `piece` it takes to reach its end (0 when it ends with `carry`). When it
/// is not there, `carry` keeps the last bytes that may begin it.
fn find(carry: &mut Vec<u8>, pattern: &memmem::Finder<'_>, piece: &[u8]) -> Option<usize> {
    let len = pattern.needle().len();
    if !carry.is_empty() {
        let head = &piece[..piece.len().min(len - 1)];
        let joint = [carry.as_slice(), head].concat();
        if let Some(i) = pattern.find(&joint) {
            return Some(i + len - carry.len());
        }
    }
    if let Some(i) = pattern.find(piece) {
        return Some(i + len);
    }
    let keep = len - 1;
    carry.extend_from_slice(&piece[piece.len().saturating_sub(keep)..]);
    let excess = carry.len().saturating_sub(keep);
    carry.drain(..excess);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `body` fed in pieces of `size` bytes: where the scan ends, or the error.
    fn scan(body: &[u8], size: usize) -> Result<At, FramingTooLong> {
        let mut s = Scan::new("BND");
        for piece in body.chunks(size) {
            s.feed(piece)?;
        }
        Ok(s.at)
    }

    fn part(headers: &str, data: &[u8]) -> Vec<u8> {
        [format!("--BND\r\n{headers}\r\n\r\n").as_bytes(), data, b"\r\n"].concat()
    }

    #[test]
    fn a_well_formed_body_passes_in_pieces_of_any_size() {
        let data = vec![b'-'; 300_000];
        let body = [
            b"preamble\r\n".as_slice(),
            &part("Content-Disposition: form-data; name=\"a\"", &data),
            &part("Content-Disposition: form-data; name=\"b\"", b"--BN\r\n--B"),
            b"--BND--\r\nepilogue",
        ]
        .concat();
        for size in [1, 2, 3, 7, 64, 4096, body.len()] {
            assert_eq!(scan(&body, size).unwrap(), At::Closed, "pieces of {size}");
        }
    }

    #[test]
    fn a_long_preamble_or_header_section_fails_and_long_data_does_not() {
        let long = vec![b'x'; MAX_FRAMING + 1];
        let preamble =
            [long.as_slice(), b"\r\n", &part("Content-Disposition: form-data; name=\"a\"", b"1")].concat();
        assert!(scan(&preamble, 4096).unwrap_err().to_string().contains("preamble"));
        let header = format!("X-Long: {}", "y".repeat(MAX_FRAMING));
        let headers = part(&header, b"1");
        assert!(scan(&headers, 4096).unwrap_err().to_string().contains("part headers"));
        // The second part's headers are counted afresh; data is never counted.
        let big_data = [part("Content-Disposition: form-data; name=\"a\"", &long), part("", b"2")].concat();
        assert_eq!(scan(&big_data, 4096).unwrap(), At::Data);
        // A delimiter's own CRLF does not end a header section: the
        // parser looks for the empty line after it, so a part without one
        // is counted as headers however it is padded.
        for open in ["--BND\r\n\r\n", "--BND  \r\n\r\n", "--BND\t\r\n"] {
            let no_end = [open.as_bytes(), &long].concat();
            assert!(scan(&no_end, 4096).unwrap_err().to_string().contains("part headers"), "{open:?}");
        }
        assert_eq!(scan(b"--BND  \r\n\r\n\r\nx", 1).unwrap(), At::Data);
        // Exactly at the limit passes.
        let edge = [vec![b'x'; MAX_FRAMING - 5].as_slice(), b"--BND"].concat();
        assert_eq!(scan(&edge, 1000).unwrap(), At::Delimiter);
    }
}
