//! The sans-IO connection: the RFC 6455 state machine after the handshake.
//!
//! [`Connection`] owns no socket and reads no clock. Bytes go in through
//! [`handle_read`](Connection::handle_read), the time through
//! [`handle_timeout`](Connection::handle_timeout); messages come out of
//! [`poll_event`](Connection::poll_event) and bytes to write out of
//! [`transmit_chunks`](Connection::transmit_chunks) /
//! [`poll_transmit`](Connection::poll_transmit).

mod close;
mod read;
mod timer;
mod write;

#[cfg(test)]
pub(crate) mod pair;

use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::Instant;

use bytes::{BufMut, Bytes};

use crate::close::{CloseCode, CloseFrame};
use crate::config::Config;
use crate::error::{CapacityError, Error};
use crate::extension::Extension;
use crate::frame::{MAX_CONTROL_PAYLOAD, OpCode, Rsv};
use crate::message::{Message, PreparedMessage};

use self::close::CloseState;
use self::read::ReadState;
use self::timer::Timers;
use self::write::OutBuf;

/// Which end of the connection this is. Clients mask what they send and
/// reject masked frames; servers require masked frames and never mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that sent the opening handshake.
    Client,
    /// The end that answered it.
    Server,
}

/// Where the close handshake stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// A close frame was sent or received, and the handshake is not complete.
    Closing,
    /// Both close frames were exchanged, or the connection failed, timed out
    /// or lost its transport. No more messages will be produced.
    Closed,
}

/// The WebSocket protocol state machine for one connection (sans-IO).
///
/// # Driving contract
///
/// A driver (such as [`WebSocket`](crate::WebSocket)) owns the transport and
/// a read buffer, and loops:
///
/// 1. **Read:** append bytes from the transport to a `BytesMut` and call
///    [`handle_read`](Self::handle_read). It consumes frames until one yields
///    a message (and processes partial text payloads in place, to fail fast on
///    invalid UTF-8), leaving the rest in the buffer. After draining the
///    events, call it again on the same buffer before reading more.
///    [`read_hint`](Self::read_hint) tells how many more bytes the current
///    frame needs. At end of stream call [`handle_eof`](Self::handle_eof).
/// 2. **Events:** drain [`poll_event`](Self::poll_event) until `None`.
/// 3. **Commands:** [`send`](Self::send), [`send_prepared`](Self::send_prepared)
///    and [`close`](Self::close) queue frames.
/// 4. **Time:** when [`needs_tick`](Self::needs_tick) is true after steps 1 and
///    3, call [`handle_timeout(now)`](Self::handle_timeout) once; then wait no
///    longer than [`poll_timeout`](Self::poll_timeout) and call
///    `handle_timeout(now)` again when that deadline passes.
/// 5. **Write:** write [`transmit_chunks`](Self::transmit_chunks) (vectored,
///    zero-copy) and report progress with
///    [`advance_transmit`](Self::advance_transmit), or move everything with
///    [`poll_transmit`](Self::poll_transmit).
/// 6. **Shut down:** when [`should_shutdown`](Self::should_shutdown) is true,
///    close the transport. A server does so as soon as the close handshake is
///    complete; a client waits for the server to close first, at most the
///    close timeout.
///
/// Any error returned by `handle_read` or `handle_timeout` has already failed
/// the connection: the close frame with [`Error::close_code`] is queued, and
/// input is ignored from then on. Keep writing until `should_shutdown`.
///
/// ```
/// use bytes::BytesMut;
/// use sockeye_proto::{Connection, Config, Message, Role};
///
/// let mut server = Connection::new(Role::Server, Config::default());
/// // A masked "Hello" text frame from a client (RFC 6455 §5.7).
/// let mut input = BytesMut::from(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58][..]);
/// server.handle_read(&mut input).unwrap();
/// assert_eq!(server.poll_event(), Some(Message::text("Hello")));
///
/// server.send(Message::text("Hi")).unwrap();
/// let mut out = Vec::new();
/// server.poll_transmit(&mut out);
/// assert_eq!(out, b"\x81\x02Hi");
/// ```
#[derive(Debug)]
pub struct Connection {
    role: Role,
    config: Config,
    extension: Option<Box<dyn Extension>>,
    read: ReadState,
    events: VecDeque<Message>,
    out: OutBuf,
    pending_pong: Option<Bytes>,
    close: CloseState,
    timers: Timers,
    /// Message and byte counters, registered once (feature `metrics`).
    #[cfg(feature = "metrics")]
    traffic: crate::observe::Traffic,
}

impl Connection {
    /// A connection in the open state, right after the opening handshake.
    pub fn new(role: Role, config: Config) -> Self {
        let timers = Timers::new(&config);
        Self {
            role,
            config,
            extension: None,
            read: ReadState::default(),
            events: VecDeque::new(),
            out: OutBuf::default(),
            pending_pong: None,
            close: CloseState::default(),
            timers,
            #[cfg(feature = "metrics")]
            traffic: crate::observe::Traffic::new(role),
        }
    }

    /// Installs the extension negotiated in the handshake.
    pub fn set_extension(&mut self, extension: Box<dyn Extension>) {
        self.extension = Some(extension);
    }

    /// The negotiated extension, if any.
    pub fn extension(&self) -> Option<&dyn Extension> {
        self.extension.as_deref()
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where the close handshake stands.
    pub fn state(&self) -> State {
        self.close.state()
    }

    /// How the close handshake ended: the code of the first close frame
    /// (ours or the peer's; 1005 when the peer's had no code), once both
    /// close frames were exchanged without a failure. `None` while open,
    /// after a failure, or when the transport closed first.
    ///
    /// A reconnecting client uses it to tell a normal close (1000) from a
    /// server going away (1001, 1012) that should be retried.
    pub fn close_code(&self) -> Option<CloseCode> {
        self.close
            .completed()
            .then_some(self.close.first_code)
            .flatten()
    }

    /// Who sent the first close frame and its code, for the socket's end
    /// report (`None` as the code: no close frame either way).
    #[cfg(feature = "tokio")]
    pub(crate) fn close_outcome(&self) -> (Option<CloseCode>, crate::observe::Initiator) {
        use crate::observe::Initiator;
        match self.close.first_code {
            None => (None, Initiator::None),
            Some(code) if self.close.peer_first => (Some(code), Initiator::Remote),
            Some(code) => (Some(code), Initiator::Local),
        }
    }

    // ===== events =====

    /// The next message from the peer: data, ping, pong or its close frame.
    ///
    /// Inlined to the emptiness check: a driver asks once more after the
    /// last message of a read, and that call costs no more than the check.
    #[must_use]
    #[inline]
    pub fn poll_event(&mut self) -> Option<Message> {
        if self.events.is_empty() {
            return None;
        }
        self.take_event()
    }

    fn take_event(&mut self) -> Option<Message> {
        let message = self.events.pop_front();
        #[cfg(feature = "metrics")]
        if let Some(m) = &message {
            self.traffic.received(m);
        }
        message
    }

    /// Whether messages are waiting in [`poll_event`](Self::poll_event).
    #[inline]
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    // ===== commands =====

    /// Queues a message. Data messages go through the extension and are
    /// split by [`auto_fragment_size`](crate::ConfigBuilder::auto_fragment_size);
    /// a `Close` message starts the close handshake like [`close`](Self::close).
    ///
    /// Fails with [`Error::Closed`] once a close frame was sent, and with
    /// [`CapacityError::WriteBufferFull`] while the outgoing buffer is above
    /// its high-water mark (write some of it first).
    pub fn send(&mut self, message: Message) -> Result<(), Error> {
        let (opcode, data) = match message {
            Message::Close(frame) => return self.close_with(frame),
            Message::Text(text) => (OpCode::Text, text.into_bytes()),
            Message::Binary(data) => (OpCode::Binary, data),
            Message::Ping(data) => (OpCode::Ping, data),
            Message::Pong(data) => (OpCode::Pong, data),
        };
        self.check_can_send()?;
        if opcode.is_control() {
            if data.len() > MAX_CONTROL_PAYLOAD {
                return Err(CapacityError::ControlFrameTooLong.into());
            }
            self.write_frame(true, Rsv::NONE, opcode, &data);
            Ok(())
        } else {
            #[cfg(feature = "metrics")]
            let len = data.len();
            self.send_data(opcode, data)?;
            #[cfg(feature = "metrics")]
            self.traffic.sent(opcode, len);
            Ok(())
        }
    }

    /// Queues a prepared message. A server writes its bytes as they are (the
    /// extension-encoded variant when the message has one under this
    /// connection's [shared encoding](Extension::shared_encoding)); a client
    /// re-frames the payload with a mask.
    pub fn send_prepared(&mut self, message: &PreparedMessage) -> Result<(), Error> {
        self.check_can_send()?;
        self.timers.on_data_sent();
        match self.role {
            Role::Server => {
                let shared = self
                    .extension
                    .as_ref()
                    .and_then(|e| e.shared_encoding())
                    .and_then(|key| message.encoded_frame(key));
                let frame = shared.unwrap_or(message.frame());
                self.out.push_bytes(frame.clone());
            }
            Role::Client => {
                let payload = message.payload();
                self.write_frame(true, Rsv::NONE, message.opcode(), &payload);
            }
        }
        #[cfg(feature = "metrics")]
        self.traffic.sent(message.opcode(), message.payload_len());
        Ok(())
    }

    /// Starts the close handshake with `code` and `reason` (cut to 123
    /// bytes). Calling it again once a close frame was sent does nothing.
    /// Codes that may not be sent (1005, 1006, 1015, <1000, ...) are refused.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.close_with(Some(CloseFrame::new(code, reason)))
    }

    fn close_with(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        if let Some(f) = &frame
            && !f.code.is_sendable()
        {
            return Err(Error::InvalidInput("this close code may not be sent"));
        }
        if !self.close.sent {
            self.write_close(frame);
        }
        Ok(())
    }

    fn check_can_send(&self) -> Result<(), Error> {
        if self.close.sent || self.close.is_terminated() {
            return Err(Error::Closed);
        }
        if self.out.len() >= self.config.write_high_water_mark() {
            return Err(CapacityError::WriteBufferFull.into());
        }
        Ok(())
    }

    /// Whether a data message can be queued now (below the high-water mark
    /// and not closing).
    pub fn can_send(&self) -> bool {
        self.check_can_send().is_ok()
    }

    // ===== output =====

    /// Bytes waiting to be written.
    pub fn transmit_len(&self) -> usize {
        self.out.len()
    }

    /// Fills `dst` with the pending output, in order, without copying;
    /// returns how many slices were filled.
    pub fn transmit_chunks<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        self.out.chunks_vectored(dst)
    }

    /// Marks `n` bytes of the pending output as written.
    pub fn advance_transmit(&mut self, n: usize) {
        self.out.advance(n);
        self.flush_pending_pong();
    }

    /// Drops the pending output unwritten: the transport is being given up
    /// (a peer that stopped reading, past the close timeout).
    pub fn discard_transmit(&mut self) {
        self.out.clear();
    }

    /// Frees the buffers the connection holds for traffic when it has none
    /// in flight: the output buffer once written out and the event queue
    /// once drained. Call it when the transport has nothing to read, so an
    /// idle connection costs only its state (the tokio driver does). With
    /// feature `metrics` it also publishes the message and byte counts the
    /// connection held back (it adds them to the counters in batches).
    ///
    /// ```
    /// use sockeye_proto::{Config, Connection, Message, Role};
    ///
    /// let mut conn = Connection::new(Role::Server, Config::default());
    /// conn.send(Message::text("hello")).unwrap();
    /// let mut wire = Vec::new();
    /// conn.poll_transmit(&mut wire);
    /// conn.release_idle_memory();
    /// assert_eq!(conn.transmit_len(), 0);
    /// ```
    pub fn release_idle_memory(&mut self) {
        #[cfg(feature = "metrics")]
        self.traffic.publish();
        self.out.release_if_empty();
        // The event slots go too (four messages' worth after the first
        // read): an allocation per burst of input costs less than what
        // thousands of idle sockets would keep.
        if self.events.is_empty() {
            self.events = VecDeque::new();
        }
    }

    /// Adds the message and byte counts held back to the `metrics`
    /// counters (they are published in batches: here, every 64 messages,
    /// and when the connection is dropped).
    #[cfg(feature = "metrics")]
    #[inline]
    pub(crate) fn publish_traffic(&mut self) {
        self.traffic.publish();
    }

    /// Bytes allocated for output and events (tests check idle sockets).
    #[cfg(all(test, feature = "tokio"))]
    pub(crate) fn buffer_capacity(&self) -> usize {
        self.out.capacity() + self.events.capacity() * std::mem::size_of::<Message>()
    }

    /// Moves all pending output into `dst`; returns the number of bytes.
    pub fn poll_transmit(&mut self, dst: &mut impl BufMut) -> usize {
        let mut total = 0;
        while self.out.len() > 0 {
            let mut slices = [IoSlice::new(&[]); 16];
            let n = self.out.chunks_vectored(&mut slices);
            let mut written = 0;
            for s in &slices[..n] {
                dst.put_slice(s);
                written += s.len();
            }
            self.advance_transmit(written);
            total += written;
        }
        total
    }

    /// Whether the transport should be closed now: the close handshake is
    /// complete (for a client: and the server closed its side, or the close
    /// timeout passed), or the connection failed, and the output is written.
    pub fn should_shutdown(&self) -> bool {
        self.close.should_shutdown(self.role, self.out.len() == 0)
    }

    // ===== time =====

    /// Whether a timer is waiting to be armed or refreshed by a call to
    /// [`handle_timeout`](Self::handle_timeout).
    pub fn needs_tick(&self) -> bool {
        self.timers.needs_tick()
    }

    /// The next deadline at which [`handle_timeout`](Self::handle_timeout)
    /// must be called, if any timer is armed.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers
            .next_deadline(self.close.sent || self.close.received || self.close.is_terminated())
    }

    /// Tells the connection the time: arms timers requested since the last
    /// call and fires those due. A keepalive ping is queued when the peer was
    /// silent too long; the connection is failed (1011) when it stays silent
    /// past the pong timeout; an idle connection is closed (1001); and once
    /// the close timeout passes the transport should be shut down.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        self.on_timeout(now)
    }
}

#[cfg(test)]
mod tests;
