//! The Redis broker: pub/sub between nodes, history in streams, presence in
//! hashes — all through the `redis` crate on tokio.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Cmd, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind,
    RedisFuture, RedisResult, Script, Value,
};
use tokio::sync::mpsc;

use super::{
    BoxFuture, Broker, BrokerEvent, BrokerHandler, HistoryState, Member, Publication,
    PublishOptions, new_epoch, notify,
};
use crate::error::Error;
use crate::protocol::StreamPosition;
use crate::topic::History;

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

/// Configures a [`RedisBroker`].
#[derive(Clone, Debug)]
#[must_use]
pub struct RedisBrokerBuilder {
    urls: Vec<String>,
    mode: RedisMode,
    prefix: String,
    presence_ttl: Duration,
    connect_timeout: Duration,
    response_timeout: Duration,
    backoff: (Duration, Duration),
}

impl RedisBrokerBuilder {
    /// How to use Redis (default [`RedisMode::Standalone`]).
    pub fn mode(mut self, mode: RedisMode) -> Self {
        self.mode = mode;
        self
    }

    /// Another cluster node to start from (sharded mode).
    pub fn node(mut self, url: impl Into<String>) -> Self {
        self.urls.push(url.into());
        self
    }

    /// The prefix of keys and channels (default `sockeye`); no `{` or `}`.
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

    /// Connection timeout (default 5 s) and response timeout (default 5 s).
    pub fn timeouts(mut self, connect: Duration, response: Duration) -> Self {
        self.connect_timeout = connect;
        self.response_timeout = response;
        self
    }

    /// Reconnect delays: from `min` doubling up to `max` (default 100 ms to
    /// 5 s), jittered.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff = (min, max.max(min));
        self
    }

    /// Connects; fails if Redis cannot be reached now.
    pub async fn connect(self) -> Result<RedisBroker, Error> {
        if self.prefix.contains(['{', '}']) {
            return Err(Error::Broker(
                "the key prefix may not contain braces".into(),
            ));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = open(&self, 0, tx.clone()).await.map_err(broker_error)?;
        let inner = Arc::new(Inner {
            config: self,
            conn: RwLock::new(Some(conn)),
            topics: Mutex::new(HashSet::new()),
            handler: RwLock::new(None),
            members: Mutex::new(HashMap::new()),
            scripts: Scripts::new(),
        });
        tokio::spawn(link_task(Arc::downgrade(&inner), rx, tx));
        Ok(RedisBroker { inner })
    }
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
/// (Redis restarted, network), the hub hears [`BrokerEvent::LinkDown`]; a
/// task reconnects with backoff, subscribes again to every topic, and
/// reports [`BrokerEvent::LinkUp`], after which the hub recovers what it
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
        RedisBrokerBuilder {
            urls: vec![url.into()],
            mode: RedisMode::Standalone,
            prefix: "sockeye".into(),
            presence_ttl: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
        }
    }

    /// Connects to one server with the defaults.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::builder(url).connect().await
    }
}

struct Inner {
    config: RedisBrokerBuilder,
    /// The live connection; `None` while reconnecting.
    conn: RwLock<Option<Conn>>,
    /// Topics this node subscribes to (subscribed again after a reconnection).
    topics: Mutex<HashSet<String>>,
    handler: RwLock<Option<Weak<dyn BrokerHandler>>>,
    /// Local presence members, refreshed periodically: topic → id → member.
    members: Mutex<HashMap<String, HashMap<String, Member>>>,
    scripts: Scripts,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn broker_error(e: redis::RedisError) -> Error {
    Error::Broker(format!("redis: {e}"))
}

/// One connection, to a server or a cluster.
#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    async fn subscribe(&mut self, channels: Vec<String>) -> RedisResult<()> {
        if channels.is_empty() {
            return Ok(());
        }
        match self {
            Self::Single(c) => c.subscribe(channels).await,
            Self::Cluster(c) => c.ssubscribe(channels).await,
        }
    }

    async fn unsubscribe(&mut self, channel: String) -> RedisResult<()> {
        match self {
            Self::Single(c) => c.unsubscribe(channel).await,
            Self::Cluster(c) => c.sunsubscribe(channel).await,
        }
    }
}

/// Opens connection number `generation`; its pushes go to `tx` tagged
/// with it.
async fn open(
    config: &RedisBrokerBuilder,
    generation: u64,
    tx: mpsc::UnboundedSender<(u64, PushInfo)>,
) -> RedisResult<Conn> {
    let sender = move |info: PushInfo| tx.send((generation, info));
    match config.mode {
        RedisMode::Standalone => {
            let info = config.urls[0].as_str().into_connection_info()?;
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            let client = redis::Client::open(info.set_redis_settings(settings))?;
            let conn_config = AsyncConnectionConfig::new()
                .set_push_sender(sender)
                .set_connection_timeout(Some(config.connect_timeout))
                .set_response_timeout(Some(config.response_timeout));
            let conn = client
                .get_multiplexed_async_connection_with_config(&conn_config)
                .await?;
            Ok(Conn::Single(conn))
        }
        RedisMode::Sharded => {
            let client = redis::cluster::ClusterClientBuilder::new(config.urls.clone())
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(sender)
                .connection_timeout(config.connect_timeout)
                .response_timeout(config.response_timeout)
                .build()?;
            Ok(Conn::Cluster(client.get_async_connection().await?))
        }
    }
}

impl Inner {
    fn current(&self) -> Option<Conn> {
        self.conn.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn conn(&self) -> Result<Conn, Error> {
        self.current()
            .ok_or_else(|| Error::Broker("redis: link down, reconnecting".into()))
    }

    fn handler(&self) -> Option<Weak<dyn BrokerHandler>> {
        self.handler
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn channel(&self, topic: &str) -> String {
        format!("{}:{{{topic}}}", self.config.prefix)
    }

    fn key(&self, topic: &str, suffix: &str) -> String {
        format!("{}:{{{topic}}}:{suffix}", self.config.prefix)
    }

    fn publish_command(&self) -> &'static str {
        match self.config.mode {
            RedisMode::Standalone => "PUBLISH",
            RedisMode::Sharded => "SPUBLISH",
        }
    }

    fn topic_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(self.config.prefix.as_str())?
            .strip_prefix(":{")?
            .strip_suffix('}')
    }

    /// A message from a channel, as an event.
    fn event(&self, channel: &str, payload: &str) -> Option<BrokerEvent> {
        let topic: Arc<str> = Arc::from(self.topic_of(channel)?);
        let (kind, rest) = payload.split_once(' ')?;
        match kind {
            "p" => {
                let (offset, rest) = rest.split_once(' ')?;
                let (epoch, data) = rest.split_once(' ')?;
                let epoch = if epoch == "-" { "" } else { epoch };
                Some(BrokerEvent::Publication {
                    topic,
                    publication: Publication {
                        offset: offset.parse().ok()?,
                        epoch: Arc::from(epoch),
                        data: Arc::from(data),
                    },
                })
            }
            "j" => Some(BrokerEvent::Join {
                topic,
                member: serde_json::from_str(rest).ok()?,
            }),
            "l" => Some(BrokerEvent::Leave {
                topic,
                member: serde_json::from_str(rest).ok()?,
            }),
            _ => None,
        }
    }

    fn meta_ttl(history: History) -> u64 {
        // The counter outlives the stream by a day, so a quiet topic keeps
        // its epoch and a client that saw everything still recovers.
        duration_ms(history.ttl) + 86_400_000
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
            .arg(duration_ms(self.config.presence_ttl))
            .arg(self.channel(topic))
            .arg(self.publish_command())
            .invoke_async(&mut conn)
            .await
            .map_err(broker_error)
    }

    /// Refreshes this node's members so they do not expire.
    async fn refresh_presence(&self) {
        let members: Vec<(String, Member)> = lock(&self.members)
            .iter()
            .flat_map(|(t, m)| m.values().map(move |m| (t.clone(), m.clone())))
            .collect();
        for (topic, member) in members {
            if let Err(e) = self.join(&topic, &member).await {
                tracing::debug!(topic, error = %e, "presence refresh failed");
                return;
            }
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Reads pushes; on a disconnection reconnects with backoff, subscribes
/// again, and tells the hub. Ends when the broker is dropped.
async fn link_task(
    weak: Weak<Inner>,
    mut rx: mpsc::UnboundedReceiver<(u64, PushInfo)>,
    tx: mpsc::UnboundedSender<(u64, PushInfo)>,
) {
    let mut generation = 0u64;
    let refresh_every = match weak.upgrade() {
        Some(inner) => inner.config.presence_ttl / 3,
        None => return,
    };
    let mut refresh = tokio::time::interval(refresh_every);
    refresh.tick().await;
    loop {
        let (from, info) = tokio::select! {
            pushed = rx.recv() => match pushed {
                Some(p) => p,
                None => return,
            },
            _ = refresh.tick() => {
                let Some(inner) = weak.upgrade() else { return };
                inner.refresh_presence().await;
                continue;
            }
        };
        let Some(inner) = weak.upgrade() else {
            return;
        };
        if from != generation {
            continue; // from a connection already replaced
        }
        match info.kind {
            PushKind::Message | PushKind::SMessage => {
                let text = |v: Option<&Value>| match v {
                    Some(Value::BulkString(b)) => std::str::from_utf8(b).ok().map(str::to_owned),
                    Some(Value::SimpleString(s)) => Some(s.clone()),
                    _ => None,
                };
                let (Some(channel), Some(payload)) =
                    (text(info.data.first()), text(info.data.get(1)))
                else {
                    continue;
                };
                match inner.event(&channel, &payload) {
                    Some(event) => notify(&inner.handler(), event),
                    None => tracing::debug!(channel, "redis: unreadable channel message"),
                }
            }
            PushKind::Disconnection => {
                tracing::warn!("redis link lost; reconnecting");
                *inner.conn.write().unwrap_or_else(|e| e.into_inner()) = None;
                notify(&inner.handler(), BrokerEvent::LinkDown);
                drop(inner);
                generation += 1;
                if !reconnect(&weak, generation, &tx).await {
                    return;
                }
                if let Some(inner) = weak.upgrade() {
                    tracing::info!("redis link back");
                    crate::metrics::broker_reconnected("redis");
                    notify(&inner.handler(), BrokerEvent::LinkUp);
                }
            }
            _ => {}
        }
    }
}

/// Reconnects until it works (or the broker is gone: `false`).
async fn reconnect(
    weak: &Weak<Inner>,
    generation: u64,
    tx: &mpsc::UnboundedSender<(u64, PushInfo)>,
) -> bool {
    let mut attempt = 0u32;
    loop {
        let (config, topics) = match weak.upgrade() {
            Some(inner) => (inner.config.clone(), lock(&inner.topics).clone()),
            None => return false,
        };
        let (min, max) = config.backoff;
        let delay = min.saturating_mul(1 << attempt.min(16)).min(max);
        let jittered = delay.mul_f64(1.0 - rand::random::<f64>() * 0.3);
        tokio::time::sleep(jittered).await;
        attempt += 1;
        let result = async {
            let mut conn = open(&config, generation, tx.clone()).await?;
            let channels = match weak.upgrade() {
                Some(inner) => topics.iter().map(|t| inner.channel(t)).collect(),
                None => Vec::new(),
            };
            conn.subscribe(channels).await?;
            RedisResult::Ok(conn)
        }
        .await;
        match result {
            Ok(conn) => {
                let Some(inner) = weak.upgrade() else {
                    return false;
                };
                *inner.conn.write().unwrap_or_else(|e| e.into_inner()) = Some(conn);
                // Topics added while reconnecting were refused to their
                // callers; the set is what the hub now holds.
                return true;
            }
            Err(e) => tracing::debug!(attempt, error = %e, "redis reconnect failed"),
        }
    }
}

struct Scripts {
    publish: Script,
    history: Script,
    join: Script,
    leave: Script,
    presence: Script,
}

const NOW_MS: &str = "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

impl Scripts {
    fn new() -> Self {
        // KEYS: meta, stream. ARGV: channel, data, size, ttl ms, meta ttl ms,
        // new epoch, publish command.
        let publish = format!(
            "{NOW_MS}{}",
            r"local top = redis.call('HINCRBY', KEYS[1], 'top', 1)
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[6]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], top .. '-0', 't', now, 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call(ARGV[7], ARGV[1], 'p ' .. top .. ' ' .. epoch .. ' ' .. ARGV[2])
return {top, epoch}"
        );
        // KEYS: meta, stream. ARGV: since offset ('' for none), since epoch,
        // ttl ms, new epoch, meta ttl ms. Returns {epoch, top, complete,
        // offset1, data1, ...}: never a partial list.
        let history = format!(
            "{NOW_MS}{}",
            r"local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[4]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
  redis.call('HSETNX', KEYS[1], 'top', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
local top = tonumber(redis.call('HGET', KEYS[1], 'top') or '0')
if ARGV[1] == '' then return {epoch, top, 1} end
local since = tonumber(ARGV[1])
if ARGV[2] ~= epoch or since > top then return {epoch, top, 0} end
if since == top then return {epoch, top, 1} end
local oldest = now - tonumber(ARGV[3])
local entries = redis.call('XRANGE', KEYS[2], (since + 1) .. '-0', '+')
local out = {epoch, top, 1}
local expect = since + 1
for _, e in ipairs(entries) do
  local id = tonumber(string.match(e[1], '^(%d+)'))
  local f = e[2]
  if id ~= expect or tonumber(f[2]) < oldest then return {epoch, top, 0} end
  table.insert(out, id)
  table.insert(out, f[4])
  expect = expect + 1
end
if expect ~= top + 1 then return {epoch, top, 0} end
return out"
        );
        // KEYS: members, expiry. ARGV: id, member JSON, ttl ms, channel,
        // publish command. Announces only a new member.
        let join = format!(
            "{NOW_MS}{}",
            r"local added = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[2], 2 * tonumber(ARGV[3]))
if added == 1 then redis.call(ARGV[5], ARGV[4], 'j ' .. ARGV[2]) end
return added"
        );
        // KEYS: members, expiry. ARGV: id, member JSON, channel, command.
        let leave = r"local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if removed == 1 then redis.call(ARGV[4], ARGV[3], 'l ' .. ARGV[2]) end
return removed";
        // KEYS: members, expiry. ARGV: channel, command. Expired members
        // (their node died) are removed and announced as leaving.
        let presence = format!(
            "{NOW_MS}{}",
            r"local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(expired) do
  local json = redis.call('HGET', KEYS[1], id)
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  if json then redis.call(ARGV[2], ARGV[1], 'l ' .. json) end
end
return redis.call('HVALS', KEYS[1])"
        );
        Self {
            publish: Script::new(&publish),
            history: Script::new(&history),
            join: Script::new(&join),
            leave: Script::new(leave),
            presence: Script::new(&presence),
        }
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn unexpected(what: &str) -> Error {
    Error::Broker(format!("redis: unexpected reply to {what}"))
}

impl Broker for RedisBroker {
    fn attach(&self, handler: Weak<dyn BrokerHandler>) {
        *self
            .inner
            .handler
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(handler);
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
                .arg(Inner::meta_ttl(history))
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
                .arg(Inner::meta_ttl(history))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_payloads_parse() {
        let inner = Inner {
            config: RedisBroker::builder("redis://127.0.0.1"),
            conn: RwLock::new(None),
            topics: Mutex::new(HashSet::new()),
            handler: RwLock::new(None),
            members: Mutex::new(HashMap::new()),
            scripts: Scripts::new(),
        };
        assert_eq!(inner.channel("chat:lobby"), "sockeye:{chat:lobby}");
        assert_eq!(inner.key("chat:lobby", "meta"), "sockeye:{chat:lobby}:meta");
        assert_eq!(inner.topic_of("sockeye:{chat:lobby}"), Some("chat:lobby"));
        assert_eq!(inner.topic_of("other:{chat:lobby}"), None);
        match inner.event("sockeye:{a:b}", "p 12 e1f2 {\"x\": \"y z\"}") {
            Some(BrokerEvent::Publication { topic, publication }) => {
                assert_eq!(&*topic, "a:b");
                assert_eq!(publication.offset, 12);
                assert_eq!(&*publication.epoch, "e1f2");
                assert_eq!(&*publication.data, "{\"x\": \"y z\"}");
            }
            other => panic!("{other:?}"),
        }
        match inner.event("sockeye:{a:b}", "p 0 - [1,2]") {
            Some(BrokerEvent::Publication { publication, .. }) => {
                assert_eq!(&*publication.epoch, "")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            inner.event("sockeye:{a:b}", r#"j {"id":"n-1","user":"ann"}"#),
            Some(BrokerEvent::Join { .. })
        ));
        for bad in ["", "p", "p x e d", "q 1 2 3", "j not-json"] {
            assert!(inner.event("sockeye:{a:b}", bad).is_none(), "{bad}");
        }
    }
}
