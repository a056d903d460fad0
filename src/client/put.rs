//! `depot put`: cut a file with the server's chunker, hash each chunk, ask
//! the server which it lacks, send only those (several at once, compressed
//! when that pays), then commit the manifest (in parts when it is longer
//! than one segment, so that no request grows with the file). Memory is bounded: chunks
//! stream from a reader thread through a bounded queue and are dropped once
//! sent or skipped. An interrupted put, run again, sends only what is still
//! missing, because everything it sent is already on the server.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use serde::Serialize;
use tokio::sync::mpsc;

use super::progress::Progress;
use super::{Client, ClientError, Result, human};
use crate::store::filetype::SNIFF_LEN;
use crate::store::manifest::SEGMENT_ENTRIES;
use crate::store::{ChunkId, Chunker, ChunkerParams, TypePolicy, chunker::ReadChunker, object};
use crate::wire::{ChunkRef, ChunkingInfo, CommitOpen, CommitRequest, CommitSession, FileInfo};

/// Where the bytes come from.
#[derive(Debug, Clone)]
pub enum Source {
    File(PathBuf),
    Stdin,
}

impl Source {
    fn open(&self) -> Result<Box<dyn Read + Send>> {
        match self {
            // Not buffered: the chunker reads pieces of megabytes itself
            // (a `BufReader` between them copied every byte once more).
            Source::File(p) => std::fs::File::open(p)
                .map(|f| Box::new(f) as Box<dyn Read + Send>)
                .map_err(|e| ClientError::io(format!("cannot read {}", p.display()), e)),
            Source::Stdin => Ok(Box::new(std::io::stdin())),
        }
    }

    fn default_name(&self) -> String {
        match self {
            Source::File(p) => {
                p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into())
            }
            Source::Stdin => "stdin".into(),
        }
    }

    fn len(&self) -> Option<u64> {
        match self {
            Source::File(p) => std::fs::metadata(p).ok().map(|m| m.len()),
            Source::Stdin => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PutOptions {
    /// The name to store (default: the file's name).
    pub name: Option<String>,
    /// Chunk uploads in flight.
    pub jobs: usize,
    /// Draw progress bars (on a terminal).
    pub progress: bool,
}

impl Default for PutOptions {
    fn default() -> Self {
        Self { name: None, jobs: 4, progress: true }
    }
}

/// What a put did.
#[derive(Debug, Clone, Serialize)]
pub struct PutReport {
    pub id: String,
    pub name: String,
    pub size: u64,
    pub chunks: u64,
    /// Chunks the server already had (or that repeat within the file).
    pub skipped_chunks: u64,
    /// Their bytes.
    pub skipped_bytes: u64,
    pub sent_chunks: u64,
    /// Chunk body bytes sent (after compression).
    pub sent_bytes: u64,
    pub seconds: f64,
}

/// Chunks per missing-chunks query, and bytes held waiting for one.
const BATCH_CHUNKS: usize = 256;
const BATCH_BYTES: usize = 32 << 20;
const BATCH_WAIT: Duration = Duration::from_millis(50);

/// Uploads one file (or stdin) and commits it.
///
/// # Errors
/// [`ClientError`]: unreadable input, unreachable server, refusals.
pub async fn put(client: &Client, source: Source, opts: &PutOptions) -> Result<(FileInfo, PutReport)> {
    let started = Instant::now();
    let info = client.chunking().await?;
    let params = ChunkerParams { min: info.min, avg: info.avg, max: info.max };
    let chunker = Chunker::new(params).map_err(|e| ClientError::Protocol(format!("server chunking: {e}")))?;
    if info.algorithm != "fastcdc-2020" || info.hash != "blake3" || params.id() != info.chunker_id {
        return Err(ClientError::Protocol(format!(
            "the server chunks with {} / {}, which this client does not reproduce",
            info.chunker_id, info.hash
        )));
    }
    let name = opts.name.clone().unwrap_or_else(|| source.default_name());
    let limits = Limits::of(&info);
    let batches = BatchLimits::of(&info);
    let declared_len = source.len();
    if let Some(len) = declared_len {
        limits.check_size(&name, len)?;
    }
    if let Source::File(path) = &source {
        let (path, name) = (path.clone(), name.clone());
        let head = tokio::task::spawn_blocking(move || read_head(&path))
            .await
            .map_err(|e| ClientError::Io(format!("reader: {e}")))??;
        limits.check_type(&name, &head)?;
    }
    let progress = Progress::new(declared_len, opts.progress, "skip");

    // Two threads, so that cutting and hashing use both cores: the reader
    // reads and cuts, the hasher hashes, in order. Bounded queues hold the
    // chunks between them and the uploader.
    let (cut_tx, cut_rx) = std::sync::mpsc::sync_channel::<Bytes>(32);
    let (tx, mut rx) = mpsc::channel::<(ChunkId, Bytes)>(32);
    let reader = {
        let source = source.clone();
        let chunker = chunker.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let input = source.open()?;
            for chunk in ReadChunker::new(input, chunker) {
                let chunk = chunk.map_err(|e| ClientError::io("reading the input", e))?;
                if cut_tx.send(chunk).is_err() {
                    break; // the uploader stopped; its error says why
                }
            }
            Ok(())
        })
    };
    let hasher = {
        tokio::task::spawn_blocking(move || {
            for chunk in cut_rx {
                if tx.blocking_send((ChunkId::of(&chunk), chunk)).is_err() {
                    break;
                }
            }
        })
    };

    let mut entries: Vec<ChunkRef> = Vec::new();
    let mut known: HashSet<ChunkId> = HashSet::new();
    let mut report = PutReport {
        id: String::new(),
        name: name.clone(),
        size: 0,
        chunks: 0,
        skipped_chunks: 0,
        skipped_bytes: 0,
        sent_chunks: 0,
        sent_bytes: 0,
        seconds: 0.0,
    };
    let mut closed = false;
    // Bytes read so far, and whether the first bytes have been checked
    // against the type policy (standard input is checked on arrival).
    let mut read: u64 = 0;
    let mut sniffed = matches!(source, Source::File(_));
    while !closed {
        // A batch: what arrives until it is full, or for a short while after
        // its first chunk, or until the input ends.
        let mut batch: Vec<(ChunkId, Bytes)> = Vec::new();
        let mut bytes = 0;
        let deadline = tokio::time::Instant::now() + BATCH_WAIT;
        while batch.len() < BATCH_CHUNKS && bytes < BATCH_BYTES {
            let item = if batch.is_empty() {
                rx.recv().await
            } else {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(item) => item,
                    Err(_) => break,
                }
            };
            match item {
                Some(item) => {
                    bytes += item.1.len();
                    batch.push(item);
                }
                None => {
                    closed = true;
                    break;
                }
            }
        }
        read += bytes as u64;
        if declared_len.is_none() {
            limits.check_size(&name, read)?;
        }
        if !sniffed {
            // The batch holds the input's first chunks, enough to sniff
            // (or the whole input when it is shorter).
            let mut head = Vec::with_capacity(SNIFF_LEN);
            for (_, data) in &batch {
                let take = (SNIFF_LEN - head.len()).min(data.len());
                head.extend_from_slice(&data[..take]);
            }
            limits.check_type(&name, &head)?;
            sniffed = true;
        }
        if !batch.is_empty() {
            let how = (batches, opts.jobs);
            send_batch(client, batch, &mut entries, &mut known, &mut report, &progress, how).await?;
        }
    }
    reader.await.map_err(|e| ClientError::Io(format!("reader: {e}")))??;
    hasher.await.map_err(|e| ClientError::Io(format!("hasher: {e}")))?;

    report.size = entries.iter().map(|e| u64::from(e.len)).sum();
    report.chunks = entries.len() as u64;
    let req = CommitRequest { name: name.clone(), content_type: None, size: report.size, chunks: entries };
    let mut committer = Committer { client, source: &source, chunker: &chunker, report: &mut report };
    let file = if req.chunks.len() > SEGMENT_ENTRIES {
        committer.in_parts(&req).await?
    } else {
        committer.whole(&req).await?
    };
    progress.finish();
    report.id = file.id.clone();
    report.seconds = started.elapsed().as_secs_f64();
    Ok((file, report))
}

/// What committing a manifest works with: the client, where the bytes came
/// from and how they were cut (to send again chunks the server lost), and
/// the report the resent chunks are counted into.
struct Committer<'a> {
    client: &'a Client,
    source: &'a Source,
    chunker: &'a Chunker,
    report: &'a mut PutReport,
}

/// How often a commit in parts asks where it stands and goes on after a
/// failure that retrying did not cure.
const RESUMES: u32 = 3;

impl Committer<'_> {
    /// Runs a step of the commit; when it fails because chunks vanished
    /// between the query and the step (a GC, a server repair, a lease that
    /// ran out), sends them again from the source and runs it once more.
    async fn healing<T, F: Future<Output = Result<T>>>(&mut self, step: impl Fn() -> F) -> Result<T> {
        match step().await {
            Err(ClientError::Api { status: 409, missing, .. }) if !missing.is_empty() => {
                self.resend(&missing).await?;
                step().await
            }
            other => other,
        }
    }

    /// Commits a manifest in one request (`POST /api/files`).
    async fn whole(&mut self, req: &CommitRequest) -> Result<FileInfo> {
        let client = self.client;
        self.healing(|| client.commit(req)).await
    }

    /// Commits a manifest longer than one segment in parts (`/api/commits`),
    /// so that no request grows with the file: the segments, then the finish.
    /// A segment or finish that names chunks the server lost (a lease that ran
    /// out) sends them from the source and tries again; a failure that retrying
    /// did not cure (the server restarting, a broken connection) asks where
    /// the commit stands and sends only the segments it lacks. A server
    /// without commits in parts gets the one-shot commit.
    async fn in_parts(&mut self, req: &CommitRequest) -> Result<FileInfo> {
        let open =
            CommitOpen { name: req.name.clone(), content_type: req.content_type.clone(), size: req.size };
        let session = match self.client.open_commit(&open).await {
            Ok(s) => s,
            Err(ClientError::Api { status: 404 | 405, .. }) => return self.whole(req).await,
            Err(e) => return Err(e),
        };
        let mut sent: HashSet<u32> = HashSet::new();
        let mut resumes = 0;
        loop {
            match self.send_parts(&session, req, &mut sent).await {
                Err(e) if resumes < RESUMES && resumable(&e) => {
                    resumes += 1;
                    let status = self.client.commit_status(&session.id).await?;
                    if let Some(file) = status.file {
                        return Ok(file);
                    }
                    sent = status.segments.into_iter().collect();
                }
                other => return other,
            }
        }
    }

    /// Sends the segments not in `sent` (recording each one acknowledged),
    /// then finishes.
    async fn send_parts(
        &mut self,
        session: &CommitSession,
        req: &CommitRequest,
        sent: &mut HashSet<u32>,
    ) -> Result<FileInfo> {
        let (client, id) = (self.client, &session.id);
        for (n, seg) in req.chunks.chunks(session.max_entries.max(1)).enumerate() {
            let n = n as u32;
            if sent.contains(&n) {
                continue;
            }
            self.healing(|| client.put_segment(id, n, seg)).await?;
            sent.insert(n);
        }
        self.healing(|| client.finish_commit(id)).await
    }

    /// Sends chunks the commit found missing, re-reading them from the source.
    async fn resend(&mut self, missing: &[ChunkId]) -> Result<()> {
        if matches!(self.source, Source::Stdin) {
            return Err(ClientError::Protocol(format!(
                "the server lost {} chunk(s) before the commit and stdin cannot be read twice; run the put again",
                missing.len()
            )));
        }
        let want: HashSet<ChunkId> = missing.iter().copied().collect();
        let (source, chunker) = (self.source.clone(), self.chunker.clone());
        let found = tokio::task::spawn_blocking(move || -> Result<Vec<(ChunkId, Bytes)>> {
            let mut out = Vec::new();
            let mut seen = HashSet::new();
            for c in ReadChunker::new(source.open()?, chunker) {
                let c = c.map_err(|e| ClientError::io("reading the input", e))?;
                let id = ChunkId::of(&c);
                if want.contains(&id) && seen.insert(id) {
                    out.push((id, c));
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| ClientError::Io(format!("reader: {e}")))??;
        for (id, data) in found {
            let (body, zstd) = wire_body(data);
            self.report.sent_bytes += body.len() as u64;
            self.report.sent_chunks += 1;
            self.client.put_chunk(&id, body, zstd).await?;
        }
        Ok(())
    }
}

/// Whether a failed step of a commit in parts is worth resuming from the
/// server's status.
fn resumable(e: &ClientError) -> bool {
    matches!(e, ClientError::Unreachable { .. } | ClientError::Broken(_)) || e.transient()
}

/// Asks which of a batch's chunks the server lacks and sends those.
async fn send_batch(
    client: &Client,
    batch: Vec<(ChunkId, Bytes)>,
    entries: &mut Vec<ChunkRef>,
    known: &mut HashSet<ChunkId>,
    report: &mut PutReport,
    progress: &Progress,
    (batches, jobs): (Option<BatchLimits>, usize),
) -> Result<()> {
    let mut ask: Vec<ChunkId> = Vec::new();
    for (id, data) in &batch {
        entries.push(ChunkRef { hash: *id, len: data.len() as u32 });
        if !known.contains(id) && !ask.contains(id) {
            ask.push(*id);
        }
    }
    let missing: HashSet<ChunkId> =
        if ask.is_empty() { HashSet::new() } else { client.missing(&ask).await?.into_iter().collect() };
    let mut to_send: HashMap<ChunkId, Bytes> = HashMap::new();
    // Bytes to confirm when each chunk to send is acknowledged: its
    // occurrences in this batch (a chunk that repeats is sent once).
    let mut pending_raw: HashMap<ChunkId, u64> = HashMap::new();
    for (id, data) in batch {
        let len = data.len() as u64;
        if missing.contains(&id) && !known.contains(&id) {
            to_send.entry(id).or_insert(data);
            *pending_raw.entry(id).or_default() += len;
        } else if let Some(p) = pending_raw.get_mut(&id) {
            // A repeat of a chunk on its way: confirmed with it.
            *p += len;
            report.skipped_chunks += 1;
            report.skipped_bytes += len;
        } else {
            report.skipped_chunks += 1;
            report.skipped_bytes += len;
            progress.skipped(len);
        }
        known.insert(id);
    }
    let mut sends = match batches {
        Some(limits) => send_grouped(client, to_send, limits, jobs).boxed(),
        None => send_each(client, to_send, jobs).boxed(),
    };
    while let Some(r) = sends.next().await {
        for (id, len) in r? {
            report.sent_chunks += 1;
            report.sent_bytes += len;
            progress.sent(pending_raw.get(&id).copied().unwrap_or(0), len);
        }
    }
    Ok(())
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

/// Sends each chunk with its own `PUT`, `jobs` at a time (servers without
/// `POST /api/chunks`); yields what each acknowledged: id, bytes sent.
fn send_each(
    client: &Client,
    to_send: HashMap<ChunkId, Bytes>,
    jobs: usize,
) -> impl futures_util::Stream<Item = Result<Vec<(ChunkId, u64)>>> + Send + '_ {
    stream::iter(to_send)
        .map(move |(id, data)| async move {
            let (body, zstd) = wire(data).await?;
            let len = body.len() as u64;
            client.put_chunk(&id, body, zstd).await?;
            Ok(vec![(id, len)])
        })
        .buffer_unordered(jobs.max(1))
}

/// The server's limits on one `POST /api/chunks`.
#[derive(Debug, Clone, Copy)]
struct BatchLimits {
    chunks: usize,
    bytes: u64,
}

impl BatchLimits {
    fn of(info: &ChunkingInfo) -> Option<Self> {
        Some(Self { chunks: info.max_batch_chunks?.max(1), bytes: info.max_batch_bytes? })
    }
}

/// Multipart framing allowed for per part (boundary, headers: under 200
/// bytes with a 64-hex name).
const PART_FRAMING: u64 = 512;

/// Splits the chunks to send into `jobs` groups of about equal bytes (so
/// that `jobs` requests are in flight, each with one durability barrier on
/// the server), each within the server's limits.
fn groups(to_send: Vec<(ChunkId, Bytes)>, limits: BatchLimits, jobs: usize) -> Vec<Vec<(ChunkId, Bytes)>> {
    let total: u64 = to_send.iter().map(|(_, d)| d.len() as u64 + PART_FRAMING).sum();
    let target = total.div_ceil(jobs.max(1) as u64).min(limits.bytes);
    let mut out: Vec<Vec<(ChunkId, Bytes)>> = Vec::new();
    let mut bytes = 0;
    for (id, data) in to_send {
        let n = data.len() as u64 + PART_FRAMING;
        match out.last_mut() {
            Some(group) if group.len() < limits.chunks && bytes + n <= target.max(n) => {
                group.push((id, data));
                bytes += n;
            }
            _ => {
                out.push(vec![(id, data)]);
                bytes = n;
            }
        }
    }
    out
}

/// Sends the chunks in groups (`POST /api/chunks`), `jobs` at a time;
/// yields what each group acknowledged: id, bytes sent.
fn send_grouped(
    client: &Client,
    to_send: HashMap<ChunkId, Bytes>,
    limits: BatchLimits,
    jobs: usize,
) -> impl futures_util::Stream<Item = Result<Vec<(ChunkId, u64)>>> + Send + '_ {
    stream::iter(groups(to_send.into_iter().collect(), limits, jobs))
        .map(move |group| async move {
            let mut parts = Vec::with_capacity(group.len());
            for (id, data) in group {
                let (body, zstd) = wire(data).await?;
                parts.push((id, body, zstd));
            }
            let stored = client.put_chunks(&parts).await?;
            if stored.chunks.len() != parts.len()
                || stored.chunks.iter().zip(&parts).any(|(s, p)| s.hash != p.0)
            {
                return Err(ClientError::Protocol(
                    "the server acknowledged other chunks than those sent".into(),
                ));
            }
            Ok(parts.iter().map(|(id, body, _)| (*id, body.len() as u64)).collect())
        })
        .buffer_unordered(jobs.max(1))
}

/// What the server accepts, from `GET /api/chunking`: a put checks a file
/// against it before sending anything, so a refused file costs no upload
/// and leaves no chunks behind.
struct Limits {
    max_file_size: Option<u64>,
    types: Option<TypePolicy>,
}

impl Limits {
    fn of(info: &ChunkingInfo) -> Self {
        Self { max_file_size: info.max_file_size, types: info.types.clone().map(TypePolicy::from) }
    }

    fn check_size(&self, name: &str, len: u64) -> Result<()> {
        match self.max_file_size {
            Some(max) if len > max => Err(ClientError::Refused(format!(
                "{name} is {} and the server accepts files of at most {} (limits.max_file_size); nothing was sent",
                human(len),
                human(max)
            ))),
            _ => Ok(()),
        }
    }

    /// Sniffs the first bytes as the server will when the upload completes.
    fn check_type(&self, name: &str, head: &[u8]) -> Result<()> {
        let Some(policy) = &self.types else { return Ok(()) };
        policy.check(name, head, None).map(drop).map_err(|e| {
            let why = match e {
                crate::store::Error::TypeRejected(m) => m,
                other => other.to_string(),
            };
            ClientError::Refused(format!("the server would refuse {name}: {why}; nothing was sent"))
        })
    }
}

/// The first [`SNIFF_LEN`] bytes of a file (all of it when shorter).
fn read_head(path: &std::path::Path) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path)
        .map_err(|e| ClientError::io(format!("cannot read {}", path.display()), e))?;
    let mut head = Vec::with_capacity(SNIFF_LEN);
    f.take(SNIFF_LEN as u64)
        .read_to_end(&mut head)
        .map_err(|e| ClientError::io(format!("cannot read {}", path.display()), e))?;
    Ok(head)
}

/// Whether compressing a chunk for the wire is worth a try: long enough,
/// and not random-looking ([`object::looks_compressible`]).
fn worth_compressing(data: &[u8]) -> bool {
    data.len() >= 512 && object::looks_compressible(data)
}

/// The body to send for a chunk: zstd when it saves at least 1/32.
fn wire_body(data: Bytes) -> (Bytes, bool) {
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

    fn chunk(n: u8, len: usize) -> (ChunkId, Bytes) {
        let data = Bytes::from(vec![n; len]);
        (ChunkId::of(&data), data)
    }

    /// Groups keep every chunk once, in order, within the server's limits,
    /// about `jobs` of them; a chunk larger than a group's share goes alone.
    #[test]
    fn groups_share_the_chunks_within_the_limits() {
        let sizes = [300_000, 700_000, 100_000, 1 << 20, 50_000, 900_000, 400_000, 200_000];
        let all: Vec<_> = sizes.iter().enumerate().map(|(i, &n)| chunk(i as u8, n)).collect();
        let limits = BatchLimits { chunks: 3, bytes: 1_500_000 };
        let got = groups(all.clone(), limits, 4);
        let flat: Vec<_> = got.iter().flatten().cloned().collect();
        assert_eq!(flat, all, "every chunk once, in order");
        for g in &got {
            assert!(g.len() <= 3, "{}", g.len());
            let bytes: u64 = g.iter().map(|(_, d)| d.len() as u64 + PART_FRAMING).sum();
            assert!(g.len() == 1 || bytes <= 1_500_000, "{bytes}");
        }
        assert!((4..=6).contains(&got.len()), "{} groups", got.len());
        // One job: as few groups as the limits allow.
        let one = groups(all.clone(), BatchLimits { chunks: 256, bytes: 16 << 20 }, 1);
        assert_eq!(one.len(), 1);
        // A chunk over the byte limit still goes, alone.
        let big = groups(vec![chunk(1, 10), chunk(2, 2 << 20), chunk(3, 10)], limits, 1);
        assert_eq!(big.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
    }
}
