//! The real `depot serve` with `storage.objects = "s3"` against a real
//! Garage and local RocksDB metadata: every byte of a file goes through the
//! bucket, dedup is counted in bucket objects, and the offline commands
//! (`stats`, `verify`, `gc`) open the same bucket.
#![cfg(feature = "s3")]

mod common;

use common::cli::Served;
use common::garage::Garage;
use common::http::client;
use depot::testdata::pseudo_random;
use object_store::ObjectStore as _;
use reqwest::StatusCode;

const PREFIX: &str = "e2e";

/// The environment that points depot at `g`'s bucket under [`PREFIX`].
fn env(g: &Garage) -> Vec<(String, String)> {
    let mut e: Vec<(String, String)> = g.env().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    for (k, v) in [
        ("DEPOT_OBJECTS", "s3"),
        ("DEPOT_S3_ALLOW_HTTP", "true"),
        ("DEPOT_S3_PREFIX", PREFIX),
        // Chunks pinned for a second only and no grace, so that the GC
        // below may take them (the server itself runs no GC).
        ("DEPOT_CHUNK_LEASE", "1s"),
        ("DEPOT_GC_GRACE", "0s"),
    ] {
        e.push((k.into(), v.into()));
    }
    e
}

async fn serve(data: &std::path::Path, env: &[(String, String)]) -> Served {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Served::start(data, &["--listen", "127.0.0.1:0"], &env).await
}

/// An offline command (`stats`, `verify`, `gc`) on `data`: success and stdout.
fn offline(data: &std::path::Path, env: &[(String, String)], args: &[&str]) -> (bool, serde_json::Value) {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_depot"));
    c.args(args).arg("--data-dir").arg(data).env_remove("DEPOT_CONFIG");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("DEPOT_")) {
        c.env_remove(k);
    }
    let out = c.envs(env.iter().map(|(k, v)| (k, v))).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("depot {args:?} printed no JSON ({e}): {text}\n{}", String::from_utf8_lossy(&out.stderr))
    });
    (out.status.success(), v)
}

/// How many chunk objects the bucket holds (a ListObjectsV2 walk).
async fn chunk_objects(g: &Garage) -> usize {
    let raw = g.s3_builder().build().unwrap();
    let prefix = format!("{PREFIX}/chunks").as_str().into();
    let all: Vec<_> = futures_util::StreamExt::collect(raw.list(Some(&prefix))).await;
    all.into_iter().collect::<Result<Vec<_>, _>>().unwrap().len()
}

#[tokio::test]
async fn serve_upload_download_gc_verify_on_garage() {
    let Some(g) = Garage::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = env(&g);
    let a = pseudo_random(3 << 20, 1);
    let b = pseudo_random((2 << 20) + 12_345, 2);

    let s = serve(&data, &env).await;
    let id_a = s.upload("a.bin", &a).await;
    assert_eq!(s.download(&id_a).await, a);
    let r = s.get_with(&format!("/api/files/{id_a}"), &[("Range", "bytes=1000-299999")]).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&r.bytes().await.unwrap()[..], &a[1000..300_000]);
    let id_b = s.tus_upload("b.bin", &b).await;
    assert_eq!(s.download(&id_b).await, b);
    let objects = chunk_objects(&g).await;
    assert!(objects > 10, "5 MiB in 256 KiB chunks: {objects} objects");
    assert!(!data.join("objects").read_dir().is_ok_and(|mut d| d.next().is_some()), "no local objects");

    // The same bytes again, by either protocol: no new object.
    let again = s.upload("a-again.bin", &a).await;
    let again_tus = s.tus_upload("b-again.bin", &b).await;
    assert_eq!(chunk_objects(&g).await, objects, "a re-upload stores nothing new");
    assert_eq!(s.download(&again).await, a);
    assert_eq!(s.stop().await, Some(0));

    let (ok, stats) = offline(&data, &env, &["stats", "--json"]);
    assert!(ok);
    assert_eq!(stats["files"], 4, "{stats}");
    assert_eq!(stats["unique_chunks"].as_u64().unwrap() as usize, objects, "{stats}");
    let (clean, report) = offline(&data, &env, &["verify"]);
    assert!(clean, "{report}");

    // After a restart the bucket still serves; deleting everything and a GC
    // past the lease empties it.
    let s = serve(&data, &env).await;
    assert_eq!(s.download(&id_b).await, b);
    // depot backs up a store of one node; a bucket has its own tools.
    let r = client().post(s.url("/api/admin/backups")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(!data.join("backups").exists(), "a refused backup made a directory");
    for id in [&id_a, &id_b, &again, &again_tus] {
        let r = client().delete(s.url(&format!("/api/files/{id}"))).send().await.unwrap();
        assert!(r.status().is_success(), "delete {id}: {}", r.status());
    }
    assert_eq!(s.stop().await, Some(0));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (ok, gc) = offline(&data, &env, &["gc"]);
    assert!(ok, "{gc}");
    assert_eq!(gc["deleted_chunks"].as_u64().unwrap() as usize, objects, "{gc}");
    assert_eq!(chunk_objects(&g).await, 0, "GC deleted the objects from the bucket");
    let (clean, report) = offline(&data, &env, &["verify"]);
    assert!(clean, "{report}");
}

/// `storage.objects = "s3"` without credentials: the server does not
/// start, and says which variable is missing (no engine needed).
#[test]
fn serve_without_credentials_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_depot"));
    c.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(dir.path().join("data"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("DEPOT_") || k.starts_with("AWS_")) {
        c.env_remove(k);
    }
    let out = c
        .env("DEPOT_OBJECTS", "s3")
        .env("DEPOT_S3_ENDPOINT", "http://127.0.0.1:9")
        .env("DEPOT_S3_ALLOW_HTTP", "true")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
}
