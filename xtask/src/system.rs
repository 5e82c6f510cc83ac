//! System packages the tests need beyond crates, installed with apt (as root
//! on Debian) when missing. Each install says what it does and why.

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::{Result, run};

/// Whether this process runs as root.
pub(crate) fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Installs Debian `packages` with apt-get (after `apt-get update` when
/// `update`), explaining `why`. Fails with a clear message when not root.
pub(crate) fn apt_install(packages: &[&str], why: &str, update: bool) -> Result {
    if !is_root() {
        return Err(format!(
            "{why}: install the Debian packages {} (needs root), then rerun",
            packages.join(" ")
        )
        .into());
    }
    println!("installing {} with apt-get: {why}", packages.join(" "));
    if update {
        run(Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null()))
}

/// Makes sure the executable at `path` exists, installing `packages` if not.
pub(crate) fn ensure_binary(path: &str, packages: &[&str], why: &str) -> Result {
    if Path::new(path).is_file() {
        return Ok(());
    }
    println!("{path} is missing");
    if apt_install(packages, why, false).is_err() {
        // The package lists may be missing or stale on a fresh machine.
        apt_install(packages, why, true)?;
    }
    if Path::new(path).is_file() {
        Ok(())
    } else {
        Err(format!(
            "installed {} but {path} is still missing",
            packages.join(" ")
        )
        .into())
    }
}
