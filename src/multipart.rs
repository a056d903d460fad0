//! The framing of a `multipart/form-data` body (RFC 7578, RFC 2046
//! §5.1.1), followed as it streams past, so that what a parser must hold
//! whole can be bounded before the parser sees it. Pure: the fuzz target
//! `multipart_framing` checks it against a reading of the whole body.
//!
//! A multipart parser streams each part's data, but it holds the preamble
//! (everything before the first delimiter) and each part's header section
//! until it finds their ends. [`Framing`] counts those regions as the body's
//! pieces arrive and fails once one passes its limit; part data is only
//! searched for the next delimiter (`memchr::memmem`), never held. The
//! regions are drawn where the parser under axum's `Multipart` (multer)
//! draws them:
//!
//! - the **preamble** runs from the body's first byte to the end of the
//!   first `--boundary`;
//! - a **delimiter's line** runs from just past `--boundary` to its CRLF
//!   (the first two bytes being `--` instead close the body); it is counted
//!   as part headers;
//! - a **header section** runs from there to the end of the next
//!   CRLF CRLF (so a part that starts `--boundary CRLF CRLF` has not ended
//!   its headers yet: the parser looks for the empty line after the
//!   delimiter line's CRLF);
//! - **data** runs to the next CRLF `--boundary`.

use memchr::memmem;

/// Which region of a multipart body ran past its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// Before the first delimiter.
    Preamble,
    /// A delimiter's line, or a part's header section.
    PartHeaders,
}

impl std::fmt::Display for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Region::Preamble => "preamble",
            Region::PartHeaders => "part headers",
        })
    }
}

/// A multipart body's preamble, or one part's delimiter line or header
/// section, ran past `limit` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the multipart body's {region} ran past {limit} bytes")]
pub struct FramingTooLong {
    /// Which region.
    pub region: Region,
    /// The limit it ran past, in bytes.
    pub limit: usize,
}

/// Where in the body the bytes seen so far end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Before the first delimiter (`--boundary`).
    Preamble,
    /// Just past a delimiter: `--` closes the body, anything else is the
    /// start of the delimiter's line.
    Delimiter,
    /// In the rest of a delimiter's line (transport padding), up to its
    /// CRLF.
    Line,
    /// In a part's header section, up to its empty line.
    Headers,
    /// In a part's data, up to the next `CRLF--boundary`.
    Data,
    /// Past the closing delimiter: nothing more is parsed.
    Closed,
}

/// The scanner: feed it the body's pieces in order with [`Framing::feed`].
#[derive(Debug)]
pub struct Framing {
    /// `--boundary`.
    first: memmem::Finder<'static>,
    /// `CRLF--boundary`.
    next: memmem::Finder<'static>,
    /// `CRLF CRLF`, a header section's end.
    blank: memmem::Finder<'static>,
    /// `CRLF`, a delimiter line's end.
    crlf: memmem::Finder<'static>,
    limit: usize,
    at: At,
    /// Bytes counted in the current preamble, line or header section.
    counted: usize,
    /// The last bytes of the pieces before that may begin the pattern
    /// being looked for.
    carry: Vec<u8>,
}

impl Framing {
    /// A scanner for a body whose `Content-Type` names `boundary` (without
    /// the leading `--`), failing past `limit` bytes of preamble, of a
    /// delimiter's line or of a header section.
    pub fn new(boundary: &str, limit: usize) -> Self {
        let first = format!("--{boundary}").into_bytes();
        let next = [b"\r\n".as_slice(), &first].concat();
        Framing {
            first: memmem::Finder::new(&first).into_owned(),
            next: memmem::Finder::new(&next).into_owned(),
            blank: memmem::Finder::new(b"\r\n\r\n").into_owned(),
            crlf: memmem::Finder::new(b"\r\n").into_owned(),
            limit,
            at: At::Preamble,
            counted: 0,
            carry: Vec::new(),
        }
    }

    /// Takes the next piece of the body (of any size, empty included).
    ///
    /// # Errors
    /// [`FramingTooLong`] in the piece that carries the first byte past the
    /// limit; once failed, the body is not to be fed further.
    pub fn feed(&mut self, mut piece: &[u8]) -> Result<(), FramingTooLong> {
        while !piece.is_empty() {
            let used = match self.at {
                At::Closed => return Ok(()),
                At::Preamble => self.counting(piece, Region::Preamble, At::Delimiter)?,
                At::Line => self.counting(piece, Region::PartHeaders, At::Headers)?,
                At::Headers => self.counting(piece, Region::PartHeaders, At::Data)?,
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
                        } else if self.carry == b"\r\n" {
                            // The most common line: nothing but its CRLF
                            // (2 bytes, within any limit a preamble, which
                            // ends with `--boundary`, has passed).
                            self.to(At::Headers);
                        } else {
                            // The start of a longer line, still carried so
                            // that the line's end is found in them.
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

    /// Whether the closing delimiter (`--boundary--`) has been seen.
    pub fn closed(&self) -> bool {
        self.at == At::Closed
    }

    /// In a counted region: looks for its end (`--boundary` in a
    /// preamble, CRLF on a delimiter's line, the empty line in a header
    /// section); how many bytes of `piece` it used.
    fn counting(&mut self, piece: &[u8], region: Region, then: At) -> Result<usize, FramingTooLong> {
        let pattern = match self.at {
            At::Preamble => &self.first,
            At::Line => &self.crlf,
            _ => &self.blank,
        };
        let found = find(&mut self.carry, pattern, piece);
        let used = found.unwrap_or(piece.len());
        self.counted += used;
        if self.counted > self.limit {
            return Err(FramingTooLong { region, limit: self.limit });
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

/// Where `pattern` ends in `carry` (the last bytes of the pieces before)
/// followed by `piece`: how many bytes of `piece` it takes to reach its end
/// (0 when it ends with `carry`). When it is not there, `carry` keeps the
/// last bytes that may begin it (one fewer than the pattern's).
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

    const LIMIT: usize = 64 << 10;

    /// `body` fed in pieces of `size` bytes: where the scan ends, or the error.
    fn scan(body: &[u8], size: usize) -> Result<At, FramingTooLong> {
        let mut s = Framing::new("BND", LIMIT);
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
        let long = vec![b'x'; LIMIT + 1];
        let preamble =
            [long.as_slice(), b"\r\n", &part("Content-Disposition: form-data; name=\"a\"", b"1")].concat();
        let e = scan(&preamble, 4096).unwrap_err();
        assert_eq!(e, FramingTooLong { region: Region::Preamble, limit: LIMIT });
        assert_eq!(e.to_string(), "the multipart body's preamble ran past 65536 bytes");
        let header = format!("X-Long: {}", "y".repeat(LIMIT));
        let headers = part(&header, b"1");
        assert_eq!(scan(&headers, 4096).unwrap_err().region, Region::PartHeaders);
        // The second part's headers are counted afresh; data is never counted.
        let big_data = [part("Content-Disposition: form-data; name=\"a\"", &long), part("", b"2")].concat();
        assert_eq!(scan(&big_data, 4096).unwrap(), At::Data);
        // A delimiter's own CRLF does not end a header section: the
        // parser looks for the empty line after it, so a part without one
        // is counted as headers however it is padded.
        for open in ["--BND\r\n\r\n", "--BND  \r\n\r\n", "--BND\t\r\n"] {
            let no_end = [open.as_bytes(), &long].concat();
            assert_eq!(scan(&no_end, 4096).unwrap_err().region, Region::PartHeaders, "{open:?}");
        }
        assert_eq!(scan(b"--BND  \r\n\r\n\r\nx", 1).unwrap(), At::Data);
        // Exactly at the limit passes.
        let edge = [vec![b'x'; LIMIT - 5].as_slice(), b"--BND"].concat();
        assert_eq!(scan(&edge, 1000).unwrap(), At::Delimiter);
    }

    #[test]
    fn a_delimiter_line_counts_from_its_first_byte() {
        // Limit 3: the preamble `--B` passes, then a line of "\r\n" (2
        // bytes) or "x\r\n" (3) passes, "xy\r\n" (4) fails, and so does
        // "xyzw" that has not ended yet.
        let s = |body: &[u8], limit| {
            let mut f = Framing::new("B", limit);
            body.chunks(1).try_for_each(|p| f.feed(p)).map(|()| f.at)
        };
        assert_eq!(s(b"--B\r\n", 3), Ok(At::Headers));
        assert_eq!(s(b"--Bx\r\n", 3), Ok(At::Headers));
        assert!(s(b"--Bxy\r\n", 3).is_err());
        assert_eq!(s(b"--Bxyzw", 3).unwrap_err().region, Region::PartHeaders);
        assert_eq!(s(b"--Bxy", 3), Ok(At::Line));
        assert_eq!(s(b"--B--", 3), Ok(At::Closed));
        assert_eq!(s(b"--B--", 2).unwrap_err().region, Region::Preamble);
    }
}
