//! The store and the real `depot` binary with their metadata in a real
//! PostgreSQL (`storage.meta = "postgres://…"`): uploads through the
//! regular API and tus, a restart, identical bytes back, then the offline
//! commands over the same database. Skipped without PostgreSQL, unless
//! `DEPOT_SCALEOUT=1`.
#![cfg(feature = "postgres")]

mod common;

use common::cli::{Served, ok};
use common::postgres;
use depot::store::MetaBackend;
use depot::testdata::pseudo_random;
use depot::wire::StatsInfo;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_keeps_its_metadata_in_postgres_across_a_restart() {
    let Some(url) = postgres::database("serve") else { return };
    // The test server trusts loopback clients: a password is accepted and
    // ignored, so it can be checked for in the log.
    let url = url.replacen("depot@", "depot:hunter2@", 1);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [("DEPOT_META", url.as_str())];
    let s = Served::start(&data, &[], &env).await;
    let a = pseudo_random(3 << 20, 1);
    let mut b = pseudo_random(2 << 20, 2);
    b.extend_from_slice(&a[..1 << 20]); // shares chunks with `a`
    let id_a = s.upload("a.bin", &a).await;
    let id_b = s.tus_upload("b.bin", &b).await;
    assert_eq!(s.download(&id_a).await, a);
    let listening = s.wait_for_line(" meta=").await;
    assert!(listening.contains("meta=postgres://depot:***@127.0.0.1"), "{listening}");
    assert!(!s.log().contains("hunter2"));
    assert_eq!(s.stop().await, Some(0));
    assert!(!data.join("meta").exists(), "no RocksDB beside PostgreSQL");

    let s = Served::start(&data, &[], &env).await;
    assert_eq!(s.download(&id_a).await, a);
    assert_eq!(s.download(&id_b).await, b);
    // depot backs up a store of one node; PostgreSQL has its own tools.
    let r = common::client().post(s.url("/api/admin/backups")).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CONFLICT);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("PostgreSQL"), "{body}");
    assert!(!data.join("backups").exists(), "a refused backup made a directory");
    // A second server on the same database is refused while this one runs.
    let other = tempfile::tempdir().unwrap();
    let out = common::cli::depot("http://127.0.0.1:1")
        .args(["stats", "--json", "--data-dir"])
        .arg(other.path())
        .env("DEPOT_META", &url)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another process") && !err.contains("hunter2"), "{err}");
    assert_eq!(s.stop().await, Some(0));

    // The offline commands open the same store through the URL.
    let data_arg = data.display().to_string();
    let stats = common::cli::depot("http://127.0.0.1:1")
        .args(["stats", "--json", "--data-dir", &data_arg])
        .env("DEPOT_META", &url)
        .output()
        .await
        .unwrap();
    let stats: StatsInfo = serde_json::from_str(ok(&stats).trim()).unwrap();
    assert_eq!(stats.files, 2);
    assert_eq!(stats.logical_bytes, (a.len() + b.len()) as u64);
    assert!(stats.unique_bytes < stats.logical_bytes, "the shared MiB is stored once: {stats:?}");
    let verify = common::cli::depot("http://127.0.0.1:1")
        .args(["verify", "--data-dir", &data_arg])
        .env("DEPOT_META", &url)
        .output()
        .await
        .unwrap();
    // It exits non-zero on any damage or mismatched counter.
    let report = ok(&verify);
    assert!(report.contains("\"bad_files\": []"), "{report}");
}

#[test]
fn a_password_in_the_url_is_never_shown() {
    let url = "postgres://depot:hunter2@127.0.0.1:1/depot?connect_timeout=2";
    let m: MetaBackend = url.parse().unwrap();
    assert!(!format!("{m} {m:?}").contains("hunter2"));
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_depot"))
        .args(["stats", "--data-dir"])
        .arg(dir.path())
        .env_remove("DEPOT_CONFIG")
        .env("DEPOT_META", url)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!err.contains("hunter2") && err.contains("depot:***@"), "{err}");
}
