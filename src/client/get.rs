//! `depot get`: stream a file to disk, verifying every chunk's BLAKE3
//! against the manifest as it arrives. The bytes land in `<output>.part` and
//! are renamed into place only when complete and verified, so a failure
//! never leaves a silently wrong file. Run again after an interruption, it
//! re-checks the verified prefix of the `.part` file and asks for the rest
//! with `Range` (and `If-Range` on the ETag).
//!
//! With seeds (`--seed`, or the existing output under `--force`) a get is a
//! delta download: the chunks the seeds hold are copied from them (see
//! [`super::seed`]) and only the holes between them are fetched, one
//! `Range` request per run of missing chunks, verified the same way.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures_util::StreamExt;
use serde::Serialize;

use super::progress::Progress;
use super::seed::{SeedIndex, holes, seed_files};
use super::{Client, ClientError, Result, check};
use crate::store::{ChunkId, Chunker, ChunkerParams};
use crate::wire::ManifestChunk;

#[derive(Debug, Clone, Default)]
pub struct GetOptions {
    /// Where to write (default: the file's name in the current directory;
    /// `-` for standard output).
    pub output: Option<PathBuf>,
    /// Replace an existing output file. Without it, a get refuses to
    /// overwrite one (its own `.part` file is resumed, never refused).
    pub force: bool,
    pub progress: bool,
    /// Local files or directories that may hold some of the file's chunks.
    /// An existing output file replaced under `force` is a seed too.
    pub seeds: Vec<PathBuf>,
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
    /// Bytes copied from seeds instead of fetched.
    pub reused_bytes: u64,
    pub seconds: f64,
}

/// Checks bytes against the manifest chunk by chunk, in order.
struct Verifier {
    chunks: Vec<ManifestChunk>,
    index: usize,
    filled: u64,
    hasher: blake3::Hasher,
}

impl Verifier {
    fn new(chunks: Vec<ManifestChunk>, index: usize) -> Self {
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

    /// Where chunk `index` starts (the file's size past the last one).
    fn offset_of(&self, index: usize) -> u64 {
        self.chunks
            .get(index)
            .map_or_else(|| self.chunks.last().map_or(0, |c| c.offset + u64::from(c.len)), |c| c.offset)
    }

    /// Bytes verified so far (whole chunks).
    fn verified_end(&self) -> u64 {
        self.offset_of(self.index)
    }
}

/// Where verified bytes go: the `.part` file, or standard output.
enum Sink {
    File(std::io::BufWriter<std::fs::File>),
    Stdout(std::io::Stdout),
}

impl Sink {
    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::File(f) => f.write_all(data),
            Sink::Stdout(o) => o.write_all(data),
        }
    }

    /// Flushes; a file is cut back to `keep` bytes and made durable.
    fn finish(self, keep: u64) -> std::io::Result<()> {
        match self {
            Sink::File(f) => {
                let f = f.into_inner().map_err(std::io::IntoInnerError::into_error)?;
                f.set_len(keep)?;
                f.sync_all()
            }
            Sink::Stdout(mut o) => o.flush(),
        }
    }
}

/// Opens `part` and keeps its leading chunks that match the manifest,
/// positioned to append after them; returns how many chunks it kept.
fn open_part(part: &Path, verifier: &Verifier) -> Result<(std::fs::File, usize)> {
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

/// Downloads file `id`.
///
/// # Errors
/// [`ClientError`]: unreachable server, unknown file, damaged data
/// ([`ClientError::Verify`]), interrupted transfer, local I/O.
pub async fn get(client: &Client, id: &str, opts: &GetOptions) -> Result<GetReport> {
    let started = Instant::now();
    let info = client.info(id).await?;
    let manifest = client.manifest(id).await?;
    let total: u64 = manifest.chunks.iter().map(|c| u64::from(c.len)).sum();
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
    if !to_stdout {
        refuse_to_clobber(&output, opts.force || opts.seeds.contains(&output))?;
    }
    let mut seeds = opts.seeds.clone();
    if !to_stdout && opts.force && output.is_file() && !seeds.contains(&output) {
        seeds.push(output.clone());
    }
    if !seeds.is_empty() && !to_stdout {
        return get_seeded(client, id, &info, manifest.chunks, &output, &part, &seeds, opts, started).await;
    }

    // Resume: keep the verified whole chunks of an earlier attempt. Files
    // are opened, hashed and written on blocking threads, beside the network.
    let mut verifier = Verifier::new(manifest.chunks, 0);
    let sink = if to_stdout {
        Sink::Stdout(std::io::stdout())
    } else {
        let p = part.clone();
        let (f, keep, v) =
            tokio::task::spawn_blocking(move || open_part(&p, &verifier).map(|(f, k)| (f, k, verifier)))
                .await
                .map_err(|e| ClientError::Io(format!("opening: {e}")))??;
        verifier = v;
        verifier.index = keep;
        Sink::File(std::io::BufWriter::with_capacity(1 << 20, f))
    };
    let resumed_from = verifier.verified_end();
    let chunk_count = verifier.chunks.len();

    let bar = Progress::new(Some(info.size), opts.progress, "kept");
    bar.start_at(resumed_from);

    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    let worker = tokio::task::spawn_blocking(move || {
        let mut sink = sink;
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
        // Whatever happened, keep only whole verified chunks plus, after a
        // clean stream, everything written.
        let keep =
            if result.is_ok() { verifier.verified_end() + verifier.filled } else { verifier.verified_end() };
        if let Err(e) = sink.finish(keep) {
            result = result.and(Err(ClientError::io("writing", e)));
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
        let resp = client.check(resp).await?;
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
                    broke = Some(ClientError::Broken(format!(
                        "the download broke off after {} bytes ({e}); run the same command again to resume \
                         (if it breaks at the same place again, the server's copy is damaged: see its log)",
                        resumed_from + received
                    )));
                    break;
                }
            };
            received += frame.len() as u64;
            bar.sent(frame.len() as u64, frame.len() as u64);
            if tx.send(frame).await.is_err() {
                break; // the worker stopped: its error says why
            }
        }
    }
    drop(tx);
    let (result, verifier) = worker.await.map_err(|e| ClientError::Io(format!("writer: {e}")))?;
    result?;
    if let Some(e) = broke {
        return Err(e);
    }
    if verifier.index != chunk_count {
        return Err(ClientError::Broken(format!(
            "the download ended after {} of {} bytes; run the same command again to resume",
            resumed_from + received,
            info.size
        )));
    }
    if !to_stdout {
        tokio::fs::rename(&part, &output)
            .await
            .map_err(|e| ClientError::io(format!("moving {} into place", part.display()), e))?;
    }
    bar.finish();
    Ok(GetReport {
        id: id.to_string(),
        path: output.display().to_string(),
        size: info.size,
        resumed_from,
        received_bytes: received,
        reused_bytes: 0,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A delta download: keep the `.part` file's verified prefix, copy what
/// the seeds hold, fetch the holes, rename into place.
#[allow(clippy::too_many_arguments)]
async fn get_seeded(
    client: &Client,
    id: &str,
    info: &crate::wire::FileInfo,
    chunks: Vec<ManifestChunk>,
    output: &Path,
    part: &Path,
    seeds: &[PathBuf],
    opts: &GetOptions,
    started: Instant,
) -> Result<GetReport> {
    let chunking = client.chunking().await?;
    let params = ChunkerParams { min: chunking.min, avg: chunking.avg, max: chunking.max };
    let chunker = Chunker::new(params).map_err(|e| ClientError::Protocol(format!("server chunking: {e}")))?;
    let bar = Progress::new(Some(info.size), opts.progress, "seed");

    let verifier = Verifier::new(chunks, 0);
    let (p, seeds, size) = (part.to_path_buf(), seeds.to_vec(), info.size);
    let (file, keep, filled, reused, verifier) = tokio::task::spawn_blocking(move || {
        let (f, keep) = open_part(&p, &verifier)?;
        f.set_len(size).map_err(|e| ClientError::io(format!("writing {}", p.display()), e))?;
        let rest = &verifier.chunks[keep..];
        let wanted = rest.iter().map(|c| c.hash).collect();
        let index = SeedIndex::build(seed_files(&seeds, &p)?, &chunker, &wanted);
        let (filled, reused) = index.fill(rest, &f)?;
        Ok::<_, ClientError>((f, keep, filled, reused, verifier))
    })
    .await
    .map_err(|e| ClientError::Io(format!("seeding: {e}")))??;
    let resumed_from = verifier.offset_of(keep);
    bar.start_at(resumed_from);
    bar.skipped(reused);

    let file = std::sync::Arc::new(file);
    let mut received = 0u64;
    for hole in holes(&filled) {
        let run = verifier.chunks[keep + hole.start..keep + hole.end].to_vec();
        received += fetch_run(client, id, info, run, &file, &bar).await?;
    }
    let f = file.clone();
    tokio::task::spawn_blocking(move || f.sync_all())
        .await
        .map_err(|e| ClientError::Io(format!("writing: {e}")))?
        .map_err(|e| ClientError::io("writing", e))?;
    tokio::fs::rename(part, output)
        .await
        .map_err(|e| ClientError::io(format!("moving {} into place", part.display()), e))?;
    bar.finish();
    Ok(GetReport {
        id: id.to_string(),
        path: output.display().to_string(),
        size: info.size,
        resumed_from,
        received_bytes: received,
        reused_bytes: reused,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Fetches one run of consecutive chunks with a `Range` request, verifies
/// them and writes them at their offsets; returns the bytes received.
async fn fetch_run(
    client: &Client,
    id: &str,
    info: &crate::wire::FileInfo,
    run: Vec<ManifestChunk>,
    file: &std::sync::Arc<std::fs::File>,
    bar: &Progress,
) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    let (Some(first), Some(last)) = (run.first().copied(), run.last().copied()) else { return Ok(0) };
    let (start, end) = (first.offset, last.offset + u64::from(last.len));
    if start == end {
        return Ok(0);
    }
    let resp = client
        .http()
        .get(client.url(&format!("/api/files/{id}")))
        .header("Range", format!("bytes={start}-{}", end - 1))
        .header("If-Range", format!("\"{}\"", info.etag))
        .send()
        .await
        .map_err(|e| client.send_error(e))?;
    let resp = check(resp).await?;
    if resp.status() != reqwest::StatusCode::PARTIAL_CONTENT {
        return Err(ClientError::Protocol(format!("the server ignored a range request ({})", resp.status())));
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    let f = file.clone();
    let worker = tokio::task::spawn_blocking(move || {
        let mut verifier = Verifier::new(run, 0);
        let mut at = start;
        while let Some(frame) = rx.blocking_recv() {
            verifier.feed(&frame)?;
            f.write_all_at(&frame, at).map_err(|e| ClientError::io("writing", e))?;
            at += frame.len() as u64;
        }
        if at != end || verifier.filled != 0 {
            return Err(ClientError::Broken(format!(
                "a range of the download ended after {} of {} bytes; run the same command again to resume",
                at - start,
                end - start
            )));
        }
        Ok(())
    });
    let mut body = resp.bytes_stream();
    let mut received = 0u64;
    let mut broke = None;
    while let Some(frame) = body.next().await {
        match frame {
            Ok(frame) => {
                received += frame.len() as u64;
                bar.sent(frame.len() as u64, frame.len() as u64);
                if tx.send(frame).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                broke = Some(ClientError::Broken(format!(
                    "the download broke off ({e}); run the same command again to resume"
                )));
                break;
            }
        }
    }
    drop(tx);
    worker.await.map_err(|e| ClientError::Io(format!("writer: {e}")))??;
    match broke {
        Some(e) => Err(e),
        None => Ok(received),
    }
}

/// Refuses to replace an existing `output` unless `force` (as curl's
/// `--no-clobber`, wget and rsync users expect). The partial download
/// `output.part` is not `output`: resuming it is always allowed.
fn refuse_to_clobber(output: &Path, force: bool) -> Result<()> {
    match std::fs::symlink_metadata(output) {
        Ok(m) if m.is_dir() => {
            Err(ClientError::Io(format!("{} is a directory; name the output file with -o", output.display())))
        }
        Ok(_) if !force => Err(ClientError::Io(format!(
            "{} exists; use --force to overwrite it, or -o to write elsewhere",
            output.display()
        ))),
        _ => Ok(()),
    }
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
