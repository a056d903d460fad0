//! `depot token create|list|revoke`: on a data dir while no server runs
//! (the store allows one process). With a server running, the same through
//! its admin API.

use clap::Subcommand;

use crate::{Failure, ServeFlags, StoreArgs, emit, load_config, open_store, print_json, runtime, usage};
use depot::client::{self, Client, exit};

#[derive(Subcommand)]
pub enum TokenAction {
    /// Make a token; its secret is printed once.
    Create {
        /// The tenant it acts for (1 to 63 of a-z, 0-9, -).
        #[arg(long)]
        tenant: String,
        /// Comma-separated: read, write, delete, admin, metrics.
        #[arg(long = "scope", value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Lifetime: `90d`, `12h`, seconds, or `never` (default: auth.token_expiry).
        #[arg(long)]
        expires: Option<String>,
        /// A label for people.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Every token (never their secrets).
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a token (and the links it signed).
    Revoke {
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `depot token …`: on a data dir when one is named (`--data-dir` or
/// `--config`), else through the server's admin API with the caller's token.
pub fn run(action: TokenAction, client: impl FnOnce() -> Result<Client, Failure>) -> Result<(), Failure> {
    let store = match &action {
        TokenAction::Create { store, .. }
        | TokenAction::List { store, .. }
        | TokenAction::Revoke { store, .. } => store,
    };
    if store.data_dir.is_some() || store.config.is_some() {
        return offline(action);
    }
    let c = client()?;
    runtime()?.block_on(async move {
        match action {
            TokenAction::Create { tenant, scopes, expires, name, json, .. } => {
                let req = depot::wire::TokenRequest {
                    tenant,
                    scopes,
                    expires_in: expires.as_deref().map(client::expires_in),
                    name,
                };
                print_token(&client::create_token(&c, &req).await?, json)
            }
            TokenAction::List { json, .. } => {
                let all = client::list_tokens(&c).await?;
                if json {
                    return Ok(print_json(&all)?);
                }
                all.tokens.iter().try_for_each(|t| print_token(t, false))
            }
            TokenAction::Revoke { id, .. } => Ok(client::revoke_token(&c, &id).await?),
        }
    })
}

/// `depot token …` on a data dir (no server running).
fn offline(action: TokenAction) -> Result<(), Failure> {
    use depot::protocol::admin::{lifetime, token_info};
    use depot::store::{Scopes, Tenant};
    use depot::wire::ExpiresIn;
    let refused = |e: String| Failure { code: exit::REFUSED, message: e };
    match action {
        TokenAction::Create { tenant, scopes, expires, name, json, store } => {
            let cfg = load_config(&store, &ServeFlags::default())?;
            let tenant = Tenant::parse(&tenant).map_err(|e| usage(e.to_string()))?;
            let scopes = Scopes::parse(&scopes).map_err(|e| usage(e.to_string()))?;
            let asked = expires.map(|e| e.parse::<u64>().map_or(ExpiresIn::Text(e), ExpiresIn::Seconds));
            let life = lifetime(asked.as_ref(), cfg.auth.token_expiry.0).map_err(|e| usage(e.to_string()))?;
            let s = open_store(&store)?;
            let expires = life.map(|d| s.now_ms() + d.as_millis() as u64);
            let (rec, token) =
                s.issue_token(tenant, scopes, expires, name).map_err(|e| refused(e.to_string()))?;
            let _ = s.close();
            print_token(&token_info(&rec, Some(token)), json)
        }
        TokenAction::List { json, store } => {
            let s = open_store(&store)?;
            let all: Vec<_> =
                s.tokens().map_err(|e| e.to_string())?.iter().map(|t| token_info(t, None)).collect();
            let _ = s.close();
            if json {
                return Ok(print_json(&depot::wire::TokenList { tokens: all })?);
            }
            for t in &all {
                print_token(t, false)?;
            }
            Ok(())
        }
        TokenAction::Revoke { id, store } => {
            let tid = id.parse().map_err(|_| usage(format!("`{id}` is not a token id")))?;
            let s = open_store(&store)?;
            let r = s.revoke_token(&tid).map_err(|e| refused(e.to_string()));
            let _ = s.close();
            r.map(|_| ())
        }
    }
}

/// One token: the secret alone on stdout when there is one (so that
/// `TOKEN=$(depot token create …)` works), the rest on one line.
fn print_token(t: &depot::wire::TokenInfo, json: bool) -> Result<(), Failure> {
    if json {
        return Ok(print_json(t)?);
    }
    if let Some(secret) = &t.token {
        emit(secret)?;
        eprintln!(
            "token {} for tenant {} ({}), expires {}: shown once, keep it safe",
            t.id,
            t.tenant,
            t.scopes.join(","),
            t.expires_at.as_deref().unwrap_or("never")
        );
        return Ok(());
    }
    let state = match (&t.revoked_at, &t.expires_at) {
        (Some(r), _) => format!("revoked {r}"),
        (None, Some(e)) => format!("expires {e}"),
        (None, None) => "never expires".into(),
    };
    emit(&format!(
        "{}  {:<16} {:<28} {}  {}",
        t.id,
        t.tenant,
        t.scopes.join(","),
        state,
        t.name.as_deref().unwrap_or("")
    ))?;
    Ok(())
}
