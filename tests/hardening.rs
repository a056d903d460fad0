//! Abuse cases against the real server: compressed input, oversized
//! parameters, strict edges. Each must get a clear 4xx, change
//! nothing and leave the server healthy.

mod common;

use common::TestServer;
use common::http::{client, piece_params, put_zstd, streamed_zstd};
use depot::store::ChunkId;
use depot::testdata::pseudo_random;
use reqwest::StatusCode;
use serde_json::json;

/// `PUT /api/chunks/{id}` of a zstd frame: its status.
async fn put_frame(s: &TestServer, id: &ChunkId, frame: Vec<u8>) -> StatusCode {
    put_zstd(&client(), &s.base, id, frame).await
}

#[tokio::test]
async fn client_zstd_frames_are_bounded() {
    let (_dir, s) = TestServer::start_temp().await;
    let before = s.stats().await;
    // A frame asking for a 128 MiB window: refused before the decoder
    // allocates it.
    let data = pseudo_random(200_000, 1);
    let frame = streamed_zstd(1, 27, false, &[&data]);
    let st = put_frame(&s, &ChunkId::of(&data), frame).await;
    assert!(st.is_client_error(), "{st}");
    // 4 KiB on the wire, 1 GiB decoded, no declared size: refused at the
    // chunk limit.
    let zeros = vec![0u8; 64 << 20];
    let bomb = streamed_zstd(19, 22, false, &[&zeros[..]; 16]);
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    let st = put_frame(&s, &ChunkId::of(b"x"), bomb).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    // A declared 32 MiB chunk: refused from its header.
    let big = vec![7u8; 32 << 20];
    let frame = zstd::bulk::compress(&big, 1).unwrap();
    assert_eq!(put_frame(&s, &ChunkId::of(&big), frame).await, StatusCode::PAYLOAD_TOO_LARGE);
    let after = s.stats().await;
    assert_eq!((after.unique_chunks, after.stored_bytes), (before.unique_chunks, before.stored_bytes));

    // Two frames of one chunk are stored re-encoded: what is served is one
    // frame a one-frame decoder reads whole.
    let text: Vec<u8> = b"depot ".iter().copied().cycle().take(100_000).collect();
    let id = ChunkId::of(&text);
    let mut two = zstd::bulk::compress(&text[..50_000], 3).unwrap();
    two.extend(zstd::bulk::compress(&text[50_000..], 3).unwrap());
    assert_eq!(put_frame(&s, &id, two).await, StatusCode::CREATED);
    let r = s.get_with(&format!("/api/chunks/{id}"), &[("Accept-Encoding", "zstd")]).await;
    let served = r.bytes().await.unwrap();
    let one = zstd::zstd_safe::find_frame_compressed_size(&served).unwrap();
    assert_eq!(one, served.len(), "one frame");
    assert_eq!(zstd::bulk::decompress(&served, 200_000).unwrap(), text);
    assert_eq!(s.get("/healthz").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_huge_parameter_field_is_refused_early() {
    let (_dir, s) = TestServer::start_temp().await;
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in piece_params(1, 1, 5, 5, "id", "a.txt") {
        if k != "identifier" {
            form = form.text(format!("resumable{}{}", k[..1].to_uppercase(), &k[1..]), v);
        }
    }
    // 100 MiB of identifier, streamed.
    let chunk = bytes::Bytes::from(vec![b'i'; 1 << 20]);
    let body = futures_util::stream::iter((0..100).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(body));
    let form = form.part("resumableIdentifier", part);
    let r = client().post(s.url("/api/files/upload/chunked")).multipart(form).send().await;
    // Refused (415 for resumable.js, which stops on it), or cut off early.
    if let Ok(r) = r {
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    assert!(s.bytes_in() < 16 << 20, "read {} bytes of a 100 MiB field", s.bytes_in());
    assert_eq!(s.get("/healthz").await.status(), StatusCode::OK);
}

/// A multipart body's preamble and part headers are bounded on every
/// multipart route (64 KiB each on the seed's, the whole batch's
/// `max_batch_bytes` on `POST /api/chunks`): 100 MiB of either, streamed
/// without a `Content-Length`, is refused after a few MiB are read (the
/// parser held what it read of them: a memory attack); the server stays up.
#[tokio::test]
async fn multipart_framing_is_bounded() {
    let (_dir, s) = TestServer::start_temp().await;
    let routes = ["/api/files/upload?filename=a.bin", "/api/files/upload/chunked", "/api/chunks"];
    // The third: a part's header section never ends (the delimiter line's
    // CRLF is not the empty line that would end it).
    let bodies: [(&str, &[u8]); 3] =
        [("preamble", b""), ("part headers", b"--BND\r\nX-Long: "), ("part headers", b"--BND\r\n\r\n")];
    for route in routes {
        for (what, head) in bodies {
            let head = bytes::Bytes::from_static(head);
            let filler = bytes::Bytes::from(vec![b'x'; 1 << 20]);
            let pieces =
                std::iter::once(head).chain(std::iter::repeat_n(filler, 100)).map(Ok::<_, std::io::Error>);
            let before = s.bytes_in();
            let r = client()
                .post(s.url(route))
                .header("Content-Type", "multipart/form-data; boundary=BND")
                .body(reqwest::Body::wrap_stream(futures_util::stream::iter(pieces)))
                .send()
                .await;
            // Refused with 413 naming the bound, or cut off early.
            if let Ok(r) = r {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{route}, {what}: {text}");
                let bound = if route == "/api/chunks" {
                    "at most 4259840 bytes".to_string()
                } else {
                    format!("{what} ran past 65536 bytes")
                };
                assert!(text.contains(&bound), "{route}, {what}: {text}");
            }
            let read = s.bytes_in() - before;
            assert!(read < 16 << 20, "{route}, {what}: read {read} bytes of 100 MiB");
        }
    }
    assert_eq!(s.get("/healthz").await.status(), StatusCode::OK);
    assert_eq!(s.stats().await.files, 0);
}

#[tokio::test]
async fn strict_edges() {
    let (_dir, s) = TestServer::start_temp().await;
    // Digits only.
    let p = common::http::with(piece_params(1, 1, 5, 5, "id", "a.txt"), "chunkNumber", " 1");
    assert_eq!(s.test_piece(&p).await, StatusCode::BAD_REQUEST);
    // A zero-length entry naming a chunk the store lacks.
    let ghost = ChunkId::of(b"never stored");
    let r = client()
        .post(s.url("/api/files"))
        .json(&json!({"name": "z.bin", "size": 0, "chunks": [{"hash": ghost, "len": 0}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    // A name that displays as another.
    let r = client()
        .post(s.url("/api/files/upload"))
        .query(&[("filename", "invoice\u{202e}fdp.exe")])
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(s.list_files(&[]).await.files.is_empty());
}

/// A server with short header and body-idle timeouts.
async fn impatient() -> (tempfile::TempDir, TestServer) {
    TestServer::start_temp_with(|c| {
        c.limits.header_timeout = depot::config::Dur(std::time::Duration::from_secs(1));
        c.limits.body_idle_timeout = depot::config::Dur(std::time::Duration::from_secs(1));
    })
    .await
}

#[tokio::test]
async fn slow_headers_are_cut_off_while_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_dir, s) = impatient().await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: local").await.unwrap();
        slow.push(c);
    }
    // Meanwhile a normal request is answered.
    assert_eq!(s.get("/healthz").await.status(), StatusCode::OK);
    // One more header byte every 300 ms does not keep them alive.
    let started = std::time::Instant::now();
    let mut closed = 0;
    for c in &mut slow {
        let mut buf = [0u8; 256];
        loop {
            let _ = c.write_all(b"h").await;
            match tokio::time::timeout(std::time::Duration::from_millis(300), c.read(&mut buf)).await {
                Ok(Ok(_)) | Ok(Err(_)) => {
                    closed += 1;
                    break;
                }
                Err(_) if started.elapsed() > std::time::Duration::from_secs(10) => break,
                Err(_) => {}
            }
        }
    }
    assert_eq!(closed, 200, "every slow connection was closed");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(s.get("/healthz").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn stalled_bodies_get_408_while_a_real_put_finishes() {
    let (_dir, s) = impatient().await;
    let mut stalled = Vec::new();
    for i in 0..64u32 {
        let data = pseudo_random(1 << 20, u64::from(i));
        let id = ChunkId::of(&data);
        let (tx, body) = common::http::fed_body(4);
        tx.send(Ok(data[..4096].to_vec())).await.unwrap();
        let req = client()
            .put(s.url(&format!("/api/chunks/{id}")))
            .header("Content-Length", (1u64 << 20).to_string())
            .body(body);
        stalled.push((tx, tokio::spawn(req.send())));
    }
    let data = pseudo_random(1 << 20, 999);
    let id = ChunkId::of(&data);
    let r = client().put(s.url(&format!("/api/chunks/{id}"))).body(data).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "the real PUT is not starved");
    for (tx, h) in stalled {
        let r = h.await.unwrap().unwrap();
        assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
        drop(tx);
    }
    assert_eq!(s.stats().await.unique_chunks, 1, "nothing of the stalled bodies is stored");
}

/// Below the free-space reserve, every way of sending new data is refused
/// with 507 before it writes (the JSON error; tus keeps its header), nothing
/// is stored and the server goes on serving; with room again the same
/// uploads work and `verify` is clean.
#[tokio::test]
async fn uploads_below_the_free_space_reserve_get_507_and_change_nothing() {
    use common::http::{piece_form, tus};
    use depot::config::ByteSize;
    use depot::wire::ErrorBody;
    // A reserve no filesystem here can meet.
    let (_dir, s) = TestServer::start_temp_with(|c| c.storage.min_free = ByteSize(1 << 60)).await;
    let data = pseudo_random(300_000, 21);
    let id = ChunkId::of(&data);
    let refused = |r: reqwest::Response| async move {
        assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
        let e: ErrorBody = r.json().await.unwrap();
        assert_eq!(e.error, "insufficient_storage");
        assert!(e.message.contains("reserve"), "{}", e.message);
    };
    let raw = client().post(s.url("/api/files/upload?filename=a.bin")).body(data.clone()).send();
    refused(raw.await.unwrap()).await;
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(data.clone()).file_name("a.bin"));
    refused(client().post(s.url("/api/files/upload")).multipart(form).send().await.unwrap()).await;
    refused(client().put(s.url(&format!("/api/chunks/{id}"))).body(data.clone()).send().await.unwrap()).await;
    let p = piece_params(1, 1, 300_000, 300_000, "reserve-1", "a.bin");
    refused(s.post_piece(piece_form(&p, Some(&data))).await).await;
    let r = tus(reqwest::Method::POST, &s.url("/api/tus/"))
        .header("Upload-Length", "300000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");

    let st = s.stats().await;
    assert_eq!((st.files, st.unique_chunks, st.stored_bytes), (0, 0, 0));
    assert_eq!(s.get("/healthz").await.status(), StatusCode::OK);

    // Room again: the same upload goes through.
    let mut cfg = depot::config::Config::clone(&s.state.config);
    s.stop().await;
    cfg.storage.min_free = ByteSize(0);
    let s = TestServer::start(cfg.clone()).await;
    let f = s.upload_raw("a.bin", &data).await;
    assert_eq!(s.download(&f.id).await, data);
    s.stop().await;
    let store = depot::store::Store::open(&cfg.data_dir, cfg.store_options()).unwrap();
    let report = store.verify(false).unwrap();
    assert!(report.is_clean(), "{report:?}");
}

/// A burst of bad tokens from one address ends in 429, after which that
/// address's credentials are not even checked (a valid token gets 429 too)
/// while requests without credentials go on; other addresses are not
/// affected (here: a trusted proxy forwarding for another client).
#[tokio::test]
async fn failed_authentication_has_its_own_small_budget() {
    use depot::config::AuthMode;
    use depot::store::{Scopes, Tenant};
    let (_dir, s) = TestServer::start_temp_with(|c| {
        c.auth.mode = AuthMode::Token;
        c.rate_limit.enabled = true;
        c.rate_limit.auth_failures_per_minute = 3;
        c.rate_limit.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let store = s.state.store.clone();
    let token = tokio::task::spawn_blocking(move || {
        store.issue_token(Tenant::default(), Scopes::all(), None, None).unwrap().1
    })
    .await
    .unwrap();
    let get = |bearer: String, forwarded_for: Option<&'static str>| {
        let mut r = client().get(s.url("/api/files")).bearer_auth(bearer);
        if let Some(ip) = forwarded_for {
            r = r.header("x-forwarded-for", ip);
        }
        async move { r.send().await.unwrap() }
    };
    let bad = || format!("dpt_01JAAAAAAAAAAAAAAAAAAAAAAA_{}", "x".repeat(43));
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(get(bad(), None).await.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429], "three failures a minute, then 429");
    let r = get(token.clone(), None).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "the address is blocked, valid token or not");
    assert!(r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(s.get("/healthz").await.status(), StatusCode::OK, "no credentials, no block");
    // Requests without credentials neither meet the block nor spend the
    // budget (a page before sign-in): a plain 401 however many there are.
    for _ in 0..5 {
        let r =
            client().get(s.url("/api/files")).header("x-forwarded-for", "198.51.100.9").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(get(token.clone(), Some("198.51.100.9")).await.status(), StatusCode::OK);
    // Another client behind the trusted proxy has its own budget.
    assert_eq!(get(token.clone(), Some("198.51.100.7")).await.status(), StatusCode::OK);
    assert_eq!(get(bad(), Some("198.51.100.7")).await.status(), StatusCode::UNAUTHORIZED);
    s.stop().await;
}

/// `X-Forwarded-For` from a peer that is not a trusted proxy changes
/// nothing: a client cannot reset its rate limit by naming new addresses.
/// From a trusted proxy, the right-most untrusted hop is the key.
#[tokio::test]
async fn spoofed_forwarded_for_does_not_reset_the_rate_limit() {
    let burst = |trusted: Vec<String>| {
        TestServer::start_temp_with(move |c| {
            c.rate_limit.enabled = true;
            c.rate_limit.api_per_second = 1;
            c.rate_limit.api_burst = 3;
            c.rate_limit.trusted_proxies = trusted;
        })
    };
    let statuses = |s: &TestServer, chain: fn(u32) -> String| {
        let url = s.url("/api/files");
        async move {
            let mut out = Vec::new();
            for i in 0..6 {
                let r = client().get(&url).header("x-forwarded-for", chain(i)).send().await.unwrap();
                out.push(r.status().as_u16());
            }
            out
        }
    };
    let fresh = |i: u32| format!("192.0.2.{i}");
    let (_d1, s) = burst(vec![]).await;
    let got = statuses(&s, fresh).await;
    assert!(got.starts_with(&[200, 200, 200]) && got.contains(&429), "untrusted peer: {got:?}");
    s.stop().await;
    // Behind a trusted proxy (the loopback peer), each forwarded client has
    // its own bucket, and what a client writes left of its own hop is ignored.
    let (_d2, s) = burst(vec!["127.0.0.1".into()]).await;
    assert_eq!(statuses(&s, fresh).await, [200; 6]);
    let got = statuses(&s, |i| format!("192.0.2.{i}, 198.51.100.1")).await;
    assert!(got.starts_with(&[200, 200, 200]) && got.contains(&429), "right-most hop: {got:?}");
    s.stop().await;
}

/// Polls `cond` every 20 ms for up to five seconds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A JSON body reserves its declared size from the body budget before it is
/// read, as chunk and piece bodies do: with a 4 MiB budget, a 3 MiB query
/// that has sent 1 MiB holds 3 MiB and another 3 MiB query waits for it.
/// Quiet while the other waits, the first gives back what it has not sent
/// (so the other gets through in about a second, not at the body idle
/// timeout), then takes its share back and finishes when it sends the rest.
#[tokio::test]
async fn json_bodies_draw_from_the_body_budget() {
    use common::http::{padded_json, read_response};
    use depot::config::{ByteSize, Dur};
    use std::time::{Duration, Instant};
    use tokio::io::AsyncWriteExt;
    const SIZE: usize = 3 << 20;
    let (_dir, s) = TestServer::start_temp_with(|c| {
        c.limits.max_buffered = ByteSize(4 << 20);
        c.limits.body_idle_timeout = Dur(Duration::from_secs(20));
    })
    .await;
    let body = padded_json(SIZE);
    let host = s.base.trim_start_matches("http://");
    let mut a = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST /api/chunks/missing HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {SIZE}\r\n\r\n"
    );
    a.write_all(head.as_bytes()).await.unwrap();
    a.write_all(&body[..1 << 20]).await.unwrap();
    let state = s.state.clone();
    eventually("the first query holds its 3 MiB", || state.body_budget_free() == 1 << 20).await;

    let started = Instant::now();
    let r = client()
        .post(s.url("/api/chunks/missing"))
        .header("Content-Type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(took >= Duration::from_millis(500), "the second query did not wait for room: {took:?}");
    assert!(took < Duration::from_secs(10), "the quiet query held its share for {took:?}");

    a.write_all(&body[1 << 20..]).await.unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut a, &mut buf).await.expect("an answer to the first query");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let answer: depot::wire::MissingResponse = serde_json::from_slice(&r.body).unwrap();
    assert!(answer.missing.is_empty());
    eventually("every share is back", || state.body_budget_free() == 4 << 20).await;
}

/// Four piece uploads that declare 64 MiB pieces (the whole 256 MiB body
/// budget between them) and stop sending do not stop a fifth client: while
/// it waits for room they keep only what they sent, so its 1 MiB chunk PUT
/// finishes within seconds, well before the body idle timeout, which then
/// ends the four with 408.
#[tokio::test]
async fn stalled_pieces_do_not_starve_a_chunk_put() {
    use common::http::{fed_body, field, handmade_multipart};
    use depot::config::{ByteSize, Dur};
    use std::time::{Duration, Instant};
    const IDLE: Duration = Duration::from_secs(8);
    let (_dir, s) = TestServer::start_temp_with(|c| {
        c.limits.max_buffered = ByteSize(256 << 20);
        c.limits.max_piece_size = ByteSize(64 << 20);
        c.limits.body_idle_timeout = Dur(IDLE);
    })
    .await;
    let mut stalled = Vec::new();
    for i in 0..4 {
        let params = piece_params(1, 2, 64 << 20, 128 << 20, &format!("stalled-{i}"), "big.bin");
        let mut parts: Vec<(String, &[u8])> = params.iter().map(|(k, v)| (field(k), v.as_bytes())).collect();
        parts.push((format!("{}; filename=\"blob\"", field("file")), &[7u8; 4096][..]));
        let (tx, body) = fed_body(2);
        tx.send(Ok(handmade_multipart("stall", &parts, false))).await.unwrap();
        let req = client()
            .post(s.url("/api/files/upload/chunked"))
            .header("Content-Type", "multipart/form-data; boundary=stall")
            .body(body);
        stalled.push((tx, tokio::spawn(req.send())));
    }
    let state = s.state.clone();
    eventually("the four pieces hold the whole budget", || state.body_budget_free() == 0).await;

    let data = pseudo_random(1 << 20, 4);
    let started = Instant::now();
    let r =
        client().put(s.url(&format!("/api/chunks/{}", ChunkId::of(&data)))).body(data).send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(took < IDLE / 2, "the chunk PUT took {took:?}");
    for (tx, h) in stalled {
        let r = h.await.unwrap().unwrap();
        assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
        drop(tx);
    }
    assert!(started.elapsed() >= IDLE - Duration::from_secs(1), "408 came at the idle timeout");
    assert_eq!(s.stats().await.unique_chunks, 1, "nothing of the stalled pieces is stored");
    eventually("every share is back", || state.body_budget_free() == 256 << 20).await;
}
