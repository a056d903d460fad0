//! Tokens' rows as stored ([`TokenRecord`], its [`Scopes`]), and the rows
//! kept in memory for requests' checks ([`TokenCache`]). Below the store's
//! engine, which holds the cache; the operations on tokens are in `tokens`.

use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::id::FileId;
use super::name::{Tenant, View};

/// A token's id: a ULID, like a file's.
pub type TokenId = FileId;

/// One permission. `admin` acts on every tenant and manages tokens;
/// `metrics` reads `/metrics` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Read,
    Write,
    Delete,
    Admin,
    Metrics,
}

impl Scope {
    pub const ALL: [Scope; 5] = [Scope::Read, Scope::Write, Scope::Delete, Scope::Admin, Scope::Metrics];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Delete => "delete",
            Scope::Admin => "admin",
            Scope::Metrics => "metrics",
        }
    }

    /// # Errors
    /// [`Error::InvalidInput`] naming the valid scopes.
    pub fn parse(s: &str) -> Result<Self> {
        Scope::ALL.into_iter().find(|c| c.as_str() == s.trim()).ok_or_else(|| {
            Error::InvalidInput(format!("unknown scope `{s}`: use read, write, delete, admin or metrics"))
        })
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of [`Scope`]s; on the wire, a list of their names.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    /// Every scope: the bootstrap admin token, and `local`/`open` mode.
    pub fn all() -> Self {
        Scope::ALL.into_iter().collect()
    }

    pub fn has(self, s: Scope) -> bool {
        self.0 & s.bit() != 0
    }

    pub fn names(self) -> Vec<String> {
        Scope::ALL.into_iter().filter(|s| self.has(*s)).map(|s| s.as_str().to_string()).collect()
    }

    /// # Errors
    /// [`Error::InvalidInput`] for an unknown name or an empty list.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self> {
        let s = names.iter().map(|n| Scope::parse(n.as_ref())).collect::<Result<Scopes>>()?;
        if s.0 == 0 {
            return Err(Error::InvalidInput("a token needs at least one scope".into()));
        }
        Ok(s)
    }

    /// The scopes in both.
    pub fn and(self, other: Scopes) -> Scopes {
        Scopes(self.0 & other.0)
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(it: I) -> Self {
        Scopes(it.into_iter().fold(0, |a, s| a | s.bit()))
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

impl Serialize for Scopes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Scopes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        Scopes::parse(&v).map_err(serde::de::Error::custom)
    }
}

/// A token as stored: everything but its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: TokenId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub tenant: Tenant,
    pub scopes: Scopes,
    pub created_ms: u64,
    /// `None`: never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_ms: Option<u64>,
    /// Hex of BLAKE3 keyed with the token key over the secret's bytes.
    pub secret_hash: String,
}

impl TokenRecord {
    /// What the token may see: every tenant with `admin`, else its own.
    pub fn view(&self) -> View {
        if self.scopes.has(Scope::Admin) { View::All } else { View::Tenant(self.tenant.clone()) }
    }

    /// Whether it works at `now_ms` (not revoked, not expired).
    pub fn live(&self, now_ms: u64) -> bool {
        self.revoked_ms.is_none() && self.expires_ms.is_none_or(|e| now_ms < e)
    }
}

/// How long a token's row, read for a request's check, is used before it
/// is read again (by the store's clock). A revocation made on another node
/// of a shared store holds here within this; one made here, at once.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(10);

/// Token rows held at most (each about 200 bytes); past it, quick_cache's
/// policy (S3-FIFO) evicts.
const TOKEN_CACHE_ROWS: usize = 4096;

/// Token rows read for requests' checks, with when each was read (store
/// clock, ms) and its secret hash decoded: a request whose token's row is
/// here and fresh is checked in memory, with no metadata read and no hop to
/// a blocking thread (`Store::authenticate_cached`). Rows of unknown ids
/// are not kept (guesses would fill it). A write of a token's row drops it
/// (`Store::put_token`); `writes` counts those writes, so that a row read
/// before one is not kept after it.
pub(super) struct TokenCache {
    rows: quick_cache::sync::Cache<TokenId, (TokenRecord, blake3::Hash, u64)>,
    writes: Mutex<u64>,
}

impl TokenCache {
    pub(super) fn new() -> Self {
        TokenCache { rows: quick_cache::sync::Cache::new(TOKEN_CACHE_ROWS), writes: Mutex::new(0) }
    }

    /// The row of `id` with its secret hash, when read within the TTL
    /// before `now_ms` (a clock gone back counts as stale).
    pub(super) fn fresh(&self, id: &TokenId, now_ms: u64) -> Option<(TokenRecord, blake3::Hash)> {
        let (rec, hash, read_ms) = self.rows.get(id)?;
        let age = now_ms.checked_sub(read_ms)?;
        (age < TOKEN_CACHE_TTL.as_millis() as u64).then_some((rec, hash))
    }

    /// The count of token writes so far: taken before a row is read, for
    /// [`TokenCache::keep_unless_written`].
    pub(super) fn writes(&self) -> u64 {
        *lock(&self.writes)
    }

    /// Keeps `row`, read at `now_ms`, unless a token was written since
    /// [`TokenCache::writes`] gave `writes` (the row may predate it).
    pub(super) fn keep_unless_written(
        &self,
        writes: u64,
        id: TokenId,
        row: (TokenRecord, blake3::Hash),
        now_ms: u64,
    ) {
        let held = lock(&self.writes);
        if *held == writes {
            self.rows.insert(id, (row.0, row.1, now_ms));
        }
    }

    /// Drops the row of `id`, after a write of it: a check that read the
    /// row before the write either sees the count moved (and keeps nothing)
    /// or kept it before this drop.
    pub(super) fn drop_after_write(&self, id: &TokenId) {
        let mut writes = lock(&self.writes);
        *writes += 1;
        self.rows.remove(id);
    }
}

/// The count's lock, poisoning ignored (it guards a plain count): the
/// store's `engine::lock` for this one type, which this module cannot
/// import (the engine holds a [`TokenCache`]: the layout forbids the cycle).
fn lock(m: &Mutex<u64>) -> MutexGuard<'_, u64> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_print() {
        let s = Scopes::parse(&["write", "read"]).unwrap();
        assert!(s.has(Scope::Read) && s.has(Scope::Write) && !s.has(Scope::Admin));
        assert_eq!(s.names(), ["read", "write"]);
        assert!(Scopes::parse::<&str>(&[]).is_err());
        assert!(Scopes::parse(&["root"]).is_err());
    }
}
