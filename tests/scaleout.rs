//! Three `depot serve` nodes sharing one store (`storage.shared`): the
//! metadata in one PostgreSQL database, the chunks in one Garage bucket,
//! each node with a data dir of its own. Any node finishes what another
//! started: uploads by every protocol spread over the nodes, dedup across
//! them, a delete on one node while another streams the file, an appender
//! stopped or killed mid-upload and the upload finished elsewhere.
//! Skipped without the engines, unless `DEPOT_SCALEOUT=1`.
#![cfg(all(feature = "s3", feature = "postgres"))]

mod common;

use std::time::Duration;

use common::cli::{Served, run_json};
use common::garage::Garage;
use common::http::{client, fed_body, piece, tus, tus_patch};
use common::postgres;
use depot::testdata::pseudo_random;
use depot::wire::{FileInfo, PieceStatus, StatsInfo};
use futures_util::StreamExt;
use object_store::ObjectStore as _;
use reqwest::{Method, StatusCode};

const MIB: usize = 1 << 20;

/// Three nodes over one database and one bucket prefix.
struct Cluster {
    garage: Garage,
    prefix: String,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    nodes: Vec<Served>,
}

impl Cluster {
    /// `None` (after saying why) when an engine is missing; `extra` goes
    /// on top of the nodes' environment.
    async fn start(name: &str, extra: &[(&str, &str)]) -> Option<Cluster> {
        let url = postgres::database(name)?;
        let garage = Garage::start()?;
        let mut env: Vec<(String, String)> =
            garage.env().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        for (k, v) in [
            ("DEPOT_META", url.as_str()),
            ("DEPOT_SHARED", "true"),
            ("DEPOT_OBJECTS", "s3"),
            ("DEPOT_S3_ALLOW_HTTP", "true"),
            ("DEPOT_S3_PREFIX", name),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        {
            env.push((k.into(), v.into()));
        }
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cluster { garage, prefix: name.to_string(), env, dir, nodes: Vec::new() };
        for n in 0..3 {
            let node = c.node(n).await;
            c.nodes.push(node);
        }
        Some(c)
    }

    /// Starts node `n` (its own data dir) on a fresh port.
    async fn node(&self, n: usize) -> Served {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Served::start(&self.dir.path().join(format!("node{n}")), &["--listen", "127.0.0.1:0"], &env).await
    }

    fn url(&self, n: usize, path: &str) -> String {
        self.nodes[n].url(path)
    }

    /// How many chunk objects the bucket holds under this cluster's prefix.
    async fn chunk_objects(&self) -> usize {
        let raw = self.garage.s3_builder().build().unwrap();
        let prefix = format!("{}/chunks", self.prefix).as_str().into();
        let all: Vec<_> = raw.list(Some(&prefix)).collect().await;
        all.into_iter().collect::<Result<Vec<_>, _>>().unwrap().len()
    }

    async fn stats(&self, n: usize) -> StatsInfo {
        client().get(self.url(n, "/api/stats")).send().await.unwrap().json().await.unwrap()
    }

    /// Request body bytes node `n` has received (its metrics).
    async fn bytes_in(&self, n: usize) -> u64 {
        let text = client().get(self.url(n, "/metrics")).send().await.unwrap().text().await.unwrap();
        common::metric(&text, "depot_http_request_bytes_total")
    }

    /// An offline command (`verify`, `gc`) as one more node: success and
    /// its JSON report.
    fn offline(&self, args: &[&str]) -> (bool, serde_json::Value) {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_depot"));
        c.args(args).arg("--data-dir").arg(self.dir.path().join("offline")).env_remove("DEPOT_CONFIG");
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("DEPOT_")) {
            c.env_remove(k);
        }
        let out = c.envs(self.env.iter().map(|(k, v)| (k, v))).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let v = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("depot {args:?} printed no JSON ({e}): {text}\n{}", String::from_utf8_lossy(&out.stderr))
        });
        (out.status.success(), v)
    }

    async fn download(&self, n: usize, id: &str) -> Vec<u8> {
        self.nodes[n].download(id).await
    }

    /// Creates a tus upload of `len` bytes on node `n`: its path.
    async fn tus_create(&self, n: usize, len: usize, name: &str) -> String {
        common::http::tus_create(&self.url(n, "/api/tus/"), len, name).await
    }

    async fn tus_offset(&self, n: usize, path: &str) -> u64 {
        let r = tus(Method::HEAD, &self.url(n, path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.headers()["upload-offset"].to_str().unwrap().parse().unwrap()
    }

    /// Every node's log, for a failure message.
    fn logs(&self) -> String {
        self.nodes.iter().enumerate().map(|(i, s)| format!("--- node {i}\n{}", s.log())).collect()
    }
}

fn signal(s: &Served, sig: &str) {
    let pid = s.child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args([sig, &pid]).status().unwrap().success());
}

fn written(dir: &std::path::Path, name: &str, data: &[u8]) -> String {
    common::written(dir, name, data).to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_through_three_nodes() {
    let Some(c) = Cluster::start("every_protocol", &[]).await else { return };

    // tus: created on A, PATCHes alternating A → B → C.
    let data = pseudo_random(6 * MIB + 4321, 1);
    let path = c.tus_create(0, data.len(), "tus.bin").await;
    let mut at = 0;
    let mut file = None;
    for (i, piece) in data.chunks(MIB).enumerate() {
        let r = tus_patch(&c.url(i % 3, &path), at).body(piece.to_vec()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "PATCH {i} on node {}:\n{}", i % 3, c.logs());
        at += piece.len();
        file = r.headers().get("depot-file-id").map(|v| v.to_str().unwrap().to_string());
    }
    let tus_file = file.expect("the last PATCH made the file");
    assert_eq!(c.download(1, &tus_file).await, data, "tus file read on B");
    assert_eq!(c.download(2, &tus_file).await, data, "tus file read on C");
    let r = c.nodes[2].get_with(&format!("/api/files/{tus_file}"), &[("Range", "bytes=1000-2999999")]).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&r.bytes().await.unwrap()[..], &data[1000..3_000_000]);

    // resumable.js pieces spread over A, B, C.
    let seed = pseudo_random(5 * MIB, 2);
    let mut seed_file = None;
    for n in 1..=5u32 {
        let form = piece(
            n,
            5,
            MIB as u64,
            seed.len() as u64,
            "seed-1",
            "seed.bin",
            &seed[(n as usize - 1) * MIB..][..MIB],
        );
        let node = (n as usize - 1) % 3;
        let r = client().post(c.url(node, "/api/files/upload/chunked")).multipart(form).send().await.unwrap();
        assert!(r.status().is_success(), "piece {n} on node {node}: {}", r.status());
        let st: PieceStatus = r.json().await.unwrap();
        assert_eq!(st.received, n, "piece {n}: every node sees the pieces before it");
        seed_file = st.file;
    }
    let seed_file = seed_file.expect("the last piece made the file").id.to_string();
    assert_eq!(c.download(1, &seed_file).await, seed);
    assert_eq!(c.download(2, &seed_file).await, seed);

    // A regular upload on A, `depot put` on A; read on B and C.
    let plain = pseudo_random(3 * MIB, 3);
    let plain_id =
        common::upload_raw_to(&client(), &c.url(0, "/api/files/upload"), "plain.bin", &plain).await.id;
    assert_eq!(c.download(2, &plain_id.to_string()).await, plain);
    let big = pseudo_random(24 * MIB, 4);
    let big_path = written(c.dir.path(), "big.bin", &big);
    let put: serde_json::Value = run_json(&c.nodes[0].base, &["put", "--json", &big_path]).await;
    let big_id = put["id"].as_str().unwrap().to_string();
    assert_eq!(c.download(1, &big_id).await, big);
    let r =
        c.nodes[2].get_with(&format!("/api/files/{big_id}"), &[("Range", "bytes=10000000-10065535")]).await;
    assert_eq!(&r.bytes().await.unwrap()[..], &big[10_000_000..10_065_536]);

    // Dedup across nodes: the same file through B sends (almost) nothing
    // and adds no object.
    let objects = c.chunk_objects().await;
    let before = c.bytes_in(1).await;
    let again: serde_json::Value = run_json(&c.nodes[1].base, &["put", "--json", &big_path]).await;
    let sent = c.bytes_in(1).await - before;
    assert!((sent as f64) < 0.005 * big.len() as f64, "the re-upload through B sent {sent} bytes");
    assert_eq!(again["sent_bytes"], 0);
    assert_eq!(c.chunk_objects().await, objects, "a re-upload through another node stores nothing new");

    // The same new content on A and B at once: one object per chunk.
    let twin = pseudo_random(16 * MIB, 5);
    let twin_path = written(c.dir.path(), "twin.bin", &twin);
    let args = ["put", "--json", twin_path.as_str()];
    let (a, b) = tokio::join!(
        run_json::<serde_json::Value>(&c.nodes[0].base, &args),
        run_json::<serde_json::Value>(&c.nodes[1].base, &args),
    );
    for r in [&a, &b] {
        assert_eq!(c.download(2, r["id"].as_str().unwrap()).await, twin);
    }
    let stats = c.stats(2).await;
    assert_eq!(
        c.chunk_objects().await as u64,
        stats.unique_chunks,
        "exactly one object per chunk: {stats:?}"
    );
    assert_eq!(stats.files, 7);
    let (clean, report) = c.offline(&["verify"]);
    assert!(clean, "{report}");
    for s in c.nodes {
        assert_eq!(s.stop().await, Some(0));
    }
}

/// A delete on C while A streams the file: the stream completes intact,
/// and the chunks go only after it ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_on_one_node_waits_for_a_download_on_another() {
    let extra = [("DEPOT_READER_TTL", "2s"), ("DEPOT_GC_GRACE", "0s"), ("DEPOT_CHUNK_LEASE", "1s")];
    let Some(c) = Cluster::start("delete_while_read", &extra).await else { return };
    let data = pseudo_random(48 * MIB, 6);
    let id = common::upload_raw_to(&client(), &c.url(0, "/api/files/upload"), "big.bin", &data).await.id;
    let objects = c.chunk_objects().await;
    assert!(objects > 100, "{objects} objects");
    tokio::time::sleep(Duration::from_millis(1100)).await; // the upload's leases end

    let r = client().get(c.url(0, &format!("/api/files/{id}"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut body = r.bytes_stream();
    let mut got = Vec::new();
    while got.len() < MIB {
        got.extend_from_slice(&body.next().await.unwrap().unwrap());
    }
    let r = client().delete(c.url(2, &format!("/api/files/{id}"))).send().await.unwrap();
    assert!(r.status().is_success(), "delete on C: {}", r.status());
    let r = client().get(c.url(1, &format!("/api/files/{id}"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "gone at once on B");
    // GC on another node meanwhile takes nothing A still reads.
    let (ok, gc) = c.offline(&["gc"]);
    assert!(ok, "{gc}");
    assert_eq!(gc["deleted_chunks"], 0, "GC took chunks of a file being read: {gc}");
    // Past the reader TTL, the client reading nothing meanwhile: A renews.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (ok, gc) = c.offline(&["gc"]);
    assert!(ok, "{gc}");
    assert_eq!(gc["deleted_chunks"], 0, "GC took chunks of a file being read: {gc}");
    while let Some(b) = body.next().await {
        got.extend_from_slice(&b.unwrap());
    }
    assert!(got == data, "the stream on A was cut or changed by the delete on C");

    // Once the download ended and its hold ran out, the chunks go.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (ok, gc) = c.offline(&["gc"]);
    assert!(ok, "{gc}");
    assert_eq!(c.chunk_objects().await, 0, "{gc}");
    let (clean, report) = c.offline(&["verify"]);
    assert!(clean, "{report}");
}

/// SIGSTOP an appender mid-PATCH, finish the upload on another node,
/// SIGCONT: the stopped node cannot change the upload or its file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_appender_cannot_change_what_another_node_finished() {
    let Some(c) = Cluster::start("stopped_appender", &[]).await else { return };
    let data = pseudo_random(4 * MIB, 7);
    let path = c.tus_create(0, data.len(), "stopped.bin").await;
    let (tx, body) = fed_body(4);
    let url = c.url(0, &path);
    let stale = tokio::spawn(async move { tus_patch(&url, 0).body(body).send().await.unwrap() });
    tx.send(Ok(data[..MIB].to_vec())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&c.nodes[0], "-STOP");

    assert_eq!(c.tus_offset(1, &path).await, 0);
    let r = tus_patch(&c.url(1, &path), 0).body(data.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", c.logs());
    let file = r.headers()["depot-file-id"].to_str().unwrap().to_string();

    signal(&c.nodes[0], "-CONT");
    // The stale request completes the upload with other bytes: refused.
    tx.send(Ok(pseudo_random(3 * MIB, 99))).await.unwrap();
    drop(tx);
    let r = stale.await.unwrap();
    assert_eq!(r.status(), StatusCode::LOCKED, "the stale appender was not fenced:\n{}", c.logs());
    assert_eq!(c.tus_offset(2, &path).await, data.len() as u64);
    assert_eq!(c.download(2, &file).await, data);
    assert_eq!(c.download(0, &file).await, data);
    assert_eq!(c.stats(2).await.files, 1);
}

/// kill -9 of the node mid-upload, for tus, resumable.js pieces and
/// `depot put`: the upload resumes on another node and the file is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_uploads_resume_on_another() {
    // A killed writer's claims on new chunks block them this long.
    let Some(mut c) = Cluster::start("killed_node", &[("DEPOT_CLAIM_TIMEOUT", "3s")]).await else { return };

    // tus: 20 MiB in one PATCH on A (a durable point at 16 MiB), then kill.
    let data = pseudo_random(40 * MIB, 8);
    let path = c.tus_create(0, data.len(), "tus.bin").await;
    let (tx, body) = fed_body(4);
    let url = c.url(0, &path);
    let cut = tokio::spawn(async move { tus_patch(&url, 0).body(body).send().await });
    for part in data[..20 * MIB].chunks(MIB) {
        tx.send(Ok(part.to_vec())).await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while c.tus_offset(1, &path).await == 0 {
        assert!(std::time::Instant::now() < deadline, "no durable point on A:\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal(&c.nodes[0], "-KILL");
    let _ = cut.await;
    drop(tx);
    let at = c.tus_offset(1, &path).await as usize;
    assert!(at >= 16 * MIB, "offset {at}");
    let r = tus_patch(&c.url(2, &path), at).body(data[at..].to_vec()).send().await;
    let r = r.unwrap_or_else(|e| panic!("{e}:\n{}", c.logs()));
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", c.logs());
    let tus_file = r.headers()["depot-file-id"].to_str().unwrap().to_string();
    assert_eq!(c.download(1, &tus_file).await, data);
    c.nodes[0] = c.node(0).await;

    // Pieces: three on A, A killed, the rest on B.
    let seed = pseudo_random(5 * MIB, 9);
    let form = |n: u32| {
        piece(
            n,
            5,
            MIB as u64,
            seed.len() as u64,
            "seed-k",
            "seed.bin",
            &seed[(n as usize - 1) * MIB..][..MIB],
        )
    };
    for n in 1..=3 {
        let r = client().post(c.url(0, "/api/files/upload/chunked")).multipart(form(n)).send().await.unwrap();
        assert!(r.status().is_success());
    }
    signal(&c.nodes[0], "-KILL");
    let mut done = None;
    for n in 4..=5 {
        let r = client().post(c.url(1, "/api/files/upload/chunked")).multipart(form(n)).send().await.unwrap();
        let st: PieceStatus = r.json().await.unwrap();
        assert_eq!(st.received, n);
        done = st.file;
    }
    assert_eq!(c.download(2, &done.unwrap().id.to_string()).await, seed);
    c.nodes[0] = c.node(0).await;

    // `depot put`: killed mid-way on A, run again through B: what arrived
    // is not sent again.
    let big = pseudo_random(64 * MIB, 10);
    let big_path = written(c.dir.path(), "put.bin", &big);
    let mut put = common::cli::depot(&c.nodes[0].base)
        .args(["put", "--json", &big_path])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // Half the file: chunks go in batches of up to 4 MiB, four at a time,
    // each stored only whole, so what arrived last may be lost with A.
    while c.bytes_in(0).await < 32 * MIB as u64 {
        assert!(std::time::Instant::now() < deadline, "the put sent nothing:\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&c.nodes[0], "-KILL");
    let _ = put.wait().await;
    let before = c.bytes_in(1).await;
    let again: serde_json::Value = run_json(&c.nodes[1].base, &["put", "--json", &big_path]).await;
    let sent = c.bytes_in(1).await - before;
    assert!(again["skipped_chunks"].as_u64().unwrap() > 0, "{again}");
    assert!(sent < (big.len() - 8 * MIB) as u64, "the resumed put sent {sent} bytes");
    assert_eq!(c.download(2, again["id"].as_str().unwrap()).await, big);
    let (clean, report) = c.offline(&["verify"]);
    assert!(clean, "{report}");
}

/// Nodes of a shared store and a process that opens it alone refuse each
/// other; so does a shared node over a local-only configuration.
#[tokio::test]
async fn shared_needs_the_engines_and_excludes_a_process_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_depot"));
    c.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(dir.path().join("data"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("DEPOT_")) {
        c.env_remove(k);
    }
    let out = c.env("DEPOT_SHARED", "true").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("storage.shared needs"), "{err}");

    let Some(c) = Cluster::start("alone", &[]).await else { return };
    let id = c.nodes[0].upload("a.bin", b"shared").await;
    let alone: Vec<(&str, &str)> =
        c.env.iter().filter(|(k, _)| k != "DEPOT_SHARED").map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_depot"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(dir.path().join("alone"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("DEPOT_")) {
        cmd.env_remove(k);
    }
    let out = cmd.envs(alone).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use"), "{err}");
    assert_eq!(c.download(1, &id).await, b"shared");
    let _: FileInfo =
        client().get(c.url(2, &format!("/api/files/{id}/info"))).send().await.unwrap().json().await.unwrap();
}
