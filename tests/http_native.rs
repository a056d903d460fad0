//! The native dedup protocol over HTTP, status by status.

mod common;

use common::http::fed_body;
use common::{TestServer, client};
use depot::config::ByteSize;
use depot::store::ChunkId;
use depot::testdata::pseudo_random;
use depot::wire::{ChunkingInfo, ErrorBody, FileInfo, MissingResponse, PutChunkResponse};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn chunking_missing_put_commit_manifest() {
    let (dir, s) = TestServer::start_temp().await;
    let info: ChunkingInfo = s.get_json("/api/chunking").await;
    assert_eq!(info.chunker_id, "fastcdc2020-n1-65536-262144-1048576");
    assert_eq!((info.min, info.avg, info.max), (65536, 262144, 1048576));

    let a = pseudo_random(100_000, 1);
    let b = b"compressible text, compressible text, compressible text. ".repeat(2000);
    let (ha, hb) = (ChunkId::of(&a), ChunkId::of(&b));
    let missing: MissingResponse = client()
        .post(s.url("/api/chunks/missing"))
        .json(&json!({"hashes": [ha, hb, ha]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(missing.missing, vec![ha, hb]);

    // Commit before sending: 409 naming what is missing.
    let commit = json!({"name": "ab.bin", "size": a.len() + b.len(), "chunks": [
        {"hash": ha, "len": a.len()}, {"hash": hb, "len": b.len()}]});
    let r = client().post(s.url("/api/files")).json(&commit).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let e: ErrorBody = r.json().await.unwrap();
    assert_eq!(e.error, "missing_chunks");
    assert_eq!(e.missing.unwrap().len(), 2);

    // A raw chunk, then again (200), then a wrong one (422).
    let put = |hash: ChunkId, body: Vec<u8>, encoding: Option<&str>| {
        let mut req = client().put(s.url(&format!("/api/chunks/{hash}"))).body(body);
        if let Some(e) = encoding {
            req = req.header("Content-Encoding", e);
        }
        req.send()
    };
    let r = put(ha, a.clone(), None).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let p: PutChunkResponse = r.json().await.unwrap();
    assert!(p.new && p.len == 100_000);
    assert_eq!(put(ha, a.clone(), None).await.unwrap().status(), StatusCode::OK);
    let r = put(hb, a.clone(), None).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json::<ErrorBody>().await.unwrap().error, "hash_mismatch");
    // A zstd frame is decoded and checked.
    let frame = zstd::bulk::compress(&b, 3).unwrap();
    assert_eq!(put(hb, frame.clone(), Some("zstd")).await.unwrap().status(), StatusCode::CREATED);
    assert_eq!(put(hb, b"garbage".to_vec(), Some("zstd")).await.unwrap().status(), StatusCode::BAD_REQUEST);
    let r = put(hb, b.clone(), Some("br")).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let r = client().post(s.url("/api/files")).json(&commit).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let f: FileInfo = r.json().await.unwrap();
    assert_eq!(f.deduplicated_bytes, Some(0), "both chunks were new");
    let body = s.get(&f.url).await.bytes().await.unwrap();
    assert_eq!(body.len(), a.len() + b.len());
    assert_eq!(&body[..a.len()], &a[..]);
    // The same chunks again, `a` twice: nothing new, all of it saved.
    let again = json!({"name": "aab.bin", "size": 2 * a.len() + b.len(), "chunks": [
        {"hash": ha, "len": a.len()}, {"hash": hb, "len": b.len()}, {"hash": ha, "len": a.len()}]});
    let r = client().post(s.url("/api/files")).json(&again).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let g: FileInfo = r.json().await.unwrap();
    assert_eq!(g.deduplicated_bytes, Some(g.size));
    let listed: depot::wire::FileList = s.get_json("/api/files").await;
    let saving = |id: &str| listed.files.iter().find(|x| x.id == id).unwrap().deduplicated_bytes;
    assert_eq!((saving(&f.id), saving(&g.id)), (Some(0), Some(g.size)));

    let m = s.manifest(&f.id).await;
    assert_eq!(m.size, f.size);
    assert_eq!(m.chunks.len(), 2);
    assert_eq!((m.chunks[1].hash, m.chunks[1].offset, m.chunks[1].len), (hb, 100_000, b.len() as u32));

    // One chunk, raw or as the stored zstd frame; a raw chunk is raw
    // either way.
    let r = s.get(&format!("/api/chunks/{hb}")).await;
    assert!(r.headers().get("content-encoding").is_none());
    assert_eq!(r.bytes().await.unwrap(), b);
    let r = s.get_with(&format!("/api/chunks/{hb}"), &[("Accept-Encoding", "zstd")]).await;
    assert_eq!(r.headers()["content-encoding"], "zstd");
    let frame = r.bytes().await.unwrap();
    assert!(frame.len() < b.len() / 4);
    assert_eq!(zstd::bulk::decompress(&frame, b.len()).unwrap(), b);
    let r = s.get_with(&format!("/api/chunks/{ha}"), &[("Accept-Encoding", "zstd")]).await;
    assert!(r.headers().get("content-encoding").is_none());
    assert_eq!(r.bytes().await.unwrap(), a);
    let r = s.get(&format!("/api/chunks/{}", ChunkId::of(b"none"))).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // A bit flipped in the stored frame: refused both ways, never sent.
    common::stored::flip_bit(dir.path(), &hb, |len| len - 1);
    for accept in ["identity", "zstd"] {
        let r = s.get_with(&format!("/api/chunks/{hb}"), &[("Accept-Encoding", accept)]).await;
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR, "Accept-Encoding: {accept}");
    }
    s.stop().await;
}

#[tokio::test]
async fn bad_native_requests_are_4xx_and_change_nothing() {
    let (_dir, s) = TestServer::start_temp_with(|c| c.limits.max_missing_query = 3).await;
    let h = ChunkId::of(b"x");
    let cases: Vec<(reqwest::RequestBuilder, StatusCode)> = vec![
        (
            client().post(s.url("/api/chunks/missing")).json(&json!({"hashes": [h, h, h, h]})),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            client().post(s.url("/api/chunks/missing")).json(&json!({"hashes": ["zz"]})),
            StatusCode::BAD_REQUEST,
        ),
        (client().post(s.url("/api/chunks/missing")).body("{not json"), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (
            client()
                .post(s.url("/api/chunks/missing"))
                .header("content-type", "application/json")
                .body("{not json"),
            StatusCode::BAD_REQUEST,
        ),
        (client().put(s.url("/api/chunks/nothex")).body("x"), StatusCode::BAD_REQUEST),
        (
            client().put(s.url(&format!("/api/chunks/{h}"))).body(vec![0u8; 5 << 20]),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (client().post(s.url("/api/files")).json(&json!({"name": "x", "size": 1})), StatusCode::BAD_REQUEST),
        (
            client()
                .post(s.url("/api/files"))
                .json(&json!({"name": "x", "size": 5, "chunks": [], "extra": 1})),
            StatusCode::BAD_REQUEST,
        ),
        (
            client().post(s.url("/api/files")).json(&json!({"name": "x", "size": 5, "chunks": []})),
            StatusCode::BAD_REQUEST,
        ),
        (
            client().post(s.url("/api/files")).json(&json!({"name": "../", "size": 0, "chunks": []})),
            StatusCode::BAD_REQUEST,
        ),
        (client().get(s.url("/api/files/nope/manifest")), StatusCode::NOT_FOUND),
    ];
    for (i, (req, want)) in cases.into_iter().enumerate() {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), want, "case {i}");
        let e: ErrorBody = r.json().await.unwrap_or_else(|e| panic!("case {i}: not a JSON error: {e}"));
        assert_eq!(e.code, want.as_u16(), "case {i}");
    }
    let st = s.stats().await;
    assert_eq!((st.unique_chunks, st.files), (0, 0));
    s.stop().await;
}

#[tokio::test]
async fn chunk_bodies_share_a_memory_budget() {
    let (_dir, s) = TestServer::start_temp_with(|c| c.limits.max_buffered = ByteSize(64 << 10)).await;
    let a = pseudo_random(300_000, 7);
    let b = pseudo_random(300_000, 8);
    let (ha, hb) = (ChunkId::of(&a), ChunkId::of(&b));

    // A body larger than the whole budget takes all of it while it streams
    // in: the first half is sent, the rest waits on a channel.
    let (tx, body) = fed_body(2);
    let slow = tokio::spawn(
        client().put(s.url(&format!("/api/chunks/{ha}"))).header("Content-Length", a.len()).body(body).send(),
    );
    tx.send(Ok(a[..150_000].to_vec())).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // A second chunk cannot be buffered until the first is done with.
    let second = tokio::spawn(client().put(s.url(&format!("/api/chunks/{hb}"))).body(b.clone()).send());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!second.is_finished(), "the second body waited for room");
    tx.send(Ok(a[150_000..].to_vec())).await.unwrap();
    drop(tx);
    // A leaked reservation would hang these: time out instead.
    let within = |f| tokio::time::timeout(std::time::Duration::from_secs(10), f);
    assert_eq!(within(slow).await.expect("first PUT hung").unwrap().unwrap().status(), StatusCode::CREATED);
    assert_eq!(
        within(second).await.expect("second PUT hung").unwrap().unwrap().status(),
        StatusCode::CREATED
    );

    // Every permit came back: many more at once all pass.
    let puts = (0..8u64).map(|i| {
        let body = pseudo_random(100_000, 100 + i);
        let url = s.url(&format!("/api/chunks/{}", ChunkId::of(&body)));
        tokio::spawn(client().put(url).body(body).send())
    });
    for p in puts {
        assert_eq!(within(p).await.expect("budget leaked").unwrap().unwrap().status(), StatusCode::CREATED);
    }
    s.stop().await;
}

/// JSON bodies in `Content-Encoding: zstd` (RFC 8878), as `GET
/// /api/chunking` offers: a frame that declares its size and one that does
/// not answer as the plain body does; other codings are 415 naming zstd;
/// a body that is not zstd, or asks for a window over 8 MiB, is 400; one
/// that declares or decodes to more than the JSON limit is 413; none of
/// them changes anything.
#[tokio::test]
async fn json_bodies_in_zstd_answer_as_plain_ones() {
    let (_dir, s) = TestServer::start_temp_with(|c| c.limits.max_json_body = ByteSize(64 << 10)).await;
    let info: ChunkingInfo = s.get_json("/api/chunking").await;
    assert_eq!(info.request_encodings, Some(vec!["zstd".to_string()]));

    let a = pseudo_random(100_000, 21);
    let ha = ChunkId::of(&a);
    let r = client().put(s.url(&format!("/api/chunks/{ha}"))).body(a.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let asked: Vec<ChunkId> = (0..600u32).map(|i| ChunkId::of(&i.to_le_bytes())).chain([ha]).collect();
    let query = serde_json::to_vec(&json!({ "hashes": asked })).unwrap();
    let post = |body: Vec<u8>, coding: &str| {
        client()
            .post(s.url("/api/chunks/missing"))
            .header("Content-Type", "application/json")
            .header("Content-Encoding", coding)
            .body(body)
            .send()
    };
    let plain: MissingResponse = post(query.clone(), "identity").await.unwrap().json().await.unwrap();
    assert_eq!(plain.missing, asked[..600]);
    let declared = zstd::bulk::compress(&query, 3).unwrap();
    let mut streamed = Vec::new();
    zstd::stream::copy_encode(&query[..], &mut streamed, 3).unwrap();
    assert!(
        declared.len() < query.len() * 6 / 10,
        "hex hashes in zstd: {} of {}",
        declared.len(),
        query.len()
    );
    for (what, body) in [("declared", declared.clone()), ("streamed", streamed)] {
        let r = post(body, "zstd").await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{what}");
        assert_eq!(r.json::<MissingResponse>().await.unwrap(), plain, "{what}");
    }

    // Refused, each with a JSON error and nothing stored.
    let big = serde_json::to_vec(&json!({ "hashes": [ha], "pad": " ".repeat(100 << 10) })).unwrap();
    let mut big_streamed = Vec::new();
    zstd::stream::copy_encode(&big[..], &mut big_streamed, 3).unwrap();
    // A streamed frame that asks for a 16 MiB window (more than RFC 9659's
    // 8 MiB) is refused before the decoder takes it.
    let mut wide = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    wide.window_log(24).unwrap();
    std::io::Write::write_all(&mut wide, &query).unwrap();
    let wide = wide.finish().unwrap();
    let cases = [
        ("gzip", declared.clone(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("zstd", wide, StatusCode::BAD_REQUEST),
        ("zstd, gzip", declared.clone(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("zstd", query.clone(), StatusCode::BAD_REQUEST),
        ("zstd", declared[..declared.len() - 3].to_vec(), StatusCode::BAD_REQUEST),
        ("zstd", zstd::bulk::compress(&big, 3).unwrap(), StatusCode::PAYLOAD_TOO_LARGE),
        ("zstd", big_streamed, StatusCode::PAYLOAD_TOO_LARGE),
    ];
    for (i, (coding, body, want)) in cases.into_iter().enumerate() {
        let r = post(body, coding).await.unwrap();
        assert_eq!(r.status(), want, "case {i}");
        if want == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            assert_eq!(r.headers()["accept-encoding"], "zstd", "case {i}");
        }
        let e: ErrorBody = r.json().await.unwrap_or_else(|e| panic!("case {i}: not a JSON error: {e}"));
        assert_eq!(e.code, want.as_u16(), "case {i}");
    }

    // A commit refused for its coding makes no file; in zstd it makes one.
    let commit = json!({"name": "a.bin", "size": a.len(), "chunks": [{"hash": ha, "len": a.len()}]});
    let coded = zstd::bulk::compress(&serde_json::to_vec(&commit).unwrap(), 3).unwrap();
    let send_commit = |coding: &str, body: Vec<u8>| {
        client()
            .post(s.url("/api/files"))
            .header("Content-Type", "application/json")
            .header("Content-Encoding", coding)
            .body(body)
            .send()
    };
    let cut = coded[..coded.len() - 3].to_vec();
    for (coding, body, want) in
        [("zstd", cut, StatusCode::BAD_REQUEST), ("gzip", coded.clone(), StatusCode::UNSUPPORTED_MEDIA_TYPE)]
    {
        assert_eq!(send_commit(coding, body).await.unwrap().status(), want, "{coding}");
    }
    assert_eq!(s.stats().await.files, 0, "a refused commit made a file");
    let r = send_commit("zstd", coded).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let file: FileInfo = r.json().await.unwrap();
    assert_eq!(s.get(&format!("/api/files/{}", file.id)).await.bytes().await.unwrap(), a);
    let st = s.stats().await;
    assert_eq!((st.unique_chunks, st.files), (1, 1));
    assert_eq!(s.state.body_budget_free(), s.state.config.limits.max_buffered.0, "a share was kept");
    s.stop().await;
}

/// A zstd body's decoded bytes are reserved in the memory budget before it
/// is decoded: a small frame that declares 65 KiB waits while a chunk
/// being received holds most of a 128 KiB budget, and goes on once that
/// chunk is stored.
#[tokio::test]
async fn a_zstd_body_waits_for_room_for_what_it_decodes_to() {
    let (_dir, s) = TestServer::start_temp_with(|c| c.limits.max_buffered = ByteSize(128 << 10)).await;
    let a = pseudo_random(100_000, 22);
    let ha = ChunkId::of(&a);
    let (tx, body) = fed_body(2);
    let slow = tokio::spawn(
        client().put(s.url(&format!("/api/chunks/{ha}"))).header("Content-Length", a.len()).body(body).send(),
    );
    tx.send(Ok(a[..50_000].to_vec())).await.unwrap();
    let state = s.state.clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while state.body_budget_free() > 40 << 10 {
        assert!(std::time::Instant::now() < deadline, "the chunk took no share");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let query = serde_json::to_vec(&json!({ "hashes": vec![ha; 1000] })).unwrap();
    assert!(query.len() > 60 << 10);
    let coded = zstd::bulk::compress(&query, 3).unwrap();
    assert!(coded.len() < 1024, "{} bytes", coded.len());
    let ask = tokio::spawn(
        client()
            .post(s.url("/api/chunks/missing"))
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "zstd")
            .body(coded)
            .send(),
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!ask.is_finished(), "the query was decoded without room for its 65 KiB");
    tx.send(Ok(a[50_000..].to_vec())).await.unwrap();
    drop(tx);
    let within = |f| tokio::time::timeout(std::time::Duration::from_secs(10), f);
    assert_eq!(within(slow).await.expect("the PUT hung").unwrap().unwrap().status(), StatusCode::CREATED);
    let r = within(ask).await.expect("the query hung").unwrap().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.json::<MissingResponse>().await.unwrap().missing.is_empty());
    s.stop().await;
}
