//! Malformed requests against the real server: every one is answered with a
//! 4xx and a JSON error body whose `code` is the status (tus answers carry
//! `Tus-Resumable` too), leaves the store's counters as they were, and
//! writes nothing outside the data directory. The server stays healthy.

mod common;

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::http::{OCTET, Params, TUS, piece_form, piece_params as params, prefixed, with, without};
use common::{TestServer, client, pseudo_random, small_chunks, test_config};
use depot::config::ByteSize;
use depot::store::ChunkId;
use depot::wire::ErrorBody;
use reqwest::multipart::{Form, Part};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::json;

/// The configured limits the cases run into.
const MAX_FILE: u64 = 256 << 10;
const MAX_PIECE: u64 = 64 << 10;
const MAX_PIECES: u32 = 1000;
const MAX_MISSING: usize = 16;
const MAX_CHUNK: u64 = 64 << 10;

/// The counters a refused request must not move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counters {
    files: u64,
    unique_chunks: u64,
    unique_bytes: u64,
    logical_bytes: u64,
}

async fn counters(s: &TestServer) -> Counters {
    let st = s.stats().await;
    Counters {
        files: st.files,
        unique_chunks: st.unique_chunks,
        unique_bytes: st.unique_bytes,
        logical_bytes: st.logical_bytes,
    }
}

struct Suite {
    s: TestServer,
    base: Counters,
    /// Every case: label, expected status, what came back.
    seen: Vec<(String, u16, String)>,
    failures: Vec<String>,
}

impl Suite {
    /// Cases against `s`, from its counters now.
    async fn new(s: TestServer) -> Suite {
        let base = counters(&s).await;
        Suite { s, base, seen: Vec::new(), failures: Vec::new() }
    }

    fn url(&self, path: &str) -> String {
        self.s.url(path)
    }

    fn tus(&self, method: Method, path: &str) -> RequestBuilder {
        common::http::tus(method, &self.url(path))
    }

    fn tus_patch(&self, path: &str, offset: &str) -> RequestBuilder {
        common::http::tus_patch(&self.url(path), offset)
    }

    async fn chunked(&self, p: &Params, data: Option<&[u8]>) -> Result<reqwest::Response, reqwest::Error> {
        client().post(self.url("/api/files/upload/chunked")).multipart(piece_form(p, data)).send().await
    }

    /// Sends a request and checks the answer: `want`, a JSON error body with
    /// `code == want`, `Tus-Resumable` on tus answers, counters unchanged.
    async fn case(&mut self, label: &str, want: u16, tus: bool, req: RequestBuilder) {
        let resp = req.send().await;
        self.check(label, want, tus, resp).await;
    }

    async fn check(
        &mut self,
        label: &str,
        want: u16,
        tus: bool,
        resp: Result<reqwest::Response, reqwest::Error>,
    ) {
        let mut problems = Vec::new();
        let got = match resp {
            Err(e) => {
                problems.push(format!("transport error: {e}"));
                "transport error".to_string()
            }
            Ok(r) => {
                let status = r.status().as_u16();
                let ctype =
                    r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                let tus_header =
                    r.headers().get("tus-resumable").and_then(|v| v.to_str().ok()).map(str::to_string);
                let range =
                    r.headers().get("content-range").and_then(|v| v.to_str().ok()).map(str::to_string);
                let body = r.bytes().await.unwrap_or_default();
                if status != want {
                    problems.push(format!("status {status}, expected {want}"));
                }
                if !(400..500).contains(&status) {
                    problems.push(format!("status {status} is not a 4xx"));
                }
                if !ctype.starts_with("application/json") {
                    problems.push(format!("content-type `{ctype}`"));
                }
                match serde_json::from_slice::<ErrorBody>(&body) {
                    Ok(e) => {
                        if e.code != status {
                            problems.push(format!("code {} in a {status} answer", e.code));
                        }
                        if e.error.is_empty() || e.message.is_empty() {
                            problems.push("empty error or message".into());
                        }
                    }
                    Err(_) => problems
                        .push(format!("body is not an error object: {:?}", String::from_utf8_lossy(&body))),
                }
                if tus && tus_header.as_deref() != Some(TUS) {
                    problems.push(format!("Tus-Resumable {tus_header:?}"));
                }
                if status == 416 && range.is_none() {
                    problems.push("416 without Content-Range".into());
                }
                format!("{status} {}", String::from_utf8_lossy(&body).chars().take(160).collect::<String>())
            }
        };
        let now = counters(&self.s).await;
        if now != self.base {
            problems.push(format!("counters moved: {:?} -> {now:?}", self.base));
            self.base = now;
        }
        if !problems.is_empty() {
            let text: String = problems.join("; ").chars().take(400).collect();
            self.failures.push(format!("{label}: {text}  [{got}]"));
        }
        self.seen.push((label.to_string(), want, got));
    }

    /// Prints every case and fails with the list of those that failed.
    fn report(&self) {
        for (label, want, got) in &self.seen {
            println!("{want}  {label:<50} -> {got}");
        }
        assert!(
            self.failures.is_empty(),
            "{} of {} cases failed:\n{}",
            self.failures.len(),
            self.seen.len(),
            self.failures.join("\n")
        );
    }
}

/// Lists a directory's entry names, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn malformed_requests_are_refused_cleanly() {
    let parent = tempfile::tempdir().unwrap();
    let data_dir = parent.path().join("data");
    let mut cfg = test_config(&data_dir);
    // Small chunks and limits, so that over-limit bodies stay small.
    cfg.chunking = small_chunks();
    cfg.limits.max_file_size = ByteSize(MAX_FILE);
    cfg.limits.max_piece_size = ByteSize(MAX_PIECE);
    cfg.limits.max_pieces = MAX_PIECES;
    cfg.limits.max_missing_query = MAX_MISSING;
    cfg.limits.max_chunk_size = ByteSize(MAX_CHUNK);
    let s = TestServer::start(cfg).await;

    // Something to point at: one file, one open tus upload of 10 bytes.
    // Shorter than the smallest chunk: one chunk.
    let content = pseudo_random(200, 7);
    let file = s.upload_raw("known.bin", &content).await;
    let known = s.manifest(&file.id).await.chunks[0].hash;
    let r = common::http::tus(Method::POST, &s.url("/api/tus/"))
        .header("Upload-Length", "10")
        .header("Upload-Metadata", format!("filename {}", B64.encode("ten.bin")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let tus_path = r.headers()["location"].to_str().unwrap().trim_start_matches(&s.base).to_string();

    let mut t = Suite::new(s).await;
    let unknown_file = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    let unknown_hash = ChunkId::of(b"never stored").to_string();
    let unknown_upload = "0123456789abcdef0123456789abcdef";

    // ---- seed chunked uploads (plain names: the precise status) ----
    let ok = params("1", "2", "10", "20", "bad-1", "a.bin");
    let ten = [7u8; 10];
    let r = t.chunked(&without(ok.clone(), "chunkNumber"), Some(&ten)).await;
    t.check("chunked: chunkNumber missing", 400, false, r).await;
    let r = t.chunked(&with(ok.clone(), "chunkNumber", "0"), Some(&ten)).await;
    t.check("chunked: chunkNumber 0", 400, false, r).await;
    let r = t.chunked(&with(ok.clone(), "chunkNumber", "-1"), Some(&ten)).await;
    t.check("chunked: chunkNumber negative", 400, false, r).await;
    let r = t.chunked(&with(ok.clone(), "chunkNumber", "99999999999999999999999"), Some(&ten)).await;
    t.check("chunked: chunkNumber huge", 400, false, r).await;
    let r = t.chunked(&with(ok.clone(), "chunkNumber", "4294967296"), Some(&ten)).await;
    t.check("chunked: chunkNumber past u32", 400, false, r).await;
    let r = t.chunked(&with(ok.clone(), "chunkNumber", "one"), Some(&ten)).await;
    t.check("chunked: chunkNumber non-numeric", 400, false, r).await;
    let r = t.chunked(&with(ok.clone(), "totalChunks", "0"), Some(&ten)).await;
    t.check("chunked: totalChunks 0", 400, false, r).await;
    let r = t.chunked(&with(ok.clone(), "chunkNumber", "3"), Some(&ten)).await;
    t.check("chunked: chunkNumber > totalChunks", 400, false, r).await;
    let r = t.chunked(&ok, Some(&[7u8; 5])).await;
    t.check("chunked: piece shorter than chunkSize", 400, false, r).await;
    let r = t.chunked(&ok, Some(&[7u8; 15])).await;
    t.check("chunked: piece longer than chunkSize", 400, false, r).await;
    let r = t.chunked(&with(ok.clone(), "currentChunkSize", "9"), Some(&ten)).await;
    t.check("chunked: currentChunkSize disagrees", 400, false, r).await;
    let r = t.chunked(&with(ok.clone(), "totalChunks", "5"), Some(&ten)).await;
    t.check("chunked: totalChunks cannot make totalSize", 400, false, r).await;
    let big = MAX_PIECE * 2;
    let p = params("1", "2", big.to_string(), (big * 2).to_string(), "bad-big", "big.bin");
    let r = t.chunked(&p, Some(&vec![1u8; big as usize])).await;
    t.check("chunked: piece over max_piece_size", 413, false, r).await;
    let p = params("1", "2", "1048576", "2097152", "bad-file", "f.bin");
    let r = t.chunked(&p, Some(&ten)).await;
    t.check("chunked: totalSize over max_file_size", 413, false, r).await;
    let p = params("1", (MAX_PIECES + 1).to_string(), "1", (MAX_PIECES + 1).to_string(), "bad-n", "n.bin");
    let r = t.chunked(&p, Some(&[1])).await;
    t.check("chunked: totalChunks over max_pieces", 413, false, r).await;
    let r = t.chunked(&with(ok.clone(), "chunkHash", &unknown_hash), Some(&ten)).await;
    t.check("chunked: wrong chunkHash", 422, false, r).await;
    let r = t.chunked(&with(ok.clone(), "chunkHash", &"zz".repeat(32)), Some(&ten)).await;
    t.check("chunked: non-hex chunkHash", 400, false, r).await;
    let r = t.chunked(&with(ok.clone(), "chunkHash", "abc123"), Some(&ten)).await;
    t.check("chunked: short chunkHash", 400, false, r).await;
    let r = t.chunked(&with(ok.clone(), "identifier", &"i".repeat(2000)), Some(&ten)).await;
    t.check("chunked: 2000-byte identifier", 400, false, r).await;
    let r = t.chunked(&with(ok.clone(), "filename", &"n".repeat(10 * 1024)), Some(&ten)).await;
    t.check("chunked: 10 KB filename", 400, false, r).await;
    let one = params("1", "1", "10", "10", "bad-name", "x");
    let r = t.chunked(&with(one.clone(), "filename", "../"), Some(&ten)).await;
    t.check("chunked: filename ../ (traversal to nothing)", 400, false, r).await;
    let r = t.chunked(&with(one.clone(), "filename", "/etc/.."), Some(&ten)).await;
    t.check("chunked: absolute filename /etc/..", 400, false, r).await;
    let r = t.chunked(&with(one.clone(), "filename", "a\0b.txt"), Some(&ten)).await;
    t.check("chunked: NUL in filename", 400, false, r).await;
    let r = t.chunked(&with(one.clone(), "filename", "\u{1b}[31mred.txt"), Some(&ten)).await;
    t.check("chunked: control character in filename", 400, false, r).await;
    let r = t.chunked(&with(one.clone(), "filename", &"n".repeat(300)), Some(&ten)).await;
    t.check("chunked: 300-byte filename", 400, false, r).await;
    let r = t.chunked(&ok, None).await;
    t.check("chunked: no file part", 400, false, r).await;
    let form = piece_form(&ok, Some(&ten)).part("file", Part::bytes(ten.to_vec()).file_name("again"));
    let r = client().post(t.url("/api/files/upload/chunked")).multipart(form).send().await;
    t.check("chunked: two file parts", 400, false, r).await;
    let mut body = Vec::new();
    for (k, v) in &ok {
        body.extend_from_slice(
            format!("--XB\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(
        b"--XB\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b\"\r\n\r\n0123",
    );
    let req = client()
        .post(t.url("/api/files/upload/chunked"))
        .header("Content-Type", "multipart/form-data; boundary=XB")
        .body(body);
    t.case("chunked: truncated multipart", 400, false, req).await;
    let req = client()
        .post(t.url("/api/files/upload/chunked"))
        .header("Content-Type", "text/plain")
        .body("chunkNumber=1");
    t.case("chunked: text/plain instead of multipart", 400, false, req).await;
    let req = client()
        .post(t.url("/api/files/upload/chunked"))
        .header("Content-Type", "multipart/form-data")
        .body("--x\r\n\r\n--x--\r\n");
    t.case("chunked: multipart without a boundary", 400, false, req).await;
    let req = client().get(t.url("/api/files/upload/chunked?chunkNumber=0&totalChunks=1&chunkSize=10&totalSize=10&identifier=q&filename=q"));
    t.case("chunked test: chunkNumber 0", 400, false, req).await;
    let req = client().get(t.url(
        "/api/files/upload/chunked?chunkNumber=1&totalChunks=1&chunkSize=10&totalSize=10&identifier=q&filename=q&chunkHash=xyz",
    ));
    t.case("chunked test: non-hex chunkHash", 400, false, req).await;
    let req = client().get(t.url("/api/files/upload/chunked?identifier=q"));
    t.case("chunked test: no parameters", 400, false, req).await;

    // The browser libraries get 415 for a permanent problem.
    let r = t.chunked(&prefixed("resumable", &with(ok.clone(), "chunkNumber", "0")), Some(&ten)).await;
    t.check("resumable.js: chunk number 0", 415, false, r).await;
    let r =
        t.chunked(&prefixed("resumable", &with(ok.clone(), "chunkHash", &unknown_hash)), Some(&ten)).await;
    t.check("resumable.js: wrong hash", 415, false, r).await;
    let r = t.chunked(&prefixed("flow", &ok), Some(&[7u8; 3])).await;
    t.check("flow.js: piece size disagrees", 415, false, r).await;
    let r = t.chunked(&prefixed("flow", &with(ok.clone(), "filename", "../")), Some(&ten)).await;
    t.check("flow.js: filename ../", 415, false, r).await;

    // ---- whole-file uploads ----
    let req = client().post(t.url("/api/files/upload")).body("abc");
    t.case("upload: raw body without filename", 400, false, req).await;
    let req = client().post(t.url("/api/files/upload?filename=..")).body("abc");
    t.case("upload: filename ..", 400, false, req).await;
    let req = client().post(t.url("/api/files/upload?filename=%2E%2E%2F%2E%2E%2F")).body("abc");
    t.case("upload: filename ../../ (encoded)", 400, false, req).await;
    let req = client().post(t.url("/api/files/upload?filename=a%00b")).body("abc");
    t.case("upload: NUL in filename", 400, false, req).await;
    let req = client().post(t.url("/api/files/upload?filename=tab%09.txt")).body("abc");
    t.case("upload: tab in filename", 400, false, req).await;
    let req =
        client().post(t.url(&format!("/api/files/upload?filename={}", "x".repeat(10 * 1024)))).body("abc");
    t.case("upload: 10 KB filename", 400, false, req).await;
    let req =
        client().post(t.url("/api/files/upload?filename=big.bin")).body(vec![0u8; MAX_FILE as usize + 1]);
    t.case("upload: over max_file_size", 413, false, req).await;
    let form = Form::new().part("file", Part::bytes(b"abc".to_vec()));
    let req = client().post(t.url("/api/files/upload")).multipart(form);
    t.case("upload: file part without a filename", 400, false, req).await;
    let form = Form::new().text("other", "x");
    let req = client().post(t.url("/api/files/upload")).multipart(form);
    t.case("upload: multipart without a file part", 400, false, req).await;
    let req = client()
        .post(t.url("/api/files/upload"))
        .header("Content-Type", "multipart/form-data; boundary=QQ")
        .body("--QQ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.txt\"\r\n\r\nabc");
    t.case("upload: truncated multipart", 400, false, req).await;

    // ---- downloads, Range, listing ----
    let req = client().get(t.url(&format!("/api/files/{}", file.id))).header("Range", "bytes=200-");
    t.case("download: Range past the end", 416, false, req).await;
    let req = client().get(t.url(&format!("/api/files/{}", file.id))).header("Range", "bytes=-0");
    t.case("download: Range suffix of 0 bytes", 416, false, req).await;
    let req = client().get(t.url(&format!("/api/files/{unknown_file}"))).header("Range", "bytes=0-10");
    t.case("download: Range on an unknown file", 404, false, req).await;
    let req = client().get(t.url("/api/files/..%2F..%2Fetc%2Fpasswd"));
    t.case("download: traversal as a file id", 404, false, req).await;
    let req = client().get(t.url(&format!("/api/files/{unknown_file}/info")));
    t.case("info: unknown file id", 404, false, req).await;
    let req = client().get(t.url(&format!("/api/files/{unknown_file}/manifest")));
    t.case("manifest: unknown file id", 404, false, req).await;
    let req = client().delete(t.url("/api/files/not-an-id"));
    t.case("delete: malformed file id", 404, false, req).await;
    let req = client().get(t.url("/api/files?limit=0"));
    t.case("list: limit 0", 400, false, req).await;
    let req = client().get(t.url("/api/files?limit=lots"));
    t.case("list: limit not a number", 400, false, req).await;
    let req = client().get(t.url("/api/files?cursor=%2E%2E%2F"));
    t.case("list: malformed cursor", 400, false, req).await;

    // ---- the dedup protocol ----
    let req = client()
        .post(t.url("/api/files"))
        .json(&json!({"name": "x.bin", "size": 10, "chunks": [{"hash": unknown_hash, "len": 10}]}));
    t.case("commit: chunks that do not exist", 409, false, req).await;
    let req = client().post(t.url("/api/files")).json(&json!({"name": 5, "chunks": "none"}));
    t.case("commit: JSON of the wrong shape", 400, false, req).await;
    let req = client()
        .post(t.url("/api/files"))
        .json(&json!({"name": "x", "size": 1, "chunks": [], "extra": true}));
    t.case("commit: unknown field", 400, false, req).await;
    let req =
        client().post(t.url("/api/files")).header("Content-Type", "application/json").body("{\"name\": ");
    t.case("commit: truncated JSON", 400, false, req).await;
    let req = client().post(t.url("/api/files")).body("{}");
    t.case("commit: no JSON content type", 415, false, req).await;
    let req = client()
        .post(t.url("/api/files"))
        .json(&json!({"name": "x.bin", "size": 199, "chunks": [{"hash": known, "len": 200}]}));
    t.case("commit: size disagrees with the chunks", 400, false, req).await;
    let req = client()
        .post(t.url("/api/files"))
        .json(&json!({"name": "x.bin", "size": 199, "chunks": [{"hash": known, "len": 199}]}));
    t.case("commit: chunk length disagrees with the chunk", 400, false, req).await;
    let req = client()
        .post(t.url("/api/files"))
        .json(&json!({"name": "../", "size": 200, "chunks": [{"hash": known, "len": 200}]}));
    t.case("commit: name ../", 400, false, req).await;
    let req = client()
        .post(t.url("/api/files"))
        .json(&json!({"name": "x", "size": 1, "chunks": [{"hash": "zz", "len": 1}]}));
    t.case("commit: non-hex chunk hash", 400, false, req).await;
    let req = client().post(t.url("/api/chunks/missing")).json(&json!({"hashes": ["not hex", unknown_hash]}));
    t.case("missing: non-hex hashes", 400, false, req).await;
    let req = client().post(t.url("/api/chunks/missing")).json(&json!({"hashes": unknown_hash}));
    t.case("missing: hashes not a list", 400, false, req).await;
    let req = client()
        .post(t.url("/api/chunks/missing"))
        .json(&json!({"hashes": vec![&unknown_hash; MAX_MISSING + 1]}));
    t.case("missing: more hashes than allowed", 413, false, req).await;
    let req = client().put(t.url(&format!("/api/chunks/{unknown_hash}"))).body("not those bytes");
    t.case("put chunk: wrong hash", 422, false, req).await;
    let req = client().put(t.url("/api/chunks/..%2F..%2Fetc%2Fpasswd")).body("x");
    t.case("put chunk: traversal as a hash", 400, false, req).await;
    let req = client().put(t.url(&format!("/api/chunks/{}", "g".repeat(64)))).body("x");
    t.case("put chunk: non-hex hash", 400, false, req).await;
    let req = client()
        .put(t.url(&format!("/api/chunks/{unknown_hash}")))
        .header("Content-Encoding", "gzip")
        .body("x");
    t.case("put chunk: unsupported Content-Encoding", 415, false, req).await;
    let req =
        client().put(t.url(&format!("/api/chunks/{unknown_hash}"))).body(vec![0u8; MAX_CHUNK as usize + 1]);
    t.case("put chunk: over max_chunk_size", 413, false, req).await;
    // A zstd bomb: well under a kilobyte on the wire, 16 MiB decoded, 256
    // times the largest chunk.
    let zeros = vec![0u8; 16 << 20];
    let bomb = zstd::bulk::compress(&zeros, 3).unwrap();
    assert!(bomb.len() < 4 << 10, "{}", bomb.len());
    let bomb_hash = ChunkId::of(&zeros);
    let req = client()
        .put(t.url(&format!("/api/chunks/{bomb_hash}")))
        .header("Content-Encoding", "zstd")
        .body(bomb.clone());
    t.case("put chunk: zstd bomb", 413, false, req).await;
    let req = client()
        .put(t.url(&format!("/api/chunks/{unknown_hash}")))
        .header("Content-Encoding", "zstd")
        .body(bomb);
    t.case("put chunk: zstd bomb under another name", 413, false, req).await;
    let req = client()
        .put(t.url(&format!("/api/chunks/{unknown_hash}")))
        .header("Content-Encoding", "zstd")
        .body("definitely not a zstd frame");
    t.case("put chunk: zstd garbage", 400, false, req).await;
    let frame = zstd::bulk::compress(b"some bytes", 3).unwrap();
    let req = client()
        .put(t.url(&format!("/api/chunks/{unknown_hash}")))
        .header("Content-Encoding", "zstd")
        .body(frame[..frame.len() - 2].to_vec());
    t.case("put chunk: truncated zstd frame", 400, false, req).await;
    let req = client().get(t.url(&format!("/api/chunks/{unknown_hash}")));
    t.case("get chunk: unknown hash", 404, false, req).await;

    // ---- tus ----
    let req = client().post(t.url("/api/tus/")).header("Upload-Length", "5");
    t.case("tus create: no Tus-Resumable", 412, true, req).await;
    let req = client().post(t.url("/api/tus/")).header("Tus-Resumable", "0.2.2").header("Upload-Length", "5");
    t.case("tus create: unsupported version", 412, true, req).await;
    let req = t.tus(Method::POST, "/api/tus/");
    t.case("tus create: no length", 400, true, req).await;
    let req = t.tus(Method::POST, "/api/tus/").header("Upload-Length", "-5");
    t.case("tus create: negative length", 400, true, req).await;
    let req = t.tus(Method::POST, "/api/tus/").header("Upload-Length", "99999999999999999999999");
    t.case("tus create: length past u64", 400, true, req).await;
    let req =
        t.tus(Method::POST, "/api/tus/").header("Upload-Length", "5").header("Upload-Defer-Length", "1");
    t.case("tus create: length and deferred length", 400, true, req).await;
    let req = t.tus(Method::POST, "/api/tus/").header("Upload-Defer-Length", "2");
    t.case("tus create: Upload-Defer-Length 2", 400, true, req).await;
    let req = t.tus(Method::POST, "/api/tus/").header("Upload-Length", (MAX_FILE + 1).to_string());
    t.case("tus create: over max_file_size", 413, true, req).await;
    let req = t
        .tus(Method::POST, "/api/tus/")
        .header("Upload-Length", "5")
        .header("Upload-Metadata", "filename !!!not-base64");
    t.case("tus create: broken base64 metadata", 400, true, req).await;
    let req = t
        .tus(Method::POST, "/api/tus/")
        .header("Upload-Length", "5")
        .header("Upload-Metadata", "filename YQ==,filename Yg==");
    t.case("tus create: duplicate metadata key", 400, true, req).await;
    let req = t
        .tus(Method::POST, "/api/tus/")
        .header("Upload-Length", "5")
        .header("Upload-Metadata", format!("filename {}", B64.encode("../..")));
    t.case("tus create: filename ../..", 400, true, req).await;
    let req = t
        .tus(Method::POST, "/api/tus/")
        .header("Upload-Length", "5")
        .header("Upload-Metadata", format!("filename {}", B64.encode("evil\0.txt")));
    t.case("tus create: NUL in filename", 400, true, req).await;
    let req = t
        .tus(Method::POST, "/api/tus/")
        .header("Upload-Length", "5")
        .header("Upload-Metadata", format!("filename {}", B64.encode("n".repeat(48 * 1024))));
    t.case("tus create: 64 KB metadata header", 400, true, req).await;
    let req = t.tus(Method::POST, "/api/tus/").header("Upload-Concat", "final;/api/tus/../../etc");
    t.case("tus create: concat of a malformed id", 404, true, req).await;
    let req =
        t.tus(Method::POST, "/api/tus/").header("Upload-Concat", format!("final;/api/tus/{unknown_upload}"));
    t.case("tus create: concat of an unknown upload", 404, true, req).await;
    let req = t.tus(Method::POST, "/api/tus/").header("Upload-Length", "5").header("Upload-Concat", "whole");
    t.case("tus create: Upload-Concat garbage", 400, true, req).await;
    let req = t.tus_patch(&tus_path, "3").body("abc");
    t.case("tus patch: offset mismatch", 409, true, req).await;
    let req = t.tus_patch(&tus_path, "0").body(vec![1u8; 11]);
    t.case("tus patch: past Upload-Length", 413, true, req).await;
    let req = t
        .tus(Method::PATCH, &tus_path)
        .header("Content-Type", "application/octet-stream")
        .header("Upload-Offset", "0")
        .body("abc");
    t.case("tus patch: wrong content type", 415, true, req).await;
    let req = t.tus(Method::PATCH, &tus_path).header("Content-Type", OCTET).body("abc");
    t.case("tus patch: no Upload-Offset", 400, true, req).await;
    let req = t.tus_patch(&tus_path, "zero").body("abc");
    t.case("tus patch: non-numeric Upload-Offset", 400, true, req).await;
    let req = t
        .tus_patch(&tus_path, "0")
        .header("Upload-Checksum", "sha256 LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=")
        .body("abc");
    t.case("tus patch: unsupported checksum algorithm", 400, true, req).await;
    let req = t.tus_patch(&tus_path, "0").header("Upload-Checksum", "sha1 AAAA").body("abc");
    t.case("tus patch: checksum of the wrong length", 400, true, req).await;
    let req = t
        .tus_patch(&tus_path, "0")
        .header("Upload-Checksum", format!("md5 {}", B64.encode([0u8; 16])))
        .body(vec![5u8; 10]);
    t.case("tus patch: checksum mismatch", 460, true, req).await;
    let req = t.tus_patch(&format!("/api/tus/{unknown_upload}"), "0").body("abc");
    t.case("tus patch: unknown upload", 404, true, req).await;
    let req = t.tus_patch("/api/tus/..%2F..%2Fetc", "0").body("abc");
    t.case("tus patch: traversal as an upload id", 404, true, req).await;
    let req = t.tus(Method::DELETE, &format!("/api/tus/{unknown_upload}"));
    t.case("tus delete: unknown upload", 404, true, req).await;
    let req = client()
        .request(Method::PATCH, t.url(&tus_path))
        .header("Content-Type", OCTET)
        .header("Upload-Offset", "0")
        .body("abc");
    t.case("tus patch: no Tus-Resumable", 412, true, req).await;

    // ---- anything else ----
    let req = client().get(t.url("/api/nothing/here"));
    t.case("unknown endpoint", 404, false, req).await;
    let req = client()
        .get(t.url(&format!("/api/files/upload/chunked?chunkNumber=1&identifier={}", "q".repeat(32 << 10))));
    t.case("chunked test: 32 KB query string", 400, false, req).await;
    let req = client().get(t.url("/api/files/upload/chunked?chunkNumber=1&totalChunks=1&chunkSize=10&totalSize=10&identifier=q&filename=%2E%2E"));
    t.case("chunked test: filename ..", 400, false, req).await;

    // The tus upload is untouched by all of that.
    let r = t.tus(Method::HEAD, &tus_path).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["upload-offset"], "0");

    t.report();
    assert!(t.seen.len() >= 40, "only {} cases", t.seen.len());

    // Still healthy, and the known file is intact.
    let r = client().get(t.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(t.s.download(&file.id).await, content);
    t.s.stop().await;

    // Nothing was written outside the data directory.
    assert_eq!(entries(parent.path()), vec!["data"]);
    assert_eq!(entries(&data_dir), vec!["meta", "objects", "uploads"]);
}

/// Errors produced outside the handlers, by axum's extractors and router,
/// are JSON too. Request heads that hyper refuses before routing (431) keep
/// hyper's own empty answer: the status is checked, and the server lives on.
#[tokio::test]
async fn errors_outside_the_handlers_are_json() {
    let parent = tempfile::tempdir().unwrap();
    let s = TestServer::start(test_config(&parent.path().join("data"))).await;
    let mut t = Suite::new(s).await;
    let req = client().get(t.url("/api/chunks/%FF%FE"));
    t.case("get chunk: path segment that is not UTF-8", 400, false, req).await;
    let req = client().put(t.url("/api/chunks/%FF%FE")).body("x");
    t.case("put chunk: path segment that is not UTF-8", 400, false, req).await;
    let req = client().get(t.url("/api/files/%C0%AF"));
    t.case("download: path segment that is not UTF-8", 400, false, req).await;
    let req = t.tus_patch("/api/tus/%FF", "0").body("x");
    t.case("tus patch: path segment that is not UTF-8", 400, true, req).await;
    let req = client().put(t.url("/api/files")).body("x");
    t.case("method not allowed", 405, false, req).await;
    let req = client().delete(t.url("/api/tus/"));
    t.case("tus: method not allowed", 405, true, req).await;
    t.report();
    let r = client().get(t.url("/api/files")).header("X-Padding", "p".repeat(1 << 20)).send().await;
    assert!(r.is_err() || r.unwrap().status() == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let mut req = client().get(t.url("/api/files"));
    for i in 0..200 {
        req = req.header(format!("x-h{i}"), "v");
    }
    let r = req.send().await;
    assert!(r.is_err() || r.unwrap().status() == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(counters(&t.s).await, t.base);
    assert_eq!(client().get(t.url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
    t.s.stop().await;
}

/// A traversal name with a real file part is not refused: it is reduced to
/// its last component, and nothing lands outside the data directory.
#[tokio::test]
async fn traversal_names_are_reduced_to_their_last_component() {
    let parent = tempfile::tempdir().unwrap();
    let data_dir = parent.path().join("data");
    let s = TestServer::start(test_config(&data_dir)).await;
    let names = [
        ("../../../../etc/passwd", "passwd"),
        ("/etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("a/../../b.txt", "b.txt"),
    ];
    for (i, (name, want)) in names.iter().enumerate() {
        let body = format!("content {i}");
        let url =
            s.url(&format!("/api/files/upload?filename={}", name.replace('/', "%2F").replace('\\', "%5C")));
        let r = client().post(url).body(body.clone()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{name}");
        let f: depot::wire::FileInfo = r.json().await.unwrap();
        assert_eq!(&f.name, want, "{name}");
        let p = params("1", "1", "100", body.len().to_string(), &format!("t{i}"), name);
        let r = s.post_piece(piece_form(&p, Some(body.as_bytes()))).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{name}");
        let done: serde_json::Value = r.json().await.unwrap();
        assert_eq!(done["file"]["name"], *want, "{name} through the chunked upload");
    }
    assert_eq!(counters(&s).await.files, 2 * names.len() as u64);
    s.stop().await;
    assert_eq!(entries(parent.path()), vec!["data"]);
    assert_eq!(entries(&data_dir), vec!["meta", "objects", "uploads"]);
}
