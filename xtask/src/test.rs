//! `cargo xtask test`: every unit, integration and doc test of the default
//! members, after installing and starting what the tests need beyond crates.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::system::ensure_binary;
use crate::util::{ChildGuard, Result, cargo_cmd, free_port, run, spawn, target_dir};

/// Where Debian's redis-server package puts the server.
pub(crate) const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// The tests' system dependencies: nginx (sockeye-hyper's reverse-proxy
/// test), redis-server (sockeye-pubsub's Redis broker tests, the chat
/// cluster), nats-server (the NATS broker tests), chromium and its WebDriver (the chat page in a real browser).
pub(crate) fn ensure_test_tools() -> Result {
    ensure_binary(
        "/usr/sbin/nginx",
        &["nginx-light"],
        "sockeye-hyper's tests run a real nginx reverse proxy",
    )?;
    ensure_binary(
        REDIS_SERVER,
        &["redis-server"],
        "sockeye-pubsub's tests run real Redis servers (pub/sub, streams, cluster)",
    )?;
    ensure_binary(
        "/usr/sbin/nats-server",
        &["nats-server"],
        "sockeye-pubsub's NATS broker tests run real nats-server processes",
    )?;
    ensure_binary(
        "/usr/bin/chromedriver",
        &["chromium", "chromium-driver"],
        "the chat example is tested in headless Chromium through chromedriver",
    )?;
    ensure_binary(
        "/usr/bin/chromium",
        &["chromium"],
        "the chat example is tested in headless Chromium through chromedriver",
    )
}

/// Starts a throwaway redis-server on a free loopback port (no persistence,
/// its files under target/) for `purpose` (said when starting); stopped
/// when the guard drops.
pub(crate) fn start_redis(purpose: &str) -> Result<(ChildGuard, String)> {
    let port = free_port()?;
    let dir = target_dir().join("tmp").join(format!("redis-{port}"));
    std::fs::create_dir_all(&dir)?;
    println!("starting redis-server on 127.0.0.1:{port} for {purpose}");
    let mut guard = spawn(
        Command::new(REDIS_SERVER)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--logfile", ""])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null()),
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        guard.check_running()?;
        if ping(port) {
            return Ok((guard, format!("redis://127.0.0.1:{port}")));
        }
        if Instant::now() > deadline {
            return Err(format!("redis-server on port {port} did not answer PING").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 16];
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

/// What `cargo xtask test` builds and runs: every target of every member
/// (libraries, binaries, integration tests, examples, benches, xtask
/// itself), with every feature, so feature-gated code such as the axum
/// extractor and the Redis broker is tested. The tidy test
/// `every_test_module_is_run` checks that no `#[cfg(test)]` module sits
/// outside what this selects.
pub(crate) const TEST_TARGETS: &[&str] = &["--workspace", "--all-targets", "--all-features"];

/// Runs `cargo test` on [`TEST_TARGETS`], then the doctests (which
/// `--all-targets` leaves out), with a redis-server for the tests that
/// share one. The example binaries are built first: the integration tests
/// run them as processes, and `--all-targets` builds examples as test
/// harnesses only.
pub(crate) fn run_tests() -> Result {
    ensure_test_tools()?;
    run(&mut cargo_cmd([
        "build",
        "--locked",
        "--workspace",
        "--examples",
        "--all-features",
    ]))?;
    let (_redis, url) = start_redis("the tests")?;
    let mut targets = vec!["test", "--locked"];
    targets.extend_from_slice(TEST_TARGETS);
    run(cargo_cmd(&targets).env("SOCKEYE_TEST_REDIS_URL", &url))?;
    run(
        cargo_cmd(["test", "--locked", "--workspace", "--all-features", "--doc"])
            .env("SOCKEYE_TEST_REDIS_URL", &url),
    )
}
