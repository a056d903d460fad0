//! Checked names: [`FileName`], a file name as stored, and [`Tenant`], who
//! owns a file (with [`View`], which tenants a caller sees). Each is checked
//! once where it is parsed (at the protocol edge) and carried as a type from
//! there, so no later layer checks it again or forgets to. Pure: no I/O.

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};

/// The impls of a string newtype whose only way in is its `parse`: it
/// shows and serializes as the string (with serde's `into = "String"`),
/// and a string comes back in through `parse` (`try_from = "String"`,
/// `str::parse`).
macro_rules! checked_string {
    ($t:ident) => {
        impl $t {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $t {
            type Error = $crate::store::Error;

            fn try_from(s: String) -> $crate::store::Result<$t> {
                $t::parse(&s)
            }
        }

        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }

        impl std::str::FromStr for $t {
            type Err = $crate::store::Error;

            fn from_str(s: &str) -> $crate::store::Result<$t> {
                $t::parse(s)
            }
        }
    };
}

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
}

/// The Unicode bidirectional formatting characters (UAX #9): marks,
/// embeddings, overrides and isolates. They can make a name display as
/// another (a spoofed extension).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

checked_string!(FileName);

/// A tenant's name: 1 to 63 of `a-z`, `0-9`, `-` (a DNS label's alphabet,
/// so it fits a key, a path and a bucket prefix).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tenant(String);

/// The tenant of everything stored before tenants existed, and of the
/// `local` and `open` modes.
pub const DEFAULT_TENANT: &str = "default";

impl Tenant {
    /// # Errors
    /// [`Error::InvalidInput`] naming the rule.
    pub fn parse(s: &str) -> Result<Self> {
        let ok = (1..=63).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(Error::InvalidInput(format!("tenant `{s}` must be 1 to 63 of a-z, 0-9 and -")))
        }
    }
}

impl Default for Tenant {
    fn default() -> Self {
        Self(DEFAULT_TENANT.to_string())
    }
}

checked_string!(Tenant);

/// What a caller may see: every tenant (an admin, or a server in `local` or
/// `open` mode: the global store answers, as before tenants) or one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    All,
    Tenant(Tenant),
}

impl View {
    /// Whether something owned by `t` is visible.
    pub fn sees(&self, t: &Tenant) -> bool {
        match self {
            View::All => true,
            View::Tenant(mine) => mine == t,
        }
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
