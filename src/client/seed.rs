//! Seeds for delta downloads: local files that may already hold some of a
//! download's chunks (an older version of it, or anything sharing
//! content). A seed is cut with the server's own chunker, so its chunks
//! have the ids the manifest names; every chunk the manifest needs and a
//! seed holds is read from the seed, checked against its BLAKE3 again as it
//! is copied (the seed may have changed since it was cut) and written into
//! place. Whatever no seed holds, or a seed no longer holds intact, is left
//! for the caller: where each filled chunk came from says where the seed
//! bytes around a run of missing chunks are ([`super::probe`] takes what it
//! can of the run from there). No index files: the manifest is the index.
//!
//! Everything here is blocking file I/O; callers run it on a blocking
//! thread.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{ClientError, Result};
use crate::store::chunker::ReadChunker;
use crate::store::{ChunkId, Chunker};
use crate::wire::ManifestChunk;

/// Where one chunk can be read from a seed: seed number `seed` (in
/// [`SeedFiles`]) at byte `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub seed: usize,
    pub offset: u64,
}

/// The seed files by number, each opened when first read.
#[derive(Debug, Default)]
pub struct SeedFiles {
    paths: Vec<PathBuf>,
    open: HashMap<usize, Option<File>>,
}

impl SeedFiles {
    pub fn new(paths: Vec<PathBuf>) -> Self {
        Self { paths, open: HashMap::new() }
    }

    fn file(&mut self, seed: usize) -> Option<&File> {
        let path = self.paths.get(seed)?;
        self.open.entry(seed).or_insert_with(|| File::open(path).ok()).as_ref()
    }

    /// Fills `buf` from seed `seed` at `offset`; false when it cannot (the
    /// seed is gone, unreadable or shorter).
    pub fn read_at(&mut self, seed: usize, offset: u64, buf: &mut [u8]) -> bool {
        self.file(seed).is_some_and(|f| f.read_exact_at(buf, offset).is_ok())
    }

    /// The seed's size now (0 when it cannot be read).
    pub fn len(&mut self, seed: usize) -> u64 {
        self.file(seed).and_then(|f| f.metadata().ok()).map_or(0, |m| m.len())
    }
}

/// The chunks a download needs that the seeds hold.
#[derive(Debug, Default)]
pub struct SeedIndex {
    files: SeedFiles,
    found: HashMap<ChunkId, Found>,
}

/// What [`SeedIndex::fill`] copied: where each chunk came from (`None`:
/// left for the caller to fetch) and the bytes copied.
#[derive(Debug, Default)]
pub struct Filled {
    pub sources: Vec<Option<Found>>,
    pub reused: u64,
}

/// The seed files under `paths`: files as they are, directories walked
/// (symbolic links are not followed into directories), `skip` left out
/// (the download's own `.part` file).
///
/// # Errors
/// [`ClientError::Io`] when a named seed does not exist or a directory
/// cannot be listed.
pub fn seed_files(paths: &[PathBuf], skip: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = todo.pop() {
        let meta = std::fs::metadata(&p).map_err(|e| ClientError::io(format!("seed {}", p.display()), e))?;
        if meta.is_dir() {
            let entries =
                std::fs::read_dir(&p).map_err(|e| ClientError::io(format!("seed {}", p.display()), e))?;
            for entry in entries.flatten() {
                let is_link = entry.file_type().map(|t| t.is_symlink()).unwrap_or(true);
                let path = entry.path();
                if is_link && path.is_dir() {
                    continue;
                }
                todo.push(path);
            }
        } else if meta.is_file() && p != skip && !out.contains(&p) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

impl SeedIndex {
    /// Cuts every seed file with `chunker` and remembers where the chunks
    /// in `wanted` are. A seed that cannot be read is skipped: a seed only
    /// ever saves work, it is never needed.
    pub fn build(files: Vec<PathBuf>, chunker: &Chunker, wanted: &HashSet<ChunkId>) -> Self {
        let mut found = HashMap::new();
        for (seed, path) in files.iter().enumerate() {
            let Ok(f) = File::open(path) else { continue };
            let mut offset = 0u64;
            for chunk in ReadChunker::new(f, chunker.clone()) {
                let Ok(chunk) = chunk else { break };
                let id = ChunkId::of(&chunk);
                if wanted.contains(&id) {
                    found.entry(id).or_insert(Found { seed, offset });
                }
                offset += chunk.len() as u64;
            }
        }
        Self { files: SeedFiles::new(files), found }
    }

    /// Copies every chunk of `chunks` that a seed holds intact into `out`
    /// at the chunk's offset; says where each filled chunk came from. A
    /// seed chunk that no longer matches its hash is left unfilled.
    ///
    /// # Errors
    /// [`ClientError::Io`] when `out` cannot be written.
    pub fn fill(&mut self, chunks: &[ManifestChunk], out: &File) -> Result<Filled> {
        let mut filled = Filled { sources: vec![None; chunks.len()], reused: 0 };
        let mut buf = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let Some(&at) = self.found.get(&c.hash) else { continue };
            buf.resize(c.len as usize, 0);
            if !self.files.read_at(at.seed, at.offset, &mut buf) || ChunkId::of(&buf) != c.hash {
                continue;
            }
            out.write_all_at(&buf, c.offset).map_err(|e| ClientError::io("writing", e))?;
            filled.sources[i] = Some(at);
            filled.reused += u64::from(c.len);
        }
        Ok(filled)
    }

    /// The seed files, for reading beyond whole chunks.
    pub fn into_files(self) -> SeedFiles {
        self.files
    }
}

/// Runs of consecutive unfilled chunks, as index ranges into `filled`.
pub fn holes(filled: &[bool]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &f) in filled.iter().enumerate() {
        match (f, start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                out.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(s..filled.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holes_are_the_unfilled_runs() {
        assert_eq!(holes(&[]), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(holes(&[true, true]), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(holes(&[false]), vec![0..1]);
        assert_eq!(holes(&[false, true, false, false, true, false]), vec![0..1, 2..4, 5..6]);
    }
}
