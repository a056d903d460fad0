//! Running digests of request bodies, shared by the protocols that let a
//! client say what its bytes hash to (tus's checksum extension, the IETF
//! draft's `Repr-Digest`/`Content-Digest`). Only computes: comparing and
//! answering is the protocol's.

use md5::Digest as _;

use super::ietf::headers::DigestAlgorithm;
use super::tus::headers::Algorithm;

/// A running digest of a body, in one of the algorithms a client may
/// name (tus `Upload-Checksum`: sha1, md5, crc32, blake3).
pub enum Hasher {
    Sha1(sha1::Sha1),
    Md5(md5::Md5),
    Crc32(crc32fast::Hasher),
    Blake3(Box<blake3::Hasher>),
    Sha256(sha2::Sha256),
    Sha512(Box<sha2::Sha512>),
}

impl Hasher {
    pub fn new(a: Algorithm) -> Self {
        match a {
            Algorithm::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            Algorithm::Md5 => Hasher::Md5(md5::Md5::new()),
            Algorithm::Crc32 => Hasher::Crc32(crc32fast::Hasher::new()),
            Algorithm::Blake3 => Hasher::Blake3(Box::default()),
        }
    }

    /// For an RFC 9530 digest field.
    pub fn for_field(a: DigestAlgorithm) -> Self {
        use sha2::Digest as _;
        match a {
            DigestAlgorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            DigestAlgorithm::Sha512 => Hasher::Sha512(Box::new(sha2::Sha512::new())),
            DigestAlgorithm::Md5 => Hasher::new(Algorithm::Md5),
            DigestAlgorithm::Sha1 => Hasher::new(Algorithm::Sha1),
        }
    }

    pub fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(b),
            Hasher::Md5(h) => h.update(b),
            Hasher::Crc32(h) => h.update(b),
            Hasher::Blake3(h) => {
                h.update(b);
            }
            Hasher::Sha256(h) => sha2::Digest::update(h, b),
            Hasher::Sha512(h) => sha2::Digest::update(h.as_mut(), b),
        }
    }

    /// The digest: big-endian for crc32, the hash bytes otherwise.
    pub fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Md5(h) => h.finalize().to_vec(),
            Hasher::Crc32(h) => h.finalize().to_be_bytes().to_vec(),
            Hasher::Blake3(h) => h.finalize().as_bytes().to_vec(),
            Hasher::Sha256(h) => sha2::Digest::finalize(h).to_vec(),
            Hasher::Sha512(h) => sha2::Digest::finalize(*h).to_vec(),
        }
    }
}
