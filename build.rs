//! Names the commit the binary is built from, for `depot --version`:
//! `DEPOT_COMMIT` from the environment when set (a container build, which
//! has no `.git`), else `git rev-parse --short HEAD`, else `unknown`.
//!
//! Cargo runs this again when HEAD moves: on a checkout (the HEAD file) or
//! a commit on the current branch (its ref file, or `packed-refs`).

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=DEPOT_COMMIT");
    let commit = match std::env::var("DEPOT_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => {
            watch_head();
            git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    println!("cargo:rustc-env=DEPOT_COMMIT={commit}");
}

/// Asks Cargo to rerun this script when HEAD moves. In a linked worktree the
/// HEAD file is in the worktree's git dir and the refs in the common one.
fn watch_head() {
    let (Some(git_dir), Some(common)) =
        (git(&["rev-parse", "--git-dir"]), git(&["rev-parse", "--git-common-dir"]))
    else {
        return;
    };
    let (git_dir, common) = (PathBuf::from(git_dir), PathBuf::from(common));
    let mut watched = vec![git_dir.join("HEAD"), common.join("packed-refs")];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(common.join(branch));
    }
    // A path that does not exist would make Cargo rerun this every build.
    for path in watched.into_iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
