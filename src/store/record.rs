//! [`FileRecord`]: what the store keeps about a file, and its life
//! ([`FileState`]). Plain data (the store's work on it is in `files.rs`),
//! so that the open-files cache can hold it without depending on the
//! engine.

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::id::{ChunkId, FileId};
use super::name::{Tenant, View};

/// A stored file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub id: FileId,
    /// Who owns it (records made before tenants read as `default`).
    #[serde(default)]
    pub tenant: Tenant,
    pub name: String,
    pub size: u64,
    pub content_type: String,
    /// Unix milliseconds.
    pub created_ms: u64,
    /// The chunker id the manifest was cut with.
    pub chunker: String,
    /// Number of chunks in the manifest.
    pub chunks: u64,
    /// BLAKE3 of the manifest: the file's strong ETag.
    pub manifest_digest: ChunkId,
    /// BLAKE3 of the whole content, when the server saw it stream past.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<ChunkId>,
    /// Start offset of each manifest segment.
    pub segments: Vec<u64>,
    pub state: FileState,
    /// Raw bytes of the chunks this file was the first to reference when it
    /// was committed: what it added to the store. `size` minus this is what
    /// deduplication saved it (content the store held already, or repeated
    /// within the file). Absent on records committed before it was counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_bytes: Option<u64>,
}

impl FileRecord {
    /// The record if `view` may see it; otherwise the same
    /// [`Error::FileNotFound`] as for an id that never existed.
    ///
    /// # Errors
    /// [`Error::FileNotFound`].
    pub fn seen_by(self, view: &View) -> Result<Self> {
        if view.sees(&self.tenant) { Ok(self) } else { Err(Error::FileNotFound(self.id.to_string())) }
    }
}

/// A file record's life: only `Ready` files are visible. The other states
/// mark multi-step work that resumes after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum FileState {
    Ready,
    /// Refcounts of segments before `next` are incremented.
    Committing {
        next: u32,
    },
    /// Refcounts of segments before `next` are decremented.
    Deleting {
        next: u32,
    },
}
