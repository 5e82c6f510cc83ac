//! The NATS broker: publications and presence over core NATS subjects,
//! through the `async-nats` client on tokio. No history: see [`NatsBroker`].
//!
//! - this module: [`NatsBroker`] and its [`Broker`] implementation:
//!   subscribe, publish, presence.
//! - `builder`: [`NatsBrokerBuilder`], which connects.
//! - `subject`: topics as subject tokens.
//! - `link`: the client's connection events as the hub's, round trips.
//! - `dispatch`: the messages on a topic's subject.
//! - `presence`: members announced, heard, refreshed and gathered.

mod builder;
mod dispatch;
mod link;
mod presence;
mod subject;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use async_nats::Client;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use super::{BoxFuture, Broker, BrokerHandler, HandlerSlot, HistoryState, Member, PublishOptions};
use crate::error::Error;
use crate::protocol::StreamPosition;
use crate::sync::lock;
use crate::topic::History;

pub use self::builder::NatsBrokerBuilder;

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
/// startup. After an outage
/// ([`BrokerEvent::LinkDown`](crate::BrokerEvent::LinkDown), then
/// [`LinkUp`](crate::BrokerEvent::LinkUp)) subscribers are told
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
        NatsBrokerBuilder::new(url.into())
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

/// What a [`NatsBroker`] shares with its tasks.
struct Inner {
    config: NatsBrokerBuilder,
    client: Client,
    /// Topics this node subscribes to, each read by its own task.
    topics: Mutex<HashMap<String, AbortHandle>>,
    handler: HandlerSlot,
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

fn nats(e: impl std::fmt::Display) -> Error {
    Error::Broker(format!("nats: {e}"))
}

impl Inner {
    async fn send(&self, subject: String, payload: String) -> Result<(), Error> {
        self.client
            .publish(subject, Bytes::from(payload))
            .await
            .map_err(nats)
    }
}

/// The refusal of a history request: core NATS keeps nothing.
fn no_history() -> Error {
    Error::Broker("nats: no history on NATS (use RedisBroker or MemoryBroker for it)".into())
}

impl Broker for NatsBroker {
    fn attach(&self, handler: Weak<dyn BrokerHandler>) {
        self.inner.handler.attach(handler);
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
