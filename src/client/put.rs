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
use serde::Serialize;
use tokio::sync::mpsc;

use super::progress::Progress;
use super::send::{self, BatchLimits, Outgoing, Pending, wire_body};
use super::{Client, ClientError, Result, human};
use crate::store::filetype::SNIFF_LEN;
use crate::store::manifest::SEGMENT_ENTRIES;
use crate::store::{ChunkId, Chunker, ChunkerParams, TypePolicy, chunker::ReadChunker};
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
    // The planner asks which chunks the server lacks and queues requests
    // for them; the sender keeps `jobs` of those in flight meanwhile.
    let (queue, requests) = mpsc::channel::<Outgoing>(1);
    let planner = Planner { client, batches, jobs: opts.jobs, progress: &progress, queue };
    let (entries, sent) = tokio::try_join!(
        planner.run(
            &mut rx,
            &name,
            declared_len.is_none(),
            !matches!(source, Source::File(_)),
            &limits,
            &mut report
        ),
        send::send(client, requests, batches.is_some(), opts.jobs, &progress),
    )?;
    report.sent_chunks = sent.chunks;
    report.sent_bytes = sent.bytes;
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

/// The put's planner: takes the hashed chunks in order, asks the server
/// which of each stretch it lacks, and queues requests for those.
struct Planner<'a> {
    client: &'a Client,
    batches: Option<BatchLimits>,
    jobs: usize,
    progress: &'a Progress,
    queue: mpsc::Sender<Outgoing>,
}

impl Planner<'_> {
    /// Plans every chunk that arrives on `rx` (checking the size against
    /// the server's limit as it grows when it was not known, and the type
    /// on the first chunks when `sniff`); returns the manifest's entries.
    /// Counts skipped chunks into `report`; dropping the queue when done
    /// lets the sender finish.
    async fn run(
        self,
        rx: &mut mpsc::Receiver<(ChunkId, Bytes)>,
        name: &str,
        check_size: bool,
        mut sniff: bool,
        limits: &Limits,
        report: &mut PutReport,
    ) -> Result<Vec<ChunkRef>> {
        let mut entries: Vec<ChunkRef> = Vec::new();
        let mut known: HashSet<ChunkId> = HashSet::new();
        let mut read: u64 = 0;
        let mut closed = false;
        while !closed {
            // A stretch: what arrives until it is full, or for a short while
            // after its first chunk, or until the input ends.
            let mut stretch: Vec<(ChunkId, Bytes)> = Vec::new();
            let mut bytes = 0;
            let deadline = tokio::time::Instant::now() + BATCH_WAIT;
            while stretch.len() < BATCH_CHUNKS && bytes < BATCH_BYTES {
                let item = if stretch.is_empty() {
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
                        stretch.push(item);
                    }
                    None => {
                        closed = true;
                        break;
                    }
                }
            }
            read += bytes as u64;
            if check_size {
                limits.check_size(name, read)?;
            }
            if sniff {
                // The stretch holds the input's first chunks, enough to
                // sniff (or the whole input when it is shorter).
                let mut head = Vec::with_capacity(SNIFF_LEN);
                for (_, data) in &stretch {
                    let take = (SNIFF_LEN - head.len()).min(data.len());
                    head.extend_from_slice(&data[..take]);
                }
                limits.check_type(name, &head)?;
                sniff = false;
            }
            if !stretch.is_empty() {
                let to_send = self.plan(stretch, &mut entries, &mut known, report).await?;
                for r in send::requests(to_send, self.batches, self.jobs) {
                    if self.queue.send(r).await.is_err() {
                        // The sender stopped; its error says why.
                        return Ok(entries);
                    }
                }
            }
        }
        Ok(entries)
    }

    /// Asks which of a stretch's chunks the server lacks (a chunk seen
    /// earlier in the file is not asked again: it is on the server or on
    /// its way); returns those to send, each once, with the raw bytes its
    /// acknowledgement confirms.
    async fn plan(
        &self,
        stretch: Vec<(ChunkId, Bytes)>,
        entries: &mut Vec<ChunkRef>,
        known: &mut HashSet<ChunkId>,
        report: &mut PutReport,
    ) -> Result<Vec<Pending>> {
        let mut ask: Vec<ChunkId> = Vec::new();
        for (id, data) in &stretch {
            entries.push(ChunkRef { hash: *id, len: data.len() as u32 });
            if !known.contains(id) && !ask.contains(id) {
                ask.push(*id);
            }
        }
        let missing: HashSet<ChunkId> = if ask.is_empty() {
            HashSet::new()
        } else {
            self.client.missing(&ask).await?.into_iter().collect()
        };
        let mut to_send: Vec<Pending> = Vec::new();
        // Where each chunk to send sits in `to_send`, so that a repeat in
        // this stretch is confirmed with it.
        let mut pending: HashMap<ChunkId, usize> = HashMap::new();
        for (id, data) in stretch {
            let len = data.len() as u64;
            if missing.contains(&id) && !known.contains(&id) {
                pending.insert(id, to_send.len());
                to_send.push((id, data, len));
            } else {
                if let Some(&i) = pending.get(&id) {
                    to_send[i].2 += len;
                } else {
                    self.progress.skipped(len);
                }
                report.skipped_chunks += 1;
                report.skipped_bytes += len;
            }
            known.insert(id);
        }
        Ok(to_send)
    }
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
