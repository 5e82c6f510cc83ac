//! The NATS broker: publications and presence over core NATS subjects,
//! through the `async-nats` client on tokio. No history: see [`NatsBroker`].

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant};

use async_nats::{Client, ConnectOptions, Event};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use super::{
    BoxFuture, Broker, BrokerEvent, BrokerHandler, HistoryState, Member, Publication,
    PublishOptions, notify,
};
use crate::error::Error;
use crate::protocol::StreamPosition;
use crate::topic::History;

/// Configures a [`NatsBroker`].
#[derive(Clone, Debug)]
#[must_use]
pub struct NatsBrokerBuilder {
    url: String,
    prefix: String,
    presence_ttl: Duration,
    connect_timeout: Duration,
    response_timeout: Duration,
    subscription_capacity: usize,
    backoff: (Duration, Duration),
}

impl NatsBrokerBuilder {
    /// The first token of every subject (default `sockeye`): letters,
    /// digits, `_` and `-` only.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a member stays listed without its node refreshing it
    /// (default 60 s; refreshed every third of it), so the members of a
    /// crashed node expire.
    pub fn presence_ttl(mut self, ttl: Duration) -> Self {
        self.presence_ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// Connection timeout (default 5 s) and the time a subscription waits
    /// for the server to confirm it (default 5 s).
    pub fn timeouts(mut self, connect: Duration, response: Duration) -> Self {
        self.connect_timeout = connect;
        self.response_timeout = response;
        self
    }

    /// Messages buffered per topic between the NATS connection and the hub
    /// (default 65,536). Beyond it the client drops messages and the hub
    /// tells the topics' subscribers they lagged.
    pub fn subscription_capacity(mut self, messages: usize) -> Self {
        self.subscription_capacity = messages.max(1);
        self
    }

    /// Reconnect delays: from `min` doubling up to `max` (default 100 ms to
    /// 5 s).
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff = (min, max.max(min));
        self
    }

    /// Connects; fails if NATS cannot be reached now. Afterwards the client
    /// reconnects on its own, for ever.
    pub async fn connect(self) -> Result<NatsBroker, Error> {
        let valid = !self.prefix.is_empty()
            && self
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(Error::Broker(format!(
                "nats: the subject prefix {:?} may only hold letters, digits, _ and -",
                self.prefix
            )));
        }
        let (events, events_rx) = mpsc::unbounded_channel();
        let (min, max) = self.backoff;
        let client = ConnectOptions::new()
            .connection_timeout(self.connect_timeout)
            .subscription_capacity(self.subscription_capacity)
            .max_reconnects(None)
            .reconnect_delay_callback(move |attempts| {
                let shift = u32::try_from(attempts).unwrap_or(u32::MAX).min(16);
                min.saturating_mul(1 << shift).min(max)
            })
            .event_callback(move |event| {
                let _ = events.send(event);
                std::future::ready(())
            })
            .connect(self.url.as_str())
            .await
            .map_err(|e| Error::Broker(format!("nats: {e}")))?;
        // Round trips go to this node's own subject and come back.
        let ping = format!("{}.ping.{}", self.prefix, client.new_inbox());
        let pings = client.subscribe(ping.clone()).await.map_err(nats)?;
        let inner = Arc::new(Inner {
            config: self,
            client,
            ping,
            topics: Mutex::new(HashMap::new()),
            handler: RwLock::new(None),
            local: Mutex::new(HashMap::new()),
            remote: Mutex::new(HashMap::new()),
            pings: Mutex::new(HashMap::new()),
            next_ping: AtomicU64::new(0),
        });
        tokio::spawn(ping_task(Arc::downgrade(&inner), pings));
        tokio::spawn(link_task(Arc::downgrade(&inner), events_rx));
        Ok(NatsBroker { inner })
    }
}

/// The broker on NATS (feature `nats`): one NATS subscription per topic per
/// node, presence announced on the topic's subject and refreshed, and the
/// client's own reconnection.
///
/// Topic `T` under prefix `P` is the subject `P.t.T'`, where `T'` is `T`
/// with every byte other than a letter, digit, `_`, `-` or `:` written as
/// `%XX`, so a topic is always one subject token. Payloads: `p <data>` a
/// publication, `j <member>` a join, `l <member>` a leave, `r [members]`
/// a node's members (refresh or answer), `s` a request for them.
///
/// **No history.** Core NATS keeps nothing: a namespace with
/// [`history`](crate::Namespace::history) cannot be served, and
/// [`HubBuilder::try_build`](crate::HubBuilder::try_build) refuses it at
/// startup. After an outage ([`BrokerEvent::LinkDown`], then
/// [`LinkUp`](BrokerEvent::LinkUp)) subscribers are told
/// `link_up` without recovery, so a gap is never silent. Use
/// [`RedisBroker`](crate::RedisBroker) (feature `redis`) for history across
/// nodes.
///
/// ```no_run
/// use sockeye_pubsub::{Hub, Namespace, NatsBroker};
/// # async fn run() -> Result<(), sockeye_pubsub::Error> {
/// let broker = NatsBroker::connect("nats://127.0.0.1:4222").await?;
/// let hub = Hub::builder()
///     .namespace("chat", Namespace::new().presence(true))
///     .broker(broker)
///     .try_build()?;
/// # drop(hub); Ok(()) }
/// ```
#[derive(Clone)]
pub struct NatsBroker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NatsBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBroker")
            .field("url", &self.inner.config.url)
            .field("state", &self.inner.client.connection_state())
            .finish_non_exhaustive()
    }
}

impl NatsBroker {
    /// A builder for the server at `url` (`nats://host:port`).
    pub fn builder(url: impl Into<String>) -> NatsBrokerBuilder {
        NatsBrokerBuilder {
            url: url.into(),
            prefix: "sockeye".into(),
            presence_ttl: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
            subscription_capacity: 65_536,
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
        }
    }

    /// Connects to one server with the defaults.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::builder(url).connect().await
    }
}

/// Topic → member id → member.
type Members = HashMap<String, HashMap<String, Member>>;
/// Topic → member id → member and when it expires.
type Heard = HashMap<String, HashMap<String, (Member, Instant)>>;

struct Inner {
    config: NatsBrokerBuilder,
    client: Client,
    /// Topics this node subscribes to, each read by its own task.
    topics: Mutex<HashMap<String, AbortHandle>>,
    handler: RwLock<Option<Weak<dyn BrokerHandler>>>,
    /// This node's members: topic → id → member.
    local: Mutex<Members>,
    /// Every node's members as announced, with when they expire.
    remote: Mutex<Heard>,
    /// This node's round-trip subject.
    ping: String,
    /// Round trips waiting for their echo.
    pings: Mutex<HashMap<u64, oneshot::Sender<()>>>,
    next_ping: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn nats(e: impl std::fmt::Display) -> Error {
    Error::Broker(format!("nats: {e}"))
}

/// `topic` as one subject token (see [`NatsBroker`]).
fn encode(topic: &str, out: &mut String) {
    if topic.is_empty() {
        out.push('%');
    }
    for b in topic.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

impl Inner {
    fn handler(&self) -> Option<Weak<dyn BrokerHandler>> {
        self.handler
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn subject(&self, topic: &str) -> String {
        let mut s = format!("{}.t.", self.config.prefix);
        encode(topic, &mut s);
        s
    }

    async fn send(&self, subject: String, payload: String) -> Result<(), Error> {
        self.client
            .publish(subject, Bytes::from(payload))
            .await
            .map_err(nats)
    }

    /// Returns once the server has handled every command sent before: our
    /// own message comes back after them, as one connection is in order.
    async fn round_trip(&self) -> Result<(), Error> {
        let id = self.next_ping.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pings).insert(id, tx);
        let sent = async {
            self.send(self.ping.clone(), id.to_string()).await?;
            self.client.flush().await.map_err(nats)
        }
        .await;
        let echoed = match sent {
            Ok(()) => tokio::time::timeout(self.config.response_timeout, rx)
                .await
                .map_err(|_| Error::Broker("nats: no answer from the server".into()))
                .map(drop),
            Err(e) => Err(e),
        };
        lock(&self.pings).remove(&id);
        echoed
    }

    /// This node's members of `topic`, as an `r` payload.
    fn members_payload(&self, topic: &str) -> Option<String> {
        let local = lock(&self.local);
        let members: Vec<&Member> = local.get(topic)?.values().collect();
        serde_json::to_string(&members)
            .ok()
            .map(|json| format!("r {json}"))
    }

    fn heard(&self, topic: &str, member: Member) {
        let expires = Instant::now() + self.config.presence_ttl;
        lock(&self.remote)
            .entry(topic.to_owned())
            .or_default()
            .insert(member.id.clone(), (member, expires));
    }

    fn forget(&self, topic: &str, id: &str) -> bool {
        let mut remote = lock(&self.remote);
        let Some(members) = remote.get_mut(topic) else {
            return false;
        };
        let removed = members.remove(id).is_some();
        if members.is_empty() {
            remote.remove(topic);
        }
        removed
    }

    /// One message on a topic's subject.
    async fn on_message(&self, topic: &Arc<str>, message: async_nats::Message) {
        let Ok(payload) = std::str::from_utf8(&message.payload) else {
            tracing::debug!(topic = &**topic, "nats: unreadable message");
            return;
        };
        let (kind, rest) = payload.split_once(' ').unwrap_or((payload, ""));
        let event = match kind {
            "p" => BrokerEvent::Publication {
                topic: Arc::clone(topic),
                publication: Publication {
                    offset: 0,
                    epoch: Arc::from(""),
                    data: Arc::from(rest),
                },
            },
            "j" | "l" => {
                let Ok(member) = serde_json::from_str::<Member>(rest) else {
                    return;
                };
                if kind == "j" {
                    self.heard(topic, member.clone());
                    BrokerEvent::Join {
                        topic: Arc::clone(topic),
                        member,
                    }
                } else {
                    self.forget(topic, &member.id);
                    BrokerEvent::Leave {
                        topic: Arc::clone(topic),
                        member,
                    }
                }
            }
            "r" => {
                for member in serde_json::from_str::<Vec<Member>>(rest).unwrap_or_default() {
                    self.heard(topic, member);
                }
                return;
            }
            "s" => {
                if let Some(payload) = self.members_payload(topic) {
                    let to = message
                        .reply
                        .map_or_else(|| self.subject(topic), |r| r.to_string());
                    if let Err(e) = self.send(to, payload).await {
                        tracing::debug!(topic = &**topic, error = %e, "nats: presence answer failed");
                    }
                }
                return;
            }
            _ => {
                tracing::debug!(topic = &**topic, kind, "nats: unknown message kind");
                return;
            }
        };
        notify(&self.handler(), event);
    }

    /// Announces this node's members again (so they do not expire
    /// elsewhere) and lets expired ones from other nodes go.
    async fn refresh_presence(&self) {
        let topics: Vec<String> = lock(&self.local).keys().cloned().collect();
        for topic in topics {
            if let Some(payload) = self.members_payload(&topic)
                && let Err(e) = self.send(self.subject(&topic), payload).await
            {
                tracing::debug!(topic, error = %e, "nats: presence refresh failed");
                return;
            }
        }
        let now = Instant::now();
        let mut expired = Vec::new();
        lock(&self.remote).retain(|topic, members| {
            members.retain(|_, (member, at)| {
                let keep = *at > now;
                if !keep {
                    expired.push((Arc::<str>::from(topic.as_str()), member.clone()));
                }
                keep
            });
            !members.is_empty()
        });
        for (topic, member) in expired {
            notify(&self.handler(), BrokerEvent::Leave { topic, member });
        }
    }

    /// Every node's members of a topic this node does not subscribe to:
    /// asks them and collects the answers for a moment.
    async fn gather(&self, topic: &str) -> Result<Vec<Member>, Error> {
        let inbox = self.client.new_inbox();
        let mut answers = self.client.subscribe(inbox.clone()).await.map_err(nats)?;
        self.client
            .publish_with_reply(self.subject(topic), inbox, Bytes::from_static(b"s"))
            .await
            .map_err(nats)?;
        self.client.flush().await.map_err(nats)?;
        let mut members = HashMap::new();
        let window = GATHER_WINDOW;
        while let Ok(Some(answer)) = tokio::time::timeout(window, answers.next()).await {
            let listed = std::str::from_utf8(&answer.payload)
                .ok()
                .and_then(|p| p.strip_prefix("r "))
                .and_then(|json| serde_json::from_str::<Vec<Member>>(json).ok())
                .unwrap_or_default();
            for m in listed {
                members.insert(m.id.clone(), m);
            }
        }
        Ok(members.into_values().collect())
    }
}

/// How long a presence query about a topic this node does not subscribe
/// to waits for the next answer.
const GATHER_WINDOW: Duration = Duration::from_millis(100);

/// Completes the round trips whose message came back.
async fn ping_task(weak: Weak<Inner>, mut pings: async_nats::Subscriber) {
    while let Some(message) = pings.next().await {
        let Some(inner) = weak.upgrade() else { return };
        let id = std::str::from_utf8(&message.payload)
            .ok()
            .and_then(|id| id.parse::<u64>().ok());
        if let Some(tx) = id.and_then(|id| lock(&inner.pings).remove(&id)) {
            let _ = tx.send(());
        }
    }
}

/// Turns the client's connection events into the hub's, and refreshes
/// presence. Ends when the broker is dropped.
async fn link_task(weak: Weak<Inner>, mut events: mpsc::UnboundedReceiver<Event>) {
    let refresh_every = match weak.upgrade() {
        Some(inner) => inner.config.presence_ttl / 3,
        None => return,
    };
    let mut refresh = tokio::time::interval(refresh_every);
    refresh.tick().await;
    let mut down = false;
    loop {
        let event = tokio::select! {
            event = events.recv() => match event {
                Some(event) => event,
                None => return,
            },
            _ = refresh.tick() => {
                let Some(inner) = weak.upgrade() else { return };
                inner.refresh_presence().await;
                continue;
            }
        };
        let Some(inner) = weak.upgrade() else { return };
        match event {
            Event::Disconnected if !down => {
                down = true;
                tracing::warn!("nats link lost; reconnecting");
                notify(&inner.handler(), BrokerEvent::LinkDown);
            }
            Event::Connected if down => {
                // The client subscribed again before it reports this.
                down = false;
                tracing::info!("nats link back");
                crate::metrics::broker_reconnected("nats");
                notify(&inner.handler(), BrokerEvent::LinkUp);
                inner.refresh_presence().await;
            }
            Event::SlowConsumer(_) => {
                // The client dropped messages of one subscription and does
                // not say which topic: every topic may have lost some.
                tracing::warn!("nats: the client dropped messages (slow consumer)");
                let topics: Vec<String> = lock(&inner.topics).keys().cloned().collect();
                for topic in topics {
                    let topic = Arc::from(topic);
                    notify(&inner.handler(), BrokerEvent::Lagged { topic });
                }
            }
            Event::ServerError(e) => tracing::warn!(error = %e, "nats server error"),
            Event::ClientError(e) => tracing::warn!(error = %e, "nats client error"),
            _ => {}
        }
    }
}

/// The refusal of a history request: core NATS keeps nothing.
fn no_history() -> Error {
    Error::Broker("nats: no history on NATS (use RedisBroker or MemoryBroker for it)".into())
}

impl Broker for NatsBroker {
    fn attach(&self, handler: Weak<dyn BrokerHandler>) {
        *self
            .inner
            .handler
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(handler);
    }

    fn supports_history(&self) -> bool {
        false
    }

    fn subscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let inner = &self.inner;
            let subject = inner.subject(topic);
            let mut subscriber = inner
                .client
                .subscribe(subject.clone())
                .await
                .map_err(nats)?;
            let weak = Arc::downgrade(inner);
            let name: Arc<str> = Arc::from(topic);
            let task = tokio::spawn(async move {
                while let Some(message) = subscriber.next().await {
                    let Some(inner) = weak.upgrade() else { return };
                    inner.on_message(&name, message).await;
                }
            });
            if let Some(old) = lock(&inner.topics).insert(topic.to_owned(), task.abort_handle()) {
                old.abort();
            }
            // Subscribed once the server has seen it; then ask the other
            // nodes who is there.
            let confirmed = async {
                inner.round_trip().await?;
                inner.send(subject, "s".to_owned()).await
            }
            .await;
            if confirmed.is_err()
                && let Some(task) = lock(&inner.topics).remove(topic)
            {
                task.abort();
            }
            confirmed
        })
    }

    fn unsubscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            // Dropping the subscriber with its task unsubscribes.
            if let Some(task) = lock(&self.inner.topics).remove(topic) {
                task.abort();
            }
            lock(&self.inner.remote).remove(topic);
            Ok(())
        })
    }

    fn publish<'a>(
        &'a self,
        topic: &'a str,
        data: &'a str,
        options: PublishOptions,
    ) -> BoxFuture<'a, Result<Option<StreamPosition>, Error>> {
        Box::pin(async move {
            if options.history.is_some() {
                return Err(no_history());
            }
            let inner = &self.inner;
            let mut payload = String::with_capacity(2 + data.len());
            payload.push_str("p ");
            payload.push_str(data);
            inner.send(inner.subject(topic), payload).await?;
            Ok(None)
        })
    }

    fn history<'a>(
        &'a self,
        _topic: &'a str,
        _since: Option<&'a StreamPosition>,
        _history: History,
    ) -> BoxFuture<'a, Result<HistoryState, Error>> {
        Box::pin(async { Err(no_history()) })
    }

    fn presence_join<'a>(
        &'a self,
        topic: &'a str,
        member: &'a Member,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let inner = &self.inner;
            let json = serde_json::to_string(member)?;
            let new = lock(&inner.local)
                .entry(topic.to_owned())
                .or_default()
                .insert(member.id.clone(), member.clone())
                .is_none();
            if new {
                inner
                    .send(inner.subject(topic), format!("j {json}"))
                    .await?;
            }
            Ok(())
        })
    }

    fn presence_leave<'a>(
        &'a self,
        topic: &'a str,
        member: &'a Member,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let inner = &self.inner;
            let removed = {
                let mut local = lock(&inner.local);
                let removed = local
                    .get_mut(topic)
                    .is_some_and(|m| m.remove(&member.id).is_some());
                if local.get(topic).is_some_and(HashMap::is_empty) {
                    local.remove(topic);
                }
                removed
            };
            if removed {
                let json = serde_json::to_string(member)?;
                inner
                    .send(inner.subject(topic), format!("l {json}"))
                    .await?;
            }
            Ok(())
        })
    }

    fn presence<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Vec<Member>, Error>> {
        Box::pin(async move {
            let inner = &self.inner;
            if !lock(&inner.topics).contains_key(topic) {
                return inner.gather(topic).await;
            }
            let now = Instant::now();
            let mut members: HashMap<String, Member> = lock(&inner.remote)
                .get(topic)
                .into_iter()
                .flatten()
                .filter(|(_, (_, at))| *at > now)
                .map(|(id, (m, _))| (id.clone(), m.clone()))
                .collect();
            if let Some(local) = lock(&inner.local).get(topic) {
                members.extend(local.iter().map(|(id, m)| (id.clone(), m.clone())));
            }
            Ok(members.into_values().collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The topic a subject token names, if it is one [`encode`] writes.
    fn decode(token: &str) -> Option<String> {
        if token == "%" {
            return Some(String::new());
        }
        let mut bytes = Vec::with_capacity(token.len());
        let mut rest = token.as_bytes();
        while let Some((&b, tail)) = rest.split_first() {
            if b == b'%' {
                let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &tail[2..];
            } else {
                bytes.push(b);
                rest = tail;
            }
        }
        String::from_utf8(bytes).ok()
    }

    #[test]
    fn topics_are_one_subject_token_and_come_back() {
        for topic in [
            "chat:lobby",
            "a.b",
            "a b\tc",
            "*",
            ">",
            "100%",
            "ünï",
            "",
            "x%2",
        ] {
            let mut token = String::new();
            encode(topic, &mut token);
            assert!(!token.is_empty(), "{topic:?}");
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-:%".contains(&b)),
                "{topic:?} -> {token}"
            );
            assert_eq!(decode(&token).as_deref(), Some(topic), "{token}");
        }
        let mut token = String::new();
        encode("chat:lobby", &mut token);
        assert_eq!(token, "chat:lobby");
        for bad in ["%", "%4", "%zz", "%ff"] {
            // "%" alone is the empty topic; the others are not ours.
            assert_eq!(decode(bad).is_some(), bad == "%", "{bad}");
        }
    }
}
