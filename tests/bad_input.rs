//! Malformed requests against the real server: every one is answered with a
//! 4xx and a JSON error body whose `code` is the status (tus answers carry
//! `Tus-Resumable` too), leaves the store's counters as they were, and
//! writes nothing outside the data directory. The server stays healthy.

mod common;

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::http::{
    OCTET, Params, TUS, field, handmade_multipart, piece_form, piece_params as params, prefixed, with,
    without,
};
use common::{TestServer, client, small_chunks};
use depot::config::ByteSize;
use depot::store::ChunkId;
use depot::testdata::pseudo_random;
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

/// A case: its label, the status it must get and the request.
type Case<'a> = (&'a str, u16, RequestBuilder);

const CHUNKED: &str = "/api/files/upload/chunked";

impl Suite {
    /// Cases against `s`, from its counters now.
    async fn new(s: TestServer) -> Suite {
        let base = counters(&s).await;
        Suite { s, base, seen: Vec::new(), failures: Vec::new() }
    }

    fn url(&self, path: &str) -> String {
        self.s.url(path)
    }

    fn get(&self, path: &str) -> RequestBuilder {
        client().get(self.url(path))
    }

    fn post(&self, path: &str) -> RequestBuilder {
        client().post(self.url(path))
    }

    fn put(&self, path: &str) -> RequestBuilder {
        client().put(self.url(path))
    }

    /// `POST path` with a body of the given content type.
    fn post_as(&self, path: &str, content_type: &str, body: impl Into<reqwest::Body>) -> RequestBuilder {
        self.post(path).header("Content-Type", content_type).body(body)
    }

    /// A piece of a chunked upload: `p` as text fields and `data`, if any,
    /// as the file part.
    fn piece(&self, p: &Params, data: Option<&[u8]>) -> RequestBuilder {
        self.post(CHUNKED).multipart(piece_form(p, data))
    }

    fn tus(&self, method: Method, path: &str) -> RequestBuilder {
        common::http::tus(method, &self.url(path))
    }

    fn tus_patch(&self, path: &str, offset: &str) -> RequestBuilder {
        common::http::tus_patch(&self.url(path), offset)
    }

    /// `POST /api/tus/` with `Tus-Resumable` and `Upload-Length: 5`.
    fn tus_create5(&self) -> RequestBuilder {
        self.tus(Method::POST, "/api/tus/").header("Upload-Length", "5")
    }

    /// Sends each case and checks its answer: the expected status, a JSON
    /// error body with `code` equal to it, `Tus-Resumable` on tus answers
    /// (`tus`), counters unchanged.
    async fn cases(&mut self, tus: bool, cases: Vec<Case<'_>>) {
        for (label, want, req) in cases {
            let resp = req.send().await;
            self.check(label, want, tus, resp).await;
        }
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
                let header =
                    |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
                let (ctype, tus_header, range) = (
                    header("content-type").unwrap_or_default(),
                    header("tus-resumable"),
                    header("content-range"),
                );
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

/// Asserts that the temp dir holds the data dir and the data dir holds
/// only what the server makes: nothing was written elsewhere.
fn assert_nothing_outside(parent: &Path) {
    assert_eq!(entries(parent), vec!["data"]);
    assert_eq!(entries(&parent.join("data")), vec!["meta", "objects", "uploads"]);
}

#[tokio::test]
async fn malformed_requests_are_refused_cleanly() {
    // Small chunks and limits, so that over-limit bodies stay small.
    let (parent, s) = TestServer::start_in_workdir(|cfg| {
        cfg.chunking = small_chunks();
        (cfg.limits.max_file_size, cfg.limits.max_chunk_size) = (ByteSize(MAX_FILE), ByteSize(MAX_CHUNK));
        (cfg.limits.max_piece_size, cfg.limits.max_pieces) = (ByteSize(MAX_PIECE), MAX_PIECES);
        cfg.limits.max_missing_query = MAX_MISSING;
    })
    .await;

    // Something to point at: one file, one open tus upload of 10 bytes.
    // Shorter than the smallest chunk: one chunk.
    let content = pseudo_random(200, 7);
    let file = s.upload_raw("known.bin", &content).await;
    let known = s.manifest(&file.id).await.chunks[0].hash;
    let meta = format!("filename {}", B64.encode("ten.bin"));
    let tus_headers = [("Tus-Resumable", TUS), ("Upload-Length", "10"), ("Upload-Metadata", &meta)];
    let r = s.send(Method::POST, "/api/tus/", &tus_headers).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let tus_path = r.headers()["location"].to_str().unwrap().trim_start_matches(&s.base).to_string();

    let mut t = Suite::new(s).await;
    let unknown_file = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    let unknown_hash = ChunkId::of(b"never stored").to_string();
    let unknown_upload = "0123456789abcdef0123456789abcdef";

    // ---- seed chunked uploads (plain names: the precise status) ----
    let ok = params("1", "2", "10", "20", "bad-1", "a.bin");
    let one = params("1", "1", "10", "10", "bad-name", "x");
    let ten = [7u8; 10];
    let (zz, long_id, name_10k, name_300) =
        ("zz".repeat(32), "i".repeat(2000), "n".repeat(10 * 1024), "n".repeat(300));
    let mut cases =
        vec![("chunked: chunkNumber missing", 400, t.piece(&without(ok.clone(), "chunkNumber"), Some(&ten)))];
    // One parameter of a good piece changed.
    for (label, want, base, key, value) in [
        ("chunked: chunkNumber 0", 400, &ok, "chunkNumber", "0"),
        ("chunked: chunkNumber negative", 400, &ok, "chunkNumber", "-1"),
        ("chunked: chunkNumber huge", 400, &ok, "chunkNumber", "99999999999999999999999"),
        ("chunked: chunkNumber past u32", 400, &ok, "chunkNumber", "4294967296"),
        ("chunked: chunkNumber non-numeric", 400, &ok, "chunkNumber", "one"),
        ("chunked: totalChunks 0", 400, &ok, "totalChunks", "0"),
        ("chunked: chunkNumber > totalChunks", 400, &ok, "chunkNumber", "3"),
        ("chunked: currentChunkSize disagrees", 400, &ok, "currentChunkSize", "9"),
        ("chunked: totalChunks cannot make totalSize", 400, &ok, "totalChunks", "5"),
        ("chunked: wrong chunkHash", 422, &ok, "chunkHash", &unknown_hash),
        ("chunked: non-hex chunkHash", 400, &ok, "chunkHash", &zz),
        ("chunked: short chunkHash", 400, &ok, "chunkHash", "abc123"),
        ("chunked: 2000-byte identifier", 400, &ok, "identifier", &long_id),
        ("chunked: 10 KB filename", 400, &ok, "filename", &name_10k),
        ("chunked: filename ../ (traversal to nothing)", 400, &one, "filename", "../"),
        ("chunked: absolute filename /etc/..", 400, &one, "filename", "/etc/.."),
        ("chunked: NUL in filename", 400, &one, "filename", "a\0b.txt"),
        ("chunked: control character in filename", 400, &one, "filename", "\u{1b}[31mred.txt"),
        ("chunked: 300-byte filename", 400, &one, "filename", &name_300),
    ] {
        cases.push((label, want, t.piece(&with(base.clone(), key, value), Some(&ten))));
    }
    let big = MAX_PIECE * 2;
    let over_piece = params("1", "2", big, big * 2, "bad-big", "big.bin");
    let over_file = params("1", "2", "1048576", "2097152", "bad-file", "f.bin");
    let over_count = params("1", MAX_PIECES + 1, "1", MAX_PIECES + 1, "bad-n", "n.bin");
    let two_files = piece_form(&ok, Some(&ten)).part("file", Part::bytes(ten.to_vec()).file_name("again"));
    let mut fields: Vec<(String, &[u8])> = ok.iter().map(|(k, v)| (field(k), v.as_bytes())).collect();
    fields.push((format!("{}; filename=\"b\"", field("file")), b"0123"));
    let truncated = handmade_multipart("XB", &fields, false);
    let test_query = |n: u32| format!("chunkNumber={n}&totalChunks=1&chunkSize=10&totalSize=10&identifier=q");
    cases.extend([
        ("chunked: piece shorter than chunkSize", 400, t.piece(&ok, Some(&[7u8; 5]))),
        ("chunked: piece longer than chunkSize", 400, t.piece(&ok, Some(&[7u8; 15]))),
        ("chunked: piece over max_piece_size", 413, t.piece(&over_piece, Some(&vec![1u8; big as usize]))),
        ("chunked: totalSize over max_file_size", 413, t.piece(&over_file, Some(&ten))),
        ("chunked: totalChunks over max_pieces", 413, t.piece(&over_count, Some(&[1]))),
        ("chunked: no file part", 400, t.piece(&ok, None)),
        ("chunked: two file parts", 400, t.post(CHUNKED).multipart(two_files)),
        (
            "chunked: truncated multipart",
            400,
            t.post_as(CHUNKED, "multipart/form-data; boundary=XB", truncated),
        ),
        ("chunked: text/plain instead of multipart", 400, t.post_as(CHUNKED, "text/plain", "chunkNumber=1")),
        (
            "chunked: multipart without a boundary",
            400,
            t.post_as(CHUNKED, "multipart/form-data", "--x\r\n\r\n--x--\r\n"),
        ),
        ("chunked test: chunkNumber 0", 400, t.get(&format!("{CHUNKED}?{}&filename=q", test_query(0)))),
        (
            "chunked test: non-hex chunkHash",
            400,
            t.get(&format!("{CHUNKED}?{}&filename=q&chunkHash=xyz", test_query(1))),
        ),
        ("chunked test: no parameters", 400, t.get(&format!("{CHUNKED}?identifier=q"))),
    ]);
    t.cases(false, cases).await;

    // The browser libraries get 415 for a permanent problem.
    let resumable = |k: &str, v: &str| prefixed("resumable", &with(ok.clone(), k, v));
    let cases = vec![
        ("resumable.js: chunk number 0", 415, t.piece(&resumable("chunkNumber", "0"), Some(&ten))),
        ("resumable.js: wrong hash", 415, t.piece(&resumable("chunkHash", &unknown_hash), Some(&ten))),
        ("flow.js: piece size disagrees", 415, t.piece(&prefixed("flow", &ok), Some(&[7u8; 3]))),
        (
            "flow.js: filename ../",
            415,
            t.piece(&prefixed("flow", &with(ok.clone(), "filename", "../")), Some(&ten)),
        ),
    ];
    t.cases(false, cases).await;

    // ---- whole-file uploads ----
    let upload = |query: &str| t.post(&format!("/api/files/upload{query}")).body("abc");
    let name_10k = format!("?filename={}", "x".repeat(10 * 1024));
    let over_max = vec![0u8; MAX_FILE as usize + 1];
    let unnamed = Form::new().part("file", Part::bytes(b"abc".to_vec()));
    let truncated =
        handmade_multipart("QQ", &[(format!("{}; filename=\"t.txt\"", field("file")), b"abc")], false);
    let cases = vec![
        ("upload: raw body without filename", 400, upload("")),
        ("upload: filename ..", 400, upload("?filename=..")),
        ("upload: filename ../../ (encoded)", 400, upload("?filename=%2E%2E%2F%2E%2E%2F")),
        ("upload: NUL in filename", 400, upload("?filename=a%00b")),
        ("upload: tab in filename", 400, upload("?filename=tab%09.txt")),
        ("upload: 10 KB filename", 400, upload(&name_10k)),
        ("upload: over max_file_size", 413, t.post("/api/files/upload?filename=big.bin").body(over_max)),
        ("upload: file part without a filename", 400, t.post("/api/files/upload").multipart(unnamed)),
        (
            "upload: multipart without a file part",
            400,
            t.post("/api/files/upload").multipart(Form::new().text("other", "x")),
        ),
        (
            "upload: truncated multipart",
            400,
            t.post_as("/api/files/upload", "multipart/form-data; boundary=QQ", truncated),
        ),
    ];
    t.cases(false, cases).await;

    // ---- downloads, Range, listing ----
    let range = |id: &str, r: &str| t.get(&format!("/api/files/{id}")).header("Range", r.to_string());
    let cases = vec![
        ("download: Range past the end", 416, range(&file.id, "bytes=200-")),
        ("download: Range suffix of 0 bytes", 416, range(&file.id, "bytes=-0")),
        ("download: Range on an unknown file", 404, range(unknown_file, "bytes=0-10")),
        ("download: traversal as a file id", 404, t.get("/api/files/..%2F..%2Fetc%2Fpasswd")),
        ("info: unknown file id", 404, t.get(&format!("/api/files/{unknown_file}/info"))),
        ("manifest: unknown file id", 404, t.get(&format!("/api/files/{unknown_file}/manifest"))),
        ("delete: malformed file id", 404, client().delete(t.url("/api/files/not-an-id"))),
        ("list: limit 0", 400, t.get("/api/files?limit=0")),
        ("list: limit not a number", 400, t.get("/api/files?limit=lots")),
        ("list: malformed cursor", 400, t.get("/api/files?cursor=%2E%2E%2F")),
    ];
    t.cases(false, cases).await;

    // ---- the dedup protocol ----
    let commit = |body: serde_json::Value| t.post("/api/files").json(&body);
    let missing = |body: serde_json::Value| t.post("/api/chunks/missing").json(&body);
    let chunk = format!("/api/chunks/{unknown_hash}");
    let too_many = vec![&unknown_hash; MAX_MISSING + 1];
    let cases = vec![
        (
            "commit: chunks that do not exist",
            409,
            commit(json!({"name": "x.bin", "size": 10, "chunks": [{"hash": unknown_hash, "len": 10}]})),
        ),
        ("commit: JSON of the wrong shape", 400, commit(json!({"name": 5, "chunks": "none"}))),
        ("commit: unknown field", 400, commit(json!({"name": "x", "size": 1, "chunks": [], "extra": true}))),
        ("commit: truncated JSON", 400, t.post_as("/api/files", "application/json", "{\"name\": ")),
        ("commit: no JSON content type", 415, t.post("/api/files").body("{}")),
        (
            "commit: size disagrees with the chunks",
            400,
            commit(json!({"name": "x.bin", "size": 199, "chunks": [{"hash": known, "len": 200}]})),
        ),
        (
            "commit: chunk length disagrees with the chunk",
            400,
            commit(json!({"name": "x.bin", "size": 199, "chunks": [{"hash": known, "len": 199}]})),
        ),
        (
            "commit: name ../",
            400,
            commit(json!({"name": "../", "size": 200, "chunks": [{"hash": known, "len": 200}]})),
        ),
        (
            "commit: non-hex chunk hash",
            400,
            commit(json!({"name": "x", "size": 1, "chunks": [{"hash": "zz", "len": 1}]})),
        ),
        ("missing: non-hex hashes", 400, missing(json!({"hashes": ["not hex", unknown_hash]}))),
        ("missing: hashes not a list", 400, missing(json!({"hashes": unknown_hash}))),
        ("missing: more hashes than allowed", 413, missing(json!({"hashes": too_many}))),
        ("put chunk: wrong hash", 422, t.put(&chunk).body("not those bytes")),
        ("put chunk: traversal as a hash", 400, t.put("/api/chunks/..%2F..%2Fetc%2Fpasswd").body("x")),
        ("put chunk: non-hex hash", 400, t.put(&format!("/api/chunks/{}", "g".repeat(64))).body("x")),
        (
            "put chunk: unsupported Content-Encoding",
            415,
            t.put(&chunk).header("Content-Encoding", "gzip").body("x"),
        ),
        ("put chunk: over max_chunk_size", 413, t.put(&chunk).body(vec![0u8; MAX_CHUNK as usize + 1])),
    ];
    t.cases(false, cases).await;
    // A zstd bomb: well under a kilobyte on the wire, 16 MiB decoded, 256
    // times the largest chunk.
    let zeros = vec![0u8; 16 << 20];
    let bomb = zstd::bulk::compress(&zeros, 3).unwrap();
    assert!(bomb.len() < 4 << 10, "{}", bomb.len());
    let zstd_put = |path: &str, body: Vec<u8>| t.put(path).header("Content-Encoding", "zstd").body(body);
    let frame = zstd::bulk::compress(b"some bytes", 3).unwrap();
    let cases = vec![
        (
            "put chunk: zstd bomb",
            413,
            zstd_put(&format!("/api/chunks/{}", ChunkId::of(&zeros)), bomb.clone()),
        ),
        ("put chunk: zstd bomb under another name", 413, zstd_put(&chunk, bomb)),
        ("put chunk: zstd garbage", 400, zstd_put(&chunk, b"definitely not a zstd frame".to_vec())),
        ("put chunk: truncated zstd frame", 400, zstd_put(&chunk, frame[..frame.len() - 2].to_vec())),
        ("get chunk: unknown hash", 404, t.get(&chunk)),
    ];
    t.cases(false, cases).await;

    // ---- tus ----
    let create = |headers: &[(&str, String)]| {
        headers.iter().fold(t.tus(Method::POST, "/api/tus/"), |req, (k, v)| req.header(*k, v))
    };
    let named =
        |name: &str| t.tus_create5().header("Upload-Metadata", format!("filename {}", B64.encode(name)));
    let cases = vec![
        ("tus create: no Tus-Resumable", 412, t.post("/api/tus/").header("Upload-Length", "5")),
        (
            "tus create: unsupported version",
            412,
            t.post("/api/tus/").header("Tus-Resumable", "0.2.2").header("Upload-Length", "5"),
        ),
        ("tus create: no length", 400, create(&[])),
        ("tus create: negative length", 400, create(&[("Upload-Length", "-5".into())])),
        ("tus create: length past u64", 400, create(&[("Upload-Length", "99999999999999999999999".into())])),
        ("tus create: length and deferred length", 400, t.tus_create5().header("Upload-Defer-Length", "1")),
        ("tus create: Upload-Defer-Length 2", 400, create(&[("Upload-Defer-Length", "2".into())])),
        ("tus create: over max_file_size", 413, create(&[("Upload-Length", (MAX_FILE + 1).to_string())])),
        (
            "tus create: broken base64 metadata",
            400,
            t.tus_create5().header("Upload-Metadata", "filename !!!not-base64"),
        ),
        (
            "tus create: duplicate metadata key",
            400,
            t.tus_create5().header("Upload-Metadata", "filename YQ==,filename Yg=="),
        ),
        ("tus create: filename ../..", 400, named("../..")),
        ("tus create: NUL in filename", 400, named("evil\0.txt")),
        ("tus create: 64 KB metadata header", 400, named(&"n".repeat(48 * 1024))),
        (
            "tus create: concat of a malformed id",
            404,
            create(&[("Upload-Concat", "final;/api/tus/../../etc".into())]),
        ),
        (
            "tus create: concat of an unknown upload",
            404,
            create(&[("Upload-Concat", format!("final;/api/tus/{unknown_upload}"))]),
        ),
        ("tus create: Upload-Concat garbage", 400, t.tus_create5().header("Upload-Concat", "whole")),
        ("tus patch: offset mismatch", 409, t.tus_patch(&tus_path, "3").body("abc")),
        ("tus patch: past Upload-Length", 413, t.tus_patch(&tus_path, "0").body(vec![1u8; 11])),
        (
            "tus patch: wrong content type",
            415,
            t.tus(Method::PATCH, &tus_path)
                .header("Content-Type", "application/octet-stream")
                .header("Upload-Offset", "0")
                .body("abc"),
        ),
        (
            "tus patch: no Upload-Offset",
            400,
            t.tus(Method::PATCH, &tus_path).header("Content-Type", OCTET).body("abc"),
        ),
        ("tus patch: non-numeric Upload-Offset", 400, t.tus_patch(&tus_path, "zero").body("abc")),
        (
            "tus patch: unsupported checksum algorithm",
            400,
            t.tus_patch(&tus_path, "0")
                .header("Upload-Checksum", "sha256 LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=")
                .body("abc"),
        ),
        (
            "tus patch: checksum of the wrong length",
            400,
            t.tus_patch(&tus_path, "0").header("Upload-Checksum", "sha1 AAAA").body("abc"),
        ),
        (
            "tus patch: checksum mismatch",
            460,
            t.tus_patch(&tus_path, "0")
                .header("Upload-Checksum", format!("md5 {}", B64.encode([0u8; 16])))
                .body(vec![5u8; 10]),
        ),
        (
            "tus patch: unknown upload",
            404,
            t.tus_patch(&format!("/api/tus/{unknown_upload}"), "0").body("abc"),
        ),
        ("tus patch: traversal as an upload id", 404, t.tus_patch("/api/tus/..%2F..%2Fetc", "0").body("abc")),
        ("tus delete: unknown upload", 404, t.tus(Method::DELETE, &format!("/api/tus/{unknown_upload}"))),
        (
            "tus patch: no Tus-Resumable",
            412,
            client()
                .patch(t.url(&tus_path))
                .header("Content-Type", OCTET)
                .header("Upload-Offset", "0")
                .body("abc"),
        ),
    ];
    t.cases(true, cases).await;

    // ---- anything else ----
    let long_query = format!("{CHUNKED}?chunkNumber=1&identifier={}", "q".repeat(32 << 10));
    let cases = vec![
        ("unknown endpoint", 404, t.get("/api/nothing/here")),
        ("chunked test: 32 KB query string", 400, t.get(&long_query)),
        ("chunked test: filename ..", 400, t.get(&format!("{CHUNKED}?{}&filename=%2E%2E", test_query(1)))),
    ];
    t.cases(false, cases).await;

    // The tus upload is untouched by all of that.
    let r = t.tus(Method::HEAD, &tus_path).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["upload-offset"], "0");

    t.report();
    assert!(t.seen.len() >= 40, "only {} cases", t.seen.len());

    // Still healthy, and the known file is intact.
    assert_eq!(t.s.get("/healthz").await.status(), StatusCode::OK);
    assert_eq!(t.s.download(&file.id).await, content);
    t.s.stop().await;
    assert_nothing_outside(parent.path());
}

/// Errors produced outside the handlers, by axum's extractors and router,
/// are JSON too. Request heads that hyper refuses before routing (431) keep
/// hyper's own empty answer: the status is checked, and the server lives on.
#[tokio::test]
async fn errors_outside_the_handlers_are_json() {
    let (_parent, s) = TestServer::start_in_workdir(|_| {}).await;
    let mut t = Suite::new(s).await;
    let cases = vec![
        ("get chunk: path segment that is not UTF-8", 400, t.get("/api/chunks/%FF%FE")),
        ("put chunk: path segment that is not UTF-8", 400, t.put("/api/chunks/%FF%FE").body("x")),
        ("download: path segment that is not UTF-8", 400, t.get("/api/files/%C0%AF")),
        ("method not allowed", 405, t.put("/api/files").body("x")),
    ];
    t.cases(false, cases).await;
    let cases = vec![
        ("tus patch: path segment that is not UTF-8", 400, t.tus_patch("/api/tus/%FF", "0").body("x")),
        ("tus: method not allowed", 405, client().delete(t.url("/api/tus/"))),
    ];
    t.cases(true, cases).await;
    t.report();
    // A router's 405 names the method and points to `Allow`, which names
    // the methods the path takes.
    let r = t.put("/api/files/upload").body("x").send().await.unwrap();
    assert_eq!(r.headers()["allow"], "POST");
    let e: serde_json::Value = r.json().await.unwrap();
    let msg = e["message"].as_str().unwrap();
    assert!(msg.starts_with("PUT is not allowed on this path; the answer's `Allow` header"), "{msg}");
    let r = t.get("/api/files").header("X-Padding", "p".repeat(1 << 20)).send().await;
    assert!(r.is_err() || r.unwrap().status() == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let req = (0..200).fold(t.get("/api/files"), |req, i| req.header(format!("x-h{i}"), "v"));
    let r = req.send().await;
    assert!(r.is_err() || r.unwrap().status() == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(counters(&t.s).await, t.base);
    assert_eq!(t.s.get("/healthz").await.status(), StatusCode::OK);
    t.s.stop().await;
}

/// A traversal name with a real file part is not refused: it is reduced to
/// its last component, and nothing lands outside the data directory.
#[tokio::test]
async fn traversal_names_are_reduced_to_their_last_component() {
    let (parent, s) = TestServer::start_in_workdir(|_| {}).await;
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
    assert_nothing_outside(parent.path());
}

/// JSON of the wrong shape gets a status the API document states for the
/// operation, and every status the document says is for JSON without the
/// request's shape is one such JSON gets: the document claims no answer
/// the server never sends.
#[tokio::test]
async fn wrong_shape_json_gets_a_documented_status() {
    let (_dir, s) = TestServer::start_temp_with(|c| c.auth.mode = depot::config::AuthMode::Token).await;
    let admin = common::http::as_token(&s.admin_token().await);
    let file = s.upload_raw_as(&admin, "x.bin", b"some bytes").await;
    let doc = serde_json::to_value(depot::server::openapi()).unwrap();
    let link = format!("/api/files/{}/link", file.id);
    let quota = "/api/admin/tenants/a/quota";
    let cases = [
        (Method::POST, "/api/admin/tokens", "/api/admin/tokens", json!({"tenant": 5, "scopes": "all"})),
        (Method::PUT, "/api/admin/tenants/{tenant}/quota", quota, json!({"bytes": "lots"})),
        (Method::PUT, "/api/admin/tenants/{tenant}/quota", quota, json!(["not", "an object"])),
        (Method::POST, "/api/files/{id}/link", &link, json!({"expires_in": "soon"})),
        (Method::POST, "/api/files", "/api/files", json!({"name": 5, "chunks": "none"})),
        (Method::POST, "/api/commits", "/api/commits", json!({"name": "x", "size": "big"})),
    ];
    let mut got: std::collections::BTreeMap<(String, &str), Vec<String>> = Default::default();
    for (method, route, path, body) in cases {
        let r = admin.request(method.clone(), s.url(path)).json(&body).send().await.unwrap();
        let status = r.status().as_str().to_string();
        let op = method.as_str().to_lowercase();
        let documented = doc["paths"][route][&op]["responses"].as_object().unwrap();
        assert!(
            documented.contains_key(&status),
            "{method} {route} with {body}: {status}, which the document does not state: {documented:?}"
        );
        got.entry((op, route)).or_default().push(status);
    }
    for ((op, route), statuses) in got {
        for (status, answer) in doc["paths"][route][&op]["responses"].as_object().unwrap() {
            let described = answer["description"].as_str().unwrap_or_default();
            assert!(
                !described.contains("request's shape") || statuses.contains(status),
                "{op} {route}: {status} {described:?} is documented, but JSON of the wrong shape gets {statuses:?}"
            );
        }
    }
    s.stop().await;
}
