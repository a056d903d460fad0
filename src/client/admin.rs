//! The admin API (`/api/admin/tokens`, `/api/admin/backups`) and signed links, as calls on a
//! [`Client`]: what `depot token create|list|revoke` does when a server
//! runs. The token management calls need a client whose token has the
//! `admin` scope; a link needs `read` on the file. Nothing here prints a
//! token: the one-time secret comes back in [`TokenInfo::token`] for the
//! caller to show once.

use super::{Client, ClientError, Result};
use crate::wire::{
    BackupInfo, ExpiresIn, LinkInfo, LinkRequest, QuotaInfo, TenantInfo, TokenInfo, TokenList, TokenRequest,
};

/// Creates a token: `POST /api/admin/tokens` with `req` (`{tenant, scopes,
/// expires_in?, name?}`). The answer (201) is the new token's
/// [`TokenInfo`] with `token` set to the whole bearer token
/// `dpt_<id>_<secret>`, which the server shows this once and never again.
///
/// Not retried: a retry after an answer that was lost would make a second
/// token.
///
/// # Errors
/// [`ClientError::Unauthorized`] (401: no or bad token),
/// [`ClientError::Forbidden`] (403: the client's token lacks `admin`),
/// [`ClientError::Api`] with 400 for a bad tenant, scope or expiry (the
/// server's message says which), network errors.
pub async fn create_token(c: &Client, req: &TokenRequest) -> Result<TokenInfo> {
    c.json(c.http.post(c.url("/api/admin/tokens")).json(req)).await
}

/// Makes a backup on the server: `POST /api/admin/backups` (201), a data
/// dir under the server's `<data_dir>/backups/` that opens as the store
/// at that instant (README, "Backing up one node").
///
/// Not retried: a retry after a lost answer would make a second backup.
///
/// # Errors
/// [`ClientError::Api`] with 409 on a store of PostgreSQL or S3, 503 when
/// a write held a pack for 30 s; 401, 403 as [`create_token`]; network
/// errors.
pub async fn create_backup(c: &Client) -> Result<BackupInfo> {
    c.json(c.http.post(c.url("/api/admin/backups"))).await
}

/// Every token, newest first, revoked ones included (with `revoked_at`):
/// `GET /api/admin/tokens`. No secrets: `token` is absent from each.
///
/// # Errors
/// As [`create_token`] (401, 403), network errors.
pub async fn list_tokens(c: &Client) -> Result<TokenList> {
    c.retrying(|| c.json(c.http.get(c.url("/api/admin/tokens")))).await
}

/// Revokes a token: `DELETE /api/admin/tokens/{id}` (204). It stops working
/// on the server's next request, and so do the signed links it made. `id`
/// is the token's id (the ULID that `list_tokens` shows); a whole token
/// `dpt_<id>_<secret>` is accepted too, and only its id is sent.
///
/// # Errors
/// [`ClientError::Usage`] when `id` is not an id (nothing is sent);
/// [`ClientError::Api`] with 404 for an unknown id; 401, 403 as
/// [`create_token`]; network errors.
pub async fn revoke_token(c: &Client, id: &str) -> Result<()> {
    let id = token_id(id)?;
    c.send(c.http.delete(c.url(&format!("/api/admin/tokens/{id}")))).await.map(drop)
}

/// A signed download link for a file: `POST /api/files/{id}/link` with
/// `{expires_in?}` (seconds; the server's default is an hour and it caps
/// the lifetime at `auth.link_max_ttl`). The answer's `url` is relative to
/// the server (`/api/files/{id}?exp=…&kid=…&sig=…`; [`Client::url`] makes
/// it absolute) and works without a token, with `Range`, until
/// `expires_at` or until the client's token is revoked.
///
/// # Errors
/// [`ClientError::Usage`] when `file_id` is not an id (nothing is sent);
/// [`ClientError::Api`] with 404 when the file does not exist (or belongs
/// to another tenant), 400 for a lifetime over the server's cap;
/// [`ClientError::Unauthorized`], [`ClientError::Forbidden`] (the token
/// lacks `read`); network errors.
pub async fn create_link(c: &Client, file_id: &str, expires_in: Option<u64>) -> Result<LinkInfo> {
    if !is_id(file_id) {
        return Err(ClientError::Usage(format!("`{file_id}` is not a file id")));
    }
    let body = LinkRequest { expires_in };
    c.retrying(|| c.json(c.http.post(c.url(&format!("/api/files/{file_id}/link"))).json(&body))).await
}

/// A lifetime as typed on a command line (`--expires`): a number is
/// seconds, anything else (`90d`, `12h`, `never`) goes to the server as
/// text, which checks it.
pub fn expires_in(arg: &str) -> ExpiresIn {
    match arg.trim().parse::<u64>() {
        Ok(secs) => ExpiresIn::Seconds(secs),
        Err(_) => ExpiresIn::Text(arg.trim().to_string()),
    }
}

/// The id of a token: `id` itself, or the middle of `dpt_<id>_<secret>`.
fn token_id(arg: &str) -> Result<&str> {
    let id = match arg.strip_prefix("dpt_").and_then(|rest| rest.split_once('_')) {
        Some((id, _secret)) => id,
        None => arg,
    };
    if is_id(id) { Ok(id) } else { Err(ClientError::Usage(format!("not a token id: `{id}`"))) }
}

/// Ids are ULIDs; allowing letters and digits (at most 64) keeps anything
/// that could change the path (`/`, `..`, `?`) out of the URL.
fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A tenant's quota and usage: `GET /api/admin/tenants/{tenant}`.
///
/// # Errors
/// [`ClientError::Api`] with 400 for a name that is not a tenant's; 401,
/// 403 as [`create_token`]; network errors.
pub async fn tenant(c: &Client, tenant: &str) -> Result<TenantInfo> {
    c.retrying(|| c.json(c.http.get(c.url(&format!("/api/admin/tenants/{tenant}"))))).await
}

/// Replaces a tenant's quota: `PUT /api/admin/tenants/{tenant}/quota`
/// (caps left `None` are no caps; all `None` removes the quota). Returns
/// the quota now and the usage.
///
/// # Errors
/// As [`tenant`].
pub async fn set_quota(c: &Client, tenant: &str, q: &QuotaInfo) -> Result<TenantInfo> {
    c.retrying(|| c.json(c.http.put(c.url(&format!("/api/admin/tenants/{tenant}/quota"))).json(q))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_id_or_a_whole_token_names_the_id_and_nothing_else_passes() {
        assert_eq!(token_id("01JDX3E5C9R2T7VQ4M8N6P0WAB").unwrap(), "01JDX3E5C9R2T7VQ4M8N6P0WAB");
        assert_eq!(token_id("dpt_01JDX3E5C9R2T7VQ4M8N6P0WAB_c2Vj-_x").unwrap(), "01JDX3E5C9R2T7VQ4M8N6P0WAB");
        for bad in ["", "../files", "a/b", "id?x=1", "dpt__secret", "dpt_a.b_s"] {
            let e = token_id(bad).unwrap_err();
            assert!(matches!(e, ClientError::Usage(_)), "{bad}: {e}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }

    #[test]
    fn expiry_arguments() {
        assert_eq!(expires_in("3600"), ExpiresIn::Seconds(3600));
        assert_eq!(expires_in("90d"), ExpiresIn::Text("90d".into()));
        assert_eq!(expires_in(" never "), ExpiresIn::Text("never".into()));
        assert_eq!(serde_json::to_string(&expires_in("60")).unwrap(), "60");
        assert_eq!(serde_json::to_string(&expires_in("1y")).unwrap(), "\"1y\"");
    }
}
