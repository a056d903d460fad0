//! The sending half of `depot put`: chunks the server lacks, in requests of
//! several (`POST /api/chunks`) or one each (`PUT /api/chunks/{hash}` on
//! servers without batches), `jobs` requests in flight at all times.
//!
//! The put's planner feeds [`send`] through a bounded queue of
//! [`Outgoing`] requests, so that it goes on reading, hashing and asking
//! "which do you lack?" for the next chunks while these are on the wire:
//! the requests in flight never drain to zero between one query's chunks and
//! the next's (they did while each query's chunks were sent to the last
//! before the next query).

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use tokio::sync::mpsc;

use super::progress::Progress;
use super::{Client, ClientError, Result};
use crate::store::{ChunkId, object};
use crate::wire::ChunkingInfo;

/// One chunk to send: its name, its raw bytes, and the raw bytes its
/// acknowledgement confirms to the progress bar (its own length times its
/// occurrences in the stretch of the file it was asked about: a chunk that
/// repeats there is sent once).
pub(super) type Pending = (ChunkId, Bytes, u64);

/// One request's worth of chunks.
pub(super) type Outgoing = Vec<Pending>;

/// The server's limits on one `POST /api/chunks` (`max_batch_chunks` parts,
/// `max_batch_bytes` bytes of body, from `GET /api/chunking`).
#[derive(Debug, Clone, Copy)]
pub(super) struct BatchLimits {
    chunks: usize,
    bytes: u64,
}

impl BatchLimits {
    /// The limits a server advertises; `None` when it takes no batches.
    pub(super) fn of(info: &ChunkingInfo) -> Option<Self> {
        Some(Self { chunks: info.max_batch_chunks?.max(1), bytes: info.max_batch_bytes? })
    }
}

/// Multipart framing allowed for per part (boundary, headers: under 200
/// bytes with a 64-hex name).
const PART_FRAMING: u64 = 512;

/// Splits the chunks to send into requests: with batches, `jobs` groups of
/// about equal bytes (so that a short file's chunks still go `jobs` at a
/// time, each group with one durability barrier on the server), each
/// within the server's limits (a chunk over the byte limit goes alone);
/// without, one request per chunk.
pub(super) fn requests(to_send: Vec<Pending>, limits: Option<BatchLimits>, jobs: usize) -> Vec<Outgoing> {
    let Some(limits) = limits else {
        return to_send.into_iter().map(|p| vec![p]).collect();
    };
    let total: u64 = to_send.iter().map(|(_, d, _)| d.len() as u64 + PART_FRAMING).sum();
    let target = total.div_ceil(jobs.max(1) as u64).min(limits.bytes);
    let mut out: Vec<Outgoing> = Vec::new();
    let mut bytes = 0;
    for p in to_send {
        let n = p.1.len() as u64 + PART_FRAMING;
        match out.last_mut() {
            Some(group) if group.len() < limits.chunks && bytes + n <= target.max(n) => {
                group.push(p);
                bytes += n;
            }
            _ => {
                out.push(vec![p]);
                bytes = n;
            }
        }
    }
    out
}

/// What [`send`] sent: chunks, and their bytes on the wire (after
/// compression).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Sent {
    pub chunks: u64,
    pub bytes: u64,
}

/// Sends every request that arrives on `queue`, `jobs` at a time, until the
/// queue closes; each request's chunks are compressed on the way when that
/// pays ([`wire_body`]) and confirmed to `progress` when acknowledged.
///
/// # Errors
/// The first request that fails ([`ClientError`]), or a server that
/// acknowledges other chunks than those sent ([`ClientError::Protocol`]).
pub(super) async fn send(
    client: &Client,
    queue: mpsc::Receiver<Outgoing>,
    batches: bool,
    jobs: usize,
    progress: &Progress,
) -> Result<Sent> {
    let requests = stream::unfold(queue, |mut q| async move { q.recv().await.map(|r| (r, q)) });
    let acks = requests.map(|r| request(client, r, batches)).buffer_unordered(jobs.max(1));
    let mut acks = std::pin::pin!(acks);
    let mut sent = Sent::default();
    while let Some(acked) = acks.next().await {
        for (raw, wire) in acked? {
            sent.chunks += 1;
            sent.bytes += wire;
            progress.sent(raw, wire);
        }
    }
    Ok(sent)
}

/// Sends one request; yields, per chunk, the raw bytes it confirms and its
/// bytes on the wire.
async fn request(client: &Client, chunks: Outgoing, batches: bool) -> Result<Vec<(u64, u64)>> {
    let mut parts = Vec::with_capacity(chunks.len());
    let mut confirms = Vec::with_capacity(chunks.len());
    for (id, data, raw) in chunks {
        let (body, zstd) = wire(data).await?;
        confirms.push((raw, body.len() as u64));
        parts.push((id, body, zstd));
    }
    if batches {
        let stored = client.put_chunks(&parts).await?;
        if stored.chunks.len() != parts.len() || stored.chunks.iter().zip(&parts).any(|(s, p)| s.hash != p.0)
        {
            return Err(ClientError::Protocol("the server acknowledged other chunks than those sent".into()));
        }
    } else {
        for (id, body, zstd) in parts {
            client.put_chunk(&id, body, zstd).await?;
        }
    }
    Ok(confirms)
}

/// The body of a chunk to send, and whether it is a zstd frame: compressed
/// when a 4 KiB sample says it is worth trying (most new data is not, and
/// goes out without a hop to a blocking thread).
async fn wire(data: Bytes) -> Result<(Bytes, bool)> {
    if !worth_compressing(&data) {
        return Ok((data, false));
    }
    tokio::task::spawn_blocking(move || wire_body(data))
        .await
        .map_err(|e| ClientError::Io(format!("compressing: {e}")))
}

/// Whether compressing a chunk for the wire is worth a try: long enough,
/// and not random-looking ([`object::looks_compressible`]).
fn worth_compressing(data: &[u8]) -> bool {
    data.len() >= 512 && object::looks_compressible(data)
}

/// The body to send for a chunk: zstd when it saves at least 1/32.
pub(super) fn wire_body(data: Bytes) -> (Bytes, bool) {
    if worth_compressing(&data) {
        if let Ok(c) = zstd::bulk::compress(&data, 1) {
            if c.len() <= data.len() - data.len() / 32 {
                return (Bytes::from(c), true);
            }
        }
    }
    (data, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: u8, len: usize) -> Pending {
        let data = Bytes::from(vec![n; len]);
        (ChunkId::of(&data), data, len as u64)
    }

    /// Groups keep every chunk once, in order, within the server's limits,
    /// about `jobs` of them; a chunk larger than a group's share goes alone.
    #[test]
    fn groups_share_the_chunks_within_the_limits() {
        let sizes = [300_000, 700_000, 100_000, 1 << 20, 50_000, 900_000, 400_000, 200_000];
        let all: Vec<_> = sizes.iter().enumerate().map(|(i, &n)| chunk(i as u8, n)).collect();
        let limits = Some(BatchLimits { chunks: 3, bytes: 1_500_000 });
        let got = requests(all.clone(), limits, 4);
        let flat: Vec<_> = got.iter().flatten().cloned().collect();
        assert_eq!(flat, all, "every chunk once, in order");
        for g in &got {
            assert!(g.len() <= 3, "{}", g.len());
            let bytes: u64 = g.iter().map(|(_, d, _)| d.len() as u64 + PART_FRAMING).sum();
            assert!(g.len() == 1 || bytes <= 1_500_000, "{bytes}");
        }
        assert!((4..=6).contains(&got.len()), "{} groups", got.len());
        // One job: as few groups as the limits allow.
        let one = requests(all.clone(), Some(BatchLimits { chunks: 256, bytes: 16 << 20 }), 1);
        assert_eq!(one.len(), 1);
        // A chunk over the byte limit still goes, alone.
        let big = requests(vec![chunk(1, 10), chunk(2, 2 << 20), chunk(3, 10)], limits, 1);
        assert_eq!(big.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
        // Without batches, one request per chunk.
        let each = requests(all.clone(), None, 4);
        assert_eq!(each.len(), all.len());
        assert!(each.iter().all(|r| r.len() == 1));
    }
}
