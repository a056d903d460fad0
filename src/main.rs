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

fn open_store(args: &StoreArgs) -> Result<Store, String> {
    let cfg = load_config(args)?;
    if !cfg.data_dir.join("meta").exists() {
        return Err(format!("no store at {}", cfg.data_dir.display()));
    }
    Store::open(&cfg.data_dir, cfg.store_options()).map_err(|e| e.to_string())
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
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
