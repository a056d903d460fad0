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
//! | [`client`] | the `depot` client: API calls, `put` (send only missing chunks), `get` (verified, resumable) | know the server's internals |
//! | [`config`] | the one documented `Config`: defaults ← file ← `DEPOT_*` env ← flags | know about HTTP or the store's internals |
//! | [`http`] | the router, layers (CORS, rate limits, request ids, metrics), the error → status table, OpenAPI, `serve` | hold protocol logic |
//! | [`protocol`] | one module per wire protocol: parse → call the store → render | touch RocksDB or the object directory |
//! | [`wire`] | the JSON types shared by server, client and OpenAPI document | depend on the server |
//! | [`store`] | chunks, objects, manifests, refcounts, upload sessions, GC, verify | import axum, http or status codes |

#[cfg(feature = "client")]
pub mod client;
pub mod config;
#[cfg(feature = "server")]
pub mod http;
pub mod protocol;
pub mod store;
pub mod wire;
