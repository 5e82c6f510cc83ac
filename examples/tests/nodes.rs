//! `pubsub_server` processes as a cluster on one broker: two nodes on
//! Redis, one of them killed with SIGKILL and restarted on its port while
//! its client reconnects, a slow node (stopped with SIGSTOP for 2 s) on
//! Redis and on NATS, and two nodes on NATS. For every publication the
//! subscriber counts what it got: delivered in order, or reported lost —
//! never silently missing.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Killed, example_binary, free_addr};
use serde_json::Value;
use sockeye_pubsub::client::{Item, PubSubClient, Subscription};

/// Starts `pubsub_server` on `addr` with `broker` flags; returns once it
/// printed `listening on`.
fn node(addr: SocketAddr, broker: &[&str]) -> Killed {
    let mut child = Command::new(example_binary("pubsub_server"))
        .args(["--addr", &addr.to_string(), "--threads", "1"])
        .args(["--rate-limit", "100000"])
        .args(broker)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("listening on"),
        "pubsub_server printed {line:?}"
    );
    Killed(child)
}

/// A server binary (`redis-server`, `nats-server`) listening on `addr`.
fn broker(binary: &str, args: &[String], addr: SocketAddr) -> Killed {
    assert!(
        Path::new(binary).is_file(),
        "{binary} is missing: `cargo xtask test` installs it"
    );
    let child = Command::new(binary)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{binary} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Killed(child)
}

fn redis(addr: SocketAddr) -> Killed {
    let port = addr.port().to_string();
    let args = [
        "--port",
        &port,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ];
    broker("/usr/bin/redis-server", &args.map(str::to_owned), addr)
}

fn nats(addr: SocketAddr) -> Killed {
    let args = ["-a", "127.0.0.1", "-p", &addr.port().to_string()].map(str::to_owned);
    broker("/usr/sbin/nats-server", &args, addr)
}

async fn client(addr: SocketAddr) -> PubSubClient {
    PubSubClient::builder(format!("ws://{addr}/ws"))
        .connect()
        .await
        .unwrap()
}

/// Publishes `{"i": 1..=n}` to `topic` through `addr`, one every 5 ms.
async fn publish(addr: SocketAddr, topic: &'static str, n: u64) {
    let publisher = client(addr).await;
    for i in 1..=n {
        publisher
            .publish(topic, &serde_json::json!({"i": i}))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What a subscriber got of `{"i": 1..=n}`.
#[derive(Debug, Default)]
struct Counts {
    delivered: u64,
    lost_and_told: u64,
    reconnects: u64,
}

/// Reads until publication `n`: each one in order, a gap only after
/// `Item::Lost` (or a reconnection that says it did not recover).
async fn count(sub: &mut Subscription, n: u64) -> Counts {
    let mut counts = Counts::default();
    let (mut next, mut told) = (1, false);
    while next <= n {
        let item = tokio::time::timeout(Duration::from_secs(20), sub.recv())
            .await
            .expect("nothing within 20 s")
            .expect("subscription ended");
        match item {
            Item::Publication { data, .. } => {
                let v: Value = serde_json::from_str(data.get()).unwrap();
                let i = v["i"].as_u64().unwrap();
                assert!(
                    i >= next,
                    "{i} after {}: duplicate or out of order",
                    next - 1
                );
                if i > next {
                    assert!(told, "{next}..{i} missing without a notice ({counts:?})");
                    counts.lost_and_told += i - next;
                }
                counts.delivered += 1;
                (next, told) = (i + 1, false);
            }
            Item::Lost | Item::Reconnected { recovered: false } => told = true,
            Item::Reconnected { recovered: true } => counts.reconnects += 1,
            _ => {}
        }
    }
    counts
}

#[tokio::test]
async fn a_node_killed_and_restarted_loses_nothing_its_client_is_not_told_of() {
    let redis_addr = free_addr();
    let _redis = redis(redis_addr);
    let url = format!("redis://{redis_addr}");
    let (a_addr, b_addr) = (free_addr(), free_addr());
    let _a = node(a_addr, &["--redis", &url]);
    let mut b = node(b_addr, &["--redis", &url]);
    let subscriber = client(b_addr).await;
    let mut sub = subscriber.subscribe("test:kill").await.unwrap();
    let n = 600;
    let publisher = tokio::spawn(publish(a_addr, "test:kill", n));
    tokio::time::sleep(Duration::from_millis(700)).await;
    drop(b); // SIGKILL
    tokio::time::sleep(Duration::from_millis(500)).await;
    b = node(b_addr, &["--redis", &url]);
    let counts = count(&mut sub, n).await;
    publisher.await.unwrap();
    eprintln!("node killed: {n} published, {counts:?}");
    // Node b's restart is recovered from the Redis stream.
    assert_eq!(counts.delivered, n, "{counts:?}");
    assert!(counts.reconnects >= 1, "{counts:?}");
    drop(b);
}

#[tokio::test]
async fn two_nodes_on_nats_deliver_each_others_publications() {
    let nats_addr = free_addr();
    let _nats = nats(nats_addr);
    let url = format!("nats://{nats_addr}");
    let (a_addr, b_addr) = (free_addr(), free_addr());
    let _a = node(a_addr, &["--nats", &url]);
    let _b = node(b_addr, &["--nats", &url]);
    let subscriber = client(b_addr).await;
    let mut sub = subscriber.subscribe("test:nats").await.unwrap();
    let n = 200;
    publish(a_addr, "test:nats", n).await;
    let counts = count(&mut sub, n).await;
    assert_eq!(counts.delivered, n, "{counts:?}");
    // Presence across the two nodes: the subscriber on b, seen from b.
    let presence = subscriber.presence("test:nats").await.unwrap();
    assert_eq!(presence.len(), 1, "{presence:?}");
}

/// Node b stops for 2 s (SIGSTOP) while node a publishes: afterwards its
/// subscriber gets the backlog in order, or is told what it lost.
async fn slow_node(broker_flags: &[&str]) -> Counts {
    let (a_addr, b_addr) = (free_addr(), free_addr());
    let _a = node(a_addr, broker_flags);
    let b = node(b_addr, broker_flags);
    let subscriber = client(b_addr).await;
    let mut sub = subscriber.subscribe("test:slow").await.unwrap();
    let n = 600;
    let publisher = tokio::spawn(publish(a_addr, "test:slow", n));
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.signal("STOP");
    tokio::time::sleep(Duration::from_secs(2)).await;
    b.signal("CONT");
    let counts = count(&mut sub, n).await;
    publisher.await.unwrap();
    counts
}

#[tokio::test]
async fn a_slow_node_on_redis_catches_up_in_order() {
    let redis_addr = free_addr();
    let _redis = redis(redis_addr);
    let url = format!("redis://{redis_addr}");
    let counts = slow_node(&["--redis", &url]).await;
    eprintln!("slow node on Redis: 600 published, {counts:?}");
    assert_eq!(counts.delivered, 600, "{counts:?}");
}

#[tokio::test]
async fn a_slow_node_on_nats_catches_up_in_order() {
    let nats_addr = free_addr();
    let _nats = nats(nats_addr);
    let url = format!("nats://{nats_addr}");
    let counts = slow_node(&["--nats", &url]).await;
    eprintln!("slow node on NATS: 600 published, {counts:?}");
    assert_eq!(counts.delivered + counts.lost_and_told, 600, "{counts:?}");
}
