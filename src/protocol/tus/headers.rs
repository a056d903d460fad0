//! tus request headers: `Upload-Metadata`, `Upload-Checksum`,
//! `Upload-Concat`, `Upload-Offset` / `Upload-Length`. Pure: fuzzed by
//! `fuzz/fuzz_targets/tus_headers.rs`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A header value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HeaderError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, HeaderError> {
    Err(HeaderError(msg.into()))
}

/// `Upload-Metadata`: comma-separated `key base64value` pairs (the value may
/// be absent). Keys are unique, non-empty, without spaces or commas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata(pub Vec<(String, Option<Vec<u8>>)>);

impl Metadata {
    /// # Errors
    /// [`HeaderError`] for a malformed pair, a duplicate key, or broken base64.
    pub fn parse(s: &str) -> Result<Self, HeaderError> {
        let mut out: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self(out));
        }
        for pair in s.split(',') {
            let pair = pair.trim();
            let mut it = pair.split(' ');
            let key = it.next().unwrap_or("");
            let value = it.next();
            if it.next().is_some() {
                return err(format!("Upload-Metadata pair `{pair}` has more than a key and a value"));
            }
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
                return err(format!("Upload-Metadata key `{key}` is not a plain ASCII word"));
            }
            if out.iter().any(|(k, _)| k == key) {
                return err(format!("Upload-Metadata key `{key}` appears twice"));
            }
            let value = match value {
                None | Some("") => None,
                Some(v) => Some(STANDARD.decode(v).map_err(|e| {
                    HeaderError(format!("Upload-Metadata value of `{key}` is not base64: {e}"))
                })?),
            };
            out.push((key.to_string(), value));
        }
        Ok(Self(out))
    }

    /// The canonical header form.
    pub fn render(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k} {}", STANDARD.encode(v)),
                None => k.clone(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The first of `keys` present with a UTF-8 value.
    pub fn get(&self, keys: &[&str]) -> Option<String> {
        keys.iter().find_map(|k| {
            self.0
                .iter()
                .find(|(key, _)| key == k)
                .and_then(|(_, v)| v.as_ref())
                .and_then(|v| String::from_utf8(v.clone()).ok())
        })
    }
}

/// Checksum algorithms for `Upload-Checksum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Md5,
    Crc32,
    Blake3,
}

impl Algorithm {
    pub const ALL: &'static str = "sha1,md5,crc32,blake3";

    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Algorithm::Sha1 => 20,
            Algorithm::Md5 => 16,
            Algorithm::Crc32 => 4,
            Algorithm::Blake3 => 32,
        }
    }
}

/// A parsed `Upload-Checksum`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    Known {
        algorithm: Algorithm,
        digest: Vec<u8>,
    },
    /// An algorithm this server does not support (400).
    Unsupported(String),
}

impl Checksum {
    /// `<algorithm> <base64 digest>`.
    ///
    /// # Errors
    /// [`HeaderError`] for a malformed value or a digest of the wrong length.
    pub fn parse(s: &str) -> Result<Self, HeaderError> {
        let Some((name, b64)) = s.trim().split_once(' ') else {
            return err("Upload-Checksum must be `<algorithm> <base64 digest>`");
        };
        let algorithm = match name.to_ascii_lowercase().as_str() {
            "sha1" => Algorithm::Sha1,
            "md5" => Algorithm::Md5,
            "crc32" => Algorithm::Crc32,
            "blake3" => Algorithm::Blake3,
            _ => return Ok(Checksum::Unsupported(name.to_string())),
        };
        let digest = STANDARD
            .decode(b64.trim())
            .map_err(|e| HeaderError(format!("Upload-Checksum digest is not base64: {e}")))?;
        if digest.len() != algorithm.digest_len() {
            return err(format!("a {name} digest is {} bytes, not {}", algorithm.digest_len(), digest.len()));
        }
        Ok(Checksum::Known { algorithm, digest })
    }
}

/// A parsed `Upload-Concat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConcatHeader {
    Partial,
    /// The partial uploads, by the id at the end of each URL.
    Final(Vec<String>),
}

impl ConcatHeader {
    /// # Errors
    /// [`HeaderError`] for anything but `partial` or `final;<url> <url>…`.
    pub fn parse(s: &str) -> Result<Self, HeaderError> {
        let s = s.trim();
        if s == "partial" {
            return Ok(ConcatHeader::Partial);
        }
        let Some(list) = s.strip_prefix("final;") else {
            return err("Upload-Concat must be `partial` or `final;<url> <url>…`");
        };
        let ids: Vec<String> = list
            .split_whitespace()
            .map(|u| {
                let path = u.split(['?', '#']).next().unwrap_or("");
                path.trim_end_matches('/').rsplit('/').next().unwrap_or("").to_string()
            })
            .collect();
        if ids.is_empty() || ids.iter().any(String::is_empty) {
            return err("Upload-Concat final lists no usable upload URL");
        }
        Ok(ConcatHeader::Final(ids))
    }

    pub fn render(&self, base: &str) -> String {
        match self {
            ConcatHeader::Partial => "partial".into(),
            ConcatHeader::Final(ids) => {
                format!("final;{}", ids.iter().map(|i| format!("{base}{i}")).collect::<Vec<_>>().join(" "))
            }
        }
    }
}

/// `Upload-Offset` / `Upload-Length`: a non-negative decimal integer.
///
/// # Errors
/// [`HeaderError`] naming the header.
pub fn parse_u64(name: &str, s: &str) -> Result<u64, HeaderError> {
    crate::decimal::parse_u64(s.trim()).map_err(|e| match e {
        crate::decimal::DecimalError::Malformed => {
            HeaderError(format!("{name} must be a non-negative integer"))
        }
        crate::decimal::DecimalError::OutOfRange => HeaderError(format!("{name} is out of range")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata() {
        let m = Metadata::parse(
            "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential,filetype YXBwbGljYXRpb24vcGRm",
        )
        .unwrap();
        assert_eq!(m.get(&["filename"]).unwrap(), "world_domination_plan.pdf");
        assert_eq!(m.get(&["filetype"]).unwrap(), "application/pdf");
        assert_eq!(m.0[1], ("is_confidential".into(), None));
        assert_eq!(Metadata::parse(&m.render()).unwrap(), m);
        assert!(Metadata::parse("").unwrap().0.is_empty());
        assert!(Metadata::parse("a !!!").is_err());
        assert!(Metadata::parse("a YQ==,a YQ==").is_err());
        assert!(Metadata::parse("a b c").is_err());
        assert!(Metadata::parse(" ,x").is_err());
    }

    #[test]
    fn checksum() {
        assert_eq!(
            Checksum::parse("sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=").unwrap(),
            Checksum::Known {
                algorithm: Algorithm::Sha1,
                digest: STANDARD.decode("Kq5sNclPz7QV2+lfQIuc6R7oRu0=").unwrap()
            }
        );
        assert_eq!(Checksum::parse("sha256 abc=").unwrap(), Checksum::Unsupported("sha256".into()));
        assert!(Checksum::parse("sha1").is_err());
        assert!(Checksum::parse("sha1 AAAA").is_err());
        assert!(Checksum::parse("md5 !!").is_err());
    }

    #[test]
    fn concat() {
        assert_eq!(ConcatHeader::parse("partial").unwrap(), ConcatHeader::Partial);
        assert_eq!(
            ConcatHeader::parse("final;http://x/api/tus/ab /api/tus/cd/").unwrap(),
            ConcatHeader::Final(vec!["ab".into(), "cd".into()])
        );
        assert!(ConcatHeader::parse("final;").is_err());
        assert!(ConcatHeader::parse("whole").is_err());
        assert_eq!(parse_u64("Upload-Offset", "42").unwrap(), 42);
        assert!(parse_u64("Upload-Offset", "-1").is_err());
        assert!(parse_u64("Upload-Offset", "1.5").is_err());
    }

    #[test]
    fn concat_ids_never_hold_whitespace() {
        // Found by fuzz/fuzz_targets/tus_headers.rs: an id that was only
        // whitespace parsed, then vanished when rendered and parsed again.
        let h = "final;https://files.example/a/b/ https://files.example/a/b/\r/";
        assert!(ConcatHeader::parse(h).is_err());
        assert!(ConcatHeader::parse("final;/api/tus/a/\t/").is_err());
        // A tab between two URLs separates them (it used to swallow the first).
        assert_eq!(
            ConcatHeader::parse("final;/api/tus/ab\t/api/tus/cd").unwrap(),
            ConcatHeader::Final(vec!["ab".into(), "cd".into()])
        );
        for h in ["final;ab cd", "final;/api/tus/ab\t/api/tus/cd", "final;x/\u{a0}/"] {
            if let Ok(c) = ConcatHeader::parse(h) {
                for base in ["", "/api/tus/", "http://h/api/tus/"] {
                    assert_eq!(ConcatHeader::parse(&c.render(base)).unwrap(), c, "{h:?} with {base:?}");
                }
            }
        }
    }
}
