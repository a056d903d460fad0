//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use depot::store::{ChunkerParams, FsObjects, FsyncPolicy, ManualClock, Store, StoreOptions};

/// Deterministic pseudo-random bytes (xorshift64*), so failures reproduce.
pub fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    fill_random(&mut out, n, seed);
    out
}

pub fn fill_random(out: &mut Vec<u8>, n: usize, seed: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        let take = (n - out.len()).min(8);
        out.extend_from_slice(&v[..take]);
    }
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

pub fn test_options() -> StoreOptions {
    StoreOptions {
        chunking: small_chunks(),
        fsync: FsyncPolicy::Never,
        gc_grace: Duration::from_secs(60),
        chunk_lease: Duration::from_secs(600),
        upload_expiry: Duration::from_secs(3600),
        ..StoreOptions::default()
    }
}

/// A store on disk (real RocksDB, real object directory) with a manual clock.
pub fn open_store(dir: &Path, opts: StoreOptions) -> (Store, Arc<ManualClock>) {
    let clock = ManualClock::new();
    let objects = Arc::new(FsObjects::open(&dir.join("objects"), opts.fsync).unwrap());
    let store = Store::open_with(dir, opts, objects, clock.clone()).unwrap();
    (store, clock)
}

use depot::config::Config;
use depot::http::AppState;

/// A real server on an ephemeral port over a data dir.
pub struct TestServer {
    pub base: String,
    pub state: AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// The configuration tests start from: no fsync, no rate limits, GC off.
pub fn test_config(dir: &Path) -> Config {
    let mut cfg = Config { data_dir: dir.to_path_buf(), ..Config::default() };
    cfg.storage.fsync = FsyncPolicy::Never;
    cfg.rate_limit.enabled = false;
    cfg.gc.interval = depot::config::Dur(Duration::ZERO);
    cfg
}

impl TestServer {
    pub async fn start(cfg: Config) -> TestServer {
        let store = Store::open(&cfg.data_dir, cfg.store_options()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = AppState::new(store, cfg);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(depot::http::serve(listener, state.clone(), async {
            let _ = rx.await;
        }));
        TestServer { base, state, shutdown: Some(tx), handle: Some(handle) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
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
