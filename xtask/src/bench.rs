//! `cargo xtask bench`: the load benchmark (sockeye against its peers in one
//! run, see `benches/examples/load.rs`), and with `--micro` the criterion
//! micro-benchmarks.

use std::process::Command;

use crate::util::{Result, cargo_cmd, project_root, run, target_dir};

/// `[--quick] [--micro] [--servers a,b] [--scenarios x,y]`
pub(crate) fn run_bench(args: &[String]) -> Result {
    let micro = args.iter().any(|a| a == "--micro");
    let passthrough: Vec<&String> = args.iter().filter(|a| *a != "--micro").collect();
    if micro {
        return run(
            cargo_cmd(["bench", "--locked", "-p", "sockeye-benches"]).current_dir(project_root())
        );
    }
    if Command::new("taskset").arg("--version").output().is_err() {
        return Err(
            "`taskset` (util-linux) is needed to pin the servers and the load generator".into(),
        );
    }
    run(&mut cargo_cmd([
        "build",
        "--release",
        "--locked",
        "-p",
        "sockeye-examples",
        "--example",
        "echo_server",
        "-p",
        "sockeye-benches",
        "--examples",
    ]))?;
    let load = target_dir().join("release/examples/load");
    let out = project_root().join("benches/results");
    let mut cmd = Command::new(load);
    cmd.arg("--out")
        .arg(&out)
        .args(passthrough)
        .current_dir(project_root());
    run(&mut cmd)
}
