//! Several chunks in one request (`POST /api/chunks`): one durability
//! barrier and one metadata write for all of them, where a `PUT` per chunk
//! pays one each. A cold upload's server waited on a flush per chunk
//! (2,875 `syncfs` for the 3,327 chunks of a GiB sent four at a time:
//! docs/PERFORMANCE.md, U1); in batches of 4 MiB it waits on one per batch.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::Multipart;
use axum::extract::multipart::{Field, MultipartError};
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};

use crate::config::LimitsConfig;
use crate::http::{ApiError, Caller, Reservation, content_length};
use crate::store::{ChunkId, Put, Store, View};
use crate::wire::{ErrorBody, PutChunkResponse, PutChunksResponse};

/// Most chunks one `POST /api/chunks` may carry.
pub const MAX_BATCH_CHUNKS: usize = 256;

/// Body bytes one `POST /api/chunks` may carry: 4 MiB (a batch is read
/// into one pooled chunk buffer: `store::buffer::POOLED_MAX`), or one chunk
/// of `limits.max_chunk_size` with room for its multipart framing.
pub fn max_batch_bytes(limits: &LimitsConfig) -> u64 {
    (4u64 << 20).max(limits.max_chunk_size.0 + (64 << 10))
}

/// Store several chunks.
///
/// A `multipart/form-data` body (RFC 7578) of at most `max_batch_chunks`
/// parts and `max_batch_bytes` bytes (`GET /api/chunking`). Each part is
/// one chunk: its name (`Content-Disposition: form-data; name="…"`) is the
/// BLAKE3 of its raw bytes, hex; its `Content-Type` is
/// `application/octet-stream` (or absent) for the raw bytes, or
/// `application/zstd` for a zstd frame of them (RFC 8878). Every part is
/// checked as `PUT /api/chunks/{hash}` checks one before any is stored; then
/// all are stored with one durability barrier, so the answer says they are
/// durable. On any error nothing is stored. The answer lists the chunks in
/// the order of the parts; `new` is false for a chunk the server (for a
/// tenant: the tenant) already had, and for a repeat within the request.
#[utoipa::path(post, path = "/api/chunks", tag = "dedup",
    request_body(content_type = "multipart/form-data", description = "One part per chunk, named by its hash"),
    responses(
        (status = 200, description = "Stored (or already present), in the order of the parts", body = PutChunksResponse),
        (status = 400, description = "Malformed body, part name or zstd frame; no parts", body = ErrorBody),
        (status = 413, description = "Too many parts, too many bytes, or a part larger than the maximum chunk size", body = ErrorBody),
        (status = 415, description = "Not multipart/form-data, or a part neither application/octet-stream nor application/zstd", body = ErrorBody),
        (status = 422, description = "A part's bytes do not hash to its name", body = ErrorBody),
    ))]
pub async fn put_chunks(
    Caller { st, who }: Caller,
    req: Request,
) -> Result<Json<PutChunksResponse>, ApiError> {
    let headers = req.headers();
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("multipart/form-data"));
    if !form {
        return Err(ApiError::UnsupportedMediaType(
            "the body must be multipart/form-data, one part per chunk".into(),
        ));
    }
    let max_bytes = max_batch_bytes(&st.config.limits);
    let declared = content_length(headers);
    if let Some(n) = declared.filter(|&n| n > max_bytes) {
        return Err(ApiError::PayloadTooLarge(format!(
            "a batch may be at most {max_bytes} bytes, this one declares {n}"
        )));
    }
    // The body's bytes, framing included, are counted as they arrive: a
    // body without `Content-Length` cannot carry more than the limit in
    // preamble, part headers or padding either (413 from the parser), so
    // what the parser may hold of them is within the reservation below.
    let (parts, body) = req.into_parts();
    let limited = Body::new(http_body_util::Limited::new(body, max_bytes as usize));
    let mut mp = Multipart::from_request(Request::from_parts(parts, limited), &()).await?;
    let max_chunk = st.config.limits.max_chunk_size.0;
    let reserve = declared.unwrap_or(max_bytes).min(max_bytes);
    let mut budget = st.reserve_body(reserve).await?;
    // Every part into one buffer of the body's size, from the chunk-buffer
    // pool (a batch is at most `POOLED_MAX`): memory the server used before,
    // not fresh pages to fault in (a buffer per part, most of them new,
    // cost 240,000 page faults per GiB uploaded).
    let mut buf = crate::store::buffer::take(reserve as usize);
    let mut parts: Vec<(ChunkId, std::ops::Range<usize>, bool)> = Vec::new();
    while let Some(field) = mp.next_field().await.map_err(|e| over(e, max_bytes))? {
        if parts.len() == MAX_BATCH_CHUNKS {
            return Err(ApiError::PayloadTooLarge(format!(
                "a batch may carry at most {MAX_BATCH_CHUNKS} chunks"
            )));
        }
        let name = crate::protocol::form_part(field.headers()).name.unwrap_or_default();
        let id: ChunkId = name.parse().map_err(|_| {
            ApiError::BadRequest(format!("part `{name}` is not named by a chunk's hash (64 hex digits)"))
        })?;
        let zstd = match field.content_type().map(str::trim) {
            None => false,
            Some(t) if t.eq_ignore_ascii_case("application/octet-stream") => false,
            Some(t) if t.eq_ignore_ascii_case("application/zstd") => true,
            Some(t) => {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "part `{name}` is `{t}`: application/octet-stream or application/zstd"
                )));
            }
        };
        // Each part starts where its object is written from.
        crate::store::objects::start_chunk(&mut buf, reserve as usize);
        let start = buf.len();
        read_part(field, &mut budget, &mut buf, max_chunk, max_bytes).await?;
        parts.push((id, start..buf.len(), zstd));
    }
    let len = buf.len();
    let body = buf.freeze(0..len);
    let sent: Vec<(ChunkId, Bytes, bool)> =
        parts.into_iter().map(|(id, range, zstd)| (id, body.slice(range), zstd)).collect();
    if sent.is_empty() {
        return Err(ApiError::BadRequest("the batch has no parts".into()));
    }
    let t = who.tenant.clone();
    let puts = st
        .store
        .blocking(move |s| {
            let largest = sent.iter().map(|(_, b, _)| b.len() as u64).max().unwrap_or(0);
            s.admit_chunk(&t, largest)?;
            let lease = s.default_lease();
            let mut puts = s.put_sent_chunks(&sent, lease, max_chunk as usize)?;
            as_seen_by(s, &who.view, &mut puts, lease)?;
            Ok(puts)
        })
        .await?;
    drop(budget);
    let chunks = puts.into_iter().map(|p| PutChunkResponse { hash: p.id, len: p.len, new: p.new }).collect();
    Ok(Json(PutChunksResponse { chunks }))
}

/// (Also for `PUT /api/chunks/{hash}`.) Makes `puts`, just stored, what `view` is told: for a tenant, `new` is
/// new to it (whether another tenant has the chunk is not for it to learn;
/// a repeat within the request is not new) and the chunks are leased to it.
///
/// # Errors
/// Metadata backend errors.
pub(super) fn as_seen_by(s: &Store, view: &View, puts: &mut [Put], lease: u64) -> crate::store::Result<()> {
    let View::Tenant(t) = view else { return Ok(()) };
    let ids: Vec<ChunkId> = puts.iter().map(|p| p.id).collect();
    let known = s.known_in(view, &ids)?;
    let mut seen = std::collections::HashSet::new();
    for (put, known) in puts.iter_mut().zip(known) {
        put.new = !known && seen.insert(put.id);
    }
    s.lease_to(t, &ids, lease)
}

/// Appends one part's bytes to `buf` (what the request's parts before it
/// left there): at most `max_chunk` of them, in the budget. (The body as a
/// whole is limited to `max_bytes` before the parser reads it.)
async fn read_part(
    mut field: Field<'_>,
    budget: &mut Reservation,
    buf: &mut crate::store::buffer::Buffer,
    max_chunk: u64,
    max_bytes: u64,
) -> Result<(), ApiError> {
    let start = buf.len() as u64;
    while let Some(piece) =
        budget.next(buf.held() as u64, field.chunk()).await?.map_err(|e| over(e, max_bytes))?
    {
        if buf.len() as u64 - start + piece.len() as u64 > max_chunk {
            return Err(ApiError::PayloadTooLarge(format!("a chunk may be at most {max_chunk} bytes")));
        }
        buf.extend_from_slice(&piece);
    }
    Ok(())
}

/// A parser error as the answer says it: the body's limit (`max_bytes`)
/// reached is 413 with the limit named, anything else as
/// [`ApiError::from`] makes it.
fn over(e: MultipartError, max_bytes: u64) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge(format!(
            "a batch may be at most {max_bytes} bytes, framing included"
        ));
    }
    e.into()
}
