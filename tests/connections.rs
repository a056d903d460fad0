//! Connections and request framing on the wire, below the router: raw TCP
//! against the real server. Idle connections give way to new ones, silent
//! ones are closed, and a request framed two ways is answered once and its
//! connection closed.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use common::cli::Served;
use common::http::{read_response, read_to_close};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn addr(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

/// Sends `req` as is on a new connection to the server at `base` and reads
/// until the server closes it (within 10 s): all it answered, as text.
async fn send_until_closed(base: &str, req: String) -> String {
    let mut c = TcpStream::connect(addr(base)).await.unwrap();
    c.write_all(req.as_bytes()).await.unwrap();
    let all = read_to_close(&mut c, Duration::from_secs(10)).await.expect("the connection is closed");
    String::from_utf8_lossy(&all).into_owned()
}

/// A request with both `Content-Length` and `Transfer-Encoding: chunked`
/// (what request smuggling behind a proxy plays on): the chunked body is
/// short, and the bytes after it, within the declared length, form a
/// second request. hyper frames the body by the chunked encoding, the
/// first request is answered once, the connection is closed after it, and
/// the second request is never read, whichever header comes first. Control:
/// with `Transfer-Encoding` alone, the same bytes are two requests on a
/// kept-alive connection, both answered.
#[tokio::test]
async fn a_request_framed_two_ways_is_answered_once_and_its_connection_closed() {
    let (_dir, s) = TestServer::start_temp().await;
    let host = addr(&s.base);
    let smuggled = |name: &str| {
        format!(
            "POST /api/files/upload?filename={name} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n\r\nevil!"
        )
    };
    for (i, cl_first) in [true, false].into_iter().enumerate() {
        let body = format!("5\r\nhello\r\n0\r\n\r\n{}", smuggled(&format!("smuggled-{i}.txt")));
        let (cl, te) = (format!("Content-Length: {}\r\n", body.len()), "Transfer-Encoding: chunked\r\n");
        let framing = if cl_first { format!("{cl}{te}") } else { format!("{te}{cl}") };
        let text = send_until_closed(
            &s.base,
            format!("POST /api/files/upload?filename=first-{i}.txt HTTP/1.1\r\nHost: {host}\r\n{framing}\r\n{body}"),
        )
        .await;
        assert!(text.starts_with("HTTP/1.1 201"), "{text}");
        assert!(text.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{text}");
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "one answer: {text}");
    }
    // Framing hyper cannot read (chunked not last, lengths that differ):
    // 400 and closed, nothing stored.
    for framing in ["Transfer-Encoding: chunked, gzip\r\n", "Content-Length: 5\r\nContent-Length: 6\r\n"] {
        let text = send_until_closed(
            &s.base,
            format!(
                "POST /api/files/upload?filename=bad.txt HTTP/1.1\r\nHost: {host}\r\n{framing}\r\nhello!"
            ),
        )
        .await;
        assert!(text.starts_with("HTTP/1.1 400"), "{framing}: {text}");
    }

    // Control: chunked alone, then a second request on the same connection.
    let mut c = TcpStream::connect(addr(&s.base)).await.unwrap();
    let req = format!(
        "POST /api/files/upload?filename=control.txt HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n0\r\n\r\n{}",
        smuggled("pipelined.txt")
    );
    c.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    for _ in 0..2 {
        let r = read_response(&mut c, &mut buf).await.expect("an answer");
        assert_eq!(r.status, 201, "{}", r.head);
    }

    let mut names: Vec<String> = s.list_files(&[]).await.files.into_iter().map(|f| f.name).collect();
    names.sort();
    assert_eq!(names, ["control.txt", "first-0.txt", "first-1.txt", "pipelined.txt"]);
    for f in s.list_files(&[]).await.files.iter().filter(|f| f.name.starts_with("first")) {
        assert_eq!(s.download(&f.id).await, b"hello");
    }
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
