//! The topics of one node, in shards, and their dispatch: a publication is
//! framed once ([`Inner::prepare_push`]) and queued to each settled
//! subscriber ([`Session::push`]); a subscriber still being set up gets it
//! buffered instead. A topic whose last subscriber left lingers, then is
//! released at the broker.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use sockeye_proto::{Message, PreparedMessage};

use super::Inner;
use crate::broker::Publication;
use crate::metrics::Tally;
use crate::protocol;
use crate::session::Session;
use crate::sync::lock;
use crate::topic::Namespace;

pub(super) const SHARDS: usize = 16;

/// One shard of the topic map.
pub(super) type Shard = Mutex<HashMap<Arc<str>, Topic>>;

/// A topic's name, namespace and last dispatched position (epoch, offset).
pub(super) type TopicSnapshot = (Arc<str>, Arc<Namespace>, Option<(Arc<str>, u64)>);

/// A topic with subscribers on this node (or lingering after the last
/// left).
pub(super) struct Topic {
    pub(super) ns: Arc<Namespace>,
    pub(super) subs: HashMap<u64, Sub>,
    /// Whether the broker subscription is on; the async lock serialises
    /// subscribing and unsubscribing at the broker.
    pub(super) link: Arc<tokio::sync::Mutex<bool>>,
    /// Bumped whenever a subscriber comes or goes: a lingering release
    /// only proceeds if nothing changed.
    pub(super) generation: u64,
    /// The last publication dispatched (epoch, offset): duplicates are
    /// skipped, and recovery after a broker outage starts there.
    pub(super) last: Option<(Arc<str>, u64)>,
    /// During node-level recovery, live publications wait here.
    pub(super) recovering: Option<Vec<Publication>>,
}

impl Topic {
    pub(super) fn new(ns: Arc<Namespace>) -> Self {
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

/// One session's subscription to a topic.
pub(super) struct Sub {
    pub(super) session: Arc<Session>,
    /// While the subscription is being set up (broker subscription, history
    /// read), live publications wait here: the client gets its reply, the
    /// missed publications, then these, in order and without duplicates.
    /// (Boxed: it lives only during the setup, and the subscriber table
    /// holds one entry per subscriber, idle ones included.)
    pub(super) pending: Option<Box<Pending>>,
}

/// What arrived for a subscription while it was being set up.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) publications: Vec<Publication>,
    pub(super) overflow: bool,
}

impl Inner {
    pub(super) fn shard(&self, topic: &str) -> &Shard {
        let i = (self.hasher.hash_one(topic) as usize) % self.shards.len();
        &self.shards[i]
    }

    /// Frames a push once (compressed once when deflate is on).
    pub(super) fn prepare(&self, text: String) -> Option<PreparedMessage> {
        let message = Message::text(text);
        let prepared = match &self.deflate {
            Some(deflate) => deflate.prepare(message),
            None => PreparedMessage::new(message),
        };
        prepared.ok()
    }

    pub(super) fn prepare_push(
        &self,
        topic: &str,
        ns: &Namespace,
        p: &Publication,
    ) -> Option<PreparedMessage> {
        let offset = ns.history.is_some().then_some(p.offset);
        self.prepare(protocol::push(topic, offset, &p.data))
    }

    /// Sends a publication to a topic's subscribers (under the shard lock).
    pub(super) fn dispatch(&self, name: &Arc<str>, topic: &mut Topic, p: &Publication) {
        let Topic { ns, subs, last, .. } = topic;
        if ns.history.is_some() {
            if let Some((epoch, offset)) = last.as_ref() {
                if **epoch == *p.epoch && p.offset <= *offset {
                    return; // already dispatched
                }
                if **epoch != *p.epoch {
                    // The stream was recreated: positions in the old epoch
                    // are void, clients must resync.
                    for sub in subs.values().filter(|s| s.pending.is_none()) {
                        sub.session.lag(name);
                    }
                }
            }
            *last = Some((Arc::clone(&p.epoch), p.offset));
        }
        self.metrics.publication();
        let mut prepared: Option<Option<PreparedMessage>> = None;
        let policy = ns.slow_consumer;
        let mut tally = Tally::default();
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
                    .push_counted(message, Some(name), policy, &mut tally);
            }
        }
        self.metrics.add(tally);
    }

    /// Removes a session from a topic; the broker subscription lingers.
    pub(super) fn remove_sub(&self, name: &Arc<str>, session: &Session) {
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
    pub(super) fn topics(&self) -> Vec<TopicSnapshot> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            for (name, t) in lock(shard).iter() {
                all.push((Arc::clone(name), Arc::clone(&t.ns), t.last.clone()));
            }
        }
        all
    }

    /// Sends a control event to every settled subscriber of a topic.
    pub(super) fn event_all(topic: &Topic, text: &str) {
        for sub in topic.subs.values() {
            sub.session.control(text.to_owned());
        }
    }
}
