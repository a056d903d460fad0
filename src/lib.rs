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
//! | [`decimal`] | the one rule for decimal numbers on the wire | allocate or trim |
//! | [`config`] | the one documented `Config`: defaults ← file ← `DEPOT_*` env ← flags | know about HTTP or the store's internals |
//! | [`server`] | merges every protocol's routes and OpenAPI paths, the layers around them, `serve` (503 while the store opens), the GC loop | hold handler logic |
//! | [`protocol`] | one module per wire protocol: parse → call the store → render; each exports its routes and OpenAPI paths | touch RocksDB or the object directory |
//! | [`http`] | the kernel under the protocols: state, the error → status table, body helpers, layers (CORS, rate limits, metrics, the access log), one writer per upload, operations endpoints | import any protocol |
//! | [`multipart`] | the framing of a multipart body, followed as it streams, so that a preamble or header section can be bounded | allocate per byte of part data |
//! | [`wire`] | the JSON types shared by server, client and OpenAPI document | depend on the server |
//! | [`store`] | chunks, objects, manifests, refcounts, upload sessions, GC, verify | import axum, http or status codes |
//! | [`testdata`] | the one deterministic data generator of tests, benches and fuzz targets | be called by the server |

#[cfg(feature = "client")]
pub mod client;
pub mod config;
pub mod decimal;
#[cfg(feature = "server")]
pub mod http;
pub mod multipart;
pub mod protocol;
#[cfg(feature = "server")]
pub mod server;
pub mod store;
pub mod testdata;
pub mod wire;
