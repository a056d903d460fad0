//! The multipart framing scanner (`multipart::Framing`), which bounds what the
//! multipart parser holds before it sees a body.
//!
//! - For any boundary, limit and body, however the body is split into pieces
//!   (empty ones included), the scanner's outcome (open, closed, or failed in
//!   a region) equals an independent reading of the whole body with a naive
//!   search, and it never panics.
//! - A failure comes in the very piece that carries the first byte past the
//!   limit (the bound holds to the byte, and nothing is refused early).
//! - A well-formed body (preamble, parts with header lines, closing
//!   delimiter, epilogue) is refused exactly when its preamble or one of its
//!   header sections is longer than the limit, in the first such region; else
//!   it ends closed, whatever its data holds short of a delimiter.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use depot::multipart::{Framing, FramingTooLong, Region};
use libfuzzer_sys::fuzz_target;

/// What the scanner says of a whole body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Passed, the closing delimiter not seen (yet).
    Open,
    /// Passed, the closing delimiter seen.
    Closed,
    /// Refused in this region; the offset of the first byte past the limit.
    Failed(Region, usize),
}

/// The end of the first `needle` at or after `from`, by brute force.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    (from..=hay.len().saturating_sub(needle.len()))
        .find(|&i| i + needle.len() <= hay.len() && &hay[i..i + needle.len()] == needle)
        .map(|i| i + needle.len())
}

/// The regions of `body` as the module's documentation draws them, each
/// checked against `limit`.
fn reference(body: &[u8], boundary: &[u8], limit: usize) -> Outcome {
    let first = [b"--".as_slice(), boundary].concat();
    let next = [b"\r\n--".as_slice(), boundary].concat();
    // A region from `start` to `end` (or to the body's end, not ended yet).
    let region = |start: usize, end: Option<usize>, r: Region| -> Result<Option<usize>, Outcome> {
        if end.unwrap_or(body.len()) - start > limit {
            Err(Outcome::Failed(r, start + limit))
        } else {
            Ok(end)
        }
    };
    let run = || -> Result<Outcome, Outcome> {
        let Some(mut at) = region(0, find(body, &first, 0), Region::Preamble)? else {
            return Ok(Outcome::Open);
        };
        loop {
            if body.len() - at < 2 {
                return Ok(Outcome::Open);
            }
            if &body[at..at + 2] == b"--" {
                return Ok(Outcome::Closed);
            }
            let Some(line) = region(at, find(body, b"\r\n", at), Region::PartHeaders)? else {
                return Ok(Outcome::Open);
            };
            let Some(headers) = region(line, find(body, b"\r\n\r\n", line), Region::PartHeaders)? else {
                return Ok(Outcome::Open);
            };
            match find(body, &next, headers) {
                Some(end) => at = end,
                None => return Ok(Outcome::Open),
            }
        }
    };
    run().unwrap_or_else(|failed| failed)
}

/// The scanner over `body` cut into pieces of the given sizes (the rest in
/// one last piece).
fn scan(body: &[u8], boundary: &str, limit: usize, sizes: &[usize]) -> Outcome {
    let mut f = Framing::new(boundary, limit);
    let mut at = 0;
    let ends = sizes.iter().scan(0usize, |end, &n| {
        *end = (*end + n).min(body.len());
        Some(*end)
    });
    for end in ends.chain([body.len()]) {
        match f.feed(&body[at..end]) {
            Ok(()) => {}
            Err(FramingTooLong { region, limit: l }) => {
                assert_eq!(l, limit);
                // The failing piece carries the first byte past the limit.
                let Outcome::Failed(r, past) = reference(body, boundary.as_bytes(), limit) else {
                    panic!("refused in the {region} at bytes {at}..{end}, which the reference passes");
                };
                assert_eq!(r, region);
                assert!(at <= past && past < end, "the byte past the limit is {past}, the piece {at}..{end}");
                return Outcome::Failed(region, past);
            }
        }
        at = end;
    }
    if f.closed() { Outcome::Closed } else { Outcome::Open }
}

// ---------------------------------------------------------------- generators

fn boundary(u: &mut Unstructured) -> arbitrary::Result<String> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => "B".into(),
        1 => format!("----depotFormBoundary{:016x}", u64::arbitrary(u)?),
        // From an alphabet that collides with the framing itself.
        2 => (0..u.int_in_range(0..=6)?)
            .map(|_| u.choose(&['B', '-', '\r', '\n', ' ', 'x']))
            .collect::<Result<_, _>>()?,
        _ => String::arbitrary(u)?,
    })
}

fn limit(u: &mut Unstructured) -> arbitrary::Result<usize> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => u.int_in_range(0..=8)?,
        1 | 2 => u.int_in_range(0..=300)?,
        _ => u.int_in_range(0..=70_000)?,
    })
}

/// Bytes made of the framing's own pieces, to meet every state.
fn soup(u: &mut Unstructured, boundary: &str) -> arbitrary::Result<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..u.int_in_range(0..=24)? {
        match u.int_in_range(0..=9u8)? {
            0 => out.extend_from_slice(format!("--{boundary}").as_bytes()),
            1 => out.extend_from_slice(format!("\r\n--{boundary}").as_bytes()),
            2 => out.extend_from_slice(b"\r\n"),
            3 => out.extend_from_slice(b"\r\n\r\n"),
            4 => out.extend_from_slice(b"--"),
            5 => out.extend_from_slice(b"Content-Disposition: form-data; name=\"file\""),
            6 => out.resize(out.len() + u.int_in_range(0..=400)?, b'x'),
            7 => {
                // A prefix of a delimiter, cut anywhere.
                let d = format!("\r\n--{boundary}");
                let n = u.int_in_range(0..=d.len())?;
                out.extend_from_slice(&d.as_bytes()[..n]);
            }
            _ => out.extend_from_slice(<&[u8]>::arbitrary(u)?),
        }
    }
    Ok(out)
}

/// A well-formed body and what it must give under `limit`.
fn well_formed(
    u: &mut Unstructured,
    boundary: &str,
    limit: usize,
) -> arbitrary::Result<Option<(Vec<u8>, Outcome)>> {
    let first = format!("--{boundary}");
    let next = format!("\r\n--{boundary}");
    let mut body = Vec::new();
    let mut expect = None;
    let over = |start: usize, end: usize, r: Region, expect: &mut Option<Outcome>| {
        if expect.is_none() && end - start > limit {
            *expect = Some(Outcome::Failed(r, start + limit));
        }
    };
    // The preamble: text that cannot hold `--`.
    let preamble: Vec<u8> =
        (0..u.int_in_range(0..=300usize)?).map(|i| if i % 7 == 6 { b' ' } else { b'p' }).collect();
    body.extend_from_slice(&preamble);
    body.extend_from_slice(first.as_bytes());
    over(0, body.len(), Region::Preamble, &mut expect);
    for _ in 0..u.int_in_range(0..=4)? {
        // The delimiter's line: transport padding, then CRLF.
        let start = body.len();
        body.resize(body.len() + u.int_in_range(0..=3)?, b' ');
        body.extend_from_slice(b"\r\n");
        over(start, body.len(), Region::PartHeaders, &mut expect);
        // One header line or more, then the empty line.
        let start = body.len();
        for i in 0..u.int_in_range(1..=3)? {
            if i > 0 {
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"Content-Disposition: form-data; name=\"");
            body.resize(body.len() + u.int_in_range(0..=200)?, b'n');
            body.push(b'"');
        }
        body.extend_from_slice(b"\r\n\r\n");
        over(start, body.len(), Region::PartHeaders, &mut expect);
        let data = soup(u, boundary)?;
        // The data must not end with a prefix of the delimiter either: it
        // would join the CRLF that follows.
        let joined = [data.as_slice(), next.as_bytes()].concat();
        if find(&joined, next.as_bytes(), 0) != Some(joined.len()) {
            return Ok(None);
        }
        body.extend_from_slice(&data);
        body.extend_from_slice(next.as_bytes());
    }
    body.extend_from_slice(b"--\r\n");
    let epilogue = soup(u, boundary)?;
    body.extend_from_slice(&epilogue);
    Ok(Some((body, expect.unwrap_or(Outcome::Closed))))
}

fn sizes(u: &mut Unstructured) -> arbitrary::Result<Vec<usize>> {
    (0..u.int_in_range(0..=16)?)
        .map(|_| match u.int_in_range(0..=3u8)? {
            0 => Ok(0),
            1 => u.int_in_range(1..=3usize),
            _ => u.int_in_range(0..=200usize),
        })
        .collect()
}

fn check(body: &[u8], boundary: &str, limit: usize, sizes: &[usize]) -> Outcome {
    let want = reference(body, boundary.as_bytes(), limit);
    assert_eq!(scan(body, boundary, limit, &[]), want, "in one piece");
    assert_eq!(scan(body, boundary, limit, sizes), want, "in pieces of {sizes:?}");
    let ones = vec![1; body.len().min(4096)];
    assert_eq!(scan(body, boundary, limit, &ones), want, "a byte at a time");
    want
}

fn run(u: &mut Unstructured) -> arbitrary::Result<()> {
    let boundary = boundary(u)?;
    let limit = limit(u)?;
    let sizes = sizes(u)?;
    if u.ratio(1, 2)? {
        if let Some((body, want)) = well_formed(u, &boundary, limit)? {
            assert_eq!(check(&body, &boundary, limit, &sizes), want, "a well-formed body");
        }
    } else {
        let body = soup(u, &boundary)?;
        check(&body, &boundary, limit, &sizes);
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    // `m` + a body whose first line is `--boundary`: read at a limit of 64.
    if let Some(body) = data.strip_prefix(b"m") {
        let line = body.split(|&b| b == b'\r' || b == b'\n').next().unwrap_or_default();
        let boundary = String::from_utf8_lossy(line.strip_prefix(b"--").unwrap_or(b"B")).into_owned();
        check(body, &boundary, 64, &[7, 1, 30]);
        return;
    }
    let _ = run(&mut Unstructured::new(data));
});
