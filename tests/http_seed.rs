//! The seed's API against the real server: ephemeral port, temp dir, real
//! RocksDB, driven with reqwest.

mod common;

use std::time::Duration;

use common::http::{fed_body, piece, piece_form, piece_params, prefixed, with};
use common::{TestServer, client, metric, pseudo_random, test_config};
use depot::store::ChunkId;
use depot::wire::{ErrorBody, FileInfo, FileList, PieceStatus};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};

#[tokio::test]
async fn chunked_upload_out_of_order_completes_on_the_last_piece() {
    let (_dir, s) = TestServer::start_temp().await;
    let data = pseudo_random(250_000, 1);
    let pieces: Vec<&[u8]> = vec![&data[..100_000], &data[100_000..200_000], &data[200_000..]];
    for (i, n) in [(1usize, 2u32), (0, 1)] {
        let r = s.post_piece(piece(n, 3, 100_000, 250_000, "up-1", "data.bin", pieces[i])).await;
        assert_eq!(r.status(), StatusCode::OK);
        let st: PieceStatus = r.json().await.unwrap();
        assert_eq!(st.status, "partial");
        assert_eq!(st.total, 3);
    }
    // A retry of a piece is idempotent.
    let r = s.post_piece(piece(1, 3, 100_000, 250_000, "up-1", "data.bin", pieces[0])).await;
    assert_eq!(r.json::<PieceStatus>().await.unwrap().received, 2);
    let r = s.post_piece(piece(3, 3, 100_000, 250_000, "up-1", "data.bin", pieces[2])).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let st: PieceStatus = r.json().await.unwrap();
    assert_eq!(st.status, "complete");
    assert_eq!((st.received, st.total), (3, 3));
    let file = st.file.unwrap();
    assert_eq!(file.size, 250_000);
    assert_eq!(file.name, "data.bin");
    assert_eq!(s.download(&file.id).await, data);
    // A late retry of the last piece answers 200 with the same file.
    let r = s.post_piece(piece(3, 3, 100_000, 250_000, "up-1", "data.bin", pieces[2])).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<PieceStatus>().await.unwrap().file.unwrap().id, file.id);
    assert_eq!(s.stats().await.files, 1);
    s.stop().await;
}

#[tokio::test]
async fn racing_last_pieces_finish_the_file_once() {
    let (_dir, s) = TestServer::start_temp().await;
    let data = pseudo_random(40_000, 2);
    let mut tasks = Vec::new();
    for round in 0..2 {
        for n in 1..=4u32 {
            let url = s.url("/api/files/upload/chunked");
            let bytes = data[(n as usize - 1) * 10_000..n as usize * 10_000].to_vec();
            tasks.push(tokio::spawn(async move {
                let _ = round;
                let r = client()
                    .post(url)
                    .multipart(piece(n, 4, 10_000, 40_000, "race", "race.bin", &bytes))
                    .send()
                    .await
                    .unwrap();
                (r.status(), r.json::<PieceStatus>().await.unwrap())
            }));
        }
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
    let dir = tempfile::tempdir().unwrap();
    let data = pseudo_random(30_000, 4);
    let s = TestServer::start(test_config(dir.path())).await;
    for n in [1u32, 2] {
        let bytes = &data[(n as usize - 1) * 10_000..n as usize * 10_000];
        let r = s.post_piece(piece(n, 3, 10_000, 30_000, "restart", "r.bin", bytes)).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    s.stop().await;

    let s = TestServer::start(test_config(dir.path())).await;
    for (n, want) in [(1, StatusCode::OK), (2, StatusCode::OK), (3, StatusCode::NO_CONTENT)] {
        let params = piece_params(n, 3, 10000, 30000, "restart", "r.bin");
        assert_eq!(s.test_piece(&params).await, want, "piece {n}");
    }
    let r = s.post_piece(piece(3, 3, 10_000, 30_000, "restart", "r.bin", &data[20_000..])).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let f = r.json::<PieceStatus>().await.unwrap().file.unwrap();
    assert_eq!(s.download(&f.id).await, data);
    s.stop().await;
}

#[tokio::test]
async fn ranges_conditionals_and_headers() {
    let (_dir, s) = TestServer::start_temp().await;
    let data = pseudo_random(3_000_000, 5);
    let f = s.upload_form("Grüße \"draft\".bin", &data).await;
    let url = s.url(&format!("/api/files/{}", f.id));

    let r = client().get(&url).send().await.unwrap();
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

    let r = client().get(&url).header("Range", "bytes=1000-1999999").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 1000-1999999/3000000");
    assert_eq!(r.bytes().await.unwrap(), data[1000..2_000_000]);

    let r = client().get(&url).header("Range", "bytes=-10").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap(), data[data.len() - 10..]);

    let r = client().get(&url).header("Range", "bytes=3000000-").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()["content-range"], "bytes */3000000");
    let e: ErrorBody = r.json().await.unwrap();
    assert_eq!(e.code, 416);

    let r = client().get(&url).header("If-None-Match", &etag).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert!(r.bytes().await.unwrap().is_empty());

    // If-Range with another ETag: the whole file.
    let r =
        client().get(&url).header("Range", "bytes=0-9").header("If-Range", "\"other\"").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().len(), 3_000_000);
    let r = client().get(&url).header("Range", "bytes=0-9").header("If-Range", &etag).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);

    let r = client().head(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], "3000000");

    let r = client().get(s.url("/api/files/01ARZ3NDEKTSV4RRFFQ69G5FAV")).send().await.unwrap();
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
        let mut req = client().get(s.url("/api/files")).query(&[("limit", "2")]);
        if let Some(c) = &cursor {
            req = req.query(&[("cursor", c)]);
        }
        let page: FileList = req.send().await.unwrap().json().await.unwrap();
        assert!(page.files.len() <= 2);
        seen.extend(page.files.into_iter().map(|f| f.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let r = client().get(s.url("/api/files?limit=0")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = client().get(s.url("/api/files?cursor=nope")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test]
async fn delete_then_gc_frees_the_space() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.gc.interval = depot::config::Dur(Duration::from_millis(200));
    cfg.gc.grace = depot::config::Dur(Duration::ZERO);
    cfg.gc.chunk_lease = depot::config::Dur(Duration::ZERO);
    let s = TestServer::start(cfg).await;
    let keep = s.upload_form("keep.bin", &pseudo_random(1_000_000, 6)).await;
    let gone = s.upload_form("gone.bin", &pseudo_random(2_000_000, 7)).await;
    let before = s.stats().await;
    assert_eq!(before.unique_bytes, 3_000_000);
    let r = s.delete(&gone.id).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = s.delete(&gone.id).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = client().get(s.url(&format!("/api/files/{}", gone.id))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
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
    let objects_dir = dir.path().join("objects");
    let on_disk: u64 = walk(&objects_dir);
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
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.types.allowed_extensions = vec!["txt".into()];
    let s = TestServer::start(cfg).await;
    s.upload_form("ok.txt", b"fine").await;
    let form = Form::new().part("file", Part::bytes(b"data".to_vec()).file_name("no.csv"));
    let r = client().post(s.url("/api/files/upload")).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    s.stop().await;
}

#[tokio::test]
async fn size_limits_answer_413() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.limits.max_file_size = depot::config::ByteSize(100_000);
    let s = TestServer::start(cfg).await;
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
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.rate_limit.enabled = true;
    cfg.rate_limit.api_per_second = 1;
    cfg.rate_limit.api_burst = 3;
    let s = TestServer::start(cfg).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = client().get(s.url("/api/files")).send().await.unwrap();
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
    let r = client()
        .get(s.url("/api/files/upload/chunked?chunkNumber=1&totalChunks=1&chunkSize=5&totalSize=5&identifier=i&filename=f.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Health checks are never limited.
    assert_eq!(client().get(s.url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn cors_preflight_allows_the_libraries() {
    // Any origin: `open` mode (`local` answers loopback origins only).
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::test_config(dir.path());
    cfg.auth.mode = depot::config::AuthMode::Open;
    let s = TestServer::start(cfg).await;
    let r = client()
        .request(reqwest::Method::OPTIONS, s.url("/api/files/upload/chunked"))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type,x-requested-with")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    assert!(h["access-control-allow-methods"].to_str().unwrap().contains("POST"));
    assert!(h["access-control-allow-headers"].to_str().unwrap().to_lowercase().contains("x-requested-with"));
    let r = client().get(s.url("/api/files")).header("Origin", "https://app.example").send().await.unwrap();
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

#[tokio::test]
async fn swagger_openapi_health_metrics() {
    let (_dir, s) = TestServer::start_temp().await;
    let r = client().get(s.url("/api/docs/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().to_lowercase().contains("swagger"));
    let doc: serde_json::Value =
        client().get(s.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    for path in
        ["/api/files", "/api/files/{id}", "/api/files/upload", "/api/files/upload/chunked", "/api/stats"]
    {
        assert!(doc["paths"][path].is_object(), "{path} missing from the OpenAPI document");
    }
    let h: serde_json::Value = client().get(s.url("/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(h["status"], "ok");
    s.upload_form("m.txt", b"metrics").await;
    let m = client().get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(metric(&m, "depot_store_files"), 1);
    assert!(m.contains("depot_http_responses_total{class=\"2xx\"}"));
    assert!(metric(&m, "depot_http_request_bytes_total") >= 7);
    let r = client().get(s.url("/nope")).send().await.unwrap();
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
    let data = pseudo_random(12_000, 9);
    let send = |n: u32| {
        let url = s.url("/api/files/upload/chunked");
        let bytes = data[(n as usize - 1) * 6000..n as usize * 6000].to_vec();
        async move {
            client()
                .post(url)
                .multipart(piece(n, 2, 6000, 12_000, "again", "again.bin", &bytes))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(send(1).await.status(), StatusCode::OK);
    let first = send(2).await.json::<PieceStatus>().await.unwrap().file.unwrap();
    let r = s.delete(&first.id).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // The old session pointed at the deleted file: it starts over.
    let again = piece_params(1, 2, 6000, 12000, "again", "again.bin");
    assert_eq!(s.test_piece(&again).await, StatusCode::NO_CONTENT);
    assert_eq!(send(1).await.status(), StatusCode::OK);
    let r = send(2).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let second = r.json::<PieceStatus>().await.unwrap().file.unwrap();
    assert_ne!(second.id, first.id);
    assert_eq!(s.download(&second.id).await, data);
    let m = client().get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
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
