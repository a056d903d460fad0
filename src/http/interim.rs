//! Informational (1xx) responses before the final one, on HTTP/1.1.
//!
//! hyper sends one informational response itself, `100 Continue`, and gives
//! a handler no way to send another (its server API has no hook for 1xx).
//! The resumable-upload draft's `104 (Upload Resumption Supported)` must
//! reach the client while it is still sending the body, so the listener
//! wraps every connection's socket in an [`InterimIo`], and each HTTP/1.1
//! request carries an [`Interim`] handle (a request extension; an extractor
//! too). [`Interim::send`] queues the head of a 1xx response; the wrapper
//! writes it out between hyper's own writes:
//!
//! - at once, on the next read of the socket, which a handler causes by
//!   reading the request body (an upload does so right after creating its
//!   resource); otherwise just before hyper's next bytes (`100 Continue` or
//!   the final response), so it always precedes the final response;
//! - never in the middle of hyper's output: hyper writes a response from its
//!   buffer and then flushes, and the queue is only written while everything
//!   hyper wrote has been flushed (a response hyper had not yet written out
//!   when the request's handler ran is only possible with pipelining; the
//!   1xx is then left out — informational responses are optional,
//!   RFC 9110 §15.2).
//!
//! HTTP/2 and HTTP/1.0 requests get no handle: HTTP/2 frames its own 1xx
//! (not offered by hyper's server either), and RFC 9110 §15.2 forbids
//! sending a 1xx to an HTTP/1.0 client.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a connection's socket and its requests' handles share.
#[derive(Default)]
struct Shared {
    /// Encoded 1xx heads waiting to be written, in order.
    queue: Mutex<Vec<u8>>,
    /// `queue` is not empty (read without the lock on every I/O call).
    queued: AtomicBool,
    /// hyper wrote bytes it has not yet flushed.
    dirty: AtomicBool,
}

/// A connection's socket with room for informational responses.
///
/// Reads and writes go to `T`; queued 1xx heads are written first when it is
/// safe (see the module docs).
pub struct InterimIo<T> {
    io: T,
    shared: Arc<Shared>,
}

impl<T> InterimIo<T> {
    /// Wraps a freshly accepted connection.
    pub fn new(io: T) -> Self {
        InterimIo { io, shared: Arc::default() }
    }

    /// The connection itself.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// The connection's handle; each request gets it through
    /// [`Interim::for_request`].
    pub fn handle(&self) -> Interim {
        Interim { shared: Some(self.shared.clone()) }
    }
}

impl<T: AsyncWrite + Unpin> InterimIo<T> {
    /// Writes what is queued; `Ready(Ok)` once the queue is empty.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.shared.queued.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        let mut queue = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        while !queue.is_empty() {
            match Pin::new(&mut self.io).poll_write(cx, &queue) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => drop(queue.drain(..n)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.shared.queued.store(false, Ordering::Release);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for InterimIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.shared.dirty.load(Ordering::Acquire) {
            // Not written yet: the next read or write tries again (a pending
            // write has registered this task for the socket's writability).
            if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for InterimIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.shared.dirty.load(Ordering::Acquire) {
            ready!(this.poll_drain(cx))?;
        }
        this.shared.dirty.store(true, Ordering::Release);
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.shared.dirty.load(Ordering::Acquire) {
            ready!(this.poll_drain(cx))?;
        }
        this.shared.dirty.store(true, Ordering::Release);
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        this.shared.dirty.store(false, Ordering::Release);
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A request's way to send informational responses before its final one.
///
/// As an extractor it never fails: a request without a handle (HTTP/2,
/// HTTP/1.0, or a server not started by [`crate::server`]) gets one whose
/// [`send`](Self::send) does nothing.
#[derive(Clone, Default)]
pub struct Interim {
    shared: Option<Arc<Shared>>,
}

impl Interim {
    /// The handle for a request of `version` read from this connection:
    /// `None` unless it is HTTP/1.1.
    pub fn for_request(&self, version: Version) -> Option<Interim> {
        (version == Version::HTTP_11).then(|| self.clone())
    }

    /// Queues `status` (100–199 except 101, which is an upgrade) with
    /// `headers`; returns whether it was queued. Not queued: a status outside
    /// that range, a request with no handle, or a connection whose earlier
    /// response hyper has not finished writing (see the module docs).
    pub fn send(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        if !status.is_informational() || status == StatusCode::SWITCHING_PROTOCOLS {
            return false;
        }
        let Some(shared) = &self.shared else { return false };
        if shared.dirty.load(Ordering::Acquire) {
            return false;
        }
        let mut head = format!("HTTP/1.1 {} {}\r\n", status.as_u16(), reason(status)).into_bytes();
        for (name, value) in headers {
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        let mut queue = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.extend_from_slice(&head);
        shared.queued.store(true, Ordering::Release);
        true
    }
}

/// The reason phrase: RFC 9110's, or the draft's for 104.
fn reason(status: StatusCode) -> &'static str {
    match status.as_u16() {
        104 => "Upload Resumption Supported",
        _ => status.canonical_reason().unwrap_or("Informational"),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Interim {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Interim>().cloned().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("location", "/api/tus/abc".parse().unwrap());
        h
    }

    #[tokio::test]
    async fn a_queued_head_goes_out_on_the_next_read_before_later_writes() {
        let (server, mut client) = tokio::io::duplex(4096);
        let mut io = InterimIo::new(server);
        let handle = io.handle().for_request(Version::HTTP_11).unwrap();
        assert!(handle.send(StatusCode::from_u16(104).unwrap(), &headers()));
        client.write_all(b"body").await.unwrap();
        let mut got = [0u8; 4];
        io.read_exact(&mut got).await.unwrap();
        io.write_all(b"HTTP/1.1 201 Created\r\n\r\n").await.unwrap();
        io.flush().await.unwrap();
        drop(io);
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        assert_eq!(
            out,
            "HTTP/1.1 104 Upload Resumption Supported\r\nlocation: /api/tus/abc\r\n\r\nHTTP/1.1 201 Created\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn never_inside_unflushed_output_and_only_for_informational_statuses() {
        let (server, mut client) = tokio::io::duplex(4096);
        let mut io = InterimIo::new(server);
        let handle = io.handle().for_request(Version::HTTP_11).unwrap();
        io.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        // Written but not flushed: an earlier response in progress.
        assert!(!handle.send(StatusCode::from_u16(104).unwrap(), &headers()));
        io.flush().await.unwrap();
        assert!(!handle.send(StatusCode::OK, &headers()));
        assert!(!handle.send(StatusCode::SWITCHING_PROTOCOLS, &headers()));
        assert!(handle.send(StatusCode::from_u16(103).unwrap(), &HeaderMap::new()));
        io.write_all(b"\r\n").await.unwrap();
        drop(io);
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "HTTP/1.1 200 OK\r\nHTTP/1.1 103 Early Hints\r\n\r\n\r\n");
        assert!(InterimIo::new(()).handle().for_request(Version::HTTP_2).is_none());
        assert!(InterimIo::new(()).handle().for_request(Version::HTTP_10).is_none());
        assert!(!Interim::default().send(StatusCode::from_u16(104).unwrap(), &headers()));
    }
}
