//! [`RedisBrokerBuilder`]: the options, checked, and the first connection.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;

use super::conn::open;
use super::link::link_task;
use super::scripts::Scripts;
use super::{Inner, RedisBroker, RedisMode, broker_error};
use crate::broker::HandlerSlot;
use crate::broker::options::LinkOptions;
use crate::error::Error;

/// Configures a [`RedisBroker`].
#[derive(Clone)]
#[must_use]
pub struct RedisBrokerBuilder {
    pub(super) urls: Vec<String>,
    pub(super) mode: RedisMode,
    /// Prefix, presence TTL, timeouts, backoff.
    pub(super) link: LinkOptions,
}

impl RedisBrokerBuilder {
    /// The defaults, for the server at `url`.
    pub(super) fn new(url: String) -> Self {
        Self {
            urls: vec![url],
            mode: RedisMode::Standalone,
            link: LinkOptions::default(),
        }
    }

    /// How to use Redis (default [`RedisMode::Standalone`]).
    pub fn mode(mut self, mode: RedisMode) -> Self {
        self.mode = mode;
        self
    }

    /// Another cluster node to start from (sharded mode).
    pub fn node(mut self, url: impl Into<String>) -> Self {
        self.urls.push(url.into());
        self
    }

    /// The prefix of keys and channels (default `sockeye`); no `{` or `}`.
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

    /// Connection timeout (default 5 s) and response timeout (default 5 s).
    pub fn timeouts(mut self, connect: Duration, response: Duration) -> Self {
        self.link.set_timeouts(connect, response);
        self
    }

    /// Reconnect delays: from `min` doubling up to `max` (default 100 ms to
    /// 5 s), jittered.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.link.set_backoff(min, max);
        self
    }

    /// Connects; fails if Redis cannot be reached now.
    pub async fn connect(self) -> Result<RedisBroker, Error> {
        if self.link.prefix.contains(['{', '}']) {
            return Err(Error::Broker(
                "the key prefix may not contain braces".into(),
            ));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = open(&self, 0, tx.clone()).await.map_err(broker_error)?;
        let inner = Arc::new(Inner {
            config: self,
            conn: RwLock::new(Some(conn)),
            topics: Mutex::new(HashSet::new()),
            handler: HandlerSlot::default(),
            members: Mutex::new(HashMap::new()),
            scripts: Scripts::new(),
        });
        tokio::spawn(link_task(Arc::downgrade(&inner), rx, tx));
        Ok(RedisBroker { inner })
    }
}

// The fields as they always printed: the shared ones are not nested.
impl fmt::Debug for RedisBrokerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let link = &self.link;
        f.debug_struct("RedisBrokerBuilder")
            .field("urls", &self.urls)
            .field("mode", &self.mode)
            .field("prefix", &link.prefix)
            .field("presence_ttl", &link.presence_ttl)
            .field("connect_timeout", &link.connect_timeout)
            .field("response_timeout", &link.response_timeout)
            .field("backoff", &link.backoff)
            .finish()
    }
}
