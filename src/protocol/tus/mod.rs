//! tus 1.0.0 at `/api/tus/`: core, creation, creation-with-upload,
//! creation-defer-length, expiration, checksum, termination, concatenation.
//!
//! PATCH bodies stream through the store's chunker as they arrive (an
//! [`Appender`] on a blocking thread, through the shared
//! [`crate::protocol::resumable`] pump), with a durable point every
//! [`crate::protocol::resumable::PERSIST_EVERY`] bytes, so a broken connection keeps what arrived and a
//! server restart resumes at the acknowledged offset. One request writes to
//! an upload at a time: a new PATCH, HEAD or DELETE for an upload ends the
//! request holding it (as tusd does), which keeps what it received and
//! answers 423; the newcomer then proceeds, or gets 409 if its offset is
//! stale. A checksum makes a PATCH all-or-nothing (460 keeps nothing).
//!
//! A request naming `Upload-Draft-Interop-Version` is the IETF draft's, not
//! tus's: the handlers pass it to [`crate::protocol::ietf`] first thing.

pub mod headers;

#[cfg(feature = "server")]
mod handlers;
#[cfg(feature = "server")]
mod routes;

#[cfg(feature = "server")]
pub use self::handlers::*;
#[cfg(feature = "server")]
pub use self::routes::{Doc, discovery, method_override, routes, speaks_tus, version_on_errors};
