//! Topic names (`namespace:rest`) and per-namespace options.

use std::time::Duration;

use crate::error::{Error, ErrorCode};

/// What to do when a subscriber's queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlowConsumer {
    /// Close the socket with 1008 "slow consumer" (the client reconnects and
    /// recovers from history). The default.
    #[default]
    Disconnect,
    /// Drop the new message.
    DropNewest,
    /// Drop the oldest queued push to make room.
    DropOldest,
    /// Keep only the latest queued push per topic (dashboards, positions).
    KeepLatest,
}

/// History of a namespace's topics: the last `size` publications, each kept
/// at most `ttl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct History {
    /// Publications kept per topic.
    pub size: usize,
    /// How long a publication is kept.
    pub ttl: Duration,
}

/// A bound on retained history: bytes (each publication's data plus a
/// fixed 64 bytes of bookkeeping) and the number of topics holding any.
/// Past either, the oldest publications are evicted first; a client that
/// resubscribes `since` an evicted one gets `recovered: false`.
///
/// ```
/// use sockeye_pubsub::HistoryBudget;
/// let budget = HistoryBudget::default();
/// assert_eq!((budget.bytes, budget.topics), (64 << 20, 100_000));
/// let small = HistoryBudget::new(1 << 20, 1_000);
/// # drop(small);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryBudget {
    /// Bytes of history kept (default 64 MiB).
    pub bytes: usize,
    /// Topics with history kept (default 100,000).
    pub topics: usize,
}

impl HistoryBudget {
    /// At most `bytes` of history over at most `topics` topics.
    pub const fn new(bytes: usize, topics: usize) -> Self {
        Self { bytes, topics }
    }
}

impl Default for HistoryBudget {
    fn default() -> Self {
        Self::new(64 << 20, 100_000)
    }
}

/// Options of one namespace (the part of a topic name before `:`).
///
/// ```
/// use std::time::Duration;
/// use sockeye_pubsub::{Namespace, SlowConsumer};
/// let chat = Namespace::new()
///     .client_publish(true)
///     .history(100, Duration::from_secs(300))
///     .presence(true)
///     .slow_consumer(SlowConsumer::Disconnect);
/// # drop(chat);
/// ```
#[derive(Clone, Debug)]
pub struct Namespace {
    pub(crate) client_publish: bool,
    pub(crate) history: Option<History>,
    pub(crate) history_budget: Option<HistoryBudget>,
    pub(crate) presence: bool,
    pub(crate) max_subscribers: Option<usize>,
    pub(crate) max_name_len: usize,
    pub(crate) max_data_bytes: usize,
    pub(crate) slow_consumer: SlowConsumer,
}

impl Default for Namespace {
    fn default() -> Self {
        Self::new()
    }
}

impl Namespace {
    /// Defaults: clients may subscribe but not publish, no history, no
    /// presence, no subscriber cap, names up to 255 bytes, data up to 64 KiB,
    /// slow consumers disconnected.
    pub fn new() -> Self {
        Self {
            client_publish: false,
            history: None,
            history_budget: None,
            presence: false,
            max_subscribers: None,
            max_name_len: 255,
            max_data_bytes: 64 << 10,
            slow_consumer: SlowConsumer::Disconnect,
        }
    }

    /// Whether clients may publish (the authorizer still decides per topic).
    #[must_use]
    pub fn client_publish(mut self, allowed: bool) -> Self {
        self.client_publish = allowed;
        self
    }

    /// Keep the last `size` publications of each topic for `ttl`: each gets an
    /// offset, and clients resubscribing with `since` recover what they missed.
    #[must_use]
    pub fn history(mut self, size: usize, ttl: Duration) -> Self {
        self.history = (size > 0).then_some(History { size, ttl });
        self
    }

    /// A budget for this namespace's history, within the hub's
    /// ([`HubBuilder::history_budget`](crate::HubBuilder::history_budget)):
    /// so that one namespace filling up evicts its own oldest publications,
    /// not another's. Default: none beyond the hub's.
    #[must_use]
    pub fn history_budget(mut self, budget: HistoryBudget) -> Self {
        self.history_budget = Some(budget);
        self
    }

    /// Subscriber lists, and join/leave events to subscribers.
    #[must_use]
    pub fn presence(mut self, on: bool) -> Self {
        self.presence = on;
        self
    }

    /// At most this many subscribers per topic on a node.
    #[must_use]
    pub fn max_subscribers(mut self, n: usize) -> Self {
        self.max_subscribers = Some(n);
        self
    }

    /// The longest topic name (default 255 bytes).
    #[must_use]
    pub fn max_name_len(mut self, n: usize) -> Self {
        self.max_name_len = n;
        self
    }

    /// The largest `data` a client may publish (default 64 KiB).
    #[must_use]
    pub fn max_data_bytes(mut self, n: usize) -> Self {
        self.max_data_bytes = n;
        self
    }

    /// What happens to a subscriber whose queue is full.
    #[must_use]
    pub fn slow_consumer(mut self, policy: SlowConsumer) -> Self {
        self.slow_consumer = policy;
        self
    }
}

/// Splits a topic into namespace and rest, checking the characters: ASCII
/// letters, digits and `-_.:@/#=`, no empty parts.
///
/// ```
/// use sockeye_pubsub::topic_namespace;
/// assert_eq!(topic_namespace("chat:lobby").unwrap(), "chat");
/// assert!(topic_namespace("lobby").is_err());
/// assert!(topic_namespace("chat:lob by").is_err());
/// ```
pub fn topic_namespace(topic: &str) -> Result<&str, Error> {
    let (ns, rest) = topic
        .split_once(':')
        .ok_or_else(|| Error::refused(ErrorCode::UnknownTopic, "topics are namespace:name"))?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.:@/#=".contains(c);
    if ns.is_empty() || rest.is_empty() || !topic.chars().all(allowed) {
        return Err(Error::refused(
            ErrorCode::UnknownTopic,
            "invalid topic name",
        ));
    }
    Ok(ns)
}
