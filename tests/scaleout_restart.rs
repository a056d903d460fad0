//! Three nodes of one shared store while PostgreSQL restarts: every node
//! answers 503 with `Retry-After` meanwhile (never a 500), takes its share
//! of the store's lock again when the database is back, and nothing
//! acknowledged before is lost; an upload begun on one node before the
//! restart finishes on another after it. Its own test binary: it stops the
//! PostgreSQL server the binary's tests share. Skipped without the engines,
//! unless `DEPOT_SCALEOUT=1`.
#![cfg(all(feature = "s3", feature = "postgres"))]

mod common;

use std::time::{Duration, Instant};

use common::cli::Served;
use common::garage::Garage;
use common::http::{client, tus, tus_patch};
use common::postgres;
use depot::testdata::pseudo_random;
use reqwest::{Method, StatusCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_ride_out_a_database_restart() {
    let Some(url) = postgres::database("nodes_restart") else { return };
    let Some(garage) = Garage::start() else { return };
    let mut env: Vec<(&str, String)> = garage.env();
    env.extend([
        ("DEPOT_META", url.clone()),
        ("DEPOT_SHARED", "true".into()),
        ("DEPOT_OBJECTS", "s3".into()),
        ("DEPOT_S3_ALLOW_HTTP", "true".into()),
        ("DEPOT_S3_PREFIX", "restart".into()),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for n in 0..3 {
        nodes.push(
            Served::start(&dir.path().join(format!("node{n}")), &["--listen", "127.0.0.1:0"], &env).await,
        );
    }
    let a = pseudo_random(3 << 20, 1);
    let id_a = nodes[0].upload("a.bin", &a).await;
    // A tus upload half done on node 0.
    let b = pseudo_random(2 << 20, 2);
    let path = common::http::tus_create(&nodes[0].url("/api/tus/"), b.len(), "b.bin").await;
    let r = tus_patch(&nodes[0].url(&path), 0).body(b[..1 << 20].to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    postgres::stop();
    let c = client();
    for (n, s) in nodes.iter().enumerate() {
        let r = c.get(s.url(&format!("/api/files/{id_a}"))).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "node {n} while the database is away");
        assert_eq!(r.headers().get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "unavailable", "node {n}: {body}");
    }

    postgres::start_again();
    let deadline = Instant::now() + Duration::from_secs(30);
    for (n, s) in nodes.iter().enumerate() {
        loop {
            let r = c.get(s.url("/api/files")).send().await.unwrap();
            if r.status() == StatusCode::OK {
                break;
            }
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "node {n} while reconnecting");
            assert!(Instant::now() < deadline, "node {n}: no 200 within 30 s:\n{}", s.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!s.log().contains("panicked"), "{}", s.log());
    }
    assert_eq!(nodes[2].download(&id_a).await, a);
    let r = tus(Method::HEAD, &nodes[1].url(&path)).send().await.unwrap();
    assert_eq!(r.headers()["upload-offset"], (1 << 20).to_string().as_str(), "the acknowledged offset");
    let r = tus_patch(&nodes[1].url(&path), 1 << 20).body(b[1 << 20..].to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let id_b = r.headers()["depot-file-id"].to_str().unwrap().to_string();
    assert_eq!(nodes[0].download(&id_b).await, b);
    for s in nodes {
        assert_eq!(s.stop().await, Some(0));
    }
}
