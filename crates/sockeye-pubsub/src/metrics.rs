//! Counters of a hub: atomics behind [`Hub::metrics`](crate::Hub::metrics),
//! and with feature `metrics` the same events through the `metrics` facade
//! (the list is in the [crate docs](crate#metrics)).
//!
//! A publication's deliveries, and the bytes they add to the queues, are
//! counted once when its fan-out is over, not per subscriber ([`Tally`]).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::topic::SlowConsumer;

/// Live counters, cheap to update from every path.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    publications: AtomicU64,
    deliveries: AtomicU64,
    drops: AtomicU64,
    slow_disconnects: AtomicU64,
    queued_bytes: AtomicI64,
    sessions: AtomicI64,
    /// The facade's handles of the counters updated per publication or
    /// per write, registered at their first use.
    #[cfg(feature = "metrics")]
    facade: std::sync::OnceLock<Facade>,
}

/// Handles of the `metrics` facade kept for the hot paths: a macro call
/// looks its key up in the recorder's registry every time (with the
/// Prometheus exporter some 200 instructions and an allocation), a handle
/// only increments. They are registered at the hub's first publication or
/// write, so with the recorder of that moment: install it before traffic
/// starts, as for sockeye-proto's per-connection counters.
#[cfg(feature = "metrics")]
#[derive(Debug)]
struct Facade {
    publications: metrics::Counter,
    deliveries: metrics::Counter,
    queued_bytes: metrics::Gauge,
}

#[cfg(feature = "metrics")]
impl Facade {
    fn register() -> Self {
        Self {
            publications: metrics::counter!("sockeye_pubsub_publications_total"),
            deliveries: metrics::counter!("sockeye_pubsub_deliveries_total"),
            queued_bytes: metrics::gauge!("sockeye_pubsub_queued_bytes"),
        }
    }
}

/// A snapshot of a hub's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Publications dispatched on this node.
    pub publications: u64,
    /// Pushes queued to subscribers.
    pub deliveries: u64,
    /// Pushes dropped by a slow-consumer policy.
    pub drops: u64,
    /// Sockets closed as slow consumers.
    pub slow_disconnects: u64,
    /// Bytes queued for all sockets right now.
    pub queued_bytes: u64,
    /// Open sessions.
    pub sessions: u64,
    /// Topics this hub holds state for (subscribed, or lingering after
    /// their last subscriber left).
    pub topics: u64,
}

const R: Ordering = Ordering::Relaxed;

/// What the pushes of one fan-out added, for [`Metrics::add`] to count
/// once when the loop is over: the counters (the hub's atomics, and with
/// feature `metrics` the facade's, shared by every hub of the process)
/// take one update per publication instead of two per subscriber.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) deliveries: u64,
    /// Bytes the pushes added to the queues (less what a drop policy took
    /// out of them).
    pub(crate) queued: i64,
}

impl Metrics {
    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            publications: self.publications.load(R),
            deliveries: self.deliveries.load(R),
            drops: self.drops.load(R),
            slow_disconnects: self.slow_disconnects.load(R),
            queued_bytes: self.queued_bytes.load(R).max(0) as u64,
            sessions: self.sessions.load(R).max(0) as u64,
            topics: 0,
        }
    }

    #[cfg(feature = "metrics")]
    fn facade(&self) -> &Facade {
        self.facade.get_or_init(Facade::register)
    }

    pub(crate) fn publication(&self) {
        self.publications.fetch_add(1, R);
        #[cfg(feature = "metrics")]
        self.facade().publications.increment(1);
    }

    /// Counts a fan-out's pushes (see [`Tally`]).
    pub(crate) fn add(&self, tally: Tally) {
        if tally.deliveries > 0 {
            self.deliveries.fetch_add(tally.deliveries, R);
            #[cfg(feature = "metrics")]
            self.facade().deliveries.increment(tally.deliveries);
        }
        if tally.queued != 0 {
            self.queued(tally.queued);
        }
    }

    pub(crate) fn dropped(&self, n: u64, policy: SlowConsumer) {
        self.drops.fetch_add(n, R);
        #[cfg(feature = "metrics")]
        {
            let policy = match policy {
                SlowConsumer::Disconnect => "disconnect",
                SlowConsumer::DropNewest => "drop_newest",
                SlowConsumer::DropOldest => "drop_oldest",
                SlowConsumer::KeepLatest => "keep_latest",
            };
            metrics::counter!("sockeye_pubsub_drops_total", "policy" => policy).increment(n);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = policy;
    }

    /// A socket closed with 1008: `reason` is `slow_consumer` (its policy)
    /// or `queue_bound` (control items past the hard bound).
    pub(crate) fn slow_disconnect(&self, reason: &'static str) {
        self.slow_disconnects.fetch_add(1, R);
        #[cfg(feature = "metrics")]
        metrics::counter!("sockeye_pubsub_slow_disconnects_total", "reason" => reason).increment(1);
        #[cfg(not(feature = "metrics"))]
        let _ = reason;
    }

    /// Bytes queued changed by `delta`.
    pub(crate) fn queued(&self, delta: i64) {
        self.queued_bytes.fetch_add(delta, R);
        #[cfg(feature = "metrics")]
        self.facade().queued_bytes.increment(delta as f64);
    }

    pub(crate) fn session_opened(&self) {
        self.sessions.fetch_add(1, R);
        #[cfg(feature = "metrics")]
        metrics::gauge!("sockeye_pubsub_sessions").increment(1.0);
    }

    pub(crate) fn session_closed(&self) {
        self.sessions.fetch_sub(1, R);
        #[cfg(feature = "metrics")]
        metrics::gauge!("sockeye_pubsub_sessions").decrement(1.0);
    }
}

/// History leaving the memory broker: `reason` is `budget`, `ttl` or
/// `size`.
pub(crate) fn history_dropped(reason: &'static str, bytes: usize) {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!("sockeye_pubsub_history_evictions_total", "reason" => reason)
            .increment(1);
        metrics::gauge!("sockeye_pubsub_history_bytes").decrement(bytes as f64);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (reason, bytes);
}

/// History kept by the memory broker.
pub(crate) fn history_kept(bytes: usize) {
    #[cfg(feature = "metrics")]
    metrics::gauge!("sockeye_pubsub_history_bytes").increment(bytes as f64);
    #[cfg(not(feature = "metrics"))]
    let _ = bytes;
}

/// A broker link came back after a failure.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn broker_reconnected(broker: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("sockeye_pubsub_broker_reconnects_total", "broker" => broker).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = broker;
}
