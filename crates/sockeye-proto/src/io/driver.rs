//! The loop that drives a [`Connection`] over a tokio transport: read,
//! handle, write, tick timers, shut down. Shared by [`WebSocket`] and its
//! split halves.
//!
//! [`WebSocket`]: super::WebSocket

use std::future::Future;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant as TokioInstant, Sleep};
use tokio_util::io::poll_read_buf;

use super::handle::CloseRequest;
use crate::conn::Connection;
use crate::error::Error;
use crate::message::Message;

/// The smallest read into the heap buffer (a frame is arriving).
const MIN_READ: usize = 4096;
/// A read while nothing is buffered goes to the stack first: enough for a
/// burst of small frames, or the start of a large one.
const STACK_READ: usize = 32 << 10;
/// The largest single reservation for a frame still arriving.
const MAX_READ: usize = 1 << 20;
/// The largest read a burst of small frames grows to (a read that fills its
/// room doubles the next one; waiting for input resets it).
const MAX_BURST_READ: usize = 128 << 10;
/// The most slices handed to one vectored write.
const MAX_IOVECS: usize = 64;
/// While reads keep returning input, output waits for it up to this many
/// bytes: a burst of messages is answered in one write.
const WRITE_BATCH: usize = 64 << 10;

pub(crate) struct Driver<S> {
    pub(crate) io: S,
    pub(crate) conn: Box<Connection>,
    read_buf: BytesMut,
    timer: Option<Pin<Box<Sleep>>>,
    timer_at: Option<std::time::Instant>,
    /// An error to hand to the reader before anything else happens.
    error: Option<Error>,
    /// `handle_read` stopped at a message: the buffer may hold more frames.
    input_pending: bool,
    read_eof: bool,
    shut_down: bool,
    /// The stream has ended: `None` from now on.
    pub(crate) done: bool,
    /// Set once a [`CloseHandle`](super::CloseHandle) was made.
    pub(crate) close_request: Option<std::sync::Arc<CloseRequest>>,
    /// The room of the next read: it grows while reads come back full, so a
    /// busy socket takes a backlog in few system calls.
    read_size: usize,
    /// The last read returned input and more may be waiting: output (below
    /// [`WRITE_BATCH`]) waits until a read has nothing, so the replies to a
    /// burst that took several reads still leave in one write.
    read_more: bool,
    /// Run on the transport when the connection is given up with output
    /// still unwritten (see [`WebSocket::set_abort`](super::WebSocket::set_abort)).
    pub(crate) abort: Option<fn(&S)>,
    /// The socket's end was reported (a `tracing` event and the current
    /// span's `close_code` / `close_initiator`, and with feature `metrics`
    /// the close counter): once, when the stream ends or, for a socket
    /// dropped before that, on drop.
    end_reported: bool,
}

impl<S> std::fmt::Debug for Driver<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("conn", &self.conn)
            .field("buffered_read", &self.read_buf.len())
            .field("read_eof", &self.read_eof)
            .field("shut_down", &self.shut_down)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

fn now() -> std::time::Instant {
    // tokio's clock, so that tests with paused time drive the timers.
    TokioInstant::now().into_std()
}

impl<S> Driver<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    pub(crate) fn new(io: S, conn: Box<Connection>, read_buf: BytesMut) -> Self {
        Self {
            io,
            conn,
            read_buf,
            timer: None,
            timer_at: None,
            error: None,
            input_pending: false,
            read_eof: false,
            shut_down: false,
            done: false,
            close_request: None,
            read_size: STACK_READ,
            read_more: false,
            abort: None,
            end_reported: false,
        }
    }

    /// The stream has ended: `None` from now on.
    fn end(&mut self) {
        self.done = true;
        self.report_end();
    }

    /// Runs one batch of input through the connection: the buffered bytes
    /// handed over at creation are processed before the first read.
    ///
    /// No clock is read here, nor in `start_send`: activity only sets the
    /// timers' flags, and they are armed by the tick before the driver waits
    /// (`poll_timer`) or flushes. A burst of messages costs one clock read,
    /// not two per message, and deadlines still count from the end of the
    /// burst.
    fn handle_input(&mut self) {
        if let Err(e) = self.conn.handle_read(&mut self.read_buf) {
            self.error.get_or_insert(e);
        }
        self.input_pending = self.conn.has_events() && !self.read_buf.is_empty();
    }

    fn tick(&mut self) {
        if self.conn.needs_tick()
            && let Err(e) = self.conn.handle_timeout(now())
        {
            self.error.get_or_insert(e);
        }
    }

    /// The socket waits for input with nothing partial buffered: it lets go
    /// of its buffers, and the next burst starts with a small read again.
    fn park_read(&mut self) {
        self.read_buf = BytesMut::new();
        self.conn.release_idle_memory();
        self.read_size = STACK_READ;
    }

    /// Writes pending output until done or the transport pushes back. `wcx`
    /// is the context for write readiness.
    ///
    /// While the close handshake is under way, a write the transport
    /// pushes back on still runs the close timer: a peer that stopped
    /// reading cannot hold the connection past the close timeout.
    pub(crate) fn poll_write_out(&mut self, wcx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        match self.poll_write_inner(wcx) {
            Poll::Pending if self.conn.state() != crate::State::Open => {
                if self.poll_timer(wcx).is_ready() && self.conn.should_shutdown() {
                    // The reader gets the timeout from `self.error`.
                    self.give_up();
                    return Poll::Ready(Err(Error::Timeout(crate::error::TimeoutKind::Close)));
                }
                Poll::Pending
            }
            other => other,
        }
    }

    fn poll_write_inner(&mut self, wcx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        while self.conn.transmit_len() > 0 {
            if self.shut_down {
                return Poll::Ready(Err(Error::Closed));
            }
            let n = if self.io.is_write_vectored() {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let count = self.conn.transmit_chunks(&mut slices);
                ready!(Pin::new(&mut self.io).poll_write_vectored(wcx, &slices[..count]))?
            } else {
                let mut slices = [IoSlice::new(&[])];
                self.conn.transmit_chunks(&mut slices);
                ready!(Pin::new(&mut self.io).poll_write(wcx, &slices[0]))?
            };
            if n == 0 {
                return Poll::Ready(Err(Error::Io(std::io::ErrorKind::WriteZero.into())));
            }
            self.conn.advance_transmit(n);
        }
        Poll::Ready(Ok(()))
    }

    /// The connection is over with output the peer never took (the close
    /// timeout passed while the transport pushed back): the rest is
    /// discarded, the abort hook resets the transport (so the kernel drops
    /// its send buffer too), and the stream ends.
    fn give_up(&mut self) {
        if self.conn.transmit_len() > 0 {
            self.conn.discard_transmit();
            if let Some(abort) = self.abort {
                abort(&self.io);
            }
            tracing::debug!("close timeout with unwritten output: transport aborted");
        }
        self.shut_down = true;
        self.end();
    }

    /// Writes everything, then flushes the transport. With the reader
    /// parked too (it holds no buffer), the written-out buffers are let go:
    /// a socket that answered and went quiet holds none.
    pub(crate) fn poll_flush(&mut self, wcx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.tick();
        ready!(self.poll_write_out(wcx))?;
        #[cfg(feature = "metrics")]
        self.conn.publish_traffic();
        if self.read_buf.capacity() == 0 {
            self.conn.release_idle_memory();
        }
        if !self.shut_down {
            ready!(Pin::new(&mut self.io).poll_flush(wcx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// Applies a close requested through a `CloseHandle`. Inlined, it is one
    /// atomic load when there is none (it runs on every message, twice for
    /// an echo); the rest is [`apply_close_request`](Self::apply_close_request).
    #[inline]
    fn take_close_request(&mut self) {
        if self.close_request.as_ref().is_some_and(|r| r.is_pending()) {
            self.apply_close_request();
        }
    }

    #[inline(never)]
    fn apply_close_request(&mut self) {
        let Some(frame) = self.close_request.as_ref().and_then(|r| r.take()) else {
            return;
        };
        if self.conn.state() == crate::State::Open {
            let _ = self.conn.close(frame.code, frame.reason.as_str());
            self.tick();
        }
    }

    /// Called before returning `Pending`: lets a `CloseHandle` wake this
    /// task. The waker is registered only here, not on every poll (that cost
    /// 7 % of the CPU of a 20-byte echo). Returns whether a close came in
    /// meanwhile: the caller then polls again instead of waiting.
    fn close_arrived_before_wait(&self, cx: &Context<'_>) -> bool {
        self.close_request.as_ref().is_some_and(|r| r.register(cx))
    }

    /// Sink readiness: below the high-water mark (writing to get there).
    pub(crate) fn poll_ready(&mut self, wcx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            self.take_close_request();
            if self.done || self.conn.state() != crate::State::Open {
                return Poll::Ready(Err(Error::Closed));
            }
            if self.conn.transmit_len() >= self.conn.config().write_high_water_mark() {
                match self.poll_write_out(wcx) {
                    Poll::Pending if self.close_arrived_before_wait(wcx) => continue,
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {}
                }
            }
            return Poll::Ready(Ok(()));
        }
    }

    pub(crate) fn start_send(&mut self, message: Message) -> Result<(), Error> {
        self.conn.send(message)
    }

    /// Sends our close frame (if not yet sent) and writes it out.
    pub(crate) fn poll_send_close(&mut self, wcx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.conn.state() == crate::State::Open {
            self.conn.close(crate::CloseCode::NORMAL, "")?;
        }
        match ready!(self.poll_flush(wcx)) {
            // The transport is already closed: the close is as done as it gets.
            Err(Error::Closed) => Poll::Ready(Ok(())),
            other => Poll::Ready(other),
        }
    }

    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.tick();
        let Some(at) = self.conn.poll_timeout() else {
            self.timer_at = None;
            return Poll::Pending;
        };
        let deadline = TokioInstant::from_std(at);
        match &mut self.timer {
            Some(_) if self.timer_at == Some(at) => {}
            Some(sleep) => sleep.as_mut().reset(deadline),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
        self.timer_at = Some(at);
        let Some(sleep) = self.timer.as_mut() else {
            return Poll::Pending;
        };
        ready!(sleep.as_mut().poll(cx));
        self.timer_at = None;
        if let Err(e) = self.conn.handle_timeout(now()) {
            self.error.get_or_insert(e);
        }
        Poll::Ready(())
    }

    /// The next message. `cx` is used for reading and timers, `wcx` for
    /// writing replies (the two differ when the socket is split).
    pub(crate) fn poll_next_message(
        &mut self,
        cx: &mut Context<'_>,
        wcx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, Error>>> {
        loop {
            self.take_close_request();
            match self.poll_next_inner(cx, wcx) {
                Poll::Pending if self.close_arrived_before_wait(cx) => {}
                other => return other,
            }
        }
    }

    fn poll_next_inner(
        &mut self,
        cx: &mut Context<'_>,
        wcx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, Error>>> {
        loop {
            if let Some(message) = self.conn.poll_event() {
                return Poll::Ready(Some(Ok(message)));
            }
            if self.done {
                return Poll::Ready(self.error.take().map(Err));
            }

            // Frames already buffered are processed before anything is
            // written: the replies to a whole read batch leave in one write.
            if self.input_pending && self.error.is_none() {
                self.handle_input();
                continue;
            }
            // Replies (pongs, close) and data fed but not flushed go out
            // before we wait for input; while input keeps coming, after it.
            if self.conn.transmit_len() > 0
                && !self.shut_down
                && !self.defer_write()
                && let Poll::Ready(Err(e)) = self.poll_write_out(wcx)
            {
                return Poll::Ready(self.end_with_io_error(e));
            }
            if self.conn.should_shutdown() {
                if self.conn.transmit_len() > 0 && !self.shut_down {
                    // Timed out with output the peer never took.
                    self.give_up();
                    continue;
                }
                if !self.shut_down {
                    match Pin::new(&mut self.io).poll_shutdown(wcx) {
                        Poll::Pending if self.error.is_none() => return Poll::Pending,
                        // The peer may already be gone; the connection is over either way.
                        _ => self.shut_down = true,
                    }
                }
                self.end();
                continue;
            }
            if let Some(e) = self.error.take() {
                return Poll::Ready(Some(Err(e)));
            }
            if self.poll_timer(cx).is_ready() {
                continue;
            }
            if self.read_eof {
                // Waiting for output to drain or for a timer.
                return Poll::Pending;
            }

            let read = match self.poll_read_input(cx) {
                Poll::Pending => {
                    if self.read_buf.is_empty() {
                        self.park_read();
                    }
                    if std::mem::take(&mut self.read_more) && self.conn.transmit_len() > 0 {
                        // Nothing more came: write what waited for it.
                        continue;
                    }
                    // The socket waits: what it counted shows now.
                    #[cfg(feature = "metrics")]
                    self.conn.publish_traffic();
                    return Poll::Pending;
                }
                Poll::Ready(read) => read,
            };
            self.read_more = matches!(read, Ok(n) if n > 0);
            match read {
                Ok(0) => {
                    self.read_eof = true;
                    if let Err(e) = self.conn.handle_eof() {
                        self.error.get_or_insert(e);
                    }
                }
                Ok(_) => self.handle_input(),
                Err(e) => return Poll::Ready(self.end_with_io_error(Error::Io(e))),
            }
        }
    }

    /// One read of input into `read_buf`, sized for what is arriving.
    ///
    /// Not inlined: a read while nothing is buffered goes to a 32 KiB stack
    /// buffer, and this keeps that buffer in this function's frame. Inlined
    /// into the message loop, which runs once per message, it made every
    /// message probe the 32 KiB of stack page by page (8 stores and a loop,
    /// a tenth of the loop's own instructions on a 20-byte echo).
    #[inline(never)]
    fn poll_read_input(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.read_buf.is_empty() && self.read_size <= STACK_READ {
            // Nothing partial is buffered: read into the stack, so a socket
            // waiting for input holds no read buffer.
            let mut scratch = [MaybeUninit::<u8>::uninit(); STACK_READ];
            let mut into = ReadBuf::uninit(&mut scratch);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut into))?;
            let n = into.filled().len();
            if n == STACK_READ {
                // More is probably waiting: read it in one go, into room
                // reserved now, so these bytes are not copied again when the
                // next read grows it.
                self.read_size = 2 * STACK_READ;
                self.read_buf.reserve(n + self.read_size);
            }
            self.read_buf.extend_from_slice(into.filled());
            Poll::Ready(Ok(n))
        } else {
            let want = self
                .conn
                .read_hint()
                .clamp(MIN_READ, MAX_READ)
                .max(self.read_size);
            if self.read_buf.capacity() - self.read_buf.len() < want {
                self.read_buf.reserve(want);
            }
            let room = self.read_buf.capacity() - self.read_buf.len();
            let n = ready!(poll_read_buf(
                Pin::new(&mut self.io),
                cx,
                &mut self.read_buf
            ))?;
            if n == room {
                self.read_size = (2 * self.read_size).min(MAX_BURST_READ);
            }
            Poll::Ready(Ok(n))
        }
    }

    /// Whether pending output waits for the next read: only while input
    /// keeps coming on an open connection, and below [`WRITE_BATCH`]
    /// (closing replies and timeouts never wait).
    fn defer_write(&self) -> bool {
        self.read_more
            && self.error.is_none()
            && self.conn.state() == crate::State::Open
            && self.conn.transmit_len() < WRITE_BATCH
    }

    /// The transport failed: the stream ends. Once the close handshake is
    /// over (or the connection already failed), that is how a peer that
    /// closes abruptly looks, not a new error; a pending error still comes
    /// first.
    fn end_with_io_error(&mut self, e: Error) -> Option<Result<Message, Error>> {
        self.shut_down = true;
        self.end();
        let pending = self.error.take();
        if self.conn.state() == crate::State::Closed {
            pending.map(Err)
        } else {
            Some(Err(pending.unwrap_or(e)))
        }
    }

    /// Processes bytes handed over with the transport (read past the
    /// handshake by whoever performed it).
    pub(crate) fn process_initial(&mut self) {
        if !self.read_buf.is_empty() {
            self.handle_input();
        }
    }
}

impl<S> Driver<S> {
    /// Reports how the socket ended, once: a `debug` event with the close
    /// code (the first close frame's, 1005 for one without a code, 1006
    /// when there was none) and who sent it, recorded on the current span
    /// too (its `close_code` and `close_initiator` fields, where it has
    /// them: sockeye-hyper's `websocket` span does); with feature
    /// `metrics`, `sockeye_socket_closes_total`.
    fn report_end(&mut self) {
        if std::mem::replace(&mut self.end_reported, true) {
            return;
        }
        let (code, initiator) = self.conn.close_outcome();
        let code_number = code.unwrap_or(crate::CloseCode::ABNORMAL).as_u16();
        let span = tracing::Span::current();
        span.record("close_code", code_number);
        span.record("close_initiator", initiator.as_str());
        tracing::debug!(
            role = crate::observe::role_label(self.conn.role()),
            close_code = code_number,
            close_initiator = initiator.as_str(),
            "websocket closed"
        );
        #[cfg(feature = "metrics")]
        {
            self.conn.publish_traffic();
            crate::observe::closed(self.conn.role(), code, initiator);
        }
    }
}

/// A socket dropped before its stream ended (its task aborted, the
/// application done with it) is reported here.
impl<S> Drop for Driver<S> {
    fn drop(&mut self) {
        self.report_end();
    }
}

#[cfg(test)]
mod tests {
    use futures_util::{FutureExt, SinkExt};

    use crate::{Config, Message, Role, WebSocket};

    /// After a burst (small messages and a large one, both ways), a server
    /// socket waiting for input holds no read or write buffer.
    #[tokio::test]
    async fn an_idle_socket_releases_its_buffers() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut server = WebSocket::from_raw_socket(a, Role::Server, Config::default());
        let mut client = WebSocket::from_raw_socket(b, Role::Client, Config::default());
        let mut sent = Vec::new();
        for i in 0..40 {
            sent.push(Message::text(format!("message {i}")));
        }
        sent.push(Message::binary(vec![7u8; 300_000]));
        for m in &sent {
            client.send(m.clone()).await.unwrap();
        }
        for m in &sent {
            let got = server.recv().await.unwrap().unwrap();
            assert_eq!(&got, m);
            server.send(got).await.unwrap();
        }
        for m in &sent {
            assert_eq!(&client.recv().await.unwrap().unwrap(), m);
        }
        // Nothing to read: the server parks, and lets its buffers go.
        assert!(server.recv().now_or_never().is_none());
        assert_eq!(server.driver.read_buf.capacity(), 0);
        assert_eq!(server.driver.conn.buffer_capacity(), 0, "bytes held");
        // And it still works afterwards.
        client.send("again").await.unwrap();
        assert_eq!(
            server.recv().await.unwrap().unwrap(),
            Message::text("again")
        );
    }

    /// A socket whose reader is parked and which then writes (a reply, a
    /// push: what a pub/sub subscriber gets) holds no write buffer once
    /// the write is flushed.
    #[tokio::test]
    async fn a_socket_that_writes_while_its_reader_waits_releases_the_write_buffer() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut server = WebSocket::from_raw_socket(a, Role::Server, Config::default());
        let mut client = WebSocket::from_raw_socket(b, Role::Client, Config::default());
        assert!(server.recv().now_or_never().is_none());
        assert_eq!(server.driver.read_buf.capacity(), 0);
        for i in 0..3 {
            server
                .send(Message::text(format!("push {i}")))
                .await
                .unwrap();
            assert_eq!(
                client.recv().await.unwrap().unwrap(),
                Message::text(format!("push {i}"))
            );
            assert_eq!(
                server.driver.conn.buffer_capacity(),
                0,
                "bytes held after push {i}"
            );
        }
    }

    /// A close asked for through a `CloseHandle` wakes the task waiting in
    /// `recv` (parked on the read) and the task waiting in `feed` (parked
    /// above the high-water mark on a peer that reads nothing), although
    /// neither registers its waker on every poll.
    #[tokio::test]
    async fn a_close_handle_wakes_a_parked_reader_and_a_parked_writer() {
        use crate::{CloseCode, Error};

        // Reader parked.
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut ws = WebSocket::from_raw_socket(a, Role::Server, Config::default());
        let handle = ws.close_handle();
        let reader = tokio::spawn(async move { ws.recv().await.map(|r| r.is_ok()) });
        tokio::task::yield_now().await;
        assert!(!reader.is_finished());
        handle.close(CloseCode::GOING_AWAY, "bye");
        // The close frame goes out, the client answers it, and the reader
        // gets that answer.
        let mut client = WebSocket::from_raw_socket(b, Role::Client, Config::default());
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), client.recv())
            .await
            .expect("the close frame was sent")
            .unwrap()
            .unwrap();
        assert!(matches!(got, Message::Close(Some(f)) if f.code == CloseCode::GOING_AWAY));
        assert!(client.recv().await.is_none());
        let end = tokio::time::timeout(std::time::Duration::from_secs(5), reader)
            .await
            .expect("the reader was woken")
            .unwrap();
        assert_eq!(end, Some(true));

        // Writer parked above the high-water mark (in `poll_ready`: `feed`
        // queues without flushing).
        let (a, _b) = tokio::io::duplex(1024);
        let config = Config::builder().write_high_water_mark(4096).build();
        let mut ws = WebSocket::from_raw_socket(a, Role::Server, config);
        let handle = ws.close_handle();
        let writer = tokio::spawn(async move {
            loop {
                if let Err(e) = ws.feed(Message::binary(vec![0u8; 1000])).await {
                    return e;
                }
            }
        });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!writer.is_finished(), "the writer should be blocked");
        handle.close(CloseCode::GOING_AWAY, "bye");
        let err = tokio::time::timeout(std::time::Duration::from_secs(5), writer)
            .await
            .expect("the writer was woken")
            .unwrap();
        assert!(matches!(err, Error::Closed), "{err:?}");
    }

    /// A transport that counts the reads and the writes made on it, and
    /// can hand out at most `max_read` bytes per read.
    struct Counting {
        inner: tokio::io::DuplexStream,
        max_read: usize,
        reads: usize,
        writes: usize,
    }

    impl Counting {
        fn new(inner: tokio::io::DuplexStream) -> Self {
            Self {
                inner,
                max_read: usize::MAX,
                reads: 0,
                writes: 0,
            }
        }
    }

    impl tokio::io::AsyncRead for Counting {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            self.reads += 1;
            let mut part = vec![0u8; buf.remaining().min(self.max_read)];
            let mut into = tokio::io::ReadBuf::new(&mut part);
            let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, &mut into);
            buf.put_slice(into.filled());
            polled
        }
    }

    impl tokio::io::AsyncWrite for Counting {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.poll_write_vectored(cx, &[std::io::IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.writes += 1;
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            std::pin::Pin::new(&mut self.inner).poll_write(cx, &all)
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// A burst of messages that arrives in several reads is echoed in one
    /// write: output fed while reads keep returning input waits until a
    /// read finds nothing (it went out after each read before: 10 writes
    /// here).
    #[tokio::test]
    async fn a_burst_taken_in_several_reads_is_answered_in_one_write() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut io = Counting::new(a);
        io.max_read = 1100;
        let mut server = WebSocket::from_raw_socket(io, Role::Server, Config::default());
        let mut client = WebSocket::from_raw_socket(b, Role::Client, Config::default());
        for i in 0..10u8 {
            client.feed(Message::binary(vec![i; 1000])).await.unwrap();
        }
        client.flush().await.unwrap();
        for _ in 0..10 {
            let got = server.recv().await.unwrap().unwrap();
            server.feed(got).await.unwrap();
        }
        // The next read finds nothing: the ten replies go out, together.
        assert!(server.recv().now_or_never().is_none());
        assert!(server.driver.io.reads >= 10, "{}", server.driver.io.reads);
        assert_eq!(server.driver.io.writes, 1);
        for i in 0..10u8 {
            let got = client.recv().await.unwrap().unwrap();
            assert_eq!(got, Message::binary(vec![i; 1000]));
        }
    }

    /// Output past [`super::WRITE_BATCH`] does not wait for input that
    /// keeps coming: a large reply leaves while the reads still return
    /// input (here every read does, 1 100 bytes at a time).
    #[tokio::test]
    async fn a_large_reply_does_not_wait_for_more_input() {
        let (a, b) = tokio::io::duplex(4 << 20);
        let mut io = Counting::new(a);
        io.max_read = 1100;
        let mut server = WebSocket::from_raw_socket(io, Role::Server, Config::default());
        let mut client = WebSocket::from_raw_socket(b, Role::Client, Config::default());
        let big = Message::binary(vec![1u8; super::WRITE_BATCH]);
        client.feed(big.clone()).await.unwrap();
        for i in 0..20u8 {
            client.feed(Message::binary(vec![i; 1000])).await.unwrap();
        }
        client.flush().await.unwrap();
        let got = server.recv().await.unwrap().unwrap();
        server.feed(got).await.unwrap();
        for i in 0..20u8 {
            let got = server.recv().await.unwrap().unwrap();
            assert_eq!(got, Message::binary(vec![i; 1000]));
        }
        // Every read so far returned input, and the reply went out anyway.
        assert_eq!(server.driver.io.writes, 1);
        assert_eq!(client.recv().now_or_never().unwrap().unwrap().unwrap(), big);
    }

    /// A backlog of small frames is taken in reads that double while they
    /// come back full (32, 64, 128 KiB), not in 32 KiB steps; once
    /// the socket waits, it holds no buffer and starts small again.
    #[tokio::test]
    async fn a_backlog_is_read_in_growing_reads() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut server =
            WebSocket::from_raw_socket(Counting::new(a), Role::Server, Config::default());
        let mut client = WebSocket::from_raw_socket(b, Role::Client, Config::default());
        // 240 frames of 1 KiB: about 250 KiB waiting at once.
        for i in 0..240u32 {
            client
                .feed(Message::binary(vec![i as u8; 1024]))
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
        for i in 0..240u32 {
            let got = server.recv().await.unwrap().unwrap();
            assert_eq!(got, Message::binary(vec![i as u8; 1024]));
        }
        // 32 + 64 + 128 + 128 KiB covers it: at most 6 reads (without the
        // growth this took 8).
        let reads = server.driver.io.reads;
        assert!(reads <= 6, "{reads} reads");
        assert!(server.recv().now_or_never().is_none());
        assert_eq!(server.driver.read_buf.capacity(), 0);
        assert_eq!(server.driver.read_size, super::STACK_READ);
    }
}
