//! The `depot` client: a reqwest wrapper for the server's API, and the
//! commands built on it (`put`, `get`, `ls`, `rm`, `stat`, `stats`, the
//! admin calls behind `depot token`). It cuts files with the server's own
//! chunker, so what it uploads deduplicates against content that arrived by
//! any other path. With a [`Token`] every request carries
//! `Authorization: Bearer`, and no redirect leaves the server's origin, so
//! the token goes nowhere else.

mod admin;
mod get;
mod progress;
mod put;
mod token;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde::de::DeserializeOwned;

pub use self::admin::{create_link, create_token, expires_in, list_tokens, revoke_token};
pub use self::get::{GetOptions, GetReport, get};
pub use self::progress::progress_line;
pub use self::put::{PutOptions, PutReport, Source, put};
pub use self::token::{TOKEN_ENV, Token, TokenSource, default_file as default_token_file};
use crate::store::ChunkId;
use crate::wire::{
    ChunkingInfo, CommitRequest, ErrorBody, FileInfo, FileList, ManifestInfo, MissingRequest,
    MissingResponse, PutChunkResponse, StatsInfo,
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
            ClientError::Api { status, .. } => *status == 429 || *status >= 500,
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
}

/// Attempts after the first for a transient failure.
const RETRIES: u32 = 5;

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

    /// # Errors
    /// Network and API errors.
    pub async fn chunking(&self) -> Result<ChunkingInfo> {
        self.retrying(|| self.json(self.http.get(self.url("/api/chunking")))).await
    }

    /// # Errors
    /// Network and API errors.
    pub async fn missing(&self, hashes: &[ChunkId]) -> Result<Vec<ChunkId>> {
        let body = MissingRequest { hashes: hashes.to_vec() };
        let r: MissingResponse =
            self.retrying(|| self.json(self.http.post(self.url("/api/chunks/missing")).json(&body))).await?;
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

    /// # Errors
    /// Network and API errors ([`ClientError::Api`] with `missing` on 409).
    pub async fn commit(&self, req: &CommitRequest) -> Result<FileInfo> {
        self.retrying(|| self.json(self.http.post(self.url("/api/files")).json(req))).await
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

/// Sizes for people: `1.5 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

#[cfg(test)]
mod tests {
    //! The client's side of authentication against a scripted HTTP peer:
    //! what it sends, which redirects it follows, what a 401/403 says.

    use std::sync::Mutex;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    const TOKEN: &str = "dpt_01JDX3E5C9R2T7VQ4M8N6P0WAB_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA";

    /// A peer that answers each connection's requests with `answer(request)`
    /// and records every request (head and body) it gets. Returns its base
    /// URL.
    async fn peer(
        answer: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (answer, log) = (Arc::new(answer), seen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let (answer, log) = (answer.clone(), log.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut byte = [0u8; 1];
                    loop {
                        while !buf.ends_with(b"\r\n\r\n") {
                            if sock.read(&mut byte).await.unwrap_or(0) == 0 {
                                return;
                            }
                            buf.push(byte[0]);
                        }
                        let mut head = String::from_utf8_lossy(&buf).into_owned();
                        buf.clear();
                        // The body (these requests have a Content-Length)
                        // joins the head.
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase().strip_prefix("content-length: ")?.parse().ok()
                            })
                            .unwrap_or(0usize);
                        let mut body = vec![0u8; len];
                        if sock.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        head.push_str(&String::from_utf8_lossy(&body));
                        log.lock().unwrap().push(head.clone());
                        if sock.write_all(answer(&head).as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (base, seen)
    }

    fn reply(status: &str, extra: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n{body}",
            body.len()
        )
    }

    const STATS: &str = r#"{"files":0,"logical_bytes":0,"unique_chunks":0,"unique_bytes":0,"stored_bytes":0,"dedup_ratio":null,"space_ratio":null}"#;

    fn token() -> Token {
        Token::parse(TOKEN, TokenSource::Env).unwrap()
    }

    fn authorization(head: &str) -> Option<String> {
        head.lines()
            .find_map(|l| l.strip_prefix("authorization: ").or_else(|| l.strip_prefix("Authorization: ")))
            .map(str::to_string)
    }

    #[tokio::test]
    async fn every_request_carries_the_bearer_token_and_debug_output_hides_it() {
        let (base, seen) = peer(|_| reply("200 OK", "", STATS)).await;
        let c = Client::with_token(&base, Some(token())).unwrap();
        c.stats().await.unwrap();
        c.http().get(c.url("/api/files/X")).send().await.unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        for head in &seen {
            assert_eq!(authorization(head).as_deref(), Some(format!("Bearer {TOKEN}").as_str()), "{head}");
        }
        assert!(!format!("{:?}", c.http()).contains("c2Vj"), "the reqwest client's Debug shows the token");
        let req = c.http().get(c.url("/x")).build().unwrap();
        assert!(!format!("{req:?}").contains("c2Vj"));
        // Without a token, no header.
        let (base, seen) = peer(|_| reply("200 OK", "", STATS)).await;
        Client::new(&base).unwrap().stats().await.unwrap();
        assert_eq!(authorization(&seen.lock().unwrap()[0]), None);
    }

    #[tokio::test]
    async fn redirects_are_followed_within_the_origin_only_so_the_token_goes_nowhere_else() {
        // The other host (another port of 127.0.0.1 is another origin):
        // it must see no request at all.
        let (elsewhere, elsewhere_seen) = peer(|_| reply("200 OK", "", STATS)).await;
        let to = format!("{elsewhere}/api/stats");
        let (base, seen) = peer(move |head| {
            if head.starts_with("GET /old ") {
                reply("301 Moved Permanently", "location: /api/stats\r\n", "")
            } else if head.starts_with("GET /away ") {
                reply("302 Found", &format!("location: {to}\r\n"), "")
            } else {
                reply("200 OK", "", STATS)
            }
        })
        .await;
        let c = Client::with_token(&base, Some(token())).unwrap();
        let resp = c.send(c.http.get(c.url("/old"))).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(seen.lock().unwrap().len(), 2, "the same-origin redirect was followed");
        assert!(authorization(&seen.lock().unwrap()[1]).is_some(), "with the token");

        let e = c.send(c.http.get(c.url("/away"))).await.unwrap_err();
        assert!(matches!(e, ClientError::Protocol(_)), "{e:?}");
        assert!(
            e.to_string().contains(&format!("redirects to {elsewhere}/api/stats, outside {base}")),
            "{e}"
        );
        assert_eq!(e.exit_code(), exit::SERVER);
        assert!(elsewhere_seen.lock().unwrap().is_empty(), "the other origin got a request");
    }

    #[test]
    fn an_origin_is_scheme_host_and_port() {
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(same_origin(&u("http://h:8080/a"), &u("http://h:8080/b?c")));
        assert!(same_origin(&u("https://h/a"), &u("https://h:443/b")));
        assert!(!same_origin(&u("https://h:8080/a"), &u("http://h:8080/a")), "a downgrade to http");
        assert!(!same_origin(&u("http://h:8080/a"), &u("http://h:8081/a")));
        assert!(!same_origin(&u("http://h/a"), &u("http://g/a")));
    }

    #[tokio::test]
    async fn a_401_says_how_to_pass_a_token_and_a_403_names_the_permission() {
        let (base, _) = peer(|head| {
            if head.starts_with("DELETE ") {
                reply(
                    "403 Forbidden",
                    "",
                    r#"{"code":403,"error":"forbidden","message":"this token lacks the delete scope"}"#,
                )
            } else {
                reply(
                    "401 Unauthorized",
                    "www-authenticate: Bearer realm=\"depot\"\r\n",
                    r#"{"code":401,"error":"unauthorized","message":"a valid token is needed"}"#,
                )
            }
        })
        .await;
        let e = Client::new(&base).unwrap().stats().await.unwrap_err();
        assert!(matches!(e, ClientError::Unauthorized(_)), "{e:?}");
        assert_eq!(e.exit_code(), exit::REFUSED);
        let text = e.to_string();
        assert!(text.contains("needs a token") && text.contains("DEPOT_TOKEN"), "{text}");

        let c = Client::with_token(&base, Some(token())).unwrap();
        let text = c.stats().await.unwrap_err().to_string();
        assert!(text.contains("refused the token from DEPOT_TOKEN (a valid token is needed)"), "{text}");
        assert!(!text.contains("c2Vj"), "{text}");

        let e = c.delete("01JDX3E5C9R2T7VQ4M8N6P0WAB").await.unwrap_err();
        assert!(matches!(e, ClientError::Forbidden(_)), "{e:?}");
        assert_eq!(e.exit_code(), exit::REFUSED);
        assert!(e.to_string().contains("this token lacks the delete scope"), "{e}");
    }

    #[tokio::test]
    async fn admin_calls_send_the_documented_requests() {
        let info = r#"{"id":"01JDX3E5C9R2T7VQ4M8N6P0WAB","token":"dpt_01JDX3E5C9R2T7VQ4M8N6P0WAB_s","tenant":"acme","scopes":["read","write"],"created":"2026-11-30T12:00:00.000Z","expires_at":"2027-02-28T12:00:00.000Z"}"#;
        let (base, seen) = peer(move |req| {
            if req.starts_with("POST /api/admin/tokens ") {
                reply("201 Created", "", info)
            } else if req.starts_with("GET /api/admin/tokens ") {
                reply("200 OK", "", r#"{"tokens":[]}"#)
            } else if req.starts_with("DELETE ") {
                "HTTP/1.1 204 No Content\r\n\r\n".to_string()
            } else {
                reply(
                    "200 OK",
                    "",
                    r#"{"url":"/api/files/F1?exp=1&kid=K&sig=S","expires_at":"2026-11-30T13:00:00.000Z"}"#,
                )
            }
        })
        .await;
        let c = Client::with_token(&base, Some(token())).unwrap();
        let req = crate::wire::TokenRequest {
            tenant: "acme".into(),
            scopes: vec!["read".into(), "write".into()],
            expires_in: Some(expires_in("90d")),
            name: Some("ci".into()),
        };
        let made = create_token(&c, &req).await.unwrap();
        assert_eq!(made.token.as_deref(), Some("dpt_01JDX3E5C9R2T7VQ4M8N6P0WAB_s"));
        assert_eq!(made.scopes, ["read", "write"]);
        assert!(list_tokens(&c).await.unwrap().tokens.is_empty());
        revoke_token(&c, "dpt_01JDX3E5C9R2T7VQ4M8N6P0WAB_secret").await.unwrap();
        let link = create_link(&c, "F1", Some(600)).await.unwrap();
        assert_eq!(c.url(&link.url), format!("{base}/api/files/F1?exp=1&kid=K&sig=S"));
        assert!(matches!(create_link(&c, "../x", None).await, Err(ClientError::Usage(_))));

        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert!(
            seen[0]
                .ends_with(r#"{"tenant":"acme","scopes":["read","write"],"expires_in":"90d","name":"ci"}"#),
            "{}",
            seen[0]
        );
        assert!(seen[1].starts_with("GET /api/admin/tokens "));
        assert!(
            seen[2].starts_with("DELETE /api/admin/tokens/01JDX3E5C9R2T7VQ4M8N6P0WAB "),
            "only the id: {}",
            seen[2]
        );
        assert!(
            seen[3].starts_with("POST /api/files/F1/link ") && seen[3].ends_with(r#"{"expires_in":600}"#),
            "{}",
            seen[3]
        );
        assert!(seen.iter().all(|r| authorization(r).is_some()));
    }
}
