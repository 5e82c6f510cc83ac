//! The memory broker's history: recovery rules, the budgets, trimming,
//! expiry, and topics that leave nothing behind.

use std::time::Duration;

use super::history::ENTRY_OVERHEAD;
use super::*;
use crate::topic::HistoryBudget;

#[tokio::test]
async fn history_and_recovery_rules() {
    let b = MemoryBroker::new();
    let h = History {
        size: 3,
        ttl: Duration::from_secs(60),
    };
    let opts = PublishOptions {
        history: Some(h),
        ..Default::default()
    };
    let mut last = None;
    for i in 1..=5 {
        last = b.publish("t:x", &i.to_string(), opts).await.unwrap();
    }
    let top = last.unwrap();
    assert_eq!(top.offset, 5);
    // Since 3: 4 and 5 are still there.
    let since = StreamPosition {
        offset: 3,
        epoch: top.epoch.clone(),
    };
    let s = b.history("t:x", Some(&since), h).await.unwrap();
    assert!(s.complete);
    assert_eq!(
        s.publications.iter().map(|p| p.offset).collect::<Vec<_>>(),
        [4, 5]
    );
    // Since 1: 2 was evicted (size 3 keeps 3..=5): never a partial replay.
    let since = StreamPosition {
        offset: 1,
        epoch: top.epoch.clone(),
    };
    let s = b.history("t:x", Some(&since), h).await.unwrap();
    assert!(!s.complete && s.publications.is_empty());
    // Another epoch.
    let since = StreamPosition {
        offset: 4,
        epoch: "other".into(),
    };
    assert!(!b.history("t:x", Some(&since), h).await.unwrap().complete);
    // Up to date.
    let since = StreamPosition {
        offset: 5,
        epoch: top.epoch,
    };
    let s = b.history("t:x", Some(&since), h).await.unwrap();
    assert!(s.complete && s.publications.is_empty());
}

fn keep(size: usize, ttl: Duration) -> History {
    History { size, ttl }
}

fn options(history: History, budget: HistoryBudget) -> PublishOptions {
    PublishOptions {
        history: Some(history),
        budget,
        namespace_budget: None,
    }
}

async fn recoverable(b: &MemoryBroker, topic: &str, since: &StreamPosition) -> bool {
    let h = keep(100, Duration::from_secs(60));
    b.history(topic, Some(since), h).await.unwrap().complete
}

#[tokio::test]
async fn the_hub_budget_evicts_oldest_first_and_recovery_says_so() {
    let b = MemoryBroker::new();
    let h = keep(100, Duration::from_secs(60));
    // Room for ten 100-byte publications.
    let budget = HistoryBudget::new(10 * (100 + ENTRY_OVERHEAD), 1_000);
    let data = "x".repeat(100);
    let mut positions = Vec::new();
    for i in 0..25 {
        let topic = format!("t:{i}");
        let p = b.publish(&topic, &data, options(h, budget)).await.unwrap();
        positions.push(p.unwrap());
        let stats = b.history_stats();
        assert!(stats.bytes <= budget.bytes, "{stats:?}");
    }
    let stats = b.history_stats();
    assert_eq!((stats.entries, stats.topics, stats.evicted), (10, 10, 15));
    // Nobody subscribes: the evicted topics are gone entirely.
    assert_eq!(stats.logs, 10);
    // The oldest went: resuming from before them is refused, the
    // newest still recover.
    for (i, p) in positions.iter().enumerate() {
        let since = StreamPosition {
            offset: p.offset - 1,
            epoch: p.epoch.clone(),
        };
        assert_eq!(
            recoverable(&b, &format!("t:{i}"), &since).await,
            i >= 15,
            "t:{i}"
        );
    }
}

#[tokio::test]
async fn a_namespace_budget_evicts_only_its_own() {
    let b = MemoryBroker::new();
    let h = keep(1_000, Duration::from_secs(60));
    let hub = HistoryBudget::default();
    for i in 0..5 {
        b.publish(&format!("keep:{i}"), "old", options(h, hub))
            .await
            .unwrap();
    }
    let mut small = options(h, hub);
    small.namespace_budget = Some(HistoryBudget::new(1 << 20, 3));
    for i in 0..20 {
        b.publish(&format!("room:{i}"), "new", small).await.unwrap();
    }
    let stats = b.history_stats();
    // Three room topics and every (older) keep topic remain.
    assert_eq!((stats.topics, stats.evicted), (8, 17), "{stats:?}");
    for i in 0..5 {
        let s = b.history(&format!("keep:{i}"), None, h).await.unwrap();
        assert_eq!(s.top, 1);
    }
}

#[tokio::test]
async fn the_topic_count_budget_holds() {
    let b = MemoryBroker::new();
    let h = keep(10, Duration::from_secs(60));
    let budget = HistoryBudget::new(usize::MAX, 100);
    for i in 0..1_000 {
        b.publish(&format!("t:{i}"), "x", options(h, budget))
            .await
            .unwrap();
    }
    let stats = b.history_stats();
    assert_eq!((stats.topics, stats.entries, stats.logs), (100, 100, 100));
    assert_eq!(stats.evicted, 900);
}

#[tokio::test]
async fn per_topic_trimming_keeps_the_ledger_bounded() {
    let b = MemoryBroker::new();
    let h = keep(3, Duration::from_secs(60));
    for i in 0..10_000 {
        b.publish(
            "t:hot",
            &i.to_string(),
            options(h, HistoryBudget::default()),
        )
        .await
        .unwrap();
    }
    let stats = b.history_stats();
    assert_eq!((stats.entries, stats.trimmed, stats.evicted), (3, 9_997, 0));
    let state = lock(&b.state);
    let ledger = &state.ledgers["t"];
    assert!(ledger.fifo.len() <= 2 * 3 + 64, "{}", ledger.fifo.len());
}

#[tokio::test]
async fn expired_history_is_freed_without_further_traffic() {
    let b = MemoryBroker::new();
    let h = keep(100, Duration::from_millis(200));
    for i in 0..50 {
        b.publish(
            &format!("t:{i}"),
            &"y".repeat(1_000),
            options(h, HistoryBudget::default()),
        )
        .await
        .unwrap();
    }
    assert_eq!(b.history_stats().entries, 50);
    // The sweeper frees it within its period after the TTL; wait for
    // TTL + 1 s at most.
    let deadline = Instant::now() + Duration::from_millis(1_200);
    while b.history_stats().entries > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = b.history_stats();
    assert_eq!(
        (stats.bytes, stats.topics, stats.logs, stats.expired),
        (0, 0, 0, 50)
    );
    // With nothing left the sweeper stops.
    assert!(!lock(&b.state).sweeping);
}

#[tokio::test]
async fn a_topic_without_subscribers_or_history_costs_nothing() {
    let b = MemoryBroker::new();
    let h = keep(10, Duration::from_secs(60));
    for i in 0..1_000 {
        let topic = format!("t:{i}");
        b.subscribe(&topic).await.unwrap();
        let s = b.history(&topic, None, h).await.unwrap();
        // A subscribed topic keeps its epoch.
        let again = b.history(&topic, None, h).await.unwrap();
        assert_eq!(s.epoch, again.epoch);
        b.unsubscribe(&topic).await.unwrap();
    }
    // History asked of a topic nobody subscribes to is not kept.
    b.history("t:never", None, h).await.unwrap();
    let state = lock(&b.state);
    assert!(state.topics.is_empty() && state.subscribed.is_empty());
    assert!(
        state.topics.capacity() <= 128,
        "{}",
        state.topics.capacity()
    );
    assert!(state.subscribed.capacity() <= 128);
}

#[tokio::test]
async fn a_log_that_comes_back_is_a_new_epoch() {
    let b = MemoryBroker::new();
    let h = keep(1, Duration::from_secs(60));
    let tiny = HistoryBudget::new(1, 10);
    let first = b
        .publish("t:a", "1", options(h, tiny))
        .await
        .unwrap()
        .unwrap();
    // Evicted at once (over budget), so the log is gone.
    assert_eq!(b.history_stats().logs, 0);
    let second = b
        .publish("t:a", "2", options(h, tiny))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(first.epoch, second.epoch);
    assert!(!recoverable(&b, "t:a", &first).await);
}
