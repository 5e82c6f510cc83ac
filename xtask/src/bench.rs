//! `cargo xtask bench`: the load benchmark (sockeye against its peers in one
//! run, see `benches/examples/load/main.rs`), and with `--micro` the
//! criterion micro-benchmarks. For the cross-node scenario it starts a
//! throwaway redis-server and nats-server (installed when missing); for the
//! fault scenario it installs them when missing (the load binary starts,
//! kills and restarts its own); for the instruction counts it installs
//! valgrind when missing.

use std::io::Read as _;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::system::{apt_install, ensure_binary};
use crate::test::{REDIS_SERVER, start_redis};
use crate::util::{
    ChildGuard, Result, cargo_cmd, free_port, probe, project_root, run, spawn, target_dir,
};

/// Where Debian's nats-server package puts the server.
const NATS_SERVER: &str = "/usr/sbin/nats-server";
/// Debian's valgrind package, which also has `callgrind_control`.
const VALGRIND: &str = "/usr/bin/valgrind";

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
    // Stopped when the benchmark ends (the guards drop).
    let mut _brokers: Vec<ChildGuard> = Vec::new();
    if wants_scenario(args, "crossnode") {
        // Without a URL the load binary shows that broker's rows as failed.
        match start_bench_redis() {
            Ok((guard, url)) => {
                cmd.arg("--redis-url").arg(url);
                _brokers.push(guard);
            }
            Err(e) => println!("warning: no Redis for the cross-node benchmark: {e}"),
        }
        match start_nats() {
            Ok((guard, url)) => {
                cmd.arg("--nats-url").arg(url);
                _brokers.push(guard);
            }
            Err(e) => println!("warning: no NATS for the cross-node benchmark: {e}"),
        }
    }
    if wants_scenario(args, "faults") {
        // The fault cases start, kill and restart brokers of their own.
        for (binary, package) in [(REDIS_SERVER, "redis-server"), (NATS_SERVER, "nats-server")] {
            if let Err(e) = ensure_binary(
                binary,
                &[package],
                "the fault benchmark kills and restarts real broker servers",
            ) {
                println!("warning: no {package} for the fault benchmark: {e}");
            }
        }
    }
    if wants_scenario(args, "instructions")
        && let Err(e) = ensure_binary(
            VALGRIND,
            &["valgrind"],
            "the instruction-count rows run each echo server under callgrind",
        )
    {
        // The load binary shows those rows as failed, with the reason.
        println!("warning: no valgrind for the instruction counts: {e}");
    }
    cmd.args(passthrough).current_dir(project_root());
    run(&mut cmd)
}

/// Whether `--scenarios` (all when absent) selects `key`.
fn wants_scenario(args: &[String], key: &str) -> bool {
    match args.iter().position(|a| a == "--scenarios") {
        None => true,
        Some(i) => args
            .get(i + 1)
            .is_some_and(|list| list.split(',').any(|k| k == key)),
    }
}

fn start_bench_redis() -> Result<(ChildGuard, String)> {
    ensure_binary(
        REDIS_SERVER,
        &["redis-server"],
        "the cross-node benchmark runs sockeye nodes on a real Redis",
    )?;
    start_redis("the cross-node benchmark")
}

/// Starts a throwaway nats-server on a free loopback port (installed with
/// apt when missing); stopped when the guard drops.
fn start_nats() -> Result<(ChildGuard, String)> {
    ensure_binary(
        NATS_SERVER,
        &["nats-server"],
        "the cross-node benchmark runs sockeye nodes on a real NATS server",
    )?;
    let port = free_port()?;
    println!("starting nats-server on 127.0.0.1:{port} for the cross-node benchmark");
    let mut guard = spawn(
        Command::new(NATS_SERVER)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        guard.check_running()?;
        if nats_ready(port) {
            return Ok((guard, format!("nats://127.0.0.1:{port}")));
        }
        if Instant::now() > deadline {
            return Err(format!("nats-server on port {port} did not send INFO").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A NATS server greets every connection with `INFO {...}`.
fn nats_ready(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).is_ok() && &buf == b"INFO "
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_selection() {
        let args = |s: &[&str]| s.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
        assert!(wants_scenario(&args(&["--quick"]), "crossnode"));
        assert!(wants_scenario(
            &args(&["--scenarios", "fanout,crossnode"]),
            "crossnode"
        ));
        assert!(!wants_scenario(
            &args(&["--scenarios", "fanout"]),
            "crossnode"
        ));
        assert!(!wants_scenario(&args(&["--scenarios"]), "crossnode"));
    }
}
