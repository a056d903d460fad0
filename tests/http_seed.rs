//! The seed's API against the real server: ephemeral port, temp dir, real
//! RocksDB, driven with reqwest.

mod common;

use std::time::Duration;

use common::http::{Params, fed_body, piece, piece_form, piece_params, prefixed, with};
use common::{ORIGIN, TestServer, client, metric, test_config};
use depot::config::{ByteSize, Dur};
use depot::store::ChunkId;
use depot::testdata::pseudo_random;
use depot::wire::{ErrorBody, FileInfo, PieceStatus};
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};

/// A file of pseudo-random bytes sent as pieces of `size` bytes (the last
/// one shorter): each piece's parameters and request, as a client makes them.
struct Pieces {
    data: Vec<u8>,
    size: usize,
    id: &'static str,
    name: &'static str,
}

impl Pieces {
    fn new(len: usize, size: usize, seed: u64, id: &'static str, name: &'static str) -> Pieces {
        Pieces { data: pseudo_random(len, seed), size, id, name }
    }

    fn total(&self) -> u32 {
        self.data.len().div_ceil(self.size) as u32
    }

    /// Piece `n` (from 1): plain parameter names.
    fn params(&self, n: u32) -> Params {
        piece_params(n, self.total(), self.size, self.data.len(), self.id, self.name)
    }

    /// The request of piece `n`: its parameters and bytes.
    fn form(&self, n: u32) -> Form {
        let start = (n as usize - 1) * self.size;
        piece_form(&self.params(n), Some(&self.data[start..(start + self.size).min(self.data.len())]))
    }
}

#[tokio::test]
async fn chunked_upload_out_of_order_completes_on_the_last_piece() {
    let (_dir, s) = TestServer::start_temp().await;
    let up = Pieces::new(250_000, 100_000, 1, "up-1", "data.bin");
    for n in [2, 1] {
        let r = s.post_piece(up.form(n)).await;
        assert_eq!(r.status(), StatusCode::OK);
        let st: PieceStatus = r.json().await.unwrap();
        assert_eq!(st.status, "partial");
        assert_eq!(st.total, 3);
    }
    // A retry of a piece is idempotent.
    let r = s.post_piece(up.form(1)).await;
    assert_eq!(r.json::<PieceStatus>().await.unwrap().received, 2);
    let r = s.post_piece(up.form(3)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let st: PieceStatus = r.json().await.unwrap();
    assert_eq!(st.status, "complete");
    assert_eq!((st.received, st.total), (3, 3));
    let file = st.file.unwrap();
    assert_eq!(file.size, 250_000);
    assert_eq!(file.name, "data.bin");
    assert_eq!(s.download(&file.id).await, up.data);
    // A late retry of the last piece answers 200 with the same file.
    let r = s.post_piece(up.form(3)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<PieceStatus>().await.unwrap().file.unwrap().id, file.id);
    assert_eq!(s.stats().await.files, 1);
    s.stop().await;
}

#[tokio::test]
async fn racing_last_pieces_finish_the_file_once() {
    let (_dir, s) = TestServer::start_temp().await;
    let up = Pieces::new(40_000, 10_000, 2, "race", "race.bin");
    let mut tasks = Vec::new();
    // Every piece twice, all at once.
    for n in (1..=4).chain(1..=4) {
        let send = client().post(s.url("/api/files/upload/chunked")).multipart(up.form(n)).send();
        tasks.push(tokio::spawn(async move {
            let r = send.await.unwrap();
            (r.status(), r.json::<PieceStatus>().await.unwrap())
        }));
    }
    let mut files = std::collections::HashSet::new();
    let mut created = 0;
    for t in tasks {
        let (status, st) = t.await.unwrap();
        if status == StatusCode::CREATED {
            created += 1;
        }
        if let Some(f) = st.file {
            files.insert(f.id);
        }
    }
    assert_eq!(created, 1, "exactly one request creates the file");
    assert_eq!(files.len(), 1);
    assert_eq!(s.stats().await.files, 1);
    s.stop().await;
}

#[tokio::test]
async fn test_answers_present_for_sent_pieces_and_for_known_hashes() {
    let (_dir, s) = TestServer::start_temp().await;
    let data = pseudo_random(20_000, 3);
    // resumable.js's names, with the piece's hash when given.
    let q = |n: u32, id: &str, hash: Option<&[u8]>| {
        let p = piece_params(n, 2, 10000, 20000, id, "t.bin");
        let p = match hash {
            Some(h) => with(p, "chunkHash", &ChunkId::of(h).to_string()),
            None => p,
        };
        prefixed("resumable", &p)
    };
    assert_eq!(s.test_piece(&q(1, "a", None)).await, StatusCode::NO_CONTENT);
    let r = s.post_piece(piece_form(&q(1, "a", None), Some(&data[..10_000]))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(s.test_piece(&q(1, "a", None)).await, StatusCode::OK, "sent before: present");
    assert_eq!(s.test_piece(&q(2, "a", None)).await, StatusCode::NO_CONTENT);

    // Another upload (another identifier) of the same content: its first
    // piece is present by hash, without sending it.
    assert_eq!(s.test_piece(&q(1, "b", Some(&data[..10_000]))).await, StatusCode::OK);
    assert_eq!(s.test_piece(&q(2, "b", Some(&data[10_000..]))).await, StatusCode::NO_CONTENT);
    let before = s.stats().await;
    let r = s.post_piece(piece_form(&q(2, "b", None), Some(&data[10_000..]))).await;
    assert_eq!(r.status(), StatusCode::CREATED, "the hash-present piece counted as received");
    let f = r.json::<PieceStatus>().await.unwrap().file.unwrap();
    assert_eq!(s.download(&f.id).await, data);
    let after = s.stats().await;
    assert_eq!(after.unique_chunks, before.unique_chunks + 1);
    s.stop().await;
}

#[tokio::test]
async fn chunked_upload_resumes_after_a_server_restart() {
    let (_dir, s) = TestServer::start_temp().await;
    let up = Pieces::new(30_000, 10_000, 4, "restart", "r.bin");
    for n in [1, 2] {
        assert_eq!(s.post_piece(up.form(n)).await.status(), StatusCode::OK);
    }
    let s = s.restart().await;
    for (n, want) in [(1, StatusCode::OK), (2, StatusCode::OK), (3, StatusCode::NO_CONTENT)] {
        assert_eq!(s.test_piece(&up.params(n)).await, want, "piece {n}");
    }
    let r = s.post_piece(up.form(3)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let f = r.json::<PieceStatus>().await.unwrap().file.unwrap();
    assert_eq!(s.download(&f.id).await, up.data);
    s.stop().await;
}

#[tokio::test]
async fn ranges_conditionals_and_headers() {
    let (_dir, s) = TestServer::start_temp().await;
    let data = pseudo_random(3_000_000, 5);
    let f = s.upload_form("Grüße \"draft\".bin", &data).await;
    let path = format!("/api/files/{}", f.id);

    let r = s.get(&path).await;
    let h = r.headers().clone();
    assert_eq!(h["content-length"], "3000000");
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let etag = h["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, format!("\"{}\"", f.etag));
    assert_eq!(
        h["content-disposition"],
        "attachment; filename=\"Gr__e _draft_.bin\"; filename*=UTF-8''Gr%C3%BC%C3%9Fe%20%22draft%22.bin"
    );
    assert_eq!(r.bytes().await.unwrap(), data);

    let r = s.get_with(&path, &[("Range", "bytes=1000-1999999")]).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 1000-1999999/3000000");
    assert_eq!(r.bytes().await.unwrap(), data[1000..2_000_000]);

    let r = s.get_with(&path, &[("Range", "bytes=-10")]).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap(), data[data.len() - 10..]);

    let r = s.get_with(&path, &[("Range", "bytes=3000000-")]).await;
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()["content-range"], "bytes */3000000");
    let e: ErrorBody = r.json().await.unwrap();
    assert_eq!(e.code, 416);

    let r = s.get_with(&path, &[("If-None-Match", &etag)]).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert!(r.bytes().await.unwrap().is_empty());

    // If-Range with another ETag: the whole file.
    let r = s.get_with(&path, &[("Range", "bytes=0-9"), ("If-Range", "\"other\"")]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().len(), 3_000_000);
    let r = s.get_with(&path, &[("Range", "bytes=0-9"), ("If-Range", &etag)]).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);

    let r = s.send(Method::HEAD, &path, &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], "3000000");

    let r = s.get("/api/files/01ARZ3NDEKTSV4RRFFQ69G5FAV").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<ErrorBody>().await.unwrap().error, "not_found");
    s.stop().await;
}

#[tokio::test]
async fn list_pages_newest_first() {
    let (_dir, s) = TestServer::start_temp().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(s.upload_form(&format!("f{i}.txt"), format!("contents {i}").as_bytes()).await.id);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "2")];
        if let Some(c) = &cursor {
            query.push(("cursor", c));
        }
        let page = s.list_files(&query).await;
        assert!(page.files.len() <= 2);
        seen.extend(page.files.into_iter().map(|f| f.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    for bad in ["/api/files?limit=0", "/api/files?cursor=nope"] {
        assert_eq!(s.get(bad).await.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    s.stop().await;
}

#[tokio::test]
async fn delete_then_gc_frees_the_space() {
    let (dir, s) = TestServer::start_temp_with(|c| {
        c.gc.interval = Dur(Duration::from_millis(200));
        (c.gc.grace, c.gc.chunk_lease) = (Dur(Duration::ZERO), Dur(Duration::ZERO));
    })
    .await;
    let keep = s.upload_form("keep.bin", &pseudo_random(1_000_000, 6)).await;
    let gone = s.upload_form("gone.bin", &pseudo_random(2_000_000, 7)).await;
    let before = s.stats().await;
    assert_eq!(before.unique_bytes, 3_000_000);
    let r = s.delete(&gone.id).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = s.delete(&gone.id).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(s.get(&format!("/api/files/{}", gone.id)).await.status(), StatusCode::NOT_FOUND);
    let mut after = s.stats().await;
    for _ in 0..100 {
        if after.unique_bytes == 1_000_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = s.stats().await;
    }
    assert_eq!(after.unique_bytes, 1_000_000, "the background GC freed the deleted file's chunks");
    assert_eq!(after.files, 1);
    // Loose objects go with their chunks; a pack mostly dead is compacted
    // and deleted by a later round (its grace period is zero here).
    let objects_dir = dir.path().join("objects");
    let mut on_disk: u64 = walk(&objects_dir);
    for _ in 0..100 {
        if on_disk < 1_100_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        on_disk = walk(&objects_dir);
    }
    assert!(on_disk < 1_100_000, "{on_disk} bytes still on disk");
    assert_eq!(s.download(&keep.id).await.len(), 1_000_000);
    s.stop().await;
}

fn walk(p: &std::path::Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            if e.file_name() != "quarantine" {
                n += walk(&e.path());
            }
        } else {
            n += e.metadata().unwrap().len();
        }
    }
    n
}

const ELF: &[u8] = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0\x01\0\0\0\x00\x10\x40\0\0\0\0\0";

#[tokio::test]
async fn spoofed_types_are_refused_with_415() {
    let (_dir, s) = TestServer::start_temp().await;
    let mut exe = ELF.to_vec();
    exe.extend(pseudo_random(5000, 8));
    let form = Form::new().part("file", Part::bytes(exe.clone()).file_name("cat.png"));
    let r = client().post(s.url("/api/files/upload")).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let e: ErrorBody = r.json().await.unwrap();
    assert_eq!(e.error, "type_rejected");
    // The same through the chunked protocol.
    let r = s.post_piece(piece(1, 1, 10_000, exe.len() as u64, "spoof", "cat.png", &exe)).await;
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(s.stats().await.files, 0);
    // Honest names pass.
    let f = s.upload_form("tool.bin", &exe).await;
    assert_eq!(f.content_type, "application/x-executable");
    s.stop().await;
}

#[tokio::test]
async fn allow_lists_from_config_apply() {
    let (_dir, s) = TestServer::start_temp_with(|c| c.types.allowed_extensions = vec!["txt".into()]).await;
    s.upload_form("ok.txt", b"fine").await;
    let form = Form::new().part("file", Part::bytes(b"data".to_vec()).file_name("no.csv"));
    let r = client().post(s.url("/api/files/upload")).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    s.stop().await;
}

#[tokio::test]
async fn size_limits_answer_413() {
    let (_dir, s) = TestServer::start_temp_with(|c| c.limits.max_file_size = ByteSize(100_000)).await;
    // Declared by Content-Length.
    let r = client()
        .post(s.url("/api/files/upload?filename=big.bin"))
        .body(vec![0u8; 200_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Streamed without a length: caught while streaming.
    let stream = futures_util::stream::iter((0..40).map(|_| Ok::<_, std::io::Error>(vec![1u8; 10_000])));
    let r = client()
        .post(s.url("/api/files/upload?filename=big.bin"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Declared in a chunked upload's parameters.
    let declared = piece_params(1, 3, 100000, 300000, "x", "x.bin");
    assert_eq!(s.test_piece(&declared).await, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(s.stats().await.files, 0);
    // Raw bodies work under the limit.
    let r = client().post(s.url("/api/files/upload?filename=small.txt")).body("hello").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    s.stop().await;
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let (_dir, s) = TestServer::start_temp_with(|c| {
        (c.rate_limit.enabled, c.rate_limit.api_per_second, c.rate_limit.api_burst) = (true, 1, 3);
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = s.get("/api/files").await;
        statuses.push(r.status());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
            let e: ErrorBody = r.json().await.unwrap();
            assert_eq!(e.error, "rate_limited");
        }
    }
    assert_eq!(&statuses[..3], &[StatusCode::OK; 3]);
    assert!(statuses[3..].contains(&StatusCode::TOO_MANY_REQUESTS));
    // Upload traffic has its own budget.
    assert_eq!(s.test_piece(&piece_params(1, 1, 5, 5, "i", "f.txt")).await, StatusCode::NO_CONTENT);
    // Health checks are never limited.
    assert_eq!(s.get("/healthz").await.status(), StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn cors_preflight_allows_the_libraries() {
    // Any origin: `open` mode (`local` answers loopback origins only).
    let (_dir, s) = TestServer::start_temp_with(|c| c.auth.mode = depot::config::AuthMode::Open).await;
    let r = s.preflight("/api/files/upload/chunked", "POST", "content-type,x-requested-with").await;
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    assert!(h["access-control-allow-methods"].to_str().unwrap().contains("POST"));
    assert!(h["access-control-allow-headers"].to_str().unwrap().to_lowercase().contains("x-requested-with"));
    let r = s.get_with("/api/files", &[("Origin", ORIGIN)]).await;
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(
        r.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .to_lowercase()
            .contains("content-disposition")
    );
    s.stop().await;
}

/// The CORS headers of an answer are the same whether the layer saw the
/// request or it went around it (no `Origin`, not OPTIONS: the headers
/// found once at start-up, `http::cors`): with any origin allowed, `*`,
/// the exposed headers and `Vary` on both; with loopback origins only
/// (`local`), `Vary` on both and the origin allowed only when it is sent.
#[tokio::test]
async fn answers_carry_the_same_cors_headers_with_or_without_origin() {
    use depot::config::AuthMode;
    let cors_headers = |r: &reqwest::Response| -> Vec<(String, String)> {
        let mut h: Vec<(String, String)> = r
            .headers()
            .iter()
            .filter(|(n, _)| n.as_str().starts_with("access-control-") || *n == "vary")
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        h.sort();
        h
    };
    let vary = "origin, access-control-request-method, access-control-request-headers";
    for (mode, origin) in [(AuthMode::Open, ORIGIN), (AuthMode::Local, "http://127.0.0.1:3000")] {
        let (_dir, s) = TestServer::start_temp_with(|c| c.auth.mode = mode).await;
        // A listing, an error answer (an unknown file), a chunk (whose
        // answer has a `Vary` of its own, which CORS's is added to) and a
        // HEAD.
        s.upload_raw("w.txt", b"plain words").await;
        let chunk = format!("/api/chunks/{}", ChunkId::of(b"plain words"));
        for path in ["/api/files", "/api/files/01ARZ3NDEKTSV4RRFFQ69G5FAV", &chunk] {
            let with = s.get_with(path, &[("Origin", origin)]).await;
            let without = s.get(path).await;
            assert_eq!(with.status(), without.status(), "{mode:?} {path}");
            let (with, without) = (cors_headers(&with), cors_headers(&without));
            assert!(without.contains(&("vary".into(), vary.into())), "{mode:?} {path}: {without:?}");
            if path == chunk {
                assert!(without.contains(&("vary".into(), "accept-encoding".into())), "{without:?}");
            }
            if mode == AuthMode::Open {
                assert_eq!(with, without, "{mode:?} {path}");
                assert!(without.iter().any(|(n, v)| n == "access-control-allow-origin" && v == "*"));
                assert!(
                    without
                        .iter()
                        .any(|(n, v)| n == "access-control-expose-headers"
                            && v.contains("content-disposition"))
                );
            } else {
                assert!(with.contains(&("access-control-allow-origin".into(), origin.into())), "{with:?}");
                let allowed: Vec<_> =
                    with.into_iter().filter(|(n, _)| n != "access-control-allow-origin").collect();
                assert_eq!(allowed, without, "{mode:?} {path}: the same but the allowed origin");
            }
        }
        let head = s.send(reqwest::Method::HEAD, "/api/files", &[]).await;
        assert!(cors_headers(&head).contains(&("vary".into(), vary.into())), "{mode:?} HEAD");
        s.stop().await;
    }
}

#[tokio::test]
async fn swagger_openapi_health_metrics() {
    let (_dir, s) = TestServer::start_temp().await;
    let r = s.get("/api/docs/").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().to_lowercase().contains("swagger"));
    let doc: serde_json::Value = s.get_json("/api/openapi.json").await;
    for path in
        ["/api/files", "/api/files/{id}", "/api/files/upload", "/api/files/upload/chunked", "/api/stats"]
    {
        assert!(doc["paths"][path].is_object(), "{path} missing from the OpenAPI document");
    }
    let h: serde_json::Value = s.get_json("/healthz").await;
    assert_eq!(h["status"], "ok");
    s.upload_form("m.txt", b"metrics").await;
    let m = s.get("/metrics").await.text().await.unwrap();
    assert_eq!(metric(&m, "depot_store_files"), 1);
    assert!(m.contains("depot_http_responses_total{class=\"2xx\"}"));
    assert!(metric(&m, "depot_http_request_bytes_total") >= 7);
    let r = s.get("/nope").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<ErrorBody>().await.unwrap().code, 404);
    s.stop().await;
}

#[test]
fn committed_openapi_document_matches_the_code() {
    let generated = depot::server::openapi().to_pretty_json().unwrap() + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/openapi.json");
    if std::env::var_os("DEPOT_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema/openapi.json is out of date: run `DEPOT_UPDATE_SCHEMA=1 cargo test --test http_seed committed_openapi` and commit it"
    );
}

#[tokio::test]
async fn a_deleted_file_can_be_uploaded_again_under_the_same_identifier() {
    let (_dir, s) = TestServer::start_temp().await;
    let up = Pieces::new(12_000, 6000, 9, "again", "again.bin");
    let send = |n: u32| s.post_piece(up.form(n));
    assert_eq!(send(1).await.status(), StatusCode::OK);
    let first = send(2).await.json::<PieceStatus>().await.unwrap().file.unwrap();
    let r = s.delete(&first.id).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // The old session pointed at the deleted file: it starts over.
    assert_eq!(s.test_piece(&up.params(1)).await, StatusCode::NO_CONTENT);
    assert_eq!(send(1).await.status(), StatusCode::OK);
    let r = send(2).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let second = r.json::<PieceStatus>().await.unwrap().file.unwrap();
    assert_ne!(second.id, first.id);
    assert_eq!(s.download(&second.id).await, up.data);
    let m = s.get("/metrics").await.text().await.unwrap();
    assert_eq!(metric(&m, "depot_files_created_total"), 2);
    assert_eq!(metric(&m, "depot_chunks_stored_total"), 2);
    // The pieces of the second upload were already stored: dedup hits.
    assert_eq!(metric(&m, "depot_chunks_deduplicated_total"), 2);
    s.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_lets_an_upload_in_flight_finish() {
    let (dir, s) = TestServer::start_temp().await;
    let data = pseudo_random(3_000_000, 10);
    let (tx, body) = fed_body(4);
    let upload =
        tokio::spawn(client().post(s.url("/api/files/upload?filename=inflight.bin")).body(body).send());
    tx.send(Ok(data[..1_000_000].to_vec())).await.unwrap();
    s.wait_for_bytes_in(1_000_000, Duration::from_secs(10)).await;
    let base = s.base.clone();
    let stopping = tokio::spawn(s.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!stopping.is_finished(), "the server waits for the upload in flight");
    assert!(
        client().get(format!("{base}/healthz")).send().await.is_err(),
        "no new connections while stopping"
    );
    tx.send(Ok(data[1_000_000..].to_vec())).await.unwrap();
    drop(tx);
    let r = upload.await.unwrap().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let f: FileInfo = r.json().await.unwrap();
    stopping.await.unwrap();

    let store = depot::store::Store::open(dir.path(), test_config(dir.path()).store_options()).unwrap();
    assert!(!store.was_unclean(), "closed cleanly");
    let rec = store.file(&f.id.parse().unwrap()).unwrap();
    assert_eq!(rec.size, 3_000_000);
    assert!(store.verify(false).unwrap().is_clean());
}
