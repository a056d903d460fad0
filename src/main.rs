//! The `depot` binary: the server, the client commands, and the offline
//! store commands.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use depot::client::{self, Client, GetOptions, PutOptions, Source, human};
use depot::config::Config;
use depot::store::Store;

#[derive(Parser)]
#[command(name = "depot", version, about = "A streaming file server on a deduplicating chunk store")]
struct Cli {
    /// The server the client commands talk to.
    #[arg(long, env = "DEPOT_SERVER", default_value = "http://localhost:8080", global = true)]
    server: String,
    #[command(subcommand)]
    command: Command,
}

/// Options shared by every command that opens a store directly.
#[derive(clap::Args)]
struct StoreArgs {
    /// Configuration file (TOML; see config/default.toml).
    #[arg(long, env = "DEPOT_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides the configuration).
    #[arg(long)]
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
    /// Upload files, sending only the chunks the server lacks.
    Put {
        /// Files to upload; `-` reads standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Name to store (one file only; default: the file's name).
        #[arg(long)]
        name: Option<String>,
        /// Chunk uploads in flight.
        #[arg(long, short = 'j', default_value_t = 4)]
        jobs: usize,
        /// Print one JSON object per file.
        #[arg(long)]
        json: bool,
    },
    /// Download a file, verifying every chunk; resumes an interrupted download.
    Get {
        id: String,
        /// Output path (default: the stored name; `-` for standard output).
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
    },
    /// List files, newest first.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Delete a file.
    Rm { id: String },
    /// Show one file's record.
    Stat {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Store statistics: from the server, or from a data dir with --data-dir.
    Stats {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        json: bool,
    },
    /// Collect garbage in a data dir: chunks no file uses, past their grace period.
    Gc {
        #[command(flatten)]
        store: StoreArgs,
        /// Skip the walk of the object directory for orphan objects.
        #[arg(long)]
        no_orphans: bool,
    },
    /// Check every object, manifest, refcount and counter of a data dir.
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
        .with_writer(std::io::stderr)
        .init();
    runtime()?.block_on(async move {
        let store = Store::open(&cfg.data_dir, cfg.store_options())
            .map_err(|e| format!("opening the store at {}: {e}", cfg.data_dir.display()))?;
        let listener = tokio::net::TcpListener::bind(&cfg.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(%addr, data_dir = %cfg.data_dir.display(), "depot listening");
        // One write, so that scripts waiting for this line never see half of it.
        let line = format!("depot listening on http://{addr} (data in {})\n", cfg.data_dir.display());
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
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

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Runtime::new().map_err(|e| e.to_string())
}

/// Writes to standard output; a closed pipe (`depot ls | head`) ends the
/// program quietly instead of panicking.
fn emit(text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.write_all(b"\n")).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => other.map_err(|e| format!("writing output: {e}")),
    }
}

fn print_json(v: &impl serde::Serialize) -> Result<(), String> {
    emit(&serde_json::to_string(v).map_err(|e| e.to_string())?)
}

fn print_stats(st: &depot::wire::StatsInfo) -> Result<(), String> {
    emit(&format!(
        "files          {}\nlogical bytes  {} ({})\nunique chunks  {}\nunique bytes   {} ({})\n\
         stored bytes   {} ({})\ndedup ratio    {:.3}\nspace ratio    {:.3}",
        st.files,
        st.logical_bytes,
        human(st.logical_bytes),
        st.unique_chunks,
        st.unique_bytes,
        human(st.unique_bytes),
        st.stored_bytes,
        human(st.stored_bytes),
        st.dedup_ratio,
        st.space_ratio
    ))
}

fn run(cli: Cli) -> Result<(), String> {
    let server = cli.server.clone();
    let client = || Client::new(&server).map_err(|e| e.to_string());
    let show = |json: bool| !json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    match cli.command {
        Command::Serve { store, listen } => serve(&store, listen),
        Command::Put { files, name, jobs, json } => {
            if name.is_some() && files.len() > 1 {
                return Err("--name applies to a single file".into());
            }
            let c = client()?;
            runtime()?.block_on(async {
                for f in files {
                    let source = if f.as_os_str() == "-" { Source::Stdin } else { Source::File(f.clone()) };
                    let opts = PutOptions { name: name.clone(), jobs, progress: show(json) };
                    let (file, report) =
                        client::put(&c, source, &opts).await.map_err(|e| format!("{}: {e}", f.display()))?;
                    if json {
                        print_json(&report)?;
                    } else {
                        let pct = if report.size == 0 { 0.0 } else { 100.0 * report.sent_bytes as f64 / report.size as f64 };
                        eprintln!(
                            "{}: {} in {} chunks; sent {} ({pct:.1}%), skipped {} chunks the server had; {:.1} s",
                            file.name,
                            human(report.size),
                            report.chunks,
                            human(report.sent_bytes),
                            report.skipped_chunks,
                            report.seconds
                        );
                        emit(&file.id)?;
                    }
                }
                Ok(())
            })
        }
        Command::Get { id, output, json } => {
            let c = client()?;
            let opts = GetOptions { output, progress: show(json) };
            let report = runtime()?.block_on(client::get(&c, &id, &opts)).map_err(|e| e.to_string())?;
            if json {
                print_json(&report)
            } else {
                if report.path != "-" {
                    let resumed = if report.resumed_from > 0 {
                        format!(" (resumed at {})", human(report.resumed_from))
                    } else {
                        String::new()
                    };
                    eprintln!(
                        "{}: {} verified{resumed}; {:.1} s",
                        report.path,
                        human(report.size),
                        report.seconds
                    );
                }
                Ok(())
            }
        }
        Command::Ls { json } => {
            let c = client()?;
            runtime()?.block_on(async {
                let mut cursor: Option<String> = None;
                loop {
                    let page = c.list(cursor.as_deref(), 1000).await.map_err(|e| e.to_string())?;
                    for f in &page.files {
                        if json {
                            print_json(f)?;
                        } else {
                            emit(&format!(
                                "{}  {:>10}  {}  {}",
                                f.id,
                                human(f.size),
                                f.created.get(..19).unwrap_or(&f.created),
                                f.name
                            ))?;
                        }
                    }
                    match page.next_cursor {
                        Some(n) => cursor = Some(n),
                        None => return Ok(()),
                    }
                }
            })
        }
        Command::Rm { id } => {
            let c = client()?;
            runtime()?.block_on(c.delete(&id)).map_err(|e| e.to_string())
        }
        Command::Stat { id, json } => {
            let c = client()?;
            let f = runtime()?.block_on(c.info(&id)).map_err(|e| e.to_string())?;
            if json {
                return print_json(&f);
            }
            let mut text = format!(
                "id            {}\nname          {}\nsize          {} ({})\ncontent type  {}\n\
                 created       {}\nchunks        {}\netag          {}",
                f.id,
                f.name,
                f.size,
                human(f.size),
                f.content_type,
                f.created,
                f.chunks,
                f.etag
            );
            if let Some(h) = &f.content_hash {
                text.push_str(&format!("\nblake3        {h}"));
            }
            emit(&text)
        }
        Command::Stats { store, json } => {
            let st = if store.data_dir.is_some() {
                let s = open_store(&store)?;
                let st = s.stats().map_err(|e| e.to_string())?;
                s.close().map_err(|e| e.to_string())?;
                depot::wire::StatsInfo::from(st)
            } else {
                let c = client()?;
                runtime()?.block_on(c.stats()).map_err(|e| e.to_string())?
            };
            if json { print_json(&st) } else { print_stats(&st) }
        }
        Command::Gc { store, no_orphans } => {
            let s = open_store(&store)?;
            let r = s.gc(!no_orphans).map_err(|e| e.to_string())?;
            emit(&serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?)?;
            s.close().map_err(|e| e.to_string())
        }
        Command::Verify { store, repair } => {
            let s = open_store(&store)?;
            let r = s.verify(repair).map_err(|e| e.to_string())?;
            emit(&serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?)?;
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
