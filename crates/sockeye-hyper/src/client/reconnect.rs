//! Reconnecting after an unexpected drop: a fresh socket after each drop,
//! exponential backoff with jitter and a cap, a stop on a normal close
//! (1000) or on request, and an event for every attempt.

use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use futures_sink::Sink;
use sockeye_proto::{CloseCode, Message};
use tokio::sync::Notify;

use super::{ClientBuilder, WebSocket};
use crate::error::Error;

/// Delays between attempts: `initial × multiplier^n`, capped at `max`, each
/// reduced by a random fraction up to `jitter` so clients do not reconnect
/// in lockstep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// The first delay (default 500 ms).
    pub initial: Duration,
    /// The cap (default 30 s).
    pub max: Duration,
    /// The growth factor (default 2).
    pub multiplier: f64,
    /// The largest random reduction, 0 to 1 (default 0.5).
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.5,
        }
    }
}

impl Backoff {
    /// The delay before attempt `n` (0-based), with jitter drawn from `r` in
    /// `0..1`.
    pub fn delay(&self, n: u32, r: f64) -> Duration {
        let exp = self.multiplier.max(1.0).powi(n.min(64) as i32);
        let base = self.initial.as_secs_f64() * exp;
        let capped = base.min(self.max.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0) * r.clamp(0.0, 1.0);
        Duration::from_secs_f64((capped * (1.0 - jitter)).max(0.0))
    }
}

/// What the connector reports.
#[derive(Debug)]
pub enum ReconnectEvent {
    /// A socket is open. Drop it (or close it) when done; the next call to
    /// [`Reconnect::next`] reconnects unless it ended with a normal close.
    Connected {
        /// The socket.
        socket: ReconnectingSocket,
        /// Attempts it took since the last connection (1 = first try).
        attempt: u32,
    },
    /// An attempt failed; the next one starts after `delay`.
    Retrying {
        /// The failed attempt's number.
        attempt: u32,
        /// Why it failed.
        error: Error,
        /// The wait before the next attempt.
        delay: Duration,
    },
    /// The connector stopped for good: an error retrying cannot fix
    /// (disabled, bad URL), or the attempt limit.
    GaveUp(Error),
}

/// Stops a [`Reconnect`] from another task; a pending wait ends at once.
#[derive(Clone, Debug, Default)]
pub struct StopHandle {
    inner: Arc<StopInner>,
}

#[derive(Debug, Default)]
struct StopInner {
    stopped: AtomicBool,
    notify: Notify,
}

impl StopHandle {
    /// Stops reconnecting.
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::Release);
        self.inner.notify.notify_waiters();
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::Acquire)
    }
}

/// Shared with the socket: how it ended.
type Outcome = Arc<Mutex<Option<Option<CloseCode>>>>;

/// A reconnecting connector, in the spirit of Python websockets'
/// `async for ws in connect(...)`.
///
/// ```no_run
/// use sockeye_hyper::client::{ClientBuilder, ReconnectEvent};
/// # async fn run() {
/// let mut connector = ClientBuilder::new("ws://127.0.0.1:9001/feed").reconnecting();
/// while let Some(event) = connector.next().await {
///     match event {
///         ReconnectEvent::Connected { mut socket, .. } => {
///             while let Some(Ok(msg)) = socket.recv().await {
///                 println!("{msg:?}");
///             }
///         }
///         ReconnectEvent::Retrying { attempt, error, delay } => {
///             eprintln!("attempt {attempt} failed: {error}; retrying in {delay:?}");
///         }
///         ReconnectEvent::GaveUp(error) => eprintln!("giving up: {error}"),
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Reconnect {
    builder: ClientBuilder,
    backoff: Backoff,
    max_attempts: Option<u32>,
    attempt: u32,
    pending_delay: Option<Duration>,
    last: Option<Outcome>,
    stop: StopHandle,
    done: bool,
}

impl Reconnect {
    pub(super) fn new(builder: ClientBuilder) -> Self {
        Self {
            builder,
            backoff: Backoff::default(),
            max_attempts: None,
            attempt: 0,
            pending_delay: None,
            last: None,
            stop: StopHandle::default(),
            done: false,
        }
    }

    /// The backoff policy.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Gives up after this many failed attempts in a row (default: never).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// A handle that stops the connector from another task.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Stops reconnecting.
    pub fn stop(&self) {
        self.stop.stop();
    }

    /// The next event; `None` once stopped (by the handle, after a normal
    /// close, or after giving up).
    pub async fn next(&mut self) -> Option<ReconnectEvent> {
        if self.done || self.stop.is_stopped() {
            return None;
        }
        if let Some(last) = self.last.take() {
            let outcome = *last.lock().unwrap_or_else(|e| e.into_inner());
            if outcome == Some(Some(CloseCode::NORMAL)) {
                self.done = true;
                return None;
            }
            // After a drop, wait the first backoff step before reconnecting.
            self.pending_delay = Some(self.backoff.delay(0, rand::random()));
        }
        if let Some(delay) = self.pending_delay.take() {
            let notified = self.stop.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.stop.is_stopped() {
                return None;
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = notified => return None,
            }
        }
        self.attempt += 1;
        let attempt = self.attempt;
        tracing::debug!(
            url = self.builder.url(),
            attempt,
            "websocket connect attempt"
        );
        match self.builder.connect().await {
            Ok((ws, _)) => {
                self.attempt = 0;
                let outcome = Outcome::default();
                self.last = Some(Arc::clone(&outcome));
                Some(ReconnectEvent::Connected {
                    socket: ReconnectingSocket {
                        ws: Some(Box::new(ws)),
                        outcome,
                    },
                    attempt,
                })
            }
            Err(error) => {
                let permanent = matches!(error, Error::Disabled | Error::InvalidUrl(_));
                if permanent || self.max_attempts.is_some_and(|m| attempt >= m) {
                    self.done = true;
                    return Some(ReconnectEvent::GaveUp(error));
                }
                let delay = self.backoff.delay(attempt - 1, rand::random());
                self.pending_delay = Some(delay);
                Some(ReconnectEvent::Retrying {
                    attempt,
                    error,
                    delay,
                })
            }
        }
    }
}

/// A client socket from a [`Reconnect`]: a [`WebSocket`] (through `Deref`,
/// `Stream` and `Sink`) that tells the connector how it ended when dropped.
#[derive(Debug)]
pub struct ReconnectingSocket {
    // Boxed: the socket is large and the event enum carries it by value.
    ws: Option<Box<WebSocket>>,
    outcome: Outcome,
}

impl ReconnectingSocket {
    fn ws(&mut self) -> &mut WebSocket {
        // Present until drop.
        self.ws
            .as_mut()
            .unwrap_or_else(|| unreachable!("socket taken before drop"))
    }
}

impl Deref for ReconnectingSocket {
    type Target = WebSocket;
    fn deref(&self) -> &WebSocket {
        self.ws
            .as_ref()
            .unwrap_or_else(|| unreachable!("socket taken before drop"))
    }
}

impl DerefMut for ReconnectingSocket {
    fn deref_mut(&mut self) -> &mut WebSocket {
        self.ws()
    }
}

impl Drop for ReconnectingSocket {
    fn drop(&mut self) {
        if let Some(ws) = self.ws.take() {
            let code = ws.connection().close_code();
            *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(code);
        }
    }
}

impl Stream for ReconnectingSocket {
    type Item = Result<Message, sockeye_proto::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(self.get_mut().ws()).poll_next(cx)
    }
}

impl Sink<Message> for ReconnectingSocket {
    type Error = sockeye_proto::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(self.get_mut().ws()).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        Pin::new(self.get_mut().ws()).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(self.get_mut().ws()).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(self.get_mut().ws()).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let b = Backoff::default();
        assert_eq!(b.delay(0, 0.0), Duration::from_millis(500));
        assert_eq!(b.delay(1, 0.0), Duration::from_secs(1));
        assert_eq!(b.delay(3, 0.0), Duration::from_secs(4));
        assert_eq!(b.delay(20, 0.0), Duration::from_secs(30));
        assert_eq!(b.delay(20, 1.0), Duration::from_secs(15));
        assert!(b.delay(2, 0.5) < b.delay(2, 0.0));
    }
}
