//! [`FileName`]: a file name as stored, checked once where it is parsed
//! (at the protocol edge) and carried as a type from there, so no later
//! layer checks it again or forgets to. Pure: no I/O.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};

/// The longest stored name, in bytes (most file systems' limit).
pub const MAX_NAME_BYTES: usize = 255;

/// A file name for storage: the last path component of what the client
/// sent, trimmed, not empty, `.` or `..`, without control characters, at
/// most [`MAX_NAME_BYTES`] bytes. It is only ever shown and sent back
/// (never used as a path), but a clean one spares every consumer. Made only
/// by [`FileName::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FileName(String);

impl FileName {
    /// Checks `name` and reduces it to its last path component.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the problem.
    pub fn parse(name: &str) -> Result<FileName> {
        let base = name.rsplit(['/', '\\']).next().unwrap_or("").trim();
        if base.is_empty() || base == "." || base == ".." {
            return Err(Error::InvalidInput("file name is empty".into()));
        }
        if base.chars().any(char::is_control) {
            return Err(Error::InvalidInput("file name contains control characters".into()));
        }
        if base.chars().any(is_bidi_control) {
            // U+202E makes `invoice\u{202e}fdp.exe` display as `invoiceexe.pdf`.
            return Err(Error::InvalidInput(
                "file name contains bidirectional text controls (U+200E/F, U+202A-E, U+2066-9)".into(),
            ));
        }
        if base.len() > MAX_NAME_BYTES {
            return Err(Error::InvalidInput(format!(
                "file name is {} bytes; the limit is {MAX_NAME_BYTES}",
                base.len()
            )));
        }
        Ok(FileName(base.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The Unicode bidirectional formatting characters (UAX #9): marks,
/// embeddings, overrides and isolates. They can make a name display as
/// another (a spoofed extension).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for FileName {
    type Error = Error;

    fn try_from(s: String) -> Result<FileName> {
        FileName::parse(&s)
    }
}

impl From<FileName> for String {
    fn from(n: FileName) -> String {
        n.0
    }
}

impl std::str::FromStr for FileName {
    type Err = Error;

    fn from_str(s: &str) -> Result<FileName> {
        FileName::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_once_and_reduced() {
        assert_eq!(FileName::parse("a.txt").unwrap().as_str(), "a.txt");
        assert_eq!(FileName::parse("../../etc/passwd").unwrap().as_str(), "passwd");
        assert_eq!(FileName::parse("C:\\dir\\x.bin").unwrap().as_str(), "x.bin");
        assert_eq!(FileName::parse("  tōkyō report.txt ").unwrap().as_str(), "tōkyō report.txt");
        for bad in [
            "",
            " ",
            ".",
            "..",
            "dir/",
            "a\nb",
            "a\u{7}b",
            "invoice\u{202e}fdp.exe",
            "a\u{2066}b",
            "a\u{200f}b",
            &"x".repeat(256),
        ] {
            assert!(FileName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(FileName::parse(&"é".repeat(127)).is_ok()); // 254 bytes
    }
}
