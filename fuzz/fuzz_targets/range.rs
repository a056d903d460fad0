//! `parse_range(header, size)`.
//!
//! Invariants:
//! - `Partial { start, end }` always has `start <= end < size`;
//! - `Multi` holds 2 to `MAX_RANGES` ranges inside the size, ascending,
//!   disjoint and not adjacent (overlaps and neighbours are coalesced);
//! - `Unsatisfiable` only when no byte can be served: every member of a
//!   `bytes=` set starts at or past the end or is a suffix of zero bytes;
//! - a header that does not start with `bytes=` (any case, after trimming),
//!   or any range of an empty representation, is ignored (`Full`);
//! - well-formed ranges yield exactly what RFC 9110 §14.1.2 says: `bytes=a-b`
//!   with `a <= b < size` is `a..=b`, `bytes=a-` is `a..=size-1`, `bytes=-n`
//!   is the last `min(n, size)` bytes, `bytes=a-b` with `b < a` is ignored.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use depot::protocol::range::{MAX_RANGES, RangeRequest, parse_range};
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
    let unit = header.trim().get(..6).is_some_and(|u| u.eq_ignore_ascii_case("bytes="));
    match &r {
        RangeRequest::Partial { start, end } => {
            assert!(start <= end && *end < size, "{header:?} size {size}: {r:?}");
        }
        RangeRequest::Multi(v) => {
            assert!(v.len() >= 2 && v.len() <= MAX_RANGES, "{header:?}: {r:?}");
            for (i, &(s, e)) in v.iter().enumerate() {
                assert!(s <= e && e < size, "{header:?} size {size}: {r:?}");
                if i > 0 {
                    // Ascending, disjoint and not adjacent (coalesced).
                    assert!(s > v[i - 1].1 + 1, "{header:?}: {r:?}");
                }
            }
        }
        RangeRequest::Unsatisfiable => {
            assert!(unit && size > 0, "{header:?} size {size}: unsatisfiable");
            // Every member is a suffix of zero bytes or starts past the end.
            let spec = header.trim()[6..].trim();
            for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (first, last) = part.split_once('-').expect("unsatisfiable without a dash");
                let (first, last) = (first.trim(), last.trim());
                if first.is_empty() {
                    let n: u64 = last.parse().expect("suffix length");
                    assert_eq!(n, 0, "{header:?} size {size}: suffix {n} is satisfiable");
                } else {
                    let start: u64 = first.parse().expect("first position");
                    assert!(start >= size, "{header:?} size {size}: start {start} is inside");
                }
            }
        }
        RangeRequest::Full => {}
    }
    if !unit || size == 0 {
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
            let want = if b < a || size == 0 {
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
            let want = if size == 0 {
                RangeRequest::Full
            } else if a >= size {
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
            let want = if size == 0 {
                RangeRequest::Full
            } else if n == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial { start: size - n.min(size), end: size - 1 }
            };
            assert_eq!(r, want, "bytes=-{n} size {size}");
        }
    }
});
