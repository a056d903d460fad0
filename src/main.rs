//! The `depot` binary: the server and the offline store commands.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use depot::config::Config;
use depot::store::Store;

#[derive(Parser)]
#[command(name = "depot", version, about = "A streaming file server on a deduplicating chunk store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options shared by every command that opens a store directly.
#[derive(clap::Args)]
struct StoreArgs {
    /// Configuration file (TOML; see config/default.toml).
    #[arg(long, env = "DEPOT_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Data directory (overrides the configuration).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        /// Address to listen on (overrides the configuration).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Print the store's counters (files, bytes, chunks, dedup ratio).
    Stats {
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Collect garbage: chunks no file uses, past their grace period.
    Gc {
        #[command(flatten)]
        store: StoreArgs,
        /// Skip the walk of the object directory for orphan objects.
        #[arg(long)]
        no_orphans: bool,
    },
    /// Check every object, manifest, refcount and counter.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// Move corrupt objects aside, mark their chunks for re-upload, fix
        /// refcounts and counters.
        #[arg(long)]
        repair: bool,
    },
}

fn load_config(args: &StoreArgs) -> Result<Config, String> {
    let mut cfg =
        Config::load(args.config.as_deref(), |k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
    if let Some(d) = &args.data_dir {
        cfg.data_dir = d.clone();
    }
    Ok(cfg)
}

/// Runs the server until Ctrl-C or SIGTERM.
fn serve(args: &StoreArgs, listen: Option<String>) -> Result<(), String> {
    let mut cfg = load_config(args)?;
    if let Some(l) = listen {
        cfg.listen = l;
    }
    cfg.validate().map_err(|e| e.to_string())?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cfg.log).map_err(|e| format!("log filter: {e}"))?,
        )
        .init();
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let store = Store::open(&cfg.data_dir, cfg.store_options())
            .map_err(|e| format!("opening the store at {}: {e}", cfg.data_dir.display()))?;
        let listener = tokio::net::TcpListener::bind(&cfg.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(%addr, data_dir = %cfg.data_dir.display(), "depot listening");
        eprintln!("depot listening on http://{addr} (data in {})", cfg.data_dir.display());
        let state = depot::http::AppState::new(store, cfg);
        depot::http::serve(listener, state, shutdown_signal()).await.map_err(|e| e.to_string())
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

fn open_store(args: &StoreArgs) -> Result<Store, String> {
    let cfg = load_config(args)?;
    if !cfg.data_dir.join("meta").exists() {
        return Err(format!("no store at {}", cfg.data_dir.display()));
    }
    Store::open(&cfg.data_dir, cfg.store_options()).map_err(|e| e.to_string())
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve { store, listen } => serve(&store, listen),
        Command::Stats { store, json } => {
            let s = open_store(&store)?;
            let st = s.stats().map_err(|e| e.to_string())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st).map_err(|e| e.to_string())?);
            } else {
                println!("files          {}", st.files);
                println!("logical bytes  {}", st.logical_bytes);
                println!("unique chunks  {}", st.unique_chunks);
                println!("unique bytes   {}", st.unique_bytes);
                println!("stored bytes   {}", st.stored_bytes);
                println!("dedup ratio    {:.3}", st.dedup_ratio);
                println!("space ratio    {:.3}", st.space_ratio);
            }
            s.close().map_err(|e| e.to_string())
        }
        Command::Gc { store, no_orphans } => {
            let s = open_store(&store)?;
            let r = s.gc(!no_orphans).map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?);
            s.close().map_err(|e| e.to_string())
        }
        Command::Verify { store, repair } => {
            let s = open_store(&store)?;
            let r = s.verify(repair).map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?);
            s.close().map_err(|e| e.to_string())?;
            if r.is_clean() || repair {
                Ok(())
            } else {
                Err("verify found problems (run with --repair to fix what can be fixed)".into())
            }
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("depot: {e}");
            ExitCode::FAILURE
        }
    }
}
