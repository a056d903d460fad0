//! Identifiers: [`ChunkId`] (the BLAKE3 hash of a chunk's raw bytes), [`FileId`]
//! (a ULID: time-ordered, so the newest file sorts last) and [`UploadId`] (an
//! upload session). Each is a fixed-size newtype with a canonical text form;
//! parsing is strict so a malformed id can never reach a path or a key.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A string did not parse as an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: {reason}")]
pub struct ParseIdError {
    kind: &'static str,
    reason: &'static str,
}

impl ParseIdError {
    fn new(kind: &'static str, reason: &'static str) -> Self {
        Self { kind, reason }
    }
}

fn decode_hex<const N: usize>(s: &str, kind: &'static str) -> Result<[u8; N], ParseIdError> {
    if s.len() != N * 2 {
        return Err(ParseIdError::new(kind, "wrong length"));
    }
    let mut out = [0u8; N];
    for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
        let hi = hex_val(pair[0]).ok_or(ParseIdError::new(kind, "not hex"))?;
        let lo = hex_val(pair[1]).ok_or(ParseIdError::new(kind, "not hex"))?;
        out[i] = (hi << 4) | lo;
    }
    Ok(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 64];
    for (i, b) in bytes.iter().enumerate() {
        buf[2 * i] = DIGITS[(b >> 4) as usize];
        buf[2 * i + 1] = DIGITS[(b & 15) as usize];
    }
    // Only ASCII hex digits were written.
    f.write_str(std::str::from_utf8(&buf[..bytes.len() * 2]).unwrap_or_default())
}

/// What every id shares: a newtype over `N` bytes, `from_slice`/`as_bytes`,
/// `Debug` as `Name(text)` and serde through the text form (`Display` and
/// `FromStr`, which each id writes, or `hex_text!` for hex ids).
macro_rules! id_type {
    ($t:ident, $n:literal) => {
        impl $t {
            /// The id of a fixed-size byte slice, as stored in keys and manifests.
            pub fn from_slice(b: &[u8]) -> Option<Self> {
                b.try_into().ok().map(Self)
            }

            pub fn as_bytes(&self) -> &[u8; $n] {
                &self.0
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($t), "({})"), self)
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// The text form of an id written as lowercase hex digits (any case parses).
macro_rules! hex_text {
    ($t:ident, $n:literal, $kind:literal) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }
        impl FromStr for $t {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                decode_hex::<$n>(s, $kind).map(Self)
            }
        }
    };
}

/// The BLAKE3 hash of a chunk's raw (uncompressed) bytes; its name everywhere.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// Hashes `data` into its id.
    pub fn of(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

impl From<blake3::Hash> for ChunkId {
    fn from(h: blake3::Hash) -> Self {
        Self(*h.as_bytes())
    }
}

id_type!(ChunkId, 32);
hex_text!(ChunkId, 32, "chunk hash");

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A file's id: a ULID (48-bit millisecond time, 80 random bits), written in
/// Crockford base32. Byte order is time order, so RocksDB keeps files sorted by
/// creation and "newest first" is a reverse scan.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub [u8; 16]);

impl FileId {
    /// A new id for a file created at `unix_ms`.
    pub fn new(unix_ms: u64) -> Self {
        let mut b = [0u8; 16];
        b[..6].copy_from_slice(&unix_ms.to_be_bytes()[2..]);
        rand::Rng::fill(&mut rand::rng(), &mut b[6..]);
        Self(b)
    }

    /// Milliseconds since the epoch at which the id was made.
    pub fn unix_ms(&self) -> u64 {
        let mut t = [0u8; 8];
        t[2..].copy_from_slice(&self.0[..6]);
        u64::from_be_bytes(t)
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = u128::from_be_bytes(self.0);
        let mut out = [0u8; 26];
        for (i, c) in out.iter_mut().enumerate() {
            let shift = 125 - 5 * i as u32;
            *c = CROCKFORD[((v >> shift) & 31) as usize];
        }
        f.write_str(std::str::from_utf8(&out).unwrap_or_default())
    }
}

impl FromStr for FileId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 26 {
            return Err(ParseIdError::new("file id", "wrong length"));
        }
        let mut v: u128 = 0;
        for (i, c) in s.bytes().enumerate() {
            let d = match c.to_ascii_uppercase() {
                c @ b'0'..=b'9' => c - b'0',
                b'O' => 0,
                b'I' | b'L' => 1,
                c => match CROCKFORD.iter().position(|&x| x == c) {
                    Some(p) => p as u8,
                    None => return Err(ParseIdError::new("file id", "not base32")),
                },
            };
            // The first character carries only 3 bits (26 * 5 = 130 > 128).
            if i == 0 && d > 7 {
                return Err(ParseIdError::new("file id", "out of range"));
            }
            v = (v << 5) | u128::from(d);
        }
        Ok(Self(v.to_be_bytes()))
    }
}
id_type!(FileId, 16);

/// An upload session's id, 16 bytes written as 32 hex digits. tus uploads get a
/// random one; a seed chunked upload derives it from what the client says
/// identifies the upload, so every piece of one upload finds the same session.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId(pub [u8; 16]);

impl UploadId {
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        rand::Rng::fill(&mut rand::rng(), &mut b);
        Self(b)
    }

    /// A stable id for the parts that name an upload (protocol, client
    /// identifier, size, name…). Parts are length-prefixed so no two part
    /// lists collide by concatenation.
    pub fn derive(parts: &[&[u8]]) -> Self {
        let mut h = blake3::Hasher::new_derive_key("depot upload id v1");
        for p in parts {
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p);
        }
        let mut b = [0u8; 16];
        b.copy_from_slice(&h.finalize().as_bytes()[..16]);
        Self(b)
    }
}
id_type!(UploadId, 16);
hex_text!(UploadId, 16, "upload id");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_id_hex_round_trip() {
        let id = ChunkId::of(b"hello");
        let s = id.to_string();
        assert_eq!(s, blake3::hash(b"hello").to_hex().as_str());
        assert_eq!(s.parse::<ChunkId>().unwrap(), id);
        assert_eq!(s.to_uppercase().parse::<ChunkId>().unwrap(), id);
        assert!("zz".repeat(32).parse::<ChunkId>().is_err());
        assert!("ab".parse::<ChunkId>().is_err());
        assert!("../".repeat(21).parse::<ChunkId>().is_err());
    }

    #[test]
    fn file_id_round_trip_and_order() {
        let a = FileId::new(1_700_000_000_000);
        let b = FileId::new(1_700_000_000_001);
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
        assert_eq!(a.unix_ms(), 1_700_000_000_000);
        assert_eq!(a.to_string().parse::<FileId>().unwrap(), a);
        assert_eq!(a.to_string().to_lowercase().parse::<FileId>().unwrap(), a);
        assert_eq!(a.to_string().len(), 26);
        assert!("8ZZZZZZZZZZZZZZZZZZZZZZZZZ".parse::<FileId>().is_err());
        assert!("7ZZZZZZZZZZZZZZZZZZZZZZZZZ".parse::<FileId>().is_ok());
        assert!("../../etc/passwd".parse::<FileId>().is_err());
        assert!("UUUUUUUUUUUUUUUUUUUUUUUUUU".parse::<FileId>().is_err());
    }

    #[test]
    fn upload_id_derive_is_stable_and_unambiguous() {
        let a = UploadId::derive(&[b"seed", b"ab", b"c"]);
        let b = UploadId::derive(&[b"seed", b"a", b"bc"]);
        assert_ne!(a, b);
        assert_eq!(a, UploadId::derive(&[b"seed", b"ab", b"c"]));
        assert_eq!(a.to_string().parse::<UploadId>().unwrap(), a);
    }
}
