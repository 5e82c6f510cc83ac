//! One client socket: its queue, the task writing it out, and the loop
//! reading commands.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

#[cfg(feature = "hyper")]
use bytes::Bytes;
use sockeye_auth::Identity;
use sockeye_proto::{CloseCode, CloseHandle, Message, PreparedMessage, WriteHalf};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
#[cfg(feature = "hyper")]
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::broker::Member;
use crate::error::{Error, ErrorCode};
use crate::metrics::Metrics;
use crate::protocol;
use crate::queue::{PushTopic, Queue, QueueLimits};
use crate::topic::{Namespace, SlowConsumer};

/// How many queued messages the writer takes per batch (one flush each).
const WRITE_BATCH: usize = 64;

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
    subscriptions: HashMap<Arc<str>, Arc<Namespace>>,
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
                subscriptions: HashMap::new(),
                closer: None,
            }),
            notify: Notify::new(),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the queue, keeping the queued-bytes gauge right and
    /// waking the writer.
    fn with_queue<R>(&self, f: impl FnOnce(&mut Queue) -> R) -> Option<R> {
        let mut state = self.lock();
        if state.closing.is_some() || state.finished {
            return None;
        }
        let before = state.queue.bytes();
        let r = f(&mut state.queue);
        let after = state.queue.bytes();
        drop(state);
        self.metrics.queued(after as i64 - before as i64);
        self.notify.notify_one();
        Some(r)
    }

    /// Queues a push under the namespace's policy; `false` if the socket is
    /// closed or was just closed as a slow consumer.
    pub(crate) fn push(
        &self,
        message: &PreparedMessage,
        topic: Option<PushTopic<'_>>,
        policy: SlowConsumer,
    ) -> bool {
        let Some(outcome) = self.with_queue(|q| q.push(message.clone(), topic, policy)) else {
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
        self.metrics.delivery();
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

    /// Sends one `lag` event for the topic (if it keeps history).
    pub(crate) fn lag(&self, topic: &Arc<str>, history: bool) {
        self.with_queue(|q| {
            q.lag(PushTopic {
                name: topic,
                history,
            })
        });
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
        if let Some(closer) = closer {
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
        self.lock().subscriptions.contains_key(topic)
    }

    pub(crate) fn subscription_count(&self) -> usize {
        self.lock().subscriptions.len()
    }

    pub(crate) fn add_subscription(&self, topic: Arc<str>, ns: Arc<Namespace>) {
        self.lock().subscriptions.insert(topic, ns);
    }

    /// Drops a subscription and what the queue remembers of the topic.
    pub(crate) fn remove_subscription(&self, topic: &str) -> bool {
        let mut state = self.lock();
        state.queue.clear_lag(topic);
        state.subscriptions.remove(topic).is_some()
    }

    /// Ends the session: returns its subscriptions for the hub to drop.
    pub(crate) fn finish(&self) -> Vec<(Arc<str>, Arc<Namespace>)> {
        let mut state = self.lock();
        state.finished = true;
        let subs = state.subscriptions.drain().collect();
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

    /// Writes the queue out until the session closes or finishes.
    pub(crate) async fn write_loop<S>(self: Arc<Self>, mut write: WriteHalf<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        loop {
            let (closing, finished) = {
                let mut state = self.lock();
                let freed = state.queue.take(WRITE_BATCH, &mut batch);
                self.metrics.queued(-(freed as i64));
                (state.closing, state.finished)
            };
            if batch.is_empty() {
                if let Some((code, reason)) = closing {
                    let _ = write.close(code, reason).await;
                    return;
                }
                if finished {
                    return;
                }
                self.notify.notified().await;
                continue;
            }
            for message in batch.drain(..) {
                if write.feed_prepared(&message).await.is_err() {
                    self.close(CloseCode::ABNORMAL, "write failed");
                    return;
                }
            }
            if write.flush().await.is_err() {
                self.close(CloseCode::ABNORMAL, "write failed");
                return;
            }
        }
    }
}

impl Session {
    /// Writes the queue out as Server-Sent Events (`data: <line>`) into
    /// `tx`, with a comment every `keepalive` while idle, until the session
    /// closes (a final `close` event) or the client goes away.
    ///
    /// Once the session is closing, the stream has `stream.close_timeout`
    /// to reach the client; a client that does not read it by then has its
    /// connection aborted (when served by `sockeye_hyper::serve`).
    #[cfg(feature = "hyper")]
    pub(crate) async fn sse_loop(self: Arc<Self>, tx: mpsc::Sender<Bytes>, stream: SseStream) {
        use bytes::{BufMut, BytesMut};
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        loop {
            let (closing, finished) = {
                let mut state = self.lock();
                let freed = state.queue.take(WRITE_BATCH, &mut batch);
                self.metrics.queued(-(freed as i64));
                (state.closing, state.finished)
            };
            let chunk = if batch.is_empty() {
                if let Some((code, reason)) = closing {
                    stream.finish(tx, code, reason).await;
                    return;
                }
                if finished {
                    return;
                }
                tokio::select! {
                    () = self.notify.notified() => continue,
                    () = tx.closed() => {
                        self.close(CloseCode::GOING_AWAY, "event stream closed");
                        return;
                    }
                    () = tokio::time::sleep(stream.keepalive) => Bytes::from_static(b": keepalive\n\n"),
                }
            } else {
                let mut chunk = BytesMut::new();
                for message in batch.drain(..) {
                    chunk.put_slice(b"data: ");
                    chunk.put_slice(&message.payload());
                    chunk.put_slice(b"\n\n");
                }
                chunk.freeze()
            };
            if !self.send_unless_closing(&tx, chunk).await {
                self.close(CloseCode::GOING_AWAY, "event stream closed");
                return;
            }
        }
    }

    /// Sends a chunk, or gives up on it once the session is closing (the
    /// client may never read it): false if the client went away.
    #[cfg(feature = "hyper")]
    async fn send_unless_closing(&self, tx: &mpsc::Sender<Bytes>, chunk: Bytes) -> bool {
        let send = tx.send(chunk);
        tokio::pin!(send);
        loop {
            tokio::select! {
                sent = &mut send => return sent.is_ok(),
                () = self.notify.notified() => {
                    if self.is_closed() {
                        return true;
                    }
                }
            }
        }
    }
}

/// How an event stream ends, and what it may do to its connection.
#[cfg(feature = "hyper")]
pub(crate) struct SseStream {
    pub(crate) keepalive: std::time::Duration,
    pub(crate) close_timeout: std::time::Duration,
    /// The connection, when served by `sockeye_hyper::serve`.
    pub(crate) connection: Option<sockeye_hyper::ConnectionHandle>,
    /// HTTP/1: the connection ends with the stream (`Connection: close`).
    pub(crate) http1: bool,
    /// Resolves once hyper dropped the response body.
    pub(crate) body_gone: tokio::sync::oneshot::Receiver<()>,
}

#[cfg(feature = "hyper")]
impl SseStream {
    /// Sends the `close` event and waits, up to the close timeout, for the
    /// client to have it; past that the connection is aborted.
    async fn finish(self, tx: mpsc::Sender<Bytes>, code: CloseCode, reason: &str) {
        let event = format!(
            "event: close\ndata: {{\"code\":{},\"reason\":{}}}\n\n",
            code.as_u16(),
            protocol::json_string(reason)
        );
        let Self {
            close_timeout,
            connection,
            http1,
            body_gone,
            ..
        } = self;
        let delivered = tokio::time::timeout(close_timeout, async {
            if tx.send(Bytes::from(event)).await.is_err() {
                return;
            }
            // The body ends once what is in the channel is read.
            drop(tx);
            match &connection {
                // hyper closes the connection once the end is written.
                Some(conn) if http1 => conn.closed().await,
                _ => {
                    let _ = body_gone.await;
                }
            }
        })
        .await;
        if delivered.is_err()
            && let Some(conn) = connection
        {
            tracing::debug!(
                peer = %conn.peer_addr(),
                "event stream not read within the close timeout: connection aborted"
            );
            conn.abort();
        }
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
pub(crate) struct Bucket {
    limit: RateLimit,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst),
            at: Instant::now(),
        }
    }

    pub(crate) fn take(&mut self) -> bool {
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
pub(crate) struct Strikes {
    max: u32,
    count: f64,
    at: Instant,
}

impl Strikes {
    pub(crate) fn new(max: u32) -> Self {
        Self {
            max,
            count: 0.0,
            at: Instant::now(),
        }
    }

    /// Adds one; `true` when past the maximum.
    pub(crate) fn strike(&mut self) -> bool {
        let now = Instant::now();
        let forgiven = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.count = (self.count - forgiven).max(0.0) + 1.0;
        self.count > f64::from(self.max)
    }
}

/// A handle on one hub session: direct sends share the socket's queue with
/// its topic pushes and keep their order.
#[derive(Clone)]
pub struct SessionHandle {
    pub(crate) session: Arc<Session>,
    pub(crate) hub: crate::hub::Hub,
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle")
            .field("id", &self.session.member.id)
            .finish_non_exhaustive()
    }
}

impl SessionHandle {
    /// The session's id: unique across nodes, as presence lists it.
    pub fn id(&self) -> &str {
        &self.session.member.id
    }

    /// The socket's identity, if the upgrade had one.
    pub fn identity(&self) -> Option<&Identity> {
        self.session.identity.as_ref()
    }

    /// Sends a JSON value to this socket alone, in order with its pushes.
    /// A socket whose queue is full is closed with 1008.
    pub fn send<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        let text = serde_json::to_string(value)?;
        self.send_raw(text)
    }

    /// Sends raw text (one JSON line, by the protocol) to this socket alone.
    pub fn send_raw(&self, text: impl Into<String>) -> Result<(), Error> {
        let message = PreparedMessage::new(Message::text(text.into()))?;
        if self.session.push(&message, None, SlowConsumer::Disconnect) {
            Ok(())
        } else {
            Err(Error::Closed)
        }
    }

    /// Subscribes the socket to a topic from the server side (no
    /// authorizer; the namespace's limits apply). The socket gets a
    /// `subscribed` event with the stream position, then the pushes.
    pub async fn subscribe(&self, topic: &str) -> Result<(), Error> {
        self.hub
            .subscribe_session(&self.session, None, topic, None)
            .await
    }

    /// Unsubscribes the socket from a topic and sends it an `unsubscribed`
    /// event.
    pub async fn unsubscribe(&self, topic: &str) -> Result<(), Error> {
        self.hub.unsubscribe_session(&self.session, topic).await?;
        self.session.control(protocol::event(
            topic,
            "unsubscribed",
            r#""reason":"server""#,
        ));
        Ok(())
    }

    /// Closes the socket with `code`.
    pub fn close(&self, code: CloseCode, reason: &'static str) {
        self.session.close(code, reason);
    }

    /// Bytes queued for the socket right now (pushes and control items).
    pub fn queued_bytes(&self) -> usize {
        self.session.queued_bytes()
    }

    /// Whether the socket is closed or closing.
    pub fn is_closed(&self) -> bool {
        self.session.is_closed()
    }
}

pub(crate) fn refused_reply(id: Option<u64>, error: &Error) -> String {
    let message = match error {
        Error::Refused { message, .. } => message.clone(),
        other => other.to_string(),
    };
    protocol::reply_error(id, error.code(), &message)
}

pub(crate) fn rate_limited_reply(id: Option<u64>) -> String {
    protocol::reply_error(id, ErrorCode::RateLimited, "too many commands")
}
