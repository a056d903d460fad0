//! `Range` request headers (RFC 9110 §14.1.2, §14.2) against a known size.
//! Pure: fuzzed by `fuzz/fuzz_targets/range.rs`.
//!
//! What the caller must do around it (RFC 9110 §14.2): apply a range to GET
//! only (HEAD answers what a GET without `Range` would), and only when
//! `If-Range`, if sent, holds.

/// At most this many ranges in one header are served as a multipart
/// answer; a header with more is ignored (RFC 9110 §14.2 lets a server
/// ignore a range set it finds too costly).
pub const MAX_RANGES: usize = 64;

/// What to do with a request's `Range` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// Serve the whole representation: no header, or one the server
    /// ignores (a syntax error, another unit, too many ranges), or any
    /// range of an empty representation (no 206 can express a part of
    /// nothing, so the whole, empty, answer is sent, as widely used
    /// servers do).
    Full,
    /// 206 with one part: bytes `start..=end` (inclusive, inside the size).
    Partial { start: u64, end: u64 },
    /// 206 `multipart/byteranges`: two or more disjoint, non-adjacent
    /// ranges `(start, end)` (inclusive, inside the size), ascending.
    /// Overlapping and adjacent ranges are coalesced (§14.2 allows it).
    Multi(Vec<(u64, u64)>),
    /// 416: no range of the set holds a byte of the representation.
    Unsatisfiable,
}

/// One `first-pos "-" [last-pos]` or `"-" suffix-length`, as written.
enum Spec {
    From { first: u64, last: Option<u64> },
    Suffix(u64),
}

/// A position or length: [`crate::decimal`]'s rule.
fn decimal(s: &str) -> Option<u64> {
    crate::decimal::parse_u64(s).ok()
}

fn spec(s: &str) -> Option<Spec> {
    let (first, last) = s.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return Some(Spec::Suffix(decimal(last)?));
    }
    let first = decimal(first)?;
    let last = if last.is_empty() { None } else { Some(decimal(last)?) };
    // last < first is invalid (§14.1.1): the whole header is ignored.
    if last.is_some_and(|l| l < first) {
        return None;
    }
    Some(Spec::From { first, last })
}

/// Interprets a `Range` header value for a representation of `size` bytes.
pub fn parse_range(header: &str, size: u64) -> RangeRequest {
    let header = header.trim();
    // The range unit is case-insensitive (§14.1).
    let Some(set) = header.get(..6).filter(|u| u.eq_ignore_ascii_case("bytes=")).map(|_| &header[6..]) else {
        return RangeRequest::Full;
    };
    // A list: empty elements are allowed and skipped (§5.6.1).
    let mut specs = Vec::new();
    for part in set.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if specs.len() == MAX_RANGES {
            return RangeRequest::Full;
        }
        match spec(part) {
            Some(s) => specs.push(s),
            None => return RangeRequest::Full,
        }
    }
    if specs.is_empty() || size == 0 {
        return RangeRequest::Full;
    }
    let mut ranges: Vec<(u64, u64)> = specs
        .into_iter()
        .filter_map(|s| match s {
            Spec::Suffix(0) => None,
            Spec::Suffix(n) => Some((size.saturating_sub(n), size - 1)),
            Spec::From { first, .. } if first >= size => None,
            Spec::From { first, last } => Some((first, last.unwrap_or(u64::MAX).min(size - 1))),
        })
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (s, e) in ranges {
        match merged.last_mut() {
            Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    match merged.len() {
        0 => RangeRequest::Unsatisfiable,
        1 => RangeRequest::Partial { start: merged[0].0, end: merged[0].1 },
        _ => RangeRequest::Multi(merged),
    }
}

#[cfg(test)]
mod tests {
    use super::RangeRequest::*;
    use super::*;
    use proptest::prelude::*;

    /// Sizes and range ends, the u64 extremes weighted in.
    fn extreme() -> impl Strategy<Value = u64> {
        crate::testdata::extreme_u64(1024, 4096)
    }

    proptest! {
        /// Any range set against any size, the u64 extremes included:
        /// no overflow, and every range served lies inside the size,
        /// ascending, disjoint and not adjacent.
        #[test]
        fn ranges_stay_inside_the_size_at_u64_extremes(
            size in extreme(),
            specs in proptest::collection::vec((extreme(), proptest::option::of(extreme()), any::<bool>()), 1..6),
        ) {
            let set: Vec<String> = specs
                .iter()
                .map(|(a, b, suffix)| match (suffix, b) {
                    (true, _) => format!("-{a}"),
                    (false, Some(b)) => format!("{a}-{b}"),
                    (false, None) => format!("{a}-"),
                })
                .collect();
            let header = format!("bytes={}", set.join(","));
            match parse_range(&header, size) {
                Full | Unsatisfiable => {}
                Partial { start, end } => prop_assert!(start <= end && end < size, "{header} {size}"),
                Multi(r) => {
                    prop_assert!(r.len() >= 2);
                    for w in r.windows(2) {
                        prop_assert!(w[0].1.checked_add(1).is_some_and(|next| next < w[1].0), "{header}");
                    }
                    for (s, e) in r {
                        prop_assert!(s <= e && e < size, "{header} {size}");
                    }
                }
            }
        }
    }

    #[test]
    fn forms() {
        assert_eq!(parse_range("bytes=0-499", 1000), Partial { start: 0, end: 499 });
        assert_eq!(parse_range("bytes=500-", 1000), Partial { start: 500, end: 999 });
        assert_eq!(parse_range("bytes=-200", 1000), Partial { start: 800, end: 999 });
        assert_eq!(parse_range("bytes=-2000", 1000), Partial { start: 0, end: 999 });
        assert_eq!(parse_range("bytes=900-5000", 1000), Partial { start: 900, end: 999 });
        assert_eq!(parse_range("Bytes=1-2", 1000), Partial { start: 1, end: 2 });
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 1000), Full);
        assert_eq!(parse_range("items=0-1", 1000), Full);
        assert_eq!(parse_range("bytes=abc", 1000), Full);
        assert_eq!(parse_range("bytes=", 1000), Full);
        assert_eq!(parse_range("bytes=+1-2", 1000), Full);
        assert_eq!(parse_range("bytes= 1-2", 1000), Partial { start: 1, end: 2 });
        assert_eq!(parse_range("bytes=99999999999999999999999-", 1000), Full);
        assert_eq!(parse_range("bytes=18446744073709551615-", 1000), Unsatisfiable);
    }

    #[test]
    fn empty_representations_are_served_whole() {
        for h in ["bytes=-5", "bytes=0-1023", "bytes=0-", "bytes=-0", "bytes=0-0,5-9"] {
            assert_eq!(parse_range(h, 0), Full, "{h}");
        }
        assert_eq!(parse_range("bytes=x", 0), Full);
    }

    #[test]
    fn several_ranges() {
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), Multi(vec![(0, 1), (5, 6)]));
        // Order, overlap and adjacency: sorted and coalesced.
        assert_eq!(parse_range("bytes=500-599, 0-9,5-20", 1000), Multi(vec![(0, 20), (500, 599)]));
        assert_eq!(parse_range("bytes=0-9,10-19", 1000), Partial { start: 0, end: 19 });
        assert_eq!(parse_range("bytes=0-0,-1", 3), Multi(vec![(0, 0), (2, 2)]));
        // Unsatisfiable members drop out; all of them: 416.
        assert_eq!(parse_range("bytes=2000-3000,5-6", 1000), Partial { start: 5, end: 6 });
        assert_eq!(parse_range("bytes=2000-3000,5000-", 1000), Unsatisfiable);
        // Empty list elements are skipped; one bad member voids the header.
        assert_eq!(parse_range("bytes=,1-2,,", 1000), Partial { start: 1, end: 2 });
        assert_eq!(parse_range("bytes=1-2,x", 1000), Full);
        let many =
            (0..=MAX_RANGES).map(|i| format!("{}-{}", i * 10, i * 10 + 1)).collect::<Vec<_>>().join(",");
        assert_eq!(parse_range(&format!("bytes={many}"), 100_000), Full);
    }
}
