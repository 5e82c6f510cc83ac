//! Counters of a hub (also reported through `tracing`).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Live counters, cheap to update from every path.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) publications: AtomicU64,
    pub(crate) deliveries: AtomicU64,
    pub(crate) drops: AtomicU64,
    pub(crate) slow_disconnects: AtomicU64,
    pub(crate) queued_bytes: AtomicI64,
    pub(crate) sessions: AtomicI64,
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

impl Metrics {
    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let r = Ordering::Relaxed;
        MetricsSnapshot {
            publications: self.publications.load(r),
            deliveries: self.deliveries.load(r),
            drops: self.drops.load(r),
            slow_disconnects: self.slow_disconnects.load(r),
            queued_bytes: self.queued_bytes.load(r).max(0) as u64,
            sessions: self.sessions.load(r).max(0) as u64,
            topics: 0,
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
