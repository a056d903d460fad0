//! Delta downloads: a get with seeds. The `.part` file keeps its verified
//! prefix; every chunk a seed holds is copied from it ([`super::seed`]);
//! each run of chunks no seed holds is fetched with `Range`, whole when
//! nothing around it came from a seed, and otherwise only between the
//! edges that [`super::probe`] finds, the rest taken from the seeds around
//! it. Every chunk is checked against its BLAKE3 in the manifest before the
//! file is renamed into place; a chunk put together from a seed that does
//! not match is fetched whole.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;

use super::part::{Verifier, check_written, open_part};
use super::probe::{self, Guess, MIN_RUN, Plan, Run};
use super::progress::Progress;
use super::seed::{Found, SeedFiles, SeedIndex, holes, seed_files};
use super::{Client, ClientError, Result};
use crate::store::{Chunker, ChunkerParams};
use crate::wire::{FileInfo, ManifestChunk};

/// What a delta download did.
pub struct Delta {
    /// Bytes of an earlier run's `.part` file kept.
    pub resumed_from: u64,
    /// Bytes of the server's answers.
    pub received: u64,
    /// Bytes of the file taken from seeds.
    pub reused: u64,
}

/// Downloads file `info` into `part` from `seeds` and the server, then
/// renames it to `output`.
///
/// # Errors
/// As [`super::get`].
pub async fn get_seeded(
    client: &Client,
    info: &FileInfo,
    chunks: Vec<ManifestChunk>,
    output: &Path,
    part: &Path,
    seeds: &[PathBuf],
    bar: &Arc<Progress>,
) -> Result<Delta> {
    let chunking = client.chunking().await?;
    let params = ChunkerParams { min: chunking.min, avg: chunking.avg, max: chunking.max };
    let chunker = Chunker::new(params).map_err(|e| ClientError::Protocol(format!("server chunking: {e}")))?;

    let verifier = Verifier::new(chunks, 0);
    let (p, seeds, size) = (part.to_path_buf(), seeds.to_vec(), info.size);
    let (file, keep, filled, seeds, verifier) = tokio::task::spawn_blocking(move || {
        let (f, keep) = open_part(&p, &verifier)?;
        f.set_len(size).map_err(|e| ClientError::io(format!("writing {}", p.display()), e))?;
        let rest = &verifier.chunks[keep..];
        let wanted = rest.iter().map(|c| c.hash).collect();
        let mut index = SeedIndex::build(seed_files(&seeds, &p)?, &chunker, &wanted);
        let filled = index.fill(rest, &f)?;
        Ok::<_, ClientError>((f, keep, filled, index.into_files(), verifier))
    })
    .await
    .map_err(|e| ClientError::Io(format!("seeding: {e}")))??;
    let resumed_from = verifier.offset_of(keep);
    bar.start_at(resumed_from);
    bar.skipped(filled.reused);

    let file = Arc::new(file);
    let rest = &verifier.chunks[keep..];
    let mut done = Delta { resumed_from, received: 0, reused: filled.reused };
    // Runs with a seed on either side, long enough to be worth probing,
    // are put together from the seeds; the others are fetched whole.
    let (mut whole, mut guessed) = (Vec::new(), Vec::new());
    let is_filled: Vec<bool> = filled.sources.iter().map(Option::is_some).collect();
    for hole in holes(&is_filled) {
        let run = &rest[hole.clone()];
        let (start, end) = span(run);
        let front = hole.start.checked_sub(1).and_then(|i| filled.sources[i].map(|at| (at, rest[i].len)));
        let front = front.map(|(at, len)| Guess::Front { seed: at.seed, at: at.offset + u64::from(len) });
        let back = filled
            .sources
            .get(hole.end)
            .copied()
            .flatten()
            .map(|Found { seed, offset }| Guess::Back { seed, at: offset });
        if end - start >= MIN_RUN && (front.is_some() || back.is_some()) {
            guessed.push((hole, Run { start, len: end - start, front, back }));
        } else {
            whole.push(hole);
        }
    }
    let etag = &info.etag;
    if !guessed.is_empty() {
        let runs = guessed.iter().map(|(_, r)| r.clone()).collect();
        match probe::locate(client, &info.id, etag, runs, seeds).await {
            Ok((plans, mut seeds, received)) => {
                done.received += received;
                bar.sent(0, received);
                for ((hole, run), plan) in guessed.into_iter().zip(plans) {
                    let chunks = rest[hole].to_vec();
                    (seeds, done) =
                        put_together(client, info, chunks, &run, plan, seeds, &file, bar, done).await?;
                }
            }
            // A server (or a proxy) that does not answer lists of ranges:
            // fetch those runs whole.
            Err(ClientError::Protocol(_)) => whole.extend(guessed.into_iter().map(|(h, _)| h)),
            Err(e) => return Err(e),
        }
    }
    for hole in whole {
        done.received +=
            fetch(client, info, span(&rest[hole.clone()]), Some(rest[hole].to_vec()), &file, bar).await?;
    }
    let f = file.clone();
    tokio::task::spawn_blocking(move || f.sync_all())
        .await
        .map_err(|e| ClientError::Io(format!("writing: {e}")))?
        .map_err(|e| ClientError::io("writing", e))?;
    tokio::fs::rename(part, output)
        .await
        .map_err(|e| ClientError::io(format!("moving {} into place", part.display()), e))?;
    Ok(done)
}

/// Where a run of consecutive chunks starts and ends in the file.
fn span(run: &[ManifestChunk]) -> (u64, u64) {
    match (run.first(), run.last()) {
        (Some(a), Some(b)) => (a.offset, b.offset + u64::from(b.len)),
        _ => (0, 0),
    }
}

/// Puts a run together: its guessed edges from the seeds, the bytes
/// between them from the server; then checks every chunk and fetches
/// whole the ones that do not match.
#[allow(clippy::too_many_arguments)]
async fn put_together(
    client: &Client,
    info: &FileInfo,
    chunks: Vec<ManifestChunk>,
    run: &Run,
    plan: Plan,
    mut seeds: SeedFiles,
    file: &Arc<std::fs::File>,
    bar: &Progress,
    mut done: Delta,
) -> Result<(SeedFiles, Delta)> {
    let fetch = plan.fetch(run.len);
    let (f, r) = (file.clone(), run.clone());
    let (seeds_back, copied) = tokio::task::spawn_blocking(move || {
        let mut copied = true;
        if let Some(Guess::Front { seed, at }) = r.front {
            copied &= copy(&mut seeds, seed, at, &f, r.start, fetch.start)?;
        }
        if let Some(Guess::Back { seed, at }) = r.back {
            let n = r.len - fetch.end;
            copied &= copy(&mut seeds, seed, at - n, &f, r.start + fetch.end, n)?;
        }
        Ok::<_, ClientError>((seeds, copied))
    })
    .await
    .map_err(|e| ClientError::Io(format!("seeding: {e}")))??;
    seeds = seeds_back;
    if !fetch.is_empty() {
        let (start, end) = (run.start + fetch.start, run.start + fetch.end);
        done.received += self::fetch(client, info, (start, end), None, file, bar).await?;
    }
    let (f, c) = (file.clone(), chunks.clone());
    let ok = tokio::task::spawn_blocking(move || check_written(&f, &c))
        .await
        .map_err(|e| ClientError::Io(format!("checking: {e}")))?
        .map_err(|e| ClientError::io("reading back", e))?;
    let ok: Vec<bool> = ok.into_iter().map(|ok| ok && copied).collect();
    let fetched = (run.start + fetch.start)..(run.start + fetch.end);
    for (c, _) in chunks.iter().zip(&ok).filter(|(_, ok)| **ok) {
        let overlap =
            fetched.end.min(c.offset + u64::from(c.len)).saturating_sub(fetched.start.max(c.offset));
        let from_seed = u64::from(c.len) - overlap;
        done.reused += from_seed;
        bar.skipped(from_seed);
    }
    for hole in holes(&ok) {
        let bad = chunks[hole].to_vec();
        done.received += self::fetch(client, info, span(&bad), Some(bad), file, bar).await?;
    }
    Ok((seeds, done))
}

/// Copies `n` bytes of seed `seed` at `from` into `out` at `to`; false
/// when the seed cannot be read there.
fn copy(seeds: &mut SeedFiles, seed: usize, from: u64, out: &std::fs::File, to: u64, n: u64) -> Result<bool> {
    let mut buf = vec![0u8; n.min(1 << 20) as usize];
    let mut done = 0;
    while done < n {
        let len = (n - done).min(buf.len() as u64) as usize;
        if !seeds.read_at(seed, from + done, &mut buf[..len]) {
            return Ok(false);
        }
        out.write_all_at(&buf[..len], to + done).map_err(|e| ClientError::io("writing", e))?;
        done += len as u64;
    }
    Ok(true)
}

/// Fetches bytes `start..end` of the file with a `Range` request and
/// writes them at their offsets, checking them against `chunks` (which
/// must span exactly those bytes) when given; returns the bytes received.
async fn fetch(
    client: &Client,
    info: &FileInfo,
    (start, end): (u64, u64),
    chunks: Option<Vec<ManifestChunk>>,
    file: &Arc<std::fs::File>,
    bar: &Progress,
) -> Result<u64> {
    if start == end {
        return Ok(0);
    }
    // Many runs make many requests: one refused by the rate limit (429)
    // before its body began is asked again.
    let resp = client
        .retrying(|| async {
            let resp = client
                .http()
                .get(client.url(&format!("/api/files/{}", info.id)))
                .header("Range", format!("bytes={start}-{}", end - 1))
                .header("If-Range", format!("\"{}\"", info.etag))
                .send()
                .await
                .map_err(|e| client.send_error(e))?;
            client.check(resp).await
        })
        .await?;
    if resp.status() != reqwest::StatusCode::PARTIAL_CONTENT {
        return Err(ClientError::Protocol(format!("the server ignored a range request ({})", resp.status())));
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    let f = file.clone();
    let worker = tokio::task::spawn_blocking(move || {
        let mut verifier = chunks.map(|c| Verifier::new(c, 0));
        let mut at = start;
        while let Some(frame) = rx.blocking_recv() {
            if let Some(v) = verifier.as_mut() {
                v.feed(&frame)?;
            }
            f.write_all_at(&frame, at).map_err(|e| ClientError::io("writing", e))?;
            at += frame.len() as u64;
        }
        if at != end || verifier.is_some_and(|v| v.filled != 0) {
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
