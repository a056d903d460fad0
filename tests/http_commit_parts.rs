//! Commits in parts (`/api/commits`) against the real server: the file
//! equals a one-shot commit of the same chunks, spans several manifest
//! segments, resumes after a `kill -9`, refuses what a one-shot commit
//! refuses without committing anything, stays inside its tenant, and is
//! what `depot put` uses for long chunk lists.

mod common;

use std::time::Duration;

use common::cli::{Served, ok, run};
use common::{TestServer, client, small_chunks};
use depot::config::AuthMode;
use depot::store::{ChunkId, Chunker, Scopes, Tenant};
use depot::testdata::pseudo_random;
use depot::wire::{ChunkRef, CommitSession, CommitStatus, ErrorBody, FileInfo, SegmentInfo};
use futures_util::{StreamExt, stream};
use reqwest::{Client, StatusCode};
use serde_json::json;

/// `data` cut with the test chunking: the chunks and the manifest.
fn cut(data: &[u8]) -> (Vec<Vec<u8>>, Vec<ChunkRef>) {
    let chunker = Chunker::new(small_chunks()).unwrap();
    let mut at = 0;
    let mut chunks = Vec::new();
    for n in chunker.chunk_all(data) {
        chunks.push(data[at..at + n].to_vec());
        at += n;
    }
    let refs = chunks.iter().map(|c| ChunkRef { hash: ChunkId::of(c), len: c.len() as u32 }).collect();
    (chunks, refs)
}

/// PUTs every chunk (eight at a time) through the native protocol.
async fn put_chunks(c: &Client, base: &str, chunks: &[Vec<u8>]) {
    let sends = stream::iter(chunks)
        .map(|chunk| async move {
            let r = c.put(format!("{base}/api/chunks/{}", ChunkId::of(chunk))).body(chunk.clone()).send();
            r.await.unwrap().status()
        })
        .buffer_unordered(8);
    let statuses: Vec<StatusCode> = sends.collect().await;
    assert!(statuses.iter().all(|s| s.is_success()), "{statuses:?}");
}

async fn open(c: &Client, base: &str, name: &str, size: usize) -> CommitSession {
    let r = c.post(format!("{base}/api/commits")).json(&json!({"name": name, "size": size})).send();
    let r = r.await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let s: CommitSession = r.json().await.unwrap();
    assert_eq!(s.max_entries, 1024);
    s
}

async fn segment(
    c: &Client,
    base: &str,
    id: &str,
    n: impl std::fmt::Display,
    chunks: &[ChunkRef],
) -> reqwest::Response {
    c.put(format!("{base}/api/commits/{id}/segments/{n}"))
        .json(&json!({"chunks": chunks}))
        .send()
        .await
        .unwrap()
}

async fn finish(c: &Client, base: &str, id: &str) -> reqwest::Response {
    c.post(format!("{base}/api/commits/{id}/finish")).send().await.unwrap()
}

async fn status(c: &Client, base: &str, id: &str) -> CommitStatus {
    let r = c.get(format!("{base}/api/commits/{id}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// Splits `refs` into segments of the given sizes, cycling through them.
fn split<'a>(refs: &'a [ChunkRef], sizes: &[usize]) -> Vec<&'a [ChunkRef]> {
    let mut out = Vec::new();
    let (mut at, mut i) = (0, 0);
    while at < refs.len() {
        let n = sizes[i % sizes.len()].min(refs.len() - at);
        out.push(&refs[at..at + n]);
        at += n;
        i += 1;
    }
    out
}

async fn error_of(r: reqwest::Response) -> (StatusCode, ErrorBody) {
    (r.status(), r.json().await.unwrap())
}

/// Uneven segments, sent out of order, some twice: the file downloads
/// byte-identical and equals (ETag, manifest, chunk count) a one-shot
/// commit of the same chunks; its chunks span three manifest segments.
#[tokio::test(flavor = "multi_thread")]
async fn parts_make_the_file_a_one_shot_commit_makes() {
    let (_dir, s) = TestServer::start_temp_with(|c| c.chunking = small_chunks()).await;
    let data = pseudo_random(3_000_000, 31);
    let (chunks, refs) = cut(&data);
    assert!(refs.len() > 2 * 1024, "{} chunks: the file must span three manifest segments", refs.len());
    let c = client();
    put_chunks(&c, &s.base, &chunks).await;

    let session = open(&c, &s.base, "parts.bin", data.len()).await;
    let parts = split(&refs, &[300, 1024, 1, 777]);
    // Backwards, so that the store never sees them in order.
    for (n, part) in parts.iter().enumerate().rev() {
        let r = segment(&c, &s.base, &session.id, n, part).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let info: SegmentInfo = r.json().await.unwrap();
        assert_eq!((info.segment, info.entries), (n as u32, part.len() as u64));
    }
    // The same segment again: 200, nothing changes; other entries: 409.
    assert_eq!(segment(&c, &s.base, &session.id, 1, parts[1]).await.status(), StatusCode::OK);
    let (st, e) = error_of(segment(&c, &s.base, &session.id, 1, parts[0]).await).await;
    assert_eq!((st, e.error.as_str()), (StatusCode::CONFLICT, "conflict"));
    let progress = status(&c, &s.base, &session.id).await;
    assert_eq!(progress.state, "open");
    assert_eq!(progress.segments, (0..parts.len() as u32).collect::<Vec<_>>());
    assert_eq!((progress.entries, progress.bytes), (refs.len() as u64, data.len() as u64));

    let r = finish(&c, &s.base, &session.id).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let parted: FileInfo = r.json().await.unwrap();
    assert_eq!(location, parted.url);
    assert_eq!((parted.size, parted.chunks), (data.len() as u64, refs.len() as u64));
    assert_eq!(parted.deduplicated_bytes, Some(0), "every chunk was new");
    assert!(s.download(&parted.id).await == data, "the download differs from the source");
    // Finishing again answers the same file.
    let r = finish(&c, &s.base, &session.id).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<FileInfo>().await.unwrap(), parted);
    let done = status(&c, &s.base, &session.id).await;
    assert_eq!((done.state.as_str(), done.file.as_ref()), ("finished", Some(&parted)));

    // The one-shot commit of the same chunks: the same file.
    let r = c
        .post(s.url("/api/files"))
        .json(&json!({"name": "whole.bin", "size": data.len(), "chunks": refs}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let whole: FileInfo = r.json().await.unwrap();
    assert_eq!(whole.etag, parted.etag);
    assert_eq!(whole.deduplicated_bytes, Some(whole.size));
    assert_eq!(s.manifest(&whole.id).await.chunks, s.manifest(&parted.id).await.chunks);
    // And the server's own cut of the bytes, by a regular upload.
    assert_eq!(s.upload_raw("raw.bin", &data).await.etag, parted.etag);

    // Cancelling a finished commit leaves the file.
    let r = c.delete(s.url(&format!("/api/commits/{}", session.id))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(s.info(&parted.id).await, parted);
    let r = c.get(s.url(&format!("/api/commits/{}", session.id))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    s.stop().await;
}

/// What a one-shot commit refuses, a commit in parts refuses too, naming
/// every missing chunk, and nothing is committed: a missing chunk (at the
/// segment), a gap, lengths that do not add up to the size, a bad number.
#[tokio::test(flavor = "multi_thread")]
async fn refusals_commit_nothing() {
    let (_dir, s) = TestServer::start_temp_with(|c| c.chunking = small_chunks()).await;
    let data = pseudo_random(300_000, 32);
    let (chunks, refs) = cut(&data);
    let c = client();
    // Two chunks never sent.
    let (absent, sent): (Vec<_>, Vec<_>) = chunks.iter().enumerate().partition(|(i, _)| *i == 3 || *i == 7);
    let sent: Vec<Vec<u8>> = sent.into_iter().map(|(_, ch)| ch.clone()).collect();
    put_chunks(&c, &s.base, &sent).await;
    let session = open(&c, &s.base, "refused.bin", data.len()).await;
    let id = session.id.as_str();

    let (st, e) = error_of(segment(&c, &s.base, id, 0, &refs[..10]).await).await;
    assert_eq!((st, e.error.as_str()), (StatusCode::CONFLICT, "missing_chunks"));
    let mut want: Vec<ChunkId> = absent.iter().map(|(_, ch)| ChunkId::of(ch)).collect();
    want.sort_unstable();
    assert_eq!(e.missing.unwrap(), want, "every missing chunk at once");
    assert!(status(&c, &s.base, id).await.segments.is_empty(), "the refused segment was not kept");
    // Sent, then the same segment again: accepted.
    put_chunks(&c, &s.base, &absent.iter().map(|(_, ch)| (*ch).clone()).collect::<Vec<_>>()).await;
    assert_eq!(segment(&c, &s.base, id, 0, &refs[..10]).await.status(), StatusCode::CREATED);

    // A gap: segment 1 never came.
    assert_eq!(segment(&c, &s.base, id, 2, &refs[10..]).await.status(), StatusCode::CREATED);
    let (st, e) = error_of(finish(&c, &s.base, id).await).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{}", e.message);
    assert!(e.message.contains("segment 1 is missing"), "{}", e.message);
    // Lengths that do not add up: segment 1 holds the last chunk again.
    let last = &refs[refs.len() - 1..];
    assert_eq!(segment(&c, &s.base, id, 1, last).await.status(), StatusCode::CREATED);
    let (st, e) = error_of(finish(&c, &s.base, id).await).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(e.message.contains("add up to"), "{}", e.message);
    // More bytes in one segment than the file has; an entry whose length
    // is not its chunk's.
    let (st, _) =
        error_of(segment(&c, &s.base, id, 3, &[refs.as_slice(), refs.as_slice()].concat()).await).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let wrong = [ChunkRef { hash: refs[0].hash, len: refs[0].len + 1 }];
    assert_eq!(segment(&c, &s.base, id, 4, &wrong).await.status(), StatusCode::BAD_REQUEST);
    // Numbers: digits only, in range; an empty segment; too many entries.
    for n in [" 1", "+1", "1e3", "65536", "99999999999"] {
        let r = c.put(s.url(&format!("/api/commits/{id}/segments/{n}"))).json(&json!({"chunks": &refs[..1]}));
        assert_eq!(r.send().await.unwrap().status(), StatusCode::BAD_REQUEST, "{n:?}");
    }
    assert_eq!(segment(&c, &s.base, id, 5, &[]).await.status(), StatusCode::BAD_REQUEST);
    let many = vec![refs[0]; 1025];
    assert_eq!(segment(&c, &s.base, id, 5, &many).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // A file larger than the server takes is refused at the open.
    let r =
        c.post(s.url("/api/commits")).json(&json!({"name": "x", "size": 1u64 << 41})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = c.post(s.url("/api/commits")).json(&json!({"name": "a/..", "size": 1})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(s.stats().await.files, 0, "nothing was committed");
    assert!(s.list_files(&[]).await.files.is_empty());

    // Cancelled: gone, and so are its segments.
    let r = c.delete(s.url(&format!("/api/commits/{id}"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(finish(&c, &s.base, id).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(segment(&c, &s.base, id, 0, &refs[..1]).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(finish(&c, &s.base, "zz").await.status(), StatusCode::NOT_FOUND);
    s.stop().await;
}

/// `kill -9` of the real binary with some segments sent: the restarted
/// server's status lists them, the rest is sent and the finish works.
#[tokio::test(flavor = "multi_thread")]
async fn a_commit_resumes_after_the_server_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let env = [("DEPOT_CHUNKING_MIN", "256"), ("DEPOT_CHUNKING_AVG", "1024"), ("DEPOT_CHUNKING_MAX", "4096")];
    let args = ["--listen", "127.0.0.1:0"];
    let srv = Served::start(&data_dir, &args, &env).await;
    let data = pseudo_random(1_500_000, 33);
    let (chunks, refs) = cut(&data);
    let c = client();
    put_chunks(&c, &srv.base, &chunks).await;
    let session = open(&c, &srv.base, "resumed.bin", data.len()).await;
    let parts = split(&refs, &[500]);
    assert!(parts.len() >= 3);
    for n in [0, 2] {
        assert_eq!(segment(&c, &srv.base, &session.id, n, parts[n]).await.status(), StatusCode::CREATED);
    }
    let mut child = srv.child;
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    let srv = Served::start(&data_dir, &args, &env).await;
    let c = client();
    let progress = status(&c, &srv.base, &session.id).await;
    assert_eq!(progress.segments, [0, 2]);
    for (n, part) in parts.iter().enumerate().filter(|(n, _)| !progress.segments.contains(&(*n as u32))) {
        assert_eq!(segment(&c, &srv.base, &session.id, n, part).await.status(), StatusCode::CREATED);
    }
    let r = finish(&c, &srv.base, &session.id).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let file: FileInfo = r.json().await.unwrap();
    let body = c.get(format!("{}{}", srv.base, file.url)).send().await.unwrap().bytes().await.unwrap();
    assert!(body == data, "the download differs from the source");
    assert_eq!(srv.stop().await, Some(0));
}

/// Another tenant's commit is not there for it: every step answers 404,
/// and a segment may name only chunks its own tenant holds.
#[tokio::test(flavor = "multi_thread")]
async fn another_tenant_gets_404() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::test_config(dir.path());
    cfg.auth.mode = AuthMode::Token;
    cfg.chunking = small_chunks();
    let s = TestServer::start(cfg).await;
    let store = s.state.store.clone();
    let tokens = tokio::task::spawn_blocking(move || {
        let scopes = Scopes::parse(&["read", "write", "delete"]).unwrap();
        let a = store.issue_token(Tenant::parse("a").unwrap(), scopes, None, None).unwrap().1;
        let b = store.issue_token(Tenant::parse("b").unwrap(), scopes, None, None).unwrap().1;
        (a, b)
    })
    .await
    .unwrap();
    let as_token = |t: &str| {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("authorization", format!("Bearer {t}").parse().unwrap());
        Client::builder().default_headers(h).build().unwrap()
    };
    let (a, b) = (as_token(&tokens.0), as_token(&tokens.1));
    let data = pseudo_random(100_000, 34);
    let (chunks, refs) = cut(&data);
    put_chunks(&a, &s.base, &chunks).await;
    let session = open(&a, &s.base, "a.bin", data.len()).await;
    let id = session.id.as_str();
    assert_eq!(segment(&a, &s.base, id, 0, &refs[..10]).await.status(), StatusCode::CREATED);

    for r in [
        b.get(s.url(&format!("/api/commits/{id}"))).send().await.unwrap(),
        segment(&b, &s.base, id, 1, &refs[10..]).await,
        finish(&b, &s.base, id).await,
        b.delete(s.url(&format!("/api/commits/{id}"))).send().await.unwrap(),
    ] {
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    // Without a token: 401; the commit is untouched.
    let r = client().get(s.url(&format!("/api/commits/{id}"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(status(&a, &s.base, id).await.segments, [0]);
    // B's own commit of A's chunks: missing, whatever the store holds.
    let theirs = open(&b, &s.base, "b.bin", data.len()).await;
    let (st, e) = error_of(segment(&b, &s.base, &theirs.id, 0, &refs).await).await;
    assert_eq!((st, e.missing.map(|m| m.len())), (StatusCode::CONFLICT, Some(refs.len())));
    // A finishes its own.
    assert_eq!(segment(&a, &s.base, id, 1, &refs[10..]).await.status(), StatusCode::CREATED);
    assert_eq!(finish(&a, &s.base, id).await.status(), StatusCode::CREATED);
    s.stop().await;
}

/// The latency histogram's count for a route and method (0 when unseen).
fn requests(exposition: &str, route: &str, method: &str) -> u64 {
    let name = format!("depot_http_request_duration_seconds_count{{route=\"{route}\",method=\"{method}\"}} ");
    exposition.lines().find_map(|l| l.strip_prefix(&name)).map_or(0, |n| n.trim().parse().unwrap())
}

/// The metrics once `method route` has been counted once (access lines are
/// written as responses end, so the last request may not be counted yet).
async fn metrics_after(s: &TestServer, route: &str, method: &str) -> String {
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = s.get("/metrics").await.text().await.unwrap();
        if requests(&metrics, route, method) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    metrics
}

/// `depot put` of a file with more than 1,024 chunks commits in parts (no
/// `POST /api/files`), and `depot get` returns it byte-identical.
#[tokio::test(flavor = "multi_thread")]
async fn depot_put_commits_long_chunk_lists_in_parts() {
    let (dir, s) = TestServer::start_in_workdir(|c| c.chunking = small_chunks()).await;
    let path = dir.path().join("long.bin");
    let data = pseudo_random(2_200_000, 35);
    std::fs::write(&path, &data).unwrap();
    let out = ok(&run(&s.base, &["put", "--json", path.to_str().unwrap()]).await);
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let chunks = report["chunks"].as_u64().unwrap();
    assert!(chunks > 1024, "{report}");
    let metrics = metrics_after(&s, "/api/commits/{id}/finish", "POST").await;
    assert_eq!(requests(&metrics, "/api/commits", "POST"), 1);
    assert_eq!(requests(&metrics, "/api/commits/{id}/segments/{n}", "PUT"), chunks.div_ceil(1024));
    assert_eq!(requests(&metrics, "/api/commits/{id}/finish", "POST"), 1);
    assert_eq!(requests(&metrics, "/api/files", "POST"), 0, "no one-shot commit");

    let got = dir.path().join("long.out");
    let id = report["id"].as_str().unwrap();
    ok(&run(&s.base, &["get", id, "-o", got.to_str().unwrap()]).await);
    assert!(std::fs::read(&got).unwrap() == data, "the download differs from the source");
    // A short file still commits in one request.
    let short = dir.path().join("short.bin");
    std::fs::write(&short, &data[..100_000]).unwrap();
    ok(&run(&s.base, &["put", short.to_str().unwrap()]).await);
    let metrics = metrics_after(&s, "/api/files", "POST").await;
    assert_eq!(requests(&metrics, "/api/files", "POST"), 1);
    assert_eq!(requests(&metrics, "/api/commits", "POST"), 1);
    s.stop().await;
}
