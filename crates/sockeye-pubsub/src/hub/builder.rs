//! [`HubBuilder`]: a hub's namespaces, broker and limits.

use std::collections::HashMap;
use std::hash::RandomState;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::topics::SHARDS;
use super::{Hub, Inner};
use crate::authorizer::{AllowAll, Authorizer};
use crate::broker::{Broker, BrokerHandler, MemoryBroker};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::queue::QueueLimits;
use crate::session::RateLimit;
use crate::topic::{HistoryBudget, Namespace};

/// Configures a [`Hub`].
///
/// ```
/// use std::time::Duration;
/// use sockeye_pubsub::{Hub, Namespace, SlowConsumer};
/// let hub = Hub::builder()
///     .namespace("chat", Namespace::new().client_publish(true).history(100, Duration::from_secs(300)).presence(true))
///     .namespace("ticker", Namespace::new().slow_consumer(SlowConsumer::KeepLatest))
///     .queue_limits(1024, 1 << 20)
///     .build();
/// # drop(hub);
/// ```
#[must_use]
pub struct HubBuilder {
    namespaces: HashMap<String, Arc<Namespace>>,
    authorizer: Arc<dyn Authorizer>,
    broker: Arc<dyn Broker>,
    queue: QueueLimits,
    rate: RateLimit,
    max_strikes: u32,
    max_subscriptions: usize,
    linger: Duration,
    deflate: Option<sockeye_deflate::DeflateConfig>,
    history_budget: HistoryBudget,
}

impl std::fmt::Debug for HubBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubBuilder")
            .field("namespaces", &self.namespaces.keys().collect::<Vec<_>>())
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl Default for HubBuilder {
    fn default() -> Self {
        Self {
            namespaces: HashMap::new(),
            authorizer: Arc::new(AllowAll),
            broker: Arc::new(MemoryBroker::new()),
            queue: QueueLimits::default(),
            rate: RateLimit::default(),
            max_strikes: 20,
            max_subscriptions: 256,
            linger: Duration::from_secs(2),
            deflate: None,
            history_budget: HistoryBudget::default(),
        }
    }
}

impl HubBuilder {
    /// Configures the namespace `name` (topics `name:...`). Topics of other
    /// namespaces are refused with `unknown_topic`.
    pub fn namespace(mut self, name: impl Into<String>, options: Namespace) -> Self {
        self.namespaces.insert(name.into(), Arc::new(options));
        self
    }

    /// Decides subscribe and publish per client (default: allow what the
    /// namespace allows).
    pub fn authorizer(mut self, authorizer: impl Authorizer) -> Self {
        self.authorizer = Arc::new(authorizer);
        self
    }

    /// The broker (default: [`MemoryBroker`], one process).
    pub fn broker(mut self, broker: impl Broker) -> Self {
        self.broker = Arc::new(broker);
        self
    }

    /// The same, shared.
    pub fn shared_broker(mut self, broker: Arc<dyn Broker>) -> Self {
        self.broker = broker;
        self
    }

    /// Each socket's queue: at most `messages` pushes and `bytes` bytes
    /// (default 1024 and 1 MiB); past that the namespace's slow-consumer
    /// policy applies.
    pub fn queue_limits(mut self, messages: usize, bytes: usize) -> Self {
        self.queue = QueueLimits {
            messages: messages.max(1),
            bytes: bytes.max(1),
        };
        self
    }

    /// Commands a client may send (default 100/s, bursts of 200); past it
    /// they are answered `rate_limited`.
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate = limit;
        self
    }

    /// Bad commands (malformed, rate-limited, binary) tolerated before the
    /// socket is closed with 1008; one is forgiven per second (default 20).
    pub fn max_strikes(mut self, strikes: u32) -> Self {
        self.max_strikes = strikes;
        self
    }

    /// Subscriptions per socket (default 256).
    pub fn max_subscriptions(mut self, n: usize) -> Self {
        self.max_subscriptions = n;
        self
    }

    /// The bound on all history this hub keeps at its broker (default
    /// [`HistoryBudget::default`]: 64 MiB over 100,000 topics). Past it
    /// the oldest publications, across namespaces, are evicted first.
    /// [`MemoryBroker`] enforces it. A Redis broker keeps each topic to its
    /// history size (stream `MAXLEN`) and TTL (key expiry); to bound all
    /// topics together there, run Redis with `maxmemory` and a `volatile-*`
    /// eviction policy (every key sockeye writes has a TTL): a `since` whose
    /// history Redis evicted is answered with `recovered: false`.
    pub fn history_budget(mut self, budget: HistoryBudget) -> Self {
        self.history_budget = budget;
        self
    }

    /// How long a topic stays subscribed at the broker after its last local
    /// subscriber leaves (default 2 s), so churn does not hammer the broker.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Compress each push once for the subscribers that negotiated
    /// permessage-deflate without context takeover (the sockeye-deflate
    /// server default); others get the plain frame.
    pub fn deflate(mut self, config: sockeye_deflate::DeflateConfig) -> Self {
        self.deflate = Some(config);
        self
    }

    /// Builds the hub like [`build`](Self::build), but refuses what its
    /// broker cannot serve: a namespace with history on a broker without
    /// history (`NatsBroker`) is [`Error::Config`] here, at startup, rather
    /// than an `unavailable` reply to every subscribe.
    ///
    /// ```
    /// use sockeye_pubsub::{Hub, Namespace};
    /// let hub = Hub::builder().namespace("news", Namespace::new()).try_build();
    /// assert!(hub.is_ok()); // the in-memory broker keeps history
    /// ```
    pub fn try_build(self) -> Result<Hub, Error> {
        if !self.broker.supports_history() {
            let mut with_history: Vec<&str> = self
                .namespaces
                .iter()
                .filter(|(_, ns)| ns.history.is_some())
                .map(|(name, _)| name.as_str())
                .collect();
            with_history.sort_unstable();
            if !with_history.is_empty() {
                return Err(Error::Config(format!(
                    "namespace {} keeps history, which this broker cannot",
                    with_history.join(", ")
                )));
            }
        }
        Ok(self.build())
    }

    /// Builds the hub and attaches it to the broker (without the checks of
    /// [`try_build`](Self::try_build)).
    pub fn build(self) -> Hub {
        let inner = Arc::new_cyclic(|weak| Inner {
            weak: weak.clone(),
            node: format!("{:08x}", rand::random::<u32>()),
            namespaces: self.namespaces,
            authorizer: self.authorizer,
            broker: self.broker,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            queue: self.queue,
            rate: self.rate,
            max_strikes: self.max_strikes,
            max_subscriptions: self.max_subscriptions,
            history_budget: self.history_budget,
            linger: self.linger,
            deflate: self.deflate,
            metrics: Arc::new(Metrics::default()),
            next_session: AtomicU64::new(1),
            sessions: Mutex::new(HashMap::new()),
            #[cfg(feature = "hyper")]
            extensions: Mutex::new(HashMap::new()),
        });
        let handler: Weak<dyn BrokerHandler> = Arc::downgrade(&inner) as Weak<dyn BrokerHandler>;
        inner.broker.attach(handler);
        Hub { inner }
    }
}
