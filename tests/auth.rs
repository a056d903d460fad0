//! Authentication, tenants and scoped dedup against the real server in
//! `token` mode, with tenants A and B; `local` mode's loopback checks.

mod common;

use std::time::Duration;

use common::http::{TUS, as_token, piece, piece_params, prefixed, tus_by, tus_patch_by};
use common::{TestServer, test_config};
use depot::config::AuthMode;
use depot::store::{ChunkId, Tenant};
use depot::testdata::pseudo_random;
use depot::wire::{
    ErrorBody, FileInfo, FileList, LinkInfo, MissingResponse, PutChunkResponse, StatsInfo, TokenInfo,
};
use reqwest::{Client, Method, StatusCode};
use serde_json::json;

struct Tenants {
    _dir: tempfile::TempDir,
    srv: TestServer,
    clock: std::sync::Arc<depot::store::ManualClock>,
    admin: Client,
    a: Client,
    b: Client,
}

/// A `token`-mode server, its admin, and tokens for tenants `a` and `b`
/// (read, write, delete) made through the admin API.
async fn tenants() -> Tenants {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.auth.mode = AuthMode::Token;
    let (srv, clock) = TestServer::start_with_clock(cfg).await;
    let admin = as_token(&srv.admin_token().await);
    let a = as_token(&make_token(&srv, &admin, "a", &["read", "write", "delete"]).await.token.unwrap());
    let b = as_token(&make_token(&srv, &admin, "b", &["read", "write", "delete"]).await.token.unwrap());
    Tenants { _dir: dir, srv, clock, admin, a, b }
}

impl Tenants {
    /// `len` pseudo-random bytes (from `seed`) uploaded as `name` by tenant
    /// `a`: the bytes and the file.
    async fn a_uploads_random(&self, name: &str, len: usize, seed: u64) -> (Vec<u8>, FileInfo) {
        let data = pseudo_random(len, seed);
        let file = self.srv.upload_raw_as(&self.a, name, &data).await;
        (data, file)
    }
}

async fn make_token(srv: &TestServer, admin: &Client, tenant: &str, scopes: &[&str]) -> TokenInfo {
    let r = admin
        .post(srv.url("/api/admin/tokens"))
        .json(&json!({"tenant": tenant, "scopes": scopes}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let t: TokenInfo = r.json().await.unwrap();
    assert!(t.token.as_deref().unwrap().starts_with(&format!("dpt_{}_", t.id)));
    t
}

async fn chunk_ids(srv: &TestServer, c: &Client, id: &str) -> Vec<(ChunkId, u32)> {
    let m: serde_json::Value =
        c.get(srv.url(&format!("/api/files/{id}/manifest"))).send().await.unwrap().json().await.unwrap();
    m["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["hash"].as_str().unwrap().parse().unwrap(), c["len"].as_u64().unwrap() as u32))
        .collect()
}

async fn status_and_body(r: reqwest::RequestBuilder) -> (StatusCode, String) {
    let r = r.send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

#[tokio::test]
async fn bad_credentials_all_get_the_same_401() {
    let t = tenants().await;
    let srv = &t.srv;
    let short = make_token(srv, &t.admin, "a", &["read"]).await;
    let revoked = make_token(srv, &t.admin, "a", &["read"]).await;
    let good = short.token.clone().unwrap();
    let r = t.admin.delete(srv.url(&format!("/api/admin/tokens/{}", revoked.id))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Works now, before the clock passes its 90 days.
    assert_eq!(as_token(&good).get(srv.url("/api/files")).send().await.unwrap().status(), StatusCode::OK);
    let wrong_secret =
        format!("{}{}", &good[..good.len() - 2], if good.ends_with("AA") { "BB" } else { "AA" });
    let plain = Client::new();
    let answers = vec![
        ("no token", status_and_body(plain.get(srv.url("/api/files"))).await),
        ("garbage", status_and_body(as_token("garbage").get(srv.url("/api/files"))).await),
        ("wrong secret", status_and_body(as_token(&wrong_secret).get(srv.url("/api/files"))).await),
        ("revoked", status_and_body(as_token(&revoked.token.unwrap()).get(srv.url("/api/files"))).await),
        (
            "in the query string",
            status_and_body(
                plain.get(srv.url("/api/files")).query(&[("token", &good), ("access_token", &good)]),
            )
            .await,
        ),
    ];
    let first = answers[0].1.clone();
    for (what, (status, body)) in &answers {
        assert_eq!(*status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(*body, first.1, "{what}: the same body for every failure");
    }
    let r = plain.get(srv.url("/api/files")).send().await.unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"depot\"");
    // Basic with the token as password works; probes and docs need nothing.
    let admin_list = t.admin.get(srv.url("/api/admin/tokens")).send().await.unwrap();
    assert_eq!(admin_list.status(), StatusCode::OK);
    let fresh = make_token(srv, &t.admin, "a", &["read"]).await.token.unwrap();
    let r = plain.get(srv.url("/api/files")).basic_auth("", Some(&fresh)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for open in ["/healthz", "/api/openapi.json", "/api/docs/"] {
        assert_eq!(plain.get(srv.url(open)).send().await.unwrap().status(), StatusCode::OK, "{open}");
    }
    // The admin API and global figures need admin.
    let a_list = t.a.get(srv.url("/api/admin/tokens")).send().await.unwrap();
    assert_eq!(a_list.status(), StatusCode::FORBIDDEN);
    assert_eq!(t.a.get(srv.url("/metrics")).send().await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(t.admin.get(srv.url("/metrics")).send().await.unwrap().status(), StatusCode::OK);
    let metrics_only = as_token(&make_token(srv, &t.admin, "ops", &["metrics"]).await.token.unwrap());
    assert_eq!(metrics_only.get(srv.url("/metrics")).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(metrics_only.get(srv.url("/api/files")).send().await.unwrap().status(), StatusCode::FORBIDDEN);
    // Past its 90 days the token is as good as none.
    t.clock.advance(Duration::from_secs(91 * 86_400));
    let expired = status_and_body(as_token(&good).get(srv.url("/api/files"))).await;
    assert_eq!(expired, first, "expired");
}

#[tokio::test]
async fn tenants_see_only_their_own_files() {
    let t = tenants().await;
    let srv = &t.srv;
    let a_file = srv.upload_raw_as(&t.a, "a.bin", &pseudo_random(300_000, 1)).await;
    t.clock.advance(Duration::from_secs(1)); // ids sort by time
    let b_file = srv.upload_raw_as(&t.b, "b.bin", &pseudo_random(100_000, 2)).await;
    let list = |c: &Client| {
        let c = c.clone();
        let url = srv.url("/api/files");
        async move { c.get(url).send().await.unwrap().json::<FileList>().await.unwrap() }
    };
    let names = |l: FileList| l.files.into_iter().map(|f| f.name).collect::<Vec<_>>();
    assert_eq!(names(list(&t.a).await), ["a.bin"]);
    assert_eq!(names(list(&t.b).await), ["b.bin"]);
    assert_eq!(names(list(&t.admin).await), ["b.bin", "a.bin"], "admin sees every tenant");
    // Searches stay inside the tenant too.
    let r: FileList =
        t.b.get(srv.url("/api/files")).query(&[("q", "bin")]).send().await.unwrap().json().await.unwrap();
    assert_eq!(names(r), ["b.bin"]);

    let never = "01J00000000000000000000000";
    for path in ["", "/info", "/manifest"] {
        let theirs = status_and_body(t.b.get(srv.url(&format!("/api/files/{}{path}", a_file.id)))).await;
        let none = status_and_body(t.b.get(srv.url(&format!("/api/files/{never}{path}")))).await;
        assert_eq!(theirs.0, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(theirs.1.replace(&a_file.id, never), none.1, "{path}: as if it never existed");
    }
    let r = t.b.delete(srv.url(&format!("/api/files/{}", a_file.id))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r =
        t.b.post(srv.url(&format!("/api/files/{}/link", a_file.id))).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // A's file is untouched; stats are per tenant, global for admin.
    let got = t.a.get(srv.url(&format!("/api/files/{}", a_file.id))).send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap().to_vec(), pseudo_random(300_000, 1));
    let sa: StatsInfo = t.a.get(srv.url("/api/stats")).send().await.unwrap().json().await.unwrap();
    let all: StatsInfo = t.admin.get(srv.url("/api/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!((sa.files, sa.logical_bytes), (1, 300_000));
    assert_eq!((all.files, all.logical_bytes), (2, 400_000));
    assert_eq!(t.b.delete(srv.url(&format!("/api/files/{}", b_file.id))).send().await.unwrap().status(), 204);
    assert!(list(&t.b).await.files.is_empty());
}

#[tokio::test]
async fn a_file_read_by_its_tenant_stays_hidden_from_another() {
    let t = tenants().await;
    let srv = &t.srv;
    let (data, a_file) = t.a_uploads_random("a.bin", 300_000, 4).await;
    let path = srv.url(&format!("/api/files/{}", a_file.id));
    let ranged = |c: &Client, range: &'static str| c.get(&path).header("Range", range);
    // A reads it, whole and by ranges: the server now holds it open.
    for _ in 0..2 {
        let r = ranged(&t.a, "bytes=1000-70999").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.bytes().await.unwrap(), data[1000..71_000]);
    }
    assert_eq!(t.a.get(&path).send().await.unwrap().bytes().await.unwrap(), data);
    // B gets what an id that never existed gets, by range, whole or HEAD.
    let never = "01J00000000000000000000000";
    let none = status_and_body(t.b.get(srv.url(&format!("/api/files/{never}")))).await;
    for _ in 0..2 {
        let theirs = status_and_body(ranged(&t.b, "bytes=1000-70999")).await;
        assert_eq!(theirs.0, StatusCode::NOT_FOUND);
        assert_eq!(theirs.1.replace(&a_file.id, never), none.1);
        let whole = t.b.get(&path).send().await.unwrap();
        assert_eq!(whole.status(), StatusCode::NOT_FOUND);
        assert_eq!(t.b.head(&path).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    }
    // The admin sees every tenant's file; A still reads its own.
    let r = ranged(&t.admin, "bytes=0-9").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap(), data[..10]);
    assert_eq!(ranged(&t.a, "bytes=0-9").send().await.unwrap().status(), StatusCode::PARTIAL_CONTENT);
}

#[tokio::test]
async fn dedup_answers_stay_inside_the_tenant() {
    let t = tenants().await;
    let srv = &t.srv;
    let (data, a_file) = t.a_uploads_random("doc.bin", 2_000_000, 3).await;
    let chunks = chunk_ids(srv, &t.a, &a_file.id).await;
    assert!(chunks.len() > 3);
    let hashes: Vec<ChunkId> = chunks.iter().map(|c| c.0).collect();
    let missing = |c: &Client, h: Vec<ChunkId>| {
        let c = c.clone();
        let url = srv.url("/api/chunks/missing");
        async move {
            let r = c.post(url).json(&json!({ "hashes": h })).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<MissingResponse>().await.unwrap().missing
        }
    };
    // A knows its chunks; B learns nothing, in a small batch or a big one.
    assert!(missing(&t.a, hashes.clone()).await.is_empty());
    assert_eq!(missing(&t.b, hashes.clone()).await, hashes);
    let mut big: Vec<ChunkId> = (0..10_000u32).map(|i| ChunkId::of(&i.to_le_bytes())).collect();
    big.extend(&hashes);
    assert_eq!(missing(&t.b, big.clone()).await.len(), big.len(), "all of 10,000 reported missing");
    // The hash is no read key.
    let r = t.b.get(srv.url(&format!("/api/chunks/{}", hashes[0]))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = t.a.get(srv.url(&format!("/api/chunks/{}", hashes[0]))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["cache-control"].to_str().unwrap().starts_with("private"));
    // A commit by reference: 409 naming them, and no length in the answer.
    let wrong_len: Vec<_> = chunks.iter().map(|(h, l)| json!({"hash": h, "len": l + 1})).collect();
    let r =
        t.b.post(srv.url("/api/files"))
            .json(&json!({"name": "stolen.bin", "size": data.len() + chunks.len(), "chunks": wrong_len}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let e: ErrorBody = r.json().await.unwrap();
    assert_eq!(e.missing.unwrap(), hashes);
    for (_, len) in &chunks {
        assert!(!e.message.contains(&len.to_string()), "no chunk length leaks: {}", e.message);
    }
    // Sending the bytes earns the reference; storage does not grow.
    let before: StatsInfo = t.admin.get(srv.url("/api/stats")).send().await.unwrap().json().await.unwrap();
    let mut at = 0usize;
    for (h, len) in &chunks {
        let body = data[at..at + *len as usize].to_vec();
        at += *len as usize;
        let r = t.b.put(srv.url(&format!("/api/chunks/{h}"))).body(body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "new to B, though the store had it");
        let p: PutChunkResponse = r.json().await.unwrap();
        assert!(p.new);
    }
    let refs: Vec<_> = chunks.iter().map(|(h, l)| json!({"hash": h, "len": l})).collect();
    let r =
        t.b.post(srv.url("/api/files"))
            .json(&json!({"name": "mine.bin", "size": data.len(), "chunks": refs}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let after: StatsInfo = t.admin.get(srv.url("/api/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(after.unique_bytes, before.unique_bytes, "stored once");
    assert_eq!(after.logical_bytes, before.logical_bytes + data.len() as u64);
    assert!(missing(&t.b, hashes.clone()).await.is_empty(), "now B holds them");
}

#[tokio::test]
async fn scopes_limit_what_a_token_does() {
    let t = tenants().await;
    let srv = &t.srv;
    let file = srv.upload_raw_as(&t.a, "x.txt", b"hello").await;
    let ro = as_token(&make_token(srv, &t.admin, "a", &["read"]).await.token.unwrap());
    let wo = as_token(&make_token(srv, &t.admin, "a", &["write"]).await.token.unwrap());
    let h = ChunkId::of(b"hello");
    let forbidden = [
        ro.post(srv.url("/api/files/upload")).query(&[("filename", "y")]).body("y"),
        ro.put(srv.url(&format!("/api/chunks/{h}"))).body("hello"),
        ro.post(srv.url("/api/chunks/missing")).json(&json!({"hashes": [h]})),
        ro.post(srv.url("/api/files"))
            .json(&json!({"name": "y", "size": 5, "chunks": [{"hash": h, "len": 5}]})),
        ro.delete(srv.url(&format!("/api/files/{}", file.id))),
        ro.post(srv.url("/api/files/upload/chunked")).multipart(piece(1, 1, 5, 5, "id", "y", b"hello")),
        wo.get(srv.url("/api/files")),
        wo.get(srv.url(&format!("/api/files/{}", file.id))),
        t.a.post(srv.url("/api/admin/backups")),
    ];
    for (i, req) in forbidden.into_iter().enumerate() {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "request {i}");
    }
    // tus answers carry Tus-Resumable; the browser libraries get 415.
    let r = ro
        .post(srv.url("/api/tus/"))
        .header("Tus-Resumable", TUS)
        .header("Upload-Length", "5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.headers()["tus-resumable"], TUS);
    let params = prefixed("resumable", &piece_params(1, 1, 5, 5, "rid", "y.txt"));
    let form = params.iter().fold(reqwest::multipart::Form::new(), |f, (k, v)| f.text(k.clone(), v.clone()));
    let r = ro
        .post(srv.url("/api/files/upload/chunked"))
        .multipart(form.part("file", reqwest::multipart::Part::bytes(b"hello".to_vec()).file_name("y.txt")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "resumable.js stops on 415");
    let r = ro.get(srv.url("/api/files/upload/chunked")).query(&params).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // What each may do still works.
    assert_eq!(ro.get(srv.url(&format!("/api/files/{}", file.id))).send().await.unwrap().status(), 200);
    let r = wo.post(srv.url("/api/files/upload")).query(&[("filename", "w")]).body("w").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = t.admin.post(srv.url("/api/admin/backups")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "a backup is the admin's");
}

#[tokio::test]
async fn chunked_sessions_belong_to_their_tenant() {
    let t = tenants().await;
    let srv = &t.srv;
    let piece_len = 100_000u64;
    let data = pseudo_random(3 * piece_len as usize, 4);
    let size = data.len() as u64;
    let send = |c: &Client, n: u32, bytes: &[u8]| {
        let form = piece(n, 3, piece_len, size, "size-name", "shared.bin", bytes);
        c.post(srv.url("/api/files/upload/chunked")).multipart(form).send()
    };
    let slice = |n: usize| &data[(n - 1) * piece_len as usize..n * piece_len as usize];
    assert_eq!(send(&t.a, 1, slice(1)).await.unwrap().status(), StatusCode::OK);
    assert_eq!(send(&t.a, 2, slice(2)).await.unwrap().status(), StatusCode::OK);
    // B guesses A's identifier: it tests, then plants a last piece of its own.
    let p3 = piece_params(3, 3, piece_len, size, "size-name", "shared.bin");
    let r = t.b.get(srv.url("/api/files/upload/chunked")).query(&p3).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "B's test sees no session");
    let p1 = piece_params(1, 3, piece_len, size, "size-name", "shared.bin");
    let p1 = common::http::with(p1, "chunkHash", &ChunkId::of(slice(1)).to_string());
    let r = t.b.get(srv.url("/api/files/upload/chunked")).query(&p1).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "A's piece hash means nothing to B");
    let forged = vec![0xEEu8; piece_len as usize];
    let r = send(&t.b, 3, &forged).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "B's own session, still partial");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["received"], 1, "B learns nothing of A's pieces");
    // A finishes: the file is A's bytes.
    let r = send(&t.a, 3, slice(3)).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: serde_json::Value = r.json().await.unwrap();
    let id = body["file"]["id"].as_str().unwrap().to_string();
    let got = t.a.get(srv.url(&format!("/api/files/{id}"))).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(blake3::hash(&got), blake3::hash(&data));
}

#[tokio::test]
async fn tus_uploads_belong_to_their_tenant() {
    let t = tenants().await;
    let srv = &t.srv;
    let create = |c: &Client, extra: Option<(&str, String)>| {
        let mut r = tus_by(c, Method::POST, &srv.url("/api/tus/")).header("Upload-Length", "10");
        if let Some((k, v)) = extra {
            r = r.header(k, v);
        }
        r.send()
    };
    let r = create(&t.a, Some(("Upload-Concat", "partial".into()))).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let url = if loc.starts_with("http") { loc.clone() } else { srv.url(&loc) };
    let r = tus_patch_by(&t.a, &url, 0).body("0123456789").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let never = srv.url("/api/tus/00000000000000000000000000000000");
    for (m, u) in [(Method::HEAD, &url), (Method::DELETE, &url), (Method::HEAD, &never)] {
        let r = tus_by(&t.b, m.clone(), u).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{m} {u}");
    }
    let r = tus_patch_by(&t.b, &url, 10).body("x").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let path = url.trim_start_matches(&srv.base).to_string();
    let concat = |c: &Client| {
        tus_by(c, Method::POST, &srv.url("/api/tus/")).header("Upload-Concat", format!("final;{path}")).send()
    };
    let r = concat(&t.b).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "B cannot concatenate A's part");
    // A still can: its upload is intact.
    let r = tus_by(&t.a, Method::HEAD, &url).send().await.unwrap();
    assert_eq!(r.headers()["upload-offset"], "10");
    let r = concat(&t.a).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// Token checks by where the token's row came from, as `/metrics` counts
/// them (`memory`, `metadata`); the scrape's own check is among them.
async fn token_checks(t: &Tenants) -> (u64, u64) {
    let m = t.admin.get(t.srv.url("/metrics")).send().await.unwrap().text().await.unwrap();
    (
        common::metric(&m, "depot_token_checks_total{row=\"memory\"}"),
        common::metric(&m, "depot_token_checks_total{row=\"metadata\"}"),
    )
}

/// A token's row, read once for a check, answers the next checks from
/// memory until `TOKEN_CACHE_TTL` has passed by the store's clock (then it
/// is read again); a wrong secret is refused against the row in memory,
/// and a revocation made on this server holds from the next request on.
#[tokio::test]
async fn token_checks_read_a_row_once_a_while_yet_a_revocation_holds_at_once() {
    let t = tenants().await;
    let srv = &t.srv;
    let tok = make_token(srv, &t.admin, "a", &["read"]).await;
    let secret = tok.token.clone().unwrap();
    let c = as_token(&secret);
    let list = |c: &Client| {
        let r = c.get(srv.url("/api/files"));
        async move { r.send().await.unwrap().status() }
    };
    let before = token_checks(&t).await;
    for _ in 0..3 {
        assert_eq!(list(&c).await, StatusCode::OK);
    }
    let after = token_checks(&t).await;
    // The token's first check read its row, the next two did not; the
    // admin's scrape found the admin's row in memory.
    assert_eq!((after.0 - before.0, after.1 - before.1), (3, 1), "(memory, metadata) checks");

    t.clock.advance(depot::store::TOKEN_CACHE_TTL);
    assert_eq!(list(&c).await, StatusCode::OK);
    let later = token_checks(&t).await;
    // Both rows were read again: the token's and the admin's.
    assert_eq!((later.0 - after.0, later.1 - after.1), (0, 2), "(memory, metadata) checks past the TTL");

    let wrong =
        format!("{}{}", &secret[..secret.len() - 2], if secret.ends_with("AA") { "BB" } else { "AA" });
    assert_eq!(list(&as_token(&wrong)).await, StatusCode::UNAUTHORIZED, "a wrong secret, row in memory");
    assert_eq!(list(&c).await, StatusCode::OK);
    let r = t.admin.delete(srv.url(&format!("/api/admin/tokens/{}", tok.id))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(list(&c).await, StatusCode::UNAUTHORIZED, "revoked, though its row was in memory");
}

#[tokio::test]
async fn signed_links_work_until_they_should_not() {
    let t = tenants().await;
    let srv = &t.srv;
    let (data, file) = t.a_uploads_random("clip.bin", 50_000, 5).await;
    let link = |c: &Client, ttl: u64| {
        let c = c.clone();
        let url = srv.url(&format!("/api/files/{}/link", file.id));
        async move {
            let r = c.post(url).json(&json!({"expires_in": ttl})).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            r.json::<LinkInfo>().await.unwrap().url
        }
    };
    let anon = Client::new();
    // No body, or `null`: the default lifetime.
    for body in [None, Some("null")] {
        let mut req = t.a.post(srv.url(&format!("/api/files/{}/link", file.id)));
        if let Some(b) = body {
            req = req.header("Content-Type", "application/json").body(b);
        }
        assert_eq!(req.send().await.unwrap().status(), StatusCode::CREATED, "{body:?}");
    }
    let url = link(&t.a, 600).await;
    let r = anon.get(srv.url(&url)).header("Range", "bytes=100-199").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["referrer-policy"], "no-referrer");
    assert_eq!(r.bytes().await.unwrap().to_vec(), data[100..200].to_vec());
    assert_eq!(anon.head(srv.url(&url)).send().await.unwrap().status(), StatusCode::OK);
    // The link reads, nothing else: a DELETE with it has no credentials.
    assert_eq!(anon.delete(srv.url(&url)).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let still = t.a.get(srv.url(&format!("/api/files/{}", file.id))).send().await.unwrap();
    assert_eq!(still.bytes().await.unwrap().to_vec(), data, "the file is still there");
    // Any change voids it.
    let other = srv.upload_raw_as(&t.a, "other.bin", b"other").await;
    let tampered = [
        url.replace(&file.id, &other.id),
        url.replacen("exp=", "exp=9", 1),
        {
            let mut u = url.clone();
            let c = u.pop().unwrap();
            u.push(if c == 'A' { 'B' } else { 'A' });
            u
        },
        url.split("&sig=").next().unwrap().to_string(),
    ];
    for u in &tampered {
        let r = anon.get(srv.url(u)).send().await.unwrap();
        assert!(matches!(r.status().as_u16(), 401 | 403), "{u}: {}", r.status());
    }
    // Expiry.
    t.clock.advance(Duration::from_secs(601));
    assert_eq!(anon.get(srv.url(&url)).send().await.unwrap().status(), StatusCode::FORBIDDEN);
    // Revoking the token that made it.
    let tok = make_token(srv, &t.admin, "a", &["read"]).await;
    let url = link(&as_token(tok.token.as_deref().unwrap()), 600).await;
    assert_eq!(anon.get(srv.url(&url)).send().await.unwrap().status(), StatusCode::OK);
    t.admin.delete(srv.url(&format!("/api/admin/tokens/{}", tok.id))).send().await.unwrap();
    assert_eq!(anon.get(srv.url(&url)).send().await.unwrap().status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn stored_html_cannot_script_the_origin() {
    let t = tenants().await;
    let srv = &t.srv;
    let file = srv.upload_raw_as(&t.a, "page.html", b"<html><script>alert(1)</script></html>").await;
    for q in ["", "?disposition=inline"] {
        let r = t.a.get(srv.url(&format!("/api/files/{}{q}", file.id))).send().await.unwrap();
        let h = r.headers();
        assert!(h["content-disposition"].to_str().unwrap().starts_with("attachment"), "{q}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(h["content-security-policy"].to_str().unwrap().starts_with("sandbox"));
        assert!(h["cache-control"].to_str().unwrap().starts_with("private"));
    }
    let img = srv.upload_raw_as(&t.a, "pic.txt", b"just text").await;
    let r = t.a.get(srv.url(&format!("/api/files/{}?disposition=inline", img.id))).send().await.unwrap();
    assert!(r.headers()["content-disposition"].to_str().unwrap().starts_with("inline"));
}

#[tokio::test]
async fn local_mode_serves_this_machine_only() {
    let (_dir, srv) = TestServer::start_temp().await;
    let c = Client::new();
    assert_eq!(c.get(srv.url("/api/files")).send().await.unwrap().status(), StatusCode::OK);
    let port = srv.base.rsplit(':').next().unwrap().to_string();
    for (h, v) in [
        ("Host", "evil.example".to_string()),
        ("Origin", "http://evil.example".into()),
        ("Origin", "null".into()),
    ] {
        let r = c.get(srv.url("/api/files")).header(h, v.clone()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{h}: {v}");
        let r = c
            .delete(srv.url("/api/files/01J00000000000000000000000"))
            .header(h, v.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{h}: {v}");
    }
    for (h, v) in [("Host", format!("localhost:{port}")), ("Origin", format!("http://localhost:{port}"))] {
        let r = c.get(srv.url("/api/files")).header(h, v.clone()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{h}: {v}");
    }
    // CORS answers loopback origins only.
    let pre = |origin: &str| {
        c.request(reqwest::Method::OPTIONS, srv.url("/api/files"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "DELETE")
            .send()
    };
    let r = pre("http://127.0.0.1:3000").await.unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "http://127.0.0.1:3000");
    let r = pre("http://evil.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // The binary refuses a non-loopback address in local mode.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_depot"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("d"))
        .env_remove("DEPOT_AUTH_MODE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auth.mode"), "{err}");
    assert!(!dir.path().join("d").exists(), "no data dir made");
}

#[tokio::test]
async fn token_mode_writes_the_admin_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    // Killed when dropped, a failing assertion included.
    let server =
        common::cli::Served::start(&data, &["--listen", "127.0.0.1:0", "--auth-mode", "token"], &[]).await;
    let base = server.base.clone();
    let said = server.log();
    assert!(said.contains("admin.token"), "{said}");
    let path = data.join("admin.token");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&path).unwrap().trim().to_string();
    let r = as_token(&token).get(format!("{base}/api/stats")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(Client::new().get(format!("{base}/api/stats")).send().await.unwrap().status(), 401);
    // `depot token` through the admin API, with the admin token.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_depot"))
            .args(args)
            .args(["--server", &base])
            .env("DEPOT_TOKEN", &token)
            .env("HOME", dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let made = cli(&["token", "create", "--tenant", "cli", "--scope", "read,write", "--expires", "1d"]);
    let made = made.trim().to_string();
    assert!(made.starts_with("dpt_"), "{made}");
    assert_eq!(as_token(&made).get(format!("{base}/api/files")).send().await.unwrap().status(), 200);
    let list: depot::wire::TokenList = serde_json::from_str(&cli(&["token", "list", "--json"])).unwrap();
    let id = list.tokens.iter().find(|t| t.tenant == "cli").unwrap().id.clone();
    assert!(list.tokens.iter().all(|t| t.token.is_none()), "no secrets in a listing");
    cli(&["token", "revoke", &id]);
    assert_eq!(as_token(&made).get(format!("{base}/api/files")).send().await.unwrap().status(), 401);
    drop(server);
}

/// A store from before tenants (schema 1: no tenant in records, no tenant
/// rows) is migrated on open, resumably: every file belongs to `default`,
/// lists there, and its chunks are known to `default` only.
#[test]
fn stores_from_before_tenants_migrate_to_default() {
    use std::sync::Arc;

    use depot::store::meta::{Batch, Cf, MemMeta, MetaStore};
    use depot::store::{FileName, ManualClock, MemObjects, Store, View};

    let dir = tempfile::tempdir().unwrap();
    let meta = Arc::new(MemMeta::new());
    let objects = Arc::new(MemObjects::new());
    let clock = ManualClock::new();
    let open = || {
        Store::open_on(
            dir.path(),
            common::test_options(),
            meta.clone(),
            objects.clone(),
            clock.clone() as Arc<dyn depot::store::Clock>,
        )
        .unwrap()
    };
    let s = open();
    let mut ids = Vec::new();
    for (i, len) in [200_000usize, 300_000].into_iter().enumerate() {
        let mut ing = s.ingest(Tenant::default()).unwrap();
        ing.push(&pseudo_random(len, 10 + i as u64)).unwrap();
        ids.push(ing.finish(&FileName::parse(&format!("f{i}")).unwrap(), None).unwrap().id);
        clock.advance(Duration::from_secs(1));
    }
    let before = s.tenant_stats(&Tenant::default()).unwrap();
    let first_chunks: Vec<ChunkId> = s.segment(&ids[0], 0).unwrap().iter().map(|e| e.id).collect();
    s.close().unwrap();
    drop(s);

    // Make it look like schema 1 written by the old version, with the
    // migration cut short after the first file.
    let tenant_rows: Vec<Box<[u8]>> = meta.scan(Cf::Tenants, b"", None).map(|kv| kv.unwrap().0).collect();
    let mut b = Batch::default();
    for k in tenant_rows {
        b.delete(Cf::Tenants, &k);
    }
    for id in &ids {
        let v = meta.get(Cf::Files, id.as_bytes()).unwrap().unwrap();
        let mut rec: serde_json::Value = serde_json::from_slice(&v).unwrap();
        rec.as_object_mut().unwrap().remove("tenant");
        b.put(Cf::Files, id.as_bytes(), &serde_json::to_vec(&rec).unwrap());
    }
    b.put(Cf::Meta, b"schema_version", b"1");
    meta.write(b, true).unwrap();
    assert!(open().list_files(&View::Tenant(Tenant::default()), None, 10).unwrap().0.len() == 2);
    // (That open migrated. Undo it again, half-way this time.)
    let tenant_rows: Vec<Box<[u8]>> = meta.scan(Cf::Tenants, b"", None).map(|kv| kv.unwrap().0).collect();
    let mut b = Batch::default();
    for k in tenant_rows {
        b.delete(Cf::Tenants, &k);
    }
    // The rows the first file's step wrote (see store::tenant's layout).
    let mut counts = std::collections::HashMap::<ChunkId, u64>::new();
    for c in &first_chunks {
        *counts.entry(*c).or_default() += 1;
    }
    for (c, n) in counts {
        b.put(Cf::Tenants, &[b"cdefault/".as_slice(), c.as_bytes()].concat(), &n.to_le_bytes());
    }
    b.put(Cf::Tenants, &[b"fdefault/".as_slice(), ids[0].as_bytes()].concat(), b"");
    b.put(Cf::Meta, b"schema_version", b"1");
    b.put(Cf::Meta, b"migrate/tenants", ids[0].as_bytes());
    meta.write(b, true).unwrap();

    let s = open();
    assert_eq!(meta.get(Cf::Meta, b"schema_version").unwrap().unwrap(), b"4");
    let (files, _) = s.list_files(&View::Tenant(Tenant::default()), None, 10).unwrap();
    assert_eq!(files.iter().map(|f| f.id).collect::<Vec<_>>(), vec![ids[1], ids[0]]);
    assert!(files.iter().all(|f| f.tenant == Tenant::default()));
    let after = s.tenant_stats(&Tenant::default()).unwrap();
    assert_eq!(
        (after.files, after.logical_bytes, after.unique_chunks, after.unique_bytes),
        (before.files, before.logical_bytes, before.unique_chunks, before.unique_bytes)
    );
    let other = View::Tenant(Tenant::parse("other").unwrap());
    for id in &ids {
        let entries = s.segment(id, 0).unwrap();
        let chunks: Vec<ChunkId> = entries.iter().map(|e| e.id).collect();
        assert!(s.known_in(&View::Tenant(Tenant::default()), &chunks).unwrap().iter().all(|k| *k));
        assert!(s.known_in(&other, &chunks).unwrap().iter().all(|k| !*k));
    }
    let v = s.verify(false).unwrap();
    assert!(v.is_clean() && v.tenant_row_mismatches == 0, "{v:?}");
    // verify finds a tenant row that lies, and --repair puts it right.
    let mut b = Batch::default();
    b.put(Cf::Tenants, &[b"cother/".as_slice(), first_chunks[0].as_bytes()].concat(), &1u64.to_le_bytes());
    b.delete(Cf::Tenants, &[b"fdefault/".as_slice(), ids[1].as_bytes()].concat());
    meta.write(b, true).unwrap();
    assert_eq!(s.verify(true).unwrap().tenant_row_mismatches, 2);
    assert_eq!(s.verify(false).unwrap().tenant_row_mismatches, 0);
    assert!(s.known_in(&other, &first_chunks[..1]).unwrap() == [false]);
    // Deleting after the migration brings the tenant's rows back to none.
    for id in &ids {
        s.delete_file(&View::All, id).unwrap();
    }
    assert_eq!(meta.scan(Cf::Tenants, b"c", None).count(), 0, "committed rows all released");
}
