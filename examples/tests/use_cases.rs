//! The seed's use-case examples (`monitor`, `game`, `iot`) as real
//! processes on loopback, driven by real clients: each one serves its page,
//! speaks its documented protocol, refuses what it says it refuses, and
//! shuts down cleanly on SIGTERM. Also `echo_server --http2`: WebSockets
//! over HTTP/2 and HTTP/1.1 on one port.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use sockeye_proto::{CloseCode, Message};
use sockeye_pubsub::client::{Item, PubSubClient};
use tokio::time::timeout;

use common::{Killed, example_binary, free_addr};

/// An example process (killed when dropped) and its address.
struct Proc {
    child: Killed,
    addr: SocketAddr,
}

impl Proc {
    /// Starts `examples/<name>` on a free port and waits for its
    /// `listening on ADDR` line.
    fn start(name: &str, extra: &[&str]) -> Proc {
        let mut child = Command::new(example_binary(name))
            .args(["--addr", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{name} printed {line:?}"))
            .parse()
            .unwrap();
        Proc {
            child: Killed(child),
            addr,
        }
    }

    /// SIGTERM, then the exit status within 15 s.
    fn terminate(mut self) -> std::process::ExitStatus {
        self.child.signal("TERM");
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ws(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }
}

/// `GET path` over HTTP/1.0: the status line and the body.
fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(tcp, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    let status = response.lines().next().unwrap_or_default().to_owned();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The next publication's data within `secs`, skipping other items.
async fn next_publication(sub: &mut sockeye_pubsub::client::Subscription, secs: u64) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let item = tokio::time::timeout_at(deadline, sub.recv())
            .await
            .expect("no publication in time")
            .expect("subscription ended");
        if let Item::Publication { data, .. } = item {
            return serde_json::from_str(data.get()).unwrap();
        }
    }
}

#[tokio::test]
async fn monitor_streams_samples_and_ends_event_streams_on_shutdown() {
    let monitor = Proc::start("monitor", &[]);
    let (status, page) = http_get(monitor.addr, "/");
    assert!(status.contains("200"), "{status}");
    assert!(
        page.contains("<canvas") || page.contains("<svg"),
        "no chart"
    );

    let client = PubSubClient::builder(monitor.ws("/ws"))
        .connect()
        .await
        .unwrap();
    let mut sub = client.subscribe("metrics:host").await.unwrap();
    let sample = next_publication(&mut sub, 5).await;
    let cpu = sample["cpu"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&cpu), "{sample}");
    assert!(sample["mem"]["total"].as_u64().unwrap() > 0, "{sample}");
    assert!(sample["mem"]["used"].as_u64().unwrap() <= sample["mem"]["total"].as_u64().unwrap());
    assert_eq!(sample["load"].as_array().unwrap().len(), 3);
    // Beside them, sockeye's own metrics of this process: at least this
    // test's socket is open.
    let sockeye = &sample["sockeye"];
    assert_eq!(sockeye["source"], "this process", "{sample}");
    assert!(sockeye["sockets"].as_f64().unwrap() >= 1.0, "{sample}");
    // Samples are the server's: clients may not publish.
    assert!(
        client
            .publish("metrics:host", &json!({"cpu": 0}))
            .await
            .is_err()
    );

    // An event-stream session (the fallback) open at shutdown gets its
    // closing event before the process exits.
    let mut sse = TcpStream::connect(monitor.addr).unwrap();
    sse.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    write!(
        sse,
        "GET /ws HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
        monitor.addr
    )
    .unwrap();
    let mut reader = BufReader::new(sse);
    let mut head = String::new();
    while !head.contains("event: session") {
        assert_ne!(reader.read_line(&mut head).unwrap(), 0, "{head}");
    }
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    client.close().await;
    let status = tokio::task::spawn_blocking(move || monitor.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    let mut rest = String::new();
    let _ = reader.read_to_string(&mut rest);
    assert!(rest.contains("event: close"), "stream ended with {rest:?}");
    assert!(rest.contains("1001"), "{rest:?}");
}

#[tokio::test]
async fn monitor_charts_another_servers_metrics() {
    let metrics = free_addr();
    let echo = Proc::start("echo_server", &["--metrics", &metrics.to_string()]);
    let url = format!("http://{metrics}/metrics");
    let monitor = Proc::start("monitor", &["--scrape", &url]);
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let (mut ws, _) = sockeye_hyper::client::connect(&echo.ws("/")).await.unwrap();
        ws.send(Message::text("hi")).await.unwrap();
        assert_eq!(
            timeout(Duration::from_secs(5), ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
            Message::text("hi")
        );
        sockets.push(ws);
    }

    let client = PubSubClient::builder(monitor.ws("/ws"))
        .connect()
        .await
        .unwrap();
    let mut sub = client.subscribe("metrics:host").await.unwrap();
    // The echo server's figures, not the monitor's: three sockets, each
    // of which sent one message and got it back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let sockeye = loop {
        let sample = next_publication(&mut sub, 5).await;
        let sockeye = sample["sockeye"].clone();
        assert_eq!(sockeye["source"], url.as_str(), "{sample}");
        if sockeye["sockets"] == json!(3.0) {
            break sockeye;
        }
        assert!(tokio::time::Instant::now() < deadline, "{sample}");
    };
    assert!(sockeye["error"].is_null(), "{sockeye}");

    // The scraped server gone: the sample says so, the monitor stays up.
    drop(sockets);
    drop(echo);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let sample = next_publication(&mut sub, 5).await;
        if sample["sockeye"]["error"].is_string() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{sample}");
    }
    client.close().await;
}

/// The next binary message within 5 s, skipping pings and pongs.
async fn next_binary(ws: &mut sockeye_hyper::client::WebSocket) -> Vec<u8> {
    loop {
        match timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => return b.to_vec(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => panic!("expected a binary message, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn game_moves_dots_and_refuses_text() {
    let game = Proc::start("game", &[]);
    let (status, _) = http_get(game.addr, "/");
    assert!(status.contains("200"), "{status}");

    let (mut ws, _) = sockeye_hyper::client::connect(&game.ws("/ws"))
        .await
        .unwrap();
    let welcome = next_binary(&mut ws).await;
    assert_eq!((welcome.len(), welcome[0]), (5, 3), "{welcome:?}");
    let id = u32::from_be_bytes(welcome[1..5].try_into().unwrap());

    // Snapshots: [2][u16 count] then 11 bytes per player.
    let position = |snapshot: &[u8]| -> Option<(u16, u16)> {
        assert_eq!(snapshot[0], 2);
        let count = u16::from_be_bytes([snapshot[1], snapshot[2]]) as usize;
        assert_eq!(snapshot.len(), 3 + 11 * count);
        snapshot[3..].chunks(11).find_map(|p| {
            (u32::from_be_bytes(p[..4].try_into().unwrap()) == id).then(|| {
                (
                    u16::from_be_bytes([p[4], p[5]]),
                    u16::from_be_bytes([p[6], p[7]]),
                )
            })
        })
    };
    let start = position(&next_binary(&mut ws).await).expect("we are on the field");

    // Head for a corner; within a second at 20 Hz the dot gets closer.
    let target = if start.0 < 500 { 999u16 } else { 0 };
    let mut input = vec![1u8];
    input.extend_from_slice(&target.to_be_bytes());
    input.extend_from_slice(&start.1.to_be_bytes());
    ws.send(Message::binary(input)).await.unwrap();
    let mut moved = false;
    for _ in 0..40 {
        let now = position(&next_binary(&mut ws).await).unwrap();
        if now.0.abs_diff(target) + 5 < start.0.abs_diff(target) {
            moved = true;
            break;
        }
    }
    assert!(moved, "the dot did not move toward {target}");

    // Text is not part of the protocol: 1003.
    ws.send(Message::text("hello")).await.unwrap();
    loop {
        match timeout(Duration::from_secs(5), ws.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => {
                assert_eq!(frame.unwrap().code, CloseCode::UNSUPPORTED_DATA);
                break;
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a close, got {other:?}"),
        }
    }
    let status = tokio::task::spawn_blocking(move || game.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn iot_devices_report_and_obey_the_dashboard() {
    let iot = Proc::start("iot", &["--devices", "2"]);
    let (status, devices) = http_get(iot.addr, "/devices");
    assert!(status.contains("200"), "{status}");
    let devices: Value = serde_json::from_str(&devices).unwrap();
    assert_eq!(devices["devices"], json!(["dev-01", "dev-02"]));

    let dashboard = PubSubClient::builder(iot.ws("/ws?dashboard=1"))
        .connect()
        .await
        .unwrap();
    let mut telemetry = dashboard.subscribe("telemetry:dev-01").await.unwrap();
    let reading = next_publication(&mut telemetry, 10).await;
    assert!(reading["temp"].is_number(), "{reading}");
    assert!(reading["battery"].is_number(), "{reading}");

    // A command reaches the device, which reports at the new interval.
    dashboard
        .publish(
            "commands:dev-01",
            &json!({"cmd": "set_interval", "ms": 250}),
        )
        .await
        .unwrap();
    let mut applied = false;
    for _ in 0..40 {
        if next_publication(&mut telemetry, 10).await["interval_ms"] == 250 {
            applied = true;
            break;
        }
    }
    assert!(applied, "dev-01 never reported interval_ms 250");
    // Malformed commands are refused.
    assert!(
        dashboard
            .publish("commands:dev-01", &json!({"cmd": "set_interval", "ms": 1}))
            .await
            .is_err()
    );

    // A device may publish only its own telemetry.
    let device = PubSubClient::builder(iot.ws("/ws?device=dev-02"))
        .connect()
        .await
        .unwrap();
    assert!(
        device
            .publish("telemetry:dev-01", &json!({"temp": 99.0}))
            .await
            .is_err()
    );
    assert!(device.subscribe("commands:dev-01").await.is_err());
    // Unknown devices get no socket at all.
    assert!(
        sockeye_hyper::client::connect(&iot.ws("/ws?device=dev-99"))
            .await
            .is_err()
    );

    device.close().await;
    dashboard.close().await;
    let status = tokio::task::spawn_blocking(move || iot.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn echo_server_serves_websockets_over_http2_and_http1() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use sockeye_hyper::client::ClientBuilder;

    let server = Proc::start("echo_server", &["--http2", "--threads", "1"]);
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let builder = ClientBuilder::new(server.ws("/"));
    let (mut a, head) = builder
        .connect_on::<http_body_util::Empty<hyper::body::Bytes>>(&mut sender)
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    let (mut b, _) = builder.connect_on(&mut sender).await.unwrap();
    a.send(Message::text("one")).await.unwrap();
    b.send(Message::binary(vec![7u8; 100_000])).await.unwrap();
    let within = Duration::from_secs(10);
    assert_eq!(
        timeout(within, a.next()).await.unwrap().unwrap().unwrap(),
        Message::text("one")
    );
    assert_eq!(
        timeout(within, b.next()).await.unwrap().unwrap().unwrap(),
        Message::binary(vec![7u8; 100_000])
    );
    // HTTP/1.1 upgrades on the same port.
    let (mut old, _) = sockeye_hyper::client::connect(&server.ws("/"))
        .await
        .unwrap();
    old.send(Message::text("1.1")).await.unwrap();
    assert_eq!(
        timeout(within, old.next()).await.unwrap().unwrap().unwrap(),
        Message::text("1.1")
    );

    // SIGTERM closes the HTTP/2 sockets with 1001 too.
    server.child.signal("TERM");
    match timeout(within, a.next()).await.unwrap() {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::GOING_AWAY),
        other => panic!("expected close 1001, got {other:?}"),
    }
    let mut server = server;
    let exited = async {
        loop {
            if let Some(status) = server.child.0.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert!(
        timeout(Duration::from_secs(15), exited)
            .await
            .unwrap()
            .success()
    );
}

/// The status line `chat` answers to an upgrade that names `host` (and an
/// `Origin` on the same host, as a rebound page sends).
fn chat_upgrade_status(addr: SocketAddr, host: &str) -> String {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "GET /ws?nick=ann HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(tcp).read_line(&mut line).unwrap();
    line
}

/// DNS rebinding (issue 21.6): on loopback, `chat` answers only to the
/// loopback names on its port, plus `--allowed-host`.
#[test]
fn chat_on_loopback_refuses_rebound_host_names() {
    let chat = Proc::start("chat", &["--allowed-host", "chat.test"]);
    let port = chat.addr.port();
    for (host, expected) in [
        (format!("evil.example:{port}"), "403"),
        (format!("127.0.0.1:{port}"), "101"),
        (format!("localhost:{port}"), "101"),
        (format!("chat.test:{port}"), "101"),
    ] {
        let status = chat_upgrade_status(chat.addr, &host);
        assert!(status.contains(expected), "{host}: {status}");
    }
}

/// The line of `/metrics` for `name` whose labels include every one of
/// `labels`; its value.
fn metric(scrape: &str, name: &str, labels: &[&str]) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        let matches = (key == name || key.starts_with(&format!("{name}{{")))
            && labels.iter().all(|l| key.contains(l));
        matches.then(|| value.parse().ok()).flatten()
    })
}

/// `pubsub_server --metrics ADDR` serves the hub's, the server's and the
/// sockets' counters in the Prometheus text format, and they move.
#[tokio::test]
async fn pubsub_server_exports_its_counters_at_metrics() {
    let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let server = Proc::start("pubsub_server", &["--metrics", &metrics_addr.to_string()]);
    let (mut ws, _) = sockeye_hyper::client::ClientBuilder::new(server.ws("/ws"))
        .no_proxy()
        .connect()
        .await
        .unwrap();
    for line in [
        r#"{"id":1,"op":"subscribe","topic":"test:m"}"#,
        r#"{"id":2,"op":"publish","topic":"test:m","data":{"n":1}}"#,
    ] {
        ws.send(sockeye_hyper::Message::text(line)).await.unwrap();
    }
    // The push of our own publication.
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if msg.as_text().is_some_and(|t| t.contains("\"data\"")) {
            break;
        }
    }
    // Refusals: a 10 KiB target (414) and an upgrade without a key (400).
    let long = format!("/ws?{}", "q".repeat(10 << 10));
    assert!(http_get(server.addr, &long).0.contains("414"));
    let (status, _) = tokio::task::spawn_blocking({
        let addr = server.addr;
        move || {
            let mut tcp = TcpStream::connect(addr).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            write!(
                tcp,
                "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            )
            .unwrap();
            let mut buf = [0u8; 64];
            let n = tcp.read(&mut buf).unwrap();
            (String::from_utf8_lossy(&buf[..n]).into_owned(), ())
        }
    })
    .await
    .unwrap();
    assert!(status.starts_with("HTTP/1.1 400"), "{status}");

    let scrape = tokio::task::spawn_blocking(move || http_get(metrics_addr, "/metrics").1)
        .await
        .unwrap();
    let value = |name: &str, labels: &[&str]| {
        metric(&scrape, name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{scrape}"))
    };
    assert_eq!(value("sockeye_pubsub_publications_total", &[]), 1.0);
    // The push, and the presence join the namespace announces.
    assert!(value("sockeye_pubsub_deliveries_total", &[]) >= 1.0);
    assert_eq!(value("sockeye_pubsub_sessions", &[]), 1.0);
    assert_eq!(
        value(
            "sockeye_sockets_opened_total",
            &["role=\"server\"", "transport=\"http1\""]
        ),
        1.0
    );
    assert_eq!(value("sockeye_sockets_open", &["role=\"server\""]), 1.0);
    assert!(value("sockeye_http_connections_total", &["outcome=\"accepted\""]) >= 3.0);
    assert_eq!(
        value(
            "sockeye_handshake_rejections_total",
            &["status=\"414\"", "reason=\"uri_too_long\""]
        ),
        1.0
    );
    assert_eq!(
        value(
            "sockeye_handshake_rejections_total",
            &["status=\"400\"", "reason=\"invalid_upgrade\""]
        ),
        1.0
    );
    drop(ws);
}
