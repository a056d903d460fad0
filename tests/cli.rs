//! The real `depot` binary against the real server: bytes on the wire are
//! counted by the server (request body bytes, `depot_http_request_bytes_total`).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::TestServer;
use common::cli::{depot, ok, run, run_json};
use common::stored;
use depot::store::{ChunkId, object};
use depot::testdata::{fill_random, pseudo_random};
use depot::wire::{FileInfo, StatsInfo};
use tokio::process::Command;

const MIB: u64 = 1 << 20;

fn write_random(path: &Path, size: u64, seed: u64) -> Vec<u8> {
    let data = pseudo_random(size as usize, seed);
    std::fs::write(path, &data).unwrap();
    data
}

/// Puts a file with `--json`; returns the report and the request bytes the
/// server received meanwhile.
async fn put(s: &TestServer, path: &Path) -> (serde_json::Value, u64) {
    let before = s.bytes_in();
    let report = run_json(&s.base, &["put", "--json", path.to_str().unwrap()]).await;
    (report, s.bytes_in() - before)
}

/// Requests the server answered on `route` (its pattern) with `method`.
async fn requests(s: &TestServer, route: &str, method: &str) -> u64 {
    let m = s.get("/metrics").await.text().await.unwrap();
    let name = format!("depot_http_request_duration_seconds_count{{route=\"{route}\",method=\"{method}\"}}");
    m.lines().find_map(|l| l.strip_prefix(name.as_str())?.trim().parse::<u64>().ok()).unwrap_or(0)
}

/// What a [`proxy`] changes on the way to the server.
#[derive(Clone)]
enum Tweak {
    /// Answers `GET /api/chunking` without the batch limits, as a server
    /// from before `POST /api/chunks` does.
    NoBatches,
    /// Answers `GET /api/chunking` without `request_encodings`, as a server
    /// that takes JSON bodies only plain does.
    NoRequestEncodings,
    /// Holds each `POST /api/chunks` answer until a missing-chunks query
    /// later than the one that asked for the batch's chunks has arrived, or
    /// a second passes.
    HoldBatches(Arc<Held>),
}

/// What [`Tweak::HoldBatches`] saw.
#[derive(Default)]
struct Held {
    /// Missing-chunks queries that arrived.
    queries: AtomicU64,
    /// For each chunk asked about, the number of the first query that asked
    /// (1 for the first): a batch belongs to the query of its chunks, which
    /// is known whichever of a batch and a later query reaches the proxy
    /// first.
    asked: std::sync::Mutex<std::collections::HashMap<ChunkId, u64>>,
    wake: tokio::sync::Notify,
    /// Batches held.
    batches: AtomicU64,
    /// Batches a later query arrived during.
    overlapped: AtomicU64,
}

/// A proxy in front of `base` that forwards every request as it is, but
/// for what `tweak` changes.
async fn proxy(base: String, tweak: Tweak) -> String {
    use axum::http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (client, base, tweak) = (client.clone(), base.clone(), tweak.clone());
        async move {
            let (parts, body) = req.into_parts();
            let path = parts.uri.path().to_owned();
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            let mut held = None;
            if let Tweak::HoldBatches(h) = &tweak {
                if path == "/api/chunks/missing" {
                    let json = match parts.headers.get("content-encoding") {
                        Some(_) => zstd::decode_all(&body[..]).unwrap(),
                        None => body.to_vec(),
                    };
                    let asked: depot::wire::MissingRequest = serde_json::from_slice(&json).unwrap();
                    {
                        let mut first = h.asked.lock().unwrap();
                        let n = h.queries.fetch_add(1, Ordering::SeqCst) + 1;
                        for id in asked.hashes {
                            first.entry(id).or_insert(n);
                        }
                    }
                    h.wake.notify_waiters();
                } else if path == "/api/chunks" && parts.method == axum::http::Method::POST {
                    held = Some(h.clone());
                }
            }
            let url = format!("{base}{}", parts.uri.path_and_query().map_or("/", |p| p.as_str()));
            let mut forward = client.request(parts.method.clone(), url).body(body);
            for (k, v) in parts.headers.iter().filter(|(k, _)| **k != HOST) {
                forward = forward.header(k, v);
            }
            let r = forward.send().await.unwrap();
            let (status, headers) = (r.status(), r.headers().clone());
            let mut body = r.bytes().await.unwrap().to_vec();
            let dropped: &[&str] = match tweak {
                Tweak::NoBatches => &["max_batch_chunks", "max_batch_bytes"],
                Tweak::NoRequestEncodings => &["request_encodings"],
                Tweak::HoldBatches(_) => &[],
            };
            if path == "/api/chunking" && !dropped.is_empty() {
                let mut info: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let info_map = info.as_object_mut().unwrap();
                for field in dropped {
                    assert!(info_map.remove(*field).is_some(), "{field} in {body:?}");
                }
                body = serde_json::to_vec(&info).unwrap();
            }
            if let Some(h) = held {
                h.batches.fetch_add(1, Ordering::SeqCst);
                let stored: depot::wire::PutChunksResponse = serde_json::from_slice(&body).unwrap();
                let before = {
                    let asked = h.asked.lock().unwrap();
                    stored.chunks.iter().map(|c| asked[&c.hash]).max().unwrap()
                };
                let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
                loop {
                    let woken = h.wake.notified();
                    let mut woken = std::pin::pin!(woken);
                    woken.as_mut().enable();
                    if h.queries.load(Ordering::SeqCst) > before {
                        h.overlapped.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    if tokio::time::timeout_at(deadline, woken).await.is_err() {
                        break;
                    }
                }
            }
            let mut answer = axum::response::Response::builder().status(status);
            for (k, v) in headers.iter().filter(|(k, _)| **k != CONTENT_LENGTH && **k != TRANSFER_ENCODING) {
                answer = answer.header(k, v);
            }
            answer.body(axum::body::Body::from(body)).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Against a server without `POST /api/chunks` (its `GET /api/chunking`
/// lacks the batch limits), `depot put` sends a `PUT` per chunk, and the
/// file arrives whole.
#[tokio::test(flavor = "multi_thread")]
async fn put_sends_each_chunk_alone_to_a_server_without_batches() {
    let (dir, s) = TestServer::start_in_workdir(|_| {}).await;
    let path = dir.path().join("f.bin");
    let data = write_random(&path, 8 * MIB, 7);
    let old = proxy(s.base.clone(), Tweak::NoBatches).await;
    let report: serde_json::Value = run_json(&old, &["put", "--json", path.to_str().unwrap()]).await;
    let chunks = report["sent_chunks"].as_u64().unwrap();
    assert!(chunks > 8, "{report}");
    assert_eq!(requests(&s, "/api/chunks/{hash}", "PUT").await, chunks);
    assert_eq!(requests(&s, "/api/chunks", "POST").await, 0);
    let out = dir.path().join("f.out");
    ok(&run(&s.base, &["get", report["id"].as_str().unwrap(), "-o", out.to_str().unwrap()]).await);
    assert!(std::fs::read(&out).unwrap() == data);
    s.stop().await;
}

/// `depot put` sends its lists of hashes (the missing-chunks queries, the
/// commit's segments) in zstd where the server takes that: a re-upload,
/// which sends nothing else, crosses the wire in well under two thirds of
/// the bytes it takes against a server whose `GET /api/chunking` does not
/// offer `request_encodings`, and the file it makes is the file.
#[tokio::test(flavor = "multi_thread")]
async fn put_sends_its_hash_lists_in_zstd_where_the_server_takes_it() {
    let (dir, s) = TestServer::start_in_workdir(|c| c.chunking = common::small_chunks()).await;
    let path = dir.path().join("f.bin");
    let data = write_random(&path, 4 * MIB, 9);
    let (first, _) = put(&s, &path).await;
    let chunks = first["chunks"].as_u64().unwrap();
    assert!(chunks > 2048, "{first}: more than two segments of a commit in parts");

    let plain_server = proxy(s.base.clone(), Tweak::NoRequestEncodings).await;
    let before = s.bytes_in();
    let plain = run_json(&plain_server, &["put", "--json", path.to_str().unwrap()]).await;
    let plain_wire = s.bytes_in() - before;
    let (coded, coded_wire) = put(&s, &path).await;
    for r in [&plain, &coded] {
        assert_eq!((r["skipped_chunks"].as_u64(), r["sent_bytes"].as_u64()), (Some(chunks), Some(0)), "{r}");
    }
    // About 130 bytes of JSON per chunk plain (a hex hash in the query, a
    // hash and a length in the segment); hex packs into zstd at about half.
    assert!(plain_wire > 120 * chunks, "plain: {plain_wire} bytes for {chunks} chunks");
    assert!(coded_wire < plain_wire * 6 / 10, "zstd: {coded_wire} bytes against {plain_wire} plain");
    let out = dir.path().join("f.out");
    ok(&run(&s.base, &["get", coded["id"].as_str().unwrap(), "-o", out.to_str().unwrap()]).await);
    assert!(std::fs::read(&out).unwrap() == data);
    s.stop().await;
}

/// `depot put` asks which of the next chunks the server lacks while the
/// batches of the last ones are still on the wire: the requests in flight
/// do not drain between one query's chunks and the next's. The proxy holds
/// each batch's answer until a query later than its chunks' has arrived
/// (or a second passes); a put that waited for every batch before asking
/// again would see none. (The later query may reach the proxy before the
/// batch does: both are in flight at once, and the batch counts.)
#[tokio::test(flavor = "multi_thread")]
async fn put_asks_about_the_next_chunks_while_batches_are_in_flight() {
    let (dir, s) = TestServer::start_in_workdir(|c| c.chunking = common::small_chunks()).await;
    let path = dir.path().join("f.bin");
    // 1 KiB chunks on average: at most 256 per query, so several queries.
    let data = write_random(&path, 2 * MIB, 11);
    let held = Arc::new(Held::default());
    let via = proxy(s.base.clone(), Tweak::HoldBatches(held.clone())).await;
    let report: serde_json::Value = run_json(&via, &["put", "--json", path.to_str().unwrap()]).await;
    let (queries, batches, overlapped) = (
        held.queries.load(Ordering::SeqCst),
        held.batches.load(Ordering::SeqCst),
        held.overlapped.load(Ordering::SeqCst),
    );
    assert!(queries >= 4, "{queries} queries");
    assert_eq!(batches, requests(&s, "/api/chunks", "POST").await);
    // All but the last query's batches see the next query arrive.
    assert!(overlapped >= batches / 2, "{overlapped} of {batches} batches overlapped a later query");
    assert_eq!(report["sent_bytes"].as_u64(), Some(2 * MIB), "{report}");
    let out = dir.path().join("f.out");
    ok(&run(&s.base, &["get", report["id"].as_str().unwrap(), "-o", out.to_str().unwrap()]).await);
    assert!(std::fs::read(&out).unwrap() == data);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reupload_costs_almost_nothing_and_edits_send_only_changes() {
    let (dir, s) = TestServer::start_in_workdir(|_| {}).await;
    let path = dir.path().join("big.bin");
    let mut data = write_random(&path, 64 * MIB, 1);

    let (r1, wire1) = put(&s, &path).await;
    assert_eq!(r1["size"], 64 * MIB);
    assert!((64 * MIB..65 * MIB).contains(&wire1), "first put sent {wire1} bytes");
    assert_eq!(r1["skipped_chunks"], 0);
    // In batches (`POST /api/chunks`, at most 4 MiB and 64 KiB each), not a
    // request per chunk.
    let (batches, chunks) = (requests(&s, "/api/chunks", "POST").await, r1["sent_chunks"].as_u64().unwrap());
    assert!((16..=40).contains(&batches) && chunks > 4 * batches, "{chunks} chunks in {batches} batches");
    assert_eq!(requests(&s, "/api/chunks/{hash}", "PUT").await, 0);
    assert!(r1["id"].as_str().unwrap().len() == 26);

    let (r2, wire2) = put(&s, &path).await;
    assert!((wire2 as f64) < 0.005 * (64 * MIB) as f64, "second put sent {wire2} bytes");
    assert_eq!(r2["sent_bytes"], 0);
    assert_eq!(r2["skipped_chunks"], r2["chunks"]);

    // Insert 1 MiB at three offsets.
    for (i, at) in [5 * MIB + 12_345, 30 * MIB + 777, 50 * MIB + 4_242].into_iter().enumerate() {
        let insert = pseudo_random(MIB as usize, 100 + i as u64);
        data.splice(at as usize..at as usize, insert);
    }
    std::fs::write(&path, &data).unwrap();
    let (r3, wire3) = put(&s, &path).await;
    let limit = 3 * MIB + 6 * 1024 * 1024; // 3 MiB + 6 chunks of the maximum size
    assert!(wire3 < limit, "edited put sent {wire3} bytes");
    assert!(wire3 > 3 * MIB, "edited put sent only {wire3} bytes, less than the inserted data");
    assert_eq!(r3["size"], 67 * MIB);

    // The download of the edited file is the edited file.
    let out_path = dir.path().join("edited.out");
    ok(&run(&s.base, &["get", r3["id"].as_str().unwrap(), "-o", out_path.to_str().unwrap()]).await);
    assert!(std::fs::read(&out_path).unwrap() == data);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_put_sends_only_the_remainder() {
    let (dir, s) = TestServer::start_in_workdir(|_| {}).await;
    let path = dir.path().join("f.bin");
    let size = 64 * MIB;
    write_random(&path, size, 2);

    let mut child =
        depot(&s.base).args(["put", "--json", "-j", "2", path.to_str().unwrap()]).spawn().unwrap();
    let start = s.bytes_in();
    s.wait_for_bytes_in(start + size / 2, Duration::from_secs(60)).await;
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert!(!status.success(), "the put finished before it was killed");
    let stored = s.stats().await.unique_bytes;
    assert!(stored > 0 && stored < size, "stored {stored}");
    let remainder = size - stored;

    let (report, wire) = put(&s, &path).await;
    let allowance = 2 * MIB + 64 * 1024; // two chunks, and the JSON of the queries and the commit
    assert!(wire <= remainder + allowance, "re-run sent {wire} bytes for a remainder of {remainder}");
    assert!(report["skipped_chunks"].as_u64().unwrap() > 0);
    assert_eq!(s.stats().await.unique_bytes, size);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn content_uploaded_by_any_path_shares_chunks() {
    let (dir, s) = TestServer::start_in_workdir(|_| {}).await;
    let path = dir.path().join("shared.bin");
    let data = write_random(&path, 8 * MIB, 3);
    s.upload_raw("shared.bin", &data).await;
    let after_upload = s.stats().await;
    let (report, wire) = put(&s, &path).await;
    let after_put = s.stats().await;
    assert_eq!(after_put.unique_bytes, after_upload.unique_bytes, "depot put added no chunk");
    assert_eq!(after_put.unique_chunks, after_upload.unique_chunks);
    assert_eq!(after_put.files, 2);
    assert_eq!(report["sent_bytes"], 0);
    assert!(wire < 64 * 1024);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn get_verifies_resumes_and_fails_loudly_on_damage() {
    let (dir, s) = TestServer::start_in_workdir(|_| {}).await;
    let data_dir = dir.path().join("data");
    let path = dir.path().join("src.bin");
    let size = 256 * MIB;
    {
        let mut data = Vec::with_capacity(size as usize);
        fill_random(&mut data, size as usize, 4);
        std::fs::write(&path, &data).unwrap();
    }
    let id = ok(&run(&s.base, &["put", path.to_str().unwrap()]).await).trim().to_string();
    let expect = blake3::hash(&std::fs::read(&path).unwrap());

    let out_path = dir.path().join("out.bin");
    ok(&run(&s.base, &["get", &id, "-o", out_path.to_str().unwrap()]).await);
    assert_eq!(blake3::hash(&std::fs::read(&out_path).unwrap()), expect);
    std::fs::remove_file(&out_path).unwrap();

    // Interrupted, then resumed.
    let part = PathBuf::from(format!("{}.part", out_path.display()));
    let mut child = depot(&s.base).args(["get", &id, "-o", out_path.to_str().unwrap()]).spawn().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let len = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        if len > 64 * MIB {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the get never got going");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.start_kill().unwrap();
    assert!(!child.wait().await.unwrap().success(), "the get finished before it was killed");
    assert!(!out_path.exists());
    let report: serde_json::Value =
        run_json(&s.base, &["get", "--json", &id, "-o", out_path.to_str().unwrap()]).await;
    let resumed = report["resumed_from"].as_u64().unwrap();
    assert!(resumed > 0, "did not resume: {report}");
    assert_eq!(report["received_bytes"].as_u64().unwrap(), size - resumed);
    assert_eq!(blake3::hash(&std::fs::read(&out_path).unwrap()), expect);
    assert!(!part.exists());

    // Damage on the server, two ways.
    let manifest = s.manifest(&id).await;
    let victim = manifest.chunks[3];
    let good = stored::read_object(&data_dir, &victim.hash);

    // (1) Bit rot the server notices (CRC): the stream is cut.
    let mut rotten = good.clone();
    let last = rotten.len() - 1;
    rotten[last] ^= 1;
    stored::overwrite_object(&data_dir, &victim.hash, &rotten);
    let damaged = dir.path().join("damaged.bin");
    let out = run(&s.base, &["get", &id, "-o", damaged.to_str().unwrap()]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("depot: ") && err.trim().lines().count() == 1, "{err}");
    assert!(!damaged.exists());

    // (2) Wrong bytes with a consistent object: only the client's hash check
    // can see it.
    let other = pseudo_random(victim.len as usize, 99);
    stored::overwrite_object(&data_dir, &victim.hash, &object::encode(&victim.hash, &other, 0));
    let out = run(&s.base, &["get", &id, "-o", damaged.to_str().unwrap()]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not match its hash"), "{err}");
    assert!(!damaged.exists(), "no file is left under the final name");
    let part = PathBuf::from(format!("{}.part", damaged.display()));
    assert_eq!(std::fs::metadata(&part).unwrap().len(), victim.offset, "only verified chunks are kept");
    assert_ne!(ChunkId::of(&other), victim.hash);

    // Healed: the next get resumes from the verified prefix.
    stored::overwrite_object(&data_dir, &victim.hash, &good);
    ok(&run(&s.base, &["get", &id, "-o", damaged.to_str().unwrap()]).await);
    assert_eq!(blake3::hash(&std::fs::read(&damaged).unwrap()), expect);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ls_stat_rm_stats_and_stdin() {
    let (_dir, s) = TestServer::start_temp().await;
    let mut child = depot(&s.base)
        .args(["put", "-", "--name", "notes.txt"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello from stdin\n").await.unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    let id = ok(&out).trim().to_string();

    let ls = ok(&run(&s.base, &["ls", "--json"]).await);
    let files: Vec<FileInfo> = ls.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].id, id);
    assert_eq!(files[0].name, "notes.txt");
    assert_eq!(files[0].content_type, "text/plain");
    let stat: FileInfo = run_json(&s.base, &["stat", "--json", &id]).await;
    assert_eq!(stat.size, 17);
    assert_eq!(stat.deduplicated_bytes, Some(0));
    let text = ok(&run(&s.base, &["stat", &id]).await);
    assert!(text.contains("dedup saving  0 (0 B)"), "{text}");
    let st: StatsInfo = run_json(&s.base, &["stats", "--json"]).await;
    assert_eq!(st.files, 1);
    ok(&run(&s.base, &["rm", &id]).await);
    let out = run(&s.base, &["rm", &id]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
    let out = run(&s.base, &["get", "01ARZ3NDEKTSV4RRFFQ69G5FAV"]).await;
    assert!(!out.status.success());
    s.stop().await;
}

#[tokio::test]
async fn errors_are_one_line_and_a_failure_status() {
    let dir = tempfile::tempdir().unwrap();
    // A server that is not there.
    let out = Command::new(env!("CARGO_BIN_EXE_depot"))
        .args(["--server", "http://127.0.0.1:9", "ls"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("depot: cannot reach the server at http://127.0.0.1:9"), "{err}");
    assert_eq!(err.trim().lines().count(), 1);
    // A file that is not there.
    let out = Command::new(env!("CARGO_BIN_EXE_depot"))
        .args(["--server", "http://127.0.0.1:9", "put", dir.path().join("nope").to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim().lines().count(), 1);
    // A bad URL.
    let out =
        Command::new(env!("CARGO_BIN_EXE_depot")).args(["--server", "ftp://x", "ls"]).output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("http://"));
}

/// A peer that answers every request 401 as a token-mode server does, and
/// hands back the `Authorization` header of each request it got.
async fn refusing_peer() -> (String, tokio::sync::mpsc::UnboundedReceiver<Option<String>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && sock.read(&mut byte).await.unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let _ = tx.send(head.lines().find_map(|l| l.strip_prefix("authorization: ")).map(str::to_string));
            let body = r#"{"code":401,"error":"unauthorized","message":"a valid token is needed"}"#;
            let _ = sock
                .write_all(
                    format!(
                        "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer realm=\"depot\"\r\n\
                         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
        }
    });
    (base, rx)
}

#[tokio::test]
async fn the_token_comes_from_the_flag_the_env_or_the_default_file_and_a_401_is_exit_5() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".config/depot")).unwrap();
    let (base, mut sent) = refusing_peer().await;
    let depot = |env_token: Option<&str>| {
        let mut c = common::cli::depot(&base);
        c.env("HOME", &home).env_remove("XDG_CONFIG_HOME").env_remove("DEPOT_TOKEN");
        if let Some(t) = env_token {
            c.env("DEPOT_TOKEN", t);
        }
        c
    };
    let secret = "dpt_01JDX3E5C9R2T7VQ4M8N6P0WAB_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA";

    // No token anywhere: sent without one; the message says how to pass one.
    let out = depot(None).arg("ls").output().await.unwrap();
    assert_eq!(common::cli::code(&out), 5, "{}", common::cli::stderr(&out));
    let err = common::cli::stderr(&out);
    assert!(err.starts_with("depot: the server needs a token") && err.contains("DEPOT_TOKEN"), "{err}");
    assert_eq!(err.trim().lines().count(), 1);
    assert_eq!(sent.recv().await.unwrap(), None);

    // DEPOT_TOKEN: sent as a bearer token, never shown.
    let out = depot(Some(secret)).arg("ls").output().await.unwrap();
    assert_eq!(common::cli::code(&out), 5);
    let err = common::cli::stderr(&out);
    assert!(err.contains("refused the token from DEPOT_TOKEN"), "{err}");
    assert!(!err.contains("c2Vj"), "the secret is in the message: {err}");
    assert_eq!(
        sent.recv().await.unwrap().as_deref(),
        Some(format!("bearer {}", secret.to_lowercase()).as_str())
    );

    // The default file, private: used when DEPOT_TOKEN is unset; DEPOT_TOKEN
    // wins over it; --token-file wins over both.
    let default = home.join(".config/depot/token");
    let private = |p: &Path, text: &str| {
        std::fs::write(p, text).unwrap();
        #[cfg(unix)]
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    };
    private(&default, "dpt_DEFAULT_x\n");
    let flag = dir.path().join("flag-token");
    private(&flag, "dpt_FLAG_x\n");
    depot(None).arg("ls").output().await.unwrap();
    assert_eq!(sent.recv().await.unwrap().as_deref(), Some("bearer dpt_default_x"));
    depot(Some("dpt_ENV_x")).arg("ls").output().await.unwrap();
    assert_eq!(sent.recv().await.unwrap().as_deref(), Some("bearer dpt_env_x"));
    let out =
        depot(Some("dpt_ENV_x")).args(["--token-file", flag.to_str().unwrap(), "ls"]).output().await.unwrap();
    assert!(common::cli::stderr(&out).contains(&format!("refused the token from {}", flag.display())));
    assert_eq!(sent.recv().await.unwrap().as_deref(), Some("bearer dpt_flag_x"));

    // A token file others can read is refused before anything is sent.
    #[cfg(unix)]
    {
        std::fs::set_permissions(&default, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        let out = depot(None).arg("ls").output().await.unwrap();
        assert_eq!(common::cli::code(&out), 3);
        let err = common::cli::stderr(&out);
        assert!(err.contains("mode 0644") && err.contains("chmod 600"), "{err}");
        assert!(sent.try_recv().is_err(), "a request was sent");
    }
}

/// The CLI and the client library against the real server in `token` mode:
/// admin calls make tokens, the CLI carries one, scopes and revocation hold,
/// a signed link works without a token until its token is revoked.
#[tokio::test(flavor = "multi_thread")]
async fn against_a_token_mode_server_the_cli_carries_its_token() {
    use depot::client::{self, Client, Token, TokenSource};
    use depot::wire::TokenRequest;

    let (dir, s) = TestServer::start_in_workdir(|cfg| cfg.auth.mode = depot::config::AuthMode::Token).await;
    let store = s.state.store.clone();
    let admin_token = tokio::task::spawn_blocking(move || {
        store.issue_token(depot::store::Tenant::default(), depot::store::Scopes::all(), None, None).unwrap().1
    })
    .await
    .unwrap();
    let as_token =
        |t: &str| Client::with_token(&s.base, Some(Token::parse(t, TokenSource::Given).unwrap())).unwrap();
    let admin = as_token(&admin_token);
    let make = |scopes: &[&str]| TokenRequest {
        tenant: "cli".into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        expires_in: Some(client::expires_in("1d")),
        name: Some("cli test".into()),
    };
    let writer = client::create_token(&admin, &make(&["read", "write", "delete"])).await.unwrap();
    let reader = client::create_token(&admin, &make(&["read"])).await.unwrap();
    let (writer_secret, reader_secret) = (writer.token.clone().unwrap(), reader.token.clone().unwrap());
    let listed = client::list_tokens(&admin).await.unwrap();
    assert!(listed.tokens.iter().any(|t| t.id == writer.id && t.token.is_none()), "no secrets in the list");

    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let depot = |token: Option<&str>| {
        let mut c = common::cli::depot(&s.base);
        c.env("HOME", &home).env_remove("XDG_CONFIG_HOME").env_remove("DEPOT_TOKEN");
        if let Some(t) = token {
            c.env("DEPOT_TOKEN", t);
        }
        c
    };
    let path = dir.path().join("t.bin");
    let data = write_random(&path, 3 * MIB, 40);

    // No token: refused, exit 5, and the message says how to pass one.
    let out = depot(None).args(["put", path.to_str().unwrap()]).output().await.unwrap();
    assert_eq!(common::cli::code(&out), 5, "{}", common::cli::stderr(&out));
    assert!(common::cli::stderr(&out).contains("needs a token"));

    // With the tenant's token: put, ls, get.
    let id = ok(&depot(Some(&writer_secret)).args(["put", path.to_str().unwrap()]).output().await.unwrap())
        .trim()
        .to_string();
    assert!(ok(&depot(Some(&writer_secret)).arg("ls").output().await.unwrap()).contains(&id));
    let got = dir.path().join("t.out");
    ok(&depot(Some(&writer_secret)).args(["get", &id, "-o", got.to_str().unwrap()]).output().await.unwrap());
    assert!(std::fs::read(&got).unwrap() == data);

    // A read-only token may not delete: 403, exit 5, naming the scope.
    let out = depot(Some(&reader_secret)).args(["rm", &id]).output().await.unwrap();
    assert_eq!(common::cli::code(&out), 5);
    let err = common::cli::stderr(&out);
    assert!(err.contains("403") && err.contains("delete"), "{err}");

    // A signed link works without a token, until its token is revoked.
    let reader_client = as_token(&reader_secret);
    let link = client::create_link(&reader_client, &id, Some(600)).await.unwrap();
    let anonymous = reqwest::Client::new();
    let r = anonymous.get(reader_client.url(&link.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap() == data);
    client::revoke_token(&admin, &reader.id).await.unwrap();
    assert_eq!(anonymous.get(reader_client.url(&link.url)).send().await.unwrap().status(), 403);
    let out = depot(Some(&reader_secret)).arg("ls").output().await.unwrap();
    assert_eq!(common::cli::code(&out), 5);
    assert!(common::cli::stderr(&out).contains("refused the token from DEPOT_TOKEN"));

    // The tenant token deletes; a revoke of an unknown id is a 404.
    ok(&depot(Some(&writer_secret)).args(["rm", &id]).output().await.unwrap());
    let e = client::revoke_token(&admin, "01JDX3E5C9R2T7VQ4M8N6P0WAB").await.unwrap_err();
    assert!(matches!(e, depot::client::ClientError::Api { status: 404, .. }), "{e:?}");
    s.stop().await;
}

/// `depot put` sends a chunk zstd-compressed when that pays and raw when it
/// does not: text crosses the wire at a fraction of its size, random bytes
/// at their size; both come back exact.
#[tokio::test(flavor = "multi_thread")]
async fn put_compresses_on_the_wire_only_what_compresses() {
    let (dir, s) = TestServer::start_in_workdir(|_| {}).await;
    let text: Vec<u8> =
        (0..200_000).flat_map(|i| format!("line {i}: the same words once more\n").into_bytes()).collect();
    let text_path = dir.path().join("log.txt");
    std::fs::write(&text_path, &text).unwrap();
    let (r, wire) = put(&s, &text_path).await;
    let sent = r["sent_bytes"].as_u64().unwrap();
    assert!(sent * 4 < text.len() as u64, "{sent} bytes sent for {} bytes of text", text.len());
    assert!(wire < text.len() as u64 / 4, "{wire} request bytes for {} bytes of text", text.len());
    assert_eq!(s.download(r["id"].as_str().unwrap()).await, text);

    let random_path = dir.path().join("noise.bin");
    let random = write_random(&random_path, 8 * MIB, 9);
    let (r, _) = put(&s, &random_path).await;
    assert_eq!(r["sent_bytes"], 8 * MIB, "random chunks go raw");
    assert_eq!(s.download(r["id"].as_str().unwrap()).await, random);
}

/// `depot get ID -o -` writes the file's bytes to standard output (a pipe
/// here), verified, exactly: binary data full of newlines, written through
/// a duplicate of descriptor 1 (the frames' sizes, which decide what is
/// gathered, are the socket's; the sink's own test covers both kinds).
#[tokio::test(flavor = "multi_thread")]
async fn get_to_standard_output_is_the_files_bytes() {
    let (_dir, s) = TestServer::start_temp().await;
    let mut data = pseudo_random((3 * MIB) as usize + 12_345, 21);
    data[..4096].fill(b'\n');
    let f = s.upload_raw("out.bin", &data).await;
    let out = run(&s.base, &["get", &f.id, "-o", "-"]).await;
    assert!(out.status.success(), "{}", common::cli::stderr(&out));
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "the bytes on standard output differ from the file's");
    s.stop().await;
}
