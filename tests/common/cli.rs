//! The real `depot` binary, pointed at a server.

use std::process::Output;

use tokio::process::Command;

/// `depot` talking to `base`, with no config file of the developer's.
pub fn depot(base: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_depot"));
    c.env("DEPOT_SERVER", base).env_remove("DEPOT_CONFIG").kill_on_drop(true);
    c
}

pub async fn run(base: &str, args: &[&str]) -> Output {
    depot(base).args(args).output().await.unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// Stdout of a run that must have succeeded.
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "depot failed ({}): {}", code(o), stderr(o));
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// Stdout of a run that must have succeeded, as JSON (a `--json` command).
pub async fn run_json<T: serde::de::DeserializeOwned>(base: &str, args: &[&str]) -> T {
    let out = run(base, args).await;
    serde_json::from_str(ok(&out).trim()).unwrap_or_else(|e| panic!("depot {args:?}: not JSON: {e}"))
}
