//! `depot get`: stream a file to disk, verifying every chunk's BLAKE3
//! against the manifest as it arrives. The bytes land in `<output>.part` and
//! are renamed into place only when complete and verified, so a failure
//! never leaves a silently wrong file. Run again after an interruption, it
//! re-checks the verified prefix of the `.part` file and asks for the rest
//! with `Range` (and `If-Range` on the ETag).
//!
//! With seeds (`--seed`, or the existing output under `--force`) a get is a
//! delta download ([`super::delta`]): the chunks the seeds hold are copied
//! from them, and of the runs of chunks between them only the bytes the
//! seeds do not hold are fetched, every chunk verified the same way.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures_util::StreamExt;
use serde::Serialize;

use super::delta::get_seeded;
use super::part::{Verifier, open_part};
use super::progress::Progress;
use super::{Client, ClientError, Result};

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
    /// Bytes of the server's answers' bodies (a delta download's probes
    /// and any chunk fetched again after a failed check included).
    pub received_bytes: u64,
    /// Bytes copied from seeds instead of fetched.
    pub reused_bytes: u64,
    pub seconds: f64,
}

/// Where verified bytes go: the `.part` file, or standard output.
///
/// Both through a small buffer: the body's frames (a few hundred KiB from a
/// fast server) are larger than it and go straight to the kernel, with no
/// copy; only small frames are gathered. Standard output is written through
/// a file of its own (a duplicate of descriptor 1), not std's `Stdout`,
/// whose line buffering would split every binary frame at its last newline.
struct Sink {
    out: std::io::BufWriter<std::fs::File>,
    /// A `.part` file: cut to what is kept and synced at the end.
    durable: bool,
}

/// Frames at least this long are written without being copied.
const GATHER: usize = 64 << 10;

impl Sink {
    fn file(f: std::fs::File) -> Self {
        Sink { out: std::io::BufWriter::with_capacity(GATHER, f), durable: true }
    }

    fn stdout() -> std::io::Result<Self> {
        use std::os::fd::AsFd;
        let fd = std::io::stdout().as_fd().try_clone_to_owned()?;
        Ok(Sink { out: std::io::BufWriter::with_capacity(GATHER, fd.into()), durable: false })
    }

    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.out.write_all(data)
    }

    /// Flushes; a file is cut back to `keep` bytes and made durable.
    fn finish(self, keep: u64) -> std::io::Result<()> {
        let f = self.out.into_inner().map_err(std::io::IntoInnerError::into_error)?;
        if self.durable {
            f.set_len(keep)?;
            f.sync_all()?;
        }
        Ok(())
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
        let bar = Progress::new(Some(info.size), opts.progress, "seed");
        let done = get_seeded(client, &info, manifest.chunks, &output, &part, &seeds, &bar).await?;
        bar.finish();
        return Ok(GetReport {
            id: id.to_string(),
            path: output.display().to_string(),
            size: info.size,
            resumed_from: done.resumed_from,
            received_bytes: done.received,
            reused_bytes: done.reused,
            seconds: started.elapsed().as_secs_f64(),
        });
    }

    // Resume: keep the verified whole chunks of an earlier attempt. Files
    // are opened, hashed and written on blocking threads, beside the network.
    let mut verifier = Verifier::new(manifest.chunks, 0);
    let sink = if to_stdout {
        Sink::stdout().map_err(|e| ClientError::io("writing to standard output", e))?
    } else {
        let p = part.clone();
        let (f, keep, v) =
            tokio::task::spawn_blocking(move || open_part(&p, &verifier).map(|(f, k)| (f, k, verifier)))
                .await
                .map_err(|e| ClientError::Io(format!("opening: {e}")))??;
        verifier = v;
        verifier.index = keep;
        Sink::file(f)
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

/// A stored name reduced to a plain file name for the current directory.
fn safe_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base.chars().map(|c| if c.is_control() { '_' } else { c }).collect();
    match cleaned.as_str() {
        "" | "." | ".." => "download".into(),
        _ => cleaned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames larger and smaller than [`GATHER`], in any order, land in the
    /// file in order; the small ones gathered are flushed by `finish`, which
    /// then cuts the file to what is kept.
    #[test]
    fn a_sink_writes_every_frame_in_order_and_keeps_what_it_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.part");
        let mut sink = Sink::file(std::fs::File::create(&path).unwrap());
        let sizes = [GATHER * 3, 10, 3, GATHER + 1, 5, GATHER - 1, 1, 7];
        let mut want = Vec::new();
        for (i, n) in sizes.into_iter().enumerate() {
            let frame = crate::testdata::pseudo_random(n, i as u64);
            sink.write_all(&frame).unwrap();
            want.extend_from_slice(&frame);
        }
        let keep = want.len() as u64 - 4;
        sink.finish(keep).unwrap();
        want.truncate(keep as usize);
        assert!(std::fs::read(&path).unwrap() == want, "the file is not the frames in order");
    }
}
