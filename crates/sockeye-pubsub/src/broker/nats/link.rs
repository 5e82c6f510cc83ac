//! The connection: the client's events as the hub's (link down and up,
//! lagged topics), presence refreshed on a timer, and round trips that
//! confirm the server has seen what was sent.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use async_nats::Event;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use super::{Inner, nats};
use crate::broker::BrokerEvent;
use crate::error::Error;
use crate::sync::lock;

impl Inner {
    /// Returns once the server has handled every command sent before: our
    /// own message comes back after them, as one connection is in order.
    pub(super) async fn round_trip(&self) -> Result<(), Error> {
        let id = self.next_ping.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pings).insert(id, tx);
        let sent = async {
            self.send(self.ping.clone(), id.to_string()).await?;
            self.client.flush().await.map_err(nats)
        }
        .await;
        let echoed = match sent {
            Ok(()) => tokio::time::timeout(self.config.link.response_timeout, rx)
                .await
                .map_err(|_| Error::Broker("nats: no answer from the server".into()))
                .map(drop),
            Err(e) => Err(e),
        };
        lock(&self.pings).remove(&id);
        echoed
    }
}

/// Completes the round trips whose message came back.
pub(super) async fn ping_task(weak: Weak<Inner>, mut pings: async_nats::Subscriber) {
    while let Some(message) = pings.next().await {
        let Some(inner) = weak.upgrade() else { return };
        let id = std::str::from_utf8(&message.payload)
            .ok()
            .and_then(|id| id.parse::<u64>().ok());
        if let Some(tx) = id.and_then(|id| lock(&inner.pings).remove(&id)) {
            let _ = tx.send(());
        }
    }
}

/// Turns the client's connection events into the hub's, and refreshes
/// presence. Ends when the broker is dropped.
pub(super) async fn link_task(weak: Weak<Inner>, mut events: mpsc::UnboundedReceiver<Event>) {
    let refresh_every = match weak.upgrade() {
        Some(inner) => inner.config.link.presence_refresh(),
        None => return,
    };
    let mut refresh = tokio::time::interval(refresh_every);
    refresh.tick().await;
    let mut down = false;
    loop {
        let event = tokio::select! {
            event = events.recv() => match event {
                Some(event) => event,
                None => return,
            },
            _ = refresh.tick() => {
                let Some(inner) = weak.upgrade() else { return };
                inner.refresh_presence().await;
                continue;
            }
        };
        let Some(inner) = weak.upgrade() else { return };
        match event {
            Event::Disconnected if !down => {
                down = true;
                tracing::warn!("nats link lost; reconnecting");
                inner.handler.notify(BrokerEvent::LinkDown);
            }
            Event::Connected if down => {
                // The client subscribed again before it reports this.
                down = false;
                tracing::info!("nats link back");
                crate::metrics::broker_reconnected("nats");
                inner.handler.notify(BrokerEvent::LinkUp);
                inner.refresh_presence().await;
            }
            Event::SlowConsumer(_) => {
                // The client dropped messages of one subscription and does
                // not say which topic: every topic may have lost some.
                tracing::warn!("nats: the client dropped messages (slow consumer)");
                let topics: Vec<String> = lock(&inner.topics).keys().cloned().collect();
                for topic in topics {
                    let topic = Arc::from(topic);
                    inner.handler.notify(BrokerEvent::Lagged { topic });
                }
            }
            Event::ServerError(e) => tracing::warn!(error = %e, "nats server error"),
            Event::ClientError(e) => tracing::warn!(error = %e, "nats client error"),
            _ => {}
        }
    }
}
