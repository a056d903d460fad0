//! depot: a streaming file server on a content-addressed, deduplicating
//! chunk store.
//!
//! Every byte lives in a chunk named by its BLAKE3 hash; a file is a record
//! plus a manifest (the ordered chunk list). Uploading is sending the chunks
//! the store lacks and committing a manifest; downloading streams the chunks
//! in order. Imports point down this map only:
//!
//! | module | owns | must not |
//! |---|---|---|
//! | [`config`] | the one documented `Config`: defaults ← file ← `DEPOT_*` env ← flags | know about HTTP or the store's internals |
//! | [`store`] | chunks, objects, manifests, refcounts, upload sessions, GC, verify | import axum, http or status codes |

pub mod config;
pub mod store;
