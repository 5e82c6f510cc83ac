//! [`NatsBrokerBuilder`]: the options, checked, and the connection.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::ConnectOptions;
use tokio::sync::mpsc;

use super::link::{link_task, ping_task};
use super::{Inner, NatsBroker, nats};
use crate::broker::HandlerSlot;
use crate::broker::options::LinkOptions;
use crate::error::Error;

/// Configures a [`NatsBroker`].
#[derive(Clone)]
#[must_use]
pub struct NatsBrokerBuilder {
    pub(super) url: String,
    /// Prefix, presence TTL, timeouts, backoff.
    pub(super) link: LinkOptions,
    subscription_capacity: usize,
}

impl NatsBrokerBuilder {
    /// The defaults, for the server at `url`.
    pub(super) fn new(url: String) -> Self {
        Self {
            url,
            link: LinkOptions::default(),
            subscription_capacity: 65_536,
        }
    }

    /// The first token of every subject (default `sockeye`): letters,
    /// digits, `_` and `-` only.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.link.set_prefix(prefix.into());
        self
    }

    /// How long a member stays listed without its node refreshing it
    /// (default 60 s; refreshed every third of it), so the members of a
    /// crashed node expire.
    pub fn presence_ttl(mut self, ttl: Duration) -> Self {
        self.link.set_presence_ttl(ttl);
        self
    }

    /// Connection timeout (default 5 s) and the time a subscription waits
    /// for the server to confirm it (default 5 s).
    pub fn timeouts(mut self, connect: Duration, response: Duration) -> Self {
        self.link.set_timeouts(connect, response);
        self
    }

    /// Messages buffered per topic between the NATS connection and the hub
    /// (default 65,536). Beyond it the client drops messages and the hub
    /// tells the topics' subscribers they lagged.
    pub fn subscription_capacity(mut self, messages: usize) -> Self {
        self.subscription_capacity = messages.max(1);
        self
    }

    /// Reconnect delays: from `min` doubling up to `max` (default 100 ms to
    /// 5 s).
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.link.set_backoff(min, max);
        self
    }

    /// Connects; fails if NATS cannot be reached now. Afterwards the client
    /// reconnects on its own, for ever.
    pub async fn connect(self) -> Result<NatsBroker, Error> {
        let prefix = &self.link.prefix;
        let valid = !prefix.is_empty()
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(Error::Broker(format!(
                "nats: the subject prefix {prefix:?} may only hold letters, digits, _ and -"
            )));
        }
        let (events, events_rx) = mpsc::unbounded_channel();
        let backoff = self.link.backoff;
        let client = ConnectOptions::new()
            .connection_timeout(self.link.connect_timeout)
            .subscription_capacity(self.subscription_capacity)
            .max_reconnects(None)
            .reconnect_delay_callback(move |attempts| {
                backoff.delay(u32::try_from(attempts).unwrap_or(u32::MAX))
            })
            .event_callback(move |event| {
                let _ = events.send(event);
                std::future::ready(())
            })
            .connect(self.url.as_str())
            .await
            .map_err(|e| Error::Broker(format!("nats: {e}")))?;
        // Round trips go to this node's own subject and come back.
        let ping = format!("{}.ping.{}", self.link.prefix, client.new_inbox());
        let pings = client.subscribe(ping.clone()).await.map_err(nats)?;
        let inner = Arc::new(Inner {
            config: self,
            client,
            ping,
            topics: Mutex::new(HashMap::new()),
            handler: HandlerSlot::default(),
            local: Mutex::new(HashMap::new()),
            remote: Mutex::new(HashMap::new()),
            pings: Mutex::new(HashMap::new()),
            next_ping: AtomicU64::new(0),
        });
        tokio::spawn(ping_task(Arc::downgrade(&inner), pings));
        tokio::spawn(link_task(Arc::downgrade(&inner), events_rx));
        Ok(NatsBroker { inner })
    }
}

// The fields as they always printed: the shared ones are not nested.
impl fmt::Debug for NatsBrokerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let link = &self.link;
        f.debug_struct("NatsBrokerBuilder")
            .field("url", &self.url)
            .field("prefix", &link.prefix)
            .field("presence_ttl", &link.presence_ttl)
            .field("connect_timeout", &link.connect_timeout)
            .field("response_timeout", &link.response_timeout)
            .field("subscription_capacity", &self.subscription_capacity)
            .field("backoff", &link.backoff)
            .finish()
    }
}
