//! The tokio driver: [`WebSocket<S>`] over any `AsyncRead + AsyncWrite`
//! transport, the raw server accept ([`Acceptor`]) and the raw client
//! handshake ([`client_handshake`]).

mod accept;
mod client;
mod driver;
mod handle;
mod split;

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;

use self::driver::Driver;
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::close::CloseCode;
use crate::config::Config;
use crate::conn::{Connection, Role, State};
use crate::error::Error;
use crate::message::{Message, PreparedMessage};

pub use self::accept::{Accepted, Acceptor, accept, socket_span};
pub use self::client::client_handshake;
pub use self::handle::CloseHandle;
pub use self::split::{ReadHalf, ReunitError, WriteHalf};

/// A WebSocket connection over a tokio transport: a [`Stream`] of incoming
/// messages and a [`Sink`] of outgoing ones.
///
/// - Reading answers pings and close frames by itself, and writes out
///   anything queued but not yet flushed before it waits for input, so
///   `feed` + `next` batches replies into few writes.
/// - `send` (inherent, or `SinkExt::send`) queues and flushes; `feed`
///   queues only. Small frames fed together leave in one write; large
///   payloads leave by vectored writes without being copied.
/// - [`split`](Self::split) gives halves that live in different tasks; the
///   read half keeps answering pings and close frames while the write half
///   is idle.
/// - After an error, keep reading until `None`: that finishes the close
///   handshake the error started (the close frame with the right code is
///   already queued).
///
/// ```no_run
/// use futures_util::{SinkExt, StreamExt};
/// use sockeye_proto::{Message, accept};
/// use tokio::net::TcpListener;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = TcpListener::bind("127.0.0.1:9001").await?;
/// let (tcp, _) = listener.accept().await?;
/// let mut ws = accept(tcp).await?;
/// while let Some(msg) = ws.next().await {
///     match msg? {
///         m @ (Message::Text(_) | Message::Binary(_)) => ws.feed(m).await?,
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
///
/// # Cancel safety
///
/// All state lives in the `WebSocket`, never in a future, so dropping a
/// future loses no byte that was read.
///
/// | method | cancel safe | if the future is dropped |
/// |---|---|---|
/// | `next()` / [`recv`](Self::recv) | yes | nothing is lost: a half-read frame stays buffered and the next call resumes it |
/// | [`send`](Self::send) / `SinkExt::send` | the message is queued or not at all | dropped before queueing: not sent; after: queued, goes out with the next write |
/// | `feed` | as `send` | as `send` |
/// | [`flush`](Self::flush) | yes | queued bytes stay queued |
/// | [`close`](Self::close) | yes | the close frame stays queued; reading on completes the handshake |
#[derive(Debug)]
pub struct WebSocket<S> {
    driver: Driver<S>,
}

impl<S> WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// A connection over a transport on which the handshake is already done.
    pub fn from_raw_socket(io: S, role: Role, config: Config) -> Self {
        Self::from_connection(io, Connection::new(role, config), BytesMut::new())
    }

    /// A connection from a prepared state machine (with its extension), and
    /// the bytes already read from the transport past the handshake, which
    /// are processed before anything else is read. The state machine is
    /// kept boxed (pass a `Box<Connection>` to avoid moving it again), so the
    /// socket itself stays small inside the task that owns it.
    pub fn from_connection(io: S, conn: impl Into<Box<Connection>>, read_buf: BytesMut) -> Self {
        let mut driver = Driver::new(io, conn.into(), read_buf);
        driver.process_initial();
        Self { driver }
    }

    /// The next message; `None` once the connection has ended (after the
    /// peer's close frame, or after an error).
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.driver.poll_next_message_single(cx)).await
    }

    /// Queues a message and flushes.
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        let message = message.into();
        poll_fn(|cx| self.driver.poll_ready(cx)).await?;
        self.driver.start_send(message)?;
        self.flush().await
    }

    /// Queues a prepared message (framed once for many sockets) and flushes.
    pub async fn send_prepared(&mut self, message: &PreparedMessage) -> Result<(), Error> {
        self.feed_prepared(message).await?;
        self.flush().await
    }

    /// Queues a prepared message without flushing (waits only while the
    /// write buffer is above its high-water mark), like `SinkExt::feed`.
    pub async fn feed_prepared(&mut self, message: &PreparedMessage) -> Result<(), Error> {
        poll_fn(|cx| self.driver.poll_ready(cx)).await?;
        self.driver.conn.send_prepared(message)
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.driver.poll_flush(cx)).await
    }

    /// Performs the close handshake: sends a close frame with `code` and
    /// `reason` (if none was sent yet), then reads, dropping messages, until
    /// the peer's close arrives and the transport is closed, or the close
    /// timeout passes.
    ///
    /// Messages the peer sent before its close are dropped here (as by
    /// `SinkExt::close`). To keep them, send the close as a message and
    /// read on until `None`; the close timeout still bounds the wait:
    ///
    /// ```no_run
    /// # async fn f(mut ws: sockeye_proto::WebSocket<tokio::net::TcpStream>) -> Result<(), sockeye_proto::Error> {
    /// use sockeye_proto::{CloseCode, Message};
    /// ws.send(Message::close(CloseCode::NORMAL, "done")).await?;
    /// while let Some(message) = ws.recv().await {
    ///     println!("{:?}", message?); // the last replies, then the peer's close
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        if self.driver.conn.state() == State::Open {
            self.driver.conn.close(code, reason)?;
        }
        poll_fn(|cx| self.poll_close_handshake(cx)).await
    }

    fn poll_close_handshake(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        std::task::ready!(self.driver.poll_send_close(cx))?;
        loop {
            match std::task::ready!(self.driver.poll_next_message_single(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// A handle that closes this socket from another task: the close frame
    /// goes out the next time the socket is polled (a reading task is woken).
    pub fn close_handle(&mut self) -> CloseHandle {
        let req = self
            .driver
            .close_request
            .get_or_insert_with(Default::default)
            .clone();
        CloseHandle::new(req)
    }

    /// Sets what is done to the transport when the connection is given up
    /// with output still unwritten: a peer that stopped reading while the
    /// close handshake waited, past the close timeout. The unwritten output
    /// is discarded and the stream ends either way; the hook makes closing
    /// the transport abortive, so that the kernel drops its send buffer too
    /// instead of holding it for a peer that never reads ([`abort_tcp`]
    /// for TCP, which [`accept`] and [`client_handshake`] set by themselves
    /// on a `TcpStream`).
    ///
    /// ```no_run
    /// # fn f(tcp: tokio::net::TcpStream) {
    /// use sockeye_proto::{Config, Role, WebSocket, abort_tcp};
    /// let mut ws = WebSocket::from_raw_socket(tcp, Role::Server, Config::default());
    /// ws.set_abort(abort_tcp);
    /// # }
    /// ```
    pub fn set_abort(&mut self, abort: fn(&S)) {
        self.driver.abort = Some(abort);
    }

    /// The state machine (for its state, configuration and extension).
    pub fn connection(&self) -> &Connection {
        &self.driver.conn
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.driver.io
    }

    /// The transport, mutably. Reading from or writing to it directly breaks
    /// the framing.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.driver.io
    }

    /// Splits into a read half and a write half that can move to different
    /// tasks. The read half answers pings and close frames by itself.
    pub fn split(self) -> (ReadHalf<S>, WriteHalf<S>) {
        split::split(self.driver)
    }

    pub(crate) fn from_driver(driver: Driver<S>) -> Self {
        Self { driver }
    }
}

/// Makes closing a TCP stream abortive (`SO_LINGER` 0): the kernel drops
/// what it still buffers for the peer and resets the connection. The abort
/// hook for a TCP transport (see [`WebSocket::set_abort`]).
pub fn abort_tcp(tcp: &tokio::net::TcpStream) {
    if let Err(e) = socket2::SockRef::from(tcp).set_linger(Some(std::time::Duration::ZERO)) {
        tracing::debug!(error = %e, "SO_LINGER 0 failed");
    }
}

/// [`abort_tcp`] when the transport is a `TcpStream`.
pub(crate) fn tcp_abort<S: 'static>() -> Option<fn(&S)> {
    use std::any::{Any, TypeId};
    (TypeId::of::<S>() == TypeId::of::<tokio::net::TcpStream>()).then_some(|io: &S| {
        if let Some(tcp) = (io as &dyn Any).downcast_ref::<tokio::net::TcpStream>() {
            abort_tcp(tcp);
        }
    })
}

impl<S> Driver<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_next_message_single(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, Error>>> {
        // One waker for both roles, borrowed: no clone per message.
        let waker = cx.waker();
        let mut rcx = Context::from_waker(waker);
        let mut wcx = Context::from_waker(waker);
        self.poll_next_message(&mut rcx, &mut wcx)
    }
}

impl<S> Stream for WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().driver.poll_next_message_single(cx)
    }
}

impl<S> Sink<Message> for WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().driver.poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        self.get_mut().driver.start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().driver.poll_flush(cx)
    }

    /// Sends a normal close (1000) unless a close was already sent, then
    /// completes the handshake as [`WebSocket::close`] does.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_close_handshake(cx)
    }
}
