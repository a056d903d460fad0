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
