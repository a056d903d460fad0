//! Delta downloads below the chunk. A run of chunks no seed holds is, more
//! often than not, an edit inside content the seeds do hold: bytes inserted
//! into an older copy change the chunk they land in and the chunk after it
//! (until the cut points fall into step again), but most of those chunks'
//! bytes are still the seed's, on either side of the edit. The chunk just
//! before the run came from a seed, so the run's first bytes are guessed to
//! be the ones that follow it in that seed ([`Guess::Front`]); the chunk
//! just after the run came from a seed too, so its last bytes are guessed
//! to be the ones that precede it there ([`Guess::Back`]).
//!
//! How far each guess holds is found with probes: a few short byte ranges
//! of the file, fetched several per request (`Range` with a list, answered
//! as `multipart/byteranges`), compared with the guessed seed bytes, and
//! narrowed round by round around the first byte that differs (as zsync's
//! rolling checksums find block matches, but with no index file: the
//! server's bytes are the index). What lies between the two edges is
//! fetched whole. Nothing here is trusted: the caller puts each chunk
//! together from the guesses and the fetched bytes, checks it against its
//! BLAKE3 in the manifest, and fetches whole any chunk that does not match.

use std::collections::BTreeMap;
use std::ops::Range;

use bytes::Bytes;

use super::seed::SeedFiles;
use super::{Client, ClientError, Result};

/// Bytes per probe.
const PROBE: u64 = 32;
/// Probes per gap per round: a gap shrinks to an eighth each round.
const PROBES: u64 = 7;
/// A gap this small is fetched rather than probed further: a round costs
/// about a kilobyte of answer (each part has a ~130-byte header).
const FINE: u64 = 2 << 10;
/// Rounds at most (8^12 bytes is far past any run).
const ROUNDS: usize = 12;
/// Runs shorter than this are fetched whole: probing would cost about as
/// much as it saves.
pub const MIN_RUN: u64 = 16 << 10;
/// Ranges per request (the server answers at most 64 as one multipart).
const MAX_RANGES: usize = 64;

/// A guess that a run of the download continues a seed across one of its
/// ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guess {
    /// Byte `t` of the run is byte `at + t` of seed `seed` (the chunk
    /// before the run ends at `at` there).
    Front { seed: usize, at: u64 },
    /// The run's last byte is byte `at - 1` of seed `seed`, and so on
    /// backwards (the chunk after the run starts at `at` there).
    Back { seed: usize, at: u64 },
}

/// A run of chunks to download, and what may be guessed of it.
#[derive(Debug, Clone)]
pub struct Run {
    /// The run's bytes in the file.
    pub start: u64,
    pub len: u64,
    pub front: Option<Guess>,
    pub back: Option<Guess>,
}

/// What to take from the guesses: the run's first `front` bytes from its
/// front guess, its last `back` bytes from its back guess, the rest
/// (`fetch`, relative to the run) from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub front: u64,
    pub back: u64,
}

impl Plan {
    /// The bytes to fetch, relative to the run.
    pub fn fetch(&self, len: u64) -> Range<u64> {
        self.front..len - self.back
    }
}

/// Reads seed bytes (a trait so that the search is tested without files).
pub trait SeedRead {
    /// Fills `buf` from seed `seed` at `offset`; false when it cannot.
    fn read_at(&mut self, seed: usize, offset: u64, buf: &mut [u8]) -> bool;
    fn len(&mut self, seed: usize) -> u64;
}

impl SeedRead for SeedFiles {
    fn read_at(&mut self, seed: usize, offset: u64, buf: &mut [u8]) -> bool {
        SeedFiles::read_at(self, seed, offset, buf)
    }

    fn len(&mut self, seed: usize) -> u64 {
        SeedFiles::len(self, seed)
    }
}

/// The file's bytes fetched so far, by offset.
#[derive(Debug, Default)]
pub struct Known(BTreeMap<u64, Bytes>);

impl Known {
    pub fn insert(&mut self, start: u64, bytes: Bytes) {
        self.0.insert(start, bytes);
    }

    /// Bytes `r` of the file, when one fetched part holds them all.
    pub fn get(&self, r: Range<u64>) -> Option<&[u8]> {
        let (&start, bytes) = self.0.range(..=r.start).next_back()?;
        let end = start + bytes.len() as u64;
        (r.end <= end).then(|| &bytes[(r.start - start) as usize..(r.end - start) as usize])
    }
}

/// How far one guess holds, counted in bytes from its end of the run
/// (from the start for a front guess, from the end for a back one): the
/// first `lo` bytes match as far as probes show, and the first byte that
/// differs is at most `hi` bytes in.
#[derive(Debug, Clone)]
struct Edge {
    guess: Guess,
    lo: u64,
    hi: u64,
}

impl Edge {
    fn new(guess: Guess, run_len: u64, seeds: &mut impl SeedRead) -> Self {
        // Past the seed's own ends nothing can match.
        let hi = match guess {
            Guess::Front { seed, at } => seeds.len(seed).saturating_sub(at),
            Guess::Back { at, .. } => at,
        };
        Edge { guess, lo: 0, hi: hi.min(run_len) }
    }

    fn open(&self) -> bool {
        self.hi - self.lo > FINE
    }

    /// This round's probes, as (distance from this end, length).
    fn probes(&self) -> Vec<(u64, u64)> {
        if !self.open() {
            return Vec::new();
        }
        let gap = self.hi - self.lo;
        (1..=PROBES)
            .map(|i| {
                let d = self.lo + gap * i / (PROBES + 1);
                (d, PROBE.min(self.hi - d))
            })
            .collect()
    }

    /// The run's bytes at distance `d`, `len` bytes long.
    fn in_run(&self, run_len: u64, d: u64, len: u64) -> Range<u64> {
        match self.guess {
            Guess::Front { .. } => d..d + len,
            Guess::Back { .. } => run_len - d - len..run_len - d,
        }
    }

    /// Where the guess puts byte `t` of the run: (seed, offset).
    fn in_seed(&self, run_len: u64, t: u64) -> (usize, u64) {
        match self.guess {
            Guess::Front { seed, at } => (seed, at + t),
            Guess::Back { seed, at } => (seed, at + t - run_len),
        }
    }

    /// The distances from this end of the run's bytes `r`: (start, length).
    fn distance(&self, run_len: u64, r: &Range<u64>) -> (u64, u64) {
        match self.guess {
            Guess::Front { .. } => (r.start, r.end - r.start),
            Guess::Back { .. } => (run_len - r.end, r.end - r.start),
        }
    }

    /// Narrows the edge with this round's probes of the run (both edges'
    /// probes: either may land on what the other missed), answered in
    /// `known`.
    fn update(&mut self, run: &Run, probes: &[Range<u64>], known: &Known, seeds: &mut impl SeedRead) {
        // In this edge's gap, nearest first.
        let mut mine: Vec<(u64, u64)> = probes
            .iter()
            .map(|r| self.distance(run.len, r))
            .filter_map(|(d, len)| {
                let (start, end) = (d.max(self.lo), (d + len).min(self.hi));
                (start < end).then(|| (start, end - start))
            })
            .collect();
        mine.sort_unstable();
        let mut want = [0u8; PROBE as usize];
        for (d, len) in mine {
            if d < self.lo {
                continue;
            }
            let r = self.in_run(run.len, d, len);
            let Some(got) = known.get(run.start + r.start..run.start + r.end) else { return };
            let (seed, offset) = self.in_seed(run.len, r.start);
            let want = &mut want[..len as usize];
            let mut same = 0usize;
            if seeds.read_at(seed, offset, want) {
                let pairs = got.iter().zip(want.iter());
                same = match self.guess {
                    Guess::Front { .. } => pairs.take_while(|(a, b)| a == b).count(),
                    Guess::Back { .. } => pairs.rev().take_while(|(a, b)| a == b).count(),
                };
            }
            let same = same as u64;
            if same == len {
                self.lo = d + len;
                continue;
            }
            // The first difference: exactly here when the probe matched
            // part of the way, at most here when it did not at all.
            self.hi = d + same;
            if same > 0 {
                self.lo = d + same;
            }
            return;
        }
    }
}

/// One run's search: its edges.
#[derive(Debug)]
struct Search {
    run: Run,
    front: Option<Edge>,
    back: Option<Edge>,
}

impl Search {
    fn edges(&self) -> impl Iterator<Item = &Edge> {
        self.front.iter().chain(self.back.iter())
    }

    /// The file ranges this round probes.
    fn probes(&self) -> Vec<Range<u64>> {
        self.edges()
            .flat_map(|e| {
                e.probes().into_iter().map(|(d, len)| {
                    let r = e.in_run(self.run.len, d, len);
                    self.run.start + r.start..self.run.start + r.end
                })
            })
            .collect()
    }

    fn update(&mut self, known: &Known, seeds: &mut impl SeedRead) {
        let run = self.run.clone();
        let probes: Vec<Range<u64>> =
            self.probes().into_iter().map(|r| r.start - run.start..r.end - run.start).collect();
        for e in self.front.iter_mut().chain(self.back.iter_mut()) {
            e.update(&run, &probes, known, seeds);
        }
    }

    fn plan(&self) -> Plan {
        let front = self.front.as_ref().map_or(0, |e| e.lo);
        let back = self.back.as_ref().map_or(0, |e| e.lo).min(self.run.len - front);
        Plan { front, back }
    }
}

/// Ascending, disjoint and not adjacent (as the server would coalesce them).
fn merged(mut ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges.into_iter().filter(|r| !r.is_empty()) {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// Searches every run's edges; returns a plan per run, the seeds, and the
/// bytes the probes' answers took.
///
/// # Errors
/// Network and API errors, and [`ClientError::Protocol`] when the server
/// does not answer byte ranges as asked (the caller then fetches the runs
/// whole).
pub async fn locate(
    client: &Client,
    id: &str,
    etag: &str,
    runs: Vec<Run>,
    mut seeds: SeedFiles,
) -> Result<(Vec<Plan>, SeedFiles, u64)> {
    let mut searches: Vec<Search> = runs
        .into_iter()
        .map(|run| {
            let front = run.front.map(|g| Edge::new(g, run.len, &mut seeds));
            let back = run.back.map(|g| Edge::new(g, run.len, &mut seeds));
            Search { run, front, back }
        })
        .collect();
    let mut received = 0u64;
    for _ in 0..ROUNDS {
        let ranges = merged(searches.iter().flat_map(Search::probes).collect());
        if ranges.is_empty() {
            break;
        }
        let mut known = Known::default();
        for batch in ranges.chunks(MAX_RANGES) {
            let (parts, n) = client.retrying(|| fetch_ranges(client, id, etag, batch)).await?;
            received += n;
            for (start, bytes) in parts {
                known.insert(start, bytes);
            }
            if batch.iter().any(|r| known.get(r.clone()).is_none()) {
                return Err(ClientError::Protocol("the server left out some of the ranges asked for".into()));
            }
        }
        (searches, seeds) = tokio::task::spawn_blocking(move || {
            for s in &mut searches {
                s.update(&known, &mut seeds);
            }
            (searches, seeds)
        })
        .await
        .map_err(|e| ClientError::Io(format!("comparing with the seeds: {e}")))?;
    }
    Ok((searches.iter().map(Search::plan).collect(), seeds, received))
}

/// Fetches `ranges` of file `id` in one request; returns the parts of the
/// answer (start, bytes) and its length.
async fn fetch_ranges(
    client: &Client,
    id: &str,
    etag: &str,
    ranges: &[Range<u64>],
) -> Result<(Vec<(u64, Bytes)>, u64)> {
    let list: Vec<String> = ranges.iter().map(|r| format!("{}-{}", r.start, r.end - 1)).collect();
    let resp = client
        .http()
        .get(client.url(&format!("/api/files/{id}")))
        .header("Range", format!("bytes={}", list.join(",")))
        .header("If-Range", format!("\"{etag}\""))
        .send()
        .await
        .map_err(|e| client.send_error(e))?;
    let resp = client.check(resp).await?;
    if resp.status() != reqwest::StatusCode::PARTIAL_CONTENT {
        // Not read: it may be the whole file.
        return Err(ClientError::Protocol(format!("the server ignored a range request ({})", resp.status())));
    }
    let header = |name| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (content_type, content_range) =
        (header(reqwest::header::CONTENT_TYPE), header(reqwest::header::CONTENT_RANGE));
    let body =
        resp.bytes().await.map_err(|e| ClientError::Broken(format!("a range request broke off: {e}")))?;
    let parts = match (content_range, content_type.as_deref().and_then(boundary)) {
        (Some(cr), _) => content_range_start(&cr)
            .filter(|r| r.end - r.start == body.len() as u64)
            .map(|r| vec![(r.start, body.clone())]),
        (None, Some(b)) => byteranges(&body, &b),
        (None, None) => None,
    }
    .ok_or_else(|| ClientError::Protocol("the server's answer to a range request does not parse".into()))?;
    Ok((parts, body.len() as u64))
}

/// The boundary of a `multipart/byteranges` content type.
fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    if !params.next()?.trim().eq_ignore_ascii_case("multipart/byteranges") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim().trim_matches('"').to_string())
    })
}

/// `bytes a-b/size` as the range `a..b+1`.
fn content_range_start(v: &str) -> Option<Range<u64>> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (span, _size) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (b >= a).then(|| a..b + 1)
}

/// The parts of a `multipart/byteranges` body (RFC 9110 §14.6): each
/// part's start in the file and its bytes, as long as its `Content-Range`
/// says.
fn byteranges(body: &Bytes, boundary: &str) -> Option<Vec<(u64, Bytes)>> {
    let delim = format!("--{boundary}");
    let find = |from: usize, what: &[u8]| -> Option<usize> {
        body.get(from..)?.windows(what.len()).position(|w| w == what).map(|p| from + p)
    };
    let mut at = find(0, delim.as_bytes())? + delim.len();
    let mut parts = Vec::new();
    loop {
        if body.get(at..at + 2)? == b"--" {
            return Some(parts);
        }
        let head_end = find(at, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&body[at..head_end]).ok()?;
        let range = head.split("\r\n").find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim().eq_ignore_ascii_case("content-range").then(|| content_range_start(value))?
        })?;
        let start = head_end + 4;
        let end = start.checked_add(usize::try_from(range.end - range.start).ok()?)?;
        parts.push((range.start, body.get(start..end).map(|_| body.slice(start..end))?));
        let next = format!("\r\n{delim}");
        if body.get(end..end + next.len())? != next.as_bytes() {
            return None;
        }
        at = end + next.len();
    }
}

#[cfg(test)]
mod tests;
