//! Per-request accounting, in one middleware around every route: response
//! counts by status class, body bytes both ways, the latency histogram by
//! route template, and one access log line (target `depot::access`, level
//! `info`) when the response body ends or the client goes away.
//!
//! The line carries the method, the path with secret query values redacted,
//! the status, body bytes in and out, the duration, the request id and the
//! peer address. It never carries header values or the values of query
//! parameters that look like credentials (see [`loggable_target`]).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::Response;
use http_body::Frame;

use super::Metrics;

/// The route label of requests no route matched (the JSON 404).
const UNMATCHED: &str = "unmatched";
/// The scrape endpoint, whose answers are not counted as response bytes.
const METRICS: &str = "/metrics";

/// A body that passes its frames on and tells a [`Tally`] about them.
struct Counted<T: Tally> {
    inner: Body,
    tally: T,
}

/// What a [`Counted`] body reports to, as its frames go by.
trait Tally: Send + Unpin + 'static {
    /// A frame went by carrying `n` data bytes (0 for trailers);
    /// `at_end`: the inner body says nothing follows.
    fn frame(&mut self, n: u64, at_end: bool);
    /// The body ended (`true`) or failed (`false`).
    fn ended(&mut self, _complete: bool) {}
    /// The body is dropped (`at_end`: the inner body said it was over).
    fn dropped(&mut self, _at_end: bool) {}
}

impl<T: Tally> HttpBody for Counted<T> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                let at_end = self.inner.is_end_stream();
                self.tally.frame(n, at_end);
            }
            Poll::Ready(None) => self.tally.ended(true),
            Poll::Ready(Some(Err(_))) => self.tally.ended(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<T: Tally> Drop for Counted<T> {
    fn drop(&mut self) {
        let at_end = self.inner.is_end_stream();
        self.tally.dropped(at_end);
    }
}

/// A request body's tally: its data bytes go into the server's total and
/// the request's own.
struct BytesIn {
    total: Arc<AtomicU64>,
    this: Arc<AtomicU64>,
}

impl Tally for BytesIn {
    fn frame(&mut self, n: u64, _at_end: bool) {
        self.total.fetch_add(n, Ordering::Relaxed);
        self.this.fetch_add(n, Ordering::Relaxed);
    }
}

/// What the access line says about a request, gathered before the handler
/// runs.
struct Line {
    method: Method,
    target: String,
    route: String,
    id: String,
    peer: Option<SocketAddr>,
    started: Instant,
    bytes_in: Arc<AtomicU64>,
    status: StatusCode,
}

/// A response body's tally: counts what it sends and, at its end (or when
/// it is dropped before: the client went away), writes the access line and
/// records the duration.
struct Accounted {
    metrics: Arc<Metrics>,
    sent: u64,
    /// Whether the bytes go into the server's total: not those of a
    /// `/metrics` answer, which would make every scrape count the last one.
    counted: bool,
    /// The Content-Length, when the response has one: a streamed body is
    /// complete once that much has gone out (the server stops polling it
    /// then, without seeing its end).
    expected: Option<u64>,
    /// Taken when the line is written.
    line: Option<Line>,
}

impl Accounted {
    fn complete(&self, at_end: bool) -> bool {
        at_end || self.expected == Some(self.sent)
    }

    fn finish(&mut self, complete: bool) {
        let Some(l) = self.line.take() else { return };
        let took = l.started.elapsed();
        self.metrics.observe(&l.route, &l.method, took);
        let peer = l.peer.map(|p| p.ip().to_string()).unwrap_or_default();
        let bytes_in = l.bytes_in.load(Ordering::Relaxed);
        let duration_ms = took.as_micros() as f64 / 1000.0;
        let status = l.status.as_u16();
        if complete {
            tracing::info!(target: "depot::access", method = %l.method, path = %l.target, status, bytes_in,
                bytes_out = self.sent, duration_ms, id = %l.id, peer = %peer);
        } else {
            tracing::info!(target: "depot::access", method = %l.method, path = %l.target, status, bytes_in,
                bytes_out = self.sent, duration_ms, id = %l.id, peer = %peer, aborted = true);
        }
    }
}

impl Tally for Accounted {
    fn frame(&mut self, n: u64, at_end: bool) {
        self.sent += n;
        if self.counted {
            self.metrics.bytes_out.fetch_add(n, Ordering::Relaxed);
        }
        if self.complete(at_end) {
            self.finish(true);
        }
    }

    fn ended(&mut self, complete: bool) {
        self.finish(complete);
    }

    fn dropped(&mut self, at_end: bool) {
        // A body that was empty from the start is never polled.
        let complete = self.complete(at_end);
        self.finish(complete);
    }
}

/// Middleware: counts, times and logs every request (see the module docs).
pub async fn track(State(m): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let bytes_in = Arc::new(AtomicU64::new(0));
    let line = Line {
        method: req.method().clone(),
        target: loggable_target(req.uri()),
        route: req.extensions().get::<MatchedPath>().map_or(UNMATCHED, |p| p.as_str()).to_string(),
        id: req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-").to_string(),
        peer: req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0),
        started: Instant::now(),
        bytes_in: bytes_in.clone(),
        status: StatusCode::OK,
    };
    let (total, this) = (m.bytes_in.clone(), bytes_in);
    let req = req.map(|b| Body::new(Counted { inner: b, tally: BytesIn { total, this } }));
    let resp = next.run(req).await;
    let class = (resp.status().as_u16() / 100) as usize;
    if let Some(c) = m.responses.get(class) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    let line = Line { status: resp.status(), ..line };
    let expected = resp
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .filter(|_| line.method != Method::HEAD);
    let counted = line.route != METRICS;
    let tally = Accounted { metrics: m, sent: 0, counted, expected, line: Some(line) };
    resp.map(|b| Body::new(Counted { inner: b, tally }))
}

/// Whether a query parameter's value may be a credential: signatures,
/// tokens, keys, passwords (`sig`, `X-Amz-Signature`, `access_token`, …).
fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(name.as_str(), "sig" | "key" | "apikey" | "api_key" | "auth" | "code")
        || ["signature", "token", "secret", "password", "passwd", "credential"]
            .iter()
            .any(|w| name.contains(w))
}

/// The request target as the access log shows it: the path, and the query
/// with the value of every parameter that may be a credential replaced by
/// `REDACTED` (names are compared after percent-decoding, so `%73ig` is
/// `sig`).
pub fn loggable_target(uri: &Uri) -> String {
    let path = uri.path();
    let Some(query) = uri.query() else { return path.to_string() };
    let params: Vec<String> = query
        .split('&')
        .map(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            if is_secret(&percent_decode(name)) { format!("{name}=REDACTED") } else { pair.to_string() }
        })
        .collect();
    format!("{path}?{}", params.join("&"))
}

/// `%XX` escapes and `+` decoded; anything malformed is kept as it is.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escaped = (b[i] == b'%').then(|| Some((hex(*b.get(i + 1)?)?, hex(*b.get(i + 2)?)?))).flatten();
        match (b[i], escaped) {
            (_, Some((h, l))) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (c, None) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(s: &str) -> String {
        loggable_target(&s.parse().unwrap())
    }

    #[test]
    fn credentials_in_the_query_are_redacted() {
        assert_eq!(target("/api/files"), "/api/files");
        assert_eq!(target("/api/files?limit=5&cursor=abc"), "/api/files?limit=5&cursor=abc");
        assert_eq!(
            target("/api/files/x?sig=s3cr3t&expires=9&token=t0k&Signature=abc&X-Amz-Signature=def"),
            "/api/files/x?sig=REDACTED&expires=9&token=REDACTED&Signature=REDACTED&X-Amz-Signature=REDACTED"
        );
        assert_eq!(
            target("/x?access_token=a&api_key=b&%73ig=c"),
            "/x?access_token=REDACTED&api_key=REDACTED&%73ig=REDACTED"
        );
        assert_eq!(target("/x?sig&filename=a.txt"), "/x?sig=REDACTED&filename=a.txt");
    }

    #[test]
    fn percent_decoding_keeps_what_is_malformed() {
        assert_eq!(percent_decode("a%41+b"), "aA b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
