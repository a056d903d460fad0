//! The chunked-upload protocol of resumable.js and flow.js: a test GET per
//! piece ("do you have it?") and a multipart POST per piece. Each piece is
//! stored as one chunk and recorded in the upload's session; the last piece
//! to arrive finishes the file.

use axum::Json;
use axum::body::Bytes;
use axum::extract::multipart::Field;
use axum::extract::{FromRequest, Multipart, Query, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::params::PieceParams;
use crate::http::{ApiError, AppState, Caller, Dialect, Principal, Reservation, UploadGuard};
use crate::protocol::file_info;
use crate::store::{FileName, PieceState, Scope, SeedSpec, Tenant};
use crate::wire::{ErrorBody, PieceStatus};

/// How piece requests answer errors: the precise status for plain clients;
/// for resumable.js / flow.js a permanent problem answers 415, the one
/// status that stops both libraries (they retry 400, 409, 413 and 422).
struct Pieces {
    library: bool,
}

impl Dialect for Pieces {
    fn status(&self, err: &ApiError) -> StatusCode {
        let status = err.status();
        if self.library && matches!(status.as_u16(), 400 | 403 | 409 | 413 | 422) {
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        } else {
            status
        }
    }
}

fn looks_like_library(pairs: &[(String, String)]) -> bool {
    pairs.iter().any(|(k, _)| k.starts_with("resumable") || k.starts_with("flow"))
}

fn spec_of(p: &PieceParams, tenant: Tenant, name: FileName) -> SeedSpec {
    SeedSpec {
        tenant,
        identifier: p.identifier.clone(),
        name,
        size: p.total_size,
        piece_size: p.chunk_size,
        total_pieces: p.total_chunks,
        declared_type: p.mime.clone(),
    }
}

/// Parses and checks a request's parameters against the limits.
fn checked(
    st: &AppState,
    who: &Principal,
    pairs: &[(String, String)],
) -> Result<(PieceParams, SeedSpec), ApiError> {
    let p = PieceParams::parse(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| ApiError::BadRequest(e.0))?;
    let name = FileName::parse(&p.filename)?;
    // Sizes are int64 in the OpenAPI document, as in most clients.
    for (what, v) in [
        ("chunkSize", Some(p.chunk_size)),
        ("totalSize", Some(p.total_size)),
        ("currentChunkSize", p.current_size),
    ] {
        if v.is_some_and(|v| v > i64::MAX as u64) {
            return Err(ApiError::BadRequest(format!("{what} is out of range")));
        }
    }
    let spec = spec_of(&p, who.tenant.clone(), name);
    let limits = &st.config.limits;
    spec.validate(limits.max_pieces, limits.max_file_size.0)?;
    let len = spec.piece_len(p.number);
    if len > limits.max_piece_size.0 {
        return Err(ApiError::PayloadTooLarge(format!(
            "chunk {} is {len} bytes; the limit is {} bytes",
            p.number, limits.max_piece_size.0
        )));
    }
    if let Some(c) = p.current_size {
        if c != len {
            return Err(ApiError::BadRequest(format!(
                "chunk {} of this upload must be {len} bytes, not {c}",
                p.number
            )));
        }
    }
    Ok((p, spec))
}

fn status_of(upload_id: String, total_pieces: u32, state: PieceState) -> (StatusCode, PieceStatus) {
    match state {
        PieceState::Stored { received, total } => {
            (StatusCode::OK, PieceStatus { status: "partial".into(), received, total, upload_id, file: None })
        }
        PieceState::Finished { file: rec, just_now } => (
            if just_now { StatusCode::CREATED } else { StatusCode::OK },
            PieceStatus {
                status: "complete".into(),
                received: total_pieces,
                total: total_pieces,
                upload_id,
                file: Some(file_info(&rec)),
            },
        ),
    }
}

/// Test whether a piece is already here.
///
/// 200 (skip it) when this upload already has the piece, or when the
/// request carries the piece's BLAKE3 (`chunkHash`, `resumableChunkHash`,
/// `flowChunkHash`) and the chunk is one this tenant holds (in its files, or
/// sent by it and not yet committed), which then counts as received. 204
/// (send it) otherwise, changing nothing. Sessions are per tenant: another
/// tenant's upload under the same identifier is a different upload. Takes resumable.js (`resumable*`),
/// flow.js (`flow*`) or plain parameter names in the query string.
#[utoipa::path(get, path = "/api/files/upload/chunked", tag = "uploads",
    params(
        ("chunkNumber" = u32, Query, minimum = 1, description = "1-based piece number (or resumableChunkNumber / flowChunkNumber, and likewise for the others)"),
        ("totalChunks" = u32, Query, minimum = 1, description = "Number of pieces: the size divided by chunkSize, rounded down or up"),
        ("chunkSize" = u64, Query, minimum = 1, description = "Nominal piece size"),
        ("totalSize" = u64, Query, minimum = 0, description = "File size (at most limits.max_file_size)"),
        ("identifier" = String, Query, min_length = 1, max_length = 1024, description = "Client-chosen upload identifier"),
        ("filename" = String, Query, min_length = 1, max_length = 255, description = "File name"),
        ("currentChunkSize" = Option<u64>, Query, minimum = 0, description = "This piece's size"),
        ("chunkHash" = Option<String>, Query, pattern = r"^\s*([0-9a-fA-F]{64})?\s*$", description = "This piece's BLAKE3, hex (empty: none)"),
    ),
    responses(
        (status = 200, description = "Present: skip this piece", body = PieceStatus),
        (status = 204, description = "Absent: send this piece"),
        (status = 400, description = "Bad parameters", body = ErrorBody),
        (status = 413, description = "Declared size over the limits", body = ErrorBody),
    ))]
pub async fn test_chunk(Caller { st, who }: Caller, Query(pairs): Query<Vec<(String, String)>>) -> Response {
    let library = looks_like_library(&pairs);
    let result: Result<Response, ApiError> = async {
        who.require(Scope::Write)?;
        let (p, spec) = checked(&st, &who, &pairs)?;
        let upload_id = spec.upload_id().to_string();
        let state =
            st.store.blocking(move |s| s.test_piece(&who.view, &spec, p.number, p.hash.as_ref())).await?;
        Ok(match state {
            Some(state) => {
                let (_, body) = status_of(upload_id, p.total_chunks, state);
                (StatusCode::OK, Json(body)).into_response()
            }
            None => StatusCode::NO_CONTENT.into_response(),
        })
    }
    .await;
    result.unwrap_or_else(|err| err.render(&Pieces { library }))
}

/// The multipart form of one piece.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct PieceForm {
    /// The piece's bytes; the parameters come as fields before it.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    #[schema(rename = "chunkNumber", minimum = 1)]
    chunk_number: u32,
    #[schema(rename = "totalChunks", minimum = 1)]
    total_chunks: u32,
    #[schema(rename = "chunkSize", minimum = 1)]
    chunk_size: u64,
    #[schema(rename = "totalSize", minimum = 0)]
    total_size: u64,
    #[schema(min_length = 1, max_length = 1024)]
    identifier: String,
    #[schema(min_length = 1, max_length = 255)]
    filename: String,
    #[schema(rename = "chunkHash", pattern = r"^\s*([0-9a-fA-F]{64})?\s*$")]
    chunk_hash: Option<String>,
}

/// Send one piece.
///
/// Multipart with the parameters as fields (resumable.js, flow.js or plain
/// names; the query string is read too) and the bytes in field `file`. The
/// piece is stored as one chunk (its `chunkHash`, when given, is verified:
/// a mismatch stores nothing). 200 with progress while pieces are missing;
/// 201 with the file when this piece completed it. Pieces may arrive out of
/// order, in parallel, and more than once.
#[utoipa::path(post, path = "/api/files/upload/chunked", tag = "uploads",
    request_body(content = PieceForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "Stored; the upload is still partial (or was already complete)", body = PieceStatus),
        (status = 201, description = "Stored; this piece completed the file", body = PieceStatus),
        (status = 400, description = "Bad parameters or piece size (415 for resumable.js / flow.js)", body = ErrorBody),
        (status = 413, description = "Piece or file over the limits (415 for resumable.js / flow.js)", body = ErrorBody),
        (status = 415, description = "File type rejected, or a permanent error reported to a browser library", body = ErrorBody),
        (status = 422, description = "The piece does not match its chunkHash (415 for resumable.js / flow.js)", body = ErrorBody),
    ))]
pub async fn post_chunk(
    Caller { st, who }: Caller,
    Query(mut pairs): Query<Vec<(String, String)>>,
    req: Request,
) -> Response {
    let mp = Multipart::from_request(crate::http::framing::guarded(req), &()).await;
    let _active = UploadGuard::new(&st.metrics);
    let mut library = looks_like_library(&pairs);
    let result: Result<Response, ApiError> = async {
        let mut mp = mp?;
        let mut data: Option<(Bytes, Reservation)> = None;
        while let Some(field) = mp.next_field().await? {
            let name = crate::protocol::form_part(field.headers()).name.unwrap_or_default();
            if name == "file" {
                if data.is_some() {
                    return Err(ApiError::BadRequest("more than one `file` part".into()));
                }
                library |= looks_like_library(&pairs);
                // Before a byte of the piece is read.
                who.require(Scope::Write)?;
                // The libraries send the parameters first: size the read by them.
                let expect = checked(&st, &who, &pairs).ok().map(|(p, s)| s.piece_len(p.number));
                data = Some(read_piece(&st, field, expect).await?);
            } else if PieceParams::is_param(&name) {
                let value = read_param(&name, field).await?;
                pairs.push((name, value));
            }
        }
        library |= looks_like_library(&pairs);
        who.require(Scope::Write)?;
        let (p, spec) = checked(&st, &who, &pairs)?;
        let (bytes, _permit) =
            data.ok_or_else(|| ApiError::BadRequest("multipart field `file` is missing".into()))?;
        let want = spec.piece_len(p.number);
        if bytes.len() as u64 != want {
            return Err(ApiError::BadRequest(format!(
                "chunk {} should be {want} bytes, got {}",
                p.number,
                bytes.len()
            )));
        }
        let upload_id = spec.upload_id().to_string();
        let state = st.store.blocking(move |s| s.put_piece(&spec, p.number, &bytes, p.hash.as_ref())).await?;
        let (status, body) = status_of(upload_id, p.total_chunks, state);
        Ok((status, Json(body)).into_response())
    }
    .await;
    result.unwrap_or_else(|err| err.render(&Pieces { library }))
}

/// Reads a parameter field, refusing it as soon as it passes
/// [`super::params::MAX_VALUE`] bytes: a huge field is never buffered.
async fn read_param(name: &str, mut field: Field<'_>) -> Result<String, ApiError> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await? {
        if buf.len() + chunk.len() > super::params::MAX_VALUE {
            return Err(ApiError::BadRequest(format!(
                "parameter `{name}` is longer than {} bytes",
                super::params::MAX_VALUE
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    String::from_utf8(buf).map_err(|_| ApiError::BadRequest(format!("parameter `{name}` is not UTF-8")))
}

/// Reads the `file` part into memory, within the piece limit and the
/// server-wide budget of body bytes in memory (of which a piece that stalls
/// holds only what it sent while others wait).
async fn read_piece(
    st: &AppState,
    mut field: Field<'_>,
    expect: Option<u64>,
) -> Result<(Bytes, Reservation), ApiError> {
    let limit = st.config.limits.max_piece_size.0;
    let reserve = expect.unwrap_or(limit).min(limit);
    let mut budget = st.reserve_body(reserve).await?;
    let mut buf = Vec::with_capacity(reserve.min(16 << 20) as usize);
    while let Some(chunk) = budget.next(buf.len() as u64, field.chunk()).await?? {
        if (buf.len() + chunk.len()) as u64 > reserve {
            return Err(match expect {
                Some(e) if e < limit => {
                    ApiError::BadRequest(format!("the chunk is larger than the {e} bytes declared"))
                }
                _ => ApiError::PayloadTooLarge(format!("a chunk may be at most {limit} bytes")),
            });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((Bytes::from(buf), budget))
}
