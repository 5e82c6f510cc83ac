//! The transports that carry sessions: each depends on the hub and the
//! session, never the reverse.
//!
//! - `ws`: a WebSocket per session ([`Hub::serve`](crate::Hub::serve),
//!   [`Hub::session`](crate::Hub::session)) and, with feature `hyper`, the
//!   upgrade service that serves the hub on sockeye-hyper.
//! - `sse` (feature `hyper`): Server-Sent Events out, HTTP POST in, for
//!   clients that cannot open a WebSocket.

#[cfg(feature = "hyper")]
pub(crate) mod sse;
pub(crate) mod ws;
