//! The hub: topics on one node, their subscribers, and the broker that links
//! nodes. It knows sessions, not transports: the transports
//! (`crate::transport`) bring it sessions and their commands.
//!
//! - `builder`: [`HubBuilder`].
//! - this module: [`Hub`], its state and public API, the session registry.
//! - `commands`: a session's command lines, parsed, rate-limited, answered.
//! - `subscribe`: subscriptions set up (broker, history, pending pushes)
//!   and torn down.
//! - `topics`: the topic shards and [`Inner::dispatch`], the fan-out of a
//!   publication to each subscriber's [`Session::push`].
//! - `events`: what the broker reports (publications, presence, link
//!   down/up) and the recovery after an outage.
//! - `handle`: [`SessionHandle`], a session driven from the server side.
//!
//! Locking: a topic lives in one of `SHARDS` maps behind a mutex. Dispatch,
//! the end of a subscription's recovery and node-level recovery all run
//! under that lock, which is what orders a topic's pushes. A session's queue
//! has its own mutex, always taken after (never before) a shard's.

mod builder;
mod commands;
mod events;
mod handle;
mod subscribe;
mod topics;

#[cfg(feature = "hyper")]
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::hash::RandomState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;
use sockeye_auth::Identity;
use sockeye_proto::CloseCode;

pub use self::builder::HubBuilder;
pub use self::handle::SessionHandle;
use self::topics::Shard;
use crate::authorizer::{Access, Action, Authorizer};
use crate::broker::{Broker, Member, PublishOptions};
use crate::error::{Error, ErrorCode};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::protocol::StreamPosition;
use crate::queue::QueueLimits;
use crate::session::{Limits, RateLimit, Session};
use crate::sync::lock;
use crate::topic::{HistoryBudget, Namespace, topic_namespace};

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

struct Inner {
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
    /// Every open session, for `close_all`.
    sessions: Mutex<HashMap<u64, Weak<Session>>>,
    /// What a transport keeps per hub, one value per type (see
    /// [`Hub::extension`]).
    #[cfg(feature = "hyper")]
    extensions: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
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

    /// A fresh command budget for a session.
    pub(crate) fn limits(&self) -> Limits {
        Limits::new(self.inner.rate, self.inner.max_strikes)
    }

    /// The hub's value of type `T`, made on first use: per-hub state of a
    /// transport (the SSE fallback keeps its session tokens here), which
    /// the hub stores without knowing it.
    #[cfg(feature = "hyper")]
    pub(crate) fn extension<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        let mut extensions = lock(&self.inner.extensions);
        let slot = extensions
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()));
        Arc::clone(slot)
            .downcast::<T>()
            .unwrap_or_else(|_| unreachable!("an extension is keyed by its type"))
    }
}

impl Inner {
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

    fn self_weak(&self) -> Option<Weak<Inner>> {
        Some(self.weak.clone())
    }
}
