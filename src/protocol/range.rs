//! `Range` request headers (RFC 9110 §14.2), for one byte range against a
//! known size. Pure: fuzzed by `fuzz/fuzz_targets/range.rs`.

/// What to do with a request's `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// Serve the whole representation (no header, a header we ignore: a
    /// syntax error, several ranges, another unit).
    Full,
    /// Serve bytes `start..=end` (inclusive, inside the size).
    Partial { start: u64, end: u64 },
    /// 416: no byte of the range exists.
    Unsatisfiable,
}

/// Interprets a `Range` header value for a representation of `size` bytes.
pub fn parse_range(header: &str, size: u64) -> RangeRequest {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    let spec = spec.trim();
    if spec.contains(',') {
        // Multiple ranges: serving the whole file is allowed and simpler
        // for every client than multipart/byteranges.
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    if first.is_empty() {
        // Suffix: the last n bytes.
        let Some(n) = num(last) else { return RangeRequest::Full };
        if n == 0 || size == 0 {
            return RangeRequest::Unsatisfiable;
        }
        return RangeRequest::Partial { start: size.saturating_sub(n), end: size - 1 };
    }
    let Some(start) = num(first) else { return RangeRequest::Full };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match num(last) {
            Some(e) if e >= start => e,
            // last < first is a syntax error: ignore the header.
            _ => return RangeRequest::Full,
        }
    };
    if start >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Partial { start, end: end.min(size - 1) }
}

#[cfg(test)]
mod tests {
    use super::RangeRequest::*;
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(parse_range("bytes=0-499", 1000), Partial { start: 0, end: 499 });
        assert_eq!(parse_range("bytes=500-", 1000), Partial { start: 500, end: 999 });
        assert_eq!(parse_range("bytes=-200", 1000), Partial { start: 800, end: 999 });
        assert_eq!(parse_range("bytes=-2000", 1000), Partial { start: 0, end: 999 });
        assert_eq!(parse_range("bytes=900-5000", 1000), Partial { start: 900, end: 999 });
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 1000), Full);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), Full);
        assert_eq!(parse_range("items=0-1", 1000), Full);
        assert_eq!(parse_range("bytes=abc", 1000), Full);
        assert_eq!(parse_range("bytes=+1-2", 1000), Full);
        assert_eq!(parse_range("bytes=99999999999999999999999-", 1000), Full);
        assert_eq!(parse_range("bytes=18446744073709551615-", 1000), Unsatisfiable);
    }
}
