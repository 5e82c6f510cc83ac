//! A subscription's life: set up at the broker (one broker subscription
//! per topic per node), recovered from history when the client gives
//! `since`, answered, then fed; and torn down on unsubscribe or close, with
//! presence joins and leaves.

use std::sync::Arc;

use super::topics::{Sub, Topic};
use super::{Hub, Inner};
use crate::authorizer::Action;
use crate::broker::{HistoryState, Publication};
use crate::error::{Error, ErrorCode};
use crate::metrics::Tally;
use crate::protocol::{self, StreamPosition, position_json};
use crate::session::Session;
use crate::sync::lock;
use crate::topic::Namespace;

/// Who asked for a subscription.
#[derive(Clone, Copy)]
pub(super) enum Requester {
    /// A client command with this id: it gets a reply.
    Client(u64),
    /// The server ([`SessionHandle::subscribe`](super::SessionHandle::subscribe)):
    /// the client gets a
    /// `subscribed` event.
    Server,
}

impl Hub {
    pub(crate) async fn subscribe_session(
        &self,
        session: &Arc<Session>,
        topic: &str,
        since: Option<StreamPosition>,
    ) -> Result<(), Error> {
        self.subscribe_as(session, Requester::Server, topic, since)
            .await
    }

    pub(super) async fn subscribe_as(
        &self,
        session: &Arc<Session>,
        requester: Requester,
        topic: &str,
        since: Option<StreamPosition>,
    ) -> Result<(), Error> {
        let inner = &self.inner;
        let ns = inner.namespace(topic)?;
        if let Requester::Client(_) = requester {
            inner
                .authorize(session, topic, Action::Subscribe, None)
                .await?;
        }
        let again = session.subscribed(topic);
        if !again && session.subscription_count() >= inner.max_subscriptions {
            return Err(Error::refused(
                ErrorCode::LimitExceeded,
                "too many subscriptions",
            ));
        }
        let (name, link) = {
            let mut shard = lock(inner.shard(topic));
            // The topic's name is allocated once, by its first subscriber;
            // the others share it.
            let (name, local) = match shard.get_key_value(topic) {
                Some((name, t)) => (Arc::clone(name), t.subs.len()),
                None => (Arc::from(topic), 0),
            };
            if !again && ns.max_subscribers.is_some_and(|max| local >= max) {
                return Err(Error::refused(ErrorCode::LimitExceeded, "topic is full"));
            }
            let t = shard
                .entry(Arc::clone(&name))
                .or_insert_with(|| Topic::new(Arc::clone(&ns)));
            t.subs
                .entry(session.id)
                .or_insert_with(|| Sub {
                    session: Arc::clone(session),
                    pending: None,
                })
                .pending = Some(Box::default());
            t.generation += 1;
            (name, Arc::clone(&t.link))
        };
        session.add_subscription(Arc::clone(&name), Arc::clone(&ns));
        let prepared = async {
            let mut subscribed = link.lock().await;
            if !*subscribed {
                inner.broker.subscribe(topic).await?;
                *subscribed = true;
            }
            drop(subscribed);
            match ns.history {
                Some(history) => inner
                    .broker
                    .history(topic, since.as_ref(), history)
                    .await
                    .map(Some),
                None => Ok(None),
            }
        };
        let state = match prepared.await {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(topic, error = %e, "subscribe failed at the broker");
                session.remove_subscription(topic);
                inner.remove_sub(&name, session);
                return Err(e);
            }
        };
        inner.finish_subscribe(&name, session, requester, since.as_ref(), state);
        if ns.presence
            && !again
            && let Err(e) = inner.broker.presence_join(topic, &session.member).await
        {
            tracing::warn!(topic, error = %e, "presence join failed");
        }
        Ok(())
    }

    pub(crate) async fn unsubscribe_session(
        &self,
        session: &Arc<Session>,
        topic: &str,
    ) -> Result<(), Error> {
        let ns = self.inner.namespace(topic)?;
        if !session.remove_subscription(topic) {
            return Err(Error::refused(ErrorCode::BadRequest, "not subscribed"));
        }
        self.inner.leave(session, &Arc::from(topic), &ns).await;
        Ok(())
    }
}

impl Inner {
    /// Ends a subscription's setup: reply (or `subscribed` event), the
    /// recovered publications, then those that arrived meanwhile.
    fn finish_subscribe(
        &self,
        name: &Arc<str>,
        session: &Arc<Session>,
        requester: Requester,
        since: Option<&StreamPosition>,
        state: Option<HistoryState>,
    ) {
        let mut shard = lock(self.shard(name));
        let Some(topic) = shard.get_mut(name) else {
            return;
        };
        let Some(pending) = topic
            .subs
            .get_mut(&session.id)
            .and_then(|s| s.pending.take())
        else {
            return;
        };
        session.clear_lag(name);
        let ns = Arc::clone(&topic.ns);
        let ok = match &state {
            Some(s) => {
                let position = StreamPosition {
                    offset: s.top,
                    epoch: s.epoch.clone(),
                };
                position_json(Some(&position), since.map(|_| s.complete))
            }
            None => "{}".to_owned(),
        };
        match requester {
            Requester::Client(id) => session.control(protocol::reply_ok(id, &ok)),
            Requester::Server => {
                let extra = format!("\"position\":{ok}");
                session.control(protocol::event(name, "subscribed", &extra));
            }
        }
        let mut tally = Tally::default();
        let mut push = |p: &Publication| {
            if let Some(m) = self.prepare_push(name, &ns, p) {
                session.push_counted(&m, Some(name), ns.slow_consumer, &mut tally);
            }
        };
        match state {
            None => pending.publications.iter().for_each(&mut push),
            Some(s) => {
                if topic.last.is_none() {
                    topic.last = Some((Arc::from(s.epoch.as_str()), s.top));
                }
                if since.is_some() && s.complete {
                    s.publications.iter().for_each(&mut push);
                }
                pending
                    .publications
                    .iter()
                    .filter(|p| *p.epoch != *s.epoch || p.offset > s.top)
                    .for_each(&mut push);
            }
        }
        self.metrics.add(tally);
        if pending.overflow {
            session.lag(name);
        }
    }

    /// A session leaves a topic (unsubscribe or close).
    pub(super) async fn leave(&self, session: &Session, name: &Arc<str>, ns: &Namespace) {
        self.remove_sub(name, session);
        if ns.presence
            && let Err(e) = self.broker.presence_leave(name, &session.member).await
        {
            tracing::warn!(topic = &**name, error = %e, "presence leave failed");
        }
    }
}
