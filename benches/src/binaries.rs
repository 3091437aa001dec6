//! The programs the scenarios run (sbc, media-relay, and the helpers of the `tests` crate: netprobe, rtpgen,
//! rtpfleet), built before a scenario starts.
//!
//! One cargo invocation, with the same packages as `make bench`: cargo unifies dependency features per invocation,
//! so building a subset (say `-p sbc` alone) compiles some crates again with other features, and a scenario that
//! did so spent a minute and a half rebuilding what `make bench` had just built. The helpers that a scenario runs
//! inside a namespace by path (netprobe, rtpfleet) must sit next to this binary, so a debug `sbc-bench` also builds
//! the `tests` helpers in debug; what is measured (sbc, media-relay) is always the release build.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The packages of `make bench`'s build.
const RELEASE_BUILD: &[&str] =
    &["build", "--release", "-p", "sbc-bench", "-p", "sbc", "-p", "media-relay", "-p", "tests", "--bins"];

/// Builds everything once per process (later calls return the first outcome).
pub fn build() -> Result<()> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT.get_or_init(|| run_builds().map_err(|e| format!("{e:#}"))).clone().map_err(anyhow::Error::msg)
}

fn run_builds() -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut builds = vec![RELEASE_BUILD.to_vec()];
    if !this_is_release()? {
        builds.push(vec!["build", "-p", "tests", "--bins"]);
    }
    for args in builds {
        eprintln!("building: cargo {}", args.join(" "));
        let status = Command::new(&cargo)
            .args(&args)
            .current_dir(::tests::repo_root())
            .status()
            .context("running cargo build")?;
        if !status.success() {
            bail!("`cargo {}` failed", args.join(" "));
        }
    }
    Ok(())
}

fn this_is_release() -> Result<bool> {
    Ok(this_dir()?.file_name().is_some_and(|n| n == "release"))
}

/// The directory of this binary, where its profile's helpers are.
pub fn this_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("current_exe")?;
    Ok(exe.parent().context("the directory of this binary")?.to_owned())
}

/// `target/release` (or `$CARGO_TARGET_DIR/release`).
pub fn release_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| ::tests::repo_root().join("target"))
        .join("release")
}

/// `name` in `dir`, which must exist.
pub fn binary(dir: PathBuf, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::canonicalize(&path).with_context(|| format!("binary {}", path.display()))
}
