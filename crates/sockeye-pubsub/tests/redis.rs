//! Hubs on real redis-server processes: two nodes deliver each other's
//! publications exactly once, one Redis subscription per topic per node
//! with a linger, Redis killed and restarted mid-stream, Redis paused with
//! SIGSTOP, recovery across nodes, presence across nodes, sharded pub/sub
//! on a three-node Redis Cluster, and errors while Redis is down.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::redis::{RedisServer, Shared, command};
use common::{Client, Server};
use serde_json::{Value, json};
use sockeye_pubsub::{Hub, Namespace, RedisBroker, RedisMode};

fn prefix(test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "t{}-{}-{test}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn hub(urls: &[String], prefix: &str, mode: RedisMode) -> Hub {
    let mut builder = RedisBroker::builder(urls[0].as_str())
        .prefix(prefix)
        .mode(mode)
        .backoff(Duration::from_millis(50), Duration::from_millis(400));
    for url in &urls[1..] {
        builder = builder.node(url.as_str());
    }
    let broker = builder.connect().await.unwrap();
    Hub::builder()
        .namespace(
            "chat",
            Namespace::new()
                .client_publish(true)
                .history(1000, Duration::from_secs(60))
                .presence(true),
        )
        .namespace("live", Namespace::new().client_publish(true))
        .broker(broker)
        .linger(Duration::from_millis(200))
        .build()
}

/// Reads pushes of `topic` until `n` arrived, answering nothing else.
async fn pushes(c: &mut Client, topic: &str, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        let v = c.recv().await;
        if v["topic"] == topic && v.get("data").is_some() {
            out.push(v);
        }
    }
    out
}

/// `PUBSUB NUMSUB channel`: how many connections subscribe to it.
async fn numsub(port: u16, channel: &str) -> u64 {
    let reply = command(port, &format!("PUBSUB NUMSUB {channel}")).await;
    // *2 $len channel :N
    reply
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .next_back()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn two_hubs_on_one_redis_deliver_each_others_publications_exactly_once() {
    let redis = Shared::get().await;
    let p = prefix("two");
    let (a, b) = (
        hub(&[redis.url()], &p, RedisMode::Standalone).await,
        hub(&[redis.url()], &p, RedisMode::Standalone).await,
    );
    let (sa, sb) = (Server::start(&a).await, Server::start(&b).await);
    let mut subs = Vec::new();
    for server in [&sa, &sa, &sb, &sb] {
        let mut c = Client::connect(&server.url()).await;
        c.subscribe("chat:x").await;
        c.subscribe("live:x").await;
        subs.push(c);
    }
    // One Redis subscription per topic per node, however many local sockets.
    assert_eq!(numsub(redis.port(), &format!("{p}:{{chat:x}}")).await, 2);

    let n = 100;
    let mut publishers = Vec::new();
    for (name, server) in [("a", &sa), ("b", &sb)] {
        let url = server.url();
        publishers.push(tokio::spawn(async move {
            let mut c = Client::connect(&url).await;
            for i in 0..n {
                c.publish("chat:x", &format!(r#"{{"from":"{name}","i":{i}}}"#))
                    .await;
                c.publish("live:x", &format!(r#"{{"from":"{name}","i":{i}}}"#))
                    .await;
            }
        }));
    }
    for p in publishers {
        p.await.unwrap();
    }
    for c in &mut subs {
        let mut by_topic: std::collections::HashMap<String, Vec<Value>> = Default::default();
        let mut count = 0;
        while count < 4 * n {
            let v = c.recv().await;
            if v.get("data").is_some() {
                count += 1;
                by_topic
                    .entry(v["topic"].as_str().unwrap().to_owned())
                    .or_default()
                    .push(v);
            }
        }
        for topic in ["chat:x", "live:x"] {
            let got = &by_topic[topic];
            assert_eq!(got.len(), 2 * n);
            for from in ["a", "b"] {
                let seq: Vec<u64> = got
                    .iter()
                    .filter(|v| v["data"]["from"] == from)
                    .map(|v| v["data"]["i"].as_u64().unwrap())
                    .collect();
                assert_eq!(
                    seq,
                    (0..n as u64).collect::<Vec<_>>(),
                    "{topic} from {from}"
                );
            }
            if topic == "chat:x" {
                // One stream for both nodes: offsets 1..=200, in order.
                let offsets: Vec<u64> = got.iter().map(|v| v["offset"].as_u64().unwrap()).collect();
                assert_eq!(offsets, (1..=2 * n as u64).collect::<Vec<_>>());
            }
        }
    }
    // Nothing more arrives (no duplicates late either).
    let mut c = subs.pop().unwrap();
    c.ok(r#"{"op":"presence","topic":"chat:x"}"#).await;
    // The last local subscriber leaves node A: after the linger, node A
    // unsubscribes at Redis; node B keeps its subscription.
    drop(subs);
    drop(sa);
    let deadline = Instant::now() + Duration::from_secs(5);
    while numsub(redis.port(), &format!("{p}:{{chat:x}}")).await != 1 {
        assert!(
            Instant::now() < deadline,
            "node A kept its Redis subscription"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(c);
}

/// Publishes `range` from hub `a`, retrying while Redis is down.
async fn publish_range(a: &Hub, range: std::ops::RangeInclusive<u64>) {
    for i in range {
        let deadline = Instant::now() + Duration::from_secs(15);
        while let Err(e) = a.publish("chat:r", &json!({"i": i})).await {
            assert!(Instant::now() < deadline, "publish {i} kept failing: {e}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn redis_killed_and_restarted_mid_stream_subscribers_recover() {
    // AOF with fsync on every write: what Redis acknowledged survives SIGKILL.
    let mut redis = RedisServer::start_with(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
    ])
    .await;
    let p = prefix("restart");
    let a = hub(&[redis.url()], &p, RedisMode::Standalone).await;
    let b = hub(&[redis.url()], &p, RedisMode::Standalone).await;
    let sb = Server::start(&b).await;
    let mut c = Client::connect(&sb.url()).await;
    c.subscribe("chat:r").await;

    publish_range(&a, 1..=50).await;
    redis.kill();
    let outage = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        redis.restart().await;
        redis
    });
    // Publishing during the outage fails and is retried until Redis is back.
    publish_range(&a, 51..=100).await;
    let _redis = outage.await.unwrap();

    let mut data = Vec::new();
    let mut events = Vec::new();
    while data.len() < 100 || !events.iter().any(|e: &Value| e["event"] == "link_up") {
        let v = c.recv().await;
        if v.get("data").is_some() {
            data.push((
                v["offset"].as_u64().unwrap(),
                v["data"]["i"].as_u64().unwrap(),
            ));
        } else if v.get("event").is_some() {
            events.push(v);
        }
    }
    // Every publication exactly once, in order, offsets unbroken.
    assert_eq!(data, (1..=100).map(|i| (i, i)).collect::<Vec<_>>());
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"link_down"), "{kinds:?}");
    let up = events.iter().find(|e| e["event"] == "link_up").unwrap();
    assert_eq!(up["recovered"], true, "{events:?}");
    assert!(!kinds.contains(&"lag"), "{kinds:?}");
}

#[tokio::test]
async fn redis_restarted_empty_reports_the_loss_and_resumes() {
    let mut redis = RedisServer::start().await;
    let p = prefix("empty");
    let a = hub(&[redis.url()], &p, RedisMode::Standalone).await;
    let sa = Server::start(&a).await;
    let mut c = Client::connect(&sa.url()).await;
    let ok = c.subscribe("chat:r").await;
    let epoch = ok["epoch"].as_str().unwrap().to_owned();
    publish_range(&a, 1..=10).await;
    assert_eq!(pushes(&mut c, "chat:r", 10).await.len(), 10);
    redis.kill();
    redis.restart().await;
    // Without persistence the stream is gone: the hub cannot recover it
    // and says so (lag), then goes on in a new epoch.
    let mut kinds = Vec::new();
    while !kinds.contains(&"link_up".to_owned()) {
        let v = c.recv().await;
        if let Some(e) = v["event"].as_str() {
            kinds.push(e.to_owned());
            if e == "link_up" {
                assert_eq!(v["recovered"], false);
            }
        }
    }
    assert_eq!(kinds, ["link_down", "lag", "link_up"]);
    publish_range(&a, 11..=11).await;
    let v = pushes(&mut c, "chat:r", 1).await;
    assert_eq!(v[0]["data"]["i"], 11);
    assert_eq!(v[0]["offset"], 1);
    // Resubscribing from the old position is refused honestly.
    let id = c
        .command(&format!(
            r#"{{"op":"subscribe","topic":"chat:r","since":{{"offset":10,"epoch":"{epoch}"}}}}"#
        ))
        .await;
    let (reply, _) = c.reply(id).await;
    assert_eq!(reply["ok"]["recovered"], false);
    assert_ne!(reply["ok"]["epoch"], epoch.as_str());
}

/// Redis comes back empty and takes publications from another node before
/// this one has reconnected (its backoff is longer): the old epoch's gap
/// is reported (`lag`, `link_up` without recovery), and what the new
/// epoch already holds is delivered, from its start, in order.
#[tokio::test]
async fn publications_a_recreated_stream_took_before_the_node_was_back_are_delivered() {
    let mut redis = RedisServer::start().await;
    let p = prefix("recreated");
    let a = hub(&[redis.url()], &p, RedisMode::Standalone).await;
    let slow = RedisBroker::builder(redis.url().as_str())
        .prefix(&p)
        .backoff(Duration::from_millis(1500), Duration::from_secs(2))
        .connect()
        .await
        .unwrap();
    let b = Hub::builder()
        .namespace(
            "chat",
            Namespace::new()
                .client_publish(true)
                .history(1000, Duration::from_secs(60)),
        )
        .broker(slow)
        .build();
    let sb = Server::start(&b).await;
    let mut c = Client::connect(&sb.url()).await;
    c.subscribe("chat:r").await;
    publish_range(&a, 1..=3).await;
    assert_eq!(pushes(&mut c, "chat:r", 3).await.len(), 3);

    redis.kill();
    redis.restart().await;
    // Node A is back first and publishes into the new, empty stream.
    publish_range(&a, 101..=105).await;

    let mut seen = Vec::new();
    let mut data = Vec::new();
    loop {
        let v = c.recv().await;
        if let Some(e) = v["event"].as_str() {
            seen.push(e.to_owned());
            if e == "link_up" {
                assert_eq!(v["recovered"], false, "{v}");
                break;
            }
        } else if v.get("data").is_some() {
            seen.push("data".to_owned());
            data.push((
                v["offset"].as_u64().unwrap(),
                v["data"]["i"].as_u64().unwrap(),
            ));
        }
    }
    assert_eq!(data, (1..=5).map(|o| (o, 100 + o)).collect::<Vec<_>>());
    // The gap is reported before what follows it.
    let lag = seen.iter().position(|e| e == "lag").unwrap();
    let first = seen.iter().position(|e| e == "data").unwrap();
    assert!(lag < first, "{seen:?}");
}

#[tokio::test]
async fn redis_paused_for_two_seconds_mid_stream_loses_nothing() {
    let redis = RedisServer::start().await;
    let p = prefix("pause");
    let a = hub(&[redis.url()], &p, RedisMode::Standalone).await;
    let b = hub(&[redis.url()], &p, RedisMode::Standalone).await;
    let sb = Server::start(&b).await;
    let mut c = Client::connect(&sb.url()).await;
    c.subscribe("chat:r").await;
    let n = 300;
    let publisher = tokio::spawn(async move {
        for i in 1..=n {
            publish_range(&a, i..=i).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // SIGSTOP: connections stay up, replies wait (under the 5 s response
    // timeout), then everything resumes.
    redis.signal("STOP");
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.signal("CONT");
    let mut data = Vec::new();
    let mut events = Vec::new();
    while data.len() < n as usize {
        let v = c.recv().await;
        if v.get("data").is_some() {
            data.push(v["data"]["i"].as_u64().unwrap());
        } else if let Some(e) = v["event"].as_str() {
            events.push(e.to_owned());
        }
    }
    publisher.await.unwrap();
    eprintln!(
        "redis pause: {n} published, {} delivered in order, notices {events:?}",
        data.len()
    );
    assert_eq!(data, (1..=n).collect::<Vec<_>>());
    // Nothing was lost, so nothing to report (a presence join aside).
    assert!(events.iter().all(|e| e == "join"), "{events:?}");
}

#[tokio::test]
async fn recovery_and_presence_across_nodes() {
    let redis = Shared::get().await;
    let p = prefix("across");
    let a = hub(&[redis.url()], &p, RedisMode::Standalone).await;
    let b = hub(&[redis.url()], &p, RedisMode::Standalone).await;
    let (sa, sb) = (Server::start(&a).await, Server::start(&b).await);

    let mut c = Client::connect(&sa.url()).await;
    let epoch = c.subscribe("chat:c").await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 1..=5 {
        b.publish("chat:c", &i).await.unwrap();
    }
    assert_eq!(pushes(&mut c, "chat:c", 5).await.len(), 5);
    drop(c);
    for i in 6..=10 {
        b.publish("chat:c", &i).await.unwrap();
    }
    // Back on the other node, from where it left off.
    let mut c = Client::connect(&sb.url()).await;
    let id = c
        .command(&format!(
            r#"{{"op":"subscribe","topic":"chat:c","since":{{"offset":5,"epoch":"{epoch}"}}}}"#
        ))
        .await;
    assert_eq!(c.reply(id).await.0["ok"]["recovered"], true);
    let got = pushes(&mut c, "chat:c", 5).await;
    assert_eq!(
        got.iter()
            .map(|v| v["data"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [6, 7, 8, 9, 10]
    );

    // Presence spans nodes: joins and leaves from either side.
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
    let members = a.presence("chat:p").await.unwrap();
    assert_eq!(members.len(), 2);
    assert!(members.iter().any(|m| m.id == joined));
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
async fn while_redis_is_down_commands_fail_as_temporary() {
    let mut redis = RedisServer::start().await;
    let a = hub(&[redis.url()], &prefix("down"), RedisMode::Standalone).await;
    let sa = Server::start(&a).await;
    let mut c = Client::connect(&sa.url()).await;
    c.subscribe("chat:d").await;
    redis.kill();
    loop {
        let v = c.recv().await;
        if v["event"] == "link_down" {
            break;
        }
    }
    for cmd in [
        r#"{"op":"publish","topic":"chat:d","data":1}"#,
        r#"{"op":"subscribe","topic":"chat:other"}"#,
    ] {
        let id = c.command(cmd).await;
        let (reply, _) = c.reply(id).await;
        assert_eq!(reply["error"]["code"], "unavailable", "{reply}");
        assert_eq!(reply["error"]["temporary"], true);
    }
    redis.restart().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let id = c
            .command(r#"{"op":"publish","topic":"chat:d","data":2}"#)
            .await;
        if c.reply(id).await.0.get("ok").is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "publishing did not resume");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Three Redis nodes in one cluster, slots split evenly.
async fn cluster() -> Vec<RedisServer> {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(RedisServer::start_cluster_node().await);
    }
    let ranges = [(0, 5460), (5461, 10922), (10923, 16383)];
    for (node, (lo, hi)) in nodes.iter().zip(ranges) {
        let r = node
            .command(&format!("CLUSTER ADDSLOTSRANGE {lo} {hi}"))
            .await;
        assert!(r.starts_with("+OK"), "{r}");
    }
    for other in &nodes[1..] {
        let r = nodes[0]
            .command(&format!("CLUSTER MEET 127.0.0.1 {}", other.port))
            .await;
        assert!(r.starts_with("+OK"), "{r}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in &nodes {
        loop {
            let info = node.command("CLUSTER INFO").await;
            if info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not form: {info}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    nodes
}

#[tokio::test]
async fn sharded_pubsub_on_a_redis_cluster() {
    let nodes = cluster().await;
    let urls: Vec<String> = nodes.iter().map(RedisServer::url).collect();
    let p = prefix("sharded");
    let a = hub(&urls, &p, RedisMode::Sharded).await;
    let b = hub(&urls[1..], &p, RedisMode::Sharded).await;
    let (sa, sb) = (Server::start(&a).await, Server::start(&b).await);
    let topics: Vec<String> = (0..12).map(|i| format!("chat:room{i}")).collect();
    let mut c = Client::connect(&sb.url()).await;
    for t in &topics {
        c.subscribe(t).await;
    }
    let mut publisher = Client::connect(&sa.url()).await;
    for round in 0..5 {
        for t in &topics {
            publisher.publish(t, &round.to_string()).await;
        }
    }
    let mut seen: HashSet<(String, u64)> = HashSet::new();
    let mut per_topic: std::collections::HashMap<String, Vec<u64>> = Default::default();
    for _ in 0..topics.len() * 5 {
        let v = loop {
            let v = c.recv().await;
            if v.get("data").is_some() {
                break v;
            }
        };
        let t = v["topic"].as_str().unwrap().to_owned();
        let round = v["data"].as_u64().unwrap();
        assert!(seen.insert((t.clone(), round)), "duplicate {t} {round}");
        per_topic
            .entry(t)
            .or_default()
            .push(v["offset"].as_u64().unwrap());
    }
    assert_eq!(per_topic.len(), topics.len());
    assert!(per_topic.values().all(|o| o == &[1, 2, 3, 4, 5]));
    // The topics really spread over the shards: each node holds some
    // stream keys.
    let mut holders = 0;
    for node in &nodes {
        let keys = node.command(&format!("KEYS {p}:*:stream")).await;
        if keys.contains("stream") {
            holders += 1;
        }
    }
    assert!(holders >= 2, "all topics landed on one shard");
}

/// `INFO memory`'s `used_memory`, in bytes.
async fn used_memory(redis: &RedisServer) -> u64 {
    let info = redis.command("INFO memory").await;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn redis_history_stays_within_maxmemory_and_evictions_are_reported() {
    // 250 × 60 KiB into an 8 MiB Redis. Every key sockeye writes carries a TTL, so a Redis with a memory cap
    // and a volatile eviction policy bounds all topics' history together.
    let redis = RedisServer::start_with(&[
        "--save",
        "",
        "--maxmemory",
        "8mb",
        "--maxmemory-policy",
        "volatile-lru",
    ])
    .await;
    let p = prefix("budget");
    let a = hub(&[redis.url()], &p, RedisMode::Standalone).await;
    let data = "r".repeat(60 << 10);
    let first = a.publish("chat:p0", &data).await.unwrap().unwrap();
    for i in 1..250 {
        a.publish(&format!("chat:p{i}"), &data).await.unwrap();
    }
    let used = used_memory(&redis).await;
    assert!(used < 12 << 20, "15 MiB published, {used} bytes used");
    let sa = Server::start(&a).await;
    let mut c = Client::connect(&sa.url()).await;
    let id = c
        .command(&format!(
            r#"{{"op":"subscribe","topic":"chat:p0","since":{{"offset":0,"epoch":"{}"}}}}"#,
            first.epoch
        ))
        .await;
    assert_eq!(c.reply(id).await.0["ok"]["recovered"], false);
}
