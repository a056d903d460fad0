//! The `depot` binary: the server, the client commands, and the offline
//! store commands.
//!
//! Exit statuses: 0 done; 1 any other failure (the server or an offline
//! command could not run); 2 usage; 3 a local file cannot be read or
//! written, or `get` would overwrite one; 4 the server cannot be reached or
//! the connection broke; 5 the server refused the request, or would refuse
//! the upload; 6 server error; 7 a download does not verify; 130
//! interrupted (Ctrl-C): run the same command again to resume. `verify`
//! exits 1 when it finds damage.

use std::path::PathBuf;
use std::process::ExitCode;

mod cli;

use clap::{CommandFactory, Parser, Subcommand};
use cli::{runtime, streaming_runtime};
use depot::client::{self, Client, ClientError, GetOptions, PutOptions, Search, Source, exit, human};
use depot::config::{AuthMode, Config};
use depot::store::Store;

/// glibc malloc parameters for the server, set before any other thread
/// exists (see [`set_malloc`]):
///
/// - the mmap threshold pinned at its initial 128 KiB, as
///   `MALLOC_MMAP_THRESHOLD_=131072` would. glibc raises the threshold after
///   the first large frees, after which upload buffers (chunk batches of
///   megabytes) come from the per-thread heaps and stay there, fragmented:
///   32 concurrent 8 MiB uploads under a 32 MiB body budget grew the server
///   by 178 MiB with the moving threshold, 88 MiB with it pinned. (mimalloc
///   as the global allocator measured worse: 338 MiB.) The buffer pool
///   reuses what is above it (`store::buffer`).
/// - the trim threshold at 2 MiB: setting the mmap threshold also freezes
///   it at 128 KiB, so the heap was given back as soon as that much was free
///   at its top, and hyper's read buffers (under 128 KiB) faulted in afresh.
/// - at most one arena per core, four in all (glibc allows eight per core):
///   the blocking pool's threads come and go over a long upload, each new
///   one took a fresh arena, and each arena keeps what it freed. A 4 GiB
///   upload peaked at 40.0 MiB against 35.9 MiB for 1 GiB with glibc's
///   default, 35.1 against 32.8 MiB with two arenas (2 cores).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    let arenas = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 4);
    set_malloc(&[
        (libc::M_MMAP_THRESHOLD, depot::store::buffer::POOLED_MIN as libc::c_int),
        (libc::M_TRIM_THRESHOLD, 2 * 1024 * 1024),
        (libc::M_ARENA_MAX, arenas as libc::c_int),
    ]);
}

/// glibc malloc parameters for a transfer command (`put`, `get`): the mmap
/// threshold at 4 MiB and the trim threshold at 64 MiB. With glibc's moving
/// thresholds, hyper's read buffers (a few hundred KiB, allocated on the
/// runtime's threads and freed on the writer's) went back to the system
/// between reads and were faulted in afresh: a 1 GiB `depot get -o -` took
/// 48,000–67,000 page faults and 0.32–0.47 s of system time; with these,
/// 3,500–4,900 and 0.21–0.30 s, and a peak RSS of 31–36 MiB against 27–31
/// (docs/PERFORMANCE.md, D1). Either one alone, which freezes the other at
/// its default, was worse than neither.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc_for_transfer() {
    set_malloc(&[(libc::M_MMAP_THRESHOLD, 4 * 1024 * 1024), (libc::M_TRIM_THRESHOLD, 64 * 1024 * 1024)]);
}

/// Sets each `(parameter, value)` with `mallopt`. Only first thing in
/// `main`, before any other thread exists.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_malloc(settings: &[(libc::c_int, libc::c_int)]) {
    for &(param, value) in settings {
        // SAFETY: mallopt only sets allocator parameters; it is called from
        // `main` before any other thread exists.
        unsafe {
            libc::mallopt(param, value);
        }
    }
}

/// `0.1.0 (3f2c1ab)`: the package version and the commit built.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("DEPOT_COMMIT"), ")");

#[derive(Parser)]
#[command(
    name = "depot",
    version = VERSION,
    about = "A streaming file server on a deduplicating chunk store",
    after_help = "Exit status: 0 done, 1 other failure, 2 usage, 3 local file, 4 network, \
                  5 refused by the server, 6 server error, 7 verification failed, \
                  130 interrupted (run the same command again to resume)."
)]
struct Cli {
    /// The server the client commands talk to.
    #[arg(long, env = "DEPOT_SERVER", default_value = "http://localhost:8080", global = true)]
    server: String,
    /// A file holding the token the client commands send (it must be private:
    /// mode 600). Without it: $DEPOT_TOKEN, else ~/.config/depot/token if it
    /// exists, else no token (enough for a server in `local` mode).
    #[arg(long, global = true, value_name = "PATH")]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// Options shared by every command that opens a store directly.
#[derive(clap::Args)]
pub(crate) struct StoreArgs {
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
        /// Address to listen on, host:port (overrides the configuration;
        /// a host name such as localhost is resolved).
        #[arg(long)]
        listen: Option<String>,
        /// `local` (no token, loopback only), `token` (every request needs
        /// one) or `open` (no authentication); overrides auth.mode.
        #[arg(long, value_name = "MODE")]
        auth_mode: Option<AuthMode>,
        /// Log format: text (colours only on a terminal) or json (one
        /// object per line). Overrides `log_format` and DEPOT_LOG_FORMAT.
        #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"])]
        log_format: Option<String>,
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
    /// Refuses to overwrite an existing file unless --force.
    Get {
        /// The file's id, or its name when one file has it.
        id: String,
        /// Output path (default: the stored name; `-` for standard output).
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        /// Overwrite the output file if it exists.
        #[arg(long, short = 'f')]
        force: bool,
        /// A local file or directory that may hold some of the file's
        /// chunks (an older version): those are copied, not fetched.
        /// Repeatable. With --force an existing output is a seed too.
        #[arg(long, value_name = "PATH")]
        seed: Vec<PathBuf>,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
    },
    /// List files, newest first: all of them, those named NAME, or those
    /// whose name contains TEXT (-q).
    Ls {
        /// Only files with exactly this name.
        name: Option<String>,
        /// Only files whose name contains this, ignoring case.
        #[arg(long, short = 'q', conflicts_with = "name")]
        search: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Delete a file.
    Rm {
        /// The file's id, or its name when one file has it.
        id: String,
    },
    /// Show one file's record.
    Stat {
        /// The file's id, or its name when one file has it.
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
    /// Make, list and revoke access tokens: through the server's admin API
    /// (an admin token in DEPOT_TOKEN), or on a data dir with --data-dir
    /// while no server runs.
    Token {
        #[command(subcommand)]
        action: cli::token::TokenAction,
    },
    /// A tenant's quota and usage, and changing its caps: through the
    /// server's admin API (an admin token in DEPOT_TOKEN), or on a data dir
    /// with --data-dir while no server runs.
    Tenant {
        #[command(subcommand)]
        action: cli::tenant::TenantAction,
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
    /// Back up the store (one node's RocksDB and objects): a data dir in
    /// `<data_dir>/backups/<time>` that opens as the store at that instant.
    /// Made by the server (an admin token in DEPOT_TOKEN), or on a data dir
    /// with --data-dir while no server runs. Prints its path.
    Backup {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        json: bool,
    },
    /// Fold a data dir's loose chunk objects into pack files (docs/PACKS.md),
    /// while no server runs: each checked, appended, its row moved, the
    /// file deleted. Prints what was packed as JSON.
    Pack {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Ask the server whether it is healthy (GET /healthz) or, with --ready,
    /// ready for traffic (GET /readyz); exit 0 when it is. For probes such as
    /// the container image's HEALTHCHECK: one try, five seconds at most.
    Health {
        #[arg(long)]
        ready: bool,
    },
    /// Print a shell completion script (e.g. `depot completions bash >
    /// /usr/share/bash-completion/completions/depot`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write a page per command into a directory.
    Man {
        /// Write depot.1 and one page per command (depot-serve.1, …) here.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

/// A command's failure: the line to print and the exit status.
pub(crate) struct Failure {
    code: u8,
    message: String,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self { code: 1, message }
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Self { code: 1, message: message.into() }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Self { code: e.exit_code(), message: e.to_string() }
    }
}

fn usage(message: impl Into<String>) -> Failure {
    Failure { code: exit::USAGE, message: message.into() }
}

/// What `depot serve` takes on its command line over the configuration.
#[derive(Default)]
struct ServeFlags {
    listen: Option<String>,
    log_format: Option<String>,
    auth_mode: Option<AuthMode>,
}

/// The configuration: defaults, file, environment, then flags. A variable
/// that a flag overrides is not read at all, so that an invalid value in
/// the environment does not stop a command whose flag is valid.
fn load_config(args: &StoreArgs, flags: &ServeFlags) -> Result<Config, Failure> {
    let overridden = |k: &str| match k {
        "DEPOT_DATA_DIR" => args.data_dir.is_some(),
        "DEPOT_LISTEN" => flags.listen.is_some(),
        "DEPOT_LOG_FORMAT" => flags.log_format.is_some(),
        "DEPOT_AUTH_MODE" => flags.auth_mode.is_some(),
        _ => false,
    };
    let mut cfg =
        Config::load(args.config.as_deref(), |k| if overridden(k) { None } else { std::env::var(k).ok() })
            .map_err(|e| usage(e.to_string()))?;
    if let Some(d) = &args.data_dir {
        cfg.data_dir = d.clone();
    }
    if let Some(l) = &flags.listen {
        cfg.set("listen", l).map_err(|e| usage(format!("--listen: {e}")))?;
    }
    if let Some(f) = &flags.log_format {
        cfg.set("log_format", f).map_err(|e| usage(format!("--log-format: {e}")))?;
    }
    if let Some(m) = flags.auth_mode {
        cfg.auth.mode = m;
    }
    cfg.validate().map_err(|e| usage(e.to_string()))?;
    Ok(cfg)
}

fn open_store(args: &StoreArgs) -> Result<Store, Failure> {
    open_store_with(args, false)
}

/// [`open_store`], appending new chunks to packs when `packs` whatever the
/// configuration says.
fn open_store_with(args: &StoreArgs, packs: bool) -> Result<Store, Failure> {
    let cfg = load_config(args, &ServeFlags::default())?;
    // A PostgreSQL store has no `meta/`: the database says whether it exists.
    let local = cfg.storage.meta == depot::store::MetaBackend::RocksDb;
    if local && !cfg.data_dir.join("meta").exists() {
        return Err(format!("no store at {}", cfg.data_dir.display()).into());
    }
    let mut opts = cfg.store_options();
    opts.packs |= packs;
    Store::open(&cfg.data_dir, opts).map_err(|e| {
        let at = if local { String::new() } else { format!(" (metadata in {})", cfg.storage.meta) };
        format!("opening the store at {}{at}: {e}", cfg.data_dir.display()).into()
    })
}

/// An I/O error as a cause people recognise ("permission denied", "not a
/// directory"), without the os error number.
fn io_cause(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut c = text.chars();
    c.next().map(|f| f.to_lowercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

/// Runs a client command; Ctrl-C ends it with one line saying how to
/// resume (`resume`) and exit status 130. What a get verified stays in its
/// `.part` file; what a put sent stays on the server (leased), so the same
/// command run again continues.
fn interruptible<F>(rt: tokio::runtime::Runtime, resume: &str, f: F) -> Result<(), Failure>
where
    F: std::future::Future<Output = Result<(), Failure>>,
{
    rt.block_on(async {
        tokio::select! {
            r = f => r,
            _ = tokio::signal::ctrl_c() => {
                // A progress bar may be on the line: start a fresh one.
                eprintln!("\ndepot: interrupted; {resume}");
                std::process::exit(i32::from(exit::INTERRUPTED));
            }
        }
    })
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

/// `depot gc`'s account of what it left: chunks no file uses that the
/// grace period (or an upload's lease) still holds, and when they go.
fn explain_gc(
    r: &depot::store::GcReport,
    left: &depot::store::GcBacklog,
    grace: std::time::Duration,
) -> String {
    let mut text = format!("gc: freed {} chunks ({})", r.deleted_chunks, human(r.freed_bytes));
    if left.chunks == 0 {
        text.push_str("; no unused chunks are waiting");
        return text;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let when = |ms: u64| {
        let wait = std::time::Duration::from_millis(ms.saturating_sub(now));
        format!("{} (in {})", depot::wire::rfc3339(ms), humantime(wait))
    };
    text.push_str(&format!(
        "; {} unused chunks ({}) are kept until their grace period (gc.grace = {}) or an upload's lease \
         (gc.chunk_lease) ends",
        left.chunks,
        human(left.bytes),
        humantime(grace)
    ));
    if let (Some(first), Some(last)) = (left.first_due_ms, left.last_due_ms) {
        text.push_str(&format!("; the first may go at {}, the last at {}", when(first), when(last)));
    }
    text.push_str("; run gc again after that (the server's own GC runs every gc.interval)");
    text
}

/// `2h05m`, `3m10s`, `42s`.
fn humantime(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let server = cli.server.clone();
    let token_file = cli.token_file.clone();
    let client = || {
        let token = client::Token::resolve(token_file.as_deref())?;
        Client::with_token(&server, token).map(|c| c.with_retry_notices(true)).map_err(Failure::from)
    };
    let show = |json: bool| !json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    match cli.command {
        Command::Serve { store, listen, log_format, auth_mode } => {
            cli::serve::serve(&store, &ServeFlags { listen, log_format, auth_mode })
        }
        Command::Token { action } => cli::token::run(action, client),
        Command::Backup { store, json } => cli::backup::run(&store, json, client),
        Command::Tenant { action } => cli::tenant::run(action, client),
        Command::Health { ready } => {
            let h = runtime()?.block_on(Client::new(&server)?.health(ready))?;
            Ok(emit(&h.status)?)
        }
        Command::Completions { shell } => {
            // Into a buffer first: the generator panics on a closed pipe.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "depot", &mut script);
            Ok(emit(String::from_utf8_lossy(&script).trim_end())?)
        }
        Command::Man { out_dir } => cli::man::man(out_dir.as_deref()),
        Command::Put { files, name, jobs, json } => {
            if name.is_some() && files.len() > 1 {
                return Err(usage("--name applies to a single file"));
            }
            let c = client()?;
            interruptible(
                runtime()?,
                "run the same command again to resume: chunks the server already has are not sent again",
                async {
                    for f in files {
                        let source =
                            if f.as_os_str() == "-" { Source::Stdin } else { Source::File(f.clone()) };
                        let opts = PutOptions { name: name.clone(), jobs, progress: show(json) };
                        let (file, report) = client::put(&c, source, &opts).await.map_err(|e| Failure {
                            code: e.exit_code(),
                            message: format!("{}: {e}", f.display()),
                        })?;
                        if json {
                            print_json(&report)?;
                        } else {
                            let pct = if report.size == 0 {
                                0.0
                            } else {
                                100.0 * report.sent_bytes as f64 / report.size as f64
                            };
                            eprintln!(
                                "{}: {} in {} chunks; sent {} ({pct:.1}%), skipped {} chunks ({}) the server had; {:.1} s",
                                file.name,
                                human(report.size),
                                report.chunks,
                                human(report.sent_bytes),
                                report.skipped_chunks,
                                human(report.skipped_bytes),
                                report.seconds
                            );
                            emit(&file.id)?;
                        }
                    }
                    Ok(())
                },
            )
        }
        Command::Get { id, output, force, seed, json } => {
            let c = client()?;
            let part = match &output {
                Some(o) if o.as_os_str() != "-" => format!("{}.part", o.display()),
                _ => "the .part file".into(),
            };
            let opts = GetOptions { output, force, progress: show(json), seeds: seed };
            interruptible(
                streaming_runtime()?,
                &format!("run the same command again to resume from {part}"),
                async {
                    let report = client::get(&c, &c.resolve(&id).await?, &opts).await?;
                    if json {
                        print_json(&report)?;
                    } else if report.path != "-" {
                        let resumed = if report.resumed_from > 0 {
                            format!(" (resumed at {})", human(report.resumed_from))
                        } else {
                            String::new()
                        };
                        let reused = if report.reused_bytes > 0 {
                            format!(
                                " ({} from seeds, {} fetched)",
                                human(report.reused_bytes),
                                human(report.received_bytes)
                            )
                        } else {
                            String::new()
                        };
                        eprintln!(
                            "{}: {} verified{resumed}{reused}; {:.1} s",
                            report.path,
                            human(report.size),
                            report.seconds
                        );
                    }
                    Ok(())
                },
            )
        }
        Command::Ls { name, search, json } => {
            let c = client()?;
            let filter = match (name, search) {
                (Some(n), _) => Some(Search::Exact(n)),
                (None, Some(q)) => Some(Search::Contains(q)),
                (None, None) => None,
            };
            interruptible(runtime()?, "nothing was changed", async {
                let mut cursor: Option<String> = None;
                loop {
                    let page = c.list(cursor.as_deref(), 1000, filter.as_ref()).await?;
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
            interruptible(runtime()?, "run the same command again", async {
                Ok(c.delete(&c.resolve(&id).await?).await?)
            })
        }
        Command::Stat { id, json } => {
            let c = client()?;
            let f = runtime()?.block_on(async { c.info(&c.resolve(&id).await?).await })?;
            if json {
                return Ok(print_json(&f)?);
            }
            Ok(emit(&cli::show::file(&f))?)
        }
        Command::Stats { store, json } => {
            let st = if store.data_dir.is_some() {
                let s = open_store(&store)?;
                let st = s.stats().map_err(|e| e.to_string())?;
                s.close().map_err(|e| e.to_string())?;
                depot::wire::StatsInfo::from(st)
            } else {
                let c = client()?;
                runtime()?.block_on(c.stats())?
            };
            Ok(if json { print_json(&st) } else { emit(&cli::show::stats(&st)) }?)
        }
        Command::Gc { store, no_orphans } => {
            let s = open_store(&store)?;
            let r = s.gc(!no_orphans).map_err(|e| e.to_string())?;
            let left = s.gc_backlog().map_err(|e| e.to_string())?;
            let mut out = serde_json::to_value(&r).map_err(|e| e.to_string())?;
            out["waiting"] = serde_json::to_value(&left).map_err(|e| e.to_string())?;
            emit(&serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?)?;
            eprintln!("{}", explain_gc(&r, &left, s.options().gc_grace));
            Ok(s.close().map_err(|e| e.to_string())?)
        }
        Command::Pack { store } => {
            let s = open_store_with(&store, true)?;
            let r = s.pack_loose().map_err(|e| e.to_string())?;
            emit(&serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?)?;
            Ok(s.close().map_err(|e| e.to_string())?)
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
    let cli = Cli::parse();
    // The server's concern (many uploads at once, for weeks) is memory that
    // stays bounded; a client command is one transfer, and its buffers would
    // each be a fresh mapping, faulted in and unmapped, with the server's
    // pinned threshold (`depot put`/`get` measured slower with it).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    match cli.command {
        Command::Serve { .. } => tune_malloc(),
        Command::Put { .. } | Command::Get { .. } => tune_malloc_for_transfer(),
        _ => {}
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("depot: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
