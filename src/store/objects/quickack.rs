//! The HTTP client [`S3Objects`](super::S3Objects) uses for an endpoint
//! reached over plain `http://`: hyper's pooled HTTP/1.1 client whose TCP
//! connections acknowledge what they receive at once (`TCP_QUICKACK`).
//!
//! Why: Garage 2.5.0's S3 server does not set `TCP_NODELAY` on its sockets
//! (`garage_api_common`'s `generic_server`), and its responses leave in
//! two writes, head then body. On a keep-alive connection the body then
//! waits, under Nagle's algorithm, for the client's ACK of the head, which
//! Linux delays by up to 40 ms (delayed ACK, `tcp(7)`). Measured on
//! loopback: a 4 KiB GET took 2 ms as a connection's first request and
//! 44 ms as its second; a 64 KiB `Range` request to depot on Garage took
//! 48 ms at the median, 3 ms with ACKs sent at once. After every read that
//! returns data this client sets `TCP_QUICKACK`, which sends a delayed ACK
//! still pending at once. (The route attribute `quickack 1` does the same
//! for a whole route: docs/DEPLOY.md.) One `setsockopt` per read; on other
//! systems than Linux the reads are left as they are.
//!
//! Everything else is `hyper_util`'s legacy client, with the limits
//! `object_store` gives its own reqwest client: a connect timeout, a
//! deadline for the response head (`timeout`), and, in place of reqwest's
//! deadline for the whole exchange, the same span as the longest wait for
//! each piece of a response body; and reqwest's TCP defaults: keep-alive
//! probes after 15 s of silence and `TCP_USER_TIMEOUT` 30 s, so a request on
//! a pooled connection to a dead peer fails (and is retried) within the
//! retry window. Connections idle for 90 s are closed. A name that
//! resolves to several addresses is tried in the resolver's order (reqwest
//! shuffles them): give each node its own endpoint, or a balancer's.
//! Requests carry `User-Agent: depot/<version>`. Unlike reqwest's client
//! this one follows no `HTTP_PROXY` variable: S3 over plain HTTP is for a
//! private network. `https://` endpoints keep `object_store`'s reqwest
//! client (TLS; a TLS terminator in front of Garage sets its own socket
//! options).
//!
//! Errors are sorted into `object_store`'s kinds as it sorts reqwest's, so
//! its retries behave the same: not connected → `Connect`, the connection
//! closed or cut mid-message → `Request`/`Interrupted`, a deadline →
//! `Timeout`.

use std::error::Error as StdError;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector as StoreConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody,
    HttpResponse, HttpResponseBody, HttpService,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tower::Service;

/// How long a pooled connection may sit idle (reqwest's default).
const POOL_IDLE: Duration = Duration::from_secs(90);
/// TCP keep-alive: first probe after this much silence, then one per this
/// much, three in all (reqwest's defaults).
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Longest time sent data may stay unacknowledged before the connection
/// fails (`TCP_USER_TIMEOUT`, reqwest's default).
const USER_TIMEOUT: Duration = Duration::from_secs(30);

/// Makes the client (see the module): `connect_timeout` for a TCP connect,
/// `timeout` for a response head and for each wait on its body.
#[derive(Debug, Clone, Copy)]
pub struct QuickAckConnector {
    /// Longest TCP connect.
    pub connect_timeout: Duration,
    /// Longest wait for a response head, and for each piece of its body.
    pub timeout: Duration,
}

impl StoreConnector for QuickAckConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(self.connect_timeout));
        // As reqwest's defaults: a dead peer behind a pooled connection is
        // noticed in tens of seconds (and the request retried), not at the
        // head deadline.
        tcp.set_keepalive(Some(KEEPALIVE));
        tcp.set_keepalive_interval(Some(KEEPALIVE));
        tcp.set_keepalive_retries(Some(3));
        #[cfg(target_os = "linux")]
        tcp.set_tcp_user_timeout(Some(USER_TIMEOUT));
        let connect = tower::service_fn(move |uri| {
            let mut tcp = tcp.clone();
            Box::pin(async move {
                let io: TokioIo<TcpStream> = tcp.call(uri).await?;
                Ok::<_, Box<dyn StdError + Send + Sync>>(TokioIo::new(QuickAckStream(io.into_inner())))
            })
        });
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(connect);
        Ok(HttpClient::new(QuickAckClient { client, timeout: self.timeout }))
    }
}

struct QuickAckClient<C> {
    client: Client<C, HttpRequestBody>,
    timeout: Duration,
}

impl<C> std::fmt::Debug for QuickAckClient<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuickAckClient").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl<C> HttpService for QuickAckClient<C>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    async fn call(&self, mut req: HttpRequest) -> Result<HttpResponse, HttpError> {
        req.headers_mut()
            .entry(hyper::header::USER_AGENT)
            .or_insert(hyper::header::HeaderValue::from_static(concat!("depot/", env!("CARGO_PKG_VERSION"))));
        let res = match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Ok(Ok(res)) => res,
            Ok(Err(e)) => {
                let kind = if e.is_connect() { HttpErrorKind::Connect } else { kind_of(&e) };
                return Err(HttpError::new(kind, e));
            }
            Err(_) => return Err(timed_out("no response head")),
        };
        let (parts, body) = res.into_parts();
        let body = tower_http::timeout::TimeoutBody::new(self.timeout, body).map_err(body_error);
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
    }
}

/// A response body's error, its cause kept in the chain.
fn body_error(e: Box<dyn StdError + Send + Sync>) -> HttpError {
    if e.is::<tower_http::timeout::TimeoutError>() {
        return timed_out("no response body data within the deadline");
    }
    let kind = kind_of(e.as_ref());
    match e.downcast::<hyper::Error>() {
        Ok(h) => HttpError::new(kind, *h),
        Err(e) => HttpError::new(kind, io::Error::other(e)),
    }
}

fn timed_out(what: &str) -> HttpError {
    HttpError::new(HttpErrorKind::Timeout, io::Error::new(io::ErrorKind::TimedOut, what.to_string()))
}

/// The kind of a request or body error, from its source chain (as
/// `object_store` sorts reqwest's).
fn kind_of(e: &(dyn StdError + 'static)) -> HttpErrorKind {
    let mut source = Some(e);
    while let Some(e) = source {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return HttpErrorKind::Timeout;
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            // Canceled: the request was never written.
            if h.is_closed() || h.is_incomplete_message() || h.is_body_write_aborted() || h.is_canceled() {
                return HttpErrorKind::Request;
            }
            if h.is_timeout() {
                return HttpErrorKind::Timeout;
            }
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::TimedOut => return HttpErrorKind::Timeout,
                io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof => return HttpErrorKind::Interrupted,
                _ => {}
            }
        }
        source = e.source();
    }
    HttpErrorKind::Unknown
}

/// A TCP stream that sends a pending delayed ACK after each read that
/// returned data.
struct QuickAckStream(TcpStream);

impl AsyncRead for QuickAckStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            // Best effort: a socket that refuses it only keeps delayed ACKs.
            #[cfg(target_os = "linux")]
            let _ = rustix::net::sockopt::set_tcp_quickack(&self.0, true);
        }
        r
    }
}

impl AsyncWrite for QuickAckStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl Connection for QuickAckStream {
    fn connected(&self) -> Connected {
        self.0.connected()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::time::Instant;

    use super::*;

    /// A server that answers like Garage's: Nagle left on, the head and
    /// the body written separately, keep-alive.
    fn nagle_server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                std::thread::spawn(move || {
                    let mut out = conn.try_clone().unwrap();
                    let mut lines = BufReader::new(conn);
                    // A request must say it is depot's (`User-Agent:
                    // depot/…`), or it gets a 400.
                    let mut agent = false;
                    loop {
                        let mut line = String::new();
                        match lines.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line.to_ascii_lowercase().starts_with("user-agent: depot/") => {
                                agent = true
                            }
                            Ok(_) if line == "\r\n" => {
                                let status = if agent { "200 OK" } else { "400 No Agent" };
                                agent = false;
                                let head = format!("HTTP/1.1 {status}\r\ncontent-length: 5\r\n\r\n");
                                if out
                                    .write_all(head.as_bytes())
                                    .and_then(|()| out.write_all(b"hello"))
                                    .is_err()
                                {
                                    return;
                                }
                            }
                            Ok(_) => {}
                        }
                    }
                });
            }
        });
        format!("http://{addr}/x")
    }

    /// The median seconds of `n` GETs one after the other (after a first
    /// that opens the connection).
    async fn gets(n: usize, mut get: impl AsyncFnMut() -> Vec<u8>) -> f64 {
        assert_eq!(get().await, b"hello", "the first GET opens the connection");
        let mut secs = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            assert_eq!(get().await, b"hello");
            secs.push(t.elapsed().as_secs_f64());
        }
        secs.sort_by(f64::total_cmp);
        secs[n / 2]
    }

    /// Against a server with Nagle's algorithm on, a plain client's GETs on
    /// a kept-alive connection each wait for its delayed ACK (≥ 40 ms on
    /// Linux); this client's do not. Both are timed in the same run: the
    /// plain client shows that the server stalls, this one that it does not
    /// (and that it says it is depot's: the server answers 400 otherwise).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn responses_in_two_writes_do_not_wait_for_delayed_acks() {
        const N: usize = 20;
        let url = nagle_server();
        let plain = reqwest::Client::builder().user_agent("depot/plain").no_proxy().build().unwrap();
        let plain_secs =
            gets(N, async || plain.get(&url).send().await.unwrap().bytes().await.unwrap().to_vec()).await;

        let connector =
            QuickAckConnector { connect_timeout: Duration::from_secs(5), timeout: Duration::from_secs(30) };
        let client = StoreConnector::connect(&connector, &ClientOptions::new()).unwrap();
        let quick_secs = gets(N, async || {
            let req = hyper::Request::get(&url).body(HttpRequestBody::empty()).unwrap();
            let res = client.execute(req).await.unwrap();
            assert_eq!(res.status(), 200);
            res.into_body().bytes().await.unwrap().to_vec()
        })
        .await;
        eprintln!("{N} GETs, median: plain client {plain_secs:.4} s, quick-ACK client {quick_secs:.4} s");
        if plain_secs < 0.02 {
            // Nothing to show where loopback ACKs are not delayed (some
            // sandboxed network stacks): say so rather than pass.
            eprintln!("skipped: this kernel did not delay the plain client's ACKs ({plain_secs:.4} s)");
            return;
        }
        assert!(quick_secs * 4.0 < plain_secs, "{quick_secs:.4} s against {plain_secs:.4} s");
    }
}
