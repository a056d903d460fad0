//! Connections on the wire, below the router: raw TCP against the real
//! server. Idle connections give way to new ones, silent ones are closed.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use common::cli::Served;
use common::http::read_to_close;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn addr(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

/// A connection that sends nothing at all is closed after the header
/// timeout, as one that sends half a header is (hyper's own timeout only
/// starts once the first bytes came), while others are served.
#[tokio::test]
async fn silent_connections_are_closed_after_the_header_timeout() {
    let (_dir, s) = TestServer::start_temp_with(|c| {
        c.limits.header_timeout = depot::config::Dur(Duration::from_secs(1));
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(TcpStream::connect(addr(&s.base)).await.unwrap());
    }
    assert_eq!(s.get("/healthz").await.status(), 200);
    let started = Instant::now();
    for c in &mut silent {
        let got = read_to_close(c, Duration::from_secs(5)).await;
        assert_eq!(got.as_deref(), Some(&[][..]), "closed without an answer");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "closed after {took:?}");
    assert_eq!(s.get("/healthz").await.status(), 200);
}

/// The open-descriptor limit of `pid`, from /proc.
fn nofile_of(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// Under a 1,024-descriptor limit (768 connections: the rest is kept for
/// the store), 1,100 idle connections (silent, or half a header) do not
/// shut others out: each new connection takes the place of the oldest idle
/// one, so `/healthz` on a fresh connection is answered at once, long
/// before the header timeout (30 s) would have closed any of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_past_the_descriptor_limit_do_not_stop_healthz() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    // This process holds the 1,100 client ends.
    let mut own = getrlimit(Resource::Nofile);
    if own.current.is_some_and(|n| n < 4096) {
        own.current = Some(own.maximum.map_or(4096, |m| m.min(4096)));
        setrlimit(Resource::Nofile, own).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Served::start_with_nofile(
        1024,
        &dir.path().join("data"),
        &["--listen", "127.0.0.1:0"],
        &[("DEPOT_LOG", "warn")],
    )
    .await;
    let pid = server.child.id().unwrap();
    assert_eq!(nofile_of(pid), 1024);
    let mut idle = Vec::new();
    for i in 0..1100 {
        let mut c = TcpStream::connect(addr(&server.base)).await.unwrap();
        if i % 2 == 1 {
            c.write_all(b"GET /healthz HTTP/1.1\r\nHost: dep").await.unwrap();
        }
        idle.push(c);
    }
    let started = Instant::now();
    let r = reqwest::Client::new()
        .get(server.url("/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("/healthz is answered");
    let took = started.elapsed();
    assert_eq!(r.status(), 200);
    assert!(took < Duration::from_secs(2), "/healthz took {took:?}");
    // The oldest idle connections made room; the newest are still open.
    let mut oldest = idle.swap_remove(0);
    assert_eq!(read_to_close(&mut oldest, Duration::from_secs(2)).await.as_deref(), Some(&[][..]));
    let open = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    assert!(open < 1024, "{open} descriptors open");
    assert!(!server.log().contains("accept failed"), "{}", server.log());
    drop(idle);
    assert_eq!(server.stop().await, Some(0), "SIGTERM is a clean stop");
}
