//! The one rule for decimal numbers on the wire (`Range` positions, piece
//! parameters, tus offsets and lengths, `Content-Length`): ASCII digits
//! only, at least one and at most 20 of them (RFC 9110's `1*DIGIT`, bounded
//! so that parsing never looks at an unbounded string), no sign, no
//! whitespace, within `u64`. Callers trim where their protocol allows
//! surrounding whitespace. Pure: used by the fuzzed parsers.

/// Why a string is not a decimal number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalError {
    /// Empty, or not all ASCII digits, or more than 20 of them.
    Malformed,
    /// Digits, but past `u64::MAX`.
    OutOfRange,
}

/// Parses `s` under the rule above.
///
/// # Errors
/// [`DecimalError`].
pub fn parse_u64(s: &str) -> Result<u64, DecimalError> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DecimalError::Malformed);
    }
    s.parse().map_err(|_| DecimalError::OutOfRange)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        assert_eq!(parse_u64("0"), Ok(0));
        assert_eq!(parse_u64("007"), Ok(7));
        assert_eq!(parse_u64("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_u64("18446744073709551616"), Err(DecimalError::OutOfRange));
        for bad in ["", "+5", "-1", " 1", "1 ", "1e3", "0x10", "１", "123456789012345678901"] {
            assert_eq!(parse_u64(bad), Err(DecimalError::Malformed), "{bad:?}");
        }
    }
}
