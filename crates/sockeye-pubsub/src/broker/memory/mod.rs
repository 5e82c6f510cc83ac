//! The in-process broker: every publication goes straight to the local hub;
//! history is a log per topic, bounded per topic (size, TTL), per namespace
//! and per hub ([`HistoryBudget`](crate::HistoryBudget)); presence a list
//! per topic.
//!
//! A topic costs nothing here once it has neither a subscriber nor retained
//! history: its log is removed, and a later publication starts it in a new
//! epoch (so an old `since` is answered with `recovered: false`).
//!
//! - this module: [`MemoryBroker`] and its [`Broker`] implementation
//!   (delivery and presence).
//! - `history`: the logs, the per-namespace ledgers, eviction and the TTL
//!   sweeper.
//! - `tests`: history and recovery rules, budgets, cleanup.

mod history;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use self::history::{State, namespace_of, shrink, sweep_loop};
use super::{
    BoxFuture, Broker, BrokerEvent, BrokerHandler, HandlerSlot, HistoryState, Member, Publication,
    PublishOptions, notify,
};
use crate::error::Error;
use crate::protocol::StreamPosition;
use crate::sync::lock;
use crate::topic::History;

/// What a [`MemoryBroker`] holds in history, and what it let go.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use sockeye_pubsub::MemoryBroker;
/// let broker = MemoryBroker::new();
/// let stats = broker.history_stats();
/// assert_eq!((stats.bytes, stats.topics, stats.entries), (0, 0, 0));
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryStats {
    /// Bytes charged to retained history (data plus 64 per publication).
    pub bytes: usize,
    /// Topics holding any history.
    pub topics: usize,
    /// Publications retained.
    pub entries: usize,
    /// Topics known to the broker at all (with history or subscribed).
    pub logs: usize,
    /// Publications evicted by a [`HistoryBudget`](crate::HistoryBudget) so
    /// far.
    pub evicted: u64,
    /// Publications dropped at their TTL so far.
    pub expired: u64,
    /// Publications dropped past their topic's history size so far.
    pub trimmed: u64,
}

/// The default broker: one process, no network. Restarting the process
/// starts every stream in a new epoch, so clients never trust stale offsets.
#[derive(Default)]
pub struct MemoryBroker {
    handler: HandlerSlot,
    state: Arc<Mutex<State>>,
    presence: Mutex<HashMap<String, Vec<Member>>>,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker")
            .field("history", &self.history_stats())
            .finish_non_exhaustive()
    }
}

impl MemoryBroker {
    /// A broker with no topics.
    pub fn new() -> Self {
        Self::default()
    }

    /// What history holds now, and what was evicted or expired so far.
    pub fn history_stats(&self) -> HistoryStats {
        lock(&self.state).stats()
    }

    /// Starts the TTL sweeper if history is kept and it is not running.
    fn start_sweeper(&self, state: &mut State) {
        if state.sweeping {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            state.sweeping = true;
            runtime.spawn(sweep_loop(Arc::downgrade(&self.state)));
        }
    }
}

impl Broker for MemoryBroker {
    fn attach(&self, handler: Weak<dyn BrokerHandler>) {
        self.handler.attach(handler);
    }

    fn subscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            lock(&self.state).subscribe(topic);
            Ok(())
        })
    }

    fn unsubscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            lock(&self.state).unsubscribe(topic);
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
            let data: Arc<str> = Arc::from(data);
            let handler = self.handler.get();
            let Some(history) = options.history else {
                notify(
                    &handler,
                    BrokerEvent::Publication {
                        topic: Arc::from(topic),
                        publication: Publication {
                            offset: 0,
                            epoch: Arc::from(""),
                            data,
                        },
                    },
                );
                return Ok(None);
            };
            // The lock orders offsets and deliveries alike.
            let mut state = lock(&self.state);
            let now = Instant::now();
            let (key, offset, epoch) = state.push(topic, Arc::clone(&data), history, now);
            state.prune(topic, history, now);
            state.enforce(
                namespace_of(topic),
                options.namespace_budget,
                options.budget,
            );
            if state.entries > 0 {
                self.start_sweeper(&mut state);
            }
            let position = StreamPosition {
                offset,
                epoch: epoch.to_string(),
            };
            notify(
                &handler,
                BrokerEvent::Publication {
                    topic: key,
                    publication: Publication {
                        offset,
                        epoch,
                        data,
                    },
                },
            );
            Ok(Some(position))
        })
    }

    fn history<'a>(
        &'a self,
        topic: &'a str,
        since: Option<&'a StreamPosition>,
        history: History,
    ) -> BoxFuture<'a, Result<HistoryState, Error>> {
        Box::pin(async move { Ok(lock(&self.state).history(topic, since, history)) })
    }

    fn presence_join<'a>(
        &'a self,
        topic: &'a str,
        member: &'a Member,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            {
                let mut presence = lock(&self.presence);
                let members = presence.entry(topic.to_owned()).or_default();
                if !members.contains(member) {
                    members.push(member.clone());
                }
            }
            self.handler.notify(BrokerEvent::Join {
                topic: Arc::from(topic),
                member: member.clone(),
            });
            Ok(())
        })
    }

    fn presence_leave<'a>(
        &'a self,
        topic: &'a str,
        member: &'a Member,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            {
                let mut presence = lock(&self.presence);
                if let Some(members) = presence.get_mut(topic) {
                    members.retain(|m| m != member);
                    if members.is_empty() {
                        presence.remove(topic);
                        shrink(&mut presence);
                    }
                }
            }
            self.handler.notify(BrokerEvent::Leave {
                topic: Arc::from(topic),
                member: member.clone(),
            });
            Ok(())
        })
    }

    fn presence<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Vec<Member>, Error>> {
        Box::pin(async move { Ok(lock(&self.presence).get(topic).cloned().unwrap_or_default()) })
    }
}
