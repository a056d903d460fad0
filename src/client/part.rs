//! The `.part` file a download writes into, and the check of its bytes
//! against the manifest: [`Verifier`] hashes bytes as they stream in, chunk
//! by chunk; [`open_part`] keeps the verified prefix of an earlier,
//! interrupted run.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::{ClientError, Result};
use crate::store::ChunkId;
use crate::wire::ManifestChunk;

/// Checks bytes against the manifest chunk by chunk, in order.
pub struct Verifier {
    pub chunks: Vec<ManifestChunk>,
    pub index: usize,
    pub filled: u64,
    hasher: blake3::Hasher,
}

impl Verifier {
    pub fn new(chunks: Vec<ManifestChunk>, index: usize) -> Self {
        Self { chunks, index, filled: 0, hasher: blake3::Hasher::new() }
    }

    pub fn feed(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let Some(c) = self.chunks.get(self.index) else {
                return Err(ClientError::Verify("the server sent more bytes than the manifest holds".into()));
            };
            let take = ((u64::from(c.len) - self.filled) as usize).min(data.len());
            self.hasher.update(&data[..take]);
            self.filled += take as u64;
            data = &data[take..];
            if self.filled == u64::from(c.len) {
                let got = ChunkId::from(self.hasher.finalize());
                if got != c.hash {
                    return Err(ClientError::Verify(format!(
                        "chunk {} (bytes {}..{}) does not match its hash: the server sent damaged data; \
                         nothing was kept past the last verified chunk",
                        self.index,
                        c.offset,
                        c.offset + u64::from(c.len)
                    )));
                }
                self.hasher.reset();
                self.filled = 0;
                self.index += 1;
            }
        }
        Ok(())
    }

    /// Where chunk `index` starts (the file's size past the last one).
    pub fn offset_of(&self, index: usize) -> u64 {
        self.chunks
            .get(index)
            .map_or_else(|| self.chunks.last().map_or(0, |c| c.offset + u64::from(c.len)), |c| c.offset)
    }

    /// Bytes verified so far (whole chunks).
    pub fn verified_end(&self) -> u64 {
        self.offset_of(self.index)
    }
}

/// Opens `part` and keeps its leading chunks that match the manifest,
/// positioned to append after them; returns how many chunks it kept.
pub fn open_part(part: &Path, verifier: &Verifier) -> Result<(std::fs::File, usize)> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(part)
        .map_err(|e| ClientError::io(format!("cannot write {}", part.display()), e))?;
    let keep = verified_prefix(&mut f, &verifier.chunks)
        .map_err(|e| ClientError::io(format!("reading {}", part.display()), e))?;
    let at = verifier.offset_of(keep);
    f.set_len(at).and_then(|_| f.seek(SeekFrom::Start(at))).map_err(|e| ClientError::io("resuming", e))?;
    Ok((f, keep))
}

/// How many leading chunks of `f` are whole and match the manifest.
fn verified_prefix(f: &mut std::fs::File, chunks: &[ManifestChunk]) -> std::io::Result<usize> {
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(0))?;
    let mut buf = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        if c.offset + u64::from(c.len) > len {
            return Ok(i);
        }
        buf.resize(c.len as usize, 0);
        f.read_exact(&mut buf)?;
        if ChunkId::of(&buf) != c.hash {
            return Ok(i);
        }
    }
    Ok(chunks.len())
}

/// Which of `chunks` the bytes of `f` at their offsets match, read back
/// from the file (for chunks put together from several sources).
pub fn check_written(f: &std::fs::File, chunks: &[ManifestChunk]) -> std::io::Result<Vec<bool>> {
    use std::os::unix::fs::FileExt;
    let mut buf = Vec::new();
    let mut ok = Vec::with_capacity(chunks.len());
    for c in chunks {
        buf.resize(c.len as usize, 0);
        f.read_exact_at(&mut buf, c.offset)?;
        ok.push(ChunkId::of(&buf) == c.hash);
    }
    Ok(ok)
}
