//! The hub over real sockets on 127.0.0.1 with the in-memory broker: the
//! wire protocol, fan-out, history and recovery, presence, slow consumers,
//! abuse, deflate, and the reconnecting Rust client.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{Client, Relay, Server, WAIT};
use serde_json::{Value, json};
use sockeye_deflate::DeflateConfig;
use sockeye_hyper::client::{Backoff, ClientBuilder};
use sockeye_proto::CloseCode;
use sockeye_pubsub::client::{Item, PubSubClient};
use sockeye_pubsub::{
    Access, Action, HistoryBudget, Hub, MemoryBroker, Namespace, RateLimit, SlowConsumer,
};

fn chat() -> Namespace {
    Namespace::new()
        .client_publish(true)
        .history(100, Duration::from_secs(60))
        .presence(true)
}

fn hub() -> Hub {
    Hub::builder()
        .namespace("chat", chat())
        .namespace("news", Namespace::new())
        .namespace("open", Namespace::new().client_publish(true))
        .linger(Duration::ZERO)
        .build()
}

/// Reads pushes of `topic` until `n` arrived; returns their data.
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

#[tokio::test]
async fn publish_reaches_every_subscriber_once_in_order() {
    let hub = hub();
    let server = Server::start(&hub).await;
    let mut subs = Vec::new();
    for _ in 0..5 {
        let mut c = Client::connect(&server.url()).await;
        let ok = c.subscribe("open:room").await;
        assert_eq!(ok, json!({}));
        subs.push(c);
    }
    let mut publisher = Client::connect(&server.url()).await;
    for i in 0..50 {
        // A reply without history is an empty object.
        assert_eq!(
            publisher
                .publish("open:room", &format!(r#"{{"n":{i},"s":"é\"x"}}"#))
                .await,
            json!({})
        );
    }
    // Server-side publishing shares the path.
    hub.publish("open:room", &json!({"n": 50, "s": "server"}))
        .await
        .unwrap();
    for c in &mut subs {
        let got = pushes(c, "open:room", 51).await;
        let ns: Vec<u64> = got
            .iter()
            .map(|v| v["data"]["n"].as_u64().unwrap())
            .collect();
        assert_eq!(ns, (0..=50).collect::<Vec<_>>());
        // The payload arrives as published, no offset without history.
        assert_eq!(got[0]["data"]["s"], "é\"x");
        assert!(got[0].get("offset").is_none());
    }
    let m = hub.metrics();
    assert_eq!(m.publications, 51);
    assert_eq!(m.deliveries, 5 * 51);
    assert_eq!(m.sessions, 6);
}

#[tokio::test]
async fn errors_are_replies_and_abuse_closes_with_1008() {
    let hub = Hub::builder()
        .namespace("chat", chat())
        .namespace("news", Namespace::new())
        .authorizer(|a: Access<'_>| !(a.topic == "chat:secret" && a.action == Action::Subscribe))
        .max_strikes(5)
        .build();
    let server = Server::start(&hub).await;
    let mut c = Client::connect(&server.url()).await;
    assert_eq!(
        c.error(r#"{"op":"subscribe","topic":"nope:x"}"#).await,
        "unknown_topic"
    );
    assert_eq!(
        c.error(r#"{"op":"subscribe","topic":"nonamespace"}"#).await,
        "unknown_topic"
    );
    assert_eq!(
        c.error(r#"{"op":"subscribe","topic":"chat:bad name"}"#)
            .await,
        "unknown_topic"
    );
    assert_eq!(
        c.error(r#"{"op":"subscribe","topic":"chat:secret"}"#).await,
        "forbidden"
    );
    assert_eq!(
        c.error(r#"{"op":"publish","topic":"news:x","data":1}"#)
            .await,
        "forbidden"
    );
    assert_eq!(
        c.error(r#"{"op":"presence","topic":"news:x"}"#).await,
        "bad_request"
    );
    assert_eq!(
        c.error(r#"{"op":"unsubscribe","topic":"chat:x"}"#).await,
        "bad_request"
    );
    assert_eq!(
        c.error(r#"{"op":"fly","topic":"chat:x"}"#).await,
        "bad_request"
    );
    let long = format!(r#"{{"op":"subscribe","topic":"chat:{}"}}"#, "x".repeat(300));
    assert_eq!(c.error(&long).await, "limit_exceeded");
    let big = format!(
        r#"{{"op":"publish","topic":"chat:x","data":"{}"}}"#,
        "x".repeat(70_000)
    );
    assert_eq!(c.error(&big).await, "limit_exceeded");
    let reply = serde_json::json!({"temporary": false});
    // Unparseable input: `id` null, the error says why.
    c.send("{not json").await;
    let v = c.recv().await;
    assert_eq!(v["id"], Value::Null);
    assert_eq!(v["error"]["code"], "bad_request");
    assert_eq!(v["error"]["temporary"], reply["temporary"]);
    // The connection still works...
    c.subscribe("chat:ok").await;
    // ...until bad input keeps coming: a 1008 close.
    for _ in 0..10 {
        c.send("garbage").await;
    }
    assert_eq!(c.closed().await, Some(CloseCode::POLICY_VIOLATION));
}

#[tokio::test]
async fn rate_limit_answers_rate_limited() {
    let hub = Hub::builder()
        .namespace("open", Namespace::new().client_publish(true))
        .rate_limit(RateLimit::new(1.0, 3))
        .max_strikes(100)
        .build();
    let server = Server::start(&hub).await;
    let mut c = Client::connect(&server.url()).await;
    let lines: Vec<String> = (1..=6)
        .map(|i| format!(r#"{{"id":{i},"op":"publish","topic":"open:x","data":{i}}}"#))
        .collect();
    // Several commands in one frame, one per line.
    c.send(&lines.join("\n")).await;
    let mut codes = Vec::new();
    for _ in 0..6 {
        let v = c.recv().await;
        codes.push(if v.get("ok").is_some() {
            "ok".to_owned()
        } else {
            v["error"]["code"].as_str().unwrap().to_owned()
        });
        if v.get("error").is_some() {
            assert_eq!(v["error"]["temporary"], true);
        }
    }
    assert_eq!(
        codes,
        [
            "ok",
            "ok",
            "ok",
            "rate_limited",
            "rate_limited",
            "rate_limited"
        ]
    );
}

#[tokio::test]
async fn history_recovers_after_a_client_drop_or_says_it_cannot() {
    let hub = Hub::builder()
        .namespace(
            "chat",
            Namespace::new()
                .client_publish(true)
                .history(10, Duration::from_secs(60)),
        )
        .build();
    let server = Server::start(&hub).await;
    let mut c = Client::connect(&server.url()).await;
    let ok = c.subscribe("chat:r").await;
    let epoch = ok["epoch"].as_str().unwrap().to_owned();
    assert_eq!(ok["offset"], 0);
    for i in 1..=3 {
        let pos = hub.publish("chat:r", &i).await.unwrap().unwrap();
        assert_eq!((pos.offset, pos.epoch.as_str()), (i, epoch.as_str()));
    }
    let got = pushes(&mut c, "chat:r", 3).await;
    assert_eq!(
        got.iter()
            .map(|v| v["offset"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    drop(c);

    // Missed 4..=8 while away: all of them come back, once, in order.
    for i in 4..=8 {
        hub.publish("chat:r", &i).await.unwrap();
    }
    let mut c = Client::connect(&server.url()).await;
    let id = c
        .command(&format!(
            r#"{{"op":"subscribe","topic":"chat:r","since":{{"offset":3,"epoch":"{epoch}"}}}}"#
        ))
        .await;
    let (reply, before) = c.reply(id).await;
    assert!(before.is_empty(), "nothing before the reply: {before:?}");
    assert_eq!(reply["ok"]["recovered"], true);
    assert_eq!(reply["ok"]["offset"], 8);
    hub.publish("chat:r", &9).await.unwrap();
    let got = pushes(&mut c, "chat:r", 6).await;
    assert_eq!(
        got.iter()
            .map(|v| v["data"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [4, 5, 6, 7, 8, 9]
    );

    // Too far behind (history keeps 10): no partial replay.
    for i in 10..=25 {
        hub.publish("chat:r", &i).await.unwrap();
    }
    let mut late = Client::connect(&server.url()).await;
    let id = late
        .command(&format!(
            r#"{{"op":"subscribe","topic":"chat:r","since":{{"offset":3,"epoch":"{epoch}"}}}}"#
        ))
        .await;
    let (reply, _) = late.reply(id).await;
    assert_eq!(reply["ok"]["recovered"], false);
    assert_eq!(reply["ok"]["offset"], 25);
    // Another epoch: same.
    let id = late
        .command(r#"{"op":"subscribe","topic":"chat:r","since":{"offset":20,"epoch":"other"}}"#)
        .await;
    assert_eq!(late.reply(id).await.0["ok"]["recovered"], false);
    hub.publish("chat:r", &26).await.unwrap();
    let got = pushes(&mut late, "chat:r", 1).await;
    assert_eq!(got[0]["offset"], 26);
}

#[tokio::test]
async fn presence_counts_and_announces() {
    let hub = hub();
    let server = Server::start(&hub).await;
    let mut a = Client::connect(&server.url()).await;
    a.subscribe("chat:p").await;
    let mut b = Client::connect(&server.url()).await;
    b.subscribe("chat:p").await;
    // a hears b join (and its own join first).
    let mut joins = Vec::new();
    while joins.len() < 2 {
        let v = a.recv().await;
        if v["event"] == "join" {
            joins.push(v["member"]["id"].as_str().unwrap().to_owned());
        }
    }
    let ok = a.ok(r#"{"op":"presence","topic":"chat:p"}"#).await;
    assert_eq!(ok["count"], 2);
    let ids: Vec<&str> = ok["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&joins[0].as_str()) && ids.contains(&joins[1].as_str()));
    assert!(ids.iter().all(|id| id.starts_with(hub.node_id())));
    drop(b);
    loop {
        let v = a.recv().await;
        if v["event"] == "leave" {
            assert_eq!(v["member"]["id"], joins[1]);
            break;
        }
    }
    assert_eq!(hub.presence("chat:p").await.unwrap().len(), 1);
    // Unsubscribing stops pushes.
    a.ok(r#"{"op":"unsubscribe","topic":"chat:p"}"#).await;
    hub.publish("chat:p", &1).await.unwrap();
    a.subscribe("chat:other").await;
    hub.publish("chat:other", &2).await.unwrap();
    let v = pushes(&mut a, "chat:other", 1).await;
    assert_eq!(v[0]["data"], 2);
}

/// A subscriber that never reads: the others get everything in order, its
/// queue stays within the limit, and the policy decides its fate.
async fn stalled_reader(policy: SlowConsumer) -> Hub {
    let limit_bytes = 1 << 20;
    let hub = Hub::builder()
        .namespace(
            "feed",
            Namespace::new()
                .history(10_000, Duration::from_secs(60))
                .slow_consumer(policy),
        )
        .queue_limits(256, limit_bytes)
        .build();
    let server = Server::with_handles(&hub).await;
    let mut stalled = Client::connect(&server.url()).await;
    stalled.subscribe("feed:x").await;
    let n = 3000; // 24 MiB of 8 KiB pushes: more than socket buffers and the queue hold
    let mut readers = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect(&server.url()).await;
        c.subscribe("feed:x").await;
        readers.push(tokio::spawn(async move {
            let got = pushes(&mut c, "feed:x", n).await;
            got.iter().enumerate().all(|(i, v)| v["data"]["i"] == i)
        }));
    }
    let stalled_handle = server.sessions.lock().unwrap()[0].clone();
    let payload = "y".repeat(8 << 10);
    let mut max_queued = 0;
    for i in 0..n {
        hub.publish("feed:x", &json!({"i": i, "p": payload}))
            .await
            .unwrap();
        max_queued = max_queued.max(stalled_handle.queued_bytes());
        // Publishing never waits on subscribers; pacing lets the readers'
        // writer tasks keep up, as a real publisher's rate would.
        tokio::task::yield_now().await;
    }
    for r in readers {
        assert!(r.await.unwrap(), "a reader lost or reordered pushes");
    }
    // Pushes are bounded by the limit; control items (a lag event) add a
    // few bytes at most.
    assert!(
        max_queued <= limit_bytes + 1024,
        "stalled queue reached {max_queued}"
    );
    if policy == SlowConsumer::Disconnect {
        assert!(stalled_handle.is_closed());
        // Its socket sees the 1008 once it reads again (past what the
        // kernel buffered), or, if it read nothing for the whole close
        // timeout (a loaded machine), finds the connection reset.
        let mut seen = 0;
        let end = loop {
            match tokio::time::timeout(WAIT, stalled.ws.recv()).await.unwrap() {
                Some(Ok(sockeye_proto::Message::Close(f))) => break Ok(f.map(|f| f.code)),
                Some(Ok(_)) => seen += 1,
                Some(Err(e)) => break Err(e),
                None => break Ok(stalled.ws.connection().close_code()),
            }
        };
        match end {
            Ok(code) => assert_eq!(code, Some(CloseCode::POLICY_VIOLATION)),
            Err(sockeye_proto::Error::Io(e)) => {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset);
            }
            Err(e) => panic!("neither 1008 nor a reset: {e}"),
        }
        assert!(
            seen < n,
            "the stalled reader cannot have received everything"
        );
        assert_eq!(hub.metrics().slow_disconnects, 1);
    } else {
        assert!(!stalled_handle.is_closed());
        assert!(hub.metrics().drops > 0);
        // It reads again: what it gets is in order, and a lag event says
        // it missed some (the feed keeps history).
        let mut last = None;
        let mut lag = false;
        while !lag || last != Some(n as u64 - 1) {
            let v = stalled.recv().await;
            if v["event"] == "lag" {
                lag = true;
            } else if let Some(i) = v["data"]["i"].as_u64() {
                assert!(last.is_none_or(|l| i > l));
                last = Some(i);
            }
        }
    }
    drop(server);
    hub
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_disconnected_and_isolated() {
    stalled_reader(SlowConsumer::Disconnect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_drop_oldest_stays_bounded_and_gets_lag() {
    stalled_reader(SlowConsumer::DropOldest).await;
}

#[tokio::test]
async fn keep_latest_keeps_the_newest_per_topic() {
    let hub = Hub::builder()
        .namespace(
            "tick",
            Namespace::new().slow_consumer(SlowConsumer::KeepLatest),
        )
        .queue_limits(4, 1 << 20)
        .build();
    let server = Server::with_handles(&hub).await;
    let mut c = Client::connect(&server.url()).await;
    c.subscribe("tick:a").await;
    c.subscribe("tick:b").await;
    let handle = server.sessions.lock().unwrap()[0].clone();
    // Fill the queue faster than it drains: the writer task runs only when
    // this task yields, and it does not yield while publishing.
    for i in 0..200u32 {
        hub.publish("tick:a", &i).await.unwrap();
        hub.publish("tick:b", &(1000 + i)).await.unwrap();
    }
    assert!(handle.queued_bytes() < 200);
    // Whatever was dropped, the last value of each topic arrives.
    let (mut last_a, mut last_b) = (None, None);
    while last_a != Some(199) || last_b != Some(1199) {
        let v = c.recv().await;
        match v["topic"].as_str() {
            Some("tick:a") => last_a = v["data"].as_u64(),
            Some("tick:b") => last_b = v["data"].as_u64(),
            _ => {}
        }
    }
}

#[tokio::test]
async fn direct_sends_and_pushes_keep_their_order() {
    let hub = hub();
    let server = Server::with_handles(&hub).await;
    let mut c = Client::connect(&server.url()).await;
    c.subscribe("open:o").await;
    let handle = server.sessions.lock().unwrap()[0].clone();
    for i in 0..20 {
        hub.publish("open:o", &json!({"push": i})).await.unwrap();
        handle.send(&json!({"direct": i})).unwrap();
    }
    for i in 0..20 {
        assert_eq!(c.recv().await["data"]["push"], i);
        assert_eq!(c.recv().await["direct"], i);
    }
    // Server-side subscription: a `subscribed` event, then pushes.
    handle.subscribe("chat:srv").await.unwrap();
    let ev = c.recv().await;
    assert_eq!(ev["event"], "subscribed");
    assert!(ev["position"]["epoch"].is_string());
    handle.unsubscribe("chat:srv").await.unwrap();
    loop {
        let v = c.recv().await;
        if v["event"] == "unsubscribed" {
            assert_eq!(v["topic"], "chat:srv");
            break;
        }
    }
}

#[tokio::test]
async fn deflate_subscribers_get_the_once_compressed_frame() {
    let hub = Hub::builder()
        .namespace("open", Namespace::new().client_publish(true))
        .deflate(DeflateConfig::new())
        .build();
    // The hub's service behind the deflate layer, as in pubsub_server.
    let service = tower::ServiceBuilder::new()
        .layer(sockeye_deflate::DeflateLayer::new(DeflateConfig::new()))
        .service(hub.upgrade_service());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let svc = hyper_util::service::TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    let url = format!("ws://{addr}/ws");
    let mut compressed =
        Client::connect_with(ClientBuilder::new(&url).deflate(DeflateConfig::new())).await;
    assert!(compressed.ws.connection().extension().is_some());
    let mut plain = Client::connect(&url).await;
    compressed.subscribe("open:z").await;
    plain.subscribe("open:z").await;
    let text = "all work and no play ".repeat(100);
    for i in 0..5 {
        hub.publish("open:z", &json!({"i": i, "t": text}))
            .await
            .unwrap();
    }
    for c in [&mut compressed, &mut plain] {
        let got = pushes(c, "open:z", 5).await;
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, v)| v["data"]["i"] == i && v["data"]["t"] == text)
        );
    }
}

#[tokio::test]
async fn rust_client_recovers_missed_publications_after_a_drop() {
    let hub = Hub::builder()
        .namespace("chat", chat())
        .namespace("news", Namespace::new())
        .build();
    let server = Server::start(&hub).await;
    let relay = Relay::start("127.0.0.1:0", server.addr).await;
    let url = relay.url();
    let fast = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        multiplier: 2.0,
        jitter: 0.0,
    };
    let client = PubSubClient::builder(&url)
        .backoff(fast)
        .connect()
        .await
        .unwrap();
    let mut chat = client.subscribe("chat:lobby").await.unwrap();
    let mut news = client.subscribe("news:x").await.unwrap();
    for i in 1..=3 {
        let pos = client
            .publish("chat:lobby", &json!({"i": i}))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(pos.offset, i);
    }
    assert_eq!(client.presence("chat:lobby").await.unwrap().len(), 1);
    let mut seen = Vec::new();
    while seen.len() < 3 {
        if let Item::Publication { offset, data } = chat.recv().await.unwrap() {
            let v: Value = serde_json::from_str(data.get()).unwrap();
            seen.push((offset.unwrap(), v["i"].as_u64().unwrap()));
        }
    }
    assert_eq!(seen, [(1, 1), (2, 2), (3, 3)]);

    // The network drops; publications continue on the server side.
    let addr = relay.cut().await;
    for i in 4..=10 {
        hub.publish("chat:lobby", &json!({"i": i})).await.unwrap();
    }
    hub.publish("news:x", &"missed").await.unwrap();
    let relay = Relay::start(&addr.to_string(), server.addr).await;
    for i in 11..=12 {
        // Published after the server is back (maybe before the client is).
        hub.publish("chat:lobby", &json!({"i": i})).await.unwrap();
    }
    // Exactly 4..=12, in order, no duplicates, then the reconnection event.
    let mut got = Vec::new();
    let mut reconnected = None;
    while got.len() < 9 || reconnected.is_none() {
        match tokio::time::timeout(WAIT, chat.recv())
            .await
            .unwrap()
            .unwrap()
        {
            Item::Publication { offset, .. } => got.push(offset.unwrap()),
            Item::Reconnected { recovered } => reconnected = Some(recovered),
            Item::Disconnected => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, (4..=12).collect::<Vec<_>>());
    assert_eq!(reconnected, Some(true));
    // Without history: told it may have missed something.
    loop {
        match tokio::time::timeout(WAIT, news.recv())
            .await
            .unwrap()
            .unwrap()
        {
            Item::Reconnected { recovered } => {
                assert!(!recovered);
                break;
            }
            Item::Disconnected => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    hub.publish("news:x", &"after").await.unwrap();
    match tokio::time::timeout(WAIT, news.recv())
        .await
        .unwrap()
        .unwrap()
    {
        Item::Publication { data, .. } => assert_eq!(data.get(), "\"after\""),
        other => panic!("unexpected {other:?}"),
    }
    client.close().await;
    drop((relay, server));
}

/// Waits (bounded) until `done` holds.
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

#[tokio::test]
async fn topic_churn_leaves_no_state_behind() {
    let broker = std::sync::Arc::new(MemoryBroker::new());
    let hub = Hub::builder()
        .namespace("chat", chat())
        .shared_broker(broker.clone())
        .rate_limit(RateLimit::new(1e9, u32::MAX))
        .linger(Duration::ZERO)
        .build();
    let server = Server::start(&hub).await;
    let mut c = Client::connect(&server.url()).await;
    for round in 0..3 {
        for i in 0..2_000 {
            let topic = format!("chat:r{round}-{i}");
            c.subscribe(&topic).await;
            c.ok(&format!(r#"{{"op":"unsubscribe","topic":"{topic}"}}"#))
                .await;
        }
        assert!(
            eventually(|| hub.metrics().topics == 0 && broker.history_stats().logs == 0).await,
            "round {round}: hub {:?}, broker {:?}",
            hub.metrics(),
            broker.history_stats()
        );
    }
    // The socket is still served.
    c.subscribe("chat:still").await;
    hub.publish("chat:still", &1).await.unwrap();
    assert_eq!(pushes(&mut c, "chat:still", 1).await[0]["data"], 1);
}

#[tokio::test]
async fn publications_to_distinct_topics_stay_within_the_history_budget() {
    let broker = std::sync::Arc::new(MemoryBroker::new());
    let budget = HistoryBudget::new(256 << 10, 1_000);
    let hub = Hub::builder()
        .namespace("chat", chat())
        .shared_broker(broker.clone())
        .history_budget(budget)
        .rate_limit(RateLimit::new(1e9, u32::MAX))
        .build();
    let server = Server::start(&hub).await;
    let mut c = Client::connect(&server.url()).await;
    let data = format!("\"{}\"", "z".repeat(4_000));
    let mut first = None;
    for i in 0..500 {
        let ok = c.publish(&format!("chat:p{i}"), &data).await;
        first.get_or_insert(ok);
        let stats = broker.history_stats();
        assert!(stats.bytes <= budget.bytes, "{stats:?}");
    }
    let stats = broker.history_stats();
    assert!(
        stats.evicted > 400 && stats.topics == stats.logs,
        "{stats:?}"
    );
    // The first topic's history was evicted: resuming says so.
    let first = first.unwrap();
    let id = c
        .command(&format!(
            r#"{{"op":"subscribe","topic":"chat:p0","since":{{"offset":0,"epoch":{}}}}}"#,
            first["epoch"]
        ))
        .await;
    assert_eq!(c.reply(id).await.0["ok"]["recovered"], false);
    // The newest is still there.
    let id = c
        .command(r#"{"op":"subscribe","topic":"chat:p499","since":{"offset":0,"epoch":"x"}}"#)
        .await;
    let (reply, _) = c.reply(id).await;
    assert_eq!(reply["ok"]["offset"], 1);
}
