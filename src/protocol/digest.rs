//! Running digests of request bodies, shared by the protocols that let a
//! client say what its bytes hash to (tus's checksum extension today; the
//! IETF draft's `Repr-Digest`/`Content-Digest` will add its algorithms
//! here). Only computes: comparing and answering is the protocol's.

use md5::Digest as _;

use super::tus::headers::Algorithm;

/// A running digest of a body, in one of the algorithms a client may
/// name (tus `Upload-Checksum`: sha1, md5, crc32, blake3).
pub enum Hasher {
    Sha1(sha1::Sha1),
    Md5(md5::Md5),
    Crc32(crc32fast::Hasher),
    Blake3(Box<blake3::Hasher>),
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

    pub fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(b),
            Hasher::Md5(h) => h.update(b),
            Hasher::Crc32(h) => h.update(b),
            Hasher::Blake3(h) => {
                h.update(b);
            }
        }
    }

    /// The digest: big-endian for crc32, the hash bytes otherwise.
    pub fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Md5(h) => h.finalize().to_vec(),
            Hasher::Crc32(h) => h.finalize().to_be_bytes().to_vec(),
            Hasher::Blake3(h) => h.finalize().as_bytes().to_vec(),
        }
    }
}
