//! The examples' command lines (issue 18.4): every binary answers `--help`
//! with its flags and their defaults; an unknown flag or a bad value is a
//! usage error (exit 2) that names the flag; `--flag=value`, a repeated
//! flag (the last value wins) and a repeatable flag work on a real server.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Killed, example_binary};

/// How long a binary may take to answer `--help` or a usage error.
const DEADLINE: Duration = Duration::from_secs(30);

/// Reads all of `pipe` on a thread; the text arrives on the receiver.
fn drain(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    rx
}

/// Runs `examples/<name> args...` to its exit (killed past [`DEADLINE`]):
/// its status, stdout and stderr.
fn run(name: &str, args: &[&str]) -> (ExitStatus, String, String) {
    let mut child = Killed(
        Command::new(example_binary(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = drain(child.0.stdout.take().unwrap());
    let err = drain(child.0.stderr.take().unwrap());
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "{name} {args:?} did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = |rx: mpsc::Receiver<String>| rx.recv_timeout(DEADLINE).unwrap();
    (status, text(out), text(err))
}

/// Every binary, with what its `--help` must name: flags and defaults.
const HELP: &[(&str, &[&str])] = &[
    (
        "autobahn_client",
        &[
            "--url <ws://HOST:PORT>",
            "[default: ws://127.0.0.1:9001]",
            "--agent <NAME>",
            "[default: sockeye]",
            "--cases <PATTERN>",
        ],
    ),
    ("axum", &["--addr <HOST:PORT>", "[default: 127.0.0.1:3000]"]),
    (
        "chat",
        &[
            "--addr <HOST:PORT>",
            "[default: 127.0.0.1:8080]",
            "--redis <URL>",
            "--redis-mode <MODE>",
            "[default: standalone]",
            "--allow-origin <ORIGIN>",
            "--allowed-host <NAME[:PORT]>",
            "--rate-limit <N>",
            "[default: 20]",
            "--history-mb <N>",
            "[default: 64]",
            "--history-topics <N>",
            "[default: 100000]",
            "--threads <N>",
            "--metrics <ADDR>",
            "--max-connections <N>",
            "[default: 65536]",
            "--max-connections-per-ip <N>",
        ],
    ),
    (
        "client",
        &[
            "<URL>",
            "--proxy <URL>",
            "--header <K: V>",
            "--protocol <P>",
            "--reconnect",
            "--http2",
            "--deflate",
        ],
    ),
    (
        "echo_server",
        &[
            "--addr <HOST:PORT>",
            "[default: 127.0.0.1:9001]",
            "--raw",
            "--deflate",
            "--deflate-takeover",
            "--tls-cert <PEM>",
            "--tls-key <PEM>",
            "--allow-origin <ORIGIN>",
            "--bearer <TOKEN>",
            "--http2",
            "--threads <N>",
            "[default: 0]",
            "--metrics <ADDR>",
            "--max-connections <N>",
            "--max-connections-per-ip <N>",
        ],
    ),
    (
        "game",
        &[
            "--addr <HOST:PORT>",
            "[default: 127.0.0.1:8082]",
            "--allowed-host <NAME[:PORT]>",
        ],
    ),
    (
        "iot",
        &[
            "--addr <HOST:PORT>",
            "[default: 127.0.0.1:8083]",
            "--devices <N>",
            "[default: 5]",
        ],
    ),
    (
        "monitor",
        &[
            "--addr <HOST:PORT>",
            "[default: 127.0.0.1:8081]",
            "--allowed-host <NAME[:PORT]>",
        ],
    ),
    (
        "pubsub_server",
        &[
            "--addr <HOST:PORT>",
            "[default: 127.0.0.1:9002]",
            "--redis <URL>",
            "--redis-mode <MODE>",
            "--deflate",
            "--allow-origin <ORIGIN>",
            "--rate-limit <N>",
            "[default: 100]",
            "--history-mb <N>",
            "--history-topics <N>",
            "--threads <N>",
            "--metrics <ADDR>",
            "--max-connections <N>",
            "--max-connections-per-ip <N>",
        ],
    ),
];

#[test]
fn every_binary_answers_help_with_its_flags() {
    for &(name, expected) in HELP {
        for help in ["--help", "-h"] {
            let (status, out, err) = run(name, &[help]);
            assert_eq!(status.code(), Some(0), "{name} {help}: {err}");
            assert!(
                out.contains(&format!("Usage: {name}")),
                "{name} {help}:\n{out}"
            );
            for want in expected {
                assert!(out.contains(want), "{name} {help} lacks {want:?}:\n{out}");
            }
        }
    }
}

/// A usage error: exit 2, and stderr names `flag`.
fn assert_usage_error(name: &str, args: &[&str], flag: &str) {
    let (status, out, err) = run(name, args);
    assert_eq!(status.code(), Some(2), "{name} {args:?}: {out}{err}");
    assert!(err.contains(flag), "{name} {args:?}: {err}");
    assert!(!out.contains("listening on"), "{name} {args:?} started");
}

#[test]
fn unknown_flags_and_bad_values_are_usage_errors() {
    for name in ["echo_server", "pubsub_server", "chat"] {
        assert_usage_error(name, &["--nope"], "--nope");
        assert_usage_error(name, &["--threads", "abc"], "--threads");
        assert_usage_error(name, &["--threads=abc"], "--threads");
        assert_usage_error(name, &["--max-connections", "-1"], "--max-connections");
        assert_usage_error(name, &["--metrics", "nowhere"], "--metrics");
        assert_usage_error(name, &["--addr"], "--addr");
    }
    assert_usage_error("echo_server", &["--raw=1"], "--raw");
    assert_usage_error(
        "pubsub_server",
        &["--redis-mode", "cluster"],
        "--redis-mode",
    );
    assert_usage_error("pubsub_server", &["--rate-limit", "fast"], "--rate-limit");
    assert_usage_error("chat", &["--history-mb", "lots"], "--history-mb");
    assert_usage_error("iot", &["--devices", "0"], "--devices");
    assert_usage_error("iot", &["--devices", "100"], "--devices");
    assert_usage_error("client", &[], "<URL>");
    assert_usage_error("client", &["ws://127.0.0.1:1/", "--nope"], "--nope");
    assert_usage_error("autobahn_client", &["--url"], "--url");
}

/// `examples/<name> args...` until its `listening on ADDR` line (within
/// [`DEADLINE`]); the process and that address.
fn start(name: &str, args: &[&str]) -> (Killed, SocketAddr) {
    let mut child = Killed(
        Command::new(example_binary(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("{name} {args:?} did not start"));
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{name} {args:?} printed {line:?}"))
        .parse()
        .unwrap();
    (child, addr)
}

/// The status line `game` answers to an upgrade at `/ws` that names `host`.
fn upgrade_status(addr: SocketAddr, host: &str) -> String {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(tcp).read_line(&mut line).unwrap();
    line
}

/// `--flag=value` and `--flag value` alike; the last `--addr` wins (the
/// first would not parse); `--allowed-host` keeps every value.
#[test]
fn inline_repeated_and_repeatable_flags_reach_the_server() {
    let (_echo, addr) = start(
        "echo_server",
        &["--addr", "256.0.0.1:0", "--addr=127.0.0.1:0", "--threads=1"],
    );
    assert!(addr.ip().is_loopback(), "{addr}");

    let (_game, addr) = start(
        "game",
        &[
            "--addr=127.0.0.1:0",
            "--allowed-host",
            "one.test",
            "--allowed-host=two.test",
        ],
    );
    let port = addr.port();
    for (host, expected) in [
        (format!("one.test:{port}"), "101"),
        (format!("two.test:{port}"), "101"),
        (format!("evil.test:{port}"), "403"),
    ] {
        let status = upgrade_status(addr, &host);
        assert!(status.contains(expected), "{host}: {status}");
    }
}
