//! Server counters and per-route latency histograms, rendered in the
//! Prometheus text format at `/metrics`. Bytes are counted where they cross
//! the HTTP boundary (request bodies as handlers consume them, response
//! bodies as they are sent), by [`super::access`], which also times each
//! request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::{Activity, Stats};

/// Upper bounds of the latency buckets, in seconds: from a cached chunk
/// answer (about a millisecond) to a large upload or download (minutes).
pub const LATENCY_BUCKETS: [f64; 16] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// One route's request durations.
#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Requests per bucket (not cumulative); the last counts those above
    /// every bound.
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        let i = LATENCY_BUCKETS.iter().position(|le| seconds <= *le).unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i] += 1;
        self.sum += seconds;
    }
}

/// Durations by route template (`/api/files/{id}`), then method.
type Latency = BTreeMap<String, BTreeMap<&'static str, Histogram>>;

#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests answered, by status class (index 1..=5).
    pub responses: [AtomicU64; 6],
    pub bytes_in: Arc<AtomicU64>,
    pub bytes_out: Arc<AtomicU64>,
    /// Uploads whose body is streaming in right now.
    pub uploads_active: AtomicI64,
    latency: Mutex<Latency>,
}

/// A method as a label: the standard ones by name, anything else `other`,
/// so that made-up methods cannot grow the series without bound.
fn method_label(m: &axum::http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    /// Records how long one request took, from its arrival to the end of
    /// its response body. `route` is the matched path template (the raw path
    /// would give every file its own series).
    pub fn observe(&self, route: &str, method: &axum::http::Method, took: Duration) {
        let mut all = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        // Allocates the route's name only the first time it is seen.
        if !all.contains_key(route) {
            all.insert(route.to_string(), BTreeMap::new());
        }
        if let Some(by_method) = all.get_mut(route) {
            by_method.entry(method_label(method)).or_default().observe(took.as_secs_f64());
        }
    }

    /// The latency histograms in the exposition format.
    fn render_latency(&self, out: &mut String) {
        const NAME: &str = "depot_http_request_duration_seconds";
        let all = self.latency.lock().unwrap_or_else(|p| p.into_inner()).clone();
        out.push_str(&format!(
            "# HELP {NAME} Time from a request's arrival to the end of its response body, by route template and method.\n# TYPE {NAME} histogram\n"
        ));
        for (route, by_method) in &all {
            for (method, h) in by_method {
                let labels = format!("route=\"{}\",method=\"{method}\"", label(route));
                let mut cumulative = 0;
                for (le, n) in LATENCY_BUCKETS.iter().zip(h.buckets) {
                    cumulative += n;
                    out.push_str(&format!("{NAME}_bucket{{{labels},le=\"{le}\"}} {cumulative}\n"));
                }
                let count: u64 = h.buckets.iter().sum();
                out.push_str(&format!("{NAME}_bucket{{{labels},le=\"+Inf\"}} {count}\n"));
                out.push_str(&format!("{NAME}_sum{{{labels}}} {}\n", h.sum));
                out.push_str(&format!("{NAME}_count{{{labels}}} {count}\n"));
            }
        }
    }

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
        let pooled = crate::store::buffer::pooled_bytes();
        let samples: [(&str, &str, &str, &dyn std::fmt::Display); 14] = [
            ("depot_http_request_bytes_total", "counter", "Request body bytes received.", &bytes_in),
            (
                "depot_http_response_bytes_total",
                "counter",
                "Response body bytes sent (except the answers to /metrics).",
                &bytes_out,
            ),
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
            (
                "depot_buffer_pool_bytes",
                "gauge",
                "Capacity of the idle chunk buffers kept for reuse, in bytes: up to limits.max_buffered while many requests are in flight, about 16 MiB at most within seconds of their end.",
                &pooled,
            ),
        ];
        for (name, kind, help, value) in samples {
            put(name, kind, help, &[(String::new(), value.to_string())]);
        }
        let reads = [
            ("{path=\"cached\"}".to_string(), activity.chunk_reads_cached.to_string()),
            ("{path=\"blocking\"}".to_string(), activity.chunk_reads_blocking.to_string()),
            ("{path=\"decoded\"}".to_string(), activity.chunk_reads_decoded.to_string()),
        ];
        put(
            "depot_chunk_reads_total",
            "counter",
            "Chunk reads for downloads, by path: cached (read from the page cache on an async thread; a compressed chunk then decoded on a blocking-pool thread), blocking (a blocking-pool thread) or decoded (a part of a compressed chunk an earlier range decoded, from memory).",
            &reads,
        );
        let tokens = [
            ("{row=\"memory\"}".to_string(), activity.token_checks_cached.to_string()),
            ("{row=\"metadata\"}".to_string(), activity.token_checks_read.to_string()),
        ];
        put(
            "depot_token_checks_total",
            "counter",
            "Token and signed-link checks by where the token's row came from: memory (read within the last 10 s by this node) or metadata.",
            &tokens,
        );
        self.render_latency(&mut out);
        out
    }
}
