//! What a new user meets first, against the real server and the real
//! `depot` binary: the OpenAPI document's parameters travel where the
//! routes say, finding files by name, limits checked before an upload
//! sends anything, refused uploads that leave only leased chunks, `get`,
//! `stat` and `rm` by a file's name, `get` that never overwrites silently, distinct exit codes, Ctrl-C, retries
//! that say so, GC and stats that explain themselves, set-up mistakes
//! named plainly, and a file posted where a commit goes pointed to the
//! upload route.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use common::cli::{code, depot, ok, run, run_json, stderr};
use common::{TestServer, test_config, written};
use depot::config::{ByteSize, Dur};
use depot::testdata::pseudo_random;
use depot::wire::{ChunkingInfo, FileInfo, FileList};
use tokio::process::Command;
use tower::ServiceExt;

/// An ELF header: what `infer` calls an executable (it wants over 52 bytes).
fn elf() -> Vec<u8> {
    let mut v = b"\x7fELF\x02\x01\x01\0".to_vec();
    v.resize(256, 0);
    v
}

/// Every parameter of the committed document travels where the route says:
/// a path parameter is a `{placeholder}` of its path and every placeholder
/// is one; nothing else claims `in: path`; query and header parameters are
/// not placeholders. And each documented operation is a real route.
#[tokio::test]
async fn openapi_parameters_travel_where_the_routes_say() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/openapi.json");
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = depot::http::AppState::new(
        depot::store::Store::open(dir.path(), test_config(dir.path()).store_options()).unwrap(),
        test_config(dir.path()),
    );
    let app = depot::server::router(state);
    let mut problems = Vec::new();
    let mut operations = 0;
    for (route, ops) in doc["paths"].as_object().unwrap() {
        let placeholders: Vec<&str> =
            route.split('/').filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}')).collect();
        for (method, op) in ops.as_object().unwrap() {
            operations += 1;
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let mut in_path = Vec::new();
            for p in &params {
                let (name, place) = (p["name"].as_str().unwrap(), p["in"].as_str().unwrap());
                match place {
                    "path" if !placeholders.contains(&name) => {
                        problems.push(format!("{method} {route}: `{name}` is `in: path` but not in the path"))
                    }
                    "path" => in_path.push(name),
                    "query" | "header" | "cookie" if placeholders.contains(&name) => problems.push(format!(
                        "{method} {route}: `{name}` is a placeholder but declared `in: {place}`"
                    )),
                    "query" | "header" => {}
                    other => problems.push(format!("{method} {route}: `{name}` has `in: {other}`")),
                }
                if place == "path" && p["required"] != true {
                    problems.push(format!("{method} {route}: path parameter `{name}` is not required"));
                }
            }
            for ph in &placeholders {
                if !in_path.contains(ph) {
                    problems.push(format!("{method} {route}: placeholder `{{{ph}}}` is not declared"));
                }
            }
            // The route exists for this method: the fallback's "no endpoint"
            // and 405 are the only answers that say otherwise.
            let concrete: String = route
                .split('/')
                .map(|seg| if seg.starts_with('{') { "00000000000000000000000000" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            let req = axum::http::Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&concrete)
                .body(Body::empty())
                .unwrap();
            let resp = app.clone().oneshot(req).await.unwrap();
            let status = resp.status();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
            if status == 405 || String::from_utf8_lossy(&body).contains("no endpoint at") {
                problems.push(format!("{method} {route}: documented but not routed ({status})"));
            }
        }
    }
    assert!(operations >= 20, "only {operations} operations in the document");
    assert!(problems.is_empty(), "the OpenAPI document disagrees with the routes:\n{}", problems.join("\n"));
}

/// Uploading under an existing name makes a second file; `?name=` finds
/// all of them, `?q=` finds names containing a string, both page, and
/// `depot ls NAME` / `depot ls -q TEXT` use them.
#[tokio::test(flavor = "multi_thread")]
async fn files_are_found_by_name() {
    let (_dir, s) = TestServer::start_temp().await;
    let a = s.upload_raw("Report.txt", b"first draft").await;
    let b = s.upload_raw("Report.txt", b"second draft").await;
    let c = s.upload_raw("notes.txt", b"unrelated").await;
    assert_ne!(a.id, b.id);
    let list = |q: &'static [(&'static str, &'static str)]| s.list_files(q);
    let ids = |l: &FileList| l.files.iter().map(|f| f.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&list(&[("name", "Report.txt")]).await), [b.id.clone(), a.id.clone()]);
    assert!(list(&[("name", "report.txt")]).await.files.is_empty(), "name= is exact");
    assert_eq!(ids(&list(&[("q", "REPORT")]).await), [b.id.clone(), a.id.clone()]);
    assert_eq!(ids(&list(&[("q", ".txt")]).await), [c.id.clone(), b.id.clone(), a.id.clone()]);
    assert_eq!(ids(&list(&[("q", "nothing")]).await), Vec::<String>::new());
    // Paging through the matches only.
    let first = list(&[("name", "Report.txt"), ("limit", "1")]).await;
    assert_eq!(ids(&first), std::slice::from_ref(&b.id));
    let cursor = first.next_cursor.clone().expect("a second page");
    let second = s.list_files(&[("name", "Report.txt"), ("limit", "1"), ("cursor", cursor.as_str())]).await;
    assert_eq!(ids(&second), std::slice::from_ref(&a.id));
    assert!(second.next_cursor.is_none());
    let r = common::client().get(s.url("/api/files")).query(&[("q", "x".repeat(256))]).send().await.unwrap();
    assert_eq!(r.status(), 400);

    let out = ok(&run(&s.base, &["ls", "Report.txt"]).await);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains(&a.id) && out.contains(&b.id) && !out.contains(&c.id), "{out}");
    let out = ok(&run(&s.base, &["ls", "-q", "note"]).await);
    assert!(out.contains(&c.id) && out.lines().count() == 1, "{out}");
    s.stop().await;
}

/// The limits travel with the chunking parameters; `depot put` checks a
/// file against them before it sends a byte, so a refused file costs no
/// upload and leaves no chunk behind.
#[tokio::test(flavor = "multi_thread")]
async fn put_refuses_what_the_server_would_refuse_before_sending() {
    let (dir, s) = TestServer::start_in_workdir(|cfg| {
        cfg.limits.max_file_size = ByteSize(100_000);
        cfg.types.allowed_extensions = vec!["png".into(), "bin".into(), "txt".into()];
    })
    .await;
    let info: ChunkingInfo = s.get_json("/api/chunking").await;
    assert_eq!(info.max_file_size, Some(100_000));
    assert_eq!(info.types.unwrap().allowed_extensions, ["png", "bin", "txt"]);

    let big = written(dir.path(), "big.bin", pseudo_random(150_000, 1));
    let fake = written(dir.path(), "cat.png", elf());
    let pdf = written(dir.path(), "paper.pdf", b"%PDF-1.4 a paper");
    let before = s.bytes_in();
    for (path, why) in [
        (&big, "accepts files of at most 97.7 KiB"),
        (&fake, "content is application/x-executable but the name says .png"),
        (&pdf, "extension .pdf is not allowed"),
    ] {
        let out = run(&s.base, &["put", path.to_str().unwrap()]).await;
        assert_eq!(code(&out), 5, "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(why) && err.contains("nothing was sent"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    // Standard input: the size is found out on the way, before the batch
    // that crosses it is sent.
    let mut child = depot(&s.base)
        .args(["put", "-", "--name", "stream.bin"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&pseudo_random(300_000, 2)).await.unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    let sent = s.bytes_in() - before;
    assert!(sent < 4096, "refused puts sent {sent} bytes");
    let st = s.stats().await;
    assert_eq!((st.files, st.unique_chunks), (0, 0));
    assert_eq!(st.dedup_ratio, None);
    s.stop().await;
}

/// A refused upload (here a raw body whose bytes contradict its name)
/// leaves only chunks under a lease: stats say so without a meaningless
/// ratio, `depot gc` says when they go, and GC takes them after the lease.
#[tokio::test(flavor = "multi_thread")]
async fn refused_uploads_leave_only_leased_chunks_that_gc_collects() {
    let (_dir, s) = TestServer::start_in_workdir(|cfg| {
        (cfg.gc.grace, cfg.gc.chunk_lease) = (Dur(Duration::ZERO), Dur(Duration::from_secs(2)));
    })
    .await;
    let mut body = elf();
    body.extend(pseudo_random(50_000, 3));
    let r =
        common::client().post(s.url("/api/files/upload?filename=cat.png")).body(body).send().await.unwrap();
    assert_eq!(r.status(), 415);
    let st = s.stats().await;
    assert_eq!(st.files, 0);
    assert!(st.unique_chunks > 0, "the refused body's chunks wait for GC");
    assert_eq!((st.dedup_ratio, st.space_ratio), (None, None), "no ratio of nothing");
    let out = ok(&run(&s.base, &["stats"]).await);
    assert!(out.contains("dedup ratio    n/a (no file content yet)"), "{out}");
    let waiting = s.state.store.gc_backlog().unwrap();
    assert_eq!(waiting.chunks, st.unique_chunks);
    assert!(waiting.first_due_ms.is_some());
    // Within the lease GC keeps them; after it, they go.
    assert_eq!(s.state.store.gc(false).unwrap().deleted_chunks, 0);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = s.state.store.gc(false).unwrap();
    assert_eq!(r.deleted_chunks, st.unique_chunks);
    let st = s.stats().await;
    assert_eq!((st.unique_chunks, st.unique_bytes, st.stored_bytes), (0, 0, 0));
    assert_eq!(s.state.store.gc_backlog().unwrap().chunks, 0);
    s.stop().await;
}

/// `depot gc` right after a delete frees nothing, and says why and when.
#[tokio::test(flavor = "multi_thread")]
async fn gc_explains_what_the_grace_period_holds() {
    // The upload's lease ends at once: the grace period is what holds.
    let (dir, s) = TestServer::start_in_workdir(|cfg| cfg.gc.chunk_lease = Dur(Duration::from_secs(1))).await;
    let f = s.upload_raw("gone.bin", &pseudo_random(200_000, 4)).await;
    ok(&run(&s.base, &["rm", &f.id]).await);
    s.stop().await;
    let data_dir = dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_depot"))
        .args(["gc", "--data-dir", data_dir.to_str().unwrap()])
        .env_remove("DEPOT_CONFIG")
        .env("DEPOT_GC_GRACE", "1h")
        .output()
        .await
        .unwrap();
    let report: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(report["deleted_chunks"], 0);
    assert!(report["waiting"]["chunks"].as_u64().unwrap() > 0, "{report}");
    let err = stderr(&out);
    assert!(err.contains("gc: freed 0 chunks"), "{err}");
    assert!(err.contains("kept until their grace period (gc.grace = 1h00m)"), "{err}");
    assert!(err.contains("the first may go at ") && err.contains("(in 59m"), "{err}");
}

/// `depot pack` folds a stopped server's loose objects into pack files and
/// says how many; `depot verify` then finds the store clean and a server
/// on it (packs on) serves the file's bytes.
#[tokio::test(flavor = "multi_thread")]
async fn pack_folds_a_stores_objects_into_packs() {
    let (dir, s) = TestServer::start_in_workdir(|c| c.storage.packs = false).await;
    let data = pseudo_random(3 << 20, 12);
    let f = s.upload_raw("big.bin", &data).await;
    let chunks = s.stats().await.unique_chunks;
    let mut cfg = depot::config::Config::clone(&s.state.config);
    s.stop().await;
    let data_dir = dir.path().join("data");
    let offline = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_depot"));
        c.args(args)
            .args(["--data-dir", data_dir.to_str().unwrap()])
            .env_remove("DEPOT_CONFIG")
            .env_remove("DEPOT_PACKS");
        c
    };
    let report: serde_json::Value =
        serde_json::from_str(&ok(&offline(&["pack"]).output().await.unwrap())).unwrap();
    assert_eq!(report["objects_packed"].as_u64(), Some(chunks), "{report}");
    assert_eq!(report["damaged"], 0, "{report}");
    assert!(std::fs::read_dir(data_dir.join("objects/packs")).unwrap().count() >= 1);
    let again: serde_json::Value =
        serde_json::from_str(&ok(&offline(&["pack"]).output().await.unwrap())).unwrap();
    assert_eq!(again["objects_packed"], 0, "{again}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&offline(&["verify"]).output().await.unwrap())).unwrap();
    assert_eq!(v["corrupt_objects"], serde_json::json!([]), "{v}");

    cfg.storage.packs = true;
    let s = TestServer::start(cfg).await;
    let got = s.get(&format!("/api/files/{}", f.id)).await.bytes().await.unwrap();
    assert!(got == data, "the file's bytes from the packs");
    s.stop().await;
}

/// `depot get` never replaces an existing file without `--force`; its own
/// `.part` file is resumed.
#[tokio::test(flavor = "multi_thread")]
async fn get_refuses_to_overwrite_unless_forced() {
    let (dir, s) = TestServer::start_in_workdir(|_| {}).await;
    let data = pseudo_random(8 << 20, 5);
    let f = s.upload_raw("photo.bin", &data).await;
    let out_path = written(dir.path(), "photo.bin", b"my own photo");
    let o = run(&s.base, &["get", &f.id, "-o", out_path.to_str().unwrap()]).await;
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(stderr(&o).contains("exists; use --force"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out_path).unwrap(), b"my own photo");
    // The default output (the stored name in the current directory) too.
    let o = depot(&s.base).current_dir(dir.path()).args(["get", &f.id]).output().await.unwrap();
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert_eq!(std::fs::read(&out_path).unwrap(), b"my own photo");
    ok(&run(&s.base, &["get", "--force", &f.id, "-o", out_path.to_str().unwrap()]).await);
    assert!(std::fs::read(&out_path).unwrap() == data);
    // A partial download is not an existing file: it is resumed.
    let other = dir.path().join("other.bin");
    std::fs::write(dir.path().join("other.bin.part"), &data[..6 << 20]).unwrap();
    let report: serde_json::Value =
        run_json(&s.base, &["get", "--json", &f.id, "-o", other.to_str().unwrap()]).await;
    assert!(report["resumed_from"].as_u64().unwrap() > 0, "{report}");
    assert!(std::fs::read(&other).unwrap() == data);
    s.stop().await;
}

/// `get`, `stat` and `rm` take a file's name where one file has it, as a
/// new user types it after `depot ls`; a name several files share is
/// refused (usage, 2) with their ids, and one no file has is 404 (5).
#[tokio::test(flavor = "multi_thread")]
async fn get_stat_and_rm_take_a_name_that_one_file_has() {
    let (dir, s) = TestServer::start_in_workdir(|_| {}).await;
    let data = pseudo_random(3 << 20, 9);
    let only = s.upload_raw("only.bin", &data).await;
    let older = s.upload_raw("twice.bin", b"first").await;
    let newer = s.upload_raw("twice.bin", b"second").await;

    let out = dir.path().join("out.bin");
    ok(&run(&s.base, &["get", "only.bin", "-o", out.to_str().unwrap()]).await);
    assert!(std::fs::read(&out).unwrap() == data);
    let f: FileInfo = run_json(&s.base, &["stat", "only.bin", "--json"]).await;
    assert_eq!(f.id, only.id);

    for args in [&["get", "twice.bin", "-o", "x"][..], &["stat", "twice.bin"], &["rm", "twice.bin"]] {
        let o = depot(&s.base).current_dir(dir.path()).args(args).output().await.unwrap();
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("more than one file is named `twice.bin`"), "{err}");
        let (at_newer, at_older) = (err.find(&newer.id).unwrap(), err.find(&older.id).unwrap());
        assert!(at_newer < at_older, "newest first: {err}");
    }
    assert!(!dir.path().join("x").exists() && !dir.path().join("x.part").exists());
    let o = run(&s.base, &["rm", "nothing.bin"]).await;
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stderr(&o).contains("no file has the id or the name `nothing.bin`"), "{}", stderr(&o));

    ok(&run(&s.base, &["rm", "only.bin"]).await);
    let list: FileList =
        common::client().get(s.url("/api/files")).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = list.files.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, [newer.id.as_str(), older.id.as_str()]);
    // An id is an id, also in lower case.
    ok(&run(&s.base, &["rm", &older.id.to_lowercase()]).await);
    s.stop().await;
}

/// Each kind of failure has its own status, and a dead server fails at
/// once rather than after seconds of silent retries.
#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_are_distinct() {
    let (dir, s) = TestServer::start_in_workdir(|_| {}).await;
    let a = written(dir.path(), "a.txt", b"a");
    let o = run(&s.base, &["put", a.to_str().unwrap(), a.to_str().unwrap(), "--name", "x"]).await;
    assert_eq!(code(&o), 2, "usage: {}", stderr(&o));
    let o = run(&s.base, &["get"]).await;
    assert_eq!(code(&o), 2, "usage: {}", stderr(&o));
    let o = run("ftp://x", &["ls"]).await;
    assert_eq!(code(&o), 2, "usage: {}", stderr(&o));
    let o = run(&s.base, &["put", dir.path().join("missing").to_str().unwrap()]).await;
    assert_eq!(code(&o), 3, "local: {}", stderr(&o));
    let o = run(&s.base, &["rm", "01ARZ3NDEKTSV4RRFFQ69G5FAV"]).await;
    assert_eq!(code(&o), 5, "refused: {}", stderr(&o));
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let o = run(&format!("http://127.0.0.1:{port}"), &["ls"]).await;
    assert_eq!(code(&o), 4, "network: {}", stderr(&o));
    assert!(started.elapsed() < Duration::from_secs(2), "a dead server took {:?}", started.elapsed());
    let err = stderr(&o);
    assert!(err.starts_with("depot: cannot reach the server") && err.trim().lines().count() == 1, "{err}");
    s.stop().await;
}

/// A server that answers 503 twice: the client says it is retrying, then
/// succeeds; one that keeps failing ends with the server-error status.
#[tokio::test(flavor = "multi_thread")]
async fn retries_say_they_are_retrying() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let failures = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(2));
    let f = failures.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let f = f.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = sock.read(&mut buf).await;
                let fail = f.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                let (status, body) = if fail {
                    ("503 Service Unavailable", r#"{"code":503,"error":"unavailable","message":"busy"}"#)
                } else {
                    ("200 OK", r#"{"files":[]}"#)
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    let o = run(&base, &["ls"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.matches("retrying in").count(), 2, "{err}");
    assert!(err.contains("503") && err.contains("(1/5)") && err.contains("(2/5)"), "{err}");
    failures.store(100, Ordering::SeqCst);
    let o = run(&base, &["ls"]).await;
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    assert_eq!(stderr(&o).matches("retrying in").count(), 5);
}

/// Ctrl-C: one line saying how to resume, status 130; the same command
/// then resumes.
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_says_how_to_resume_and_exits_130() {
    let (dir, s) = TestServer::start_in_workdir(|_| {}).await;
    let src = dir.path().join("big.bin");
    let data = pseudo_random(96 << 20, 6);
    std::fs::write(&src, &data).unwrap();
    let id = ok(&run(&s.base, &["put", src.to_str().unwrap()]).await).trim().to_string();
    let out_path = dir.path().join("copy.bin");
    let part = dir.path().join("copy.bin.part");
    let child = depot(&s.base)
        .args(["get", &id, "-o", out_path.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0) < (8 << 20) {
        assert!(Instant::now() < deadline, "the get never got going");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let kill = std::process::Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().await.unwrap();
    if o.status.success() {
        // Finished before the signal landed: nothing to check.
        return;
    }
    assert_eq!(code(&o), 130, "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("interrupted; run the same command again to resume from"), "{err}");
    assert!(err.contains("copy.bin.part"), "{err}");
    let report: serde_json::Value =
        run_json(&s.base, &["get", "--json", &id, "-o", out_path.to_str().unwrap()]).await;
    assert!(report["resumed_from"].as_u64().unwrap() > 0, "{report}");
    assert!(blake3::hash(&std::fs::read(&out_path).unwrap()) == blake3::hash(&data));
    s.stop().await;
}

/// Set-up mistakes name the path and the cause; a failed start leaves no
/// data dir; an invalid environment value does not beat a valid flag.
#[tokio::test(flavor = "multi_thread")]
async fn setup_mistakes_are_named_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |data_dir: &Path, listen: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_depot"));
        c.args(["serve", "--listen", listen, "--data-dir", data_dir.to_str().unwrap()])
            .env_remove("DEPOT_CONFIG")
            .env_remove("DEPOT_LISTEN")
            .env_remove("DEPOT_DATA_DIR")
            .env("DEPOT_LOG", "warn")
            .kill_on_drop(true);
        c
    };
    let file = written(dir.path(), "a-file", b"x");
    let o = serve(&file, "127.0.0.1:0").output().await.unwrap();
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    assert!(err.contains(&format!("data dir {} exists and is not a directory", file.display())), "{err}");
    let under = file.join("data");
    let o = serve(&under, "127.0.0.1:0").output().await.unwrap();
    let err = stderr(&o);
    assert!(err.contains(&format!("data dir {}: not a directory", under.display())), "{err}");

    // A busy port: nothing is created.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fresh = dir.path().join("fresh").join("data");
    let o = serve(&fresh, &busy.local_addr().unwrap().to_string()).output().await.unwrap();
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("cannot listen on"), "{}", stderr(&o));
    assert!(stderr(&o).contains("another port with --listen"), "{}", stderr(&o));
    assert!(!dir.path().join("fresh").exists(), "a failed start left a data dir behind");

    // An invalid DEPOT_LISTEN does not stop a server given a valid --listen.
    let mut c = serve(&dir.path().join("ok"), "127.0.0.1:0");
    let mut child = c.env("DEPOT_LISTEN", "not an address").stderr(Stdio::piped()).spawn().unwrap();
    let mut err = child.stderr.take().unwrap();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.contains("listening on") {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout_at(deadline.into(), err.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "the server exited: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

/// `curl --data-binary` sends `application/x-www-form-urlencoded`: that says
/// nothing about the file, which is stored as `application/octet-stream`
/// when its bytes and name say nothing either.
#[tokio::test]
async fn raw_upload_of_unknown_bytes_is_octet_stream() {
    let (_dir, s) = TestServer::start_temp().await;
    let r = common::client()
        .post(s.url("/api/files/upload?filename=blob"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![0u8, 159, 146, 150, 255, 1, 2, 3])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let f: FileInfo = r.json().await.unwrap();
    assert_eq!(f.content_type, "application/octet-stream");
    s.stop().await;
}

/// A file posted to `POST /api/files` (which commits chunks already sent)
/// instead of `POST /api/files/upload` is refused 415 with a pointer to
/// the upload route, whatever its size: a body over the JSON limit is not
/// "too large for JSON". A body without a type is named as such. Nothing
/// is stored; a JSON body with parameters on its type still commits.
#[tokio::test]
async fn a_file_posted_where_a_commit_goes_is_pointed_to_the_upload_route() {
    let (_dir, s) = TestServer::start_temp_with(|c| c.limits.max_json_body = ByteSize(64 << 10)).await;
    let form = |len: usize| {
        let part = reqwest::multipart::Part::bytes(pseudo_random(len, 7)).file_name("photo.jpg");
        reqwest::multipart::Form::new().part("file", part)
    };
    for len in [10, 200 << 10] {
        let r = common::client().post(s.url("/api/files")).multipart(form(len)).send().await.unwrap();
        assert_eq!(r.status(), 415, "a {len}-byte form");
        let e: serde_json::Value = r.json().await.unwrap();
        let msg = e["message"].as_str().unwrap();
        assert!(msg.contains("this one has `multipart/form-data; boundary="), "{msg}");
        assert!(msg.contains("POST them to /api/files/upload"), "{msg}");
    }
    let r = common::client().post(s.url("/api/commits")).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 415);
    let e: serde_json::Value = r.json().await.unwrap();
    let msg = e["message"].as_str().unwrap();
    assert!(msg.starts_with("POST /api/commits takes a JSON body"), "{msg}");
    assert!(msg.contains("this one has no `Content-Type`") && !msg.contains("/api/files/upload"), "{msg}");

    let list: FileList =
        common::client().get(s.url("/api/files")).send().await.unwrap().json().await.unwrap();
    assert!(list.files.is_empty(), "a refused body stored a file");
    let r = common::client()
        .post(s.url("/api/files"))
        .header("content-type", "Application/JSON; charset=utf-8")
        .body(r#"{"name":"empty","size":0,"chunks":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    s.stop().await;
}
