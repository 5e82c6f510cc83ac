//! With feature `metrics`, the hub's events reach the `metrics` facade: a
//! debugging recorder (installed for this test binary alone) sees each
//! counter and gauge move: sessions, publications, deliveries, each drop
//! policy, slow-consumer disconnects, history evictions by reason.
#![cfg(feature = "metrics")]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{Client, Server};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde_json::json;
use sockeye_pubsub::{HistoryBudget, Hub, Namespace, SlowConsumer};

/// What the recorder saw so far. Its snapshots drain counters and gauges
/// (the gauge's increments start from zero again), so they add up here.
struct Totals {
    snapshotter: Snapshotter,
    seen: std::cell::RefCell<Vec<(metrics::Key, f64)>>,
}

impl Totals {
    /// The value of `name` whose labels include `labels` (summed over the
    /// other label sets).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut seen = self.seen.borrow_mut();
        for (key, .., v) in self.snapshotter.snapshot().into_vec() {
            let v = match v {
                DebugValue::Counter(c) => c as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(h) => h.len() as f64,
            };
            let key = key.key().clone();
            match seen.iter_mut().find(|(k, _)| *k == key) {
                Some((_, total)) => *total += v,
                None => seen.push((key, v)),
            }
        }
        seen.iter()
            .filter(|(key, _)| {
                key.name() == name
                    && labels
                        .iter()
                        .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
            })
            .map(|(_, v)| v)
            .sum()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_events_move_their_counters() {
    let recorder = DebuggingRecorder::new();
    let totals = Totals {
        snapshotter: recorder.snapshotter(),
        seen: std::cell::RefCell::default(),
    };
    recorder.install().unwrap();

    let policies = [
        ("newest", SlowConsumer::DropNewest),
        ("oldest", SlowConsumer::DropOldest),
        ("latest", SlowConsumer::KeepLatest),
        ("cut", SlowConsumer::Disconnect),
    ];
    let mut builder = Hub::builder()
        .queue_limits(4, 1 << 20)
        .history_budget(HistoryBudget::new(1 << 20, 2))
        .namespace(
            "kept",
            Namespace::new().history(100, Duration::from_secs(60)),
        );
    for (ns, policy) in policies {
        builder = builder.namespace(ns, Namespace::new().slow_consumer(policy));
    }
    let hub = builder.build();
    let server = Server::start(&hub).await;

    // One session per policy, subscribed, never reading.
    let mut clients = Vec::new();
    for (ns, _) in policies {
        let mut c = Client::connect(&server.url()).await;
        c.subscribe(&format!("{ns}:x")).await;
        clients.push(c);
    }
    // A subscriber that reads keeps `cut:x` alive once the slow one is cut
    // off, so every publication is dispatched however long the rounds take.
    let mut reader = Client::connect(&server.url()).await;
    reader.subscribe("cut:x").await;
    let reading = tokio::spawn(async move { while reader.ws.recv().await.is_some() {} });
    assert_eq!(totals.value("sockeye_pubsub_sessions", &[]), 5.0);
    // Enough 64 KiB pushes to pass socket buffers and a four-item queue.
    let payload = "p".repeat(64 << 10);
    for _ in 0..200 {
        for (ns, _) in policies {
            hub.publish(&format!("{ns}:x"), &json!({ "p": payload }))
                .await
                .unwrap();
        }
        tokio::task::yield_now().await;
    }
    for policy in ["drop_newest", "drop_oldest", "keep_latest"] {
        let drops = totals.value("sockeye_pubsub_drops_total", &[("policy", policy)]);
        assert!(drops > 0.0, "{policy}: {drops}");
    }
    assert_eq!(
        totals.value(
            "sockeye_pubsub_slow_disconnects_total",
            &[("reason", "slow_consumer")]
        ),
        1.0
    );
    assert_eq!(
        totals.value("sockeye_pubsub_publications_total", &[]),
        800.0
    );
    assert!(totals.value("sockeye_pubsub_deliveries_total", &[]) > 0.0);
    assert!(totals.value("sockeye_pubsub_queued_bytes", &[]) > 0.0);

    // History past the hub's budget of two topics: evictions by budget.
    for i in 0..5 {
        hub.publish(&format!("kept:t{i}"), &i).await.unwrap();
    }
    assert_eq!(
        totals.value(
            "sockeye_pubsub_history_evictions_total",
            &[("reason", "budget")]
        ),
        3.0
    );
    assert!(totals.value("sockeye_pubsub_history_bytes", &[]) > 0.0);

    // Sessions go with their sockets; their queues with them.
    reading.abort();
    let _ = reading.await;
    drop(clients);
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while totals.value("sockeye_pubsub_sessions", &[]) > 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sessions never ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(totals.value("sockeye_pubsub_queued_bytes", &[]), 0.0);
    assert_eq!(hub.metrics().queued_bytes, 0);
    drop(server);
}
