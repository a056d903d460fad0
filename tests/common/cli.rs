//! The real `depot` binary, pointed at a server.

use std::process::Output;

use tokio::process::Command;

/// `depot` talking to `base`, with no config file of the developer's.
pub fn depot(base: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_depot"));
    c.env("DEPOT_SERVER", base).env_remove("DEPOT_CONFIG").kill_on_drop(true);
    c
}

pub async fn run(base: &str, args: &[&str]) -> Output {
    depot(base).args(args).output().await.unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// Stdout of a run that must have succeeded.
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "depot failed ({}): {}", code(o), stderr(o));
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// Stdout of a run that must have succeeded, as JSON (a `--json` command).
pub async fn run_json<T: serde::de::DeserializeOwned>(base: &str, args: &[&str]) -> T {
    let out = run(base, args).await;
    serde_json::from_str(ok(&out).trim()).unwrap_or_else(|e| panic!("depot {args:?}: not JSON: {e}"))
}

/// A `depot serve` process: the real binary on an ephemeral port, its
/// standard error collected as it runs.
pub struct Served {
    pub child: tokio::process::Child,
    pub base: String,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Served {
    /// Starts `depot serve --data-dir DATA` plus `args`, with `env` on top of
    /// an environment without the developer's DEPOT_* variables (and with no
    /// fsync, rate limits or GC), and waits until it says where it listens:
    /// the text line, or the JSON event's `url`.
    pub async fn start(data: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Served {
        Self::start_with(Command::new(env!("CARGO_BIN_EXE_depot")), data, args, env).await
    }

    /// [`Served::start`] with at most `nofile` open descriptors
    /// (`RLIMIT_NOFILE`, set by the shell that then becomes the server).
    pub async fn start_with_nofile(
        nofile: u64,
        data: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Served {
        let mut c = Command::new("sh");
        c.args(["-c", &format!("ulimit -n {nofile} && exec \"$0\" \"$@\""), env!("CARGO_BIN_EXE_depot")]);
        Self::start_with(c, data, args, env).await
    }

    async fn start_with(
        mut c: Command,
        data: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Served {
        use tokio::io::AsyncBufReadExt;
        c.arg("serve").arg("--data-dir").arg(data).args(args);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("DEPOT_")) {
            c.env_remove(k);
        }
        c.env("DEPOT_FSYNC", "never").env("DEPOT_RATE_LIMIT", "false").env("DEPOT_GC_INTERVAL", "0");
        let mut child = c
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let collected = log.clone();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            // Drains the pipe to the end, so that the server never blocks on it.
            while let Ok(Some(line)) = lines.next_line().await {
                let url = line
                    .strip_prefix("depot listening on ")
                    .and_then(|r| r.split(' ').next())
                    .map(String::from);
                let url = url.or_else(|| {
                    let v: serde_json::Value = serde_json::from_str(&line).ok()?;
                    Some(v.get("url")?.as_str()?.to_string())
                });
                collected.lock().unwrap().push_str(&format!("{line}\n"));
                if let Some(url) = url {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url);
                    }
                }
            }
        });
        let base = match tokio::time::timeout(std::time::Duration::from_secs(60), rx).await {
            Ok(Ok(url)) => url,
            _ => panic!("the server did not start:\n{}", log.lock().unwrap()),
        };
        Served { child, base, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A regular upload (`POST /api/files/upload`); must answer 201. The file id.
    pub async fn upload(&self, name: &str, data: &[u8]) -> String {
        let c = super::client();
        super::upload_raw_to(&c, &self.url("/api/files/upload"), name, data).await.id.to_string()
    }

    /// A tus upload of `data` in two PATCHes; the file id the finishing one names.
    pub async fn tus_upload(&self, name: &str, data: &[u8]) -> String {
        use base64::Engine;
        use reqwest::StatusCode;
        let meta = format!("filename {}", base64::engine::general_purpose::STANDARD.encode(name));
        let r = super::http::tus(reqwest::Method::POST, &self.url("/api/tus/"))
            .header("Upload-Length", data.len().to_string())
            .header("Upload-Metadata", meta)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.headers()["tus-resumable"], super::http::TUS);
        let url = r.headers()["location"].to_str().unwrap().to_string();
        let half = data.len() / 2;
        let r = super::http::tus_patch(&url, 0).body(data[..half].to_vec()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let r = super::http::tus_patch(&url, half).body(data[half..].to_vec()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        r.headers()["depot-file-id"].to_str().unwrap().to_string()
    }

    /// `GET path` with `headers`, whatever the answer.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = super::client().get(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }

    /// The whole of file `id` (`GET /api/files/{id}`, must answer 200).
    pub async fn download(&self, id: &str) -> Vec<u8> {
        let r = self.get_with(&format!("/api/files/{id}"), &[]).await;
        assert_eq!(r.status(), reqwest::StatusCode::OK);
        r.bytes().await.unwrap().to_vec()
    }

    /// Everything the server wrote to standard error so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (up to ten seconds) for a log line containing `needle`, and
    /// returns it. Access lines are written when a response ends, which can
    /// be just after the client has read it.
    pub async fn wait_for_line(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(line) = self.log().lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            assert!(std::time::Instant::now() < deadline, "no log line with {needle:?} in:\n{}", self.log());
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, as a service manager or container engine sends it; waits
    /// for the exit and returns its status code.
    pub async fn stop(mut self) -> Option<i32> {
        let pid = self.child.id().unwrap().to_string();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let status = tokio::time::timeout(std::time::Duration::from_secs(30), self.child.wait())
            .await
            .expect("the server did not stop on SIGTERM")
            .unwrap();
        status.code()
    }
}
