//! Tenant quotas against the real server in `token` mode: every protocol
//! is refused past a cap (507 `quota_exceeded`, 413 at tus creation),
//! nothing of the refused upload is committed, usage is counted in the
//! commit and delete batches and `verify` agrees with it; the admin API and
//! `depot tenant` set and show them.

mod common;

use common::http::{OCTET, TUS, as_token, piece};
use common::{TestServer, test_config};
use depot::config::AuthMode;
use depot::store::{ChunkId, Tenant};
use depot::testdata::pseudo_random;
use depot::wire::{ErrorBody, FileInfo, FileList, TenantInfo};
use reqwest::{Client, StatusCode};
use serde_json::json;

const MIB: u64 = 1 << 20;

struct Setup {
    _dir: tempfile::TempDir,
    srv: TestServer,
    admin: Client,
    a: Client,
}

/// A token-mode server, its admin, and tenant `a` (read, write, delete)
/// with `quota` set through the admin API.
async fn setup(quota: serde_json::Value) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.auth.mode = AuthMode::Token;
    let srv = TestServer::start(cfg).await;
    let admin = as_token(&srv.admin_token().await);
    let r = admin
        .post(srv.url("/api/admin/tokens"))
        .json(&json!({"tenant": "a", "scopes": ["read", "write", "delete"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let a = as_token(&r.json::<depot::wire::TokenInfo>().await.unwrap().token.unwrap());
    let r = admin.put(srv.url("/api/admin/tenants/a/quota")).json(&quota).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    Setup { _dir: dir, srv, admin, a }
}

impl Setup {
    async fn tenant(&self) -> TenantInfo {
        let r = self.admin.get(self.srv.url("/api/admin/tenants/a")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    async fn upload(&self, name: &str, data: &[u8]) -> reqwest::Response {
        self.a
            .post(self.srv.url(&format!("/api/files/upload?filename={name}")))
            .header("Content-Type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .unwrap()
    }

    async fn files(&self) -> usize {
        let l: FileList = self.a.get(self.srv.url("/api/files")).send().await.unwrap().json().await.unwrap();
        l.files.len()
    }

    /// The store is consistent: nothing to repair, counters included.
    async fn verify_clean(&self) {
        let store = self.srv.state.store.clone();
        let rep = tokio::task::spawn_blocking(move || store.verify(false)).await.unwrap().unwrap();
        assert!(rep.counter_mismatches.is_empty(), "{:?}", rep.counter_mismatches);
        assert!(rep.is_clean(), "{rep:?}");
    }
}

/// An answer's `Location`, absolute.
fn location(srv: &TestServer, r: &reqwest::Response) -> String {
    let loc = r.headers()["location"].to_str().unwrap();
    if loc.starts_with("http") { loc.to_string() } else { srv.url(loc) }
}

async fn refused(r: reqwest::Response, status: StatusCode) {
    assert_eq!(r.status(), status);
    let e: ErrorBody = r.json().await.unwrap();
    assert_eq!(
        e.error,
        if status == StatusCode::INSUFFICIENT_STORAGE { "quota_exceeded" } else { "too_large" }
    );
    assert!(e.message.contains("quota"), "{}", e.message);
}

#[tokio::test]
async fn an_upload_past_the_bytes_cap_is_refused_by_every_protocol() {
    let s = setup(json!({"bytes": 10 * MIB})).await;
    let before = s.tenant().await;
    assert_eq!(before.quota.bytes, Some(10 * MIB));
    assert_eq!((before.usage.bytes, before.usage.files, before.usage.pending), (0, 0, 0));
    let big = pseudo_random((11 * MIB) as usize, 7);
    let storage = StatusCode::INSUFFICIENT_STORAGE;

    // Regular upload: raw body (refused before reading) and multipart.
    refused(s.upload("big.bin", &big).await, storage).await;
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(big.clone()).file_name("big.bin"));
    refused(s.a.post(s.srv.url("/api/files/upload")).multipart(form).send().await.unwrap(), storage).await;
    // The same, streamed without a length: refused once past the cap.
    let parts: Vec<Vec<u8>> = big.chunks(MIB as usize).map(<[u8]>::to_vec).collect();
    let stream = futures_util::stream::iter(parts.into_iter().map(Ok::<_, std::io::Error>));
    let r =
        s.a.post(s.srv.url("/api/files/upload?filename=big.bin"))
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .unwrap();
    refused(r, storage).await;

    // The seed's chunked protocol: the session is refused at its first piece.
    let id = "big-11";
    let form = piece(1, 11, MIB, big.len() as u64, id, "big.bin", &big[..MIB as usize]);
    refused(s.a.post(s.srv.url("/api/files/upload/chunked")).multipart(form).send().await.unwrap(), storage)
        .await;

    // tus: a declared length past the cap is 413 at creation; a deferred
    // length is refused as its bytes pass the cap, and the session can go.
    let tus = |m: reqwest::Method, url: String| s.a.request(m, url).header("Tus-Resumable", TUS);
    let r = tus(reqwest::Method::POST, s.srv.url("/api/tus/"))
        .header("Upload-Length", big.len().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = tus(reqwest::Method::POST, s.srv.url("/api/tus/"))
        .header("Upload-Defer-Length", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let loc = location(&s.srv, &r);
    let r = tus(reqwest::Method::PATCH, loc.clone())
        .header("Upload-Offset", "0")
        .header("Content-Type", OCTET)
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), storage);
    assert_eq!(tus(reqwest::Method::DELETE, loc).send().await.unwrap().status(), StatusCode::NO_CONTENT);

    // The IETF draft: creation with the whole length declared.
    let r =
        s.a.post(s.srv.url("/api/tus/"))
            .header("Upload-Draft-Interop-Version", "6")
            .header("Upload-Complete", "?0")
            .header("Upload-Length", big.len().to_string())
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), storage);

    // The dedup protocol: 1 MiB chunks go in (each could be in a file that
    // fits), the commit of all eleven is refused.
    let mut chunks = Vec::new();
    for c in big.chunks(MIB as usize) {
        let id = ChunkId::of(c);
        let r = s.a.put(s.srv.url(&format!("/api/chunks/{id}"))).body(c.to_vec()).send().await.unwrap();
        assert!(r.status().is_success());
        chunks.push(json!({"hash": id, "len": c.len()}));
    }
    let commit = json!({"name": "big.bin", "size": big.len(), "chunks": chunks});
    refused(s.a.post(s.srv.url("/api/files")).json(&commit).send().await.unwrap(), storage).await;
    // A commit in parts is refused when it opens.
    let r =
        s.a.post(s.srv.url("/api/commits"))
            .json(&json!({"name": "big.bin", "size": big.len()}))
            .send()
            .await
            .unwrap();
    refused(r, storage).await;
    // A chunk longer than the cap could be in no file: refused before reading.
    let r =
        s.a.put(s.srv.url(&format!("/api/chunks/{}", ChunkId::of(&big))))
            .body(big.clone())
            .send()
            .await
            .unwrap();
    assert!(r.status() == storage || r.status() == StatusCode::PAYLOAD_TOO_LARGE, "{}", r.status());

    // Nothing of it counts or shows.
    let after = s.tenant().await;
    assert_eq!(after.usage, before.usage);
    assert_eq!(s.files().await, 0);
    s.verify_clean().await;

    // Under the cap: 9 MiB goes in, then 2 MiB more does not; a delete makes room.
    let r = s.upload("nine.bin", &big[..(9 * MIB) as usize]).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let nine: FileInfo = r.json().await.unwrap();
    assert_eq!(s.tenant().await.usage.bytes, 9 * MIB);
    refused(s.upload("two.bin", &big[..(2 * MIB) as usize]).await, storage).await;
    assert_eq!(
        s.a.delete(s.srv.url(&format!("/api/files/{}", nine.id))).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.tenant().await.usage.bytes, 0);
    assert_eq!(s.upload("two.bin", &big[..(2 * MIB) as usize]).await.status(), StatusCode::CREATED);
    assert_eq!(s.tenant().await.usage, depot::wire::UsageInfo { bytes: 2 * MIB, files: 1, pending: 0 });
    s.verify_clean().await;
}

#[tokio::test]
async fn files_and_pending_caps() {
    let s = setup(json!({"files": 2, "pending": 10 * MIB})).await;
    let data = pseudo_random(300_000, 3);
    for name in ["one.bin", "two.bin"] {
        assert_eq!(s.upload(name, &data).await.status(), StatusCode::CREATED);
    }
    refused(s.upload("three.bin", &data).await, StatusCode::INSUFFICIENT_STORAGE).await;
    assert_eq!(s.tenant().await.usage.files, 2);

    // Pending: two 6 MiB tus sessions do not fit 10 MiB; ending one makes room.
    let r = s
        .admin
        .put(s.srv.url("/api/admin/tenants/a/quota"))
        .json(&json!({"pending": 10 * MIB}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<TenantInfo>().await.unwrap().quota.files, None);
    let create = || {
        s.a.post(s.srv.url("/api/tus/"))
            .header("Tus-Resumable", TUS)
            .header("Upload-Length", (6 * MIB).to_string())
            .send()
    };
    let r = create().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let first = location(&s.srv, &r);
    assert_eq!(s.tenant().await.usage.pending, 6 * MIB);
    refused(create().await.unwrap(), StatusCode::PAYLOAD_TOO_LARGE).await;
    let r = s.a.delete(first).header("Tus-Resumable", TUS).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(s.tenant().await.usage.pending, 0);
    assert_eq!(create().await.unwrap().status(), StatusCode::CREATED);

    // No caps: the quota goes, and the admin API says so.
    let r = s.admin.delete(s.srv.url("/api/admin/tenants/a/quota")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(s.tenant().await.quota, depot::wire::QuotaInfo::default());
    assert_eq!(s.upload("three.bin", &data).await.status(), StatusCode::CREATED);
    // Caps are whole numbers up to 2^63 - 1, also when JSON writes them
    // as floats.
    let put =
        |body: serde_json::Value| s.admin.put(s.srv.url("/api/admin/tenants/a/quota")).json(&body).send();
    let r = put(json!({"files": 3.0, "bytes": 1e9})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let q = r.json::<TenantInfo>().await.unwrap().quota;
    assert_eq!((q.files, q.bytes), (Some(3), Some(1_000_000_000)));
    for bad in [
        json!({"pending": 9223372036854775808u64}),
        json!({"files": 1.5}),
        json!({"bytes": -1}),
        json!([null, null]),
    ] {
        assert!(put(bad.clone()).await.unwrap().status().is_client_error(), "{bad}");
    }
    assert_eq!(s.tenant().await.quota.files, Some(3), "a refused quota changes nothing");
    let r = s.admin.delete(s.srv.url("/api/admin/tenants/a/quota")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Only an admin may read or set quotas; a bad tenant name is 400.
    let r = s.a.get(s.srv.url("/api/admin/tenants/a")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = s.admin.get(s.srv.url("/api/admin/tenants/Not_A_Tenant")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    s.verify_clean().await;
}

/// Usage is counted from the records on a store's first open (stores made
/// before quotas), kept in the commit and delete batches after, and
/// `verify --repair` puts a counter that drifted back.
#[test]
fn usage_counts_from_records_and_verify_repairs_it() {
    use depot::store::{FileName, NewFile};
    let (dir, store) = common::temp_store();
    let t = Tenant::parse("acme").unwrap();
    let mut ids = Vec::new();
    for (i, len) in [100_000usize, 250_000, 50_000].into_iter().enumerate() {
        let mut ing = store.ingest(t.clone()).unwrap();
        ing.push(&pseudo_random(len, i as u64)).unwrap();
        ids.push(ing.finish(&FileName::parse(&format!("f{i}")).unwrap(), None).unwrap().id);
    }
    let usage = store.usage(&t).unwrap();
    assert_eq!((usage.files, usage.bytes), (3, 400_000));
    store.delete_file(&depot::store::View::All, &ids[1]).unwrap();
    assert_eq!(store.usage(&t).unwrap().bytes, 150_000);
    // A commit past the cap changes nothing.
    store.set_quota(&t, &depot::store::Quota { bytes: Some(200_000), ..Default::default() }).unwrap();
    let data = pseudo_random(60_000, 9);
    store.put_chunk(&data, None, u64::MAX).unwrap();
    let e = store
        .finish_file(NewFile {
            tenant: t.clone(),
            name: FileName::parse("over").unwrap(),
            declared_type: None,
            size: data.len() as u64,
            chunks: vec![depot::store::Entry { id: ChunkId::of(&data), len: data.len() as u32 }],
            content_hash: None,
        })
        .unwrap_err();
    assert!(
        matches!(
            e,
            depot::store::Error::QuotaExceeded { what: "bytes", limit: 200_000, would_be: 210_000, .. }
        ),
        "{e}"
    );
    assert!(store.verify(false).unwrap().counter_mismatches.is_empty());
    store.close().unwrap();
    drop(store);

    // Drift a counter by hand, as a crash of an older version could not
    // but a bug might: verify reports it and repair puts it back.
    let meta = depot::store::RocksMeta::open(&dir.path().join("meta")).unwrap();
    let mut b = depot::store::Batch::default();
    b.add_at(b"usage/bytes/acme", 12345);
    depot::store::MetaStore::write(&meta, b, true).unwrap();
    drop(meta);
    let (store, _) = common::open_store(dir.path(), common::test_options());
    let rep = store.verify(false).unwrap();
    assert_eq!(rep.counter_mismatches, vec![("usage/bytes/acme".to_string(), 162_345, 150_000)]);
    store.verify(true).unwrap();
    assert_eq!(store.usage(&t).unwrap().bytes, 150_000);
    assert_eq!(store.quota(&t).unwrap().bytes, Some(200_000), "verify keeps quota rows");
}

#[tokio::test]
async fn depot_tenant_sets_and_shows_quotas_on_a_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let store = depot::store::Store::open(dir.path(), depot::store::StoreOptions::default()).unwrap();
    store.close().unwrap();
    drop(store);
    let d = dir.path().to_str().unwrap();
    let run =
        |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_depot")).args(args).output().unwrap();
    let o = run(&["tenant", "quota", "acme", "--bytes", "10MiB", "--files", "5", "--data-dir", d]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&["tenant", "quota", "acme", "--files", "none", "--pending", "1GiB", "--data-dir", d]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&["tenant", "show", "acme", "--json", "--data-dir", d]);
    let t: TenantInfo = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        t.quota,
        depot::wire::QuotaInfo { bytes: Some(10 * MIB), files: None, pending: Some(1 << 30) }
    );
    let o = run(&["tenant", "show", "acme", "--data-dir", d]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("bytes    0 of 10MiB") && text.contains("files    0 of no cap"), "{text}");
    let o = run(&["tenant", "quota", "acme", "--bytes", "ten", "--data-dir", d]);
    assert_eq!(o.status.code(), Some(2), "a bad size is a usage error");
    let o = run(&["tenant", "quota", "acme", "--clear", "--json", "--data-dir", d]);
    let t: TenantInfo = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(t.quota, depot::wire::QuotaInfo::default());
}
