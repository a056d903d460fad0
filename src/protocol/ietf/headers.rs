//! The draft's header fields, parsed and rendered without HTTP types (pure,
//! fuzzed): the interop version, the structured-field booleans and integers
//! (`Upload-Complete`, `Upload-Incomplete`, `Upload-Offset`,
//! `Upload-Length`), RFC 9530 digest dictionaries (`Content-Digest`,
//! `Repr-Digest`), `Upload-Limit`, and the problem-details bodies the draft
//! names.

use base64::Engine as _;

pub use crate::protocol::tus::headers::HeaderError;

/// `Upload-Draft-Interop-Version`: which revision's wire format a client
/// speaks. 3 is draft -01 (`Upload-Incomplete`), 4 is -02, 5 is -03
/// (tus-js-client `ietf-draft-03`), 6 is -04/-05 (tus-js-client
/// `ietf-draft-05`, `application/partial-upload`), 7 and 8 are the later
/// revisions (8 is the editor's copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interop(u8);

impl Interop {
    pub const OLDEST: u8 = 3;
    pub const LATEST: u8 = 8;
    /// The versions served, for error messages.
    pub const SUPPORTED: &'static str = "3, 4, 5, 6, 7, 8";

    /// # Errors
    /// [`HeaderError`] for anything but one of the supported versions.
    pub fn parse(s: &str) -> Result<Self, HeaderError> {
        let s = s.trim();
        match s.parse::<u8>() {
            Ok(v) if (Self::OLDEST..=Self::LATEST).contains(&v) && s.len() == 1 => Ok(Interop(v)),
            _ => Err(HeaderError(format!(
                "Upload-Draft-Interop-Version `{}` is not supported ({})",
                s.chars().take(16).collect::<String>(),
                Self::SUPPORTED
            ))),
        }
    }

    pub fn number(self) -> u8 {
        self.0
    }

    /// Version 3 says `Upload-Incomplete` (inverted); later ones
    /// `Upload-Complete`.
    pub fn complete_field(self) -> &'static str {
        if self.0 == 3 { "upload-incomplete" } else { "upload-complete" }
    }

    /// Renders "is the upload complete" in this version's field.
    pub fn complete_value(self, complete: bool) -> &'static str {
        if (self.0 == 3) != complete { "?1" } else { "?0" }
    }

    /// Reads this version's completeness field's value (`None` when absent).
    ///
    /// # Errors
    /// [`HeaderError`] when it is not a structured-field boolean.
    pub fn read_complete(self, value: Option<&str>) -> Result<Option<bool>, HeaderError> {
        let Some(v) = value else { return Ok(None) };
        let b = parse_bool(self.complete_field(), v)?;
        Ok(Some(if self.0 == 3 { !b } else { b }))
    }

    /// From version 6 (draft -04) an append's body is
    /// `application/partial-upload`.
    pub fn needs_partial_upload_type(self) -> bool {
        self.0 >= 6
    }
}

/// A structured-field boolean (RFC 8941): `?1` or `?0`, parameters ignored.
///
/// # Errors
/// [`HeaderError`] for anything else.
pub fn parse_bool(name: &str, s: &str) -> Result<bool, HeaderError> {
    match s.split(';').next().unwrap_or("").trim() {
        "?1" => Ok(true),
        "?0" => Ok(false),
        _ => Err(HeaderError(format!("{name} must be ?1 or ?0"))),
    }
}

/// A non-negative structured-field integer (at most 15 digits).
///
/// # Errors
/// [`HeaderError`] for anything else.
pub fn parse_int(name: &str, s: &str) -> Result<u64, HeaderError> {
    let s = s.trim();
    if s.is_empty() || s.len() > 15 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HeaderError(format!("{name} must be a non-negative integer")));
    }
    s.parse().map_err(|_| HeaderError(format!("{name} must be a non-negative integer")))
}

/// Digest algorithms of RFC 9530 that this server computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    Sha256,
    Sha512,
    /// `md5` and `sha` (SHA-1) are deprecated by RFC 9530 but still sent.
    Md5,
    Sha1,
}

impl DigestAlgorithm {
    fn from_key(k: &str) -> Option<Self> {
        match k {
            "sha-256" => Some(Self::Sha256),
            "sha-512" => Some(Self::Sha512),
            "md5" => Some(Self::Md5),
            "sha" => Some(Self::Sha1),
            _ => None,
        }
    }

    /// Preference when several are sent: the strongest first.
    fn rank(self) -> u8 {
        match self {
            Self::Sha512 => 0,
            Self::Sha256 => 1,
            Self::Sha1 => 2,
            Self::Md5 => 3,
        }
    }
}

/// An RFC 9530 digest field: a structured-field dictionary of
/// `algorithm=:base64:`. Algorithms this server does not compute are
/// skipped, as the RFC allows; [`Digests::best`] picks the one to check.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Digests(pub Vec<(DigestAlgorithm, Vec<u8>)>);

impl Digests {
    /// # Errors
    /// [`HeaderError`] when a member is not `key=:base64:` (with optional
    /// parameters) or a known algorithm's digest has the wrong length.
    pub fn parse(name: &str, s: &str) -> Result<Self, HeaderError> {
        let bad = |why: &str| HeaderError(format!("{name}: {why}"));
        let mut out = Vec::new();
        for member in s.split(',') {
            let member = member.trim();
            if member.is_empty() {
                return Err(bad("empty member"));
            }
            let (key, rest) = member.split_once('=').ok_or_else(|| bad("a member is not key=:value:"))?;
            let key = key.trim();
            if key.is_empty()
                || !key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b))
            {
                return Err(bad("bad algorithm name"));
            }
            let value = rest.trim().split(';').next().unwrap_or("");
            let inner = value
                .strip_prefix(':')
                .and_then(|v| v.strip_suffix(':'))
                .ok_or_else(|| bad("a digest must be a byte sequence :base64:"))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(inner)
                .map_err(|_| bad("a digest is not valid base64"))?;
            if let Some(a) = DigestAlgorithm::from_key(key) {
                let want = match a {
                    DigestAlgorithm::Sha256 => 32,
                    DigestAlgorithm::Sha512 => 64,
                    DigestAlgorithm::Md5 => 16,
                    DigestAlgorithm::Sha1 => 20,
                };
                if bytes.len() != want {
                    return Err(bad("a digest has the wrong length for its algorithm"));
                }
                out.push((a, bytes));
            }
        }
        Ok(Digests(out))
    }

    /// The strongest digest this server can check, if any.
    pub fn best(&self) -> Option<&(DigestAlgorithm, Vec<u8>)> {
        self.0.iter().min_by_key(|(a, _)| a.rank())
    }
}

/// `Upload-Limit`: a structured-field dictionary (`max-size`, `expires`
/// in seconds).
pub fn upload_limit(max_size: u64, expires_in_secs: Option<u64>) -> String {
    match expires_in_secs {
        Some(e) => format!("max-size={max_size}, expires={e}"),
        None => format!("max-size={max_size}"),
    }
}

/// The problem types the draft registers (RFC 9457 bodies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// An append's `Upload-Offset` is not the upload's offset.
    MismatchingOffset { expected: u64, provided: u64 },
    /// An append to an upload that is already complete.
    CompletedUpload,
    /// Lengths that contradict each other or the bytes received.
    InconsistentLength,
}

impl ProblemKind {
    pub fn type_uri(self) -> &'static str {
        match self {
            Self::MismatchingOffset { .. } => {
                "https://iana.org/assignments/http-problem-types#mismatching-upload-offset"
            }
            Self::CompletedUpload => "https://iana.org/assignments/http-problem-types#completed-upload",
            Self::InconsistentLength => {
                "https://iana.org/assignments/http-problem-types#inconsistent-upload-length"
            }
        }
    }

    /// 409 for a wrong offset, 400 otherwise.
    pub fn status(self) -> u16 {
        match self {
            Self::MismatchingOffset { .. } => 409,
            _ => 400,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::MismatchingOffset { .. } => "offset from request does not match offset of resource",
            Self::CompletedUpload => "upload is already completed",
            Self::InconsistentLength => "inconsistent length values for upload",
        }
    }

    /// The `application/problem+json` body, with `detail`.
    pub fn body(self, detail: &str) -> String {
        let mut v = serde_json::json!({
            "type": self.type_uri(),
            "title": self.title(),
            "status": self.status(),
            "detail": detail,
        });
        if let Self::MismatchingOffset { expected, provided } = self {
            v["expected-offset"] = expected.into();
            v["provided-offset"] = provided.into();
        }
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interop_versions_and_completeness() {
        assert!(
            Interop::parse("2").is_err() && Interop::parse("9").is_err() && Interop::parse("06").is_err()
        );
        let v3 = Interop::parse("3").unwrap();
        let v6 = Interop::parse(" 6 ").unwrap();
        assert_eq!(v3.complete_field(), "upload-incomplete");
        assert_eq!(v3.read_complete(Some("?0")).unwrap(), Some(true));
        assert_eq!(v3.complete_value(true), "?0");
        assert_eq!(v6.complete_field(), "upload-complete");
        assert_eq!(v6.read_complete(Some("?1;x=1")).unwrap(), Some(true));
        assert_eq!(v6.complete_value(false), "?0");
        assert_eq!(v6.read_complete(None).unwrap(), None);
        assert!(v6.read_complete(Some("1")).is_err());
        assert!(v6.needs_partial_upload_type() && !Interop::parse("5").unwrap().needs_partial_upload_type());
    }

    #[test]
    fn integers() {
        assert_eq!(parse_int("Upload-Offset", " 42 ").unwrap(), 42);
        for bad in ["", "-1", "1.0", "+3", "1234567890123456", "0x10"] {
            assert!(parse_int("Upload-Offset", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digests() {
        let sha = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let md5 = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
        let d = Digests::parse("Repr-Digest", &format!("md5=:{md5}:, sha-256=:{sha}:;p=1, unixsum=:AAA=:"))
            .unwrap();
        assert_eq!(d.0.len(), 2);
        assert_eq!(d.best().unwrap().0, DigestAlgorithm::Sha256);
        assert!(Digests::parse("x", "sha-256=:AAAA:").is_err(), "wrong length");
        assert!(Digests::parse("x", "sha-256=abc").is_err());
        assert!(Digests::parse("x", "").is_err());
        assert!(Digests::parse("x", "unixsum=:AAA=:").unwrap().best().is_none());
    }

    #[test]
    fn problems() {
        let b: serde_json::Value =
            serde_json::from_str(&ProblemKind::MismatchingOffset { expected: 5, provided: 9 }.body("x"))
                .unwrap();
        assert_eq!(b["expected-offset"], 5);
        assert_eq!(b["provided-offset"], 9);
        assert_eq!(b["status"], 409);
        assert_eq!(upload_limit(10, Some(3)), "max-size=10, expires=3");
    }
}
