//! Running depot as a service, against the real binary: its version and
//! commit, shell completions and man pages, the access log (text and JSON,
//! no credentials), readiness, latency histograms, configuration from the
//! environment with flags on top, host names in `--listen`, and the
//! object layout new chunks get by default.

mod common;

use std::time::Duration;

use common::cli::{Served, code, ok, stderr};
use common::stored::loose_objects;
use common::{client, test_config};
use depot::http::AppState;
use depot::store::Store;
use depot::wire::FileInfo;
use tokio::process::Command;

fn depot() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_depot"));
    c.env_remove("DEPOT_CONFIG").kill_on_drop(true);
    c
}

#[tokio::test]
async fn version_names_the_commit() {
    let out = depot().arg("--version").output().await.unwrap();
    let text = ok(&out);
    let expected_start = format!("depot {} (", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected_start) && text.trim_end().ends_with(')'), "{text}");
    let commit = text.trim_end().trim_end_matches(')').rsplit('(').next().unwrap();
    assert!(!commit.is_empty() && commit != "unknown", "{text}");
    // Built from a git checkout (and not told otherwise): HEAD's short hash.
    assert_eq!(commit, env!("DEPOT_COMMIT"));
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    if let (Ok(head), Err(_)) = (head, std::env::var("DEPOT_COMMIT")) {
        if head.status.success() {
            assert_eq!(commit, String::from_utf8_lossy(&head.stdout).trim(), "{text}");
        }
    }
}

#[tokio::test]
async fn completions_and_man_pages_come_from_the_command_line() {
    for (shell, marker) in
        [("bash", "complete -F _depot"), ("zsh", "#compdef depot"), ("fish", "complete -c depot")]
    {
        let out = depot().args(["completions", shell]).output().await.unwrap();
        let script = ok(&out);
        assert!(script.contains(marker), "{shell}: {script}");
        for word in ["serve", "put", "verify", "listen", "log-format"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let out = depot().args(["completions", "tcsh"]).output().await.unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));

    let page = ok(&depot().arg("man").output().await.unwrap());
    assert!(page.contains(".TH depot 1"), "{page}");
    for word in
        [".SH ENVIRONMENT", "serve", "completions", "DEPOT_SERVER", "DEPOT_LISTEN", "DEPOT_ALLOWED_TYPES"]
    {
        assert!(page.contains(word), "the man page lacks {word}");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = depot().args(["man", "--out-dir"]).arg(dir.path().join("man1")).output().await.unwrap();
    ok(&out);
    for page in ["depot.1", "depot-serve.1", "depot-put.1", "depot-completions.1"] {
        let text = std::fs::read_to_string(dir.path().join("man1").join(page)).unwrap();
        assert!(text.starts_with(".ie"), "{page}: {text}");
    }
    let main = std::fs::read_to_string(dir.path().join("man1/depot.1")).unwrap();
    assert_eq!(main.trim_end(), page.trim_end());
}

/// One line per request at the default level: method, path, status, bytes
/// both ways, duration; credentials in the query never reach the log; no
/// colour codes when standard error is not a terminal.
#[tokio::test]
async fn each_request_is_logged_once_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let s = Served::start(&data_dir, &["--listen", "127.0.0.1:0"], &[("DEPOT_AUTH_MODE", "token")]).await;
    let token = std::fs::read_to_string(data_dir.join("admin.token")).unwrap().trim().to_string();
    let data = depot::testdata::pseudo_random(10_000, 7);
    let r = client()
        .post(s.url("/api/files/upload?filename=a.bin&token=SECRET-ONE&sig=SECRET-TWO"))
        .bearer_auth(&token)
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let f: FileInfo = r.json().await.unwrap();
    let r = client()
        .get(s.url(&format!("/api/files/{}?X-Amz-Signature=SECRET-THREE", f.id)))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), data);

    let up = s.wait_for_line("path=/api/files/upload?").await;
    for field in
        ["depot::access", "method=POST", "status=201", "bytes_in=10000", "duration_ms=", "peer=127.0.0.1"]
    {
        assert!(up.contains(field), "{field} missing: {up}");
    }
    assert!(up.contains("filename=a.bin&token=REDACTED&sig=REDACTED"), "{up}");
    let down = s.wait_for_line(&format!("path=/api/files/{}?", f.id)).await;
    assert!(
        down.contains("method=GET") && down.contains("status=200") && down.contains("bytes_out=10000"),
        "{down}"
    );
    let not_found = client().get(s.url("/nowhere")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(not_found.status(), 404);
    s.wait_for_line("path=/nowhere status=404").await;

    let log = s.log();
    assert!(!log.contains("SECRET"), "a credential reached the log:\n{log}");
    // `dpt_<id>_<secret>`: the secret may itself hold `_` (base64url), so
    // it is everything after the second one, not after the last.
    let secret = token.splitn(3, '_').nth(2).unwrap();
    assert!(secret.len() >= 20, "{token}");
    assert!(!log.contains(secret), "the bearer token reached the log:\n{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a log that is not a terminal:\n{log}");
    assert_eq!(log.matches(&format!("path=/api/files/{}?", f.id)).count(), 1, "{log}");
    assert_eq!(s.stop().await, Some(0), "SIGTERM is a clean stop");
}

/// `--log-format json` (or DEPOT_LOG_FORMAT=json): every line is one JSON
/// object, with the event's fields at the top level. The start event says
/// how many async workers run: one fewer than the CPUs unless
/// `worker_threads` says (read back from the runtime itself).
#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let cpus = std::thread::available_parallelism().unwrap().get();
    for (args, env, workers) in [
        (&["--log-format", "json"][..], &[][..], cpus.saturating_sub(1).max(1)),
        (&[][..], &[("DEPOT_LOG_FORMAT", "json"), ("DEPOT_WORKER_THREADS", "3")][..], 3),
    ] {
        let mut args = args.to_vec();
        args.extend(["--listen", "127.0.0.1:0"]);
        let s = Served::start(&dir.path().join("data"), &args, env).await;
        assert_eq!(client().get(s.url("/healthz?token=SECRET")).send().await.unwrap().status(), 200);
        s.wait_for_line("\"path\":\"/healthz?token=REDACTED\"").await;
        let log = s.log();
        assert_eq!(s.stop().await, Some(0));
        let events: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        let access = events.iter().find(|e| e["target"] == "depot::access").expect("an access event");
        assert_eq!(access["level"], "INFO");
        assert_eq!(access["method"], "GET");
        assert_eq!(access["path"], "/healthz?token=REDACTED");
        assert_eq!(access["status"], 200);
        assert!(access["duration_ms"].as_f64().is_some(), "{access}");
        assert!(access["timestamp"].is_string(), "{access}");
        let listening = events.iter().find(|e| e["message"] == "depot listening").expect("the start event");
        assert!(listening["url"].as_str().unwrap().starts_with("http://127.0.0.1:"), "{listening}");
        assert_eq!(listening["worker_threads"], workers, "{listening}");
        assert!(!log.contains("SECRET"), "{log}");
    }
}

/// `/readyz` once the store is open, `depot health` for probes; per-route
/// latency histograms keyed by the route template, not the raw path.
#[tokio::test]
async fn readiness_and_latency_histograms() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(&dir.path().join("data"), &["--listen", "127.0.0.1:0"], &[]).await;
    let r = client().get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ready");

    // `depot health`, the image's HEALTHCHECK: one try, exit 0 when healthy.
    let out = depot().args(["--server", &s.base, "health"]).output().await.unwrap();
    assert_eq!(ok(&out).trim(), "ok");
    let out = depot().args(["--server", &s.base, "health", "--ready"]).output().await.unwrap();
    assert_eq!(ok(&out).trim(), "ready");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = depot().args(["--server", &format!("http://{closed}"), "health"]).output().await.unwrap();
    assert_eq!(code(&out), 4, "{}", stderr(&out));

    let r = client().post(s.url("/api/files/upload?filename=h.txt")).body("hello").send().await.unwrap();
    let f: FileInfo = r.json().await.unwrap();
    for _ in 0..3 {
        assert_eq!(client().get(s.url(&format!("/api/files/{}", f.id))).send().await.unwrap().status(), 200);
    }
    assert_eq!(client().get(s.url("/no/such/route")).send().await.unwrap().status(), 404);
    // The last access line is written once its response has ended.
    s.wait_for_line("path=/no/such/route").await;
    let m = client().get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    const H: &str = "depot_http_request_duration_seconds";
    assert!(m.contains(&format!("# TYPE {H} histogram")), "{m}");
    let series = "route=\"/api/files/{id}\",method=\"GET\"";
    assert_eq!(common::metric(&m, &format!("{H}_bucket{{{series},le=\"+Inf\"}}")), 3, "{m}");
    assert_eq!(common::metric(&m, &format!("{H}_count{{{series}}}")), 3, "{m}");
    assert!(m.contains(&format!("{H}_sum{{{series}}} ")), "{m}");
    assert!(m.contains(&format!("{H}_bucket{{{series},le=\"0.001\"}} ")), "{m}");
    assert_eq!(common::metric(&m, &format!("{H}_count{{route=\"/api/files/upload\",method=\"POST\"}}")), 1);
    assert_eq!(common::metric(&m, &format!("{H}_count{{route=\"unmatched\",method=\"GET\"}}")), 1);
    assert!(!m.contains(&f.id), "a raw path became a label:\n{m}");
    // A scrape's own answer is not response traffic: scraping twice adds nothing.
    let again = client().get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let sent = |m: &str| common::metric(m, "depot_http_response_bytes_total");
    assert_eq!(sent(&again), sent(&m));
    // Buckets are cumulative.
    let counts: Vec<u64> = m
        .lines()
        .filter(|l| l.starts_with(&format!("{H}_bucket{{{series}")))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    s.stop().await;
}

/// While the store opens, the server already answers: 503 everywhere, with
/// Retry-After; then ready. A store that fails to open closes the port.
#[tokio::test]
async fn the_server_answers_503_until_the_store_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(dir.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (open_tx, open_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let limits = cfg.limits.clone();
    let opening = async move {
        let _ = open_rx.await;
        Ok::<_, String>(AppState::new(Store::open(&cfg.data_dir, cfg.store_options()).unwrap(), cfg))
    };
    let server = tokio::spawn(depot::server::serve_opening(
        listener,
        limits,
        depot::store::objects::ObjectsKind::Fs,
        opening,
        move || {
            let _ = ready_tx.send(());
        },
        async {
            let _ = stop_rx.await;
        },
    ));
    for path in ["/readyz", "/healthz", "/api/files", "/metrics"] {
        let r = client().get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 503, "{path}");
        assert_eq!(r.headers()["retry-after"], "1", "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "not_ready", "{path}: {body}");
        assert!(body["message"].as_str().unwrap().contains("starting"), "{body}");
    }
    open_tx.send(()).unwrap();
    ready_rx.await.unwrap();
    assert_eq!(client().get(format!("{base}/readyz")).send().await.unwrap().status(), 200);
    assert_eq!(client().get(format!("{base}/api/files")).send().await.unwrap().status(), 200);
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    // The store was closed: it opens again.
    Store::open(dir.path(), test_config(dir.path()).store_options()).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let failed = depot::server::serve_opening(
        listener,
        depot::config::Config::default().limits,
        depot::store::objects::ObjectsKind::Fs,
        async { Err::<AppState, _>("the store is damaged".to_string()) },
        || panic!("never ready"),
        std::future::pending(),
    )
    .await;
    assert!(matches!(failed, Err(depot::server::StartError::Open(ref m)) if m == "the store is damaged"));
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the port is still open");
}

/// The allowed types and the rate-limit values come from the environment
/// like every other key.
#[tokio::test]
async fn environment_sets_types_and_rate_limits() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("DEPOT_ALLOWED_EXTENSIONS", "txt, md"),
        ("DEPOT_RATE_LIMIT", "true"),
        ("DEPOT_RATE_LIMIT_API_PER_SECOND", "1"),
        ("DEPOT_RATE_LIMIT_API_BURST", "3"),
        ("DEPOT_CORS_ORIGINS", "https://app.example"),
        ("DEPOT_CORS_MAX_AGE", "2m"),
        // `open`: CORS for any configured origin (`local` allows loopback
        // origins only), and the variable itself is proven.
        ("DEPOT_AUTH_MODE", "open"),
    ];
    let s = Served::start(&dir.path().join("data"), &["--listen", "127.0.0.1:0"], &env).await;
    let upload =
        |name: &str| client().post(s.url(&format!("/api/files/upload?filename={name}"))).body("plain words");
    assert_eq!(upload("notes.txt").send().await.unwrap().status(), 201);
    assert_eq!(upload("notes.csv").send().await.unwrap().status(), 415);
    let preflight = client()
        .request(reqwest::Method::OPTIONS, s.url("/api/files"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.headers()["access-control-allow-origin"], "https://app.example");
    assert_eq!(preflight.headers()["access-control-max-age"], "120");
    // A burst of three API calls, then 429 (the budget refills at 1/s).
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(client().get(s.url("/api/files")).send().await.unwrap().status().as_u16());
    }
    assert!(statuses.starts_with(&[200, 200, 200]) && statuses.contains(&429), "{statuses:?}");
    s.stop().await;
}

/// `--listen` takes a host name; a flag beats its environment variable (which
/// is then not even read); a bad address is a usage error.
#[tokio::test]
async fn listen_resolves_names_and_flags_beat_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("DEPOT_LISTEN", "not an address"), ("DEPOT_LOG_FORMAT", "yaml")];
    let s =
        Served::start(&dir.path().join("data"), &["--listen", "localhost:0", "--log-format", "text"], &env)
            .await;
    let host = s.base.trim_start_matches("http://").rsplit_once(':').unwrap().0.to_string();
    assert!(host == "127.0.0.1" || host == "[::1]", "{}", s.base);
    assert_eq!(client().get(s.url("/readyz")).send().await.unwrap().status(), 200);
    assert!(s.log().contains("depot listening on http://"), "{}", s.log());
    s.stop().await;

    // The environment alone: its value is used.
    let s = Served::start(&dir.path().join("data"), &[], &[("DEPOT_LISTEN", "localhost:0")]).await;
    assert_eq!(client().get(s.url("/healthz")).send().await.unwrap().status(), 200);
    s.stop().await;

    for bad in ["localhost", "no such host:80", "localhost:http"] {
        let out = depot()
            .args(["serve", "--listen", bad, "--data-dir"])
            .arg(dir.path().join("data"))
            .env_remove("DEPOT_LISTEN")
            .output()
            .await
            .unwrap();
        assert_eq!(code(&out), 2, "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains("host:port"), "{}", stderr(&out));
    }
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        depot()
            .args(["serve", "--listen", "no-such-host.invalid:0", "--data-dir"])
            .arg(dir.path().join("fresh"))
            .env_remove("DEPOT_LISTEN")
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot listen on no-such-host.invalid:0"), "{}", stderr(&out));
    assert!(!dir.path().join("fresh").exists());
}

/// Pack files and loose objects under `data`'s `objects/`.
fn object_files(data: &std::path::Path) -> (usize, usize) {
    let packs = std::fs::read_dir(data.join("objects/packs")).map_or(0, |r| r.count());
    (packs, loose_objects(data).len())
}

/// Uploads `body` as `name` through the regular upload; the new file's id.
async fn upload(s: &Served, name: &str, body: Vec<u8>) -> String {
    let r =
        client().post(s.url(&format!("/api/files/upload?filename={name}"))).body(body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    r.json::<FileInfo>().await.unwrap().id
}

/// The shipped defaults append new chunks to pack files (docs/PACKS.md);
/// `DEPOT_PACKS=false` writes a file per chunk again, and a server on the
/// defaults then serves files of both layouts.
#[tokio::test]
async fn new_chunks_go_to_pack_files_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let packed = depot::testdata::pseudo_random(3 << 20, 31);
    let s = Served::start(&data, &["--listen", "127.0.0.1:0"], &[]).await;
    let a = upload(&s, "packed.bin", packed.clone()).await;
    s.stop().await;
    let (packs, loose) = object_files(&data);
    assert!(packs >= 1 && loose == 0, "packs {packs}, loose objects {loose}");

    let one_each = depot::testdata::pseudo_random(3 << 20, 32);
    let s = Served::start(&data, &["--listen", "127.0.0.1:0"], &[("DEPOT_PACKS", "false")]).await;
    let b = upload(&s, "loose.bin", one_each.clone()).await;
    s.stop().await;
    let (packs_after, loose) = object_files(&data);
    assert_eq!(packs_after, packs, "no pack written with DEPOT_PACKS=false");
    assert!(loose >= 3, "a file per chunk: {loose}");

    let s = Served::start(&data, &["--listen", "127.0.0.1:0"], &[]).await;
    for (id, want) in [(a, packed), (b, one_each)] {
        let got = client().get(s.url(&format!("/api/files/{id}"))).send().await.unwrap();
        assert_eq!(got.status(), 200);
        assert!(got.bytes().await.unwrap() == want, "file {id}'s bytes");
    }
    s.stop().await;
}

/// Many upload batches at once: their buffers stay pooled for the next ones
/// (up to `limits.max_buffered`, shown by `depot_buffer_pool_bytes`), and
/// go back to the system within seconds once the uploads stop, down to the
/// idle pool's few batch buffers.
#[tokio::test]
async fn batch_buffers_stay_pooled_while_uploads_overlap_and_are_freed_after() {
    use depot::store::ChunkId;
    use depot::store::buffer::{POOLED_BYTES, POOLED_MAX};
    use futures_util::StreamExt;

    const AT_ONCE: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(&dir.path().join("data"), &["--listen", "127.0.0.1:0"], &[]).await;
    let pooled = || async {
        let m = client().get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
        common::metric(&m, "depot_buffer_pool_bytes") as usize
    };
    assert!(pooled().await <= POOLED_BYTES);
    // Each batch holds its buffer from the first byte of its body: each
    // sends half a chunk, waits until every batch has, then the rest.
    let halfway = std::sync::Arc::new(tokio::sync::Barrier::new(AT_ONCE));
    let batches = (0..AT_ONCE).map(|i| {
        let data = depot::testdata::pseudo_random(2 << 20, i as u64);
        let id = ChunkId::of(&data);
        let (first, rest) =
            (bytes::Bytes::from(data.clone()).slice(..1 << 20), bytes::Bytes::from(data).slice(1 << 20..));
        let halfway = halfway.clone();
        let body = futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(
            futures_util::stream::once(async move {
                halfway.wait().await;
                Ok(rest)
            }),
        );
        let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(body), 2 << 20);
        let form = reqwest::multipart::Form::new().part(id.to_string(), part);
        let url = s.url("/api/chunks");
        async move { client().post(url).multipart(form).send().await.unwrap().status() }
    });
    let statuses = futures_util::future::join_all(batches).await;
    assert!(statuses.iter().all(|s| s.is_success()), "{statuses:?}");
    // Read within the decay's first tick after the last buffer came back,
    // which frees nothing of a pool drained since the tick before.
    let busy = pooled().await;
    assert!(busy >= AT_ONCE * POOLED_MAX, "{busy} bytes pooled after {AT_ONCE} batches at once");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = pooled().await;
        if now <= POOLED_BYTES {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {now} bytes pooled 20 s after the uploads");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.stop().await;
}
