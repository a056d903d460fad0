//! The `depot` binary's larger commands, one module each (the binary's
//! root, `main.rs`, holds the command line and the small ones), and the
//! async runtimes the commands run on.

pub mod backup;
pub mod man;
pub mod serve;
pub mod show;
pub mod tenant;
pub mod token;

/// The runtime of most client commands: tokio's default, an async worker
/// per CPU.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Runtime::new().map_err(|e| e.to_string())
}

/// The runtime of `depot get`: one async worker. A get's async side only
/// moves frames from the socket to the thread that hashes and writes them;
/// with a worker per core, reqwest's connection task and the body's reader
/// ran on different threads and every frame crossed between them. Measured
/// (docs/PERFORMANCE.md, D1), a verified GiB into `/dev/null`: median 0.58 s
/// of wall and 0.43 s of client CPU against 0.72 s and 0.565 s. `depot put`
/// keeps a worker per core: its cold uploads were no faster with one.
pub fn streaming_runtime() -> Result<tokio::runtime::Runtime, String> {
    runtime_with_workers(1)
}

/// A multi-thread runtime with `workers` async worker threads (at least
/// one) and tokio's default blocking pool; `depot serve` takes the count
/// from `Config::async_workers`. Errors name the count and the cause.
pub fn runtime_with_workers(workers: usize) -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()
        .map_err(|e| format!("starting {workers} worker threads: {e}"))
}
