//! Presence without a server that keeps it: each node announces its own
//! members on the topic's subject and again every third of their TTL,
//! remembers the others' until they expire, and asks when it does not
//! subscribe.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;

use super::{Inner, nats};
use crate::broker::{BrokerEvent, Member};
use crate::error::Error;
use crate::sync::lock;

impl Inner {
    /// This node's members of `topic`, as an `r` payload.
    pub(super) fn members_payload(&self, topic: &str) -> Option<String> {
        let local = lock(&self.local);
        let members: Vec<&Member> = local.get(topic)?.values().collect();
        serde_json::to_string(&members)
            .ok()
            .map(|json| format!("r {json}"))
    }

    /// Remembers another node's member until its TTL.
    pub(super) fn heard(&self, topic: &str, member: Member) {
        let expires = Instant::now() + self.config.link.presence_ttl;
        lock(&self.remote)
            .entry(topic.to_owned())
            .or_default()
            .insert(member.id.clone(), (member, expires));
    }

    /// Forgets another node's member; whether it was known.
    pub(super) fn forget(&self, topic: &str, id: &str) -> bool {
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

    /// Announces this node's members again (so they do not expire
    /// elsewhere) and lets expired ones from other nodes go.
    pub(super) async fn refresh_presence(&self) {
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
            self.handler.notify(BrokerEvent::Leave { topic, member });
        }
    }

    /// Every node's members of a topic this node does not subscribe to:
    /// asks them and collects the answers for a moment.
    pub(super) async fn gather(&self, topic: &str) -> Result<Vec<Member>, Error> {
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
