//! The `depot` client: a reqwest wrapper for the server's API, and the
//! commands built on it (`put`, `get`, `ls`, `rm`, `stat`, `stats`, the
//! admin calls behind `depot token`). It cuts files with the server's own
//! chunker, so what it uploads deduplicates against content that arrived by
//! any other path. With a [`Token`] every request carries
//! `Authorization: Bearer`, and no redirect leaves the server's origin, so
//! the token goes nowhere else.

mod admin;
mod delta;
mod get;
mod part;
mod probe;
mod progress;
mod put;
mod seed;
mod send;
mod token;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde::de::DeserializeOwned;

pub use self::admin::{
    create_backup, create_link, create_token, expires_in, list_tokens, revoke_token, set_quota, tenant,
};
pub use self::get::{GetOptions, GetReport, get};
pub use self::progress::{human, progress_line};
pub use self::put::{PutOptions, PutReport, Source, put};
pub use self::token::{TOKEN_ENV, Token, TokenSource, default_file as default_token_file};
use crate::store::ChunkId;
use crate::wire::{
    ChunkRef, ChunkingInfo, CommitOpen, CommitRequest, CommitSession, CommitStatus, ErrorBody, FileInfo,
    FileList, Health, ManifestInfo, MissingRequest, MissingResponse, PutChunkResponse, PutChunksResponse,
    SegmentInfo, SegmentRequest, StatsInfo,
};

/// Why a client operation failed; each renders as one clear line and maps
/// to one exit status ([`ClientError::exit_code`]).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Bad arguments or a bad server URL.
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the server at {server}: {detail}")]
    Unreachable { server: String, detail: String },
    /// A transfer broke off midway; the message says how to resume.
    #[error("{0}")]
    Broken(String),
    #[error("the server answered {status}: {message}")]
    Api { status: u16, error: String, message: String, missing: Vec<ChunkId> },
    /// 401: no token, or one the server does not accept (unknown, expired,
    /// revoked); the message says which token was sent and how to set one.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the token lacks a permission; the message names it, as the
    /// server did.
    #[error("{0}")]
    Forbidden(String),
    /// The server would refuse the upload (its size or type), found out
    /// before anything was sent.
    #[error("{0}")]
    Refused(String),
    /// A local file cannot be read or written, or would be overwritten.
    #[error("{0}")]
    Io(String),
    /// The server answered something that is not the API.
    #[error("{0}")]
    Protocol(String),
    #[error("{0}")]
    Verify(String),
}

/// Exit statuses of the `depot` client commands (the Python client and the
/// bash scripts use the same numbers).
pub mod exit {
    /// Bad arguments.
    pub const USAGE: u8 = 2;
    /// A local file cannot be read or written, or exists (`get` without
    /// `--force`).
    pub const LOCAL: u8 = 3;
    /// The server cannot be reached, or the connection broke.
    pub const NETWORK: u8 = 4;
    /// The server refused the request (4xx), or would refuse the upload.
    pub const REFUSED: u8 = 5;
    /// Server error (5xx) or an answer that is not the API.
    pub const SERVER: u8 = 6;
    /// The download does not verify.
    pub const VERIFY: u8 = 7;
    /// Interrupted (Ctrl-C): run the same command again to resume.
    pub const INTERRUPTED: u8 = 130;
}

impl ClientError {
    fn io(context: impl std::fmt::Display, e: std::io::Error) -> Self {
        ClientError::Io(format!("{context}: {e}"))
    }

    /// The exit status for this error (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_) => exit::USAGE,
            ClientError::Io(_) => exit::LOCAL,
            ClientError::Unreachable { .. } | ClientError::Broken(_) => exit::NETWORK,
            ClientError::Api { status, .. } if *status < 500 => exit::REFUSED,
            ClientError::Refused(_) | ClientError::Unauthorized(_) | ClientError::Forbidden(_) => {
                exit::REFUSED
            }
            ClientError::Api { .. } | ClientError::Protocol(_) => exit::SERVER,
            ClientError::Verify(_) => exit::VERIFY,
        }
    }

    /// Whether retrying the same request may succeed.
    fn transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            // 507: the server is out of space; asking again will not help.
            ClientError::Api { status, .. } => *status == 429 || (*status >= 500 && *status != 507),
            _ => false,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A connection to one server.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// Say on stderr when a request is retried.
    notify_retries: bool,
    /// Whether the server has answered once: before that, a refused
    /// connection means there is no server, and waiting will not help.
    answered: Arc<AtomicBool>,
    /// Where the token sent with every request came from (`None`: no
    /// token), for the message of a 401.
    token: Option<TokenSource>,
    /// Whether the server takes JSON bodies in zstd: its `GET
    /// /api/chunking` listed it in `request_encodings`.
    zstd_json: Arc<AtomicBool>,
}

/// Attempts after the first for a transient failure.
const RETRIES: u32 = 5;

/// JSON bodies shorter than this go plain: a zstd frame of a short one
/// saves a few dozen bytes at most.
const ZSTD_JSON_MIN: usize = 1024;

/// A JSON request body as it goes on the wire ([`Client::payload`]).
struct Payload {
    bytes: bytes::Bytes,
    zstd: bool,
}

impl Payload {
    fn on(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(self.bytes.clone());
        if self.zstd { req.header(reqwest::header::CONTENT_ENCODING, "zstd") } else { req }
    }
}

impl Client {
    /// A client that sends no token (enough for a server in `local` mode).
    ///
    /// # Errors
    /// [`ClientError::Usage`] when the URL is not http(s).
    pub fn new(server: &str) -> Result<Self> {
        Self::with_token(server, None)
    }

    /// A client that sends `token`, when there is one, as
    /// `Authorization: Bearer` on every request (a header marked
    /// sensitive, so that it stays out of debug output). Redirects are
    /// followed only within the server's origin (scheme, host and port):
    /// one that points elsewhere fails the request instead, with or without
    /// a token. (reqwest on its own strips `Authorization` only when the
    /// host or port changes, and would send it after an `https` to `http`
    /// redirect on the same port.)
    ///
    /// # Errors
    /// [`ClientError::Usage`] when the URL is not http(s).
    pub fn with_token(server: &str, token: Option<Token>) -> Result<Self> {
        let base = server.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Usage(format!(
                "server URL `{server}` must start with http:// or https://"
            )));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = &token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", t.secret()))
                .map_err(|_| {
                    ClientError::Usage(format!("the token in {} is not a valid header value", t.source()))
                })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(16)
            .user_agent(concat!("depot/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let leaves = attempt.previous().last().is_some_and(|prev| !same_origin(prev, attempt.url()));
                if leaves || attempt.previous().len() >= 10 { attempt.stop() } else { attempt.follow() }
            }))
            .build()
            .map_err(|e| ClientError::Protocol(format!("http client: {e}")))?;
        Ok(Self {
            http,
            base,
            notify_retries: false,
            answered: Arc::default(),
            token: token.map(|t| t.source().clone()),
            zstd_json: Arc::default(),
        })
    }

    /// Says on stderr, one line each, when a request is retried (the
    /// command line client turns this on).
    pub fn with_retry_notices(mut self, on: bool) -> Self {
        self.notify_retries = on;
        self
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The underlying HTTP client: its requests carry the token too.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The server's base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn send_error(&self, e: reqwest::Error) -> ClientError {
        // The innermost cause is the one that says what happened
        // ("Connection refused (os error 111)"); reqwest's own layers only
        // repeat the URL.
        let mut detail = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            detail = s.to_string();
            src = s.source();
        }
        ClientError::Unreachable { server: self.base.clone(), detail }
    }

    /// Sends a request; a non-success status becomes [`ClientError::Api`].
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Response> {
        let resp = req.send().await.map_err(|e| self.send_error(e))?;
        self.answered.store(true, Ordering::Relaxed);
        self.check(resp).await
    }

    /// Turns an error status into a [`ClientError`], reading the JSON body:
    /// 401 and 403 into [`ClientError::Unauthorized`] and
    /// [`ClientError::Forbidden`] with what to do about them, a redirect
    /// that was not followed (it left the server's origin) into
    /// [`ClientError::Protocol`], any other into [`ClientError::Api`].
    async fn check(&self, resp: Response) -> Result<Response> {
        let status = resp.status();
        // Redirects within the origin were followed; one that is still
        // here pointed elsewhere (or went on too long).
        let location = resp.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok());
        if let Some(to) = location.filter(|_| status.is_redirection()).and_then(|l| resp.url().join(l).ok()) {
            return Err(ClientError::Protocol(if same_origin(resp.url(), &to) {
                format!("{} keeps redirecting (last to {to})", self.base)
            } else {
                format!(
                    "{} redirects to {to}, outside {}: depot follows redirects only within the server's \
                     origin, so that the token goes nowhere else; if that is the same server, use its \
                     address as --server",
                    resp.url(),
                    self.base
                )
            }));
        }
        match check(resp).await {
            Err(ClientError::Api { status: 401, message, .. }) => {
                Err(ClientError::Unauthorized(match &self.token {
                    None => format!(
                        "the server needs a token ({message}): set {TOKEN_ENV}, pass --token-file, or put one in \
                     ~/.config/depot/token (mode 600)"
                    ),
                    Some(source) => format!(
                        "the server refused the token from {source} ({message}): it is unknown, expired or \
                     revoked; use a valid one ({TOKEN_ENV} or --token-file)"
                    ),
                }))
            }
            Err(ClientError::Api { status: 403, message, .. }) => Err(ClientError::Forbidden(format!(
                "the server refused: {message} (403: the token lacks that permission; ask for a token with it)"
            ))),
            other => other,
        }
    }

    async fn json<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T> {
        let resp = self.send(req).await?;
        resp.json()
            .await
            .map_err(|e| ClientError::Protocol(format!("unexpected answer from the server: {e}")))
    }

    /// Retries transient failures (unreachable, 429, 5xx) with backoff,
    /// saying so when notices are on. A server that refuses the very first
    /// connection is not there: that fails at once.
    async fn retrying<T, F, Fut>(&self, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            match f().await {
                Err(e) if e.transient() && attempt < RETRIES && !self.nobody_there(&e) => {
                    attempt += 1;
                    if self.notify_retries {
                        eprintln!(
                            "depot: {e}; retrying in {:.1} s ({attempt}/{RETRIES})",
                            delay.as_secs_f64()
                        );
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                other => return other,
            }
        }
    }

    /// A refused connection before the server ever answered: no server.
    fn nobody_there(&self, e: &ClientError) -> bool {
        matches!(e, ClientError::Unreachable { detail, .. } if detail.to_ascii_lowercase().contains("refused"))
            && !self.answered.load(Ordering::Relaxed)
    }

    /// The server's chunking and limits. From then on the long JSON
    /// bodies (missing-chunks queries, commits, segments) go in zstd when
    /// the server takes that.
    ///
    /// # Errors
    /// Network and API errors.
    pub async fn chunking(&self) -> Result<ChunkingInfo> {
        let info: ChunkingInfo =
            self.retrying(|| self.json(self.http.get(self.url("/api/chunking")))).await?;
        let zstd = info.request_encodings.iter().flatten().any(|e| e.eq_ignore_ascii_case("zstd"));
        self.zstd_json.store(zstd, Ordering::Relaxed);
        Ok(info)
    }

    /// A JSON request body, serialised once for every attempt: in zstd
    /// (`Content-Encoding: zstd`, RFC 8878) when the server takes that
    /// ([`Self::chunking`]) and the body is long enough to gain.
    fn payload<T: serde::Serialize>(&self, body: &T) -> Result<Payload> {
        let json =
            serde_json::to_vec(body).map_err(|e| ClientError::Protocol(format!("encoding JSON: {e}")))?;
        if json.len() >= ZSTD_JSON_MIN && self.zstd_json.load(Ordering::Relaxed) {
            // A frame that declares its size, so the server reserves that.
            let coded = zstd::bulk::compress(&json, zstd::DEFAULT_COMPRESSION_LEVEL)
                .map_err(|e| ClientError::Protocol(format!("compressing JSON: {e}")))?;
            return Ok(Payload { bytes: coded.into(), zstd: true });
        }
        Ok(Payload { bytes: json.into(), zstd: false })
    }

    /// # Errors
    /// Network and API errors.
    pub async fn missing(&self, hashes: &[ChunkId]) -> Result<Vec<ChunkId>> {
        let body = self.payload(&MissingRequest { hashes: hashes.to_vec() })?;
        let r: MissingResponse =
            self.retrying(|| self.json(body.on(self.http.post(self.url("/api/chunks/missing"))))).await?;
        Ok(r.missing)
    }

    /// Sends one chunk body (raw, or a zstd frame when `zstd`).
    ///
    /// # Errors
    /// Network and API errors.
    pub async fn put_chunk(&self, id: &ChunkId, body: bytes::Bytes, zstd: bool) -> Result<PutChunkResponse> {
        self.retrying(|| {
            let mut req = self
                .http
                .put(self.url(&format!("/api/chunks/{id}")))
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(body.clone());
            if zstd {
                req = req.header(reqwest::header::CONTENT_ENCODING, "zstd");
            }
            self.json(req)
        })
        .await
    }

    /// Sends several chunk bodies in one request (`POST /api/chunks`, one
    /// multipart/form-data part per chunk, named by its hash; a zstd frame
    /// when its flag says so): one durability barrier on the server for
    /// all of them. Within the server's `max_batch_chunks` and
    /// `max_batch_bytes` (`GET /api/chunking`).
    ///
    /// # Errors
    /// Network and API errors.
    pub async fn put_chunks(&self, chunks: &[(ChunkId, bytes::Bytes, bool)]) -> Result<PutChunksResponse> {
        self.retrying(|| {
            let mut form = reqwest::multipart::Form::new();
            for (id, body, zstd) in chunks {
                let part = reqwest::multipart::Part::stream_with_length(body.clone(), body.len() as u64)
                    .mime_str(if *zstd { "application/zstd" } else { "application/octet-stream" })
                    .expect("a valid media type");
                form = form.part(id.to_string(), part);
            }
            self.json(self.http.post(self.url("/api/chunks")).multipart(form))
        })
        .await
    }

    /// # Errors
    /// Network and API errors ([`ClientError::Api`] with `missing` on 409).
    pub async fn commit(&self, req: &CommitRequest) -> Result<FileInfo> {
        let body = self.payload(req)?;
        self.retrying(|| self.json(body.on(self.http.post(self.url("/api/files"))))).await
    }

    /// Opens a commit in parts (`POST /api/commits`).
    ///
    /// # Errors
    /// Network and API errors (404 from a server without commits in parts).
    pub async fn open_commit(&self, req: &CommitOpen) -> Result<CommitSession> {
        self.retrying(|| self.json(self.http.post(self.url("/api/commits")).json(req))).await
    }

    /// Sends segment `n` of commit `id`.
    ///
    /// # Errors
    /// Network and API errors ([`ClientError::Api`] with `missing` on 409).
    pub async fn put_segment(&self, id: &str, n: u32, chunks: &[ChunkRef]) -> Result<SegmentInfo> {
        let body = self.payload(&SegmentRequest { chunks: chunks.to_vec() })?;
        let url = self.url(&format!("/api/commits/{id}/segments/{n}"));
        self.retrying(|| self.json(body.on(self.http.put(&url)))).await
    }

    /// Where commit `id` stands.
    ///
    /// # Errors
    /// Network and API errors.
    pub async fn commit_status(&self, id: &str) -> Result<CommitStatus> {
        self.retrying(|| self.json(self.http.get(self.url(&format!("/api/commits/{id}"))))).await
    }

    /// Finishes commit `id` into the file.
    ///
    /// # Errors
    /// Network and API errors ([`ClientError::Api`] with `missing` on 409).
    pub async fn finish_commit(&self, id: &str) -> Result<FileInfo> {
        self.retrying(|| self.json(self.http.post(self.url(&format!("/api/commits/{id}/finish"))))).await
    }

    /// # Errors
    /// Network and API errors.
    pub async fn info(&self, id: &str) -> Result<FileInfo> {
        self.retrying(|| self.json(self.http.get(self.url(&format!("/api/files/{id}/info"))))).await
    }

    /// # Errors
    /// Network and API errors.
    pub async fn manifest(&self, id: &str) -> Result<ManifestInfo> {
        self.retrying(|| self.json(self.http.get(self.url(&format!("/api/files/{id}/manifest"))))).await
    }

    /// One page of the listing, newest first; `search` keeps only names
    /// that match it.
    ///
    /// # Errors
    /// Network and API errors.
    pub async fn list(
        &self,
        cursor: Option<&str>,
        limit: usize,
        search: Option<&Search>,
    ) -> Result<FileList> {
        self.retrying(|| {
            let mut req = self.http.get(self.url("/api/files")).query(&[("limit", limit.to_string())]);
            if let Some(c) = cursor {
                req = req.query(&[("cursor", c)]);
            }
            match search {
                Some(Search::Exact(n)) => req = req.query(&[("name", n)]),
                Some(Search::Contains(q)) => req = req.query(&[("q", q)]),
                None => {}
            }
            self.json(req)
        })
        .await
    }

    /// The id of the file a command names: `arg` itself when it is a file
    /// id (26 Crockford base32 characters, as `depot ls` prints them), else
    /// the id of the one file named exactly `arg`.
    ///
    /// # Errors
    /// [`ClientError::Api`] 404 when no file has that name;
    /// [`ClientError::Usage`] when several do (the message lists up to
    /// five of their ids, newest first); network and API errors.
    pub async fn resolve(&self, arg: &str) -> Result<String> {
        if arg.parse::<crate::store::FileId>().is_ok() {
            return Ok(arg.to_string());
        }
        const SHOWN: usize = 5;
        let page = self.list(None, SHOWN + 1, Some(&Search::Exact(arg.into()))).await?;
        match page.files.as_slice() {
            [] => Err(ClientError::Api {
                status: 404,
                error: "not_found".into(),
                message: format!(
                    "no file has the id or the name `{arg}` (`depot ls -q TEXT` finds names containing TEXT)"
                ),
                missing: Vec::new(),
            }),
            [one] => Ok(one.id.clone()),
            many => {
                let more = if many.len() > SHOWN || page.next_cursor.is_some() { "\n  …" } else { "" };
                let lines: String = many
                    .iter()
                    .take(SHOWN)
                    .map(|f| format!("\n  {}  {}  {}", f.id, f.created, human(f.size)))
                    .collect();
                Err(ClientError::Usage(format!(
                    "more than one file is named `{arg}`; give the id of the one you mean \
                     (`depot ls '{arg}'` lists them all), newest first:{lines}{more}"
                )))
            }
        }
    }

    /// # Errors
    /// Network and API errors.
    pub async fn delete(&self, id: &str) -> Result<()> {
        self.send(self.http.delete(self.url(&format!("/api/files/{id}")))).await.map(drop)
    }

    /// # Errors
    /// Network and API errors.
    pub async fn stats(&self) -> Result<StatsInfo> {
        self.retrying(|| self.json(self.http.get(self.url("/api/stats")))).await
    }

    /// Asks once, without retrying, whether the server is healthy
    /// (`/healthz`) or, with `ready`, ready for traffic (`/readyz`): what a
    /// probe wants to know now.
    ///
    /// # Errors
    /// Network errors, and the 503 of a server that is not.
    pub async fn health(&self, ready: bool) -> Result<Health> {
        let path = if ready { "/readyz" } else { "/healthz" };
        self.json(self.http.get(self.url(path)).timeout(Duration::from_secs(5))).await
    }
}

/// Whether `b` is on the same scheme, host and port as `a`.
fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// A search by name for [`Client::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Search {
    /// Exactly this name (`?name=`).
    Exact(String),
    /// Names containing this, ignoring case (`?q=`).
    Contains(String),
}

/// Turns an error status into [`ClientError::Api`], reading the JSON body
/// ([`Client::check`] adds what a 401, 403 or redirect means).
async fn check(resp: Response) -> Result<Response> {
    let status = resp.status();
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        return Ok(resp);
    }
    let text = resp.text().await.unwrap_or_default();
    Err(match serde_json::from_str::<ErrorBody>(&text) {
        Ok(b) => ClientError::Api {
            status: status.as_u16(),
            error: b.error,
            message: b.message,
            missing: b.missing.unwrap_or_default(),
        },
        Err(_) => ClientError::Api {
            status: status.as_u16(),
            error: "http".into(),
            message: text
                .chars()
                .take(200)
                .collect::<String>()
                .trim()
                .to_string()
                .if_empty(status.to_string()),
            missing: Vec::new(),
        },
    })
}

trait IfEmpty {
    fn if_empty(self, other: String) -> String;
}

impl IfEmpty for String {
    fn if_empty(self, other: String) -> String {
        if self.is_empty() { other } else { self }
    }
}

#[cfg(test)]
mod tests;
