//! A throwaway Garage (the reference S3 engine) for the S3 tests: a
//! one-node cluster over a temp dir on free loopback ports, started with
//! `garage server --single-node --default-bucket`, which makes the layout,
//! an access key and the bucket from `GARAGE_DEFAULT_*` before the S3 port
//! opens (garage 2.5.0 `server.rs`, `initial_config`).
//!
//! Without a `garage` binary the tests skip, saying why; with
//! `DEPOT_SCALEOUT=1` (CI) a missing engine is a failure. The binary is
//! `$GARAGE_BIN`, else `garage` on `PATH`, else `$CARGO_HOME/bin/garage`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use depot::store::objects::{S3Credentials, S3Options};

/// The version CI installs and these tests were written against.
pub const VERSION: &str = "2.5.0";

/// A running Garage; killed (and its data removed) on drop.
pub struct Garage {
    child: Child,
    /// `http://127.0.0.1:PORT`, the S3 API.
    pub endpoint: String,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// Where the `garage` binary is, if anywhere.
fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GARAGE_BIN") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("garage"));
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|d| d.join("bin/garage"));
    on_path.chain(cargo_home).find(|p| p.is_file())
}

/// Two distinct loopback ports free at the time of the call (both probes
/// are held until both are chosen).
fn free_ports() -> [u16; 2] {
    let probes = [(); 2].map(|()| TcpListener::bind("127.0.0.1:0").unwrap());
    probes.map(|l| l.local_addr().unwrap().port())
}

fn hex(n: usize) -> String {
    (0..n).map(|_| format!("{:x}", rand::random::<u8>() & 15)).collect()
}

impl Garage {
    /// Whether [`Garage::start`] can start one, without starting it: `false`
    /// (after printing why) when there is no `garage` binary.
    ///
    /// # Panics
    /// When the binary is missing under `DEPOT_SCALEOUT=1`.
    pub fn available() -> bool {
        if binary().is_some() {
            return true;
        }
        let why = "no `garage` binary (cargo install garage --locked --version 2.5.0, or set GARAGE_BIN)";
        if std::env::var("DEPOT_SCALEOUT").as_deref() == Ok("1") {
            panic!("DEPOT_SCALEOUT=1: {why}");
        }
        eprintln!("skipped: {why}");
        false
    }

    /// Starts a fresh one-node Garage and waits until it answers a request
    /// signed with its own key. `None` (after printing why) when there is no
    /// `garage` binary and `DEPOT_SCALEOUT` is not `1`.
    ///
    /// The ports are probed free and then given to Garage, so another
    /// process (another test's Garage, an outgoing connection) can take one
    /// in between: Garage then exits, or the port that answers is someone
    /// else's. A start that does not end in an answer signed with this
    /// Garage's key is tried again on new ports (five tries).
    ///
    /// # Panics
    /// When the binary is missing under `DEPOT_SCALEOUT=1`, or all five
    /// tries fail (each waits up to 60 s; the panic has the last one's log).
    pub fn start() -> Option<Garage> {
        let Some(bin) = binary() else {
            let why = "no `garage` binary (cargo install garage --locked --version 2.5.0, or set GARAGE_BIN)";
            if std::env::var("DEPOT_SCALEOUT").as_deref() == Ok("1") {
                panic!("DEPOT_SCALEOUT=1: {why}");
            }
            eprintln!("skipped: {why}");
            return None;
        };
        let mut last = String::new();
        for _ in 0..5 {
            match Garage::try_start(&bin) {
                Ok(g) => return Some(g),
                Err(why) => last = why,
            }
        }
        panic!("garage did not come up in five tries; the last:\n{last}");
    }

    /// One try of [`Garage::start`]: `Err` with what happened and the log.
    fn try_start(bin: &std::path::Path) -> Result<Garage, String> {
        let dir = tempfile::tempdir().unwrap();
        let [rpc, s3] = free_ports();
        let config = dir.path().join("garage.toml");
        std::fs::write(
            &config,
            format!(
                r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = 1
compression_level = "none"
block_size = "2M"
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
api_bind_addr = "127.0.0.1:{s3}"
s3_region = "garage"
"#,
                meta = dir.path().join("meta").display(),
                data = dir.path().join("data").display(),
                secret = hex(64),
            ),
        )
        .unwrap();
        let (key_id, secret, bucket) = (format!("GK{}", hex(24)), hex(64), "depot".to_string());
        let log = dir.path().join("garage.log");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&config)
            .args(["server", "--single-node", "--default-bucket"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", &key_id)
            .env("GARAGE_DEFAULT_SECRET_KEY", &secret)
            .env("GARAGE_DEFAULT_BUCKET", &bucket)
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut g = Garage {
            child,
            endpoint: format!("http://127.0.0.1:{s3}"),
            bucket,
            key_id,
            secret,
            log,
            _dir: dir,
        };
        g.wait_ready(SocketAddr::from(([127, 0, 0, 1], s3)))?;
        Ok(g)
    }

    /// Waits until `addr` takes connections and then until a listing of the
    /// bucket signed with this Garage's key succeeds there: the S3 server is
    /// spawned only after the layout, key and bucket exist, and no other
    /// server knows the key. `Err` (with the log) when Garage exits, or the
    /// port answers but not as this Garage, or neither within 60 s; the
    /// caller drops `self`, which kills the process.
    fn wait_ready(&mut self, addr: SocketAddr) -> Result<(), String> {
        use object_store::ObjectStore as _;
        let deadline = Instant::now() + Duration::from_secs(60);
        let probe = self
            .s3_builder()
            .with_retry(object_store::RetryConfig {
                max_retries: 0,
                retry_timeout: Duration::from_secs(1),
                ..Default::default()
            })
            .with_client_options(
                object_store::ClientOptions::new().with_allow_http(true).with_timeout(Duration::from_secs(2)),
            )
            .build()
            .unwrap();
        // On a thread of its own: the caller may be inside a runtime.
        let list = || {
            std::thread::scope(|s| {
                s.spawn(|| {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    rt.block_on(probe.list_with_delimiter(None)).map(drop)
                })
                .join()
                .unwrap()
            })
        };
        let mut answered = None;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("garage exited ({status}) before it answered:\n{}", self.log()));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                match list() {
                    Ok(_) => return Ok(()),
                    // Someone answers on the port: give our Garage a few
                    // seconds to either own it or exit.
                    Err(e) => {
                        let since = *answered.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_secs(5) {
                            return Err(format!(
                                "{addr} answers, but not as this garage: {e}\n{}",
                                self.log()
                            ));
                        }
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("garage did not answer within 60 s:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What Garage has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The variables a depot process reads to reach this Garage.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
        ]
    }

    pub fn credentials(&self) -> S3Credentials {
        S3Credentials {
            access_key_id: self.key_id.clone(),
            secret_access_key: self.secret.clone(),
            session_token: None,
        }
    }

    /// A raw S3 client's builder for this Garage's bucket (what depot's
    /// engine does to it, seen from outside).
    pub fn s3_builder(&self) -> object_store::aws::AmazonS3Builder {
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_bucket_name(&self.bucket)
            .with_region("garage")
            .with_access_key_id(&self.key_id)
            .with_secret_access_key(&self.secret)
            .with_allow_http(true)
    }

    /// Options for this Garage's bucket under `prefix`.
    pub fn options(&self, prefix: &str) -> S3Options {
        S3Options {
            endpoint: self.endpoint.clone(),
            bucket: self.bucket.clone(),
            prefix: prefix.into(),
            allow_http: true,
            ..S3Options::default()
        }
    }

    /// `garage --version`'s first line.
    pub fn version() -> Option<String> {
        let out = Command::new(binary()?).arg("--version").output().ok()?;
        Some(String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_string())
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
