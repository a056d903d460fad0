//! The OpenAPI document, generated from the handlers and wire types. The
//! committed `schema/openapi.json` must equal it (a test checks).

use utoipa::OpenApi;

use crate::protocol::{files, native, seed, tus};
use crate::wire;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "depot",
        description = "A streaming file server on a content-addressed, deduplicating chunk store.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        files::list_files,
        files::info,
        files::download,
        files::delete,
        seed::upload_file,
        seed::test_chunk,
        seed::post_chunk,
        native::chunking,
        native::missing_chunks,
        native::put_chunk,
        native::get_chunk,
        native::commit,
        native::manifest,
        tus::options,
        tus::create,
        tus::head,
        tus::patch,
        tus::terminate,
        super::ops::stats,
        super::ops::healthz,
        super::ops::metrics,
    ),
    components(schemas(wire::ChunkHash, wire::ErrorBody, wire::FileInfo, wire::FileList, wire::StatsInfo, wire::PieceStatus, wire::Health,
        wire::ChunkingInfo, wire::TypePolicyInfo, wire::MissingRequest, wire::MissingResponse, wire::PutChunkResponse, wire::ChunkRef,
        wire::CommitRequest, wire::ManifestInfo, wire::ManifestChunk)),
    tags(
        (name = "files", description = "List, download and delete files"),
        (name = "uploads", description = "The seed's uploads: whole files, and resumable.js / flow.js pieces"),
        (name = "dedup", description = "depot's own protocol: send only the chunks the server lacks"),
        (name = "tus", description = "tus 1.0.0 resumable uploads: creation, creation-with-upload, creation-defer-length, termination, checksum, expiration, concatenation"),
        (name = "operations", description = "Health, metrics, statistics"),
    )
)]
pub struct ApiDoc;
