//! `depot backup`: a backup of a store of one node, made by the running
//! server through its admin API, or on a data dir while no server runs
//! (README, "Backing up one node").

use crate::{Failure, StoreArgs, emit, open_store, print_json, runtime};
use depot::client::{self, Client, exit};
use depot::config::ByteSize;
use depot::protocol::admin::backup_info;

/// `depot backup`: on a data dir when one (or a configuration) is named,
/// else through the admin API with the caller's token.
pub fn run(
    store: &StoreArgs,
    json: bool,
    client: impl FnOnce() -> Result<Client, Failure>,
) -> Result<(), Failure> {
    let info = if store.data_dir.is_some() || store.config.is_some() {
        let s = open_store(store)?;
        let made = s.backup();
        let _ = s.close();
        backup_info(made.map_err(|e| Failure { code: exit::REFUSED, message: e.to_string() })?)
    } else {
        let c = client()?;
        runtime()?.block_on(client::create_backup(&c))?
    };
    if json {
        return Ok(print_json(&info)?);
    }
    emit(&info.path)?;
    let objects = if info.copied_bytes == 0 {
        format!("{} objects linked ({} shared with the store)", info.objects, ByteSize(info.object_bytes))
    } else {
        // backups/ is on another file system: what could not be linked was copied.
        format!(
            "{} objects ({}, {} of it copied to another file system)",
            info.objects,
            ByteSize(info.object_bytes),
            ByteSize(info.copied_bytes)
        )
    };
    let keeps =
        if info.copied_bytes < info.object_bytes { ": until then it keeps what it links" } else { "" };
    eprintln!(
        "backup {}: {objects}, {} unfinished uploads, {:.1} s. Copy it elsewhere, then delete it{keeps}.",
        info.name, info.uploads, info.seconds
    );
    Ok(())
}
