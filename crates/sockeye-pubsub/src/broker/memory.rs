//! The in-process broker: every publication goes straight to the local hub;
//! history is a ring per topic (size and TTL); presence a list per topic.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Instant;

use super::{
    BoxFuture, Broker, BrokerEvent, BrokerHandler, HistoryState, Member, Publication,
    PublishOptions, after, new_epoch, notify,
};
use crate::error::Error;
use crate::protocol::StreamPosition;
use crate::topic::History;

/// The default broker: one process, no network. Restarting the process
/// starts every stream in a new epoch, so clients never trust stale offsets.
#[derive(Default)]
pub struct MemoryBroker {
    handler: RwLock<Option<Weak<dyn BrokerHandler>>>,
    topics: Mutex<HashMap<Arc<str>, Log>>,
    presence: Mutex<HashMap<String, Vec<Member>>>,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker")
            .field("topics_with_history", &lock(&self.topics).len())
            .finish_non_exhaustive()
    }
}

struct Log {
    epoch: Arc<str>,
    top: u64,
    entries: VecDeque<(u64, Instant, Arc<str>)>,
}

impl Log {
    fn new() -> Self {
        Self {
            epoch: new_epoch().into(),
            top: 0,
            entries: VecDeque::new(),
        }
    }

    fn prune(&mut self, history: History, now: Instant) {
        while self.entries.len() > history.size {
            self.entries.pop_front();
        }
        while self
            .entries
            .front()
            .is_some_and(|(_, at, _)| now.duration_since(*at) > history.ttl)
        {
            self.entries.pop_front();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryBroker {
    /// A broker with no topics.
    pub fn new() -> Self {
        Self::default()
    }

    fn handler(&self) -> Option<Weak<dyn BrokerHandler>> {
        self.handler
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Broker for MemoryBroker {
    fn attach(&self, handler: Weak<dyn BrokerHandler>) {
        *self.handler.write().unwrap_or_else(|e| e.into_inner()) = Some(handler);
    }

    fn subscribe<'a>(&'a self, _topic: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }

    fn unsubscribe<'a>(&'a self, _topic: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }

    fn publish<'a>(
        &'a self,
        topic: &'a str,
        data: &'a str,
        options: PublishOptions,
    ) -> BoxFuture<'a, Result<Option<StreamPosition>, Error>> {
        Box::pin(async move {
            let data: Arc<str> = Arc::from(data);
            let handler = self.handler();
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
            let mut topics = lock(&self.topics);
            let key: Arc<str> = Arc::from(topic);
            let log = topics.entry(Arc::clone(&key)).or_insert_with(Log::new);
            log.top += 1;
            let now = Instant::now();
            log.entries.push_back((log.top, now, Arc::clone(&data)));
            log.prune(history, now);
            let position = StreamPosition {
                offset: log.top,
                epoch: log.epoch.to_string(),
            };
            notify(
                &handler,
                BrokerEvent::Publication {
                    topic: key,
                    publication: Publication {
                        offset: log.top,
                        epoch: Arc::clone(&log.epoch),
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
        Box::pin(async move {
            let mut topics = lock(&self.topics);
            let log = topics.entry(Arc::from(topic)).or_insert_with(Log::new);
            log.prune(history, Instant::now());
            let oldest = log.entries.front().map(|(o, ..)| *o);
            let (from, complete) = after(&log.epoch, log.top, oldest, since);
            let publications = if complete && since.is_some() {
                log.entries
                    .iter()
                    .filter(|(o, ..)| *o > from)
                    .map(|(o, _, d)| Publication {
                        offset: *o,
                        epoch: Arc::clone(&log.epoch),
                        data: Arc::clone(d),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Ok(HistoryState {
                epoch: log.epoch.to_string(),
                top: log.top,
                publications,
                complete,
            })
        })
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
            notify(
                &self.handler(),
                BrokerEvent::Join {
                    topic: Arc::from(topic),
                    member: member.clone(),
                },
            );
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
                    }
                }
            }
            notify(
                &self.handler(),
                BrokerEvent::Leave {
                    topic: Arc::from(topic),
                    member: member.clone(),
                },
            );
            Ok(())
        })
    }

    fn presence<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Vec<Member>, Error>> {
        Box::pin(async move { Ok(lock(&self.presence).get(topic).cloned().unwrap_or_default()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn history_and_recovery_rules() {
        let b = MemoryBroker::new();
        let h = History {
            size: 3,
            ttl: Duration::from_secs(60),
        };
        let opts = PublishOptions { history: Some(h) };
        let mut last = None;
        for i in 1..=5 {
            last = b.publish("t:x", &i.to_string(), opts).await.unwrap();
        }
        let top = last.unwrap();
        assert_eq!(top.offset, 5);
        // Since 3: 4 and 5 are still there.
        let since = StreamPosition {
            offset: 3,
            epoch: top.epoch.clone(),
        };
        let s = b.history("t:x", Some(&since), h).await.unwrap();
        assert!(s.complete);
        assert_eq!(
            s.publications.iter().map(|p| p.offset).collect::<Vec<_>>(),
            [4, 5]
        );
        // Since 1: 2 was evicted (size 3 keeps 3..=5): never a partial replay.
        let since = StreamPosition {
            offset: 1,
            epoch: top.epoch.clone(),
        };
        let s = b.history("t:x", Some(&since), h).await.unwrap();
        assert!(!s.complete && s.publications.is_empty());
        // Another epoch.
        let since = StreamPosition {
            offset: 4,
            epoch: "other".into(),
        };
        assert!(!b.history("t:x", Some(&since), h).await.unwrap().complete);
        // Up to date.
        let since = StreamPosition {
            offset: 5,
            epoch: top.epoch,
        };
        let s = b.history("t:x", Some(&since), h).await.unwrap();
        assert!(s.complete && s.publications.is_empty());
    }
}
