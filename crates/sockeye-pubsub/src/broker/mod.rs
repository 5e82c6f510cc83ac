//! The broker: what carries publications between hubs, keeps history and
//! presence. [`MemoryBroker`] serves one process; `RedisBroker` (feature
//! `redis`) and `NatsBroker` (feature `nats`, no history) span nodes. The
//! trait is the seam tests mock.

mod memory;
#[cfg(feature = "nats")]
mod nats;
#[cfg(any(feature = "redis", feature = "nats"))]
mod options;
#[cfg(feature = "redis")]
mod redis;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock, Weak};

use serde::{Deserialize, Serialize};

pub use self::memory::{HistoryStats, MemoryBroker};
#[cfg(feature = "nats")]
pub use self::nats::{NatsBroker, NatsBrokerBuilder};
#[cfg(feature = "redis")]
pub use self::redis::{RedisBroker, RedisBrokerBuilder, RedisMode};

use crate::error::Error;
use crate::protocol::StreamPosition;
use crate::sync::{read, write};
use crate::topic::{History, HistoryBudget};

/// A boxed future, as the object-safe [`Broker`] trait returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One publication as the broker delivers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publication {
    /// Its offset in the topic's stream (0 without history).
    pub offset: u64,
    /// The stream's epoch (empty without history).
    pub epoch: Arc<str>,
    /// The payload: raw JSON, never re-encoded.
    pub data: Arc<str>,
}

/// A subscriber as presence lists it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    /// The session (unique across nodes).
    pub id: String,
    /// The authenticated subject, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// What a broker tells the hub.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum BrokerEvent {
    /// A publication on a topic this node subscribed to.
    Publication {
        /// The topic.
        topic: Arc<str>,
        /// The publication.
        publication: Publication,
    },
    /// Someone subscribed to a topic with presence (on any node).
    Join {
        /// The topic.
        topic: Arc<str>,
        /// Who.
        member: Member,
    },
    /// Someone left such a topic.
    Leave {
        /// The topic.
        topic: Arc<str>,
        /// Who.
        member: Member,
    },
    /// The link to the broker broke: publications may be missed until
    /// [`LinkUp`](Self::LinkUp).
    LinkDown,
    /// The link is back and the topics were subscribed again.
    LinkUp,
    /// The broker had to drop publications on a topic (its incoming queue
    /// overflowed).
    Lagged {
        /// The topic.
        topic: Arc<str>,
    },
}

/// Receives a broker's events (the hub). Must not block.
pub trait BrokerHandler: Send + Sync + 'static {
    /// One event.
    fn on_event(&self, event: BrokerEvent);
}

/// A topic's history as seen from a position.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryState {
    /// The stream's current epoch.
    pub epoch: String,
    /// The offset of the newest publication (0 when none).
    pub top: u64,
    /// The publications after the requested position, oldest first.
    pub publications: Vec<Publication>,
    /// Whether they are all that was published after that position (same
    /// epoch, nothing evicted in between): recovery is possible.
    pub complete: bool,
}

/// Publishing options.
#[derive(Clone, Copy, Debug, Default)]
pub struct PublishOptions {
    /// Keep the publication in the topic's history.
    pub history: Option<History>,
    /// The bound on all history the publishing hub keeps.
    pub budget: HistoryBudget,
    /// The bound on the topic's namespace's history, if it has its own.
    pub namespace_budget: Option<HistoryBudget>,
}

/// The transport between hubs: subscriptions, publication with history,
/// presence. Implementations deliver events to the handler given to
/// [`attach`](Self::attach), in publication order per topic.
pub trait Broker: Send + Sync + 'static {
    /// Where events go.
    fn attach(&self, handler: Weak<dyn BrokerHandler>);

    /// Whether it keeps history ([`publish`](Self::publish) with
    /// [`PublishOptions::history`] and [`history`](Self::history)); a hub
    /// refuses namespaces with history on a broker without it.
    fn supports_history(&self) -> bool {
        true
    }

    /// Starts delivering a topic's publications to this node.
    fn subscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), Error>>;

    /// Stops delivering them.
    fn unsubscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), Error>>;

    /// Publishes raw JSON `data`; with history, returns its position.
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        data: &'a str,
        options: PublishOptions,
    ) -> BoxFuture<'a, Result<Option<StreamPosition>, Error>>;

    /// The history after `since`; without `since`, only the position (epoch
    /// and top offset), creating the stream's epoch if it has none yet.
    fn history<'a>(
        &'a self,
        topic: &'a str,
        since: Option<&'a StreamPosition>,
        history: History,
    ) -> BoxFuture<'a, Result<HistoryState, Error>>;

    /// Adds a presence member (and announces the join).
    fn presence_join<'a>(
        &'a self,
        topic: &'a str,
        member: &'a Member,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Removes one (and announces the leave).
    fn presence_leave<'a>(
        &'a self,
        topic: &'a str,
        member: &'a Member,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// The members of a topic, across nodes.
    fn presence<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Vec<Member>, Error>>;
}

/// The publications after `since` in `entries` (oldest first), and whether
/// that is complete: the epoch matches and nothing in between was evicted.
pub(crate) fn after(
    epoch: &str,
    top: u64,
    oldest: Option<u64>,
    since: Option<&StreamPosition>,
) -> (u64, bool) {
    match since {
        None => (0, true),
        Some(pos) => {
            let same_epoch = pos.epoch == epoch;
            // Everything after pos.offset must still be there.
            let nothing_evicted = match oldest {
                Some(first) => first <= pos.offset.saturating_add(1),
                None => pos.offset == top,
            };
            (
                pos.offset,
                same_epoch && pos.offset <= top && nothing_evicted,
            )
        }
    }
}

pub(crate) fn new_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

pub(crate) fn notify(handler: &Option<Weak<dyn BrokerHandler>>, event: BrokerEvent) {
    if let Some(h) = handler.as_ref().and_then(Weak::upgrade) {
        h.on_event(event);
    }
}

/// Where a broker's events go: the handler given to [`Broker::attach`], if
/// any (and while it lives).
#[derive(Default)]
pub(crate) struct HandlerSlot(RwLock<Option<Weak<dyn BrokerHandler>>>);

impl HandlerSlot {
    /// Sets the handler ([`Broker::attach`]).
    pub(crate) fn attach(&self, handler: Weak<dyn BrokerHandler>) {
        *write(&self.0) = Some(handler);
    }

    /// The handler now, for [`notify`].
    pub(crate) fn get(&self) -> Option<Weak<dyn BrokerHandler>> {
        read(&self.0).clone()
    }

    /// Tells the handler, if there is one.
    pub(crate) fn notify(&self, event: BrokerEvent) {
        notify(&self.get(), event);
    }
}
