//! # sockeye-proto
//!
//! RFC 6455 WebSocket as a sans-IO core, plus an async driver over tokio.
//!
//! The core turns bytes into messages and messages into bytes; it owns no
//! socket, starts no task and reads no clock. Everything that needs time
//! (keepalive pings, the pong, idle and close timeouts) is a timer inside the
//! core that the driver feeds with `now`, so every rule is testable
//! deterministically and the same core can be driven by any runtime.
//!
//! ```text
//!            bytes in                    messages out
//!  socket ──► handle_read ─┐         ┌─► poll_event ──► application
//!                          │Connection│
//!  socket ◄── transmit ◄───┘         └─◄ send / close ◄── application
//!                    ▲ handle_timeout(now) / poll_timeout
//!                    └──────────── driver's timer
//! ```
//!
//! | layer | items |
//! |---|---|
//! | wire | [`frame`], [`mask`], [`utf8`], [`close`](CloseCode) |
//! | handshake as data | [`handshake::server::validate`], [`handshake::client::ClientRequest`], [`handshake::http1`] |
//! | extensions | [`Extension`], [`ServerExtension`], [`ClientExtension`], [`extension::ExtensionItem`] |
//! | state machine | [`Connection`], [`Config`], [`PreparedMessage`] |
//! | tokio driver (feature `tokio`) | `WebSocket<S>`, `accept`, `Acceptor`, `client_handshake` |
//!
//! ## Features
//!
//! | feature | default | enables |
//! |---|---|---|
//! | `tokio` | yes | `WebSocket<S>` over `AsyncRead + AsyncWrite`, the raw server accept and the raw client handshake |
//! | `metrics` | no | the counters below, through the `metrics` facade |
//!
//! Without default features the crate is the sans-IO core only.
//!
//! ## Metrics
//!
//! With feature `metrics`, for whatever recorder the application installs
//! (Prometheus, StatsD, ...); `role` is `server` or `client`:
//!
//! | name | labels | counts |
//! |---|---|---|
//! | `sockeye_messages_total` | `role`, `direction`: `in`/`out`, `kind`: `text`/`binary` | data messages handed to the application by [`Connection::poll_event`] (so by `WebSocket`'s `recv`/`next`), and queued by it with `send`/`feed` or `send_prepared`/`feed_prepared`; pings, pongs and closes are not messages here |
//! | `sockeye_payload_bytes_total` | `role`, `direction`: `in`/`out` | the application payload bytes of those messages, after decompression (in) and before compression (out) |
//! | `sockeye_socket_closes_total` | `role`, `code`, `initiator`: `local`/`remote`/`none` | sockets over (feature `tokio`: counted by `WebSocket<S>`, once each, when its stream ends or when it is dropped before that) |
//!
//! `initiator` is the end that sent the first close frame, whether or not
//! the other end answered it before the transport ended: `local` for a
//! close the application asked for (or a `CloseHandle`, a drain), an idle
//! timeout, or a failure (a protocol error closes with 1002, an oversized
//! message with 1009, an unanswered keepalive with 1011); `remote` for the
//! peer's close; `none` when no close frame went either way (the peer's
//! EOF or reset, an I/O error, a socket dropped or its task aborted while
//! open), counted with `code` 1006. `code` is the first close frame's code
//! (1005 for a peer's close without one): 1000–1015 as their number,
//! 3000–4999 as `application`, anything else as `other`, so the label set
//! stays bounded. No label carries a peer address or a close reason.
//!
//! Each connection registers its message and byte counters when it is
//! made and keeps the handles, so a message costs no lookup. It counts in
//! plain integers and adds to the counters (atomics shared by every
//! connection with the same labels) in batches: when a `WebSocket` waits
//! for input or finishes a flush, every 64 messages, when its stream ends
//! and when it is dropped; a sans-IO [`Connection`] publishes in
//! [`Connection::release_idle_memory`], every 64 messages and on drop. A
//! socket that is waiting therefore shows every message it handled, and a
//! burst of messages costs a few atomic increments instead of two per
//! message. Without the feature nothing is compiled in.
//!
//! ## Tracing
//!
//! When a `WebSocket<S>` ends (its stream ends, or it is dropped before
//! that), it emits one `debug` event, "websocket closed", with `role`,
//! `close_code` (as above, 1006 when no close frame went either way) and
//! `close_initiator`, and records `close_code` and `close_initiator` on the
//! current span if the span declares them (sockeye-hyper's per-socket
//! `websocket` span does, and so does [`Accepted::span`] for the raw accept
//! path), so a span's close shows how its socket ended.
//! Errors are logged where they are decided, at `debug` (a peer's bad
//! frame is the peer's problem, not the server's).
//!
//! ## Strictness
//!
//! Every protocol violation fails the connection with the right close code:
//! reserved opcodes and RSV bits no extension owns, unmasked client frames
//! and masked server frames, fragmented or oversized control frames, bad
//! continuation order, non-minimal and top-bit lengths (1002); invalid UTF-8
//! in text or close reasons, detected at the first bad byte even inside a
//! frame still arriving (1007); frames or messages over the limits (1009);
//! messages in too many fragments (1008). Close codes that may never be on
//! the wire (below 1000, 1004–1006, 1015, 1016–2999, 5000 and up) are
//! rejected with 1002.
//!
//! ## Close codes sockeye sends
//!
//! | code | when |
//! |---|---|
//! | 1000 | `close()` without a code, and `Sink::close` |
//! | 1001 | idle timeout |
//! | 1002 | any protocol violation above |
//! | 1007 | invalid UTF-8 (text message or close reason), undecodable extension data |
//! | 1008 | more fragments than `max_fragments` |
//! | 1009 | a frame over `max_frame_size`, a message over `max_message_size` (also after decompression) |
//! | 1011 | keepalive ping unanswered within the pong timeout |
//! | the peer's code | echoed when the peer starts the close handshake |
//!
//! ## Limits
//!
//! See [`Config`] for every limit and its default.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod close;
mod config;
mod conn;
mod error;
pub mod extension;
pub mod frame;
pub mod handshake;
pub mod mask;
mod message;
#[cfg(any(feature = "tokio", feature = "metrics"))]
mod observe;
pub mod utf8;

#[cfg(feature = "tokio")]
mod io;

pub use close::{CloseCode, CloseFrame};
pub use config::{Config, ConfigBuilder};
pub use conn::{Connection, Role, State};
pub use error::{
    CapacityError, Error, ExtensionError, HandshakeError, ProtocolViolation, TimeoutKind,
};
pub use extension::{ClientExtension, Extension, ServerExtension};
pub use message::{Message, PreparedMessage};
pub use utf8::Utf8Bytes;

#[cfg(feature = "tokio")]
pub use io::{
    Accepted, Acceptor, CloseHandle, ReadHalf, ReunitError, WebSocket, WriteHalf, abort_tcp,
    accept, client_handshake, socket_span,
};
