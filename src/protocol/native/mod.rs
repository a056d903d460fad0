//! depot's own dedup protocol: clients cut files exactly as the server does,
//! ask which chunks are missing, send only those, and commit a manifest. A
//! re-upload costs a few requests; an edited file sends only changed chunks.
//! A long chunk list can be committed in parts ([`parts`]).

pub mod batch;
pub mod parts;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, stream};

use super::answers::{ChunksMissing, FileTooLarge};
use super::file_info;
use crate::http::encoding::REQUEST_ENCODINGS;
use crate::http::{ApiError, AppState, Caller, InPath, JsonBody, Routes, content_length, read_body};
use crate::store::{ChunkBody, ChunkId, Entry, FileId, NewFile};
use crate::wire::{
    ChunkingInfo, CommitRequest, ErrorBody, FileInfo, ManifestChunk, ManifestInfo, MissingRequest,
    MissingResponse, PutChunkResponse, TypePolicyInfo,
};

/// How the server cuts and names chunks, and the limits an upload must
/// meet (file size, file types), so that clients check a file before
/// sending any of it.
#[utoipa::path(get, path = "/api/chunking", tag = "dedup",
    responses((status = 200, description = "Chunking parameters and upload limits", body = ChunkingInfo)))]
pub async fn chunking(State(st): State<AppState>) -> Json<ChunkingInfo> {
    let p = st.config.chunking;
    Json(ChunkingInfo {
        algorithm: "fastcdc-2020".into(),
        normalization: 1,
        min: p.min,
        avg: p.avg,
        max: p.max,
        hash: "blake3".into(),
        chunker_id: p.id(),
        max_chunk_size: st.config.limits.max_chunk_size.0,
        max_missing_query: st.config.limits.max_missing_query,
        max_batch_chunks: Some(batch::MAX_BATCH_CHUNKS),
        max_batch_bytes: Some(batch::max_batch_bytes(&st.config.limits)),
        max_file_size: Some(st.config.limits.max_file_size.0),
        types: Some(TypePolicyInfo::from(&st.config.types)),
        request_encodings: Some(REQUEST_ENCODINGS.iter().map(|&e| e.into()).collect()),
    })
}

/// Which of these chunks the server lacks; the present ones are pinned so
/// that GC cannot take them before the commit.
#[utoipa::path(post, path = "/api/chunks/missing", tag = "dedup",
    request_body = MissingRequest,
    responses(
        (status = 200, description = "The hashes the server lacks", body = MissingResponse),
        (status = 400, description = "Malformed request or hash", body = ErrorBody),
        (status = 413, description = "Too many hashes", body = ErrorBody),
    ))]
pub async fn missing_chunks(
    c: Caller,
    JsonBody(req): JsonBody<MissingRequest>,
) -> Result<Json<MissingResponse>, ApiError> {
    let max = c.st.config.limits.max_missing_query;
    if req.hashes.len() > max {
        return Err(ApiError::PayloadTooLarge(format!("at most {max} hashes per query")));
    }
    let missing = c
        .store_as(move |s, view| {
            let lease = s.default_lease();
            s.missing_in(view, &req.hashes, lease)
        })
        .await?;
    Ok(Json(MissingResponse { missing }))
}

/// Store one chunk.
///
/// The body is the chunk's raw bytes, or a zstd frame of them with
/// `Content-Encoding: zstd` (the server checks the hash of the decoded bytes
/// and may keep the frame as is). 201 when stored, 200 when the server
/// already had it; a hash mismatch stores nothing.
#[utoipa::path(put, path = "/api/chunks/{hash}", tag = "dedup",
    params(("hash" = String, Path, description = "BLAKE3 of the raw bytes, hex", pattern = r"^[0-9a-fA-F]{64}$")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "Stored", body = PutChunkResponse),
        (status = 200, description = "Already present", body = PutChunkResponse),
        (status = 400, description = "Malformed hash or zstd frame", body = ErrorBody),
        (status = 413, description = "Larger than the maximum chunk size", body = ErrorBody),
        (status = 415, description = "Unsupported Content-Encoding", body = ErrorBody),
        (status = 422, description = "The bytes do not hash to the name", body = ErrorBody),
    ))]
pub async fn put_chunk(
    Caller { st, who }: Caller,
    Path(hash): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<PutChunkResponse>), ApiError> {
    let id: ChunkId = hash.parse().map_err(|e| ApiError::BadRequest(format!("{e}")))?;
    let zstd = match headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).map(str::trim) {
        None | Some("") | Some("identity") => false,
        Some(e) if e.eq_ignore_ascii_case("zstd") => true,
        Some(e) => {
            return Err(ApiError::UnsupportedMediaType(format!("Content-Encoding `{e}` is not supported")));
        }
    };
    let limit = st.config.limits.max_chunk_size.0;
    let declared = content_length(&headers);
    if let Some(n) = declared.filter(|&n| n > limit) {
        return Err(ApiError::PayloadTooLarge(format!(
            "a chunk may be at most {limit} bytes, this one declares {n}"
        )));
    }
    let reserve = declared.unwrap_or(limit).min(limit);
    let t = who.tenant.clone();
    st.store.blocking(move |s| s.admit_chunk(&t, declared.unwrap_or(1))).await?;
    let mut budget = st.reserve_body(reserve).await?;
    let bytes = read_body(body, limit as usize, reserve as usize, &mut budget).await?;
    let put = st
        .store
        .blocking(move |s| {
            let lease = s.default_lease();
            let mut put = [if zstd {
                s.put_chunk_zstd(&bytes, &id, lease, limit as usize)?
            } else {
                s.put_chunk(&bytes, Some(&id), lease)?
            }];
            batch::as_seen_by(s, &who.view, &mut put, lease)?;
            Ok(put[0])
        })
        .await?;
    let status = if put.new { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(PutChunkResponse { hash: put.id, len: put.len, new: put.new })))
}

/// One chunk's raw bytes; the stored zstd frame as is when the client
/// accepts `zstd` and the chunk is stored compressed.
#[utoipa::path(get, path = "/api/chunks/{hash}", tag = "dedup",
    params(("hash" = String, Path, description = "BLAKE3 of the raw bytes, hex", pattern = r"^[0-9a-fA-F]{64}$")),
    responses(
        (status = 200, description = "The chunk", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "No such chunk", body = ErrorBody),
    ))]
pub async fn get_chunk(
    Caller { st, who }: Caller,
    Path(hash): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id: ChunkId = hash.parse().map_err(|_| ApiError::NotFound(format!("chunk {hash} not found")))?;
    let accepts_zstd = headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',').any(|e| e.split(';').next().is_some_and(|e| e.trim().eq_ignore_ascii_case("zstd")))
    });
    let (codec, body) = st
        .store
        .blocking(move |s| {
            // A hash is not a read key: only chunks this tenant holds.
            if !s.known_in(&who.view, &[id])?[0] {
                return Err(crate::store::Error::ChunkNotFound(id));
            }
            Ok(match s.chunk_to_send(&id, accepts_zstd)? {
                ChunkBody::Zstd(frame) => (Some("zstd"), frame),
                ChunkBody::Raw(raw) => (None, raw),
            })
        })
        .await?;
    let mut resp = (
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "private, max-age=31536000, immutable"),
            (header::CONTENT_SECURITY_POLICY, super::files::USER_CONTENT_CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response();
    resp.headers_mut()
        .insert(header::ETAG, format!("\"{id}\"").parse().map_err(|_| ApiError::BadRequest("etag".into()))?);
    resp.headers_mut().insert(header::VARY, header::ACCEPT_ENCODING.into());
    // A chunk is at most a few MiB and is fetched whole: Range is ignored
    // (RFC 9110 §14.2 allows it), and said so.
    resp.headers_mut().insert(header::ACCEPT_RANGES, axum::http::HeaderValue::from_static("none"));
    if let Some(c) = codec {
        resp.headers_mut().insert(
            header::CONTENT_ENCODING,
            c.parse().map_err(|_| ApiError::BadRequest("encoding".into()))?,
        );
    }
    Ok(resp)
}

/// Commit a file from chunks the server has.
///
/// Type validation as for every upload. 409 with `missing` listing the
/// chunks the server lacks: send them and commit again.
#[utoipa::path(post, path = "/api/files", tag = "dedup",
    request_body = CommitRequest,
    responses(
        (status = 201, description = "The file", body = FileInfo),
        (status = 400, description = "Malformed request, or lengths that do not add up", body = ErrorBody),
        ChunksMissing,
        FileTooLarge,
        (status = 415, description = "File type rejected, or the body is not `Content-Type: application/json`", body = ErrorBody),
    ))]
pub async fn commit(
    c: Caller,
    JsonBody(req): JsonBody<CommitRequest>,
) -> Result<(StatusCode, [(header::HeaderName, String); 1], Json<FileInfo>), ApiError> {
    let new = NewFile {
        tenant: c.who.tenant.clone(),
        name: crate::store::FileName::parse(&req.name)?,
        declared_type: req.content_type,
        size: req.size,
        chunks: req.chunks.iter().map(|c| Entry { id: c.hash, len: c.len }).collect(),
        content_hash: None,
    };
    let rec = c
        .store_as(move |s, view| {
            // Only chunks this tenant holds may be referenced; the rest are
            // "missing" whatever the store has (and no length is compared).
            let ids: Vec<ChunkId> = new.chunks.iter().map(|e| e.id).collect();
            let unknown = s.unknown_in(view, &ids)?;
            if !unknown.is_empty() {
                return Err(crate::store::Error::MissingChunks(unknown));
            }
            s.finish_file(new)
        })
        .await?;
    let info = file_info(&rec);
    Ok((StatusCode::CREATED, [(header::LOCATION, info.url.clone())], Json(info)))
}

/// A file's chunks in order, with offsets. Streamed a manifest segment at a
/// time, so memory stays flat for any file size.
#[utoipa::path(get, path = "/api/files/{id}/manifest", tag = "dedup",
    params(InPath<FileId>),
    responses(
        InPath::<FileId>,
        (status = 200, description = "The manifest", body = ManifestInfo),
    ))]
pub async fn manifest(c: Caller, InPath(id): InPath<FileId>) -> Result<Response, ApiError> {
    let rec = c.store_as(move |s, view| s.file_in(view, &id)).await?;
    let head = format!(
        "{{\"id\":\"{}\",\"size\":{},\"chunker_id\":{},\"chunks\":[",
        rec.id,
        rec.size,
        serde_json::to_string(&rec.chunker).unwrap_or_else(|_| "\"\"".into())
    );
    let store = c.st.store.clone();
    let starts = rec.segments.clone();
    let segments = stream::iter(0..rec.segments.len()).then(move |seg| {
        let store = store.clone();
        let start = starts[seg];
        async move {
            let entries = store.blocking(move |s| s.segment(&id, seg as u32)).await?;
            let mut out = String::with_capacity(entries.len() * 110);
            let mut at = start;
            for (i, e) in entries.iter().enumerate() {
                if seg > 0 || i > 0 {
                    out.push(',');
                }
                let c = ManifestChunk { hash: e.id, offset: at, len: e.len };
                out.push_str(
                    &serde_json::to_string(&c).map_err(|e| crate::store::Error::Task(e.to_string()))?,
                );
                at += u64::from(e.len);
            }
            Ok::<_, crate::store::Error>(Bytes::from(out))
        }
    });
    let body = stream::once(async move { Ok(Bytes::from(head)) })
        .chain(segments)
        .chain(stream::once(async { Ok(Bytes::from_static(b"]}")) }));
    Ok(([(header::CONTENT_TYPE, "application/json")], Body::from_stream(body)).into_response())
}

/// This protocol's routes: chunking parameters, the missing-query, commit
/// (whole or in parts) and manifest (API), chunk PUT and GET (uploads).
pub fn routes() -> Routes {
    use axum::routing::{get, post, put};
    let api = axum::Router::new()
        .route("/api/files", post(commit))
        .route("/api/commits", post(parts::open_commit))
        .route("/api/commits/{id}", get(parts::commit_status).delete(parts::cancel_commit))
        .route("/api/commits/{id}/segments/{n}", put(parts::put_segment))
        .route("/api/commits/{id}/finish", post(parts::finish_commit))
        .route("/api/files/{id}/manifest", get(manifest))
        .route("/api/chunking", get(chunking))
        .route("/api/chunks/missing", post(missing_chunks));
    let uploads = axum::Router::new()
        .route("/api/chunks", post(batch::put_chunks))
        .route("/api/chunks/{hash}", get(get_chunk).put(put_chunk));
    Routes { api, uploads }
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    chunking,
    missing_chunks,
    put_chunk,
    batch::put_chunks,
    get_chunk,
    commit,
    manifest,
    parts::open_commit,
    parts::put_segment,
    parts::commit_status,
    parts::finish_commit,
    parts::cancel_commit
))]
pub struct Doc;
