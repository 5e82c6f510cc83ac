//! The link task: reads the connection's pushes (channel messages, the
//! disconnection), reconnects with backoff and subscribes again, refreshes
//! presence, and tells the hub.

use std::sync::Weak;

use redis::{PushInfo, PushKind, RedisResult, Value};
use tokio::sync::mpsc;

use super::Inner;
use super::conn::open;
use crate::broker::{BrokerEvent, Member};
use crate::sync::{lock, write};

impl Inner {
    /// Refreshes this node's members so they do not expire.
    async fn refresh_presence(&self) {
        let members: Vec<(String, Member)> = lock(&self.members)
            .iter()
            .flat_map(|(t, m)| m.values().map(move |m| (t.clone(), m.clone())))
            .collect();
        for (topic, member) in members {
            if let Err(e) = self.join(&topic, &member).await {
                tracing::debug!(topic, error = %e, "presence refresh failed");
                return;
            }
        }
    }
}

/// Reads pushes; on a disconnection reconnects with backoff, subscribes
/// again, and tells the hub. Ends when the broker is dropped.
pub(super) async fn link_task(
    weak: Weak<Inner>,
    mut rx: mpsc::UnboundedReceiver<(u64, PushInfo)>,
    tx: mpsc::UnboundedSender<(u64, PushInfo)>,
) {
    let mut generation = 0u64;
    let refresh_every = match weak.upgrade() {
        Some(inner) => inner.config.link.presence_refresh(),
        None => return,
    };
    let mut refresh = tokio::time::interval(refresh_every);
    refresh.tick().await;
    loop {
        let (from, info) = tokio::select! {
            pushed = rx.recv() => match pushed {
                Some(p) => p,
                None => return,
            },
            _ = refresh.tick() => {
                let Some(inner) = weak.upgrade() else { return };
                inner.refresh_presence().await;
                continue;
            }
        };
        let Some(inner) = weak.upgrade() else {
            return;
        };
        if from != generation {
            continue; // from a connection already replaced
        }
        match info.kind {
            PushKind::Message | PushKind::SMessage => {
                let text = |v: Option<&Value>| match v {
                    Some(Value::BulkString(b)) => std::str::from_utf8(b).ok().map(str::to_owned),
                    Some(Value::SimpleString(s)) => Some(s.clone()),
                    _ => None,
                };
                let (Some(channel), Some(payload)) =
                    (text(info.data.first()), text(info.data.get(1)))
                else {
                    continue;
                };
                match inner.event(&channel, &payload) {
                    Some(event) => inner.handler.notify(event),
                    None => tracing::debug!(channel, "redis: unreadable channel message"),
                }
            }
            PushKind::Disconnection => {
                tracing::warn!("redis link lost; reconnecting");
                *write(&inner.conn) = None;
                inner.handler.notify(BrokerEvent::LinkDown);
                drop(inner);
                generation += 1;
                if !reconnect(&weak, generation, &tx).await {
                    return;
                }
                if let Some(inner) = weak.upgrade() {
                    tracing::info!("redis link back");
                    crate::metrics::broker_reconnected("redis");
                    inner.handler.notify(BrokerEvent::LinkUp);
                }
            }
            _ => {}
        }
    }
}

/// Reconnects until it works (or the broker is gone: `false`).
async fn reconnect(
    weak: &Weak<Inner>,
    generation: u64,
    tx: &mpsc::UnboundedSender<(u64, PushInfo)>,
) -> bool {
    let mut attempt = 0u32;
    loop {
        let (config, topics) = match weak.upgrade() {
            Some(inner) => (inner.config.clone(), lock(&inner.topics).clone()),
            None => return false,
        };
        let delay = config.link.backoff.delay(attempt);
        let jittered = delay.mul_f64(1.0 - rand::random::<f64>() * 0.3);
        tokio::time::sleep(jittered).await;
        attempt += 1;
        let result = async {
            let mut conn = open(&config, generation, tx.clone()).await?;
            let channels = match weak.upgrade() {
                Some(inner) => topics.iter().map(|t| inner.channel(t)).collect(),
                None => Vec::new(),
            };
            conn.subscribe(channels).await?;
            RedisResult::Ok(conn)
        }
        .await;
        match result {
            Ok(conn) => {
                let Some(inner) = weak.upgrade() else {
                    return false;
                };
                *write(&inner.conn) = Some(conn);
                // Topics added while reconnecting were refused to their
                // callers; the set is what the hub now holds.
                return true;
            }
            Err(e) => tracing::debug!(attempt, error = %e, "redis reconnect failed"),
        }
    }
}
