//! Request builders the HTTP tests share: one client, the chunked upload's
//! parameters and forms, tus requests, and a request body the test feeds.

use std::fmt::Display;

use reqwest::multipart::{Form, Part};
use reqwest::{Method, RequestBuilder};

pub const TUS: &str = "1.0.0";
pub const OCTET: &str = "application/offset+octet-stream";

/// A fresh client: no connection is shared between requests of different
/// tests, or with a server a test has stopped.
pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

pub type Params = Vec<(String, String)>;

/// A chunked upload's parameters under their plain names. Each takes any
/// text, so malformed values are written the same way as good ones.
pub fn piece_params(
    n: impl Display,
    total: impl Display,
    chunk: impl Display,
    size: impl Display,
    id: &str,
    name: &str,
) -> Params {
    [
        ("chunkNumber", n.to_string()),
        ("totalChunks", total.to_string()),
        ("chunkSize", chunk.to_string()),
        ("totalSize", size.to_string()),
        ("identifier", id.to_string()),
        ("filename", name.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The same parameters under resumable.js's or flow.js's names.
pub fn prefixed(prefix: &str, p: &[(String, String)]) -> Params {
    p.iter()
        .map(|(k, v)| {
            let mut c = k.chars();
            let first = c.next().map(|f| f.to_ascii_uppercase().to_string()).unwrap_or_default();
            (format!("{prefix}{first}{}", c.as_str()), v.clone())
        })
        .collect()
}

/// `p` with `k` set to `v`.
pub fn with(mut p: Params, k: &str, v: &str) -> Params {
    p.retain(|(key, _)| key != k);
    p.push((k.to_string(), v.to_string()));
    p
}

/// `p` without `k`.
pub fn without(mut p: Params, k: &str) -> Params {
    p.retain(|(key, _)| key != k);
    p
}

/// A piece request: the parameters as text fields and, if given, the bytes
/// as the `file` part.
pub fn piece_form(p: &[(String, String)], data: Option<&[u8]>) -> Form {
    let mut f = Form::new();
    for (k, v) in p {
        f = f.text(k.clone(), v.clone());
    }
    if let Some(d) = data {
        f = f.part("file", Part::bytes(d.to_vec()).file_name("blob"));
    }
    f
}

/// A tus request with `Tus-Resumable: 1.0.0`.
pub fn tus(method: Method, url: &str) -> RequestBuilder {
    tus_by(&client(), method, url)
}

/// [`tus`] through `c` (a client with a token).
pub fn tus_by(c: &reqwest::Client, method: Method, url: &str) -> RequestBuilder {
    c.request(method, url).header("Tus-Resumable", TUS)
}

/// [`tus_patch`] through `c` (a client with a token).
pub fn tus_patch_by(c: &reqwest::Client, url: &str, offset: impl Display) -> RequestBuilder {
    patch_headers(tus_by(c, Method::PATCH, url), offset)
}

/// A tus upload's offset (HEAD, must answer 200).
pub async fn tus_offset(url: &str) -> u64 {
    let r = tus(Method::HEAD, url).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK, "HEAD {url}");
    r.headers()["upload-offset"].to_str().unwrap().parse().unwrap()
}

/// A tus PATCH at `offset`, body still to be set.
pub fn tus_patch(url: &str, offset: impl Display) -> RequestBuilder {
    tus_patch_as(Method::PATCH, url, offset)
}

/// A tus PATCH's headers on a request of another method (a PATCH a client
/// sends as POST with `X-HTTP-Method-Override`).
pub fn tus_patch_as(method: Method, url: &str, offset: impl Display) -> RequestBuilder {
    patch_headers(tus(method, url), offset)
}

/// The headers that make a tus request an append at `offset`.
fn patch_headers(r: RequestBuilder, offset: impl Display) -> RequestBuilder {
    r.header("Content-Type", OCTET).header("Upload-Offset", offset.to_string())
}

pub type BodySender = tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>;

/// A request body the test sends piece by piece: it ends when the sender
/// is dropped, and breaks off on an `Err`.
pub fn fed_body(capacity: usize) -> (BodySender, reqwest::Body) {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    (tx, reqwest::Body::wrap_stream(stream))
}

/// A part's `Content-Disposition` header line for the form field `name`.
pub fn field(name: &str) -> String {
    format!("Content-Disposition: form-data; name=\"{name}\"")
}

/// A `multipart/form-data` body written by hand, as some senders write it:
/// one part per `(header lines, bytes)`, the header lines CRLF-separated;
/// the closing delimiter only if `close` (a truncated body otherwise).
pub fn handmade_multipart(boundary: &str, parts: &[(String, &[u8])], close: bool) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, (headers, bytes)) in parts.iter().enumerate() {
        let sep = if i == 0 { "" } else { "\r\n" };
        body.extend_from_slice(format!("{sep}--{boundary}\r\n{headers}\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
    }
    if close {
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    }
    body
}

/// A well-formed piece: plain parameter names and the bytes.
pub fn piece(n: u32, total: u32, chunk: u64, size: u64, id: &str, name: &str, data: &[u8]) -> Form {
    piece_form(&piece_params(n, total, chunk, size, id, name), Some(data))
}

/// A JSON missing-chunks query of exactly `size` bytes: no hashes, padded
/// with whitespace (valid JSON, answered 200 with nothing missing).
pub fn padded_json(size: usize) -> Vec<u8> {
    let mut body = b"{\"hashes\":[".to_vec();
    body.resize(size - 2, b' ');
    body.extend_from_slice(b"]}");
    body
}

/// One HTTP/1.1 response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

/// Reads the next response from `r` (its body by `Content-Length`), with
/// `buf` holding bytes read past the previous one; `None` at the end of
/// the connection (or when it breaks) before a whole response.
pub async fn read_response(
    r: &mut (impl tokio::io::AsyncRead + Unpin),
    buf: &mut Vec<u8>,
) -> Option<RawResponse> {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if !more(r, buf).await {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
        .map_or(0, |(_, v)| v.trim().parse().unwrap());
    while buf.len() < end + len {
        if !more(r, buf).await {
            return None;
        }
    }
    let body = buf[end..end + len].to_vec();
    buf.drain(..end + len);
    Some(RawResponse { status, head, body })
}

/// Reads more of `r` into `buf`; false at the end of the connection.
async fn more(r: &mut (impl tokio::io::AsyncRead + Unpin), buf: &mut Vec<u8>) -> bool {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 16 << 10];
    match r.read(&mut chunk).await {
        Ok(n) if n > 0 => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        _ => false,
    }
}

/// Everything `r` sends until it closes the connection, or `None` when it
/// is still open after `wait`.
pub async fn read_to_close(
    r: &mut (impl tokio::io::AsyncRead + Unpin),
    wait: std::time::Duration,
) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut all = Vec::new();
    // A reset after the answer ends the connection too.
    let _ = tokio::time::timeout(wait, r.read_to_end(&mut all)).await.ok()?;
    Some(all)
}

/// A client that sends `Authorization: Bearer <token>` on every request.
pub fn as_token(token: &str) -> reqwest::Client {
    use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
    let mut h = HeaderMap::new();
    let mut v = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    v.set_sensitive(true);
    h.insert(AUTHORIZATION, v);
    reqwest::Client::builder().default_headers(h).build().unwrap()
}

/// A zstd frame of `parts` written one after another, at `level`, with a
/// window of 2^`wlog` bytes and no declared content size (as a streaming
/// client sends it); `ldm` turns long-distance matching on.
pub fn streamed_zstd(level: i32, wlog: u32, ldm: bool, parts: &[&[u8]]) -> Vec<u8> {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), level).unwrap();
    enc.include_contentsize(false).unwrap();
    enc.window_log(wlog).unwrap();
    enc.long_distance_matching(ldm).unwrap();
    for part in parts {
        std::io::Write::write_all(&mut enc, part).unwrap();
    }
    enc.finish().unwrap()
}

/// `PUT {base}/api/chunks/{id}` of a zstd `frame` through `c`: its status.
pub async fn put_zstd(
    c: &reqwest::Client,
    base: &str,
    id: &depot::store::ChunkId,
    frame: impl Into<reqwest::Body>,
) -> reqwest::StatusCode {
    c.put(format!("{base}/api/chunks/{id}"))
        .header("Content-Encoding", "zstd")
        .body(frame)
        .send()
        .await
        .unwrap()
        .status()
}

/// Creates a tus upload of `len` bytes named `name` at the tus endpoint
/// `endpoint` (must answer 201); the upload's path (`/api/tus/<id>`), to be
/// joined to any node's base.
pub async fn tus_create(endpoint: &str, len: usize, name: &str) -> String {
    use base64::Engine;
    let meta = format!("filename {}", base64::engine::general_purpose::STANDARD.encode(name));
    let r = tus(Method::POST, endpoint)
        .header("Upload-Length", len.to_string())
        .header("Upload-Metadata", meta)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let location = r.headers()["location"].to_str().unwrap();
    location[location.find("/api/tus/").unwrap()..].to_string()
}
