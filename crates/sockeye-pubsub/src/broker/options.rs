//! What the cross-node brokers share in their builders: the key, channel or
//! subject prefix, timeouts, reconnect backoff and presence expiry.
//! `RedisBrokerBuilder` and `NatsBrokerBuilder` each hold a [`LinkOptions`]
//! and keep their own public setters (names, docs, checks) in front of it.

use std::fmt;
use std::time::Duration;

/// The options both cross-node builders have, with their defaults.
#[derive(Clone, Debug)]
pub(crate) struct LinkOptions {
    /// What every key, channel or subject starts with (default `sockeye`);
    /// each broker checks it when it connects.
    pub(crate) prefix: String,
    /// How long a member stays listed without its node refreshing it
    /// (default 60 s, at least 1 s).
    pub(crate) presence_ttl: Duration,
    /// Connection timeout (default 5 s).
    pub(crate) connect_timeout: Duration,
    /// Response timeout (default 5 s).
    pub(crate) response_timeout: Duration,
    /// Reconnect delays (default 100 ms to 5 s).
    pub(crate) backoff: Backoff,
}

impl Default for LinkOptions {
    fn default() -> Self {
        Self {
            prefix: "sockeye".into(),
            presence_ttl: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
            backoff: Backoff {
                min: Duration::from_millis(100),
                max: Duration::from_secs(5),
            },
        }
    }
}

impl LinkOptions {
    pub(crate) fn set_prefix(&mut self, prefix: String) {
        self.prefix = prefix;
    }

    /// At least a second.
    pub(crate) fn set_presence_ttl(&mut self, ttl: Duration) {
        self.presence_ttl = ttl.max(Duration::from_secs(1));
    }

    pub(crate) fn set_timeouts(&mut self, connect: Duration, response: Duration) {
        self.connect_timeout = connect;
        self.response_timeout = response;
    }

    /// `max` is at least `min`.
    pub(crate) fn set_backoff(&mut self, min: Duration, max: Duration) {
        self.backoff = Backoff {
            min,
            max: max.max(min),
        };
    }

    /// How often a node announces its presence members again: every third
    /// of their TTL, so they never expire while the node lives.
    pub(crate) fn presence_refresh(&self) -> Duration {
        self.presence_ttl / 3
    }
}

/// Reconnect delays: from `min` doubling up to `max`.
#[derive(Clone, Copy)]
pub(crate) struct Backoff {
    pub(crate) min: Duration,
    pub(crate) max: Duration,
}

impl Backoff {
    /// The delay before reconnection attempt `attempt` (from 0).
    pub(crate) fn delay(self, attempt: u32) -> Duration {
        self.min.saturating_mul(1 << attempt.min(16)).min(self.max)
    }
}

// As the `(min, max)` pair the builders always printed.
impl fmt::Debug for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (self.min, self.max).fmt(f)
    }
}
