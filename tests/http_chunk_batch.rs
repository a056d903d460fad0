//! `POST /api/chunks`: many chunks in one multipart request, each part named
//! by its hash, raw or as a zstd frame. Every part is checked before any is
//! stored; a refused batch stores nothing, and the chunk counters move by
//! exactly the chunks that were new.

mod common;

use common::http::{as_token, field};
use common::{TestServer, client, metric, small_chunks, test_config};
use depot::config::{AuthMode, ByteSize};
use depot::store::ChunkId;
use depot::testdata::pseudo_random;
use depot::wire::{ErrorBody, FileInfo, MissingResponse, StatsInfo, TokenInfo};
use reqwest::multipart::{Form, Part};
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{Value, json};

const MIB: usize = 1 << 20;

/// A part of raw bytes with no `Content-Type` of its own.
fn bare(bytes: &[u8]) -> Part {
    Part::bytes(bytes.to_vec())
}

/// A part of raw bytes, `Content-Type: application/octet-stream`.
fn octet(bytes: &[u8]) -> Part {
    Part::bytes(bytes.to_vec()).mime_str("application/octet-stream").unwrap()
}

/// A part holding a zstd frame of `raw`, `Content-Type: application/zstd`.
fn zstd_of(raw: &[u8]) -> Part {
    zstd_frame(zstd::bulk::compress(raw, 3).unwrap())
}

/// A part of raw bytes sent as a stream: no length known beforehand, so
/// the request has no `Content-Length`.
fn stream_of(bytes: &[u8]) -> Part {
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(64 << 10).map(|c| Ok(c.to_vec())).collect();
    Part::stream(reqwest::Body::wrap_stream(futures_util::stream::iter(pieces)))
}

/// A part holding `frame` as it is, `Content-Type: application/zstd`.
fn zstd_frame(frame: Vec<u8>) -> Part {
    Part::bytes(frame).mime_str("application/zstd").unwrap()
}

/// A form of `(name, part)`s, in order.
fn form(parts: Vec<(String, Part)>) -> Form {
    parts.into_iter().fold(Form::new(), |f, (name, p)| f.part(name, p))
}

/// `POST /api/chunks` through `c`, body still to be set.
fn batch_by(c: &Client, s: &TestServer) -> RequestBuilder {
    c.post(s.url("/api/chunks"))
}

/// `POST /api/chunks` of `parts`: the answer, whatever it is.
async fn post_batch(s: &TestServer, parts: Vec<(String, Part)>) -> reqwest::Response {
    batch_by(&client(), s).multipart(form(parts)).send().await.unwrap()
}

/// A hand-written multipart body under `Content-Type:
/// multipart/form-data; boundary=…`.
fn raw_multipart(s: &TestServer, body: Vec<u8>) -> RequestBuilder {
    batch_by(&client(), s)
        .header("Content-Type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(body)
}

const BOUNDARY: &str = "batch-boundary-7MA4YWxkTrZu0gW";

/// One hand-written part: its header lines (CRLF-separated) and bytes.
fn handmade(parts: &[(String, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (headers, bytes) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n{headers}\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// The success answer's entries as JSON, after checking the status and the
/// response's type.
async fn accepted(r: reqwest::Response) -> Value {
    let status = r.status();
    let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
    let text = r.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(ct.as_deref().is_some_and(|c| c.starts_with("application/json")), "{ct:?}");
    serde_json::from_str(&text).unwrap()
}

/// The JSON entry a chunk of `bytes` gets in a success answer.
fn entry(bytes: &[u8], new: bool) -> Value {
    json!({"hash": ChunkId::of(bytes), "len": bytes.len(), "new": new})
}

/// The error kinds each refusal may carry (`src/http/error.rs`: a 400
/// from the handler is `bad_request`, one from the store `invalid_input`).
fn kinds(status: StatusCode) -> &'static [&'static str] {
    match status.as_u16() {
        400 => &["bad_request", "invalid_input"],
        403 => &["forbidden"],
        413 => &["too_large"],
        415 => &["unsupported_media_type"],
        422 => &["hash_mismatch"],
        _ => &[],
    }
}

/// Checks a refusal: the status, and a JSON error body whose `code` is the
/// status and whose `error` is that status's kind. The body.
async fn refused(label: &str, r: reqwest::Response, want: StatusCode) -> ErrorBody {
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, want, "{label}: {text}");
    let e: ErrorBody =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{label}: not a JSON error ({e}): {text}"));
    assert_eq!(e.code, want.as_u16(), "{label}");
    assert!(kinds(want).contains(&e.error.as_str()), "{label}: error kind {:?}", e.error);
    assert!(!e.message.is_empty(), "{label}");
    e
}

/// What a refused batch must leave as it was.
#[derive(Debug, PartialEq, Eq)]
struct Counters {
    stored_total: u64,
    unique_chunks: u64,
    unique_bytes: u64,
}

async fn counters(s: &TestServer) -> Counters {
    let m = s.get("/metrics").await.text().await.unwrap();
    let st = s.stats().await;
    Counters {
        stored_total: metric(&m, "depot_chunks_stored_total"),
        unique_chunks: st.unique_chunks,
        unique_bytes: st.unique_bytes,
    }
}

/// `(depot_chunks_stored_total, depot_chunks_deduplicated_total)`.
async fn chunk_metrics(s: &TestServer) -> (u64, u64) {
    let m = s.get("/metrics").await.text().await.unwrap();
    (metric(&m, "depot_chunks_stored_total"), metric(&m, "depot_chunks_deduplicated_total"))
}

/// The hashes of `hashes` that `c` is told are missing.
async fn missing_by(c: &Client, s: &TestServer, hashes: &[ChunkId]) -> Vec<ChunkId> {
    let r = c.post(s.url("/api/chunks/missing")).json(&json!({ "hashes": hashes })).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<MissingResponse>().await.unwrap().missing
}

/// Asserts that none of `hashes` is stored: each is missing and 404.
async fn none_stored(label: &str, s: &TestServer, hashes: &[ChunkId]) {
    for h in hashes {
        let r = s.get(&format!("/api/chunks/{h}")).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{label}: chunk {h} was stored");
    }
    assert_eq!(missing_by(&client(), s, hashes).await, hashes, "{label}");
}

/// `POST /api/chunks` of raw, zstd, known and repeated chunks: one entry per
/// part in part order (`new` only for chunks the server lacked, and only
/// the first time in the batch), each chunk read back byte for byte, a file
/// committed from them downloads identical, and the chunk counters move by
/// exactly the chunks that were new.
#[tokio::test]
async fn a_batch_stores_raw_and_zstd_chunks_and_answers_in_part_order() {
    let (_dir, s) = TestServer::start_temp().await;
    let a = pseudo_random(100_000, 1);
    let b = b"compressible text, compressible text, compressible text. ".repeat(2000);
    let c = pseudo_random(50_000, 3);
    let d = pseudo_random(7_000, 4);
    let (ha, hb, hc, hd) = (ChunkId::of(&a), ChunkId::of(&b), ChunkId::of(&c), ChunkId::of(&d));
    // The server has `c` already.
    let r = client().put(s.url(&format!("/api/chunks/{hc}"))).body(c.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let before = s.stats().await;
    let (stored, deduplicated) = chunk_metrics(&s).await;
    assert_eq!(before.unique_chunks, 1);

    let frame = zstd::bulk::compress(&b, 3).unwrap();
    assert!(frame.len() < b.len() / 4, "the zstd part is really compressed");
    let parts = vec![
        (ha.to_string(), octet(&a)),
        (hb.to_string(), zstd_frame(frame)),
        (hc.to_string(), bare(&c)),
        (ha.to_string(), bare(&a)),
        (hd.to_string(), zstd_of(&d)),
        (hb.to_string(), octet(&b)),
    ];
    let got = accepted(post_batch(&s, parts).await).await;
    let want = json!({"chunks": [
        entry(&a, true),
        entry(&b, true),
        entry(&c, false),
        entry(&a, false),
        entry(&d, true),
        entry(&b, false),
    ]});
    assert_eq!(got, want);

    // Three new chunks, three that were not.
    assert_eq!(chunk_metrics(&s).await, (stored + 3, deduplicated + 3));
    let after = s.stats().await;
    assert_eq!(after.unique_chunks, before.unique_chunks + 3);
    assert_eq!(after.unique_bytes, before.unique_bytes + (a.len() + b.len() + d.len()) as u64);

    for (h, bytes) in [(ha, &a), (hb, &b), (hc, &c), (hd, &d)] {
        let r = s.get(&format!("/api/chunks/{h}")).await;
        assert_eq!(r.status(), StatusCode::OK, "{h}");
        assert!(r.headers().get("content-encoding").is_none());
        assert_eq!(r.bytes().await.unwrap(), &bytes[..], "{h} reads back as sent");
    }
    assert!(missing_by(&client(), &s, &[ha, hb, hc, hd]).await.is_empty());

    // A file of them, `a` twice, commits without sending anything more.
    let size = 2 * a.len() + b.len() + c.len() + d.len();
    let commit = json!({"name": "batched.bin", "size": size, "chunks": [
        {"hash": ha, "len": a.len()}, {"hash": hb, "len": b.len()}, {"hash": hc, "len": c.len()},
        {"hash": ha, "len": a.len()}, {"hash": hd, "len": d.len()}]});
    let r = client().post(s.url("/api/files")).json(&commit).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let f: FileInfo = r.json().await.unwrap();
    assert_eq!(f.size, size as u64);
    let whole = [&a[..], &b[..], &c[..], &a[..], &d[..]].concat();
    assert_eq!(s.download(&f.id).await, whole);
    let m = s.manifest(&f.id).await;
    let hashes: Vec<ChunkId> = m.chunks.iter().map(|c| c.hash).collect();
    assert_eq!(hashes, vec![ha, hb, hc, ha, hd]);

    // Some of them again: all known, nothing stored.
    let (stored, deduplicated) = chunk_metrics(&s).await;
    let got =
        accepted(post_batch(&s, vec![(hd.to_string(), bare(&d)), (ha.to_string(), zstd_of(&a))]).await).await;
    assert_eq!(got, json!({"chunks": [entry(&d, false), entry(&a, false)]}));
    assert_eq!(chunk_metrics(&s).await, (stored, deduplicated + 2));
    assert_eq!(s.stats().await.unique_chunks, after.unique_chunks);
    s.stop().await;
}

/// `GET /api/chunking` advertises `max_batch_chunks` (256) and
/// `max_batch_bytes` (4 MiB, or room for one chunk of `max_chunk_size`
/// when that is larger: such a chunk is taken alone in a batch).
#[tokio::test]
async fn chunking_advertises_the_batch_limits() {
    let (_dir, s) = TestServer::start_temp().await;
    let info: Value = s.get_json("/api/chunking").await;
    assert_eq!(info["max_batch_chunks"], json!(256), "{info}");
    // One chunk of the largest size and its framing: one pooled buffer.
    assert_eq!(info["max_batch_bytes"], json!(4 * MIB + (64 << 10)), "{info}");
    assert_eq!(info["max_chunk_size"], json!(4 * MIB), "{info}");
    s.stop().await;

    let (_dir, s) = TestServer::start_temp_with(|c| {
        c.chunking = small_chunks();
        c.limits.max_chunk_size = ByteSize(64 << 10);
    })
    .await;
    let info: Value = s.get_json("/api/chunking").await;
    assert_eq!(info["max_batch_chunks"], json!(256), "{info}");
    assert_eq!(info["max_batch_bytes"], json!(4 * MIB), "never below 4 MiB: {info}");
    s.stop().await;

    const BIG: usize = 20 << 20;
    let (_dir, s) = TestServer::start_temp_with(|c| c.limits.max_chunk_size = ByteSize(BIG as u64)).await;
    let info: Value = s.get_json("/api/chunking").await;
    assert_eq!(info["max_batch_chunks"], json!(256), "{info}");
    let max_bytes = info["max_batch_bytes"].as_u64().unwrap();
    // Room for the chunk and its framing, not for another chunk.
    assert!((BIG as u64 + 1024..BIG as u64 + MIB as u64).contains(&max_bytes), "{info}");
    let chunk = pseudo_random(BIG, 60);
    let got = accepted(post_batch(&s, vec![(ChunkId::of(&chunk).to_string(), octet(&chunk))]).await).await;
    assert_eq!(got, json!({"chunks": [entry(&chunk, true)]}));
    s.stop().await;
}

/// Malformed batches are 400 and store nothing, the good parts sent with
/// the bad one included: names that are not 64 hex digits, a part with no
/// name, no parts at all, a broken or truncated zstd frame, and bodies that
/// are not multipart.
#[tokio::test]
async fn malformed_batches_are_400_and_store_nothing() {
    let (_dir, s) = TestServer::start_temp().await;
    let good = pseudo_random(20_000, 10);
    let also = pseudo_random(30_000, 11);
    let (hg, ha) = (ChunkId::of(&good), ChunkId::of(&also));
    let base = counters(&s).await;
    let frame = zstd::bulk::compress(&also, 3).unwrap();
    let with_good = |name: String, bad: Part| vec![(hg.to_string(), bare(&good)), (name, bad)];

    let cases: Vec<(&str, reqwest::Response)> = vec![
        ("name not hex", post_batch(&s, with_good("nothex".into(), bare(&also))).await),
        ("name of 64 non-hex", post_batch(&s, with_good("g".repeat(64), bare(&also))).await),
        ("name of 63 hex", post_batch(&s, with_good(ha.to_string()[..63].into(), bare(&also))).await),
        ("name of 65 hex", post_batch(&s, with_good(format!("{ha}0"), bare(&also))).await),
        (
            "broken zstd frame",
            post_batch(&s, with_good(ha.to_string(), zstd_frame(b"not zstd".to_vec()))).await,
        ),
        (
            "truncated zstd frame",
            post_batch(&s, with_good(ha.to_string(), zstd_frame(frame[..frame.len() - 3].to_vec()))).await,
        ),
        (
            "a part with no name",
            raw_multipart(
                &s,
                handmade(&[
                    (field(&hg.to_string()), &good),
                    ("Content-Disposition: form-data".into(), &also),
                ]),
            )
            .send()
            .await
            .unwrap(),
        ),
        ("no parts", raw_multipart(&s, format!("--{BOUNDARY}--\r\n").into_bytes()).send().await.unwrap()),
        ("empty body", raw_multipart(&s, Vec::new()).send().await.unwrap()),
        ("not multipart at all", raw_multipart(&s, b"just some bytes".to_vec()).send().await.unwrap()),
        (
            "truncated multipart",
            raw_multipart(&s, {
                let mut body = handmade(&[(field(&hg.to_string()), &good)]);
                body.truncate(body.len() - 40);
                body
            })
            .send()
            .await
            .unwrap(),
        ),
        (
            "multipart without a boundary",
            batch_by(&client(), &s)
                .header("Content-Type", "multipart/form-data")
                .body(handmade(&[(field(&hg.to_string()), &good)]))
                .send()
                .await
                .unwrap(),
        ),
    ];
    for (label, r) in cases {
        refused(label, r, StatusCode::BAD_REQUEST).await;
        assert_eq!(counters(&s).await, base, "{label}");
    }
    none_stored("after every 400", &s, &[hg, ha]).await;
    s.stop().await;
}

/// More than `max_batch_chunks` parts is 413 and stores none of them;
/// exactly `max_batch_chunks` is taken.
#[tokio::test]
async fn more_parts_than_max_batch_chunks_is_413() {
    let (_dir, s) = TestServer::start_temp().await;
    let chunks: Vec<Vec<u8>> = (0..257u64).map(|i| pseudo_random(100, 1000 + i)).collect();
    let hashes: Vec<ChunkId> = chunks.iter().map(|c| ChunkId::of(c)).collect();
    let parts = |n: usize| chunks[..n].iter().map(|c| (ChunkId::of(c).to_string(), bare(c))).collect();
    let base = counters(&s).await;
    let e = refused("257 parts", post_batch(&s, parts(257)).await, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(e.message.contains("256"), "the message gives the limit: {}", e.message);
    assert_eq!(counters(&s).await, base);
    none_stored("257 parts", &s, &hashes).await;

    let (stored, _) = chunk_metrics(&s).await;
    let got = accepted(post_batch(&s, parts(256)).await).await;
    let entries = got["chunks"].as_array().unwrap();
    assert_eq!(entries.len(), 256);
    assert!(entries.iter().zip(&chunks).all(|(e, c)| *e == entry(c, true)));
    assert_eq!(chunk_metrics(&s).await.0, stored + 256);
    assert_eq!(s.stats().await.unique_chunks, 256);
    s.stop().await;
}

/// A body larger than `max_batch_bytes` (4 MiB and 64 KiB by default, multipart framing
/// included) is 413 and stores nothing, though each part is within
/// `max_chunk_size`; a body just under it is taken.
#[tokio::test]
async fn a_body_over_max_batch_bytes_is_413() {
    let (_dir, s) = TestServer::start_temp().await;
    // A chunk of `max_chunk_size` (4 MiB) and one of 64 KiB: as many bytes
    // as the limit (4 MiB + 64 KiB), over it by the framing alone.
    let chunks: Vec<Vec<u8>> =
        [4 * MIB, 64 << 10].iter().zip(2000u64..).map(|(&n, seed)| pseudo_random(n, seed)).collect();
    let hashes: Vec<ChunkId> = chunks.iter().map(|c| ChunkId::of(c)).collect();
    let parts = |cs: &[Vec<u8>]| cs.iter().map(|c| (ChunkId::of(c).to_string(), bare(c))).collect::<Vec<_>>();
    let base = counters(&s).await;
    let r = post_batch(&s, parts(&chunks)).await;
    refused("4 MiB + 64 KiB of parts and the framing", r, StatusCode::PAYLOAD_TOO_LARGE).await;
    let tiny = pseudo_random(10, 2100);
    let mut more = parts(&chunks);
    more.push((ChunkId::of(&tiny).to_string(), bare(&tiny)));
    refused("over the limit in parts", post_batch(&s, more).await, StatusCode::PAYLOAD_TOO_LARGE).await;
    // The same without a Content-Length: refused as the parts stream in.
    let mut streamed: Vec<(String, Part)> =
        chunks.iter().map(|c| (ChunkId::of(c).to_string(), stream_of(c))).collect();
    streamed.push((ChunkId::of(&tiny).to_string(), stream_of(&tiny)));
    let r = batch_by(&client(), &s).multipart(form(streamed)).send().await.unwrap();
    refused("over the limit in parts, streamed", r, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(counters(&s).await, base);
    none_stored("over max_batch_bytes", &s, &hashes).await;

    // The large one and 32 KiB: under the limit with the framing.
    let rest = pseudo_random(32 << 10, 2200);
    let mut under = parts(&chunks[..1]);
    under.push((ChunkId::of(&rest).to_string(), bare(&rest)));
    let got = accepted(post_batch(&s, under).await).await;
    assert_eq!(got["chunks"].as_array().unwrap().len(), 2);
    assert_eq!(got["chunks"][1], entry(&rest, true));
    assert_eq!(s.stats().await.unique_chunks, 2);
    s.stop().await;
}

/// Without a `Content-Length` the body's bytes, framing included, are
/// bounded by `max_batch_bytes` as they arrive, so the parser never holds
/// more than the request's reservation: 5 MiB of preamble (text before the
/// first boundary, which multipart allows and parsers hold while they look
/// for the boundary), and 80 tiny parts with 60 KiB header sections, are
/// 413 and nothing of either is stored. After a short preamble the part is
/// taken.
#[tokio::test]
async fn framing_is_bounded_without_a_content_length() {
    let (_dir, s) = TestServer::start_temp().await;
    let streamed = |body: Vec<u8>| {
        let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
            body.chunks(64 << 10).map(|c| Ok(c.to_vec())).collect();
        batch_by(&client(), &s)
            .header("Content-Type", format!("multipart/form-data; boundary={BOUNDARY}"))
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(pieces)))
    };
    let tiny = pseudo_random(10, 2300);
    let id = ChunkId::of(&tiny);
    let after_preamble = |n: usize| {
        let mut body = vec![b'x'; n];
        body.extend_from_slice(b"\r\n");
        body.extend(handmade(&[(format!("Content-Disposition: form-data; name=\"{id}\""), &tiny[..])]));
        body
    };
    let base = counters(&s).await;
    let r = streamed(after_preamble(5 * MIB)).send().await.unwrap();
    let e = refused("5 MiB of preamble, streamed", r, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(e.message.contains("at most 4259840 bytes"), "{}", e.message);

    let chunks: Vec<Vec<u8>> = (0..80).map(|i| pseudo_random(10, 2400 + i)).collect();
    let pad = "p".repeat(60 << 10);
    let padded: Vec<(String, &[u8])> = chunks
        .iter()
        .map(|c| {
            (format!("Content-Disposition: form-data; name=\"{}\"\r\nX-Pad: {pad}", ChunkId::of(c)), &c[..])
        })
        .collect();
    let r = streamed(handmade(&padded)).send().await.unwrap();
    let e = refused("80 parts of 60 KiB headers, streamed", r, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(e.message.contains("at most 4259840 bytes"), "{}", e.message);
    assert_eq!(counters(&s).await, base);
    let mut ids: Vec<ChunkId> = chunks.iter().map(|c| ChunkId::of(c)).collect();
    ids.push(id);
    none_stored("streamed bodies over their framing bounds", &s, &ids).await;

    let got = accepted(streamed(after_preamble(1024)).send().await.unwrap()).await;
    assert_eq!(got["chunks"], json!([entry(&tiny, true)]));
    s.stop().await;
}

/// One part over `max_chunk_size` raw bytes, sent raw or as a small zstd
/// frame, is 413 and nothing of its batch is stored; a part of exactly
/// `max_chunk_size` is taken.
#[tokio::test]
async fn a_part_over_max_chunk_size_is_413() {
    const MAX: usize = 64 << 10;
    let (_dir, s) = TestServer::start_temp_with(|c| {
        c.chunking = small_chunks();
        c.limits.max_chunk_size = ByteSize(MAX as u64);
    })
    .await;
    let good = pseudo_random(3000, 20);
    let big = pseudo_random(MAX + 1, 21);
    let zeros = vec![0u8; MAX + 1];
    let bomb = zstd::bulk::compress(&vec![0u8; 16 * MIB], 3).unwrap();
    let hashes = [ChunkId::of(&good), ChunkId::of(&big), ChunkId::of(&zeros)];
    let base = counters(&s).await;
    let with_good =
        |name: ChunkId, bad: Part| vec![(hashes[0].to_string(), bare(&good)), (name.to_string(), bad)];
    let cases = [
        ("raw, one byte over", with_good(hashes[1], octet(&big))),
        ("zstd, decoding to one byte over", with_good(hashes[2], zstd_of(&zeros))),
        ("zstd, decoding to 16 MiB", with_good(ChunkId::of(&vec![0u8; 16 * MIB]), zstd_frame(bomb))),
    ];
    for (label, parts) in cases {
        refused(label, post_batch(&s, parts).await, StatusCode::PAYLOAD_TOO_LARGE).await;
        assert_eq!(counters(&s).await, base, "{label}");
    }
    none_stored("over max_chunk_size", &s, &hashes).await;

    let (exact, zexact) = (pseudo_random(MAX, 22), vec![0u8; MAX]);
    let parts = vec![
        (ChunkId::of(&exact).to_string(), bare(&exact)),
        (ChunkId::of(&zexact).to_string(), zstd_of(&zexact)),
    ];
    let got = accepted(post_batch(&s, parts).await).await;
    assert_eq!(got, json!({"chunks": [entry(&exact, true), entry(&zexact, true)]}));
    s.stop().await;
}

/// A request that is not `multipart/form-data`, or a part whose type is
/// neither `application/octet-stream` nor `application/zstd`, is 415 and
/// stores nothing.
#[tokio::test]
async fn other_media_types_are_415() {
    let (_dir, s) = TestServer::start_temp().await;
    let good = pseudo_random(20_000, 30);
    let other = pseudo_random(20_000, 31);
    let (hg, ho) = (ChunkId::of(&good), ChunkId::of(&other));
    let base = counters(&s).await;
    let multipart = handmade(&[(field(&hg.to_string()), &good)]);
    let typed = |mime: &str| {
        post_batch(
            &s,
            vec![
                (hg.to_string(), bare(&good)),
                (ho.to_string(), Part::bytes(other.clone()).mime_str(mime).unwrap()),
            ],
        )
    };
    let cases: Vec<(&str, reqwest::Response)> = vec![
        ("no Content-Type", batch_by(&client(), &s).body(multipart.clone()).send().await.unwrap()),
        (
            "application/octet-stream",
            batch_by(&client(), &s)
                .header("Content-Type", "application/octet-stream")
                .body(good.clone())
                .send()
                .await
                .unwrap(),
        ),
        ("application/json", batch_by(&client(), &s).json(&json!({"chunks": [hg]})).send().await.unwrap()),
        (
            "multipart/mixed",
            batch_by(&client(), &s)
                .header("Content-Type", format!("multipart/mixed; boundary={BOUNDARY}"))
                .body(multipart)
                .send()
                .await
                .unwrap(),
        ),
        ("a text/plain part", typed("text/plain").await),
        ("an application/gzip part", typed("application/gzip").await),
        ("an application/x-zstd part", typed("application/x-zstd").await),
    ];
    for (label, r) in cases {
        refused(label, r, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
        assert_eq!(counters(&s).await, base, "{label}");
    }
    none_stored("after every 415", &s, &[hg, ho]).await;
    s.stop().await;
}

/// A part whose bytes (raw, or a zstd frame's decoded bytes) do not hash to
/// its name is 422 naming that hash, and nothing of the batch is stored,
/// the good parts before and after it included.
#[tokio::test]
async fn a_part_that_does_not_hash_to_its_name_is_422() {
    let (_dir, s) = TestServer::start_temp().await;
    let first = pseudo_random(20_000, 40);
    let last = pseudo_random(20_000, 41);
    let claimed = pseudo_random(20_000, 42);
    let sent = pseudo_random(20_000, 43);
    let hashes = [ChunkId::of(&first), ChunkId::of(&last), ChunkId::of(&claimed), ChunkId::of(&sent)];
    let base = counters(&s).await;
    let around = |bad: Part| {
        vec![
            (hashes[0].to_string(), bare(&first)),
            (hashes[2].to_string(), bad),
            (hashes[1].to_string(), zstd_of(&last)),
        ]
    };
    for (label, bad) in [("raw", octet(&sent)), ("zstd", zstd_of(&sent))] {
        let e = refused(label, post_batch(&s, around(bad)).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(
            e.message.contains(&hashes[2].to_string()),
            "{label}: the message names the part: {}",
            e.message
        );
        assert_eq!(counters(&s).await, base, "{label}");
    }
    none_stored("after 422", &s, &hashes).await;
    s.stop().await;
}

/// Tenants batch as they PUT: a chunk another tenant stored is `new` to
/// this one (and stored once), a token without `write` gets 403 and
/// stores nothing.
#[tokio::test]
async fn tenants_batch_as_they_put() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.auth.mode = AuthMode::Token;
    let s = TestServer::start(cfg).await;
    let admin = as_token(&s.admin_token().await);
    let token = |tenant: &str, scopes: &[&str]| {
        let r =
            admin.post(s.url("/api/admin/tokens")).json(&json!({"tenant": tenant, "scopes": scopes})).send();
        async move {
            let r = r.await.unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            as_token(&r.json::<TokenInfo>().await.unwrap().token.unwrap())
        }
    };
    let a = token("a", &["read", "write"]).await;
    let b = token("b", &["read", "write"]).await;
    let ro = token("b", &["read"]).await;
    let stats =
        || async { admin.get(s.url("/api/stats")).send().await.unwrap().json::<StatsInfo>().await.unwrap() };

    let x = pseudo_random(20_000, 50);
    let y = pseudo_random(20_000, 51);
    let (hx, hy) = (ChunkId::of(&x), ChunkId::of(&y));
    let r = a.put(s.url(&format!("/api/chunks/{hx}"))).body(x.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        b.get(s.url(&format!("/api/chunks/{hx}"))).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    // Read-only: refused before anything is stored.
    let r = batch_by(&ro, &s).multipart(form(vec![(hy.to_string(), bare(&y))])).send().await.unwrap();
    refused("read-only token", r, StatusCode::FORBIDDEN).await;
    assert_eq!(stats().await.unique_chunks, 1);
    assert_eq!(missing_by(&b, &s, &[hy]).await, vec![hy]);

    // `x` is new to B, though the store has it; stored once all the same.
    let r = batch_by(&b, &s)
        .multipart(form(vec![(hx.to_string(), bare(&x)), (hy.to_string(), zstd_of(&y))]))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted(r).await, json!({"chunks": [entry(&x, true), entry(&y, true)]}));
    assert_eq!(stats().await.unique_chunks, 2);
    let r = b.get(s.url(&format!("/api/chunks/{hx}"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), x);
    // A has `x` but not `y`.
    let r = batch_by(&a, &s)
        .multipart(form(vec![(hx.to_string(), bare(&x)), (hy.to_string(), bare(&y))]))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted(r).await, json!({"chunks": [entry(&x, false), entry(&y, true)]}));
    assert_eq!(stats().await.unique_chunks, 2);
    s.stop().await;
}
