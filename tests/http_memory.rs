//! The real `depot` binary in its own process: a 1 GiB upload and download
//! while its resident memory is sampled. Memory must not grow with the file.

mod common;

use std::time::Duration;

use common::cli::Served;
use common::http::{RawResponse, put_zstd, read_response, streamed_zstd};
use depot::testdata::pseudo_random;
use futures_util::StreamExt;

/// The body budget [`start_with_budget`] gives the server.
const BUDGET: u64 = 32 << 20;

/// The size of each of the bodies sent at once against [`BUDGET`].
const BODY: usize = 8 << 20;

/// The real binary in its own process (no fsync, rate limits or GC) over a
/// fresh temporary directory, logging warnings only, with `env` on top:
/// the directory's guard, the server, its pid and its base URL.
async fn start(env: &[(&str, &str)]) -> (tempfile::TempDir, Served, u32, String) {
    let dir = tempfile::tempdir().unwrap();
    let env = [&[("DEPOT_LOG", "warn")], env].concat();
    let server = Served::start(&dir.path().join("data"), &["--listen", "127.0.0.1:0"], &env).await;
    let (pid, base) = (server.child.id().unwrap(), server.base.clone());
    (dir, server, pid, base)
}

/// [`start`] with a body budget of [`BUDGET`].
async fn start_with_budget() -> (tempfile::TempDir, Served, u32, String) {
    start(&[("DEPOT_MAX_BUFFERED", "32MiB")]).await
}

fn rss_of(pid: u32) -> u64 {
    // An unreadable figure fails the test rather than reading as 0 bytes.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("a VmRSS line");
    assert!(kib > 0, "VmRSS of {pid} reads 0");
    kib * 1024
}

/// The minor page faults `pid` has taken so far (`minflt`, the tenth field
/// of /proc/PID/stat; the name before it is in parentheses and may hold
/// spaces).
fn minor_faults(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    let after_name = &stat[stat.rfind(')').expect("a (name) field") + 2..];
    after_name.split_whitespace().nth(7).and_then(|v| v.parse().ok()).expect("a minflt field")
}

/// Samples a process's RSS until told to stop; returns the peak.
fn sampler(pid: u32) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<u64>) {
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    let h = tokio::spawn(async move {
        let mut peak = 0;
        loop {
            peak = peak.max(rss_of(pid));
            tokio::select! {
                _ = &mut rx => return peak,
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    });
    (tx, h)
}

/// Prints how much the server grew in `what`, and checks it is under `bound`.
fn assert_grew_less(growth: u64, bound: u64, what: &str) {
    eprintln!("{what}: server RSS grew {} MiB", growth >> 20);
    assert!(growth < bound, "{what}: server RSS grew {} MiB", growth >> 20);
}

/// Runs `tasks` all at once while sampling `pid`'s RSS: their results, in
/// order, and how far the RSS rose above where it stood before them.
async fn all_at_once<T: Send + 'static>(
    pid: u32,
    tasks: Vec<impl std::future::Future<Output = T> + Send + 'static>,
) -> (Vec<T>, u64) {
    let baseline = rss_of(pid);
    let (stop, peak) = sampler(pid);
    let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.unwrap());
    }
    let _ = stop.send(());
    (results, peak.await.unwrap().saturating_sub(baseline))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_download_keeps_server_memory_flat() {
    const SIZE: u64 = 1 << 30;
    const BOUND: u64 = 64 << 20;
    let (_dir, server, pid, base) = start(&[]).await;
    let client = reqwest::Client::new();

    // Upload 1 GiB generated on the fly (64 distinct MiB, repeated: the
    // download still streams 1 GiB through the chunk reader).
    let pieces: Vec<Vec<u8>> = (0..64).map(|i| pseudo_random(1 << 20, i)).collect();
    let expected = {
        let mut h = blake3::Hasher::new();
        for i in 0..(SIZE >> 20) as usize {
            h.update(&pieces[i % 64]);
        }
        h.finalize()
    };
    let body = futures_util::stream::iter((0..(SIZE >> 20) as usize).map({
        let pieces = pieces.clone();
        move |i| Ok::<_, std::io::Error>(pieces[i % 64].clone())
    }));
    let (stop, peak_up) = sampler(pid);
    let baseline = rss_of(pid);
    let faults_before_up = minor_faults(pid);
    let r = client
        .post(format!("{base}/api/files/upload?filename=big.bin"))
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let _ = stop.send(());
    let peak_up = peak_up.await.unwrap();
    let file: serde_json::Value = r.json().await.unwrap();
    let id = file["id"].as_str().unwrap().to_string();
    assert_eq!(file["size"], SIZE);

    let faults_up = minor_faults(pid) - faults_before_up;
    let before = rss_of(pid);
    let faults_before_down = minor_faults(pid);
    let (stop, peak_down) = sampler(pid);
    let r = client.get(format!("{base}/api/files/{id}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut h = blake3::Hasher::new();
    let mut n = 0u64;
    let mut s = r.bytes_stream();
    while let Some(b) = s.next().await {
        let b = b.unwrap();
        n += b.len() as u64;
        h.update(&b);
    }
    let _ = stop.send(());
    let peak_down = peak_down.await.unwrap();
    let faults_down = minor_faults(pid) - faults_before_down;
    assert_eq!(n, SIZE);
    assert_eq!(h.finalize(), expected);
    eprintln!(
        "server RSS: {} MiB at start, peak {} MiB uploading 1 GiB; {} MiB before download, peak {} MiB downloading",
        baseline >> 20,
        peak_up >> 20,
        before >> 20,
        peak_down >> 20
    );
    // Chunk-sized buffers are reused, not mapped afresh and faulted in page
    // by page for every chunk (with the server's pinned mmap threshold, that
    // was two 4 KiB faults per byte page of the file: ~524,000 per GiB).
    eprintln!("server minor page faults: {faults_up} uploading 1 GiB, {faults_down} downloading it");
    const FAULTS: u64 = SIZE / 4096 / 16;
    assert!(faults_up < FAULTS, "{faults_up} page faults uploading 1 GiB");
    assert!(faults_down < FAULTS, "{faults_down} page faults downloading 1 GiB");
    assert!(peak_up < baseline + BOUND, "upload grew the server by {} MiB", (peak_up - baseline) >> 20);
    assert!(peak_down < before + BOUND, "download grew the server by {} MiB", (peak_down - before) >> 20);
    assert_eq!(server.stop().await, Some(0), "SIGTERM is a clean stop");
}

/// Streamed uploads draw from the same body budget as chunk and piece
/// bodies: 72 regular uploads and 24 tus appends of 8 MiB at once, against
/// a 32 MiB budget, keep the server's growth within the budget plus a fixed
/// overhead (measured: 83-86 MiB before chunk buffers were reused, 59 MiB
/// after; with no budget, 475 MiB), and every file
/// arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streamed_uploads_stay_within_the_body_budget() {
    const OVERHEAD: u64 = 80 << 20;
    let (_dir, server, pid, base) = start_with_budget().await;
    let client = reqwest::Client::new();
    let bodies: Vec<bytes::Bytes> = (0..96).map(|i| pseudo_random(BODY, 100 + i).into()).collect();

    let mut tasks = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let (client, base, body) = (client.clone(), base.clone(), body.clone());
        tasks.push(async move {
            if i < 72 {
                let url = format!("{base}/api/files/upload?filename=f{i}.bin");
                let r = client.post(url).body(body).send().await.unwrap();
                assert_eq!(r.status(), 201, "regular upload {i}");
                r.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string()
            } else {
                let r = client
                    .post(format!("{base}/api/tus/"))
                    .header("Tus-Resumable", "1.0.0")
                    .header("Upload-Length", BODY.to_string())
                    .header("Upload-Metadata", format!("filename {}", b64(&format!("t{i}.bin"))))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201, "tus creation {i}");
                let url = r.headers()["location"].to_str().unwrap().to_string();
                let r = client
                    .patch(url)
                    .header("Tus-Resumable", "1.0.0")
                    .header("Upload-Offset", "0")
                    .header("Content-Type", "application/offset+octet-stream")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 204, "tus append {i}");
                String::new()
            }
        });
    }
    let (ids, growth) = all_at_once(pid, tasks).await;
    assert_grew_less(growth, BUDGET + OVERHEAD, "96 concurrent 8 MiB uploads, 32 MiB budget");
    // Every regular upload arrived whole.
    for (i, id) in ids.iter().enumerate().filter(|(_, id)| !id.is_empty()) {
        let got = client.get(format!("{base}/api/files/{id}")).send().await.unwrap().bytes().await.unwrap();
        assert!(got == bodies[i], "file {i} differs");
    }
    let list: serde_json::Value =
        client.get(format!("{base}/api/files?limit=200")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["files"].as_array().unwrap().len(), 96, "72 regular + 24 tus files");
    assert_eq!(server.stop().await, Some(0), "SIGTERM is a clean stop");
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Sends `head` and then `body` (1 MiB writes, until the server stops
/// reading), reading the answer meanwhile.
async fn refused(
    base: &str,
    head: String,
    body: impl Iterator<Item = Vec<u8>> + Send + 'static,
) -> RawResponse {
    use tokio::io::AsyncWriteExt;
    let c = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    let (mut rd, mut wr) = c.into_split();
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        for part in body {
            wr.write_all(&part).await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(20), read_response(&mut rd, &mut buf))
        .await
        .expect("an answer within 20 s")
        .expect("an answer");
    writer.abort();
    r
}

/// A 200 MiB JSON body, with `Content-Length` and chunked: refused with 413
/// and the JSON error, the first before a byte of it is read, the second
/// once it passes `limits.max_json_body` (16 MiB); the server grows by less
/// than 64 MiB and answers `/healthz` after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_json_body_is_refused_with_bounded_memory() {
    const HUGE: u64 = 200 << 20;
    const BOUND: u64 = 64 << 20;
    let (_dir, server, pid, base) = start(&[]).await;
    let baseline = rss_of(pid);
    let (stop, peak) = sampler(pid);
    let host = base.trim_start_matches("http://");
    let mib = || std::iter::repeat_n(vec![b' '; 1 << 20], (HUGE >> 20) as usize);

    let head = format!(
        "POST /api/files HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {HUGE}\r\n\r\n"
    );
    let r = refused(&base, head, std::iter::once(b"{\"name\": \"".to_vec()).chain(mib())).await;
    assert_eq!(r.status, 413, "{}", r.head);
    let e: depot::wire::ErrorBody = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(e.error, "too_large");

    let head = format!(
        "POST /api/chunks/missing HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    let chunked = mib().map(|m| {
        let mut c = format!("{:x}\r\n", m.len()).into_bytes();
        c.extend_from_slice(&m);
        c.extend_from_slice(b"\r\n");
        c
    });
    let r = refused(&base, head, chunked).await;
    assert_eq!(r.status, 413, "{}", r.head);
    let e: depot::wire::ErrorBody = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(e.error, "too_large");

    let _ = stop.send(());
    let growth = peak.await.unwrap().saturating_sub(baseline);
    assert_grew_less(growth, BOUND, "200 MiB JSON bodies, with and without Content-Length");
    let r = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(server.stop().await, Some(0), "SIGTERM is a clean stop");
}

/// JSON bodies draw from the body budget: 32 concurrent 8 MiB queries
/// against a 32 MiB budget are read a few at a time, so the server grows by
/// the budget plus a fixed overhead, not by 32 bodies; all are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_json_bodies_stay_within_the_body_budget() {
    const OVERHEAD: u64 = 48 << 20;
    let (_dir, server, pid, base) = start_with_budget().await;
    let client = reqwest::Client::new();
    let body = bytes::Bytes::from(common::http::padded_json(BODY));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (client, base, body) = (client.clone(), base.clone(), body.clone());
        tasks.push(async move {
            let r = client
                .post(format!("{base}/api/chunks/missing"))
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<depot::wire::MissingResponse>().await.unwrap().missing.len()
        });
    }
    let (missing, growth) = all_at_once(pid, tasks).await;
    assert!(missing.iter().all(|&n| n == 0), "{missing:?}");
    assert_grew_less(growth, BUDGET + OVERHEAD, "32 concurrent 8 MiB JSON bodies, 32 MiB budget");
    assert_eq!(server.stop().await, Some(0), "SIGTERM is a clean stop");
}

/// Compressed chunk PUTs that ask for much memory: 32 at once declaring a
/// 128 MiB window, and 8 at once of a 4 KiB-ish frame that decodes to 1 GiB
/// of zeros without declaring it. Each is refused with a 4xx while the
/// server grows by less than 64 MiB, and it answers after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_zstd_frames_are_refused_in_bounded_memory() {
    let (_dir, server, pid, base) = start(&[]).await;
    let client = reqwest::Client::new();
    // A frame whose header asks for a 2^27-byte window.
    let data = pseudo_random(200_000, 1);
    let wide = bytes::Bytes::from(streamed_zstd(3, 27, true, &[&data]));
    let wide_id = depot::store::ChunkId::of(&data);
    // 1 GiB of zeros, no declared size.
    let zeros = vec![0u8; 64 << 20];
    let bomb = bytes::Bytes::from(streamed_zstd(19, 22, false, &[&zeros[..]; 16]));
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    let bomb_id = depot::store::ChunkId::of(b"anything");

    let mut tasks = Vec::new();
    for i in 0..40 {
        let (client, base) = (client.clone(), base.clone());
        let (id, frame) = if i < 32 { (wide_id, wide.clone()) } else { (bomb_id, bomb.clone()) };
        tasks.push(async move { put_zstd(&client, &base, &id, frame).await });
    }
    let (statuses, growth) = all_at_once(pid, tasks).await;
    for st in statuses {
        assert!(st.is_client_error(), "{st}");
    }
    assert_grew_less(growth, 64 << 20, "40 hostile zstd frames");
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let stats: serde_json::Value =
        client.get(format!("{base}/api/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["unique_chunks"], 0, "nothing stored");
    assert_eq!(server.stop().await, Some(0));
}
