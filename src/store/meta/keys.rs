//! Row encodings and key layouts shared by every backend: the fixed-size
//! [`ChunkRow`] codec and the composite keys of the `gcq` and `manifests`
//! families. Pure functions; no storage here.

use crate::store::enums::byte_enum;
use crate::store::error::{Error, Result};
use crate::store::id::ChunkId;

/// The on-disk layout version; a store made by another version is refused.
/// 3: chunk rows may be v2 ([`ChunkRow`]: a generation, the `Writing` state).
/// 4: on the object directory, a generation other than 0 is a record's
/// location in a pack file (docs/PACKS.md).
pub const SCHEMA_VERSION: u32 = 4;

/// The last layout before pack files: its rows all name loose objects
/// (generation 0) on the directory, so opening it rewrites nothing but the
/// version (which keeps older versions, which would look for a loose
/// object under every packed row, out from then on).
pub const SCHEMA_BEFORE_PACKS: u32 = 3;

/// The last layout before tenants: opened and migrated (see `tenant`).
pub const SCHEMA_BEFORE_TENANTS: u32 = 1;

/// The last layout before generations: every chunk row is v1, which reads
/// as generation 0, so opening it rewrites nothing but the version (which
/// keeps older versions, which cannot read v2 rows, out from then on).
pub const SCHEMA_BEFORE_GENERATIONS: u32 = 2;

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
        /// A writer has claimed the chunk and is PUTting its object under
        /// the row's generation, until `lease_until` (the claim's deadline,
        /// `until` in the design notes). Only on a generational object
        /// store (docs/DESIGN.md, "Generations"). Not usable; GC reaps it
        /// once the deadline has passed.
        Writing = 4,
    }
}

/// What the store knows of one chunk.
///
/// Encoded as v2, 42 bytes: v1's 34 (refcount u64, raw_len u32, stored_len
/// u32, codec u8, state u8, zero_since u64, lease_until u64, all little
/// endian) and then the generation (u64 LE). A v1 row (34 bytes, written
/// before generations) decodes as generation 0, so the encoding says which
/// it is by its length and no row is rewritten by an upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRow {
    pub refcount: u64,
    pub raw_len: u32,
    pub stored_len: u32,
    pub codec: u8,
    pub state: ChunkState,
    /// When the refcount last became zero (unix ms).
    pub zero_since: u64,
    /// No GC before this time (unix ms): an upload is using the chunk. For
    /// a `Writing` row: the writer's deadline.
    pub lease_until: u64,
    /// Which generation of the chunk's object the row names
    /// ([`crate::store::objects::ObjectKey`]); 0 on a store that is not
    /// generational.
    pub generation: u64,
}

impl ChunkRow {
    /// The length of a row as written (v2).
    pub const LEN: usize = 42;
    /// The length of a row written before generations (v1).
    pub const LEN_V1: usize = 34;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..8].copy_from_slice(&self.refcount.to_le_bytes());
        b[8..12].copy_from_slice(&self.raw_len.to_le_bytes());
        b[12..16].copy_from_slice(&self.stored_len.to_le_bytes());
        b[16] = self.codec;
        b[17] = self.state as u8;
        b[18..26].copy_from_slice(&self.zero_since.to_le_bytes());
        b[26..34].copy_from_slice(&self.lease_until.to_le_bytes());
        b[34..42].copy_from_slice(&self.generation.to_le_bytes());
        b
    }

    /// Decodes a v2 row, or a v1 row as generation 0.
    ///
    /// # Errors
    /// [`Error::CorruptMetadata`] when the bytes are not a row.
    pub fn decode(b: &[u8]) -> Result<Self> {
        if b.len() != Self::LEN && b.len() != Self::LEN_V1 {
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
            generation: if b.len() == Self::LEN { u64_at(34) } else { 0 },
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

/// Prefix of the [`pack_live_key`] counters: `pack/live/<pack, BE>`.
pub const PACK_LIVE_PREFIX: &[u8] = b"pack/live/";

/// The [`super::Cf::Meta`] counter of pack `pack`'s live bytes: the
/// records (header and payload, padded to a page) its chunk rows name (see
/// `compact::count_row`).
pub fn pack_live_key(pack: u32) -> [u8; 14] {
    let mut k = *b"pack/live/\0\0\0\0";
    k[10..].copy_from_slice(&pack.to_be_bytes());
    k
}

/// Prefix of the [`super::Cf::Meta`] rows of packs emptied by compaction:
/// `pack/drop/<pack, BE>` → when it may be deleted (unix ms, LE), once
/// downloads that looked up its locations before have finished.
pub const PACK_DROP_PREFIX: &[u8] = b"pack/drop/";

/// The pack a [`pack_live_key`] or [`pack_drop_key`] names.
pub fn pack_in_key(key: &[u8]) -> Option<u32> {
    let n = key.strip_prefix(b"pack/")?.get(5..)?;
    <[u8; 4]>::try_from(n).ok().map(u32::from_be_bytes)
}

/// The [`PACK_DROP_PREFIX`] row of pack `pack`.
pub fn pack_drop_key(pack: u32) -> [u8; 14] {
    let mut k = *b"pack/drop/\0\0\0\0";
    k[10..].copy_from_slice(&pack.to_be_bytes());
    k
}

/// A manifest segment key: file id then segment number (BE, in order).
pub fn manifest_key(file: &[u8; 16], segment: u32) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..16].copy_from_slice(file);
    k[16..].copy_from_slice(&segment.to_be_bytes());
    k
}
