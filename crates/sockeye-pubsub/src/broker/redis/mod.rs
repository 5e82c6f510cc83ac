//! The Redis broker: pub/sub between nodes, history in streams, presence in
//! hashes — all through the `redis` crate on tokio.
//!
//! - this module: [`RedisMode`], [`RedisBroker`] and its [`Broker`]
//!   implementation: subscribe, publish, history, presence.
//! - `builder`: [`RedisBrokerBuilder`], which connects.
//! - `conn`: one connection, to a server or a cluster.
//! - `link`: the task that reads pushes, reconnects with backoff and
//!   refreshes presence.
//! - `channel`: channel and key names, and channel payloads as events.
//! - `scripts`: the Lua scripts and their replies.

mod builder;
mod channel;
mod conn;
mod link;
mod scripts;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock, Weak};

use redis::Value;

use self::conn::Conn;
use self::scripts::{Scripts, as_string, as_u64, duration_ms, meta_ttl, unexpected};
use super::{
    BoxFuture, Broker, BrokerHandler, HandlerSlot, HistoryState, Member, Publication,
    PublishOptions, new_epoch,
};
use crate::error::Error;
use crate::protocol::StreamPosition;
use crate::sync::{lock, read};
use crate::topic::History;

pub use self::builder::RedisBrokerBuilder;

/// How the broker uses Redis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisMode {
    /// One Redis server (or a primary behind a proxy): `SUBSCRIBE` and
    /// `PUBLISH`. The default.
    #[default]
    Standalone,
    /// Redis Cluster with sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`, Redis 7):
    /// a publication only travels to the shard that owns its topic.
    Sharded,
}

/// The broker on Redis (feature `redis`): one Redis subscription per topic
/// per node, history in capped streams written by a Lua script with the
/// offset counter and the `PUBLISH`, presence with expiry, reconnection
/// with backoff.
///
/// Keys and channels of topic `T` under prefix `P` share the hash tag `{T}`,
/// so in Redis Cluster they live in one slot and the Lua scripts may touch
/// them together:
///
/// | what | name | type |
/// |---|---|---|
/// | publications | `P:{T}` | channel (`SPUBLISH` in sharded mode) |
/// | offset counter and epoch | `P:{T}:meta` | hash `top`, `epoch` |
/// | history | `P:{T}:stream` | stream, id `<offset>-0`, fields `t` (ms), `d` (data) |
/// | presence | `P:{T}:members`, `P:{T}:expiry` | hash id → member JSON, zset id → expiry ms |
///
/// Channel payloads: `p <offset> <epoch> <data>` (offset 0 and epoch `-`
/// without history), `j <member>`, `l <member>`.
///
/// One RESP3 connection carries commands and subscriptions. When it drops
/// (Redis restarted, network), the hub hears
/// [`BrokerEvent::LinkDown`](crate::BrokerEvent::LinkDown); a task
/// reconnects with backoff, subscribes again to every topic, and reports
/// [`BrokerEvent::LinkUp`](crate::BrokerEvent::LinkUp), after which the hub recovers what it
/// missed from the streams.
///
/// ```no_run
/// use sockeye_pubsub::{Hub, Namespace, RedisBroker};
/// # async fn run() -> Result<(), sockeye_pubsub::Error> {
/// let broker = RedisBroker::connect("redis://127.0.0.1:6379").await?;
/// let hub = Hub::builder().namespace("chat", Namespace::new()).broker(broker).build();
/// # drop(hub); Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisBroker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("urls", &self.inner.config.urls)
            .field("mode", &self.inner.config.mode)
            .field("link_up", &self.inner.current().is_some())
            .finish_non_exhaustive()
    }
}

impl RedisBroker {
    /// A builder for the server at `url` (`redis://host:port/db`,
    /// `rediss://` for TLS is not enabled in this build).
    pub fn builder(url: impl Into<String>) -> RedisBrokerBuilder {
        RedisBrokerBuilder::new(url.into())
    }

    /// Connects to one server with the defaults.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::builder(url).connect().await
    }
}

/// What a [`RedisBroker`] shares with its link task.
struct Inner {
    config: RedisBrokerBuilder,
    /// The live connection; `None` while reconnecting.
    conn: RwLock<Option<Conn>>,
    /// Topics this node subscribes to (subscribed again after a reconnection).
    topics: Mutex<HashSet<String>>,
    handler: HandlerSlot,
    /// Local presence members, refreshed periodically: topic → id → member.
    members: Mutex<HashMap<String, HashMap<String, Member>>>,
    scripts: Scripts,
}

fn broker_error(e: redis::RedisError) -> Error {
    Error::Broker(format!("redis: {e}"))
}

impl Inner {
    fn current(&self) -> Option<Conn> {
        read(&self.conn).clone()
    }

    fn conn(&self) -> Result<Conn, Error> {
        self.current()
            .ok_or_else(|| Error::Broker("redis: link down, reconnecting".into()))
    }

    async fn join(&self, topic: &str, member: &Member) -> Result<i64, Error> {
        let json = serde_json::to_string(member)?;
        let mut conn = self.conn()?;
        self.scripts
            .join
            .key(self.key(topic, "members"))
            .key(self.key(topic, "expiry"))
            .arg(&member.id)
            .arg(json)
            .arg(duration_ms(self.config.link.presence_ttl))
            .arg(self.channel(topic))
            .arg(self.publish_command())
            .invoke_async(&mut conn)
            .await
            .map_err(broker_error)
    }
}

impl Broker for RedisBroker {
    fn attach(&self, handler: Weak<dyn BrokerHandler>) {
        self.inner.handler.attach(handler);
    }

    fn subscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let inner = &self.inner;
            lock(&inner.topics).insert(topic.to_owned());
            let result = async {
                inner
                    .conn()?
                    .subscribe(vec![inner.channel(topic)])
                    .await
                    .map_err(broker_error)
            }
            .await;
            if result.is_err() {
                lock(&inner.topics).remove(topic);
            }
            result
        })
    }

    fn unsubscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let inner = &self.inner;
            lock(&inner.topics).remove(topic);
            inner
                .conn()?
                .unsubscribe(inner.channel(topic))
                .await
                .map_err(broker_error)
        })
    }

    fn publish<'a>(
        &'a self,
        topic: &'a str,
        data: &'a str,
        options: PublishOptions,
    ) -> BoxFuture<'a, Result<Option<StreamPosition>, Error>> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut conn = inner.conn()?;
            let Some(history) = options.history else {
                let payload = format!("p 0 - {data}");
                redis::cmd(inner.publish_command())
                    .arg(inner.channel(topic))
                    .arg(payload)
                    .query_async::<Value>(&mut conn)
                    .await
                    .map_err(broker_error)?;
                return Ok(None);
            };
            let reply: Vec<Value> = inner
                .scripts
                .publish
                .key(inner.key(topic, "meta"))
                .key(inner.key(topic, "stream"))
                .arg(inner.channel(topic))
                .arg(data)
                .arg(history.size)
                .arg(duration_ms(history.ttl))
                .arg(meta_ttl(history))
                .arg(new_epoch())
                .arg(inner.publish_command())
                .invoke_async(&mut conn)
                .await
                .map_err(broker_error)?;
            match reply.as_slice() {
                [offset, epoch] => Ok(Some(StreamPosition {
                    offset: as_u64(offset).ok_or_else(|| unexpected("publish"))?,
                    epoch: as_string(epoch).ok_or_else(|| unexpected("publish"))?,
                })),
                _ => Err(unexpected("publish")),
            }
        })
    }

    fn history<'a>(
        &'a self,
        topic: &'a str,
        since: Option<&'a StreamPosition>,
        history: History,
    ) -> BoxFuture<'a, Result<HistoryState, Error>> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut conn = inner.conn()?;
            let reply: Vec<Value> = inner
                .scripts
                .history
                .key(inner.key(topic, "meta"))
                .key(inner.key(topic, "stream"))
                .arg(since.map_or_else(String::new, |p| p.offset.to_string()))
                .arg(since.map_or("", |p| p.epoch.as_str()))
                .arg(duration_ms(history.ttl))
                .arg(new_epoch())
                .arg(meta_ttl(history))
                .invoke_async(&mut conn)
                .await
                .map_err(broker_error)?;
            let bad = || unexpected("history");
            let [epoch, top, complete, rest @ ..] = reply.as_slice() else {
                return Err(bad());
            };
            let epoch = as_string(epoch).ok_or_else(bad)?;
            let shared_epoch: Arc<str> = Arc::from(epoch.as_str());
            let mut publications = Vec::with_capacity(rest.len() / 2);
            for pair in rest.chunks(2) {
                let [offset, data] = pair else {
                    return Err(bad());
                };
                publications.push(Publication {
                    offset: as_u64(offset).ok_or_else(bad)?,
                    epoch: Arc::clone(&shared_epoch),
                    data: Arc::from(as_string(data).ok_or_else(bad)?),
                });
            }
            Ok(HistoryState {
                epoch,
                top: as_u64(top).ok_or_else(bad)?,
                publications,
                complete: as_u64(complete) == Some(1),
            })
        })
    }

    fn presence_join<'a>(
        &'a self,
        topic: &'a str,
        member: &'a Member,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let inner = &self.inner;
            lock(&inner.members)
                .entry(topic.to_owned())
                .or_default()
                .insert(member.id.clone(), member.clone());
            inner.join(topic, member).await.map(drop)
        })
    }

    fn presence_leave<'a>(
        &'a self,
        topic: &'a str,
        member: &'a Member,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let inner = &self.inner;
            {
                let mut members = lock(&inner.members);
                if let Some(m) = members.get_mut(topic) {
                    m.remove(&member.id);
                    if m.is_empty() {
                        members.remove(topic);
                    }
                }
            }
            let json = serde_json::to_string(member)?;
            let mut conn = inner.conn()?;
            inner
                .scripts
                .leave
                .key(inner.key(topic, "members"))
                .key(inner.key(topic, "expiry"))
                .arg(&member.id)
                .arg(json)
                .arg(inner.channel(topic))
                .arg(inner.publish_command())
                .invoke_async::<i64>(&mut conn)
                .await
                .map(drop)
                .map_err(broker_error)
        })
    }

    fn presence<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Vec<Member>, Error>> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut conn = inner.conn()?;
            let list: Vec<String> = inner
                .scripts
                .presence
                .key(inner.key(topic, "members"))
                .key(inner.key(topic, "expiry"))
                .arg(inner.channel(topic))
                .arg(inner.publish_command())
                .invoke_async(&mut conn)
                .await
                .map_err(broker_error)?;
            Ok(list
                .iter()
                .filter_map(|j| serde_json::from_str(j).ok())
                .collect())
        })
    }
}
