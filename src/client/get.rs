//! `depot get`: stream a file to disk, verifying every chunk's BLAKE3
//! against the manifest as it arrives. The bytes land in `<output>.part` and
//! are renamed into place only when complete and verified, so a failure
//! never leaves a silently wrong file. Run again after an interruption, it
//! re-checks the verified prefix of the `.part` file and asks for the rest
//! with `Range` (and `If-Range` on the ETag).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::{Client, ClientError, Result, check};
use crate::store::ChunkId;
use crate::wire::ManifestChunk;

#[derive(Debug, Clone, Default)]
pub struct GetOptions {
    /// Where to write (default: the file's name in the current directory;
    /// `-` for standard output).
    pub output: Option<PathBuf>,
    pub progress: bool,
}

/// What a get did.
#[derive(Debug, Clone, Serialize)]
pub struct GetReport {
    pub id: String,
    pub path: String,
    pub size: u64,
    /// Bytes taken from an earlier, interrupted run.
    pub resumed_from: u64,
    pub received_bytes: u64,
    pub seconds: f64,
}

/// Checks bytes against the manifest chunk by chunk, in order.
struct Verifier {
    chunks: Arc<[ManifestChunk]>,
    index: usize,
    filled: u64,
    hasher: blake3::Hasher,
}

impl Verifier {
    fn new(chunks: Arc<[ManifestChunk]>, index: usize) -> Self {
        Self { chunks, index, filled: 0, hasher: blake3::Hasher::new() }
    }

    fn feed(&mut self, mut data: &[u8]) -> Result<()> {
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

    /// Bytes verified so far (whole chunks).
    fn verified_end(&self) -> u64 {
        self.chunks
            .get(self.index)
            .map_or_else(|| self.chunks.last().map_or(0, |c| c.offset + u64::from(c.len)), |c| c.offset)
    }
}

/// Downloads file `id`.
///
/// # Errors
/// [`ClientError`]: unreachable server, unknown file, damaged data
/// ([`ClientError::Verify`]), interrupted transfer, local I/O.
pub async fn get(client: &Client, id: &str, opts: &GetOptions) -> Result<GetReport> {
    let started = Instant::now();
    let info = client.info(id).await?;
    let manifest = client.manifest(id).await?;
    let chunks: Arc<[ManifestChunk]> = manifest.chunks.into();
    let total: u64 = chunks.iter().map(|c| u64::from(c.len)).sum();
    if total != info.size {
        return Err(ClientError::Protocol(format!(
            "the manifest adds up to {total} bytes, the file has {}",
            info.size
        )));
    }
    let to_stdout = opts.output.as_deref() == Some(Path::new("-"));
    let output = match &opts.output {
        Some(p) if !to_stdout => p.clone(),
        Some(_) => PathBuf::from("-"),
        None => PathBuf::from(safe_name(&info.name)),
    };
    let part = PathBuf::from(format!("{}.part", output.display()));

    // Resume: keep the verified whole chunks of an earlier attempt.
    let (mut sink, start_chunk): (Box<dyn Write + Send>, usize) = if to_stdout {
        (Box::new(std::io::stdout()), 0)
    } else {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&part)
            .map_err(|e| ClientError::io(format!("cannot write {}", part.display()), e))?;
        let keep = verified_prefix(&mut f, &chunks)
            .map_err(|e| ClientError::io(format!("reading {}", part.display()), e))?;
        let at = chunks.get(keep).map_or(info.size, |c| c.offset);
        f.set_len(at)
            .and_then(|_| f.seek(SeekFrom::Start(at)))
            .map_err(|e| ClientError::io("resuming", e))?;
        (Box::new(std::io::BufWriter::with_capacity(1 << 20, f)), keep)
    };
    let resumed_from = chunks.get(start_chunk).map_or(info.size, |c| c.offset);

    let bar = if opts.progress { ProgressBar::new(info.size) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bytes}/{total_bytes} {wide_bar} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar.set_position(resumed_from);

    // Hashing and writing run on a blocking thread, beside the network.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    let mut verifier = Verifier::new(chunks.clone(), start_chunk);
    let worker = tokio::task::spawn_blocking(move || {
        let mut result = Ok(());
        while let Some(frame) = rx.blocking_recv() {
            if let Err(e) = verifier.feed(&frame) {
                result = Err(e);
                break;
            }
            if let Err(e) = sink.write_all(&frame) {
                result = Err(ClientError::io("writing", e));
                break;
            }
        }
        if result.is_ok() {
            result = sink.flush().map_err(|e| ClientError::io("writing", e));
        }
        (result, verifier)
    });
    let mut received = 0u64;
    let mut broke: Option<ClientError> = None;
    if resumed_from < info.size {
        let mut req = client.http().get(client.url(&format!("/api/files/{id}")));
        if resumed_from > 0 {
            req = req
                .header("Range", format!("bytes={resumed_from}-"))
                .header("If-Range", format!("\"{}\"", info.etag));
        }
        let resp = req.send().await.map_err(|e| client.send_error(e))?;
        let resp = check(resp).await?;
        if resumed_from > 0 && resp.status() != reqwest::StatusCode::PARTIAL_CONTENT {
            return Err(ClientError::Protocol(format!(
                "the server ignored the resume request ({}); delete {} to start over",
                resp.status(),
                part.display()
            )));
        }
        let mut body = resp.bytes_stream();
        while let Some(frame) = body.next().await {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    broke = Some(ClientError::Io(format!(
                        "the download broke off after {} bytes ({e}); run the same command again to resume \
                         (if it breaks at the same place again, the server's copy is damaged: see its log)",
                        resumed_from + received
                    )));
                    break;
                }
            };
            received += frame.len() as u64;
            bar.inc(frame.len() as u64);
            if tx.send(frame).await.is_err() {
                break; // the worker stopped: its error says why
            }
        }
    }
    drop(tx);
    let (result, verifier) = worker.await.map_err(|e| ClientError::Io(format!("writer: {e}")))?;
    if let Err(e) = result {
        if matches!(e, ClientError::Verify(_)) && !to_stdout {
            // Keep only what was verified.
            if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&part) {
                let _ = f.set_len(verifier.verified_end());
            }
        }
        return Err(e);
    }
    if let Some(e) = broke {
        return Err(e);
    }
    if verifier.index != chunks.len() {
        return Err(ClientError::Io(format!(
            "the download ended after {} of {} bytes; run the same command again to resume",
            resumed_from + received,
            info.size
        )));
    }
    if !to_stdout {
        std::fs::File::open(&part)
            .and_then(|f| f.sync_all())
            .and_then(|_| std::fs::rename(&part, &output))
            .map_err(|e| ClientError::io(format!("moving {} into place", part.display()), e))?;
    }
    bar.finish_and_clear();
    Ok(GetReport {
        id: id.to_string(),
        path: output.display().to_string(),
        size: info.size,
        resumed_from,
        received_bytes: received,
        seconds: started.elapsed().as_secs_f64(),
    })
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

/// A stored name reduced to a plain file name for the current directory.
fn safe_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base.chars().map(|c| if c.is_control() { '_' } else { c }).collect();
    match cleaned.as_str() {
        "" | "." | ".." => "download".into(),
        _ => cleaned,
    }
}
