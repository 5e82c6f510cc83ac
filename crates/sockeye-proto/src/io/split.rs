//! Split halves of a [`WebSocket`] that live in different tasks.
//!
//! Both halves share the connection behind a mutex held only inside a poll,
//! never across an await. The read half reads, answers pings and close
//! frames, and runs the timers; the write half queues and flushes. Either
//! may write to the transport, so write readiness wakes both (one waker per
//! half behind a combined waker): a half that waits for the socket to drain
//! is never left asleep because the other half was the one that polled.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite};

use super::WebSocket;
use super::driver::Driver;
use crate::close::CloseCode;
use crate::error::Error;
use crate::message::{Message, PreparedMessage};

struct Shared<S> {
    driver: Mutex<Driver<S>>,
    wake: Arc<WakeBoth>,
}

/// Wakes the tasks of both halves that wait for write readiness.
#[derive(Default)]
struct WakeBoth {
    slots: Mutex<[Option<Waker>; 2]>,
}

const READER: usize = 0;
const WRITER: usize = 1;

impl Wake for WakeBoth {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let wakers = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            [slots[READER].take(), slots[WRITER].take()]
        };
        for w in wakers.into_iter().flatten() {
            w.wake();
        }
    }
}

impl<S> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, Driver<S>> {
        // A panic while holding the lock cannot leave the connection
        // half-updated in a way that matters more than the panic itself.
        self.driver.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A context whose waker wakes both halves, after registering `cx`'s
    /// waker in `slot`.
    fn write_waker(&self, slot: usize, cx: &Context<'_>) -> Waker {
        {
            let mut slots = self.wake.slots.lock().unwrap_or_else(|e| e.into_inner());
            match &mut slots[slot] {
                Some(w) if w.will_wake(cx.waker()) => {}
                other => *other = Some(cx.waker().clone()),
            }
        }
        Waker::from(Arc::clone(&self.wake))
    }
}

pub(super) fn split<S>(driver: Driver<S>) -> (ReadHalf<S>, WriteHalf<S>) {
    let shared = Arc::new(Shared {
        driver: Mutex::new(driver),
        wake: Arc::default(),
    });
    (
        ReadHalf {
            shared: Arc::clone(&shared),
        },
        WriteHalf { shared },
    )
}

/// The read half of a split [`WebSocket`]: a [`Stream`] of messages.
pub struct ReadHalf<S> {
    shared: Arc<Shared<S>>,
}

/// The write half of a split [`WebSocket`]: a [`Sink`] of messages.
pub struct WriteHalf<S> {
    shared: Arc<Shared<S>>,
}

impl<S> fmt::Debug for ReadHalf<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadHalf").finish_non_exhaustive()
    }
}

impl<S> fmt::Debug for WriteHalf<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteHalf").finish_non_exhaustive()
    }
}

/// The halves given to [`ReadHalf::reunite`] came from different sockets.
pub struct ReunitError<S>(pub ReadHalf<S>, pub WriteHalf<S>);

impl<S> fmt::Debug for ReunitError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReunitError").finish_non_exhaustive()
    }
}

impl<S> fmt::Display for ReunitError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the halves belong to different WebSockets")
    }
}

impl<S> std::error::Error for ReunitError<S> {}

impl<S> ReadHalf<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// The next message, as [`WebSocket::recv`].
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        let waker = self.shared.write_waker(READER, cx);
        let mut wcx = Context::from_waker(&waker);
        let mut driver = self.shared.lock();
        let poll = driver.poll_next_message(cx, &mut wcx);
        if poll.is_ready() && driver.done {
            // The connection is over (a timeout may have given the
            // transport up): a writer waiting for it to drain must learn.
            drop(driver);
            self.shared.wake.wake_by_ref();
        }
        poll
    }

    /// Puts the halves back together.
    pub fn reunite(self, write: WriteHalf<S>) -> Result<WebSocket<S>, ReunitError<S>> {
        if !Arc::ptr_eq(&self.shared, &write.shared) {
            return Err(ReunitError(self, write));
        }
        drop(write);
        match Arc::try_unwrap(self.shared) {
            Ok(shared) => Ok(WebSocket::from_driver(
                shared
                    .driver
                    .into_inner()
                    .unwrap_or_else(|e| e.into_inner()),
            )),
            // Both handles were checked to be the only two.
            Err(_) => unreachable!("a third handle to a split WebSocket exists"),
        }
    }
}

impl<S> WriteHalf<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn with_driver<T>(
        &self,
        cx: &Context<'_>,
        f: impl FnOnce(&mut Driver<S>, &mut Context<'_>) -> T,
    ) -> T {
        let waker = self.shared.write_waker(WRITER, cx);
        let mut wcx = Context::from_waker(&waker);
        f(&mut self.shared.lock(), &mut wcx)
    }

    /// Queues a message and flushes.
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        let message = message.into();
        std::future::poll_fn(|cx| self.with_driver(cx, |d, wcx| d.poll_ready(wcx))).await?;
        self.shared.lock().start_send(message)?;
        self.flush().await
    }

    /// Queues a prepared message and flushes.
    pub async fn send_prepared(&mut self, message: &PreparedMessage) -> Result<(), Error> {
        self.feed_prepared(message).await?;
        self.flush().await
    }

    /// Queues a prepared message without flushing, like `SinkExt::feed`.
    pub async fn feed_prepared(&mut self, message: &PreparedMessage) -> Result<(), Error> {
        std::future::poll_fn(|cx| self.with_driver(cx, |d, wcx| d.poll_ready(wcx))).await?;
        self.shared.lock().conn.send_prepared(message)
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), Error> {
        std::future::poll_fn(|cx| self.with_driver(cx, |d, wcx| d.poll_flush(wcx))).await
    }

    /// Sends a close frame and writes it out; the read half sees the peer's
    /// reply and ends.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        {
            let mut d = self.shared.lock();
            if d.conn.state() == crate::State::Open {
                d.conn.close(code, reason)?;
            }
        }
        std::future::poll_fn(|cx| self.with_driver(cx, |d, wcx| d.poll_send_close(wcx))).await
    }
}

impl<S> Stream for ReadHalf<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<S> Sink<Message> for WriteHalf<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.with_driver(cx, |d, wcx| d.poll_ready(wcx))
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        self.shared.lock().start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.with_driver(cx, |d, wcx| d.poll_flush(wcx))
    }

    /// Sends a normal close (1000) unless one was sent, and writes it out.
    /// The read half completes the handshake.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.with_driver(cx, |d, wcx| d.poll_send_close(wcx))
    }
}
