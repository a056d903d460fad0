//! Authentication and authorization: who is asking ([`Principal`]), resolved
//! once per request by [`authenticate`], and what each route needs
//! ([`required`], the one scope table).
//!
//! - Credentials: `Authorization: Bearer dpt_…`, or Basic with the token as
//!   password (`curl -u :$TOKEN`, netrc). Never the query string — except
//!   a signed link's `exp`/`kid`/`sig`, which carry no token.
//! - Unknown, malformed, wrong, expired and revoked tokens all get the same
//!   401 body with `WWW-Authenticate: Bearer realm="depot"`.
//! - A missing scope on one's own tenant is 403; another tenant's ids are
//!   answered 404 by the handlers (the store's [`View`]).
//! - `local` mode: no token needed, but only loopback `Host`s (DNS
//!   rebinding) and loopback or absent `Origin`s (other web pages); a token
//!   sent anyway is honoured. `open` mode: no checks at all.
//! - Signed links (`GET`/`HEAD /api/files/{id}?exp=…&kid=…&sig=…`): BLAKE3
//!   keyed with the server's link key over method class, path, expiry and
//!   token id; valid until `exp` and while the token that made it lives.
//!
//! The tus method override runs before routing and before this layer, so the
//! scope is checked against the method the handler will see.

use std::net::IpAddr;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use super::{ApiError, AppState};
use crate::config::AuthMode;
use crate::store::{FileId, Scope, Scopes, Store, Tenant, TokenId, TokenRecord, View};

/// Who is asking, and what they may do.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token used; `None` in `local`/`open` mode without one.
    pub token: Option<TokenId>,
    /// Where new files and uploads go.
    pub tenant: Tenant,
    /// What may be seen: every tenant (admin, `local`, `open`) or one.
    pub view: View,
    pub scopes: Scopes,
}

impl Principal {
    /// The caller in `local` and `open` mode without a token: tenant
    /// `default`, every scope, every tenant visible (the store answers as it
    /// did before tenants existed).
    pub fn unauthenticated() -> Self {
        Self { token: None, tenant: Tenant::default(), view: View::All, scopes: Scopes::all() }
    }

    fn of(rec: &TokenRecord) -> Self {
        Self { token: Some(rec.id), tenant: rec.tenant.clone(), view: rec.view(), scopes: rec.scopes }
    }

    /// # Errors
    /// [`ApiError::Forbidden`] naming the scope.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.has(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("this token lacks the `{}` scope", scope.as_str())))
        }
    }

    /// Whether it sees every tenant's figures (`/api/stats`).
    pub fn is_admin(&self) -> bool {
        self.view == View::All && self.scopes.has(Scope::Admin)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // Set by `authenticate` on every routed request; absent only if the
        // layer is missing, which must not grant anything.
        parts.extensions.get::<Principal>().cloned().ok_or_else(unauthorized)
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: health probes, the API docs, CORS preflights.
    Public,
    /// Any valid credentials.
    Authenticated,
    Scope(Scope),
    /// `/metrics`: `metrics` or `admin`.
    Metrics,
    /// Checked by the handler, which answers in its protocol's dialect
    /// (the browser libraries' 415 rule for resumable.js / flow.js pieces).
    Handler,
}

/// The scope table: what each route needs, by method and path.
pub fn required(method: &Method, path: &str) -> Need {
    use Scope::*;
    let read_like = matches!(*method, Method::GET | Method::HEAD);
    if *method == Method::OPTIONS {
        return Need::Public;
    }
    match path {
        // Probes, the API's documents, and the web page (which holds no
        // data: it asks for a token itself).
        "/healthz" | "/readyz" | "/api/openapi.json" | "/" => Need::Public,
        p if p.starts_with("/ui/") => Need::Public,
        p if p == "/api/docs" || p.starts_with("/api/docs/") => Need::Public,
        "/metrics" => Need::Metrics,
        p if p.starts_with("/api/admin/") || p == "/api/admin" => Need::Scope(Admin),
        "/api/chunking" => Need::Authenticated,
        "/api/stats" => Need::Scope(Read),
        "/api/chunks/missing" | "/api/chunks" => Need::Scope(Write),
        // Commits in parts, every step (status and cancel included), as
        // `POST /api/files`.
        p if p == "/api/commits" || p.starts_with("/api/commits/") => Need::Scope(Write),
        "/api/files/upload/chunked" => Need::Handler,
        "/api/files/upload" => Need::Scope(Write),
        "/api/files" if read_like => Need::Scope(Read),
        "/api/files" => Need::Scope(Write),
        p if p.starts_with("/api/tus") => Need::Scope(Write),
        p if p.starts_with("/api/chunks/") && read_like => Need::Scope(Read),
        p if p.starts_with("/api/chunks/") => Need::Scope(Write),
        p if p.starts_with("/api/files/") && *method == Method::DELETE => Need::Scope(Delete),
        p if p.starts_with("/api/files/") => Need::Scope(Read),
        _ => Need::Authenticated,
    }
}

fn unauthorized() -> ApiError {
    ApiError::Unauthorized("a valid token is required: send `Authorization: Bearer <token>`".into())
}

/// The token in `Authorization` (Bearer, or Basic with the token as
/// password); `Err` when the header is there but unusable.
fn credentials(headers: &HeaderMap) -> Result<Option<String>, ()> {
    let Some(v) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let v = v.to_str().map_err(|_| ())?.trim();
    let (scheme, rest) = v.split_once(' ').ok_or(())?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Some(rest.to_string()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = STANDARD.decode(rest).map_err(|_| ())?;
        let text = String::from_utf8(raw).map_err(|_| ())?;
        let (_, password) = text.split_once(':').ok_or(())?;
        return Ok(Some(password.to_string()));
    }
    Err(())
}

/// Whether `host` (a `Host` header or an origin's host, port allowed) names
/// this machine's loopback interface.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    // [v6]:port, v4:port, name:port
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':')
            .map_or(host, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host })
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether an `Origin` header names a loopback web origin.
pub fn is_loopback_origin(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else { return false };
    matches!(scheme, "http" | "https") && !rest.contains('/') && is_loopback_host(rest)
}

/// `local` mode's checks against other web pages and DNS rebinding.
fn local_only(headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(host) = headers.get(header::HOST) {
        if !host.to_str().is_ok_and(is_loopback_host) {
            return Err(ApiError::Forbidden(
                "auth.mode is `local`: only requests to a loopback host name are served".into(),
            ));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        if !origin.to_str().is_ok_and(is_loopback_origin) {
            return Err(ApiError::Forbidden(
                "auth.mode is `local`: requests from other web origins are refused".into(),
            ));
        }
    }
    Ok(())
}

/// Middleware: resolves the [`Principal`], checks the route's [`Need`],
/// and hands the principal to the handler.
pub async fn authenticate(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    // The failure budget of the caller's address, when rate limits are on.
    // Only requests that present credentials spend or meet it: a page's
    // calls before its user signs in (401, no token) are not guesses.
    let presents = parts.headers.contains_key(header::AUTHORIZATION) || Link::from_query(&parts).is_some();
    let budget = st.auth_failures.as_deref().filter(|_| presents).map(|f| {
        let peer =
            parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
        (f, f.client(peer, &parts.headers))
    });
    if let Some(retry_after) = budget.and_then(|(f, ip)| f.blocked(ip)) {
        return ApiError::TooManyRequests { retry_after }.into_response();
    }
    match resolve(&st, &parts).await {
        Ok(Some(p)) => {
            parts.extensions.insert(p);
            next.run(Request::from_parts(parts, body)).await
        }
        Ok(None) => next.run(Request::from_parts(parts, body)).await,
        Err(e @ ApiError::Unauthorized(_)) => match budget.and_then(|(f, ip)| f.failed(ip)) {
            Some(retry_after) => ApiError::TooManyRequests { retry_after }.into_response(),
            None => e.into_response(),
        },
        Err(e) => e.into_response(),
    }
}

async fn resolve(st: &AppState, req: &Parts) -> Result<Option<Principal>, ApiError> {
    let mode = st.config.auth.mode;
    if mode == AuthMode::Local {
        local_only(&req.headers)?;
    }
    let need = required(&req.method, req.uri.path());
    if need == Need::Public {
        return Ok(None);
    }
    let principal = if let Some(link) = Link::from_query(req) {
        link.verify(st).await?
    } else {
        match credentials(&req.headers) {
            Err(()) => return Err(unauthorized()),
            Ok(Some(token)) => {
                // A token seen in the last seconds is checked here, with no
                // hop to a blocking thread for the metadata read.
                let rec = match st.store.authenticate_cached(&token) {
                    Some(rec) => rec,
                    None => st.store.blocking(move |s| s.authenticate(&token)).await?,
                };
                Principal::of(&rec.ok_or_else(unauthorized)?)
            }
            Ok(None) if mode == AuthMode::Token => return Err(unauthorized()),
            Ok(None) => Principal::unauthenticated(),
        }
    };
    match need {
        Need::Scope(s) => principal.require(s)?,
        Need::Metrics if !principal.scopes.has(Scope::Metrics) => principal.require(Scope::Admin)?,
        _ => {}
    }
    Ok(Some(principal))
}

/// The `kid` of links made without a token (`local`/`open` mode); such
/// links work only while the server runs in one of those modes.
const NO_TOKEN: &str = "-";

/// A signed link's query: `exp` (unix seconds), `kid`, `sig`.
struct Link {
    method_class: &'static str,
    path: String,
    exp: u64,
    kid: String,
    sig: String,
}

impl Link {
    /// The link parameters of a GET/HEAD, if it carries `sig`.
    fn from_query(req: &Parts) -> Option<Link> {
        if !matches!(req.method, Method::GET | Method::HEAD) {
            return None;
        }
        let q = req.uri.query()?;
        let (mut exp, mut kid, mut sig) = (None, None, None);
        for (k, v) in form_pairs(q) {
            match k.as_str() {
                "exp" => exp = Some(v),
                "kid" => kid = Some(v),
                "sig" => sig = Some(v),
                _ => {}
            }
        }
        let sig = sig?;
        Some(Link {
            method_class: "GET|HEAD",
            path: req.uri.path().to_string(),
            exp: exp.and_then(|e| crate::decimal::parse_u64(&e).ok()).unwrap_or(0),
            kid: kid.unwrap_or_default(),
            sig,
        })
    }

    async fn verify(self, st: &AppState) -> Result<Principal, ApiError> {
        let invalid = || ApiError::Forbidden("this link is invalid or has expired".into());
        let now_s = st.store.now_ms() / 1000;
        if self.exp <= now_s {
            return Err(invalid());
        }
        let mode = st.config.auth.mode;
        let principal = st
            .store
            .blocking(move |s| {
                let want = sign(s, &self.path, self.exp, &self.kid)?;
                let got = URL_SAFE_NO_PAD
                    .decode(&self.sig)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .map(blake3::Hash::from_bytes);
                // blake3::Hash's equality is constant-time.
                if got != Some(want) || self.method_class != "GET|HEAD" {
                    return Ok(None);
                }
                if self.kid == NO_TOKEN {
                    return Ok((mode != AuthMode::Token).then(Principal::unauthenticated));
                }
                let Ok(id) = self.kid.parse::<TokenId>() else { return Ok(None) };
                Ok(s.token_for_link(&id)?.filter(|t| t.live(s.now_ms()) && t.scopes.has(Scope::Read)).map(
                    |t| {
                        let mut p = Principal::of(&t);
                        p.scopes = Scopes::from_iter([Scope::Read]);
                        p
                    },
                ))
            })
            .await?;
        principal.ok_or_else(invalid)
    }
}

/// `application/x-www-form-urlencoded` pairs of a query string.
fn form_pairs(q: &str) -> Vec<(String, String)> {
    let Ok(uri) = format!("/?{q}").parse::<axum::http::Uri>() else { return Vec::new() };
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri).map(|q| q.0).unwrap_or_default()
}

/// The MAC of a link: BLAKE3 keyed with the server's `links` key.
fn sign(store: &Store, path: &str, exp: u64, kid: &str) -> crate::store::Result<blake3::Hash> {
    let key = store.server_key("links")?;
    Ok(blake3::keyed_hash(&key, format!("depot link v1\nGET|HEAD\n{path}\n{exp}\n{kid}").as_bytes()))
}

/// Makes a signed link to a file for `principal`, valid `ttl_s` seconds:
/// the path and query to put after the server's origin, and its expiry
/// (unix seconds).
///
/// # Errors
/// Metadata backend errors.
pub fn signed_link(
    store: &Store,
    principal: &Principal,
    file: &FileId,
    ttl_s: u64,
) -> crate::store::Result<(String, u64)> {
    let exp = store.now_ms() / 1000 + ttl_s;
    let kid = principal.token.map_or_else(|| NO_TOKEN.to_string(), |t| t.to_string());
    let path = format!("/api/files/{file}");
    let sig = URL_SAFE_NO_PAD.encode(sign(store, &path, exp, &kid)?.as_bytes());
    Ok((format!("{path}?exp={exp}&kid={kid}&sig={sig}"), exp))
}

/// In `token` mode with no token yet: makes the admin token (tenant
/// `default`, every scope, never expires) and writes it to
/// `<data_dir>/admin.token` with mode 0600. Returns the file's path when
/// it made one.
///
/// # Errors
/// Metadata backend and I/O errors.
pub fn bootstrap_admin(store: &Store) -> crate::store::Result<Option<std::path::PathBuf>> {
    let first =
        store.issue_first_token(Tenant::default(), Scopes::all(), Some("admin (first start)".into()))?;
    let Some((_, token)) = first else { return Ok(None) };
    let path = store.data_dir().join("admin.token");
    write_private(&path, format!("{token}\n").as_bytes())?;
    Ok(Some(path))
}

/// Writes a file only its owner can read (0600), replacing any.
fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_and_origins() {
        for h in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:1",
            "[::1]:8080",
            "LOCALHOST.",
            "a.localhost",
            "127.1.2.3",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["example.com", "127.0.0.1.evil.com", "10.0.0.1:8080", "[::2]", "localhost.evil.com", ""] {
            assert!(!is_loopback_host(h), "{h}");
        }
        assert!(is_loopback_origin("http://localhost:3000"));
        assert!(is_loopback_origin("https://127.0.0.1"));
        assert!(!is_loopback_origin("null"));
        assert!(!is_loopback_origin("http://evil.com"));
        assert!(!is_loopback_origin("file://localhost"));
    }

    #[test]
    fn credentials_take_bearer_and_basic_password() {
        let mut h = HeaderMap::new();
        assert_eq!(credentials(&h), Ok(None));
        h.insert(header::AUTHORIZATION, "Bearer dpt_x".parse().unwrap());
        assert_eq!(credentials(&h), Ok(Some("dpt_x".into())));
        h.insert(header::AUTHORIZATION, format!("Basic {}", STANDARD.encode(":dpt_y")).parse().unwrap());
        assert_eq!(credentials(&h), Ok(Some("dpt_y".into())));
        h.insert(header::AUTHORIZATION, "Digest x".parse().unwrap());
        assert_eq!(credentials(&h), Err(()));
    }

    #[test]
    fn the_scope_table() {
        use Need::{Authenticated, Handler, Metrics, Public};
        let write = Need::Scope(Scope::Write);
        for (m, p, need) in [
            (Method::GET, "/healthz", Public),
            (Method::GET, "/", Public),
            (Method::GET, "/ui/app.js", Public),
            (Method::GET, "/api/files", Need::Scope(Scope::Read)),
            (Method::POST, "/api/files", write),
            (Method::DELETE, "/api/files/01ABC", Need::Scope(Scope::Delete)),
            (Method::PATCH, "/api/tus/abc", write),
            (Method::HEAD, "/api/tus/abc", write),
            (Method::GET, "/api/chunks/ab", Need::Scope(Scope::Read)),
            (Method::PUT, "/api/chunks/ab", write),
            (Method::POST, "/api/chunks", write),
            (Method::POST, "/api/files/upload/chunked", Handler),
            (Method::POST, "/api/commits", write),
            (Method::GET, "/api/commits/ab", write),
            (Method::PUT, "/api/commits/ab/segments/0", write),
            (Method::POST, "/api/commits/ab/finish", write),
            (Method::DELETE, "/api/commits/ab", write),
            (Method::GET, "/metrics", Metrics),
            (Method::POST, "/api/admin/tokens", Need::Scope(Scope::Admin)),
            (Method::GET, "/nowhere", Authenticated),
        ] {
            assert_eq!(required(&m, p), need, "{m} {p}");
        }
    }
}
