//! The file endpoints every protocol shares: list, info, download (streaming,
//! Range, conditional requests) and delete.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use utoipa::IntoParams;

use super::answers::JsonShape;
use super::file_info;
use super::range::{RangeRequest, parse_range};
use crate::http::auth::signed_link;
use crate::http::{ApiError, AppState, Caller, InPath, Routes, id_in_path};
use crate::store::{ByteStream, FileId, FileRecord, NameFilter, ReadGuard};
use crate::wire::{ErrorBody, FileInfo, FileList, LinkInfo, LinkRequest};

/// Paging and name search for `GET /api/files`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Files per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// `next_cursor` from the previous page (empty: the first page).
    #[param(pattern = r"^([0-7OoIiLl][0-9A-TV-Za-tv-z]{25})?$")]
    pub cursor: Option<String>,
    /// Only files with exactly this name.
    #[param(max_length = 255)]
    pub name: Option<String>,
    /// Only files whose name contains this, ignoring case.
    #[param(max_length = 255)]
    pub q: Option<String>,
}

/// Longest `name` or `q` accepted, in characters: no stored name is longer
/// (names are at most 255 bytes).
const MAX_SEARCH: usize = 255;

// A file id in a path (`{id}`); a malformed one is simply not found.
id_in_path!(
    FileId,
    std::convert::identity,
    "file",
    "File id (a ULID)",
    r"^[0-7OoIiLl][0-9A-TV-Za-tv-z]{25}$"
);

/// List files, newest first; `name` and `q` find files by name.
///
/// `name` keeps files with exactly that name (an upload under a name that
/// exists makes a second file: this finds all of them), `q` those whose
/// name contains it, ignoring case. Both page like the plain listing.
#[utoipa::path(get, path = "/api/files", tag = "files", params(ListQuery),
    responses(
        (status = 200, description = "A page of files, newest first", body = FileList),
        (status = 400, description = "Bad limit, cursor or search", body = ErrorBody),
    ))]
pub async fn list_files(
    c: Caller,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<FileList>, ApiError> {
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be between 1 and 1000".into()));
    }
    let cursor = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => {
            Some(c.parse::<FileId>().map_err(|_| ApiError::BadRequest(format!("invalid cursor `{c}`")))?)
        }
        None => None,
    };
    let mut filters = Vec::new();
    for (param, value) in [("name", &q.name), ("q", &q.q)] {
        if let Some(v) = value {
            if v.chars().count() > MAX_SEARCH {
                return Err(ApiError::BadRequest(format!("{param} may be at most {MAX_SEARCH} characters")));
            }
        }
    }
    if let Some(n) = q.name {
        filters.push(NameFilter::Exact(n));
    }
    if let Some(sub) = q.q.filter(|s| !s.is_empty()) {
        filters.push(NameFilter::contains(&sub));
    }
    let (files, next) =
        c.store_as(move |s, view| s.find_files(view, &filters, cursor.as_ref(), limit)).await?;
    Ok(Json(FileList {
        files: files.iter().map(file_info).collect(),
        next_cursor: next.map(|n| n.to_string()),
    }))
}

/// A file's record.
#[utoipa::path(get, path = "/api/files/{id}/info", tag = "files",
    params(InPath<FileId>),
    responses(
        InPath::<FileId>,
        (status = 200, description = "The file", body = FileInfo),
    ))]
pub async fn info(c: Caller, InPath(id): InPath<FileId>) -> Result<Json<FileInfo>, ApiError> {
    let rec = c.store_as(move |s, view| s.file_in(view, &id)).await?;
    Ok(Json(file_info(&rec)))
}

/// Download a file, whole or one byte range.
///
/// Streams the chunks in order with bounded read-ahead. `Range` (RFC 9110
/// §14) on GET: one range answers 206 with `Content-Range`; several answer
/// 206 `multipart/byteranges` (overlapping and adjacent ones coalesced, at
/// most 64); 416 with `Content-Range: bytes */size` when none is
/// satisfiable; a Range on an empty file is ignored (200, empty body).
/// `If-Range` (an ETag or a date) makes a stale Range fall back to 200;
/// `If-None-Match` answers 304. HEAD answers exactly what a GET without
/// `Range` would, whatever `Range` says.
#[utoipa::path(get, path = "/api/files/{id}", tag = "files",
    params(
        InPath<FileId>,
        ("Range" = Option<String>, Header, description = "`bytes=a-b`, `bytes=a-` or `bytes=-n`, or several separated by commas (GET only; ignored on HEAD and on an empty file)"),
        ("If-None-Match" = Option<String>, Header, description = "ETag(s) the client has"),
        ("If-Range" = Option<String>, Header, description = "Serve the range only if the file is this ETag"),
        ("disposition" = Option<String>, Query, description = "`inline` to show images, audio, video, PDF and plain text in the browser; anything else downloads as an attachment"),
    ),
    responses(
        InPath::<FileId>,
        (status = 200, description = "The whole file, as the type in its record (`content_type`)", content_type = "*/*", body = Vec<u8>),
        (status = 206, description = "One byte range (with `Content-Range`), or several as `multipart/byteranges`",
            content((Vec<u8> = "application/octet-stream"), (Vec<u8> = "multipart/byteranges"))),
        (status = 304, description = "Not modified"),
        (status = 416, description = "Range not satisfiable", body = ErrorBody),
    ))]
pub async fn download(
    Caller { st, who }: Caller,
    method: Method,
    // After the query, as before the id was typed: a bad query answers 400
    // whatever the id.
    Query(q): Query<DownloadQuery>,
    InPath(id): InPath<FileId>,
    req_headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (rec, guard) = st.store.open_file_in(&who.view, id).await?;
    let etag = format!("\"{}\"", rec.manifest_digest);
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, header_value(&etag));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::LAST_MODIFIED, header_value(&http_date(rec.created_ms)));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));

    if let Some(inm) = req_headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        if etag_list_matches(inm, &etag) {
            return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
        }
    }
    headers.insert(header::CONTENT_TYPE, header_value(&rec.content_type));
    let inline = q.disposition.as_deref() == Some("inline") && safe_inline(&rec.content_type);
    headers.insert(header::CONTENT_DISPOSITION, header_value(&content_disposition(&rec.name, inline)));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Stored bytes never run as a page of this origin, even when opened.
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(USER_CONTENT_CSP));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));

    // Range applies to GET only (RFC 9110 §14.2): HEAD answers exactly
    // what a GET without Range would.
    let range = match req_headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(r)
            if method == Method::GET && if_range_holds(req_headers.get(header::IF_RANGE), &etag, &rec) =>
        {
            parse_range(r, rec.size)
        }
        _ => RangeRequest::Full,
    };
    let (status, body) = match range {
        RangeRequest::Full => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(rec.size));
            (StatusCode::OK, body_of(&st, &method, &rec, guard, 0, rec.size).await?)
        }
        RangeRequest::Partial { start, end } => {
            headers.insert(header::CONTENT_RANGE, header_value(&format!("bytes {start}-{end}/{}", rec.size)));
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end + 1 - start));
            (StatusCode::PARTIAL_CONTENT, body_of(&st, &method, &rec, guard, start, end + 1).await?)
        }
        RangeRequest::Multi(ranges) => {
            let parts = Multipart::new(&rec);
            headers.insert(header::CONTENT_TYPE, header_value(&parts.content_type()));
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(parts.content_length(&ranges)));
            (StatusCode::PARTIAL_CONTENT, parts.body(&st, &rec, guard, ranges))
        }
        RangeRequest::Unsatisfiable => return Err(ApiError::RangeNotSatisfiable { size: rec.size }),
    };
    Ok((status, headers, body).into_response())
}

/// The body for bytes `start..end` of an opened file (empty for HEAD), with
/// its first frame already read. The answer's head then goes out with that
/// frame in one write: for a short range, hyper otherwise flushed the head
/// alone while the read was pending, and the client woke up twice per
/// answer (docs/PERFORMANCE.md, D2). And a read that fails at once is an
/// error answer, not a connection cut after a success status.
///
/// # Errors
/// The store's error for the first frame's read (a damaged chunk: 500).
async fn body_of(
    st: &AppState,
    method: &Method,
    rec: &FileRecord,
    guard: ReadGuard,
    start: u64,
    end: u64,
) -> Result<Body, ApiError> {
    if *method == Method::HEAD {
        return Ok(Body::empty());
    }
    let mut s = st.store.read_range(rec, guard, start, end);
    let first = match s.next().await {
        Some(first) => first?,
        None => return Ok(Body::empty()),
    };
    let rest = logged(rec.id, s);
    Ok(Body::from_stream(futures_util::stream::once(std::future::ready(Ok(first))).chain(rest)))
}

/// Logs the error that ends a download stream early.
fn logged(id: FileId, s: ByteStream) -> impl futures_util::Stream<Item = crate::store::Result<Bytes>> {
    s.inspect(move |r| {
        if let Err(e) = r {
            // The status line is gone; all that is left is to cut the
            // connection so that the client sees a short body.
            tracing::error!(file = %id, error = %e, "download aborted");
        }
    })
}

/// A `multipart/byteranges` answer (RFC 9110 §14.6): each part carries its
/// own `Content-Type` and `Content-Range`.
struct Multipart {
    boundary: String,
    content_type: String,
    size: u64,
}

impl Multipart {
    fn new(rec: &FileRecord) -> Self {
        // Random per answer: a part's bytes could contain any fixed string.
        let boundary = format!("depot-{:032x}", rand::random::<u128>());
        Multipart { boundary, content_type: rec.content_type.clone(), size: rec.size }
    }

    fn content_type(&self) -> String {
        format!("multipart/byteranges; boundary={}", self.boundary)
    }

    fn part_head(&self, (start, end): (u64, u64)) -> String {
        format!(
            "\r\n--{}\r\nContent-Type: {}\r\nContent-Range: bytes {start}-{end}/{}\r\n\r\n",
            self.boundary, self.content_type, self.size
        )
    }

    fn tail(&self) -> String {
        format!("\r\n--{}--\r\n", self.boundary)
    }

    fn content_length(&self, ranges: &[(u64, u64)]) -> u64 {
        ranges.iter().map(|&r| self.part_head(r).len() as u64 + r.1 + 1 - r.0).sum::<u64>()
            + self.tail().len() as u64
    }

    fn body(self, st: &AppState, rec: &FileRecord, guard: ReadGuard, ranges: Vec<(u64, u64)>) -> Body {
        let mut parts: Vec<ByteStream> = Vec::with_capacity(ranges.len() * 2 + 1);
        for &(start, end) in &ranges {
            let head = Bytes::from(self.part_head((start, end)));
            parts.push(Box::pin(futures_util::stream::once(async move { Ok(head) })));
            parts.push(st.store.read_range(rec, guard.clone(), start, end + 1));
        }
        let tail = Bytes::from(self.tail());
        parts.push(Box::pin(futures_util::stream::once(async move { Ok(tail) })));
        Body::from_stream(logged(rec.id, Box::pin(futures_util::stream::iter(parts).flatten())))
    }
}

/// Delete a file. Its chunks are reclaimed by GC once no other file uses them.
#[utoipa::path(delete, path = "/api/files/{id}", tag = "files",
    params(InPath<FileId>),
    responses(
        InPath::<FileId>,
        (status = 204, description = "Deleted"),
    ))]
pub async fn delete(c: Caller, InPath(id): InPath<FileId>) -> Result<StatusCode, ApiError> {
    c.store_as(move |s, view| s.delete_file(view, &id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Make a signed download link.
///
/// Anyone holding the link may GET (with `Range`) or HEAD the file, with no
/// token, until it expires or the token that made it is revoked; any change
/// to its path, `exp`, `kid` or `sig` voids it. For browsers: `<a href>`,
/// `<video src>`, downloads that stream to disk.
#[utoipa::path(post, path = "/api/files/{id}/link", tag = "files",
    params(InPath<FileId>),
    request_body(content = Option<LinkRequest>, description = "Optional: without a body the link lives 3600 s"),
    responses(
        InPath::<FileId>,
        (status = 201, description = "The link", body = LinkInfo),
        (status = 400, description = "Bad expiry, or malformed JSON", body = ErrorBody),
        JsonShape,
    ))]
pub async fn link(
    Caller { st, who }: Caller,
    InPath(id): InPath<FileId>,
    req: Option<Json<Option<LinkRequest>>>,
) -> Result<(StatusCode, Json<LinkInfo>), ApiError> {
    // No body, `null` and `{}` all mean the default.
    let ttl = req.and_then(|r| r.0).and_then(|r| r.expires_in).unwrap_or(3600);
    let max = st.config.auth.link_max_ttl.0.as_secs();
    if ttl == 0 || ttl > max {
        return Err(ApiError::BadRequest(format!("expires_in must be 1 to {max} seconds")));
    }
    let (url, exp) = st
        .store
        .blocking(move |s| {
            s.file_in(&who.view, &id)?;
            signed_link(s, &who, &id, ttl)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(LinkInfo { url, expires_at: crate::wire::rfc3339(exp * 1000) })))
}

/// Download options.
#[derive(Debug, Default, Deserialize)]
pub struct DownloadQuery {
    /// `inline` shows images, audio, video and plain text in the browser;
    /// anything else is always an attachment.
    pub disposition: Option<String>,
}

/// The policy on every stored file's bytes: no script, no plugin, its own
/// origin (the CSP `sandbox` directive).
pub const USER_CONTENT_CSP: &str = "sandbox; default-src 'none'; img-src 'self'; media-src 'self'";

/// Types a browser may show inline: media and plain text, never HTML, SVG
/// or XML (they can carry script).
fn safe_inline(content_type: &str) -> bool {
    let t = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    matches!(
        t.as_str(),
        "image/png" | "image/jpeg" | "image/gif" | "image/webp" | "text/plain" | "application/pdf"
    ) || t.starts_with("audio/")
        || t.starts_with("video/")
}

/// This protocol's routes: list, info, download, delete.
pub fn routes() -> Routes {
    use axum::routing::get;
    let api = axum::Router::new()
        .route("/api/files", get(list_files))
        .route("/api/files/{id}", get(download).delete(delete))
        .route("/api/files/{id}/info", get(info))
        .route("/api/files/{id}/link", axum::routing::post(link));
    Routes { api, ..Default::default() }
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list_files, info, download, delete, link))]
pub struct Doc;

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

fn http_date(unix_ms: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms))
}

/// `If-None-Match`: `*` or a list of (weak or strong) tags, compared weakly.
fn etag_list_matches(header: &str, etag: &str) -> bool {
    let ours = etag.trim_start_matches("W/");
    header.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == ours)
}

/// `If-Range`: an ETag must match strongly; a date must not be older than
/// the file (files never change, so any date from after its creation holds).
fn if_range_holds(value: Option<&HeaderValue>, etag: &str, rec: &FileRecord) -> bool {
    let Some(v) = value.and_then(|v| v.to_str().ok()).map(str::trim) else { return true };
    if v.starts_with('"') || v.starts_with("W/") {
        return v == etag;
    }
    match httpdate::parse_http_date(v) {
        Ok(t) => {
            let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            secs >= rec.created_ms / 1000
        }
        Err(_) => false,
    }
}

/// `Content-Disposition: attachment` with an ASCII fallback name and the
/// exact name in RFC 5987 form (RFC 6266).
pub fn content_disposition(name: &str, inline: bool) -> String {
    let fallback: String = name
        .chars()
        .map(|c| if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' { c } else { '_' })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    let kind = if inline { "inline" } else { "attachment" };
    format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disposition_escapes() {
        assert_eq!(
            content_disposition("naïve report \"v2\".pdf", false),
            "attachment; filename=\"na_ve report _v2_.pdf\"; filename*=UTF-8''na%C3%AFve%20report%20%22v2%22.pdf"
        );
    }

    #[test]
    fn etag_lists() {
        assert!(etag_list_matches("\"a\", \"b\"", "\"b\""));
        assert!(etag_list_matches("W/\"b\"", "\"b\""));
        assert!(etag_list_matches("*", "\"b\""));
        assert!(!etag_list_matches("\"c\"", "\"b\""));
    }
}
