//! Hubs on real nats-server processes: two nodes deliver each other's
//! publications exactly once and in order, presence spans nodes, a
//! restarted or paused server never loses a publication silently, and a
//! namespace with history is refused at startup.
#![cfg(feature = "nats")]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::nats::NatsServer;
use common::{Client, Server};
use serde_json::json;
use sockeye_pubsub::{Hub, Namespace, NatsBroker};

fn prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "t{}n{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn hub(url: &str, prefix: &str) -> Hub {
    let broker = NatsBroker::builder(url)
        .prefix(prefix)
        .backoff(Duration::from_millis(50), Duration::from_millis(400))
        .connect()
        .await
        .unwrap();
    Hub::builder()
        .namespace("chat", Namespace::new().client_publish(true).presence(true))
        .namespace("live", Namespace::new().client_publish(true))
        .broker(broker)
        .linger(Duration::from_millis(200))
        .try_build()
        .unwrap()
}

#[tokio::test]
async fn two_hubs_on_one_nats_deliver_each_others_publications_exactly_once() {
    let nats = NatsServer::start().await;
    let p = prefix();
    let (a, b) = (hub(&nats.url(), &p).await, hub(&nats.url(), &p).await);
    let (sa, sb) = (Server::start(&a).await, Server::start(&b).await);
    let mut subs = Vec::new();
    for server in [&sa, &sa, &sb, &sb] {
        let mut c = Client::connect(&server.url()).await;
        c.subscribe("live:x").await;
        // A topic name that is not one plain NATS subject token.
        c.subscribe("live:a.b/c#d=e@f").await;
        subs.push(c);
    }
    let n = 100;
    let mut publishers = Vec::new();
    for (name, server) in [("a", &sa), ("b", &sb)] {
        let url = server.url();
        publishers.push(tokio::spawn(async move {
            let mut c = Client::connect(&url).await;
            for i in 0..n {
                for topic in ["live:x", "live:a.b/c#d=e@f"] {
                    c.publish(topic, &format!(r#"{{"from":"{name}","i":{i}}}"#))
                        .await;
                }
            }
        }));
    }
    for p in publishers {
        p.await.unwrap();
    }
    for c in &mut subs {
        let mut got: std::collections::HashMap<(String, String), Vec<u64>> = Default::default();
        let mut count = 0;
        while count < 4 * n {
            let v = c.recv().await;
            if v.get("data").is_some() {
                count += 1;
                let key = (
                    v["topic"].as_str().unwrap().to_owned(),
                    v["data"]["from"].as_str().unwrap().to_owned(),
                );
                got.entry(key)
                    .or_default()
                    .push(v["data"]["i"].as_u64().unwrap());
            }
        }
        assert_eq!(got.len(), 4);
        for seq in got.values() {
            assert_eq!(seq, &(0..n as u64).collect::<Vec<_>>());
        }
    }
}

#[tokio::test]
async fn presence_spans_nodes_on_nats() {
    let nats = NatsServer::start().await;
    let p = prefix();
    let (a, b) = (hub(&nats.url(), &p).await, hub(&nats.url(), &p).await);
    let (sa, sb) = (Server::start(&a).await, Server::start(&b).await);
    let mut x = Client::connect(&sa.url()).await;
    x.subscribe("chat:p").await;
    let mut y = Client::connect(&sb.url()).await;
    y.subscribe("chat:p").await;
    let joined = loop {
        let v = x.recv().await;
        if v["event"] == "join" && v["member"]["id"].as_str().unwrap().starts_with(b.node_id()) {
            break v["member"]["id"].as_str().unwrap().to_owned();
        }
    };
    // The node that subscribed second learned the first one's member too.
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.presence("chat:p").await.unwrap().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "node b never learned node a's member"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let members = a.presence("chat:p").await.unwrap();
    assert_eq!(members.len(), 2);
    assert!(members.iter().any(|m| m.id == joined));
    // A third node without subscribers asks the others.
    let c = hub(&nats.url(), &p).await;
    assert_eq!(c.presence("chat:p").await.unwrap().len(), 2);
    drop(y);
    loop {
        let v = x.recv().await;
        if v["event"] == "leave" {
            assert_eq!(v["member"]["id"], joined.as_str());
            break;
        }
    }
    assert_eq!(a.presence("chat:p").await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_namespace_with_history_is_refused_at_startup() {
    let nats = NatsServer::start().await;
    let broker = NatsBroker::connect(&nats.url()).await.unwrap();
    let err = Hub::builder()
        .namespace(
            "chat",
            Namespace::new().history(10, Duration::from_secs(60)),
        )
        .broker(broker)
        .try_build()
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("chat") && text.contains("history"), "{text}");
}

/// What one subscriber saw of a stream of publications `{"i": 1..=n}`.
#[derive(Debug, Default)]
struct Seen {
    delivered: u64,
    /// Publications missing from the sequence, each after a notice.
    told: u64,
    notices: Vec<String>,
}

/// Reads `live:f` until publication `n` and, after a `link_down`, the
/// `link_up`; fails on a gap the subscriber was not told about (no `lag`
/// or `link_up` since the last publication it got) or one out of order.
async fn watch(c: &mut Client, n: u64) -> Seen {
    let mut seen = Seen::default();
    let mut next = 1;
    let mut told_since_last = false;
    let mut down = false;
    while next <= n || down {
        let v = c.recv().await;
        if let Some(event) = v["event"].as_str() {
            seen.notices.push(event.to_owned());
            match event {
                "link_down" => down = true,
                "link_up" => {
                    down = false;
                    told_since_last |= v["recovered"] != true;
                }
                "lag" => told_since_last = true,
                _ => {}
            }
            continue;
        }
        let Some(i) = v["data"]["i"].as_u64() else {
            continue;
        };
        assert!(
            i >= next,
            "publication {i} after {}: out of order",
            next - 1
        );
        if i > next {
            assert!(
                told_since_last,
                "publications {next}..{i} missing without a notice: {seen:?}"
            );
            seen.told += i - next;
        }
        seen.delivered += 1;
        told_since_last = false;
        next = i + 1;
    }
    seen
}

/// Publishes `{"i": 1..=n}` on `live:f`, one every `gap`, retrying while
/// the broker refuses.
async fn stream(hub: Hub, n: u64, gap: Duration) {
    for i in 1..=n {
        let deadline = Instant::now() + Duration::from_secs(15);
        while let Err(e) = hub.publish("live:f", &json!({"i": i})).await {
            assert!(Instant::now() < deadline, "publish {i} kept failing: {e}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(gap).await;
    }
}

async fn fault(name: &str, outage: impl AsyncFnOnce(&mut NatsServer)) -> Seen {
    let mut nats = NatsServer::start().await;
    let p = prefix();
    let (a, b) = (hub(&nats.url(), &p).await, hub(&nats.url(), &p).await);
    let sb = Server::start(&b).await;
    let mut c = Client::connect(&sb.url()).await;
    c.subscribe("live:f").await;
    let n = 400;
    let publisher = tokio::spawn(stream(a, n, Duration::from_millis(5)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    outage(&mut nats).await;
    let seen = watch(&mut c, n).await;
    publisher.await.unwrap();
    eprintln!(
        "nats {name}: {n} published, {} delivered in order, {} missing and told, notices {:?}",
        seen.delivered, seen.told, seen.notices
    );
    assert_eq!(seen.delivered + seen.told, n);
    seen
}

#[tokio::test]
async fn nats_restarted_mid_stream_never_loses_a_publication_silently() {
    let seen = fault("restart", async |nats: &mut NatsServer| {
        nats.kill();
        tokio::time::sleep(Duration::from_millis(500)).await;
        nats.restart().await;
    })
    .await;
    assert!(seen.notices.contains(&"link_down".to_owned()), "{seen:?}");
    assert!(seen.notices.contains(&"link_up".to_owned()), "{seen:?}");
}

#[tokio::test]
async fn nats_paused_for_two_seconds_delivers_everything_or_says_so() {
    fault("pause", async |nats: &mut NatsServer| {
        nats.signal("STOP");
        tokio::time::sleep(Duration::from_secs(2)).await;
        nats.signal("CONT");
    })
    .await;
}
