//! Server counters, rendered in the Prometheus text format at `/metrics`.
//! Bytes are counted where they cross the HTTP boundary: request bodies as
//! handlers consume them, response bodies as they are sent.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::Frame;

use crate::store::{Activity, Stats};

#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests answered, by status class (index 1..=5).
    pub responses: [AtomicU64; 6],
    pub bytes_in: Arc<AtomicU64>,
    pub bytes_out: Arc<AtomicU64>,
    /// Uploads whose body is streaming in right now.
    pub uploads_active: AtomicI64,
}

impl Metrics {
    /// The Prometheus exposition.
    pub fn render(&self, stats: &Stats, activity: &Activity, open_sessions: usize) -> String {
        let mut out = String::with_capacity(2048);
        let mut put = |name: &str, kind: &str, help: &str, lines: &[(String, String)]| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, v) in lines {
                out.push_str(&format!("{name}{labels} {v}\n"));
            }
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        let classes: Vec<(String, String)> =
            (1..=5).map(|c| (format!("{{class=\"{c}xx\"}}"), load(&self.responses[c]))).collect();
        put("depot_http_responses_total", "counter", "HTTP responses by status class.", &classes);
        let (bytes_in, bytes_out) = (load(&self.bytes_in), load(&self.bytes_out));
        let streaming = self.uploads_active.load(Ordering::Relaxed);
        let ratio = format!("{:.4}", stats.dedup_ratio);
        // The unlabelled samples, in exposition order.
        let samples: [(&str, &str, &str, &dyn std::fmt::Display); 13] = [
            ("depot_http_request_bytes_total", "counter", "Request body bytes received.", &bytes_in),
            ("depot_http_response_bytes_total", "counter", "Response body bytes sent.", &bytes_out),
            ("depot_uploads_streaming", "gauge", "Upload request bodies streaming in now.", &streaming),
            ("depot_upload_sessions_open", "gauge", "Open resumable upload sessions.", &open_sessions),
            (
                "depot_files_created_total",
                "counter",
                "Files created since start, by any protocol.",
                &activity.files_created,
            ),
            (
                "depot_chunks_stored_total",
                "counter",
                "Chunks received and stored for the first time.",
                &activity.chunks_new,
            ),
            (
                "depot_chunks_deduplicated_total",
                "counter",
                "Chunks received or asked about that the store already had.",
                &activity.chunks_known,
            ),
            ("depot_store_files", "gauge", "Files in the store.", &stats.files),
            ("depot_store_logical_bytes", "gauge", "Sum of file sizes.", &stats.logical_bytes),
            ("depot_store_unique_chunks", "gauge", "Chunks stored.", &stats.unique_chunks),
            ("depot_store_unique_bytes", "gauge", "Raw bytes of stored chunks.", &stats.unique_bytes),
            ("depot_store_stored_bytes", "gauge", "Bytes of chunk objects on disk.", &stats.stored_bytes),
            ("depot_store_dedup_ratio", "gauge", "Logical bytes over unique bytes.", &ratio),
        ];
        for (name, kind, help, value) in samples {
            put(name, kind, help, &[(String::new(), value.to_string())]);
        }
        out
    }
}

/// A body that counts the bytes of its data frames as they pass.
struct Counted {
    inner: Body,
    counter: Arc<AtomicU64>,
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(d) = frame.data_ref() {
                self.counter.fetch_add(d.len() as u64, Ordering::Relaxed);
            }
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

/// Middleware: counts responses by class and body bytes both ways.
pub async fn track(State(m): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let counter = m.bytes_in.clone();
    let req = req.map(|b| Body::new(Counted { inner: b, counter }));
    let resp = next.run(req).await;
    let class = (resp.status().as_u16() / 100) as usize;
    if let Some(c) = m.responses.get(class) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    let counter = m.bytes_out.clone();
    resp.map(|b| Body::new(Counted { inner: b, counter }))
}
