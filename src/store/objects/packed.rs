//! [`PackedObjects`]: the object directory with pack files
//! (docs/PACKS.md). Generation 0 is a loose object of the directory
//! ([`FsObjects`]); any other generation is a record in a pack
//! ([`Packs`], the location in the generation). Listings, temp files and
//! the orphan sweep see loose objects only: a record no row names is dead
//! bytes in its pack, which compaction reclaims, not an orphan.

use std::io;
use std::time::{Duration, SystemTime};

use super::packs::Packs;
use super::{FsObjects, ObjectEntry, ObjectKey, ObjectStore};

/// Loose objects and pack files under one object directory.
pub struct PackedObjects {
    loose: FsObjects,
    packs: Packs,
    quarantine: std::path::PathBuf,
}

impl PackedObjects {
    /// The directory `loose` with the packs `packs` (under its `packs/`).
    pub fn new(loose: FsObjects, packs: Packs) -> Self {
        let quarantine = loose.quarantine_dir().to_path_buf();
        Self { loose, packs, quarantine }
    }
}

/// `Unsupported` for a write of a packed key: records are appended, never
/// written under a key ([`Packs::append`](super::packs::Writer::append)).
fn not_by_key(key: &ObjectKey) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, format!("{key}: packed objects are appended, not put by key"))
}

impl ObjectStore for PackedObjects {
    fn packs(&self) -> Option<&Packs> {
        Some(&self.packs)
    }

    fn put_if_absent(&self, key: &ObjectKey, parts: &[&[u8]]) -> io::Result<bool> {
        if key.generation != 0 {
            return Err(not_by_key(key));
        }
        self.loose.put_if_absent(key, parts)
    }

    fn replace(&self, key: &ObjectKey, parts: &[&[u8]]) -> io::Result<()> {
        if key.generation != 0 {
            return Err(not_by_key(key));
        }
        self.loose.replace(key, parts)
    }

    fn get(&self, key: &ObjectKey) -> io::Result<Option<Vec<u8>>> {
        if key.generation == 0 {
            return self.loose.get(key);
        }
        let mut buf = Vec::new();
        Ok(self.packs.read_into(key.generation, &mut buf)?.then_some(buf))
    }

    fn get_into(&self, key: &ObjectKey, buf: &mut Vec<u8>) -> io::Result<bool> {
        if key.generation == 0 {
            return self.loose.get_into(key, buf);
        }
        self.packs.read_into(key.generation, buf)
    }

    fn get_range(&self, key: &ObjectKey, start: u64, len: usize) -> io::Result<Option<Vec<u8>>> {
        if key.generation == 0 {
            return self.loose.get_range(key, start, len);
        }
        self.packs.read_range(key.generation, start, len)
    }

    fn get_head_and_range(
        &self,
        key: &ObjectKey,
        head: usize,
        start: u64,
        len: usize,
        buf: &mut Vec<u8>,
    ) -> io::Result<Option<Vec<u8>>> {
        if key.generation == 0 {
            return self.loose.get_head_and_range(key, head, start, len, buf);
        }
        self.packs.read_head_and_range(key.generation, head, start, len, buf)
    }

    fn answers_cached(&self) -> bool {
        self.loose.answers_cached()
    }

    #[cfg(target_os = "linux")]
    fn get_head_and_range_cached(
        &self,
        key: &ObjectKey,
        head: usize,
        start: u64,
        len: usize,
        buf: &mut [u8],
    ) -> Option<(Vec<u8>, usize)> {
        if key.generation == 0 {
            return self.loose.get_head_and_range_cached(key, head, start, len, buf);
        }
        self.packs.read_head_and_range_cached(key.generation, head, start, len, buf)
    }

    #[cfg(target_os = "linux")]
    fn get_cached(&self, key: &ObjectKey, max: usize, buf: &mut [u8]) -> Option<usize> {
        if key.generation == 0 {
            return self.loose.get_cached(key, max, buf);
        }
        self.packs.read_cached(key.generation, max, buf)
    }

    fn contains(&self, key: &ObjectKey) -> io::Result<bool> {
        if key.generation == 0 {
            return self.loose.contains(key);
        }
        Ok(self.packs.header_at(key.generation)?.is_some_and(|h| h.id == key.id))
    }

    /// Loose objects are removed; a packed one is left in its pack, whose
    /// live bytes the caller's row change lowers (compaction frees them).
    fn delete_many(&self, keys: &[ObjectKey]) -> io::Result<usize> {
        let loose: Vec<ObjectKey> = keys.iter().filter(|k| k.generation == 0).copied().collect();
        self.loose.delete_many(&loose)?;
        Ok(keys.len())
    }

    fn list(
        &self,
        prefix: u8,
        start_after: Option<&ObjectKey>,
        limit: usize,
    ) -> io::Result<Vec<ObjectEntry>> {
        self.loose.list(prefix, start_after, limit)
    }

    /// A packed record is copied into the quarantine directory; the pack
    /// is not changed (its row, marked damaged, no longer names it).
    fn quarantine(&self, key: &ObjectKey) -> io::Result<bool> {
        if key.generation == 0 {
            return self.loose.quarantine(key);
        }
        let mut buf = Vec::new();
        if !self.packs.read_into(key.generation, &mut buf)? {
            return Ok(false);
        }
        let stamp =
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        std::fs::write(self.quarantine.join(format!("{key}.{stamp}")), &buf)?;
        Ok(true)
    }

    fn barrier(&self) -> io::Result<()> {
        self.packs.sync()?;
        self.loose.barrier()
    }

    fn sync_all(&self) -> io::Result<()> {
        // One `syncfs` covers packs and loose objects alike.
        self.loose.sync_all()
    }

    fn sweep_temp(&self, age: Duration) -> io::Result<usize> {
        self.loose.sweep_temp(age)
    }
}
