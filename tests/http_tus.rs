//! tus 1.0.0 against the real server, every status path.

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::http::{OCTET, TUS, fed_body, tus, tus_patch, tus_patch_as};
use common::{ORIGIN, TestServer, test_config};
use depot::config::ByteSize;
use depot::testdata::pseudo_random;
use reqwest::{Method, StatusCode};
use sha1::Digest;

/// A tus creation request (`POST /api/tus/`) with `headers`, whatever the answer.
async fn post(s: &TestServer, headers: &[(&str, &str)]) -> reqwest::Response {
    let tus = [("Tus-Resumable", TUS)];
    s.send(Method::POST, "/api/tus/", &[&tus[..], headers].concat()).await
}

/// Creates an upload of `len` bytes named `name`; its URL.
async fn create(s: &TestServer, len: u64, name: &str) -> String {
    let meta = format!("filename {},filetype {}", B64.encode(name), B64.encode("application/octet-stream"));
    let r = post(s, &[("Upload-Length", &len.to_string()), ("Upload-Metadata", &meta)]).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");
    let loc = location(&r);
    assert!(loc.starts_with(&format!("{}/api/tus/", s.base)), "{loc}");
    loc
}

/// A server, `len` pseudo-random bytes from `seed` and an upload created
/// for them under `name`: what most tests here start from.
async fn upload_of(len: usize, seed: u64, name: &str) -> (tempfile::TempDir, TestServer, Vec<u8>, String) {
    let (dir, s) = TestServer::start_temp().await;
    let url = create(&s, len as u64, name).await;
    (dir, s, pseudo_random(len, seed), url)
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_string()
}

async fn patch(url: &str, offset: u64, body: Vec<u8>) -> reqwest::Response {
    tus_patch(url, offset).body(body).send().await.unwrap()
}

async fn head(url: &str) -> reqwest::Response {
    tus(Method::HEAD, url).send().await.unwrap()
}

async fn offset_of(url: &str) -> u64 {
    head(url).await.headers()["upload-offset"].to_str().unwrap().parse().unwrap()
}

/// Stops the server after checking that the requests that ended left no
/// upload slot behind (a finished, refused or taken-over PATCH frees its own).
async fn stop_idle(s: TestServer) {
    assert!(s.state.writers.is_empty(), "requests that ended left {} upload slots", s.state.writers.len());
    s.stop().await;
}

/// `r` answered the PATCH that completed an upload: 204, and the file it
/// made holds `data`.
async fn assert_completed(s: &TestServer, r: &reqwest::Response, data: &[u8]) {
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(s.download(&file_id(r)).await, data);
}

/// The file a finishing PATCH or creation made, from its `Depot-File-Id`.
fn file_id(r: &reqwest::Response) -> String {
    r.headers()["depot-file-id"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn options_version_and_creation() {
    let (_dir, s) = TestServer::start_temp_with(|c| c.limits.max_file_size = ByteSize(10 << 20)).await;
    let r = s.send(Method::OPTIONS, "/api/tus/", &[]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let h = r.headers();
    assert_eq!(h["tus-version"], "1.0.0");
    assert_eq!(h["tus-max-size"], (10u64 << 20).to_string().as_str());
    assert_eq!(h["tus-checksum-algorithm"], "sha1,md5,crc32,blake3");
    for ext in [
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "checksum",
        "expiration",
        "concatenation",
    ] {
        assert!(h["tus-extension"].to_str().unwrap().split(',').any(|e| e == ext), "{ext}");
    }
    // Version checks.
    let r = s.send(Method::POST, "/api/tus/", &[("Upload-Length", "5")]).await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(r.headers()["tus-version"], "1.0.0");
    let r = s.send(Method::POST, "/api/tus/", &[("Tus-Resumable", "0.2.2"), ("Upload-Length", "5")]).await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    // Creation errors.
    let refused: [(&[(&str, &str)], StatusCode); 6] = [
        (&[], StatusCode::BAD_REQUEST),
        (&[("Upload-Length", "-3")], StatusCode::BAD_REQUEST),
        (&[("Upload-Length", "5"), ("Upload-Defer-Length", "1")], StatusCode::BAD_REQUEST),
        (&[("Upload-Defer-Length", "2")], StatusCode::BAD_REQUEST),
        (&[("Upload-Length", "20971520")], StatusCode::PAYLOAD_TOO_LARGE),
        (&[("Upload-Length", "5"), ("Upload-Metadata", "filename ***")], StatusCode::BAD_REQUEST),
    ];
    for (headers, want) in refused {
        assert_eq!(post(&s, headers).await.status(), want, "{headers:?}");
    }
    let r = post(&s, &[("Upload-Length", "5")]).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(r.headers().contains_key("upload-expires"));
    s.stop().await;
}

#[tokio::test]
async fn patch_head_and_completion() {
    let (_dir, s, data, url) = upload_of(3_000_000, 1, "report.bin").await;

    let h = head(&url).await;
    assert_eq!(h.status(), StatusCode::OK);
    assert_eq!(h.headers()["upload-offset"], "0");
    assert_eq!(h.headers()["upload-length"], "3000000");
    assert_eq!(h.headers()["cache-control"], "no-store");
    assert!(h.headers()["upload-metadata"].to_str().unwrap().starts_with("filename "));
    assert!(h.headers().contains_key("upload-expires"));

    // Wrong content type, wrong offset, missing offset.
    let r = tus(Method::PATCH, &url).header("Upload-Offset", "0").body(vec![1u8; 10]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");
    assert_eq!(patch(&url, 5, vec![1; 10]).await.status(), StatusCode::CONFLICT);
    let r = tus(Method::PATCH, &url).header("Content-Type", OCTET).body(vec![1u8]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(offset_of(&url).await, 0);

    let r = patch(&url, 0, data[..1_000_000].to_vec()).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["upload-offset"], "1000000");
    assert!(r.headers().get("depot-file-id").is_none());
    // Past the length: refused, nothing kept.
    assert_eq!(patch(&url, 1_000_000, vec![0; 2_500_000]).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(offset_of(&url).await, 1_000_000);
    let r = patch(&url, 1_000_000, data[1_000_000..].to_vec()).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["upload-offset"], "3000000");
    let id = file_id(&r);
    assert_eq!(s.download(&id).await, data);
    let files = s.list_files(&[]).await;
    assert_eq!(files.files[0].id, id);
    assert_eq!(files.files[0].name, "report.bin");
    // HEAD of a completed upload keeps answering (tus-js-client keeps URLs).
    let h = head(&url).await;
    assert_eq!(h.headers()["upload-offset"], "3000000");
    assert_eq!(h.headers()["depot-file-id"], id.as_str());
    // The same bytes again through tus: no new chunk.
    let before = s.stats().await;
    let again = create(&s, data.len() as u64, "copy.bin").await;
    assert_eq!(patch(&again, 0, data.clone()).await.status(), StatusCode::NO_CONTENT);
    let after = s.stats().await;
    assert_eq!(after.unique_chunks, before.unique_chunks);
    assert_eq!(after.files, 2);
    // …and through the regular upload: the same manifest.
    let f = s.upload_raw("same.bin", &data).await;
    assert_eq!(f.etag, s.info(&id).await.etag, "identical content, identical chunks");
    stop_idle(s).await;
}

#[tokio::test]
async fn creation_with_upload_defer_length_and_override() {
    let (_dir, s) = TestServer::start_temp().await;
    let data = pseudo_random(500_000, 2);
    let r = tus(Method::POST, &s.url("/api/tus/"))
        .header("Upload-Length", "500000")
        .header("Content-Type", OCTET)
        .body(data[..200_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["upload-offset"], "200000");
    let url = location(&r);
    // PATCH sent as POST with X-HTTP-Method-Override.
    let req = tus_patch_as(Method::POST, &url, 200_000).header("X-HTTP-Method-Override", "PATCH");
    let r = req.body(data[200_000..].to_vec()).send().await.unwrap();
    assert_completed(&s, &r, &data).await;

    // Deferred length, set by the last PATCH.
    let url = location(&post(&s, &[("Upload-Defer-Length", "1")]).await);
    let h = head(&url).await;
    assert_eq!(h.headers()["upload-defer-length"], "1");
    assert!(h.headers().get("upload-length").is_none());
    assert_eq!(patch(&url, 0, data[..300_000].to_vec()).await.status(), StatusCode::NO_CONTENT);
    // A PATCH refused for its offset does not set the length either.
    let r = tus_patch(&url, 5).header("Upload-Length", "100").body(vec![1u8; 3]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(head(&url).await.headers()["upload-defer-length"], "1");
    let req = tus_patch(&url, 300_000).header("Upload-Length", "500000");
    let r = req.body(data[300_000..].to_vec()).send().await.unwrap();
    assert_completed(&s, &r, &data).await;
    assert_eq!(head(&url).await.headers()["upload-length"], "500000");

    // A zero-length upload is a file at once.
    let meta = format!("filename {}", B64.encode("empty.txt"));
    let r = post(&s, &[("Upload-Length", "0"), ("Upload-Metadata", &meta)]).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = file_id(&r);
    assert!(s.download(&id).await.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn checksums() {
    let (_dir, s, data, url) = upload_of(400_000, 3, "c.bin").await;
    let send = |offset: u64, body: &[u8], checksum: String| {
        tus_patch(&url, offset).header("Upload-Checksum", checksum).body(body.to_vec()).send()
    };
    let part = &data[..100_000];
    let sha1 = B64.encode(sha1::Sha1::digest(part));
    let r = send(0, part, format!("sha1 {}", B64.encode(sha1::Sha1::digest(b"other")))).await.unwrap();
    assert_eq!(r.status().as_u16(), 460);
    assert_eq!(offset_of(&url).await, 0, "a failed checksum keeps nothing");
    assert_eq!(send(0, part, format!("sha256 {sha1}")).await.unwrap().status(), StatusCode::BAD_REQUEST);
    assert_eq!(send(0, part, "sha1 !!".into()).await.unwrap().status(), StatusCode::BAD_REQUEST);
    assert_eq!(send(0, part, format!("sha1 {sha1}")).await.unwrap().status(), StatusCode::NO_CONTENT);
    let part = &data[100_000..200_000];
    let md5 = B64.encode(md5::Md5::digest(part));
    assert_eq!(send(100_000, part, format!("md5 {md5}")).await.unwrap().status(), StatusCode::NO_CONTENT);
    let part = &data[200_000..300_000];
    let crc = B64.encode(crc32fast::hash(part).to_be_bytes());
    assert_eq!(send(200_000, part, format!("crc32 {crc}")).await.unwrap().status(), StatusCode::NO_CONTENT);
    let part = &data[300_000..];
    let b3 = B64.encode(blake3::hash(part).as_bytes());
    let r = send(300_000, part, format!("blake3 {b3}")).await.unwrap();
    assert_completed(&s, &r, &data).await;
    stop_idle(s).await;
}

#[tokio::test]
async fn termination_expiry_and_unknown_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    let expiry = Duration::from_secs(3600);
    cfg.uploads.expiry = depot::config::Dur(expiry);
    let (s, clock) = TestServer::start_with_clock(cfg).await;
    let url = create(&s, 10, "t.bin").await;
    assert_eq!(patch(&url, 0, vec![1; 5]).await.status(), StatusCode::NO_CONTENT);
    let r = tus(Method::DELETE, &url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(head(&url).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(patch(&url, 5, vec![1; 5]).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(tus(Method::DELETE, &url).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(head(&s.url("/api/tus/not-an-id")).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        head(&s.url("/api/tus/00000000000000000000000000000000")).await.status(),
        StatusCode::NOT_FOUND
    );

    let url = create(&s, 10, "e.bin").await;
    clock.advance(expiry - Duration::from_secs(1));
    assert_eq!(head(&url).await.status(), StatusCode::OK, "not yet expired");
    clock.advance(Duration::from_secs(1));
    assert_eq!(head(&url).await.status(), StatusCode::GONE);
    assert_eq!(patch(&url, 0, vec![1; 5]).await.status(), StatusCode::GONE);
    let id: depot::store::UploadId = url.rsplit('/').next().unwrap().parse().unwrap();
    let reaped = s.state.store.blocking(|st| st.gc(false)).await.unwrap().expired_uploads;
    assert!(reaped >= 1);
    assert!(s.state.store.upload(&id).unwrap().is_none());
    assert!(!dir.path().join("uploads").join(id.to_string()).exists());
    assert_eq!(head(&url).await.status(), StatusCode::NOT_FOUND);
    stop_idle(s).await;
}

#[tokio::test]
async fn concatenation_of_partial_uploads() {
    let (_dir, s) = TestServer::start_temp().await;
    let data = pseudo_random(3_500_000, 4);
    let seams = [0usize, 1_234_567, 2_000_000, data.len()];
    let mut urls = Vec::new();
    for w in seams.windows(2) {
        let r =
            post(&s, &[("Upload-Length", &(w[1] - w[0]).to_string()), ("Upload-Concat", "partial")]).await;
        let url = location(&r);
        let r = patch(&url, 0, data[w[0]..w[1]].to_vec()).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert!(r.headers().get("depot-file-id").is_none(), "a partial upload is not a file");
        assert_eq!(head(&url).await.headers()["upload-concat"], "partial");
        urls.push(url);
    }
    let concat = format!("final;{}", urls.join(" "));
    let meta = format!("filename {}", B64.encode("joined.bin"));
    let r = post(&s, &[("Upload-Concat", &concat), ("Upload-Metadata", &meta)]).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let fin = location(&r);
    let id = file_id(&r);
    assert_eq!(s.download(&id).await, data);
    let h = head(&fin).await;
    assert!(h.headers()["upload-concat"].to_str().unwrap().starts_with("final;"));
    assert_eq!(h.headers()["upload-offset"], "3500000");
    assert_eq!(patch(&fin, 3_500_000, vec![]).await.status(), StatusCode::FORBIDDEN);
    // The final file is chunked exactly like the whole content.
    let whole = s.upload_raw("whole.bin", &data).await;
    assert_eq!(whole.etag, s.info(&id).await.etag);
    // Bad finals.
    assert_eq!(post(&s, &[("Upload-Concat", "final;")]).await.status(), StatusCode::BAD_REQUEST);
    let r = post(&s, &[("Upload-Concat", &format!("final;{fin}"))]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "a final upload is not a part");
    s.stop().await;
}

#[tokio::test]
async fn acknowledged_offsets_survive_a_restart_and_broken_bodies_keep_their_prefix() {
    let (_dir, s, data, url) = upload_of(2_000_000, 5, "r.bin").await;
    assert_eq!(patch(&url, 0, data[..700_001].to_vec()).await.status(), StatusCode::NO_CONTENT);
    let s = s.restart().await;
    let url = url.replace(&url[..url.find("/api/").unwrap()], &s.base);
    assert_eq!(offset_of(&url).await, 700_001);
    let before_in = s.bytes_in();
    // A body that breaks off: the client promises 1,000,000 bytes, sends
    // 300,000 and drops the connection. What arrived is kept.
    {
        use tokio::io::AsyncWriteExt;
        let path = &url[url.find("/api/").unwrap()..];
        let mut sock = tokio::net::TcpStream::connect(s.base.trim_start_matches("http://")).await.unwrap();
        let head = format!(
            "PATCH {path} HTTP/1.1\r\nHost: localhost\r\nTus-Resumable: 1.0.0\r\n\
             Content-Type: application/offset+octet-stream\r\nUpload-Offset: 700001\r\n\
             Content-Length: 1000000\r\n\r\n"
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.write_all(&data[700_001..1_000_001]).await.unwrap();
        sock.flush().await.unwrap();
        s.wait_for_bytes_in(before_in + 300_000, Duration::from_secs(10)).await;
    }
    let mut at = 0;
    for _ in 0..100 {
        at = offset_of(&url).await;
        if at == 1_000_001 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(at, 1_000_001);
    let r = patch(&url, at, data[at as usize..].to_vec()).await;
    assert_completed(&s, &r, &data).await;
    s.stop().await;
}

#[tokio::test]
async fn a_newer_request_takes_over_and_bytes_never_interleave() {
    let (_dir, s, data, url) = upload_of(1_000_000, 6, "race.bin").await;

    // A: sends 100,000 bytes, then stalls (a stale connection).
    let (tx, body) = fed_body(4);
    tx.send(Ok(data[..100_000].to_vec())).await.unwrap();
    let a = tokio::spawn(tus_patch(&url, 0).body(body).send());
    // Wait until the server has A's bytes.
    s.wait_for_bytes_in(100_000, Duration::from_secs(10)).await;
    // B: the same offset. It ends A, which keeps its 100,000 bytes; B's
    // offset is then stale.
    let b = patch(&url, 0, data[..200_000].to_vec()).await;
    assert_eq!(b.status(), StatusCode::CONFLICT);
    match a.await.unwrap() {
        Ok(r) => {
            assert_eq!(r.status(), StatusCode::LOCKED);
            let e: depot::wire::ErrorBody = r.json().await.unwrap();
            assert_eq!(e.error, "locked");
            assert!(e.message.contains("took over"), "{}", e.message);
        }
        Err(e) => eprintln!("A's connection ended before its answer: {e}"),
    }

    drop(tx);
    assert_eq!(offset_of(&url).await, 100_000);
    let r = patch(&url, 100_000, data[100_000..].to_vec()).await;
    assert_completed(&s, &r, &data).await;
    s.stop().await;
}

#[tokio::test]
async fn cors_exposes_the_tus_headers() {
    // Any origin: `open` mode (`local` answers loopback origins only).
    let (_dir, s) = TestServer::start_temp_with(|c| c.auth.mode = depot::config::AuthMode::Open).await;
    let r = s
        .preflight("/api/tus/abc", "PATCH", "tus-resumable,upload-offset,content-type,upload-checksum")
        .await;
    assert!(r.headers()["access-control-allow-methods"].to_str().unwrap().contains("PATCH"));
    let url = create(&s, 3, "x.bin").await;
    let r = tus(Method::HEAD, &url).header("Origin", ORIGIN).send().await.unwrap();
    let exposed = r.headers()["access-control-expose-headers"].to_str().unwrap().to_lowercase();
    for h in [
        "location",
        "upload-offset",
        "upload-length",
        "upload-metadata",
        "upload-expires",
        "tus-version",
        "tus-resumable",
        "tus-max-size",
        "tus-extension",
        "depot-file-id",
    ] {
        assert!(exposed.contains(h), "{h} not exposed");
    }
    s.stop().await;
}
