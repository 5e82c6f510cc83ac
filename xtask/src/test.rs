//! `cargo xtask test`: every unit, integration and doc test of the default
//! members, after installing what the tests need beyond crates.

use crate::system::ensure_binary;
use crate::util::{Result, cargo_cmd, run};

/// The tests' system dependencies: nginx (sockeye-hyper's reverse-proxy test).
pub(crate) fn ensure_test_tools() -> Result {
    ensure_binary(
        "/usr/sbin/nginx",
        &["nginx-light"],
        "sockeye-hyper's tests run a real nginx reverse proxy",
    )
}

/// Runs `cargo test --locked --all-features` in the project root (every
/// feature, so feature-gated code such as the axum extractor is tested).
pub(crate) fn run_tests() -> Result {
    ensure_test_tools()?;
    run(&mut cargo_cmd(["test", "--locked", "--all-features"]))
}
