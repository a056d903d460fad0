//! [`MemObjects`]: the in-memory twin of the object stores, for tests,
//! benches and fuzzing. Made generational ([`MemObjects::generational`]) it
//! stands in for the S3 engine: the store then runs the claim → PUT → flip
//! protocol on it. Fault injection is not here but in [`super::Faulty`],
//! which wraps this or any other store (the S3 engine included).

use std::collections::BTreeMap;
use std::io;
use std::ops::Bound;
use std::sync::Mutex;
use std::time::SystemTime;

use super::{ObjectEntry, ObjectKey, ObjectStore, lock};
use crate::store::id::ChunkId;

/// The in-memory twin of [`super::FsObjects`] (or, made with
/// [`MemObjects::generational`], of `S3Objects`), with settable
/// modification times. Ordered by key, so a listing page is a range read.
#[derive(Default)]
pub struct MemObjects {
    objects: Mutex<BTreeMap<ObjectKey, (Vec<u8>, SystemTime)>>,
    quarantined: Mutex<Vec<(ObjectKey, Vec<u8>)>>,
    generational: bool,
}

impl MemObjects {
    /// A twin of the object directory: not generational.
    pub fn new() -> Self {
        Self::default()
    }

    /// A twin of the S3 engine: [`ObjectStore::generational`] is `true`.
    pub fn generational() -> Self {
        MemObjects { generational: true, ..Self::default() }
    }

    /// Sets an object's modification time (to test age-based sweeps).
    pub fn set_modified(&self, key: &ObjectKey, t: SystemTime) {
        if let Some(o) = lock(&self.objects).get_mut(key) {
            o.1 = t;
        }
    }

    /// Overwrites an object's bytes in place (to test corruption handling).
    pub fn corrupt(&self, key: &ObjectKey, f: impl FnOnce(&mut Vec<u8>)) {
        if let Some(o) = lock(&self.objects).get_mut(key) {
            f(&mut o.0);
        }
    }

    /// Every key stored for chunk `id`, in generation order.
    pub fn keys_of(&self, id: &ChunkId) -> Vec<ObjectKey> {
        let from = ObjectKey::new(*id, 0);
        lock(&self.objects).range(from..).map(|(k, _)| *k).take_while(|k| k.id == *id).collect()
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
    fn generational(&self) -> bool {
        self.generational
    }

    fn put_if_absent(&self, key: &ObjectKey, parts: &[&[u8]]) -> io::Result<bool> {
        let mut m = lock(&self.objects);
        if m.contains_key(key) {
            return Ok(false);
        }
        m.insert(*key, (parts.concat(), SystemTime::now()));
        Ok(true)
    }

    fn replace(&self, key: &ObjectKey, parts: &[&[u8]]) -> io::Result<()> {
        lock(&self.objects).insert(*key, (parts.concat(), SystemTime::now()));
        Ok(())
    }

    fn get(&self, key: &ObjectKey) -> io::Result<Option<Vec<u8>>> {
        Ok(lock(&self.objects).get(key).map(|o| o.0.clone()))
    }

    fn contains(&self, key: &ObjectKey) -> io::Result<bool> {
        Ok(lock(&self.objects).contains_key(key))
    }

    fn delete_many(&self, keys: &[ObjectKey]) -> io::Result<usize> {
        let mut m = lock(&self.objects);
        for key in keys {
            m.remove(key);
        }
        Ok(keys.len())
    }

    fn list(
        &self,
        prefix: u8,
        start_after: Option<&ObjectKey>,
        limit: usize,
    ) -> io::Result<Vec<ObjectEntry>> {
        let mut first = [0u8; 32];
        first[0] = prefix;
        let first = ChunkId::from_slice(&first).ok_or_else(|| io::Error::other("chunk id length"))?;
        let first = ObjectKey::new(first, 0);
        let from = match start_after {
            Some(a) if *a >= first => Bound::Excluded(*a),
            _ => Bound::Included(first),
        };
        Ok(lock(&self.objects)
            .range((from, Bound::Unbounded))
            .take_while(|(k, _)| k.id.as_bytes()[0] == prefix)
            .take(limit)
            .map(|(k, (b, t))| ObjectEntry { key: *k, len: b.len() as u64, modified: *t })
            .collect())
    }

    fn quarantine(&self, key: &ObjectKey) -> io::Result<bool> {
        match lock(&self.objects).remove(key) {
            Some((b, _)) => {
                lock(&self.quarantined).push((*key, b));
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
