//! `cargo xtask bench`: the load benchmark (sockeye against its peers in one
//! run, see `benches/examples/load.rs`), and with `--micro` the criterion
//! micro-benchmarks.

use std::process::Command;

use crate::system::apt_install;
use crate::util::{Result, cargo_cmd, probe, project_root, run, target_dir};

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
    // Two builds: cargo unifies features within one, and a peer (ratchet)
    // turns on flate2's C zlib, which would then replace the zlib-rs that
    // sockeye's servers use as shipped.
    run(&mut cargo_cmd([
        "build",
        "--release",
        "--locked",
        "-p",
        "sockeye-examples",
        "--example",
        "echo_server",
        "--example",
        "pubsub_server",
    ]))?;
    run(&mut cargo_cmd([
        "build",
        "--release",
        "--locked",
        "-p",
        "sockeye-benches",
        "--examples",
    ]))?;
    let load = target_dir().join("release/examples/load");
    let out = project_root().join("benches/results");
    let mut cmd = Command::new(load);
    cmd.arg("--out").arg(&out);
    match node_ws() {
        Ok(modules) => {
            cmd.arg("--node-modules").arg(modules);
        }
        // The fan-out row of Node shows "failed" with the reason.
        Err(e) => println!("warning: Node ws unavailable for the fan-out benchmark: {e}"),
    }
    cmd.args(passthrough).current_dir(project_root());
    run(&mut cmd)
}

/// Node's `ws` for the fan-out peer, installed with npm under
/// target/tmp/bench-node (Node and npm from Debian when missing).
fn node_ws() -> Result<std::path::PathBuf> {
    let dir = target_dir().join("tmp").join("bench-node");
    let modules = dir.join("node_modules");
    if modules.join("ws/package.json").is_file() {
        return Ok(modules);
    }
    if !probe(Command::new("node").arg("--version")) || !probe(Command::new("npm").arg("--version"))
    {
        apt_install(
            &["nodejs", "npm"],
            "the fan-out benchmark runs Node ws as a peer",
            true,
        )?;
    }
    std::fs::create_dir_all(&dir)?;
    println!(
        "installing Node ws with npm in {} (fan-out benchmark peer)",
        dir.display()
    );
    run(Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent", "ws@8"])
        .current_dir(&dir))?;
    Ok(modules)
}
