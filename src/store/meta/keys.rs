//! Row encodings and key layouts shared by every backend: the fixed-size
//! [`ChunkRow`] codec and the composite keys of the `gcq` and `manifests`
//! families. Pure functions; no storage here.

use crate::store::enums::byte_enum;
use crate::store::error::{Error, Result};
use crate::store::id::ChunkId;

/// The on-disk layout version; a store made by another version is refused.
pub const SCHEMA_VERSION: u32 = 2;

/// The last layout before tenants: opened and migrated (see `tenant`).
pub const SCHEMA_BEFORE_TENANTS: u32 = 1;

byte_enum! {
    /// Life of a chunk row.
    pub enum ChunkState {
        /// Referenced by at least one file.
        Live = 0,
        /// Referenced by none; garbage once its grace and lease have passed.
        Zero = 1,
        /// GC has started deleting it (survives only a crash mid-delete).
        Deleting = 2,
        /// Its object was found missing or corrupt: reported missing so that a
        /// re-upload heals it; downloads of files using it fail fast.
        Damaged = 3,
    }
}

/// What the store knows of one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRow {
    pub refcount: u64,
    pub raw_len: u32,
    pub stored_len: u32,
    pub codec: u8,
    pub state: ChunkState,
    /// When the refcount last became zero (unix ms).
    pub zero_since: u64,
    /// No GC before this time (unix ms): an upload is using the chunk.
    pub lease_until: u64,
}

impl ChunkRow {
    pub const LEN: usize = 34;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..8].copy_from_slice(&self.refcount.to_le_bytes());
        b[8..12].copy_from_slice(&self.raw_len.to_le_bytes());
        b[12..16].copy_from_slice(&self.stored_len.to_le_bytes());
        b[16] = self.codec;
        b[17] = self.state as u8;
        b[18..26].copy_from_slice(&self.zero_since.to_le_bytes());
        b[26..34].copy_from_slice(&self.lease_until.to_le_bytes());
        b
    }

    /// # Errors
    /// [`Error::CorruptMetadata`] when the bytes are not a row.
    pub fn decode(b: &[u8]) -> Result<Self> {
        if b.len() != Self::LEN {
            return Err(Error::CorruptMetadata("chunk row has the wrong length".into()));
        }
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or_default());
        let state = ChunkState::from_u8(b[17])
            .ok_or_else(|| Error::CorruptMetadata("chunk row has an unknown state".into()))?;
        Ok(Self {
            refcount: u64_at(0),
            raw_len: u32_at(8),
            stored_len: u32_at(12),
            codec: b[16],
            state,
            zero_since: u64_at(18),
            lease_until: u64_at(26),
        })
    }

    /// Whether a new reference may be made to this chunk (its object is there).
    pub fn usable(&self) -> bool {
        matches!(self.state, ChunkState::Live | ChunkState::Zero)
    }
}

/// A GC queue key: eligible-at (BE, so keys sort by time) then the chunk id.
pub fn gcq_key(eligible_ms: u64, id: &ChunkId) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&eligible_ms.to_be_bytes());
    k[8..].copy_from_slice(id.as_bytes());
    k
}

/// A manifest segment key: file id then segment number (BE, in order).
pub fn manifest_key(file: &[u8; 16], segment: u32) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..16].copy_from_slice(file);
    k[16..].copy_from_slice(&segment.to_be_bytes());
    k
}
