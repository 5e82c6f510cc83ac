//! What the broker reports to the hub ([`BrokerHandler::on_event`]): a
//! publication goes to [`Inner::dispatch`], a join or leave to the settled
//! subscribers, and a link that comes back starts the recovery of what this
//! node missed meanwhile.

use std::sync::Arc;

use super::Inner;
use crate::broker::{BrokerEvent, BrokerHandler, Member};
use crate::metrics::Tally;
use crate::protocol::{self, StreamPosition};
use crate::sync::lock;

impl Inner {
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
            // The stream was recreated meanwhile (a broker restarted
            // without persistence): what this node missed of the old epoch
            // is lost, but what the new one holds already (publications
            // acknowledged before this node was back) still reaches the
            // subscribers, from its start.
            let fresh = match (&fetched, &since) {
                (Ok(state), Some(since)) if state.epoch != since.epoch && state.top > 0 => {
                    let start = StreamPosition {
                        offset: 0,
                        epoch: state.epoch.clone(),
                    };
                    match self.broker.history(&name, Some(&start), history).await {
                        Ok(fresh) if fresh.epoch == state.epoch => fresh.publications,
                        Ok(_) => Vec::new(),
                        Err(e) => {
                            tracing::warn!(topic = &*name, error = %e, "reading the new epoch after a broker outage failed");
                            Vec::new()
                        }
                    }
                }
                _ => Vec::new(),
            };
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
                    // Subscribers learn of the gap before what follows it.
                    for sub in topic.subs.values() {
                        sub.session.lag(&name);
                    }
                    if fresh.is_empty() {
                        topic.last = Some((Arc::from(state.epoch.as_str()), state.top));
                    } else {
                        topic.last = Some((Arc::from(state.epoch.as_str()), 0));
                        for p in &fresh {
                            self.dispatch(&name, topic, p);
                        }
                    }
                    false
                }
                Err(e) => {
                    tracing::warn!(topic = &*name, error = %e, "recovery after a broker outage failed");
                    for sub in topic.subs.values() {
                        sub.session.lag(&name);
                    }
                    false
                }
            };
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
        let mut tally = Tally::default();
        for sub in topic.subs.values().filter(|s| s.pending.is_none()) {
            sub.session
                .push_counted(&message, None, topic.ns.slow_consumer, &mut tally);
        }
        self.metrics.add(tally);
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
                tracing::warn!("broker link down");
                for shard in self.shards.iter() {
                    for (name, t) in lock(shard).iter() {
                        Self::event_all(t, &protocol::event(name, "link_down", ""));
                    }
                }
            }
            BrokerEvent::LinkUp => {
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
                        sub.session.lag(&topic);
                    }
                }
            }
        }
    }
}
