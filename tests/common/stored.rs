//! A chunk's stored object in a data dir, wherever the layout put it: its
//! loose file (`objects/ab/cd/<64 hex>`) or the pack records holding it
//! (`objects/packs/<16 hex>`, docs/PACKS.md). Tests that damage objects on
//! disk use these, so they run with `DEPOT_PACKS=false` as well.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use depot::store::objects::packs::offset_of;
use depot::store::{ChunkId, FsObjects, FsyncPolicy, ObjectKey, ObjectStore, Packs, object};

/// Where an object is: a file, the byte its object starts at, its length.
#[derive(Debug, Clone)]
pub struct Place {
    pub path: PathBuf,
    pub at: u64,
    pub len: usize,
}

/// Every place chunk `id`'s object is stored under the data dir
/// `data_dir`: its loose file, and each pack record whose header names it
/// (one, unless compaction or a heal copied it). Empty when there is none.
pub fn places(data_dir: &Path, id: &ChunkId) -> Vec<Place> {
    let root = data_dir.join("objects");
    let loose = FsObjects::open(&root, FsyncPolicy::Never).unwrap();
    let path = loose.path_of(&ObjectKey::plain(*id));
    let mut out = Vec::new();
    if let Ok(m) = std::fs::metadata(&path) {
        out.push(Place { path, at: 0, len: m.len() as usize });
    }
    let dir = root.join("packs");
    if !dir.is_dir() {
        return out; // no packs: opening them would make the directory
    }
    let packs = Packs::open(&dir, FsyncPolicy::Never, 0, false).unwrap();
    for p in packs.list().unwrap() {
        let path = dir.join(format!("{:016x}", p.number));
        packs
            .scan(p.number, |at, rec| -> std::io::Result<()> {
                if object::Header::decode(rec).is_ok_and(|h| h.id == *id) {
                    out.push(Place { path: path.clone(), at: offset_of(at), len: rec.len() });
                }
                Ok(())
            })
            .unwrap();
    }
    out
}

/// The one place chunk `id`'s object is stored (panics unless there is
/// exactly one).
pub fn place(data_dir: &Path, id: &ChunkId) -> Place {
    let mut all = places(data_dir, id);
    assert_eq!(all.len(), 1, "chunk {id} stored in {all:?}");
    all.pop().unwrap()
}

/// The bytes of chunk `id`'s stored object (header and payload).
pub fn read_object(data_dir: &Path, id: &ChunkId) -> Vec<u8> {
    let p = place(data_dir, id);
    let mut buf = vec![0; p.len];
    std::fs::File::open(&p.path).unwrap().read_exact_at(&mut buf, p.at).unwrap();
    buf
}

/// Stores `bytes` as chunk `id`'s object without the store knowing: over
/// each place it is stored, in place (`bytes` of the same length), or, where
/// it is stored nowhere (a read that found it damaged set a loose object
/// aside), as its loose object. What bit rot, or a disk that lies, leaves
/// behind.
pub fn overwrite_object(data_dir: &Path, id: &ChunkId, bytes: &[u8]) {
    let all = places(data_dir, id);
    if all.is_empty() {
        let loose = FsObjects::open(&data_dir.join("objects"), FsyncPolicy::Never).unwrap();
        loose.replace(&ObjectKey::plain(*id), &[bytes]).unwrap();
    }
    for p in all {
        assert_eq!(bytes.len(), p.len, "an object of another length");
        let f = std::fs::OpenOptions::new().write(true).open(&p.path).unwrap();
        f.write_all_at(bytes, p.at).unwrap();
        f.sync_data().unwrap();
    }
}

/// Flips one bit of chunk `id`'s stored object, at the byte `at` picks
/// from the object's length.
pub fn flip_bit(data_dir: &Path, id: &ChunkId, at: impl FnOnce(usize) -> usize) {
    let mut stored = read_object(data_dir, id);
    let i = at(stored.len());
    stored[i] ^= 1;
    overwrite_object(data_dir, id, &stored);
}

/// The loose objects of a data dir (files under `objects/ab/cd/`), sorted.
pub fn loose_objects(data_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for a in std::fs::read_dir(data_dir.join("objects")).unwrap() {
        let a = a.unwrap();
        if a.file_name().len() != 2 {
            continue;
        }
        for b in std::fs::read_dir(a.path()).unwrap() {
            out.extend(std::fs::read_dir(b.unwrap().path()).unwrap().map(|e| e.unwrap().path()));
        }
    }
    out.sort();
    out
}
