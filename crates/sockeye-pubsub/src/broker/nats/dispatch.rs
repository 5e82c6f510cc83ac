//! The messages on a topic's subject: `p` a publication, `j`/`l` a join or
//! leave, `r` a node's members, `s` a request for them (see
//! [`NatsBroker`](super::NatsBroker)).

use std::sync::Arc;

use super::Inner;
use crate::broker::{BrokerEvent, Member, Publication};

impl Inner {
    /// One message on a topic's subject.
    pub(super) async fn on_message(&self, topic: &Arc<str>, message: async_nats::Message) {
        let Ok(payload) = std::str::from_utf8(&message.payload) else {
            tracing::debug!(topic = &**topic, "nats: unreadable message");
            return;
        };
        let (kind, rest) = payload.split_once(' ').unwrap_or((payload, ""));
        let event = match kind {
            "p" => BrokerEvent::Publication {
                topic: Arc::clone(topic),
                publication: Publication {
                    offset: 0,
                    epoch: Arc::from(""),
                    data: Arc::from(rest),
                },
            },
            "j" | "l" => {
                let Ok(member) = serde_json::from_str::<Member>(rest) else {
                    return;
                };
                if kind == "j" {
                    self.heard(topic, member.clone());
                    BrokerEvent::Join {
                        topic: Arc::clone(topic),
                        member,
                    }
                } else {
                    self.forget(topic, &member.id);
                    BrokerEvent::Leave {
                        topic: Arc::clone(topic),
                        member,
                    }
                }
            }
            "r" => {
                for member in serde_json::from_str::<Vec<Member>>(rest).unwrap_or_default() {
                    self.heard(topic, member);
                }
                return;
            }
            "s" => {
                if let Some(payload) = self.members_payload(topic) {
                    let to = message
                        .reply
                        .map_or_else(|| self.subject(topic), |r| r.to_string());
                    if let Err(e) = self.send(to, payload).await {
                        tracing::debug!(topic = &**topic, error = %e, "nats: presence answer failed");
                    }
                }
                return;
            }
            _ => {
                tracing::debug!(topic = &**topic, kind, "nats: unknown message kind");
                return;
            }
        };
        self.handler.notify(event);
    }
}
