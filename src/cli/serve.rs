//! `depot serve`: the data dir checked, the log set up, the server started
//! (it answers 503 until the store is open), stopped on Ctrl-C or SIGTERM.

use std::path::{Path, PathBuf};

use depot::config::{AuthMode, Config, LogFormat};
use depot::store::Store;

use crate::{Failure, ServeFlags, StoreArgs, io_cause, load_config, usage};

/// Makes sure `dir` can hold a store before the store opens it, so that a
/// mistake is named plainly (the path and the cause). Returns the first
/// directory it had to create, which a failed start removes again.
fn prepare_data_dir(dir: &Path) -> Result<Option<PathBuf>, String> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => Err(format!("data dir {} exists and is not a directory", dir.display())),
        Ok(_) => {
            // Writable? (Permissions alone do not tell: read-only mounts, ACLs.)
            let probe = dir.join(format!(".depot-write-test-{}", std::process::id()));
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&probe)
                .and_then(|_| std::fs::remove_file(&probe))
                .map_err(|e| format!("data dir {} is not writable: {}", dir.display(), io_cause(&e)))?;
            Ok(None)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut first = dir.to_path_buf();
            while let Some(parent) = first.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
                first = parent.to_path_buf();
            }
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create data dir {}: {}", dir.display(), io_cause(&e)))?;
            Ok(Some(first))
        }
        Err(e) => Err(format!("data dir {}: {}", dir.display(), io_cause(&e))),
    }
}

/// Sends the log to standard error: text lines (coloured only when standard
/// error is a terminal and NO_COLOR is unset), or one JSON object per line
/// with the event's fields at the top level.
fn init_log(cfg: &Config) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log).map_err(|e| format!("log filter: {e}"))?;
    let logger = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cfg.log_format {
        LogFormat::Text => {
            let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            logger.with_ansi(colour).init();
        }
        LogFormat::Json => logger.json().flatten_event(true).with_current_span(false).with_ansi(false).init(),
    }
    Ok(())
}

/// In `token` mode, makes the first admin token on a store with none and
/// says where it was written.
fn bootstrap_admin(store: &Store) -> Result<(), String> {
    let made =
        depot::http::auth::bootstrap_admin(store).map_err(|e| format!("making the admin token: {e}"))?;
    if let Some(path) = made {
        tracing::info!(path = %path.display(), "first start in token mode: admin token written (mode 0600)");
        let line = format!(
            "depot: admin token written to {} (mode 0600): send it as `Authorization: Bearer <token>`, \
             or make narrower ones with `depot token create`\n",
            path.display()
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
    }
    Ok(())
}

/// Runs the server until Ctrl-C or SIGTERM. It answers from the start; until
/// the store is open (and has recovered from a crash, if it must), every
/// answer is 503 (see `server::serve_opening`).
pub fn serve(args: &StoreArgs, flags: &ServeFlags) -> Result<(), Failure> {
    let cfg = load_config(args, flags)?;
    init_log(&cfg)?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = cfg.async_workers(cpus);
    let rt = super::runtime_with_workers(workers)?;
    rt.block_on(async move {
        // Listen first: a busy port then costs no data dir.
        let listener = tokio::net::TcpListener::bind(&cfg.listen)
            .await
            .map_err(|e| {
                let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                    " (another server, perhaps a depot, listens there: stop it, or give this one \
                     another port with --listen, e.g. --listen 127.0.0.1:8081)"
                } else {
                    ""
                };
                format!("cannot listen on {}: {}{hint}", cfg.listen, io_cause(&e))
            })?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        match cfg.auth.mode {
            AuthMode::Local if !addr.ip().is_loopback() => {
                return Err(usage(format!(
                    "auth.mode is `local`, which serves this machine only, but {addr} is not a loopback \
                     address: set auth.mode to `token` (--auth-mode token, DEPOT_AUTH_MODE=token) to \
                     serve others with tokens, or to `open` to serve them with no authentication"
                )));
            }
            AuthMode::Open => tracing::warn!(
                "auth.mode is `open`: anyone who reaches {addr} can read, write and delete every file"
            ),
            _ => {}
        }
        let created = prepare_data_dir(&cfg.data_dir)?;
        let (data_dir, format, mode) = (cfg.data_dir.clone(), cfg.log_format, cfg.auth.mode);
        // Shown redacted: a PostgreSQL URL's password never reaches the log.
        let meta = cfg.storage.meta.clone();
        let (limits, objects) = (cfg.limits.clone(), cfg.storage.objects);
        let opening = async move {
            let (dir, opts) = (cfg.data_dir.clone(), cfg.store_options());
            let opened = tokio::task::spawn_blocking(move || {
                let store =
                    Store::open(&dir, opts).map_err(|e| format!("opening the store at {}: {e}", dir.display()))?;
                if mode == AuthMode::Token {
                    bootstrap_admin(&store)?;
                }
                Ok::<_, String>(store)
            })
            .await;
            match opened {
                Ok(opened) => opened.map(|store| depot::http::AppState::new(store, cfg)),
                Err(e) => Err(format!("opening the store: {e}")),
            }
        };
        let ready = || {
            tracing::info!(
                %addr, url = %format!("http://{addr}"), data_dir = %data_dir.display(), auth = %mode, meta = %meta,
                worker_threads = tokio::runtime::Handle::current().metrics().num_workers(),
                "depot listening"
            );
            if format == LogFormat::Text {
                // One write, so that scripts waiting for this line never see
                // half of it. (In JSON, the event above carries the url.)
                let line = format!("depot listening on http://{addr} (data in {})\n", data_dir.display());
                let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
            }
        };
        match depot::server::serve_opening(listener, limits, objects, opening, ready, shutdown_signal()).await {
            Ok(()) => Ok(()),
            Err(depot::server::StartError::Open(message)) => {
                // A failed start leaves no empty data dir behind.
                if let Some(dir) = created {
                    let _ = std::fs::remove_dir_all(dir);
                }
                Err(message.into())
            }
            Err(depot::server::StartError::Io(e)) => Err(e.to_string().into()),
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing requests in flight");
}
