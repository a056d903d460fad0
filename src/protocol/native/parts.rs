//! Commits in parts: a native commit sent as numbered segments of chunk
//! references instead of one body listing every chunk, so that no request
//! grows with the file. Open (`POST /api/commits`), send segments (`PUT
//! /api/commits/{id}/segments/{n}`, any order, each at most `max_entries`),
//! finish (`POST /api/commits/{id}/finish`): the file is the one `POST
//! /api/files` would make of the same chunks, ETag included. `GET
//! /api/commits/{id}` says which segments arrived, so a client that lost
//! its connection (or a server that restarted) resumes from there; another
//! tenant's commit is answered 404. The store does the work
//! ([`crate::store::Store::put_segment`] and its siblings).

use axum::Json;
use axum::http::{StatusCode, header};

use crate::http::{ApiError, Caller, InPath, JsonBody, PathParam, id_in_path};
use crate::protocol::answers::{ChunksMissing, CommitExpired, FileTooLarge};
use crate::protocol::file_info;
use crate::store::manifest::SEGMENT_ENTRIES;
use crate::store::{
    CommitProgress, Entry, FileName, MAX_SEGMENTS, NewCommit, UploadId, UploadRecord, UploadState,
};
use crate::wire::{
    CommitOpen, CommitSession, CommitStatus, ErrorBody, FileInfo, SegmentInfo, SegmentRequest, rfc3339,
};

/// A commit's id in a path (`{id}`); a malformed one is simply not found.
pub struct CommitId(pub UploadId);

id_in_path!(CommitId, CommitId, "commit", "Commit id", r"^[0-9a-fA-F]{32}$");

/// A segment number in a path (`{n}`): digits only ([`crate::decimal`]),
/// below [`MAX_SEGMENTS`].
pub struct SegmentNo(pub u32);

impl PathParam for SegmentNo {
    const NAME: &'static str = "n";
    const DESCRIPTION: &'static str = "Segment number, from 0";
    const PATTERN: &'static str = r"^[0-9]{1,5}$";
    const ANSWER: (u16, &'static str) = (400, "Not a segment number");

    fn from_path(s: &str) -> Result<SegmentNo, ApiError> {
        crate::decimal::parse_u64(s)
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n < MAX_SEGMENTS)
            .map(SegmentNo)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "segment number `{s}` must be decimal digits from 0 to {}",
                    MAX_SEGMENTS - 1
                ))
            })
    }
}

fn session(rec: &UploadRecord) -> CommitSession {
    CommitSession {
        id: rec.id.to_string(),
        max_entries: SEGMENT_ENTRIES,
        max_segments: MAX_SEGMENTS,
        expires_at: rfc3339(rec.expires_ms),
    }
}

fn status(p: &CommitProgress) -> CommitStatus {
    let finished = matches!(p.record.state, UploadState::Finished { .. });
    CommitStatus {
        id: p.record.id.to_string(),
        name: p.record.name.to_string(),
        size: p.record.size,
        state: if finished { "finished" } else { "open" }.into(),
        segments: p.segments.clone(),
        entries: p.entries,
        bytes: p.bytes,
        max_entries: SEGMENT_ENTRIES,
        expires_at: rfc3339(p.record.expires_ms),
        file: p.file.as_ref().map(file_info),
    }
}

/// Open a commit in parts.
///
/// For files whose chunk list would make a large `POST /api/files` body:
/// send the list as segments, then finish. The size is checked now, the
/// type at the finish.
#[utoipa::path(post, path = "/api/commits", tag = "dedup",
    request_body = CommitOpen,
    responses(
        (status = 201, description = "Opened; `Location` is the commit", body = CommitSession),
        (status = 400, description = "Malformed request or file name", body = ErrorBody),
        FileTooLarge,
        (status = 507, description = "The data dir is below its free-space reserve", body = ErrorBody),
    ))]
pub async fn open_commit(
    c: Caller,
    JsonBody(req): JsonBody<CommitOpen>,
) -> Result<(StatusCode, [(header::HeaderName, String); 1], Json<CommitSession>), ApiError> {
    let new = NewCommit {
        tenant: c.who.tenant.clone(),
        name: FileName::parse(&req.name)?,
        declared_type: req.content_type,
        size: req.size,
    };
    let rec = c.st.store.blocking(move |s| s.open_commit(new)).await?;
    let body = session(&rec);
    Ok((StatusCode::CREATED, [(header::LOCATION, format!("/api/commits/{}", body.id))], Json(body)))
}

/// Send one segment of a commit in parts.
///
/// The next chunks of the manifest, in order; segments may arrive in any
/// order and each at most `max_entries` long (fewer is fine). Checked as
/// `POST /api/files` checks a manifest: 409 `missing_chunks` lists every
/// chunk this tenant has not sent or the server lacks (send them and this
/// segment again). The same segment again answers 200; other entries under
/// a number already received, 409 `conflict`.
#[utoipa::path(put, path = "/api/commits/{id}/segments/{n}", tag = "dedup",
    params(InPath<CommitId>, InPath<SegmentNo>),
    request_body = SegmentRequest,
    responses(
        InPath::<CommitId>,
        (status = 201, description = "Stored", body = SegmentInfo),
        (status = 200, description = "This segment was already there, the same", body = SegmentInfo),
        (status = 400, description = "Malformed request or number, an empty segment, lengths that disagree with the chunks or exceed the size", body = ErrorBody),
        (status = 409, description = "Chunks missing (listed in `missing`), another body for this number, or the commit is finished", body = ErrorBody),
        CommitExpired,
        (status = 413, description = "More than `max_entries` entries", body = ErrorBody),
    ))]
pub async fn put_segment(
    c: Caller,
    InPath(CommitId(id)): InPath<CommitId>,
    InPath(SegmentNo(n)): InPath<SegmentNo>,
    JsonBody(req): JsonBody<SegmentRequest>,
) -> Result<(StatusCode, Json<SegmentInfo>), ApiError> {
    if req.chunks.len() > SEGMENT_ENTRIES {
        return Err(ApiError::PayloadTooLarge(format!(
            "a segment holds at most {SEGMENT_ENTRIES} entries, this one {}",
            req.chunks.len()
        )));
    }
    let entries: Vec<Entry> = req.chunks.iter().map(|c| Entry { id: c.hash, len: c.len }).collect();
    let info = SegmentInfo {
        segment: n,
        entries: entries.len() as u64,
        bytes: entries.iter().map(|e| u64::from(e.len)).sum(),
    };
    let new = c.store_as(move |s, view| s.put_segment(view, &id, n, &entries)).await?;
    Ok((if new { StatusCode::CREATED } else { StatusCode::OK }, Json(info)))
}

/// Where a commit in parts stands.
///
/// The segments received (a client resumes by sending the others), and once
/// finished, the file.
#[utoipa::path(get, path = "/api/commits/{id}", tag = "dedup",
    params(InPath<CommitId>),
    responses(
        InPath::<CommitId>,
        (status = 200, description = "The commit", body = CommitStatus),
        CommitExpired,
    ))]
pub async fn commit_status(
    c: Caller,
    InPath(CommitId(id)): InPath<CommitId>,
) -> Result<Json<CommitStatus>, ApiError> {
    let p = c.store_as(move |s, view| s.commit_progress(view, &id)).await?;
    Ok(Json(status(&p)))
}

/// Finish a commit in parts: the file.
///
/// Segments `0..k` must all be there and their lengths add up to the size;
/// type validation as for every upload. Answers as `POST /api/files` does;
/// a commit finished before answers its file again with 200. On an error
/// nothing is committed and the commit stays open: 409 `missing_chunks`
/// lists chunks gone since their segment arrived (send them and finish
/// again).
#[utoipa::path(post, path = "/api/commits/{id}/finish", tag = "dedup",
    params(InPath<CommitId>),
    responses(
        (status = 201, description = "The file", body = FileInfo),
        (status = 200, description = "Finished before: the same file", body = FileInfo),
        (status = 400, description = "A segment is missing, or the lengths do not add up to the size", body = ErrorBody),
        (status = 404, description = "No such commit (or its file was deleted since)", body = ErrorBody),
        ChunksMissing,
        CommitExpired,
        (status = 415, description = "File type rejected", body = ErrorBody),
    ))]
pub async fn finish_commit(
    c: Caller,
    InPath(CommitId(id)): InPath<CommitId>,
) -> Result<(StatusCode, [(header::HeaderName, String); 1], Json<FileInfo>), ApiError> {
    let (rec, new) = c.store_as(move |s, view| s.finish_commit(view, &id)).await?;
    let info = file_info(&rec);
    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, [(header::LOCATION, info.url.clone())], Json(info)))
}

/// Cancel a commit in parts.
///
/// Its segments go; the chunks they named age out through GC unless a file
/// uses them. On a finished commit, only the commit goes: the file stays.
#[utoipa::path(delete, path = "/api/commits/{id}", tag = "dedup",
    params(InPath<CommitId>),
    responses(
        InPath::<CommitId>,
        (status = 204, description = "Cancelled"),
    ))]
pub async fn cancel_commit(
    c: Caller,
    InPath(CommitId(id)): InPath<CommitId>,
) -> Result<StatusCode, ApiError> {
    c.store_as(move |s, view| s.cancel_commit(view, &id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
