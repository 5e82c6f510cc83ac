//! One client connection, whatever transport carries it: its identity and
//! subscriptions, its outgoing queue, and its command budget.
//!
//! The hub hands a session what to send ([`Session::push`],
//! [`Session::control`], [`Session::lag`]); a transport's writer takes it
//! out in batches ([`Session::take_batch`]) and waits for more
//! ([`Session::notified`]). A session knows neither the hub nor a
//! transport.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use sockeye_auth::Identity;
use sockeye_proto::{CloseCode, CloseHandle, Message, PreparedMessage};
use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use tokio::time::Instant;

use crate::broker::Member;
use crate::metrics::{Metrics, Tally};
use crate::queue::{Item, Queue, QueueLimits};
use crate::topic::{Namespace, SlowConsumer};

/// How many queued messages a writer takes per batch (one flush each).
const WRITE_BATCH: usize = 64;

/// What a writer takes from its session at once ([`Session::take_batch`]).
pub(crate) struct Batch {
    /// Queued messages, oldest first (at most a batch): each item's
    /// `message`.
    pub(crate) messages: VecDeque<Item>,
    /// Set once: the writer sends this close after the queue and stops.
    pub(crate) closing: Option<(CloseCode, &'static str)>,
    /// The reader ended: the writer stops once the queue is written.
    pub(crate) finished: bool,
}

pub(crate) struct Session {
    pub(crate) id: u64,
    /// Unique across nodes: the hub's node id and the session number.
    pub(crate) member: Member,
    pub(crate) identity: Option<Identity>,
    state: Mutex<State>,
    notify: Notify,
    metrics: Arc<Metrics>,
}

struct State {
    queue: Queue,
    /// Set once: the writer sends this close and stops.
    closing: Option<(CloseCode, &'static str)>,
    /// The reader ended: the writer stops once the queue is written.
    finished: bool,
    /// Few per session (256 at most by default): a list sized to fit,
    /// searched in order, weighs less than a map's table.
    subscriptions: Vec<(Arc<str>, Arc<Namespace>)>,
    /// Closes the WebSocket from the driver's side, so the close timer runs
    /// from the decision even while the writer is blocked on a peer that
    /// does not read.
    closer: Option<CloseHandle>,
}

impl Session {
    pub(crate) fn new(
        id: u64,
        member: Member,
        identity: Option<Identity>,
        limits: QueueLimits,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            id,
            member,
            identity,
            state: Mutex::new(State {
                queue: Queue::new(limits),
                closing: None,
                finished: false,
                subscriptions: Vec::new(),
                closer: None,
            }),
            notify: Notify::new(),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// Runs `f` on the queue, keeping the queued-bytes gauge right and
    /// waking the writer.
    fn with_queue<R>(&self, f: impl FnOnce(&mut Queue) -> R) -> Option<R> {
        let mut queued = 0;
        let r = self.with_queue_counted(&mut queued, f);
        if queued != 0 {
            self.metrics.queued(queued);
        }
        r
    }

    /// [`with_queue`](Self::with_queue), adding the change of the queue's
    /// bytes to `queued` for the caller to count.
    fn with_queue_counted<R>(
        &self,
        queued: &mut i64,
        f: impl FnOnce(&mut Queue) -> R,
    ) -> Option<R> {
        let mut state = self.lock();
        if state.closing.is_some() || state.finished {
            return None;
        }
        let before = state.queue.bytes();
        let r = f(&mut state.queue);
        let after = state.queue.bytes();
        drop(state);
        *queued += after as i64 - before as i64;
        self.notify.notify_one();
        Some(r)
    }

    /// Queues a push under the namespace's policy; `false` if the socket is
    /// closed or was just closed as a slow consumer.
    pub(crate) fn push(
        &self,
        message: &PreparedMessage,
        topic: Option<&Arc<str>>,
        policy: SlowConsumer,
    ) -> bool {
        let mut tally = Tally::default();
        let pushed = self.push_counted(message, topic, policy, &mut tally);
        self.metrics.add(tally);
        pushed
    }

    /// [`push`](Self::push) for a loop over many sessions: the delivery and
    /// the queued bytes go into `tally`, which the caller hands to
    /// [`Metrics::add`] once the loop is over.
    pub(crate) fn push_counted(
        &self,
        message: &PreparedMessage,
        topic: Option<&Arc<str>>,
        policy: SlowConsumer,
        tally: &mut Tally,
    ) -> bool {
        let Some(outcome) = self.with_queue_counted(&mut tally.queued, |q| {
            q.push(message.clone(), topic, policy)
        }) else {
            return false;
        };
        if outcome.dropped > 0 {
            self.metrics.dropped(outcome.dropped, policy);
            tracing::debug!(
                session = self.id,
                dropped = outcome.dropped,
                "slow consumer: pushes dropped"
            );
        }
        if outcome.disconnect {
            self.metrics.slow_disconnect("slow_consumer");
            tracing::info!(session = self.id, "slow consumer: closing with 1008");
            self.close(CloseCode::POLICY_VIOLATION, "slow consumer");
            return false;
        }
        tally.deliveries += 1;
        true
    }

    /// Queues a control item (reply, event): never dropped.
    pub(crate) fn control(&self, text: String) {
        let Ok(message) = PreparedMessage::new(Message::text(text)) else {
            return;
        };
        if self.with_queue(|q| q.control(message)) == Some(false) {
            self.metrics.slow_disconnect("queue_bound");
            tracing::info!(
                session = self.id,
                "queue past its hard bound: closing with 1008"
            );
            self.close(CloseCode::POLICY_VIOLATION, "slow consumer");
        }
    }

    /// Sends one `lag` event for the topic (once until it is subscribed
    /// again).
    pub(crate) fn lag(&self, topic: &Arc<str>) {
        self.with_queue(|q| q.lag(topic));
    }

    /// Closes the socket: what is queued is discarded, the close frame goes
    /// out next.
    pub(crate) fn close(&self, code: CloseCode, reason: &'static str) {
        let mut state = self.lock();
        if state.closing.is_some() || state.finished {
            return;
        }
        state.closing = Some((code, reason));
        let freed = state.queue.clear();
        let closer = state.closer.take();
        drop(state);
        // An unsendable code (1006: the transport failed under the writer)
        // asks for no close frame: the socket ends as it is, and is counted
        // as closed without one, not as a normal close of ours.
        if let Some(closer) = closer.filter(|_| code.is_sendable()) {
            closer.close(code, reason);
        }
        self.metrics.queued(-(freed as i64));
        self.notify.notify_one();
    }

    /// The WebSocket's close handle (see [`State::closer`]).
    pub(crate) fn set_closer(&self, closer: CloseHandle) {
        self.lock().closer = Some(closer);
    }

    pub(crate) fn is_closed(&self) -> bool {
        let state = self.lock();
        state.closing.is_some() || state.finished
    }

    pub(crate) fn clear_lag(&self, topic: &str) {
        self.lock().queue.clear_lag(topic);
    }

    pub(crate) fn subscribed(&self, topic: &str) -> bool {
        self.lock().subscriptions.iter().any(|(t, _)| **t == *topic)
    }

    pub(crate) fn subscription_count(&self) -> usize {
        self.lock().subscriptions.len()
    }

    pub(crate) fn add_subscription(&self, topic: Arc<str>, ns: Arc<Namespace>) {
        let mut state = self.lock();
        let subs = &mut state.subscriptions;
        match subs.iter_mut().find(|(t, _)| *t == topic) {
            Some(entry) => entry.1 = ns,
            None => {
                subs.reserve_exact(1);
                subs.push((topic, ns));
            }
        }
    }

    /// Drops a subscription and what the queue remembers of the topic.
    pub(crate) fn remove_subscription(&self, topic: &str) -> bool {
        let mut state = self.lock();
        state.queue.clear_lag(topic);
        let subs = &mut state.subscriptions;
        let Some(i) = subs.iter().position(|(t, _)| **t == *topic) else {
            return false;
        };
        subs.swap_remove(i);
        if subs.is_empty() {
            *subs = Vec::new();
        }
        true
    }

    /// Ends the session: returns its subscriptions for the hub to drop.
    pub(crate) fn finish(&self) -> Vec<(Arc<str>, Arc<Namespace>)> {
        let mut state = self.lock();
        state.finished = true;
        let subs = std::mem::take(&mut state.subscriptions);
        // What was never written leaves the hub's queued-bytes count.
        let freed = state.queue.clear();
        drop(state);
        self.metrics.queued(-(freed as i64));
        self.notify.notify_one();
        subs
    }

    pub(crate) fn queued_bytes(&self) -> usize {
        self.lock().queue.bytes()
    }

    /// Takes up to [`WRITE_BATCH`] queued messages for a transport's
    /// writer, with the close to send once the session is closing and
    /// whether it finished (the reader ended).
    pub(crate) fn take_batch(&self) -> Batch {
        let mut state = self.lock();
        let (messages, freed) = state.queue.take(WRITE_BATCH);
        self.metrics.queued(-(freed as i64));
        Batch {
            messages,
            closing: state.closing,
            finished: state.finished,
        }
    }

    /// Resolves once something was queued, or the session closed or
    /// finished, since the writer last waited.
    pub(crate) fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }
}

/// Commands per second a client may send, with bursts.
///
/// ```
/// use sockeye_pubsub::RateLimit;
/// let limit = RateLimit::new(50.0, 100);
/// assert_eq!(limit, RateLimit::new(50.0, 100));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub(crate) per_second: f64,
    pub(crate) burst: u32,
}

impl Default for RateLimit {
    /// 100 commands a second, bursts of 200.
    fn default() -> Self {
        Self::new(100.0, 200)
    }
}

impl RateLimit {
    /// `per_second` commands a second on average, up to `burst` at once.
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self {
            per_second: per_second.max(0.0),
            burst: burst.max(1),
        }
    }
}

/// A token bucket.
struct Bucket {
    limit: RateLimit,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst),
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens =
            (self.tokens + elapsed * self.limit.per_second).min(f64::from(self.limit.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Strikes for bad commands, forgiven at one a second; too many close the
/// socket with 1008.
struct Strikes {
    max: u32,
    count: f64,
    at: Instant,
}

impl Strikes {
    fn new(max: u32) -> Self {
        Self {
            max,
            count: 0.0,
            at: Instant::now(),
        }
    }

    /// Adds one; `true` when past the maximum.
    fn strike(&mut self) -> bool {
        let now = Instant::now();
        let forgiven = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.count = (self.count - forgiven).max(0.0) + 1.0;
        self.count > f64::from(self.max)
    }
}

/// A session's command budget: the rate limit and the strikes.
pub(crate) struct Limits {
    bucket: Bucket,
    strikes: Strikes,
}

impl Limits {
    pub(crate) fn new(rate: RateLimit, max_strikes: u32) -> Self {
        Self {
            bucket: Bucket::new(rate),
            strikes: Strikes::new(max_strikes),
        }
    }

    /// Whether the rate limit lets one more command through now.
    pub(crate) fn take(&mut self) -> bool {
        self.bucket.take()
    }

    /// A bad command: too many close the session with 1008.
    pub(crate) fn strike(&mut self, session: &Session) {
        if self.strikes.strike() {
            tracing::info!(
                session = session.id,
                "too many bad commands: closing with 1008"
            );
            session.close(CloseCode::POLICY_VIOLATION, "too many bad requests");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        let member = Member {
            id: "s-1".into(),
            user: None,
        };
        Session::new(1, member, None, QueueLimits::default(), Arc::default())
    }

    /// The subscription list: one entry per topic (subscribing again
    /// replaces it), removal of an absent topic is refused, and the list
    /// lets its storage go when the last subscription ends.
    #[test]
    fn subscriptions_are_one_per_topic_and_freed_when_empty() {
        let s = session();
        let ns = Arc::new(Namespace::default());
        assert!(!s.subscribed("a"));
        s.add_subscription(Arc::from("a"), Arc::clone(&ns));
        s.add_subscription(Arc::from("b"), Arc::clone(&ns));
        s.add_subscription(Arc::from("a"), Arc::clone(&ns));
        assert_eq!(s.subscription_count(), 2);
        assert!(s.subscribed("a") && s.subscribed("b"));
        assert_eq!(s.lock().subscriptions.capacity(), 2, "sized to fit");
        assert!(!s.remove_subscription("c"));
        assert!(s.remove_subscription("a"));
        assert!(!s.remove_subscription("a"));
        assert!(!s.subscribed("a") && s.subscribed("b"));
        assert!(s.remove_subscription("b"));
        assert_eq!(s.lock().subscriptions.capacity(), 0);
        s.add_subscription(Arc::from("c"), ns);
        let ended = s.finish();
        assert_eq!(ended.len(), 1);
        assert_eq!(&*ended[0].0, "c");
        assert_eq!(s.subscription_count(), 0);
    }

    #[tokio::test]
    async fn a_failed_transport_sends_no_close_frame_a_decision_does() {
        let (a, _b) = tokio::io::duplex(64);
        let mut ws = sockeye_proto::WebSocket::from_raw_socket(
            a,
            sockeye_proto::Role::Server,
            sockeye_proto::Config::default(),
        );
        let handle = ws.close_handle();
        let failed = session();
        failed.set_closer(handle.clone());
        failed.close(CloseCode::ABNORMAL, "write failed");
        assert!(failed.is_closed());
        assert!(!handle.is_requested());

        let decided = session();
        decided.set_closer(ws.close_handle());
        decided.close(CloseCode::POLICY_VIOLATION, "slow consumer");
        assert!(handle.is_requested());
    }
}
