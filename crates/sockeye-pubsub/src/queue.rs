//! One socket's outgoing queue: bounded in messages and bytes, with the
//! namespace's slow-consumer policy applied when a push does not fit.
//!
//! Two kinds of items share the queue and keep their order:
//! - pushes (publications, join/leave, direct sends): they count against the
//!   limits and may be dropped by a policy;
//! - control items (command replies, `lag`, `link_*`, `unsubscribed`): they
//!   are never dropped, so a client always learns what happened. Their
//!   number is bounded by the command rate limit; a queue that still grows
//!   past twice its limits (a client that sends commands and never reads)
//!   is closed like a slow consumer.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use sockeye_proto::PreparedMessage;

use crate::protocol;
use crate::topic::SlowConsumer;

/// The limits of a socket's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QueueLimits {
    pub(crate) messages: usize,
    pub(crate) bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            messages: 1024,
            bytes: 1 << 20,
        }
    }
}

pub(crate) struct Item {
    pub(crate) message: PreparedMessage,
    /// The topic of a push (for keep-latest and lag); `None` for control
    /// items and direct sends.
    topic: Option<Arc<str>>,
    control: bool,
}

impl Item {
    fn bytes(&self) -> usize {
        self.message.frame().len()
    }
}

/// What a push did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PushOutcome {
    /// Pushes dropped to apply the policy (the new one or older ones).
    pub(crate) dropped: u64,
    /// The queue is over its limits and the policy says disconnect.
    pub(crate) disconnect: bool,
}

pub(crate) struct Queue {
    items: VecDeque<Item>,
    limits: QueueLimits,
    /// Pushes queued, and their bytes (what the limits apply to).
    pushes: usize,
    push_bytes: usize,
    /// All bytes queued (pushes and control items).
    total_bytes: usize,
    /// Topics that got a `lag` event since the client last (re)subscribed.
    lagged: HashSet<Arc<str>>,
}

impl Queue {
    pub(crate) fn new(limits: QueueLimits) -> Self {
        Self {
            items: VecDeque::new(),
            limits,
            pushes: 0,
            push_bytes: 0,
            total_bytes: 0,
            lagged: HashSet::new(),
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        self.total_bytes
    }

    fn fits(&self, bytes: usize) -> bool {
        self.pushes < self.limits.messages && self.push_bytes + bytes <= self.limits.bytes
    }

    /// Past twice the limits counting control items too: the hard bound.
    fn overflowing(&self) -> bool {
        self.items.len() > 2 * self.limits.messages || self.total_bytes > 2 * self.limits.bytes
    }

    fn enqueue(&mut self, item: Item) {
        let bytes = item.bytes();
        self.total_bytes += bytes;
        if !item.control {
            self.pushes += 1;
            self.push_bytes += bytes;
        }
        self.items.push_back(item);
    }

    fn account_removed(&mut self, item: &Item) {
        let bytes = item.bytes();
        self.total_bytes -= bytes;
        if !item.control {
            self.pushes -= 1;
            self.push_bytes -= bytes;
        }
    }

    /// Queues a control item (never dropped). `false` when the queue is past
    /// its hard bound: the socket must be closed.
    pub(crate) fn control(&mut self, message: PreparedMessage) -> bool {
        self.enqueue(Item {
            message,
            topic: None,
            control: true,
        });
        !self.overflowing()
    }

    /// Queues a push under `policy`.
    pub(crate) fn push(
        &mut self,
        message: PreparedMessage,
        topic: Option<&Arc<str>>,
        policy: SlowConsumer,
    ) -> PushOutcome {
        let item = Item {
            message,
            topic: topic.map(Arc::clone),
            control: false,
        };
        let bytes = item.bytes();
        let mut outcome = PushOutcome::default();
        if self.fits(bytes) {
            self.enqueue(item);
            return outcome;
        }
        match policy {
            SlowConsumer::Disconnect => {
                outcome.disconnect = true;
                return outcome;
            }
            SlowConsumer::DropNewest => {
                outcome.dropped = 1;
                if let Some(t) = topic {
                    self.lag(t);
                }
            }
            SlowConsumer::KeepLatest | SlowConsumer::DropOldest => {
                let mut dropped_topics: Vec<Arc<str>> = Vec::new();
                // Keep-latest first drops the topic's queued pushes; both
                // then drop the oldest pushes until the new one fits.
                if policy == SlowConsumer::KeepLatest
                    && let Some(t) = topic
                {
                    let n = self.remove_pushes(|i| i.topic.as_ref() == Some(t));
                    if n > 0 {
                        outcome.dropped += n;
                        dropped_topics.push(Arc::clone(t));
                    }
                }
                while !self.fits(bytes) {
                    let Some(pos) = self.items.iter().position(|i| !i.control) else {
                        break;
                    };
                    if let Some(old) = self.items.remove(pos) {
                        self.account_removed(&old);
                        outcome.dropped += 1;
                        dropped_topics.extend(old.topic);
                    }
                }
                if self.fits(bytes) {
                    self.enqueue(item);
                } else {
                    // Larger than the whole byte limit on its own.
                    outcome.dropped += 1;
                    dropped_topics.extend(topic.map(Arc::clone));
                }
                for name in &dropped_topics {
                    self.lag(name);
                }
            }
        }
        outcome.disconnect = self.overflowing();
        outcome
    }

    /// Removes the pushes matching `f`; returns how many.
    fn remove_pushes(&mut self, f: impl Fn(&Item) -> bool) -> u64 {
        let mut removed = 0;
        let mut kept = VecDeque::with_capacity(self.items.len());
        for item in self.items.drain(..) {
            if !item.control && f(&item) {
                removed += 1;
                self.total_bytes -= item.bytes();
                self.pushes -= 1;
                self.push_bytes -= item.bytes();
            } else {
                kept.push_back(item);
            }
        }
        self.items = kept;
        removed
    }

    /// Sends one `lag` event for the topic (once until the client
    /// subscribes again), with or without history: without it there is
    /// nothing to recover, but the client still learns that it missed
    /// publications instead of missing them silently.
    pub(crate) fn lag(&mut self, topic: &Arc<str>) {
        if self.lagged.insert(Arc::clone(topic)) {
            let text = protocol::event(topic, "lag", "");
            if let Ok(message) = PreparedMessage::new(sockeye_proto::Message::text(text)) {
                self.enqueue(Item {
                    message,
                    topic: None,
                    control: true,
                });
            }
        }
    }

    /// The client subscribed again: a new drop may send a new `lag`.
    pub(crate) fn clear_lag(&mut self, topic: &str) {
        self.lagged.remove(topic);
    }

    /// Takes up to `max` items to write, in order, and their bytes. When
    /// all that is queued fits (the usual case) the queue's storage itself
    /// goes to the writer, so a batch costs no allocation of its own, and
    /// a queue taken empty holds no storage: an idle socket holds neither.
    pub(crate) fn take(&mut self, max: usize) -> (VecDeque<Item>, usize) {
        let batch = if self.items.len() <= max {
            std::mem::take(&mut self.items)
        } else {
            let rest = self.items.split_off(max);
            std::mem::replace(&mut self.items, rest)
        };
        let mut bytes = 0;
        for item in &batch {
            self.account_removed(item);
            bytes += item.bytes();
        }
        (batch, bytes)
    }

    /// Empties the queue (the socket is closing); returns the bytes freed.
    pub(crate) fn clear(&mut self) -> usize {
        let bytes = self.total_bytes;
        self.items.clear();
        self.pushes = 0;
        self.push_bytes = 0;
        self.total_bytes = 0;
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sockeye_proto::Message;

    fn msg(text: &str) -> PreparedMessage {
        PreparedMessage::new(Message::text(text.to_owned())).unwrap()
    }

    fn texts(q: &mut Queue) -> Vec<String> {
        let (out, _) = q.take(usize::MAX);
        out.iter()
            .map(|i| String::from_utf8(i.message.payload().to_vec()).unwrap())
            .collect()
    }

    fn limits(messages: usize) -> QueueLimits {
        QueueLimits {
            messages,
            bytes: 1 << 20,
        }
    }

    #[test]
    fn batches_fit_what_is_queued_and_an_emptied_queue_holds_no_storage() {
        let mut q = Queue::new(limits(100));
        for i in 0..70 {
            q.control(msg(&i.to_string()));
        }
        let (first, _) = q.take(64);
        assert_eq!(first.len(), 64);
        assert_eq!(q.items.len(), 6);
        let (rest, bytes) = q.take(64);
        // Frames "64" to "69": a 2-byte header and 2 bytes each.
        assert_eq!((rest.len(), bytes), (6, 24));
        let texts: Vec<_> = rest.iter().map(|i| i.message.payload()).collect();
        assert_eq!(texts.first().map(|p| &p[..]), Some(&b"64"[..]));
        assert_eq!(q.bytes(), 0);
        assert_eq!(q.items.capacity(), 0);
        let (none, _) = q.take(64);
        assert_eq!(none.capacity(), 0);
    }

    #[test]
    fn disconnect_policy_reports_overflow_and_keeps_the_queue() {
        let mut q = Queue::new(limits(2));
        let t: Arc<str> = Arc::from("a:b");
        let topic = Some(&t);
        assert_eq!(
            q.push(msg("1"), topic, SlowConsumer::Disconnect),
            PushOutcome::default()
        );
        q.push(msg("2"), topic, SlowConsumer::Disconnect);
        let out = q.push(msg("3"), topic, SlowConsumer::Disconnect);
        assert!(out.disconnect);
        assert_eq!(texts(&mut q), ["1", "2"]);
    }

    #[test]
    fn drop_newest_sends_one_lag_per_topic_history_or_not() {
        let mut q = Queue::new(limits(1));
        let t: Arc<str> = Arc::from("a:b");
        let plain: Arc<str> = Arc::from("c:d");
        let topic = Some(&t);
        q.push(msg("1"), topic, SlowConsumer::DropNewest);
        assert_eq!(q.push(msg("2"), topic, SlowConsumer::DropNewest).dropped, 1);
        assert_eq!(q.push(msg("3"), topic, SlowConsumer::DropNewest).dropped, 1);
        // No history: nothing to recover, but the client is told too.
        q.push(msg("4"), Some(&plain), SlowConsumer::DropNewest);
        assert_eq!(
            texts(&mut q),
            [
                "1",
                r#"{"topic":"a:b","event":"lag"}"#,
                r#"{"topic":"c:d","event":"lag"}"#
            ]
        );
        // Still lagged until the client subscribes again.
        q.push(msg("5"), topic, SlowConsumer::DropNewest);
        q.push(msg("6"), topic, SlowConsumer::DropNewest);
        assert_eq!(texts(&mut q), ["5"]);
        q.clear_lag("a:b");
        q.push(msg("7"), topic, SlowConsumer::DropNewest);
        q.push(msg("8"), topic, SlowConsumer::DropNewest);
        assert_eq!(texts(&mut q), ["7", r#"{"topic":"a:b","event":"lag"}"#]);
    }

    #[test]
    fn drop_oldest_and_keep_latest() {
        let mut q = Queue::new(limits(2));
        let a: Arc<str> = Arc::from("a:x");
        let b: Arc<str> = Arc::from("b:x");
        let ta = Some(&a);
        let tb = Some(&b);
        q.push(msg("a1"), ta, SlowConsumer::DropOldest);
        assert!(q.control(msg("reply")));
        q.push(msg("b1"), tb, SlowConsumer::DropOldest);
        assert_eq!(q.push(msg("a2"), ta, SlowConsumer::DropOldest).dropped, 1);
        // The reply is never dropped and keeps its place; the client is
        // told that a:x lost a publication.
        let lag_a = r#"{"topic":"a:x","event":"lag"}"#;
        assert_eq!(texts(&mut q), ["reply", "b1", "a2", lag_a]);

        q.clear_lag("a:x");
        q.push(msg("a1"), ta, SlowConsumer::KeepLatest);
        q.push(msg("b1"), tb, SlowConsumer::KeepLatest);
        assert_eq!(q.push(msg("a2"), ta, SlowConsumer::KeepLatest).dropped, 1);
        assert_eq!(texts(&mut q), ["b1", "a2", lag_a]);
    }

    #[test]
    fn byte_limit_and_hard_bound() {
        let mut q = Queue::new(QueueLimits {
            messages: 100,
            bytes: 10,
        });
        let t: Arc<str> = Arc::from("a:b");
        let topic = Some(&t);
        // 5-byte payload + 2-byte header = 7 bytes per frame.
        q.push(msg("11111"), topic, SlowConsumer::DropOldest);
        assert_eq!(
            q.push(msg("22222"), topic, SlowConsumer::DropOldest)
                .dropped,
            1
        );
        // The push, and the `lag` event telling of the drop (29 bytes + 2).
        assert_eq!(q.bytes(), 7 + 31);
        assert_eq!(texts(&mut q).len(), 2);
        q.push(msg("33333"), topic, SlowConsumer::DropOldest);
        // A push bigger than the whole limit is dropped (the topic already
        // lagged: no second event until the client subscribes again).
        let big = "x".repeat(20);
        assert_eq!(
            q.push(msg(&big), topic, SlowConsumer::DropOldest).dropped,
            2
        );
        assert_eq!(q.bytes(), 0);
        // Control items pass the limit, up to twice it.
        assert!(q.control(msg("12345678")));
        assert!(q.control(msg("12345678")) || q.bytes() > 20);
        assert!(!q.control(msg("12345678")));
        assert_eq!(q.clear(), 30);
        assert_eq!(q.bytes(), 0);
    }
}
