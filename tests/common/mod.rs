//! Helpers shared by the integration tests (data comes from
//! `depot::testdata`, the crate's one generator): a store on
//! disk with a manual clock, ingesting and reading back files, and a real server on an ephemeral port with
//! typed requests for what the tests ask of it again and again. HTTP request
//! builders live in [`http`], the `depot` binary in [`cli`], a throwaway
//! Garage (S3) in `garage`, a chunk's object on disk in [`stored`].
#![allow(dead_code)]

pub mod cli;
#[cfg(feature = "s3")]
pub mod garage;
pub mod http;
pub mod postgres;
pub mod stored;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use depot::store::{
    ChunkerParams, FileId, FileRecord, FsyncPolicy, ManualClock, Store, StoreOptions, Tenant,
};
use futures_util::TryStreamExt;

/// Writes `bytes` to `dir/name`; the path.
pub fn written(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A regular upload (`POST url?filename=name`, the raw body) through `c`;
/// must answer 201.
pub async fn upload_raw_to(c: &reqwest::Client, url: &str, name: &str, data: &[u8]) -> depot::wire::FileInfo {
    let r = c.post(url).query(&[("filename", name)]).body(data.to_vec()).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

/// One unlabelled sample of a Prometheus text exposition, by its exact name.
pub fn metric(exposition: &str, name: &str) -> u64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in:\n{exposition}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Small chunks, so that modest test files span many chunks and segments.
pub fn small_chunks() -> ChunkerParams {
    ChunkerParams { min: 256, avg: 1024, max: 4096 }
}

/// Whether the suite runs on pack files: `DEPOT_PACKS` as the server reads
/// it (`true` or `false`; unset is the default, packs), so
/// `DEPOT_PACKS=false cargo test` runs every store and server the tests make
/// with a file per chunk, and the binaries they start inherit it. Tests
/// about one layout set `packs` themselves.
pub fn packs_from_env() -> bool {
    std::env::var("DEPOT_PACKS")
        .ok()
        .map(|v| v.trim().parse().unwrap_or_else(|e| panic!("DEPOT_PACKS={v}: {e}")))
        .unwrap_or(true)
}

pub fn test_options() -> StoreOptions {
    StoreOptions {
        chunking: small_chunks(),
        fsync: FsyncPolicy::Never,
        gc_grace: Duration::from_secs(60),
        chunk_lease: Duration::from_secs(600),
        upload_expiry: Duration::from_secs(3600),
        packs: packs_from_env(),
        ..StoreOptions::default()
    }
}

/// A store on disk (real RocksDB, real object directory, with packs when
/// `opts.packs` says) with a manual clock.
pub fn open_store(dir: &Path, opts: StoreOptions) -> (Store, Arc<ManualClock>) {
    let clock = ManualClock::new();
    let objects = depot::store::open_objects(&opts, &dir.join("objects")).unwrap();
    let store = Store::open_with(dir, opts, objects, clock.clone()).unwrap();
    (store, clock)
}

/// A store with [`test_options`] over a fresh temporary directory.
pub fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_store(dir.path(), test_options());
    (dir, store)
}

/// Stores `data` as file `name` of the default tenant through the store's
/// ingest pipeline, fed 10,000 bytes at a time.
pub fn ingest(store: &Store, name: &str, data: &[u8]) -> FileRecord {
    let mut ing = store.ingest(Tenant::default()).unwrap();
    for piece in data.chunks(10_000) {
        ing.push(piece).unwrap();
    }
    ing.finish(&name.parse().unwrap(), None).unwrap()
}

/// Bytes `start..end` of file `id`, read as a download reads them.
pub fn read_range(store: &Store, id: &FileId, start: u64, end: u64) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (rec, guard) = store.open_file(id).unwrap();
        let parts: Vec<bytes::Bytes> = store.read_range(&rec, guard, start, end).try_collect().await.unwrap();
        parts.concat()
    })
}

/// The whole of file `id`.
pub fn read_all(store: &Store, id: &FileId) -> Vec<u8> {
    let size = store.open_file(id).unwrap().0.size;
    read_range(store, id, 0, size)
}

/// Eight threads put the same 200 new chunks of 3,000 bytes, each in its
/// own order and in batches of 16, thread `t` through `stores[t % len]`
/// (one store, or nodes of one): how many puts reported a chunk new.
pub fn put_the_same_chunks(stores: &[Store]) -> u64 {
    let chunks: Vec<bytes::Bytes> =
        (0..200u64).map(|i| bytes::Bytes::from(depot::testdata::pseudo_random(3000, i))).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let store = &stores[t % stores.len()];
                let mut mine = chunks.clone();
                mine.rotate_left(t * 25);
                scope.spawn(move || {
                    let mut new = 0;
                    for batch in mine.chunks(16) {
                        new += store.put_chunks(batch, 0).unwrap().iter().filter(|p| p.new).count() as u64;
                    }
                    new
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

use depot::config::Config;
use depot::http::AppState;
use depot::store::Clock;
use depot::wire::{FileInfo, FileList, ManifestInfo, StatsInfo};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

pub use self::http::client;

/// The origin of the web page in CORS tests.
pub const ORIGIN: &str = "https://app.example";

/// A real server on an ephemeral port over a data dir.
pub struct TestServer {
    pub base: String,
    pub state: AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// The configuration tests start from: no fsync, no rate limits, GC off;
/// pack files unless `DEPOT_PACKS=false` (see [`packs_from_env`]).
pub fn test_config(dir: &Path) -> Config {
    let mut cfg = Config { data_dir: dir.to_path_buf(), ..Config::default() };
    cfg.storage.fsync = FsyncPolicy::Never;
    cfg.storage.packs = packs_from_env();
    cfg.rate_limit.enabled = false;
    cfg.gc.interval = depot::config::Dur(Duration::ZERO);
    cfg
}

impl TestServer {
    /// A server with [`test_config`] over a fresh temporary directory, which
    /// lives as long as the returned guard.
    pub async fn start_temp() -> (tempfile::TempDir, TestServer) {
        Self::start_temp_with(|_| {}).await
    }

    /// [`TestServer::start_temp`] with the configuration changed by
    /// `configure` first.
    pub async fn start_temp_with(configure: impl FnOnce(&mut Config)) -> (tempfile::TempDir, TestServer) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(dir.path());
        configure(&mut cfg);
        (dir, TestServer::start(cfg).await)
    }

    /// A server over `data/` in a fresh temporary directory, configured by
    /// `configure`: the test's own files (sources, downloads) go beside
    /// `data/`, so nothing it writes mixes with the server's.
    pub async fn start_in_workdir(configure: impl FnOnce(&mut Config)) -> (tempfile::TempDir, TestServer) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(&dir.path().join("data"));
        configure(&mut cfg);
        (dir, TestServer::start(cfg).await)
    }

    /// Stops the server and starts a new one over the same data dir and
    /// configuration, on a new port.
    pub async fn restart(self) -> TestServer {
        let cfg = Config::clone(&self.state.config);
        self.stop().await;
        TestServer::start(cfg).await
    }

    /// A server whose store reads the wall clock.
    pub async fn start(cfg: Config) -> TestServer {
        let store = Store::open(&cfg.data_dir, cfg.store_options()).unwrap();
        Self::serve(store, cfg).await
    }

    /// A server whose store reads a clock the test moves: expiry, leases and
    /// grace periods pass without sleeping.
    pub async fn start_with_clock(cfg: Config) -> (TestServer, Arc<ManualClock>) {
        let clock = ManualClock::new();
        let opts = cfg.store_options();
        std::fs::create_dir_all(&cfg.data_dir).unwrap();
        let objects = depot::store::open_objects(&opts, &cfg.data_dir.join("objects")).unwrap();
        let store = Store::open_with(&cfg.data_dir, opts, objects, clock.clone() as Arc<dyn Clock>).unwrap();
        (Self::serve(store, cfg).await, clock)
    }

    async fn serve(store: Store, cfg: Config) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = AppState::new(store, cfg);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(depot::server::serve(listener, state.clone(), async {
            let _ = rx.await;
        }));
        TestServer { base, state, shutdown: Some(tx), handle: Some(handle) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path`, whatever the answer.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.get_with(path, &[]).await
    }

    /// `method path` with `headers`, whatever the answer.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = client().request(method, self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }

    /// A browser's CORS preflight from [`ORIGIN`] for a `method` request to
    /// `path` with `headers` (comma-separated); it must succeed.
    pub async fn preflight(&self, path: &str, method: &str, headers: &str) -> reqwest::Response {
        let asks = [
            ("Origin", ORIGIN),
            ("Access-Control-Request-Method", method),
            ("Access-Control-Request-Headers", headers),
        ];
        let r = self.send(reqwest::Method::OPTIONS, path, &asks).await;
        assert!(r.status().is_success(), "preflight of {method} {path}: {}", r.status());
        r
    }

    /// `GET path` with `headers`, whatever the answer.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        self.send(reqwest::Method::GET, path, headers).await
    }

    /// `GET path`, which must succeed, as JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> T {
        let r = self.get(path).await;
        let status = r.status();
        assert!(status.is_success(), "GET {path}: {status} {}", r.text().await.unwrap_or_default());
        r.json().await.unwrap()
    }

    /// `GET /api/files` with `query`, which must succeed.
    pub async fn list_files(&self, query: &[(&str, &str)]) -> FileList {
        let r = client().get(self.url("/api/files")).query(query).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "list {query:?}");
        r.json().await.unwrap()
    }

    pub async fn stats(&self) -> StatsInfo {
        self.get_json("/api/stats").await
    }

    pub async fn info(&self, id: &str) -> FileInfo {
        self.get_json(&format!("/api/files/{id}/info")).await
    }

    pub async fn manifest(&self, id: &str) -> ManifestInfo {
        self.get_json(&format!("/api/files/{id}/manifest")).await
    }

    /// A whole file's bytes; the answer must be 200.
    pub async fn download(&self, id: &str) -> Vec<u8> {
        let r = self.get(&format!("/api/files/{id}")).await;
        assert_eq!(r.status(), StatusCode::OK, "download {id}");
        r.bytes().await.unwrap().to_vec()
    }

    /// `DELETE /api/files/{id}`, whatever the answer.
    pub async fn delete(&self, id: &str) -> reqwest::Response {
        client().delete(self.url(&format!("/api/files/{id}"))).send().await.unwrap()
    }

    /// A regular upload with a raw body and `?filename=`; must answer 201.
    pub async fn upload_raw(&self, name: &str, data: &[u8]) -> FileInfo {
        self.upload_raw_as(&client(), name, data).await
    }

    /// [`Self::upload_raw`] through `c` (a client with a token).
    pub async fn upload_raw_as(&self, c: &reqwest::Client, name: &str, data: &[u8]) -> FileInfo {
        upload_raw_to(c, &self.url("/api/files/upload"), name, data).await
    }

    /// A token with every scope for tenant `default`, made in the store:
    /// the first admin, which the admin API cannot make.
    pub async fn admin_token(&self) -> String {
        let store = self.state.store.clone();
        tokio::task::spawn_blocking(move || {
            let all = depot::store::Scopes::all();
            store.issue_token(depot::store::Tenant::default(), all, None, None).unwrap().1
        })
        .await
        .unwrap()
    }

    /// A regular upload as a multipart `file` part; must answer 201.
    pub async fn upload_form(&self, name: &str, data: &[u8]) -> FileInfo {
        let form = reqwest::multipart::Form::new()
            .part("file", reqwest::multipart::Part::bytes(data.to_vec()).file_name(name.to_string()));
        let r = client().post(self.url("/api/files/upload")).multipart(form).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    /// One piece of a chunked upload (`POST /api/files/upload/chunked`).
    pub async fn post_piece(&self, form: reqwest::multipart::Form) -> reqwest::Response {
        client().post(self.url("/api/files/upload/chunked")).multipart(form).send().await.unwrap()
    }

    /// The chunked upload's test request (`GET /api/files/upload/chunked`);
    /// its status.
    pub async fn test_piece(&self, params: &[(String, String)]) -> StatusCode {
        client().get(self.url("/api/files/upload/chunked")).query(params).send().await.unwrap().status()
    }

    /// Request body bytes the server has read so far.
    pub fn bytes_in(&self) -> u64 {
        self.state.metrics.bytes_in.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits (up to `within`) until the server has read `n` request body bytes.
    pub async fn wait_for_bytes_in(&self, n: u64, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.bytes_in() < n {
            assert!(tokio::time::Instant::now() < deadline, "the server never got {n} bytes");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Graceful shutdown; waits until the store is closed.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
        // The last clone of the store goes with `self`.
    }
}
