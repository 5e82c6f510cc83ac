//! `cargo xtask test`: every unit, integration and doc test of the default members.

use crate::util::{Result, cargo_cmd, run};

/// Runs `cargo test --locked` in the project root.
pub(crate) fn run_tests() -> Result {
    run(&mut cargo_cmd(["test", "--locked"]))
}
