//! The IETF resumable-upload draft on `/api/tus/` against the real server:
//! every state a client walks through, at the interop versions the real
//! clients send (5: tus-js-client `ietf-draft-03`, 6: `ietf-draft-05`, and
//! the editor's copy's 8; 3 for its `Upload-Incomplete`).

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::http::fed_body;
use common::{TestServer, client, test_config};
use depot::testdata::pseudo_random;
use reqwest::{Method, RequestBuilder, StatusCode};
use sha1::Digest;

const PARTIAL: &str = "application/partial-upload";

fn draft(method: Method, url: &str, v: u8) -> RequestBuilder {
    client().request(method, url).header("Upload-Draft-Interop-Version", v.to_string())
}

/// An append in interop version 6: `Content-Type`, `Upload-Offset` and
/// `Upload-Complete` set.
fn append(url: &str, offset: impl std::fmt::Display, complete: bool) -> RequestBuilder {
    draft(Method::PATCH, url, 6)
        .header("Content-Type", PARTIAL)
        .header("Upload-Offset", offset.to_string())
        .header("Upload-Complete", if complete { "?1" } else { "?0" })
}

fn h(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", r.headers()))
        .to_str()
        .unwrap()
        .to_string()
}

async fn problem(r: reqwest::Response) -> serde_json::Value {
    let ct = h(&r, "content-type");
    let body = r.text().await.unwrap();
    assert_eq!(ct, "application/problem+json", "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn complete_creation_makes_the_file() {
    let (_dir, s) = TestServer::start_temp().await;
    let data = pseudo_random(300_000, 1);
    for v in [5u8, 6, 8] {
        let r = draft(Method::POST, &s.url("/api/tus/"), v)
            .header("Upload-Complete", "?1")
            .header("Content-Disposition", "attachment; filename=\"a.bin\"")
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "v{v}");
        assert_eq!(h(&r, "upload-draft-interop-version"), v.to_string());
        assert_eq!(h(&r, "upload-complete"), "?1");
        assert_eq!(h(&r, "upload-offset"), "300000");
        assert!(h(&r, "upload-limit").starts_with("max-size="));
        assert!(h(&r, "location").starts_with(&format!("{}/api/tus/", s.base)));
        assert!(r.headers().get("tus-resumable").is_none());
        let id = h(&r, "depot-file-id");
        assert_eq!(s.download(&id).await, data);
        assert_eq!(s.info(&id).await.name, "a.bin");
    }

    // Interop version 3 says it inverted, as Upload-Incomplete.
    let r = draft(Method::POST, &s.url("/api/tus/"), 3)
        .header("Upload-Incomplete", "?0")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(h(&r, "upload-incomplete"), "?0");
    assert_eq!(s.download(&h(&r, "depot-file-id")).await, data);

    // A complete body streamed without Content-Length ends the upload where
    // it ends.
    let (tx, body) = fed_body(4);
    let send = tokio::spawn(
        draft(Method::POST, &s.url("/api/tus/"), 6).header("Upload-Complete", "?1").body(body).send(),
    );
    for part in data.chunks(100_000) {
        tx.send(Ok(part.to_vec())).await.unwrap();
    }
    drop(tx);
    let r = send.await.unwrap().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(h(&r, "upload-complete"), "?1");
    assert_eq!(s.download(&h(&r, "depot-file-id")).await, data);

    // An unknown interop version, a missing Upload-Complete.
    let r = draft(Method::POST, &s.url("/api/tus/"), 2).header("Upload-Complete", "?1").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = draft(Method::POST, &s.url("/api/tus/"), 6).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test]
async fn incomplete_creation_head_append_cut_resume_complete() {
    let (_dir, s) = TestServer::start_temp().await;
    let data = pseudo_random(3 << 20, 2);
    let r = draft(Method::POST, &s.url("/api/tus/"), 6)
        .header("Upload-Complete", "?0")
        .header("Upload-Length", data.len().to_string())
        .body(data[..1000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(h(&r, "upload-complete"), "?0");
    assert_eq!(h(&r, "upload-offset"), "1000");
    let url = h(&r, "location");

    let r = draft(Method::HEAD, &url, 6).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(h(&r, "upload-offset"), "1000");
    assert_eq!(h(&r, "upload-complete"), "?0");
    assert_eq!(h(&r, "upload-length"), data.len().to_string());
    assert_eq!(h(&r, "cache-control"), "no-store");
    assert!(h(&r, "upload-limit").contains("expires="));

    // A wrong offset: 409 with the expected offset.
    let r = append(&url, 5, false).body(vec![0u8; 10]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let p = problem(r).await;
    assert_eq!(p["type"], "https://iana.org/assignments/http-problem-types#mismatching-upload-offset");
    assert_eq!(p["expected-offset"], 1000);
    assert_eq!(p["provided-offset"], 5);

    // Version 6 appends are application/partial-upload.
    let r = draft(Method::PATCH, &url, 6)
        .header("Upload-Offset", "1000")
        .header("Upload-Complete", "?0")
        .body(vec![0u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // A complete append whose end contradicts Upload-Length.
    let r = append(&url, 1000, true).body(vec![0u8; 10]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        problem(r).await["type"],
        "https://iana.org/assignments/http-problem-types#inconsistent-upload-length"
    );

    // An append cut off midway keeps what arrived.
    let (tx, body) = fed_body(4);
    let send = tokio::spawn(append(&url, 1000, false).body(body).send());
    tx.send(Ok(data[1000..1_001_000].to_vec())).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while s.bytes_in() < 1_001_000 {
        assert!(tokio::time::Instant::now() < deadline, "the server never read the bytes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tx.send(Err(std::io::Error::other("cut"))).await.unwrap();
    drop(tx);
    let _ = send.await;
    let r = draft(Method::HEAD, &url, 6).send().await.unwrap();
    let at: usize = h(&r, "upload-offset").parse().unwrap();
    assert_eq!(at, 1_001_000, "the bytes before the cut are kept");

    // Resume with the rest, complete, with a Content-Digest of this body.
    let rest = &data[at..];
    let sha = sha2_256(rest);
    let r = append(&url, at, true)
        .header("Content-Digest", format!("sha-256=:{}:", B64.encode(sha)))
        .body(rest.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(h(&r, "upload-complete"), "?1");
    assert_eq!(h(&r, "upload-offset"), data.len().to_string());
    assert_eq!(s.download(&h(&r, "depot-file-id")).await, data);

    // Append after completion: the completed-upload problem.
    let r = append(&url, data.len(), true).body(Vec::new()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(problem(r).await["type"], "https://iana.org/assignments/http-problem-types#completed-upload");
    // HEAD still answers, complete.
    let r = draft(Method::HEAD, &url, 6).send().await.unwrap();
    assert_eq!(h(&r, "upload-complete"), "?1");
    s.stop().await;
}

fn sha2_256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).to_vec()
}

#[tokio::test]
async fn digests_deferred_length_and_cancel() {
    let (_dir, s) = TestServer::start_temp().await;
    let data = pseudo_random(200_000, 3);

    // Digests of a whole upload: one that does not match keeps nothing; the
    // right one (beside an algorithm the server ignores) makes the file; a
    // malformed field is refused.
    let wrong = sha1::Sha1::digest(b"something else");
    let right = sha1::Sha1::digest(&data);
    for (field, value, status, files) in [
        ("Repr-Digest", format!("sha=:{}:", B64.encode(wrong)), StatusCode::BAD_REQUEST, 0),
        ("Repr-Digest", format!("unixsum=:AAA=:, sha=:{}:", B64.encode(right)), StatusCode::CREATED, 1),
        ("Content-Digest", "sha-256=nope".to_string(), StatusCode::BAD_REQUEST, 1),
    ] {
        let r = draft(Method::POST, &s.url("/api/tus/"), 8)
            .header("Upload-Complete", "?1")
            .header(field, &value)
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{field}: {value}");
        assert_eq!(s.stats().await.files, files, "{field}: {value}");
    }

    // Deferred length (no Upload-Length, incomplete), then completed by the
    // last append (version 5 does not need the partial-upload type).
    let r = draft(Method::POST, &s.url("/api/tus/"), 5)
        .header("Upload-Complete", "?0")
        .body(data[..50_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(r.headers().get("upload-length").is_none());
    let url = h(&r, "location");
    let r = draft(Method::PATCH, &url, 5)
        .header("Upload-Offset", "50000")
        .header("Upload-Complete", "?1")
        .body(data[50_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(h(&r, "upload-complete"), "?1");
    assert_eq!(s.download(&h(&r, "depot-file-id")).await, data);

    // Cancellation: DELETE, then the upload is gone.
    let r = draft(Method::POST, &s.url("/api/tus/"), 6).header("Upload-Complete", "?0").send().await.unwrap();
    let url = h(&r, "location");
    let r = draft(Method::DELETE, &url, 6).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = draft(Method::HEAD, &url, 6).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // tus 1.0 still answers beside it.
    let r = client()
        .post(s.url("/api/tus/"))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(h(&r, "tus-resumable"), "1.0.0");
    s.stop().await;
}

#[tokio::test]
async fn an_unknown_upload_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(test_config(dir.path())).await;
    let r = draft(Method::HEAD, &s.url("/api/tus/0123456789abcdef0123456789abcdef"), 6).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    s.stop().await;
}

/// A comma-separated header of `r`, lowercased, as a list.
fn list(r: &reqwest::Response, name: &str) -> Vec<String> {
    h(r, name).split(',').map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect()
}

#[tokio::test]
async fn cors_lets_a_page_on_another_origin_speak_the_draft() {
    // Any origin: `open` mode (`local` answers loopback origins only).
    let (_dir, s) = TestServer::start_temp_with(|c| c.auth.mode = depot::config::AuthMode::Open).await;
    // What the draft's requests carry beyond the CORS-safelisted headers.
    let sent = [
        "upload-draft-interop-version",
        "upload-complete",
        "upload-incomplete",
        "upload-offset",
        "upload-length",
        "content-type",
        "content-disposition",
        "content-digest",
        "repr-digest",
    ];
    for (method, path) in
        [("POST", "/api/tus/"), ("PATCH", "/api/tus/x"), ("HEAD", "/api/tus/x"), ("DELETE", "/api/tus/x")]
    {
        let r = s.preflight(path, method, &sent.join(",")).await;
        assert!(list(&r, "access-control-allow-methods").contains(&method.to_ascii_lowercase()), "{method}");
        let allowed = list(&r, "access-control-allow-headers");
        for name in sent {
            assert!(allowed.contains(&name.to_string()), "{name} not allowed for {method}: {allowed:?}");
        }
    }

    // The answers' draft headers are there and readable by the page.
    let readable = |r: &reqwest::Response, names: &[&str]| {
        let exposed = list(r, "access-control-expose-headers");
        for name in names {
            assert!(r.headers().contains_key(*name), "no {name} in {:?}", r.headers());
            assert!(exposed.contains(&name.to_string()), "{name} not exposed: {exposed:?}");
        }
    };
    let r = draft(Method::POST, &s.url("/api/tus/"), 6)
        .header("Origin", common::ORIGIN)
        .header("Upload-Complete", "?0")
        .header("Upload-Length", "10")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let url = h(&r, "location");
    readable(
        &r,
        &[
            "location",
            "upload-draft-interop-version",
            "upload-complete",
            "upload-offset",
            "upload-length",
            "upload-limit",
        ],
    );
    let r = draft(Method::HEAD, &url, 6).header("Origin", common::ORIGIN).send().await.unwrap();
    readable(&r, &["upload-offset", "upload-complete", "upload-limit"]);
    let r = append(&url, 5, true).header("Origin", common::ORIGIN).body("world").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    readable(&r, &["upload-offset", "upload-complete", "depot-file-id"]);
    // Interop version 3 says it inverted.
    let r = draft(Method::POST, &s.url("/api/tus/"), 3)
        .header("Origin", common::ORIGIN)
        .header("Upload-Incomplete", "?0")
        .body("x")
        .send()
        .await
        .unwrap();
    readable(&r, &["upload-incomplete"]);
    // A problem's fields are in its body, which CORS lets a page read.
    let r = append(&url, 0, true).header("Origin", common::ORIGIN).body("x").send().await.unwrap();
    assert_eq!(h(&r, "access-control-allow-origin"), "*");
    assert_eq!(problem(r).await["type"].as_str().map(|t| t.contains("completed")), Some(true));
    s.stop().await;
}
