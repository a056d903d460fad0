//! A real PostgreSQL for tests: one throwaway server per test binary
//! (`initdb` into a temporary directory, `pg_ctl start` on a free loopback
//! port, no fsync), and a fresh database per test ([`database`]). The
//! server stops when the test process ends, however it ends: a guard
//! process waits for the end of a pipe the test process holds, then runs
//! `pg_ctl stop -m immediate` and removes the directory.
//!
//! PostgreSQL is found through `pg_config --bindir`, then
//! `/usr/lib/postgresql/<newest>/bin`, then `PATH`. When it is missing, the
//! test is skipped with a printed reason, unless `DEPOT_SCALEOUT=1`, where
//! that is a failure. As root, the server runs as the `postgres` user
//! (`initdb` refuses root).
//!
//! Std only: the library's own unit tests include this file too.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The running server of this test process.
pub struct Server {
    pub port: u16,
    bin: PathBuf,
    /// Where the socket lives (also the data directory's parent).
    dir: PathBuf,
    /// Holds the guard's stdin: when this process ends, the guard stops
    /// the server.
    _guard: Child,
    run_as: Option<String>,
    /// The server's options (port, socket dir…), for a start after a stop.
    opts: String,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// A URL of a fresh, empty database on this process's server, or `None`
/// (after printing why) when PostgreSQL is not installed.
///
/// # Panics
/// When PostgreSQL is missing and `DEPOT_SCALEOUT=1`, or when the server
/// does not start.
pub fn database(test: &str) -> Option<String> {
    let server = match SERVER.get_or_init(Server::start) {
        Ok(s) => s,
        Err(why) if why.starts_with("missing:") => {
            if std::env::var("DEPOT_SCALEOUT").as_deref() == Ok("1") {
                panic!("DEPOT_SCALEOUT=1 needs PostgreSQL: {why}");
            }
            eprintln!(
                "skipping {test}: PostgreSQL is not installed ({why}); DEPOT_SCALEOUT=1 makes this a failure"
            );
            return None;
        }
        Err(why) => panic!("PostgreSQL did not start: {why}"),
    };
    let n = NEXT_DB.fetch_add(1, Ordering::Relaxed);
    let name: String = format!("t{n}_{test}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .take(60)
        .collect();
    server.psql("postgres", &format!("CREATE DATABASE {name}"));
    Some(server.url(&name))
}

/// Runs SQL in the database at `url` (from [`database`]), as the tests'
/// superuser: for faults a test plants (triggers) and checks it makes.
///
/// # Panics
/// When the statement fails.
pub fn sql(url: &str, statement: &str) -> String {
    let server = SERVER.get().and_then(|s| s.as_ref().ok()).expect("database() first");
    let db = url.rsplit('/').next().unwrap_or("postgres");
    server.psql(db, statement)
}

/// Stops this process's server (`pg_ctl stop -m fast`: sessions are
/// ended, as in a restart or failover), for a test of what clients see
/// while the database is away. [`start_again`] brings it back.
///
/// # Panics
/// Before [`database`], or when `pg_ctl` fails.
pub fn stop() {
    let server = SERVER.get().and_then(|s| s.as_ref().ok()).expect("database() first");
    let data = server.dir.join("data").display().to_string();
    server.run("pg_ctl", &["-w", "-m", "fast", "-D", &data, "stop"]).expect("pg_ctl stop");
}

/// Starts the server [`stop`] stopped, on the same port.
///
/// # Panics
/// When `pg_ctl` fails.
pub fn start_again() {
    let server = SERVER.get().and_then(|s| s.as_ref().ok()).expect("database() first");
    let data = server.dir.join("data").display().to_string();
    let log = server.dir.join("log").display().to_string();
    server
        .run("pg_ctl", &["-w", "-D", &data, "-l", &log, "-o", &server.opts, "start"])
        .expect("pg_ctl start");
}

fn find_bin() -> Option<PathBuf> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has(&d) {
            return Some(d);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, d)| has(d))
        .collect();
    versions.sort();
    if let Some((_, d)) = versions.pop() {
        return Some(d);
    }
    std::env::var_os("PATH")?.to_str()?.split(':').map(PathBuf::from).find(|d| has(d))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    fn start() -> Result<Server, String> {
        let bin = find_bin().ok_or("missing: no initdb/pg_ctl (Debian: apt-get install postgresql)")?;
        let root = rustix::process::geteuid().is_root();
        let run_as = root.then(|| "postgres".to_string());
        let dir = std::env::temp_dir().join(format!("depot-pg-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        if root {
            let id = |flag: &str| -> Result<u32, String> {
                let out = Command::new("id").args([flag, "postgres"]).output().map_err(|e| e.to_string())?;
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .map_err(|_| "missing: no `postgres` user".into())
            };
            std::os::unix::fs::chown(&dir, Some(id("-u")?), Some(id("-g")?)).map_err(|e| e.to_string())?;
        }
        let data = dir.join("data");
        let mut server = Server { port: 0, bin, dir, _guard: spawn_guard()?, run_as, opts: String::new() };
        server.arm_guard(&data);
        server.run("initdb", &[&format!("-D{}", data.display()), "-Atrust", "-Udepot", "--no-sync"])?;
        // Another process may take the port between the probe and the
        // start: try a few.
        let mut last = String::new();
        for _ in 0..3 {
            server.port = free_port();
            let opts = format!(
                "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=200",
                server.port,
                server.dir.display()
            );
            server.opts = opts.clone();
            let log = server.dir.join("log");
            let started = server.run(
                "pg_ctl",
                &[
                    "-w",
                    "-D",
                    &data.display().to_string(),
                    "-l",
                    &log.display().to_string(),
                    "-o",
                    &opts,
                    "start",
                ],
            );
            match started {
                Ok(_) => return Ok(server),
                Err(e) => last = format!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default()),
            }
        }
        Err(last)
    }

    /// A PostgreSQL program as the server's user; its stdout.
    fn run(&self, prog: &str, args: &[&str]) -> Result<String, String> {
        let path = self.bin.join(prog);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        let out = cmd
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{prog}: {e}"))?;
        if !out.status.success() {
            return Err(format!("{prog} failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn psql(&self, db: &str, statement: &str) -> String {
        let port = self.port.to_string();
        let host = "127.0.0.1";
        let args = [
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            host,
            "-p",
            &port,
            "-U",
            "depot",
            "-d",
            db,
        ];
        let path = self.bin.join("psql");
        let out = Command::new(path).args(args).args(["-c", statement]).output().expect("psql runs");
        assert!(out.status.success(), "psql {statement}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://depot@127.0.0.1:{}/{db}", self.port)
    }

    /// Tells the guard what to stop and remove when this process ends.
    fn arm_guard(&mut self, data: &Path) {
        use std::io::Write;
        let stop = match &self.run_as {
            Some(u) => format!(
                "runuser -u {u} -- {} stop -m immediate -D {}",
                self.bin.join("pg_ctl").display(),
                data.display()
            ),
            None => format!("{} stop -m immediate -D {}", self.bin.join("pg_ctl").display(), data.display()),
        };
        let line = format!("{stop} >/dev/null 2>&1; rm -rf {}\n", self.dir.display());
        let stdin = self._guard.stdin.as_mut().expect("guard stdin");
        stdin.write_all(line.as_bytes()).expect("guard takes its command");
    }
}

/// A shell that reads one command line, then waits for the end of its
/// input (this process exiting closes it) and runs that command.
fn spawn_guard() -> Result<Child, String> {
    Command::new("sh")
        .args(["-c", "read -r cmd; cat >/dev/null; eval \"$cmd\""])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("guard: {e}"))
}
