//! [`MemObjects`]: the in-memory twin of the object directory, for tests,
//! benches and fuzzing. Fault injection is not here but in
//! [`super::Faulty`], which wraps this or any other store.

use std::collections::BTreeMap;
use std::io;
use std::ops::Bound;
use std::sync::Mutex;
use std::time::SystemTime;

use super::{ObjectEntry, ObjectStore, lock};
use crate::store::id::ChunkId;

/// The in-memory twin of [`super::FsObjects`], with settable modification
/// times. Ordered by id, so a listing page is a range read.
#[derive(Default)]
pub struct MemObjects {
    objects: Mutex<BTreeMap<ChunkId, (Vec<u8>, SystemTime)>>,
    quarantined: Mutex<Vec<(ChunkId, Vec<u8>)>>,
}

impl MemObjects {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets an object's modification time (to test age-based sweeps).
    pub fn set_modified(&self, id: &ChunkId, t: SystemTime) {
        if let Some(o) = lock(&self.objects).get_mut(id) {
            o.1 = t;
        }
    }

    /// Overwrites an object's bytes in place (to test corruption handling).
    pub fn corrupt(&self, id: &ChunkId, f: impl FnOnce(&mut Vec<u8>)) {
        if let Some(o) = lock(&self.objects).get_mut(id) {
            f(&mut o.0);
        }
    }

    pub fn len(&self) -> usize {
        lock(&self.objects).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many objects were quarantined.
    pub fn quarantined(&self) -> usize {
        lock(&self.quarantined).len()
    }
}

impl ObjectStore for MemObjects {
    fn put_if_absent(&self, id: &ChunkId, parts: &[&[u8]]) -> io::Result<bool> {
        let mut m = lock(&self.objects);
        if m.contains_key(id) {
            return Ok(false);
        }
        m.insert(*id, (parts.concat(), SystemTime::now()));
        Ok(true)
    }

    fn replace(&self, id: &ChunkId, parts: &[&[u8]]) -> io::Result<()> {
        lock(&self.objects).insert(*id, (parts.concat(), SystemTime::now()));
        Ok(())
    }

    fn get(&self, id: &ChunkId) -> io::Result<Option<Vec<u8>>> {
        Ok(lock(&self.objects).get(id).map(|o| o.0.clone()))
    }

    fn contains(&self, id: &ChunkId) -> io::Result<bool> {
        Ok(lock(&self.objects).contains_key(id))
    }

    fn delete_many(&self, ids: &[ChunkId]) -> io::Result<usize> {
        let mut m = lock(&self.objects);
        for id in ids {
            m.remove(id);
        }
        Ok(ids.len())
    }

    fn list(&self, prefix: u8, start_after: Option<&ChunkId>, limit: usize) -> io::Result<Vec<ObjectEntry>> {
        let mut first = [0u8; 32];
        first[0] = prefix;
        let first = ChunkId::from_slice(&first).ok_or_else(|| io::Error::other("chunk id length"))?;
        let from = match start_after {
            Some(a) if *a >= first => Bound::Excluded(*a),
            _ => Bound::Included(first),
        };
        Ok(lock(&self.objects)
            .range((from, Bound::Unbounded))
            .take_while(|(id, _)| id.as_bytes()[0] == prefix)
            .take(limit)
            .map(|(id, (b, t))| ObjectEntry { id: *id, len: b.len() as u64, modified: *t })
            .collect())
    }

    fn quarantine(&self, id: &ChunkId) -> io::Result<bool> {
        match lock(&self.objects).remove(id) {
            Some((b, _)) => {
                lock(&self.quarantined).push((*id, b));
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
