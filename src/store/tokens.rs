//! Access tokens at rest, and the server's keys. A token is
//! `dpt_<id>_<secret>`: `id` a ULID (time-sortable, shown in listings),
//! `secret` 32 random bytes in unpadded base64url (43 characters). Only
//! BLAKE3 keyed with the server's token key over the secret is stored, so a
//! copy of the metadata does not yield usable tokens; comparing
//! [`blake3::Hash`]es is constant-time. The type prefix lets secret scanners
//! recognise leaked tokens (as GitHub's `ghp_` does).
//!
//! Rows live in [`Cf::Auth`]: `t` ‖ id → [`TokenRecord`] as JSON, and
//! `k/` ‖ name → a 32-byte key made from the OS's random source on first use.
//! Revocation is a write to the row. Requests' checks read a token's row
//! once per [`TOKEN_CACHE_TTL`](super::token_rows::TOKEN_CACHE_TTL) ([`TokenCache`](super::token_rows::TokenCache)): a revocation holds from
//! the next request on at the node that made it (the write drops the row
//! from that node's memory), and within [`TOKEN_CACHE_TTL`](super::token_rows::TOKEN_CACHE_TTL) at the other
//! nodes of a shared store.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::error::{Error, Result};
use super::meta::{Batch, Cf, LockSpace};
use super::name::Tenant;
use super::token_rows::{Scopes, TokenId, TokenRecord};
use super::{Store, lock};

/// The text before a token's id.
pub const TOKEN_PREFIX: &str = "dpt_";

const ID_LEN: usize = 26;
const SECRET_LEN: usize = 43;

/// Splits `dpt_<id>_<secret>`; `None` for anything else. (The secret's
/// alphabet includes `_`, so the split is by position.)
fn split(token: &str) -> Option<(TokenId, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    if rest.len() != ID_LEN + 1 + SECRET_LEN || rest.as_bytes()[ID_LEN] != b'_' {
        return None;
    }
    let id = rest[..ID_LEN].parse().ok()?;
    Some((id, &rest[ID_LEN + 1..]))
}

/// The name of the server key token secrets are hashed with.
const TOKEN_KEY: &str = "tokens";

/// What a token's row keeps of its secret, and what a check compares:
/// BLAKE3 keyed with `key` (the [`TOKEN_KEY`] server key) over the
/// secret's bytes. The one formula for issuing and checking.
fn keyed_secret(key: &[u8; 32], secret: &str) -> blake3::Hash {
    blake3::keyed_hash(key, secret.as_bytes())
}

fn token_key(id: &TokenId) -> Vec<u8> {
    [b"t".as_slice(), id.as_bytes()].concat()
}

impl Store {
    /// A 32-byte server key (`tokens`, `links`), made from the OS's random
    /// source the first time it is asked for and kept in the metadata (so
    /// every node of a shared store uses the same one); then held in memory.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub fn server_key(&self, name: &str) -> Result<[u8; 32]> {
        let mut keys = lock(&self.0.keys);
        if let Some(k) = keys.get(name) {
            return Ok(*k);
        }
        let k = format!("k/{name}").into_bytes();
        let decode =
            |v: Vec<u8>| v.try_into().map_err(|_| Error::CorruptMetadata(format!("server key `{name}`")));
        let key = match self.meta().get(Cf::Auth, &k)? {
            Some(v) => decode(v)?,
            None => {
                // Made once, by whichever node asks first: under the lock,
                // a node that lost the race reads the winner's key.
                let mut held = self.locked();
                held.take(LockSpace::Settings, [0])?;
                match self.meta().get(Cf::Auth, &k)? {
                    Some(v) => decode(v)?,
                    None => {
                        let mut key = [0u8; 32];
                        rand::Rng::fill(&mut rand::rng(), &mut key);
                        let mut b = Batch::default();
                        b.put(Cf::Auth, &k, &key);
                        held.write(b, true)?;
                        key
                    }
                }
            }
        };
        keys.insert(name.to_string(), key);
        Ok(key)
    }

    /// The hash a token's row keeps of its secret ([`keyed_secret`] with
    /// this store's token key).
    fn secret_hash(&self, secret: &str) -> Result<blake3::Hash> {
        Ok(keyed_secret(&self.server_key(TOKEN_KEY)?, secret))
    }

    /// Makes a token; returns its record and the whole token string, which
    /// exists only in this answer.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub fn issue_token(
        &self,
        tenant: Tenant,
        scopes: Scopes,
        expires_ms: Option<u64>,
        name: Option<String>,
    ) -> Result<(TokenRecord, String)> {
        let (rec, token) = self.make_token(tenant, scopes, expires_ms, name)?;
        self.put_token(&rec)?;
        Ok((rec, token))
    }

    /// A new token's record and string, not stored yet.
    fn make_token(
        &self,
        tenant: Tenant,
        scopes: Scopes,
        expires_ms: Option<u64>,
        name: Option<String>,
    ) -> Result<(TokenRecord, String)> {
        let now = self.now_ms();
        let id = TokenId::new(now);
        let mut raw = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut raw);
        let secret = URL_SAFE_NO_PAD.encode(raw);
        let rec = TokenRecord {
            id,
            name,
            tenant,
            scopes,
            created_ms: now,
            expires_ms,
            revoked_ms: None,
            secret_hash: self.secret_hash(&secret)?.to_hex().to_string(),
        };
        Ok((rec, format!("{TOKEN_PREFIX}{id}_{secret}")))
    }

    /// [`Store::issue_token`] (never expiring) only while the store has no
    /// token at all: made once, whichever node of a shared store asks first
    /// (the others get `None`).
    ///
    /// # Errors
    /// Metadata backend errors.
    pub fn issue_first_token(
        &self,
        tenant: Tenant,
        scopes: Scopes,
        name: Option<String>,
    ) -> Result<Option<(TokenRecord, String)>> {
        // The key first: making it takes the lock below too.
        self.server_key(TOKEN_KEY)?;
        let mut held = self.locked();
        held.take(LockSpace::Settings, [0])?;
        if !self.tokens()?.is_empty() {
            return Ok(None);
        }
        let (rec, token) = self.make_token(tenant, scopes, None, name)?;
        held.write(Self::token_batch(&rec)?, true)?;
        Ok(Some((rec, token)))
    }

    fn token_batch(rec: &TokenRecord) -> Result<Batch> {
        let v = serde_json::to_vec(rec).map_err(|e| Error::Task(e.to_string()))?;
        let mut b = Batch::default();
        b.put(Cf::Auth, &token_key(&rec.id), &v);
        Ok(b)
    }

    fn put_token(&self, rec: &TokenRecord) -> Result<()> {
        self.meta().write(Self::token_batch(rec)?, true)?;
        self.0.tokens.drop_after_write(&rec.id);
        Ok(())
    }

    /// A token's row for a request's check, with its secret hash decoded:
    /// from memory when read within [`TOKEN_CACHE_TTL`](super::token_rows::TOKEN_CACHE_TTL), else read (and
    /// kept, when it exists).
    ///
    /// # Errors
    /// Metadata backend errors; [`Error::CorruptMetadata`].
    fn token_for_check(&self, id: &TokenId) -> Result<Option<(TokenRecord, blake3::Hash)>> {
        let (cache, now) = (&self.0.tokens, self.now_ms());
        if let Some(row) = self.row_in_memory(id, now) {
            return Ok(Some(row));
        }
        let writes = cache.writes();
        let Some(rec) = self.token(id)? else { return Ok(None) };
        super::engine::bump(&self.0.activity.tokens_read, 1);
        let hash = blake3::Hash::from_hex(&rec.secret_hash)
            .map_err(|_| Error::CorruptMetadata(format!("token {id}: secret hash")))?;
        cache.keep_unless_written(writes, *id, (rec.clone(), hash), now);
        Ok(Some((rec, hash)))
    }

    /// The row of `id` when read within the TTL before `now_ms`, counted.
    fn row_in_memory(&self, id: &TokenId, now_ms: u64) -> Option<(TokenRecord, blake3::Hash)> {
        let row = self.0.tokens.fresh(id, now_ms)?;
        super::engine::bump(&self.0.activity.tokens_cached, 1);
        Some(row)
    }

    /// The one verdict of both checks: `rec` when `secret`, keyed with
    /// `key`, hashes to `want` and the token works at `now_ms`.
    fn verdict(
        key: &[u8; 32],
        secret: &str,
        (rec, want): (TokenRecord, blake3::Hash),
        now_ms: u64,
    ) -> Option<TokenRecord> {
        // blake3::Hash's equality is constant-time.
        (keyed_secret(key, secret) == want && rec.live(now_ms)).then_some(rec)
    }

    /// A token's row for a signed link's check: as [`Store::token`], but
    /// from memory when read within [`TOKEN_CACHE_TTL`](super::token_rows::TOKEN_CACHE_TTL).
    ///
    /// # Errors
    /// Metadata backend errors; [`Error::CorruptMetadata`].
    pub fn token_for_link(&self, id: &TokenId) -> Result<Option<TokenRecord>> {
        Ok(self.token_for_check(id)?.map(|(rec, _)| rec))
    }

    /// A token's record, live or not.
    ///
    /// # Errors
    /// Metadata backend errors; [`Error::CorruptMetadata`].
    pub fn token(&self, id: &TokenId) -> Result<Option<TokenRecord>> {
        self.meta()
            .get(Cf::Auth, &token_key(id))?
            .map(|v| {
                serde_json::from_slice(&v).map_err(|e| Error::CorruptMetadata(format!("token {id}: {e}")))
            })
            .transpose()
    }

    /// The live token `token` names, when its secret matches; `None` for
    /// anything else (malformed, unknown, wrong secret, expired, revoked),
    /// all alike. Its row is read from the metadata unless read within
    /// [`TOKEN_CACHE_TTL`](super::token_rows::TOKEN_CACHE_TTL); [`Store::authenticate_cached`] is the same
    /// without the read.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub fn authenticate(&self, token: &str) -> Result<Option<TokenRecord>> {
        let Some((id, secret)) = split(token.trim()) else { return Ok(None) };
        let Some(row) = self.token_for_check(&id)? else { return Ok(None) };
        Ok(Self::verdict(&self.server_key(TOKEN_KEY)?, secret, row, self.now_ms()))
    }

    /// [`Store::authenticate`] in memory only, for an async thread: the
    /// answer when it needs no metadata (a malformed token; a token whose
    /// row was read within [`TOKEN_CACHE_TTL`](super::token_rows::TOKEN_CACHE_TTL) and whose key is held),
    /// `None` when the row or the key must be read.
    pub fn authenticate_cached(&self, token: &str) -> Option<Option<TokenRecord>> {
        let Some((id, secret)) = split(token.trim()) else { return Some(None) };
        let key = *lock(&self.0.keys).get(TOKEN_KEY)?;
        let now = self.now_ms();
        let row = self.row_in_memory(&id, now)?;
        Some(Self::verdict(&key, secret, row, now))
    }

    /// Every token, newest first.
    ///
    /// # Errors
    /// Metadata backend errors; [`Error::CorruptMetadata`].
    pub fn tokens(&self) -> Result<Vec<TokenRecord>> {
        self.meta()
            .scan_rev(Cf::Auth, b"t", None)
            .map(|kv| {
                let (_, v) = kv?;
                serde_json::from_slice(&v).map_err(|e| Error::CorruptMetadata(format!("token: {e}")))
            })
            .collect()
    }

    /// Revokes a token (again: a no-op); its signed links die with it.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an unknown id; metadata backend errors.
    pub fn revoke_token(&self, id: &TokenId) -> Result<TokenRecord> {
        let mut rec = self.token(id)?.ok_or_else(|| Error::InvalidInput(format!("no token {id}")))?;
        if rec.revoked_ms.is_none() {
            rec.revoked_ms = Some(self.now_ms());
            self.put_token(&rec)?;
        }
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_strings_split_by_position() {
        let id = TokenId::new(1);
        let secret = "a_b-".repeat(10) + "xyz";
        assert_eq!(secret.len(), SECRET_LEN);
        let t = format!("dpt_{id}_{secret}");
        assert_eq!(split(&t), Some((id, secret.as_str())));
        assert_eq!(split(&t[..t.len() - 1]), None);
        assert_eq!(split(&t.replacen("dpt_", "dpx_", 1)), None);
        assert_eq!(split(""), None);
    }
}
