//! Names and payloads: topic `T` under prefix `P` is channel `P:{T}` and
//! keys `P:{T}:<suffix>`; a channel message is a publication, a join or a
//! leave (see [`RedisBroker`](super::RedisBroker)).

use std::sync::Arc;

use super::{Inner, RedisMode};
use crate::broker::{BrokerEvent, Publication};

impl Inner {
    pub(super) fn channel(&self, topic: &str) -> String {
        format!("{}:{{{topic}}}", self.config.link.prefix)
    }

    pub(super) fn key(&self, topic: &str, suffix: &str) -> String {
        format!("{}:{{{topic}}}:{suffix}", self.config.link.prefix)
    }

    pub(super) fn publish_command(&self) -> &'static str {
        match self.config.mode {
            RedisMode::Standalone => "PUBLISH",
            RedisMode::Sharded => "SPUBLISH",
        }
    }

    fn topic_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(self.config.link.prefix.as_str())?
            .strip_prefix(":{")?
            .strip_suffix('}')
    }

    /// A message from a channel, as an event.
    pub(super) fn event(&self, channel: &str, payload: &str) -> Option<BrokerEvent> {
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
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::sync::{Mutex, RwLock};

    use super::*;
    use crate::broker::HandlerSlot;
    use crate::broker::redis::RedisBroker;
    use crate::broker::redis::scripts::Scripts;

    #[test]
    fn channel_payloads_parse() {
        let inner = Inner {
            config: RedisBroker::builder("redis://127.0.0.1"),
            conn: RwLock::new(None),
            topics: Mutex::new(HashSet::new()),
            handler: HandlerSlot::default(),
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
