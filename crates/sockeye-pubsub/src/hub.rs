//! The hub: topics on one node, their subscribers, and the broker that links
//! nodes.
//!
//! Locking: a topic lives in one of [`SHARDS`] maps behind a mutex. Dispatch,
//! the end of a subscription's recovery and node-level recovery all run
//! under that lock, which is what orders a topic's pushes. A session's queue
//! has its own mutex, always taken after (never before) a shard's.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;
use sockeye_auth::Identity;
use sockeye_proto::{CloseCode, Message, PreparedMessage, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::authorizer::{Access, Action, AllowAll, Authorizer};
use crate::broker::{
    Broker, BrokerEvent, BrokerHandler, HistoryState, Member, MemoryBroker, Publication,
    PublishOptions,
};
use crate::error::{Error, ErrorCode};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::protocol::{self, Command, StreamPosition};
use crate::queue::{PushTopic, QueueLimits};
use crate::session::{
    Bucket, RateLimit, Session, SessionHandle, Strikes, rate_limited_reply, refused_reply,
};
use crate::topic::{HistoryBudget, Namespace, topic_namespace};

/// A session's command budget: the rate limit and the strikes.
pub(crate) struct Limits {
    bucket: Bucket,
    strikes: Strikes,
}

impl Limits {
    pub(crate) fn new(inner: &Inner) -> Self {
        Self {
            bucket: Bucket::new(inner.rate),
            strikes: Strikes::new(inner.max_strikes),
        }
    }

    fn strike(&mut self, session: &Session) {
        if self.strikes.strike() {
            tracing::info!(
                session = session.id,
                "too many bad commands: closing with 1008"
            );
            session.close(CloseCode::POLICY_VIOLATION, "too many bad requests");
        }
    }
}

const SHARDS: usize = 16;

/// One shard of the topic map.
type Shard = Mutex<HashMap<Arc<str>, Topic>>;

/// A topic's name, namespace and last dispatched position (epoch, offset).
type TopicSnapshot = (Arc<str>, Arc<Namespace>, Option<(Arc<str>, u64)>);

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

    /// Builds the hub and attaches it to the broker.
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
            link_down: AtomicBool::new(false),
            sessions: Mutex::new(HashMap::new()),
            #[cfg(feature = "hyper")]
            sse: Mutex::new(HashMap::new()),
        });
        let handler: Weak<dyn BrokerHandler> = Arc::downgrade(&inner) as Weak<dyn BrokerHandler>;
        inner.broker.attach(handler);
        Hub { inner }
    }
}

/// Topics and their subscribers on one node. Cheap to clone.
///
/// ```
/// use sockeye_pubsub::{Hub, Namespace};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let hub = Hub::builder().namespace("news", Namespace::new()).build();
/// // Server-side publishing; subscribers get {"topic":"news:world","data":{...}}.
/// hub.publish("news:world", &serde_json::json!({"title": "hello"})).await.unwrap();
/// assert!(hub.publish("nope:x", &1).await.is_err());
/// # }
/// ```
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("node", &self.inner.node)
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    /// Itself, for the tasks it spawns (linger, recovery).
    weak: Weak<Inner>,
    node: String,
    namespaces: HashMap<String, Arc<Namespace>>,
    authorizer: Arc<dyn Authorizer>,
    broker: Arc<dyn Broker>,
    shards: Box<[Shard]>,
    hasher: RandomState,
    queue: QueueLimits,
    rate: RateLimit,
    max_strikes: u32,
    max_subscriptions: usize,
    history_budget: HistoryBudget,
    linger: Duration,
    deflate: Option<sockeye_deflate::DeflateConfig>,
    metrics: Arc<Metrics>,
    next_session: AtomicU64,
    link_down: AtomicBool,
    /// Every open session, for `close_all`.
    sessions: Mutex<HashMap<u64, Weak<Session>>>,
    /// SSE sessions by token.
    #[cfg(feature = "hyper")]
    sse: Mutex<HashMap<String, crate::sse::SseEntry>>,
}

struct Topic {
    ns: Arc<Namespace>,
    subs: HashMap<u64, Sub>,
    /// Whether the broker subscription is on; the async lock serialises
    /// subscribing and unsubscribing at the broker.
    link: Arc<tokio::sync::Mutex<bool>>,
    /// Bumped whenever a subscriber comes or goes: a lingering release
    /// only proceeds if nothing changed.
    generation: u64,
    /// The last publication dispatched (epoch, offset): duplicates are
    /// skipped, and recovery after a broker outage starts there.
    last: Option<(Arc<str>, u64)>,
    /// During node-level recovery, live publications wait here.
    recovering: Option<Vec<Publication>>,
}

impl Topic {
    fn new(ns: Arc<Namespace>) -> Self {
        Self {
            ns,
            subs: HashMap::new(),
            link: Arc::new(tokio::sync::Mutex::new(false)),
            generation: 0,
            last: None,
            recovering: None,
        }
    }
}

struct Sub {
    session: Arc<Session>,
    /// While the subscription is being set up (broker subscription, history
    /// read), live publications wait here: the client gets its reply, the
    /// missed publications, then these, in order and without duplicates.
    pending: Option<Pending>,
}

#[derive(Default)]
struct Pending {
    publications: Vec<Publication>,
    overflow: bool,
}

/// Who asked for a subscription.
#[derive(Clone, Copy)]
enum Requester {
    /// A client command with this id: it gets a reply.
    Client(u64),
    /// The server ([`SessionHandle::subscribe`]): the client gets a
    /// `subscribed` event.
    Server,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    /// A builder with no namespaces, the memory broker and default limits.
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    /// This node's id (a prefix of its sessions' ids).
    pub fn node_id(&self) -> &str {
        &self.inner.node
    }

    /// The hub's counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        let topics = self
            .inner
            .shards
            .iter()
            .map(|s| lock(s).len())
            .sum::<usize>();
        MetricsSnapshot {
            topics: topics as u64,
            ..self.inner.metrics.snapshot()
        }
    }

    /// Publishes a value (serialised to JSON once) to a topic, from the
    /// server: the namespace must exist; client-publish rules and the
    /// authorizer do not apply. Returns the stream position when the
    /// namespace keeps history.
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        value: &T,
    ) -> Result<Option<StreamPosition>, Error> {
        let json = serde_json::to_string(value)?;
        self.publish_raw(topic, &json).await
    }

    /// Publishes JSON text as is: it is checked, and never re-encoded
    /// unless it spans several lines (then it is compacted once).
    pub async fn publish_raw(
        &self,
        topic: &str,
        json: &str,
    ) -> Result<Option<StreamPosition>, Error> {
        let ns = self.inner.namespace(topic)?;
        let raw = serde_json::from_str::<&RawValue>(json)?;
        if json.contains(['\n', '\r']) {
            // Line breaks can only be whitespace between tokens; the
            // protocol is one line per message (and SSE one line per
            // event), so this one is compacted once.
            let compact =
                serde_json::to_string(&serde_json::from_str::<serde_json::Value>(raw.get())?)?;
            return self.inner.publish(topic, &compact, &ns).await;
        }
        self.inner.publish(topic, json, &ns).await
    }

    /// The members of a topic (across nodes) when its namespace has presence.
    pub async fn presence(&self, topic: &str) -> Result<Vec<Member>, Error> {
        let ns = self.inner.namespace(topic)?;
        if !ns.presence {
            return Err(Error::refused(
                ErrorCode::BadRequest,
                "presence is off for this namespace",
            ));
        }
        self.inner.broker.presence(topic).await
    }

    /// Local subscribers of a topic on this node.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        lock(self.inner.shard(topic))
            .get(topic)
            .map_or(0, |t| t.subs.len())
    }

    /// Serves one socket until it closes: reads its commands, writes its
    /// queue. `identity` is what the authorizer sees (from sockeye-auth).
    pub async fn serve<S>(&self, socket: WebSocket<S>, identity: Option<Identity>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (_handle, run) = self.session(socket, identity);
        run.await;
    }

    /// Like [`serve`](Self::serve), but returns a handle for direct sends
    /// and server-side subscriptions, and the future to run (spawn it).
    ///
    /// ```no_run
    /// # async fn f(hub: sockeye_pubsub::Hub, ws: sockeye_proto::WebSocket<tokio::net::TcpStream>) {
    /// let (handle, run) = hub.session(ws, None);
    /// tokio::spawn(run);
    /// handle.send(&serde_json::json!({"welcome": true})).unwrap();
    /// handle.subscribe("chat:lobby").await.unwrap();
    /// # }
    /// ```
    pub fn session<S>(
        &self,
        socket: WebSocket<S>,
        identity: Option<Identity>,
    ) -> (
        SessionHandle,
        impl Future<Output = ()> + Send + 'static + use<S>,
    )
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let session = self.new_session(identity);
        let handle = SessionHandle {
            session: Arc::clone(&session),
            hub: self.clone(),
        };
        let hub = self.clone();
        let run = async move {
            let mut socket = socket;
            session.set_closer(socket.close_handle());
            let (mut read, write) = socket.split();
            let writer = tokio::spawn(Arc::clone(&session).write_loop(write));
            let mut limits = Limits::new(&hub.inner);
            while let Some(Ok(message)) = read.recv().await {
                match message {
                    Message::Text(text) => hub.text(&session, text.as_str(), &mut limits).await,
                    Message::Binary(_) => hub.binary(&session, &mut limits),
                    _ => {}
                }
                if session.is_closed() {
                    // Our close is on its way: read on until the peer's
                    // reply ends the socket, without acting on commands.
                    while let Some(Ok(_)) = read.recv().await {}
                    break;
                }
            }
            // The read side ended (peer closed, error, or our close done).
            hub.end_session(&session).await;
            let _ = writer.await;
        };
        (handle, run)
    }

    /// A new session, counted and registered (for [`close_all`](Self::close_all)).
    pub(crate) fn new_session(&self, identity: Option<Identity>) -> Arc<Session> {
        let inner = &self.inner;
        let id = inner.next_session.fetch_add(1, Ordering::Relaxed);
        let member = Member {
            id: format!("{}-{id}", inner.node),
            user: identity.as_ref().map(|i| i.subject().to_owned()),
        };
        let session = Arc::new(Session::new(
            id,
            member,
            identity,
            inner.queue,
            Arc::clone(&inner.metrics),
        ));
        inner.metrics.session_opened();
        lock(&inner.sessions).insert(id, Arc::downgrade(&session));
        session
    }

    /// Ends a session: its subscriptions go (presence leaves), and it is
    /// no longer counted.
    pub(crate) async fn end_session(&self, session: &Arc<Session>) {
        if lock(&self.inner.sessions).remove(&session.id).is_none() {
            return; // already ended
        }
        for (topic, ns) in session.finish() {
            self.inner.leave(session, &topic, &ns).await;
        }
        self.inner.metrics.session_closed();
    }

    /// Closes every session (WebSocket close frame, or an SSE `close`
    /// event) with `code`, e.g. 1001 before a shutdown.
    pub fn close_all(&self, code: CloseCode, reason: &'static str) {
        let sessions: Vec<Arc<Session>> = lock(&self.inner.sessions)
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for s in sessions {
            s.close(code, reason);
        }
    }

    /// One text frame (or POST body) of commands, one per line.
    pub(crate) async fn text(&self, session: &Arc<Session>, text: &str, limits: &mut Limits) {
        for line in protocol::split_commands(text) {
            if session.is_closed() {
                return;
            }
            let bad = match protocol::parse_command(line) {
                Err(bad) => {
                    session.control(protocol::reply_error(
                        bad.id,
                        ErrorCode::BadRequest,
                        &bad.message,
                    ));
                    true
                }
                Ok(command) if !limits.bucket.take() => {
                    session.control(rate_limited_reply(Some(command.id())));
                    true
                }
                Ok(command) => {
                    self.command(session, command).await;
                    false
                }
            };
            if bad {
                limits.strike(session);
            }
        }
    }

    /// A fresh command budget.
    #[cfg(feature = "hyper")]
    pub(crate) fn limits(&self) -> Limits {
        Limits::new(&self.inner)
    }

    #[cfg(feature = "hyper")]
    pub(crate) fn register_sse(&self, token: String, entry: crate::sse::SseEntry) {
        lock(&self.inner.sse).insert(token, entry);
    }

    #[cfg(feature = "hyper")]
    pub(crate) fn unregister_sse(&self, token: &str) {
        lock(&self.inner.sse).remove(token);
    }

    #[cfg(feature = "hyper")]
    /// The live SSE session of `token`: one the server ended is gone at
    /// once (404 to its POSTs), before its stream has finished.
    pub(crate) fn sse_entry(&self, token: &str) -> Option<crate::sse::SseEntry> {
        let mut sse = lock(&self.inner.sse);
        let entry = sse.get(token)?;
        if entry.session.is_closed() {
            sse.remove(token);
            return None;
        }
        Some(crate::sse::SseEntry {
            session: Arc::clone(&entry.session),
            limits: Arc::clone(&entry.limits),
        })
    }

    /// A binary frame: not a command.
    pub(crate) fn binary(&self, session: &Session, limits: &mut Limits) {
        session.control(protocol::reply_error(
            None,
            ErrorCode::BadRequest,
            "commands are text frames",
        ));
        limits.strike(session);
    }

    async fn command(&self, session: &Arc<Session>, command: Command) {
        let inner = &self.inner;
        match command {
            Command::Subscribe { id, topic, since } => {
                if let Err(e) = self
                    .subscribe_as(session, Requester::Client(id), &topic, since)
                    .await
                {
                    session.control(refused_reply(Some(id), &e));
                }
            }
            Command::Unsubscribe { id, topic } => {
                let reply = match self.unsubscribe_session(session, &topic).await {
                    Ok(()) => protocol::reply_ok(id, "{}"),
                    Err(e) => refused_reply(Some(id), &e),
                };
                session.control(reply);
            }
            Command::Publish { id, topic, data } => {
                let reply = match inner.client_publish(session, &topic, data.get()).await {
                    Ok(position) => protocol::reply_ok(id, &position_json(position.as_ref(), None)),
                    Err(e) => refused_reply(Some(id), &e),
                };
                session.control(reply);
            }
            Command::Presence { id, topic } => {
                let reply = match inner.client_presence(session, &topic).await {
                    Ok(members) => {
                        let list = serde_json::to_string(&members).unwrap_or_else(|_| "[]".into());
                        protocol::reply_ok(
                            id,
                            &format!("{{\"count\":{},\"members\":{list}}}", members.len()),
                        )
                    }
                    Err(e) => refused_reply(Some(id), &e),
                };
                session.control(reply);
            }
        }
    }

    pub(crate) async fn subscribe_session(
        &self,
        session: &Arc<Session>,
        _id: Option<u64>,
        topic: &str,
        since: Option<StreamPosition>,
    ) -> Result<(), Error> {
        self.subscribe_as(session, Requester::Server, topic, since)
            .await
    }

    async fn subscribe_as(
        &self,
        session: &Arc<Session>,
        requester: Requester,
        topic: &str,
        since: Option<StreamPosition>,
    ) -> Result<(), Error> {
        let inner = &self.inner;
        let ns = inner.namespace(topic)?;
        if let Requester::Client(_) = requester {
            inner
                .authorize(session, topic, Action::Subscribe, None)
                .await?;
        }
        let name: Arc<str> = Arc::from(topic);
        let again = session.subscribed(topic);
        if !again && session.subscription_count() >= inner.max_subscriptions {
            return Err(Error::refused(
                ErrorCode::LimitExceeded,
                "too many subscriptions",
            ));
        }
        let link = {
            let mut shard = lock(inner.shard(topic));
            let local = shard.get(topic).map_or(0, |t| t.subs.len());
            if !again && ns.max_subscribers.is_some_and(|max| local >= max) {
                return Err(Error::refused(ErrorCode::LimitExceeded, "topic is full"));
            }
            let t = shard
                .entry(Arc::clone(&name))
                .or_insert_with(|| Topic::new(Arc::clone(&ns)));
            t.subs
                .entry(session.id)
                .or_insert_with(|| Sub {
                    session: Arc::clone(session),
                    pending: None,
                })
                .pending = Some(Pending::default());
            t.generation += 1;
            Arc::clone(&t.link)
        };
        session.add_subscription(Arc::clone(&name), Arc::clone(&ns));
        let prepared = async {
            let mut subscribed = link.lock().await;
            if !*subscribed {
                inner.broker.subscribe(topic).await?;
                *subscribed = true;
            }
            drop(subscribed);
            match ns.history {
                Some(history) => inner
                    .broker
                    .history(topic, since.as_ref(), history)
                    .await
                    .map(Some),
                None => Ok(None),
            }
        };
        let state = match prepared.await {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(topic, error = %e, "subscribe failed at the broker");
                session.remove_subscription(topic);
                inner.remove_sub(&name, session);
                return Err(e);
            }
        };
        inner.finish_subscribe(&name, session, requester, since.as_ref(), state);
        if ns.presence
            && !again
            && let Err(e) = inner.broker.presence_join(topic, &session.member).await
        {
            tracing::warn!(topic, error = %e, "presence join failed");
        }
        Ok(())
    }

    pub(crate) async fn unsubscribe_session(
        &self,
        session: &Arc<Session>,
        topic: &str,
    ) -> Result<(), Error> {
        let ns = self.inner.namespace(topic)?;
        if !session.remove_subscription(topic) {
            return Err(Error::refused(ErrorCode::BadRequest, "not subscribed"));
        }
        self.inner.leave(session, &Arc::from(topic), &ns).await;
        Ok(())
    }

    /// Serves the hub on sockeye-hyper: a tower service that upgrades
    /// WebSocket requests and serves each socket with the [`Identity`] that
    /// an `AuthLayer` in front of it put in the request.
    ///
    /// Sockets get a 1 MiB message limit (commands are small); set another
    /// [`Config`](sockeye_proto::Config) on the returned service to change it.
    #[cfg(feature = "hyper")]
    pub fn upgrade_service(&self) -> sockeye_hyper::server::UpgradeService<HubHandler> {
        let config = sockeye_hyper::server::default_config();
        let config = sockeye_proto::Config::builder()
            .max_message_size(config.max_message_size().min(1 << 20))
            .max_frame_size(config.max_frame_size().min(1 << 20))
            .keepalive_interval(
                config
                    .keepalive_interval()
                    .or(Some(Duration::from_secs(30))),
            )
            .build();
        sockeye_hyper::server::UpgradeService::new(HubHandler { hub: self.clone() }).config(config)
    }
}

#[cfg(feature = "hyper")]
impl Hub {
    /// The Server-Sent Events + POST fallback alone (see [`SseService`](crate::SseService)).
    pub fn sse_service(&self) -> crate::SseService {
        crate::SseService::new(self.clone())
    }

    /// Both transports on one URL: WebSocket upgrades go to
    /// [`upgrade_service`](Self::upgrade_service), other requests to the
    /// SSE + POST fallback. Mount it at `/ws` in hyper or axum:
    ///
    /// ```no_run
    /// # fn f(hub: sockeye_pubsub::Hub) {
    /// let app = axum::Router::new().route_service("/ws", hub.service());
    /// # let _: axum::Router = app;
    /// # }
    /// ```
    pub fn service(&self) -> sockeye_hyper::server::UpgradeService<HubHandler, crate::SseService> {
        self.upgrade_service().fallback(self.sse_service())
    }
}

/// The [`Handler`](sockeye_hyper::server::Handler) of
/// [`Hub::upgrade_service`].
#[cfg(feature = "hyper")]
#[derive(Clone, Debug)]
pub struct HubHandler {
    hub: Hub,
}

#[cfg(feature = "hyper")]
impl sockeye_hyper::server::Handler for HubHandler {
    type Future = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

    fn call(
        &self,
        socket: sockeye_hyper::server::WebSocket,
        handshake: sockeye_hyper::server::Handshake,
    ) -> Self::Future {
        let hub = self.hub.clone();
        let identity = handshake.extension::<Identity>().cloned();
        Box::pin(async move { hub.serve(socket, identity).await })
    }
}

fn position_json(position: Option<&StreamPosition>, recovered: Option<bool>) -> String {
    let Some(p) = position else {
        return "{}".to_owned();
    };
    let recovered = recovered.map_or_else(String::new, |r| format!(",\"recovered\":{r}"));
    format!(
        "{{\"offset\":{},\"epoch\":{}{recovered}}}",
        p.offset,
        protocol::json_string(&p.epoch)
    )
}

impl Inner {
    fn shard(&self, topic: &str) -> &Shard {
        let i = (self.hasher.hash_one(topic) as usize) % self.shards.len();
        &self.shards[i]
    }

    fn namespace(&self, topic: &str) -> Result<Arc<Namespace>, Error> {
        let name = topic_namespace(topic)?;
        let ns = self
            .namespaces
            .get(name)
            .ok_or_else(|| Error::refused(ErrorCode::UnknownTopic, "unknown namespace"))?;
        if topic.len() > ns.max_name_len {
            return Err(Error::refused(
                ErrorCode::LimitExceeded,
                "topic name too long",
            ));
        }
        Ok(Arc::clone(ns))
    }

    async fn authorize(
        &self,
        session: &Session,
        topic: &str,
        action: Action,
        data: Option<&str>,
    ) -> Result<(), Error> {
        let access = Access {
            identity: session.identity.as_ref(),
            topic,
            action,
            data,
        };
        if self.authorizer.authorize(access).await {
            Ok(())
        } else {
            Err(Error::refused(ErrorCode::Forbidden, "not allowed"))
        }
    }

    async fn publish(
        &self,
        topic: &str,
        json: &str,
        ns: &Namespace,
    ) -> Result<Option<StreamPosition>, Error> {
        let options = PublishOptions {
            history: ns.history,
            budget: self.history_budget,
            namespace_budget: ns.history_budget,
        };
        self.broker.publish(topic, json, options).await
    }

    async fn client_publish(
        &self,
        session: &Session,
        topic: &str,
        data: &str,
    ) -> Result<Option<StreamPosition>, Error> {
        let ns = self.namespace(topic)?;
        if !ns.client_publish {
            return Err(Error::refused(
                ErrorCode::Forbidden,
                "clients may not publish in this namespace",
            ));
        }
        if data.len() > ns.max_data_bytes {
            return Err(Error::refused(ErrorCode::LimitExceeded, "data too large"));
        }
        self.authorize(session, topic, Action::Publish, Some(data))
            .await?;
        self.publish(topic, data, &ns).await
    }

    async fn client_presence(&self, session: &Session, topic: &str) -> Result<Vec<Member>, Error> {
        let ns = self.namespace(topic)?;
        if !ns.presence {
            return Err(Error::refused(
                ErrorCode::BadRequest,
                "presence is off for this namespace",
            ));
        }
        self.authorize(session, topic, Action::Subscribe, None)
            .await?;
        self.broker.presence(topic).await
    }

    /// Frames a push once (compressed once when deflate is on).
    fn prepare(&self, text: String) -> Option<PreparedMessage> {
        let message = Message::text(text);
        let prepared = match &self.deflate {
            Some(deflate) => deflate.prepare(message),
            None => PreparedMessage::new(message),
        };
        prepared.ok()
    }

    fn prepare_push(
        &self,
        topic: &str,
        ns: &Namespace,
        p: &Publication,
    ) -> Option<PreparedMessage> {
        let offset = ns.history.is_some().then_some(p.offset);
        self.prepare(protocol::push(topic, offset, &p.data))
    }

    /// Sends a publication to a topic's subscribers (under the shard lock).
    fn dispatch(&self, name: &Arc<str>, topic: &mut Topic, p: &Publication) {
        let Topic { ns, subs, last, .. } = topic;
        let history = ns.history.is_some();
        if history {
            if let Some((epoch, offset)) = last.as_ref() {
                if **epoch == *p.epoch && p.offset <= *offset {
                    return; // already dispatched
                }
                if **epoch != *p.epoch {
                    // The stream was recreated: positions in the old epoch
                    // are void, clients must resync.
                    for sub in subs.values().filter(|s| s.pending.is_none()) {
                        sub.session.lag(name, true);
                    }
                }
            }
            *last = Some((Arc::clone(&p.epoch), p.offset));
        }
        self.metrics.publication();
        let mut prepared: Option<Option<PreparedMessage>> = None;
        let policy = ns.slow_consumer;
        for sub in subs.values_mut() {
            if let Some(pending) = &mut sub.pending {
                if pending.publications.len() < self.queue.messages {
                    pending.publications.push(p.clone());
                } else {
                    pending.overflow = true;
                }
                continue;
            }
            let message = prepared.get_or_insert_with(|| self.prepare_push(name, ns, p));
            if let Some(message) = message {
                sub.session
                    .push(message, Some(PushTopic { name, history }), policy);
            }
        }
    }

    /// Ends a subscription's setup: reply (or `subscribed` event), the
    /// recovered publications, then those that arrived meanwhile.
    fn finish_subscribe(
        &self,
        name: &Arc<str>,
        session: &Arc<Session>,
        requester: Requester,
        since: Option<&StreamPosition>,
        state: Option<HistoryState>,
    ) {
        let mut shard = lock(self.shard(name));
        let Some(topic) = shard.get_mut(name) else {
            return;
        };
        let Some(pending) = topic
            .subs
            .get_mut(&session.id)
            .and_then(|s| s.pending.take())
        else {
            return;
        };
        session.clear_lag(name);
        let ns = Arc::clone(&topic.ns);
        let history = ns.history.is_some();
        let ok = match &state {
            Some(s) => {
                let position = StreamPosition {
                    offset: s.top,
                    epoch: s.epoch.clone(),
                };
                position_json(Some(&position), since.map(|_| s.complete))
            }
            None => "{}".to_owned(),
        };
        match requester {
            Requester::Client(id) => session.control(protocol::reply_ok(id, &ok)),
            Requester::Server => {
                let extra = format!("\"position\":{ok}");
                session.control(protocol::event(name, "subscribed", &extra));
            }
        }
        let push = |p: &Publication| {
            if let Some(m) = self.prepare_push(name, &ns, p) {
                session.push(&m, Some(PushTopic { name, history }), ns.slow_consumer);
            }
        };
        match state {
            None => pending.publications.iter().for_each(push),
            Some(s) => {
                if topic.last.is_none() {
                    topic.last = Some((Arc::from(s.epoch.as_str()), s.top));
                }
                if since.is_some() && s.complete {
                    s.publications.iter().for_each(push);
                }
                pending
                    .publications
                    .iter()
                    .filter(|p| *p.epoch != *s.epoch || p.offset > s.top)
                    .for_each(push);
            }
        }
        if pending.overflow {
            session.lag(name, history);
        }
    }

    /// Removes a session from a topic; the broker subscription lingers.
    fn remove_sub(&self, name: &Arc<str>, session: &Session) {
        let mut shard = lock(self.shard(name));
        let Some(topic) = shard.get_mut(name) else {
            return;
        };
        if topic.subs.remove(&session.id).is_some() {
            topic.generation += 1;
            if topic.subs.is_empty() {
                let generation = topic.generation;
                drop(shard);
                self.schedule_release(Arc::clone(name), generation);
            }
        }
    }

    /// A session leaves a topic (unsubscribe or close).
    async fn leave(&self, session: &Session, name: &Arc<str>, ns: &Namespace) {
        self.remove_sub(name, session);
        if ns.presence
            && let Err(e) = self.broker.presence_leave(name, &session.member).await
        {
            tracing::warn!(topic = &**name, error = %e, "presence leave failed");
        }
    }

    fn schedule_release(&self, name: Arc<str>, generation: u64) {
        // The release needs the hub alive; find it through the broker's
        // handler registration (a weak self).
        let Some(me) = self.self_weak() else {
            return;
        };
        let linger = self.linger;
        tokio::spawn(async move {
            tokio::time::sleep(linger).await;
            if let Some(inner) = me.upgrade() {
                inner.release(&name, generation).await;
            }
        });
    }

    /// Unsubscribes at the broker if the topic stayed empty.
    async fn release(&self, name: &Arc<str>, generation: u64) {
        let still_empty = |shard: &HashMap<Arc<str>, Topic>| {
            shard
                .get(name)
                .is_some_and(|t| t.subs.is_empty() && t.generation == generation)
        };
        let link = {
            let shard = lock(self.shard(name));
            if !still_empty(&shard) {
                return;
            }
            shard.get(name).map(|t| Arc::clone(&t.link))
        };
        let Some(link) = link else {
            return;
        };
        let mut subscribed = link.lock().await;
        if !still_empty(&lock(self.shard(name))) {
            return;
        }
        if *subscribed {
            if let Err(e) = self.broker.unsubscribe(name).await {
                tracing::warn!(topic = &**name, error = %e, "broker unsubscribe failed");
            }
            *subscribed = false;
        }
        let mut shard = lock(self.shard(name));
        if still_empty(&shard) {
            shard.remove(name);
            if shard.capacity() > 64 && shard.len() * 4 < shard.capacity() {
                let len = shard.len();
                shard.shrink_to(len * 2);
            }
        }
    }

    /// Every topic's name, namespace and last position.
    fn topics(&self) -> Vec<TopicSnapshot> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            for (name, t) in lock(shard).iter() {
                all.push((Arc::clone(name), Arc::clone(&t.ns), t.last.clone()));
            }
        }
        all
    }

    /// Sends a control event to every settled subscriber of a topic.
    fn event_all(topic: &Topic, text: &str) {
        for sub in topic.subs.values() {
            sub.session.control(text.to_owned());
        }
    }

    /// After the broker link came back: fetch what this node missed on each
    /// topic with history, in order, or tell subscribers it is lost.
    async fn recover(&self) {
        for (name, ns, last) in self.topics() {
            let Some(history) = ns.history else {
                if let Some(t) = lock(self.shard(&name)).get(&name) {
                    Self::event_all(t, &protocol::event(&name, "link_up", ""));
                }
                continue;
            };
            if let Some(t) = lock(self.shard(&name)).get_mut(&name) {
                t.recovering.get_or_insert_with(Vec::new);
            }
            let since = last.map(|(epoch, offset)| StreamPosition {
                offset,
                epoch: epoch.to_string(),
            });
            let fetched = self.broker.history(&name, since.as_ref(), history).await;
            let mut shard = lock(self.shard(&name));
            let Some(topic) = shard.get_mut(&name) else {
                continue;
            };
            let buffered = topic.recovering.take().unwrap_or_default();
            let recovered = match fetched {
                Ok(state) if state.complete && since.is_some() => {
                    for p in &state.publications {
                        self.dispatch(&name, topic, p);
                    }
                    true
                }
                Ok(state) => {
                    topic.last = Some((Arc::from(state.epoch.as_str()), state.top));
                    false
                }
                Err(e) => {
                    tracing::warn!(topic = &*name, error = %e, "recovery after a broker outage failed");
                    false
                }
            };
            if !recovered {
                for sub in topic.subs.values() {
                    sub.session.lag(&name, true);
                }
            }
            for p in &buffered {
                self.dispatch(&name, topic, p);
            }
            Self::event_all(
                topic,
                &protocol::event(&name, "link_up", &format!("\"recovered\":{recovered}")),
            );
        }
    }

    /// A join or leave, pushed to the topic's settled subscribers.
    fn presence_event(&self, name: &Arc<str>, kind: &str, member: &Member) {
        let shard = lock(self.shard(name));
        let Some(topic) = shard.get(name) else {
            return;
        };
        let member = serde_json::to_string(member).unwrap_or_else(|_| "{}".into());
        let Some(message) =
            self.prepare(protocol::event(name, kind, &format!("\"member\":{member}")))
        else {
            return;
        };
        for sub in topic.subs.values().filter(|s| s.pending.is_none()) {
            sub.session.push(&message, None, topic.ns.slow_consumer);
        }
    }

    fn self_weak(&self) -> Option<Weak<Inner>> {
        Some(self.weak.clone())
    }
}

impl BrokerHandler for Inner {
    fn on_event(&self, event: BrokerEvent) {
        match event {
            BrokerEvent::Publication { topic, publication } => {
                let mut shard = lock(self.shard(&topic));
                if let Some(t) = shard.get_mut(&topic) {
                    if let Some(buffer) = &mut t.recovering {
                        buffer.push(publication);
                    } else {
                        self.dispatch(&topic, t, &publication);
                    }
                }
            }
            BrokerEvent::Join { topic, member } => self.presence_event(&topic, "join", &member),
            BrokerEvent::Leave { topic, member } => self.presence_event(&topic, "leave", &member),
            BrokerEvent::LinkDown => {
                self.link_down.store(true, Ordering::Relaxed);
                tracing::warn!("broker link down");
                for shard in self.shards.iter() {
                    for (name, t) in lock(shard).iter() {
                        Self::event_all(t, &protocol::event(name, "link_down", ""));
                    }
                }
            }
            BrokerEvent::LinkUp => {
                self.link_down.store(false, Ordering::Relaxed);
                tracing::info!("broker link up: recovering");
                if let Some(me) = self.self_weak() {
                    tokio::spawn(async move {
                        if let Some(inner) = me.upgrade() {
                            inner.recover().await;
                        }
                    });
                }
            }
            BrokerEvent::Lagged { topic } => {
                if let Some(t) = lock(self.shard(&topic)).get(&topic) {
                    for sub in t.subs.values() {
                        sub.session.lag(&topic, t.ns.history.is_some());
                    }
                }
            }
        }
    }
}
