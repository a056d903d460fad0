//! `depot tenant show|quota`: a tenant's quota and usage, on a data dir
//! while no server runs, or through the server's admin API.

use clap::Subcommand;

use crate::{Failure, StoreArgs, emit, open_store, print_json, runtime, usage};
use depot::client::{self, Client, exit};
use depot::config::ByteSize;
use depot::wire::{QuotaInfo, TenantInfo};

#[derive(Subcommand)]
pub enum TenantAction {
    /// A tenant's quota and what it uses.
    Show {
        tenant: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Change a tenant's caps; those not named stay as they are. A cap of
    /// `none` removes it; `--clear` removes them all.
    Quota {
        tenant: String,
        /// Logical bytes of committed files: `10GiB`, `500MB`, bytes, or `none`.
        #[arg(long)]
        bytes: Option<String>,
        /// Committed files, or `none`.
        #[arg(long)]
        files: Option<String>,
        /// Bytes in open upload sessions: a size, or `none`.
        #[arg(long)]
        pending: Option<String>,
        /// Remove every cap.
        #[arg(long, conflicts_with_all = ["bytes", "files", "pending"])]
        clear: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// A cap as written on the command line: a size or count, or `none`.
fn cap(v: &str, size: bool) -> Result<Option<u64>, Failure> {
    if v.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let parsed = if size {
        v.parse::<ByteSize>().map(|b| b.0).map_err(|e| e.to_string())
    } else {
        v.trim().parse::<u64>().map_err(|_| format!("`{v}` is not a number"))
    };
    parsed.map(Some).map_err(usage)
}

/// `q` with the caps the command names changed.
fn changed(
    mut q: QuotaInfo,
    bytes: Option<&str>,
    files: Option<&str>,
    pending: Option<&str>,
    clear: bool,
) -> Result<QuotaInfo, Failure> {
    if clear {
        return Ok(QuotaInfo::default());
    }
    if bytes.is_none() && files.is_none() && pending.is_none() {
        return Err(usage("name a cap to change (--bytes, --files, --pending) or --clear"));
    }
    if let Some(v) = bytes {
        q.bytes = cap(v, true)?;
    }
    if let Some(v) = files {
        q.files = cap(v, false)?;
    }
    if let Some(v) = pending {
        q.pending = cap(v, true)?;
    }
    Ok(q)
}

/// `depot tenant …`: on a data dir when one is named, else through the
/// admin API with the caller's token.
pub fn run(action: TenantAction, client: impl FnOnce() -> Result<Client, Failure>) -> Result<(), Failure> {
    let (TenantAction::Show { store, .. } | TenantAction::Quota { store, .. }) = &action;
    if store.data_dir.is_some() || store.config.is_some() {
        return offline(action);
    }
    let c = client()?;
    runtime()?.block_on(async move {
        match action {
            TenantAction::Show { tenant, json, .. } => print(&client::tenant(&c, &tenant).await?, json),
            TenantAction::Quota { tenant, bytes, files, pending, clear, json, .. } => {
                let now = client::tenant(&c, &tenant).await?;
                let q = changed(now.quota, bytes.as_deref(), files.as_deref(), pending.as_deref(), clear)?;
                print(&client::set_quota(&c, &tenant, &q).await?, json)
            }
        }
    })
}

fn offline(action: TenantAction) -> Result<(), Failure> {
    use depot::protocol::admin::tenant_info;
    use depot::store::{Quota, Tenant};
    let refused = |e: depot::store::Error| Failure { code: exit::REFUSED, message: e.to_string() };
    match action {
        TenantAction::Show { tenant, json, store } => {
            let t = Tenant::parse(&tenant).map_err(|e| usage(e.to_string()))?;
            let s = open_store(&store)?;
            let info = tenant_info(&s, &t).map_err(refused);
            let _ = s.close();
            print(&info?, json)
        }
        TenantAction::Quota { tenant, bytes, files, pending, clear, json, store } => {
            let t = Tenant::parse(&tenant).map_err(|e| usage(e.to_string()))?;
            let s = open_store(&store)?;
            let info = (|| {
                let now = tenant_info(&s, &t).map_err(refused)?;
                let q = changed(now.quota, bytes.as_deref(), files.as_deref(), pending.as_deref(), clear)?;
                s.set_quota(&t, &Quota { bytes: q.bytes, files: q.files, pending: q.pending })
                    .map_err(refused)?;
                tenant_info(&s, &t).map_err(refused)
            })();
            let _ = s.close();
            print(&info?, json)
        }
    }
}

/// One line per figure: `cap` is `none` when there is no cap.
fn print(t: &TenantInfo, json: bool) -> Result<(), Failure> {
    if json {
        return Ok(print_json(t)?);
    }
    let of =
        |used: String, cap: Option<String>| format!("{used} of {}", cap.unwrap_or_else(|| "no cap".into()));
    let size = |n: u64| ByteSize(n).to_string();
    emit(&format!("tenant   {}", t.tenant))?;
    emit(&format!("bytes    {}", of(size(t.usage.bytes), t.quota.bytes.map(size))))?;
    emit(&format!("files    {}", of(t.usage.files.to_string(), t.quota.files.map(|n| n.to_string()))))?;
    emit(&format!("pending  {}", of(size(t.usage.pending), t.quota.pending.map(size))))?;
    Ok(())
}
