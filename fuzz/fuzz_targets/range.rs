//! `parse_range(header, size)`.
//!
//! Invariants:
//! - `Partial { start, end }` always has `start <= end < size`;
//! - `Unsatisfiable` only when no byte can be served: the header is one
//!   `bytes=` range whose first position is at or past the end, or a suffix
//!   of zero bytes, or the representation is empty;
//! - a header that does not start with `bytes=` (after trimming), or lists
//!   several ranges, is ignored (`Full`);
//! - well-formed ranges yield exactly what RFC 9110 §14.1.2 says: `bytes=a-b`
//!   with `a <= b < size` is `a..=b`, `bytes=a-` is `a..=size-1`, `bytes=-n`
//!   is the last `min(n, size)` bytes, `bytes=a-b` with `b < a` is ignored.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use depot::protocol::range::{RangeRequest, parse_range};
use libfuzzer_sys::fuzz_target;

/// A size near the interesting boundaries, or any.
fn size(u: &mut Unstructured) -> arbitrary::Result<u64> {
    Ok(match u.int_in_range(0..=4)? {
        0 => u.int_in_range(0..=16)?,
        1 => u.int_in_range(0..=1 << 20)?,
        2 => u64::MAX - u.int_in_range(0..=16)?,
        _ => u64::arbitrary(u)?,
    })
}

/// A position relative to `size`.
fn pos(u: &mut Unstructured, size: u64) -> arbitrary::Result<u64> {
    Ok(match u.int_in_range(0..=3)? {
        0 => size.saturating_sub(u.int_in_range(0..=3)?),
        1 => size.saturating_add(u.int_in_range(0..=3)?),
        2 => u.int_in_range(0..=size)?,
        _ => u64::arbitrary(u)?,
    })
}

fn check_invariants(header: &str, size: u64) -> RangeRequest {
    let r = parse_range(header, size);
    match r {
        RangeRequest::Partial { start, end } => {
            assert!(start <= end && end < size, "{header:?} size {size}: {r:?}");
        }
        RangeRequest::Unsatisfiable => {
            // Only for one syntactically valid range with no byte inside.
            let spec = header.trim().strip_prefix("bytes=").expect("unsatisfiable without bytes=").trim();
            assert!(!spec.contains(','), "{header:?}: several ranges are ignored, not refused");
            let (first, last) = spec.split_once('-').expect("unsatisfiable without a dash");
            let (first, last) = (first.trim(), last.trim());
            if first.is_empty() {
                let n: u64 = last.parse().expect("suffix length");
                assert!(n == 0 || size == 0, "{header:?} size {size}: suffix {n} is satisfiable");
            } else {
                let start: u64 = first.parse().expect("first position");
                assert!(start >= size, "{header:?} size {size}: start {start} is inside");
                if !last.is_empty() {
                    let end: u64 = last.parse().expect("last position");
                    assert!(end >= start, "{header:?}: an inverted range must be ignored");
                }
            }
        }
        RangeRequest::Full => {}
    }
    if !header.trim().starts_with("bytes=") || header.contains(',') {
        assert_eq!(r, RangeRequest::Full, "{header:?} size {size}");
    }
    // Deterministic and whitespace-insensitive at the ends.
    assert_eq!(parse_range(&format!(" {header}\t"), size), r, "{header:?}");
    r
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode == b'h' {
        // Literal: the size on the first line, the header on the second
        // (seeds: headers browsers, curl and download managers send).
        let text = String::from_utf8_lossy(rest);
        let (size, header) = text.split_once('\n').unwrap_or((&text, ""));
        let Ok(size) = size.trim().parse::<u64>() else { return };
        check_invariants(header.trim_end_matches('\n'), size);
        return;
    }
    let mut u = Unstructured::new(rest);
    let Ok(size) = size(&mut u) else { return };
    match mode % 4 {
        // Any string.
        0 => {
            let Ok(h) = <&str>::arbitrary(&mut u) else { return };
            check_invariants(h, size);
        }
        // `bytes=a-b`.
        1 => {
            let (Ok(a), Ok(b)) = (pos(&mut u, size), pos(&mut u, size)) else { return };
            let r = check_invariants(&format!("bytes={a}-{b}"), size);
            let want = if b < a {
                RangeRequest::Full
            } else if a >= size {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial { start: a, end: b.min(size - 1) }
            };
            assert_eq!(r, want, "bytes={a}-{b} size {size}");
            if a <= b && b < size {
                assert_eq!(r, RangeRequest::Partial { start: a, end: b });
            }
        }
        // `bytes=a-`.
        2 => {
            let Ok(a) = pos(&mut u, size) else { return };
            let r = check_invariants(&format!("bytes={a}-"), size);
            let want = if a >= size {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial { start: a, end: size - 1 }
            };
            assert_eq!(r, want, "bytes={a}- size {size}");
        }
        // `bytes=-n`.
        _ => {
            let Ok(n) = pos(&mut u, size) else { return };
            let r = check_invariants(&format!("bytes=-{n}"), size);
            let want = if n == 0 || size == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial { start: size - n.min(size), end: size - 1 }
            };
            assert_eq!(r, want, "bytes=-{n} size {size}");
        }
    }
});
