//! # sockeye-deflate
//!
//! permessage-deflate (RFC 7692) for sockeye: whole-message DEFLATE on
//! flate2's zlib-rs backend (and, for fresh-history messages at level 1, a
//! one-shot encoder of its own), negotiated in both roles, as a tower layer in
//! front of the upgrade and as a plug-in for the raw accept path and the
//! client.
//!
//! - [`DeflateConfig`]: the policy (level, threshold, context takeover,
//!   window bits), the negotiation of all four parameters in both roles, and
//!   compress-once [`prepare`](DeflateConfig::prepare)d messages.
//! - [`DeflateLayer`]: a tower layer that parses the offer, records the
//!   agreement in the request's extensions and answers it in the 101.
//! - [`PerMessageDeflate`]: the [`Extension`](sockeye_proto::Extension) on a
//!   connection.
//!
//! Safety against bombs: inflation writes into a bounded room and stops one
//! byte past the connection's message-size limit (close 1009), whatever the
//! compression ratio; corrupt data closes with 1007.
//!
//! ```text
//! hyper ─► [Origin] ─► [Auth] ─► DeflateLayer ─► UpgradeService
//!                                   │ AgreedExtension ─► installed on the socket
//!                                   └ Sec-WebSocket-Extensions ─► added to the 101
//! ```
//!
//! The raw accept path takes the same config:
//! `sockeye_proto::Acceptor::new().extension(Arc::new(DeflateConfig::new()))`,
//! and a client offers it with
//! `ClientRequest::negotiate(Arc::new(DeflateConfig::new()))` (or
//! sockeye-hyper's `ClientBuilder::deflate`).
//!
//! ## Metrics
//!
//! With feature `metrics` (off by default), through the `metrics` facade:
//!
//! | name | labels | counts |
//! |---|---|---|
//! | `sockeye_deflate_bytes_total` | `direction`: `compress`/`decompress`, `stage`: `uncompressed`/`compressed` | message payload bytes on either side of the codec |
//!
//! `compress` counts each message a connection sends compressed (its
//! payload as `uncompressed`, the deflated bytes as `compressed`; messages
//! sent as they are, below the threshold or not shrinking, are not
//! counted) and each [`DeflateConfig::prepare`]d message once, however
//! many sockets it goes to. `decompress` counts each compressed frame
//! received (the bytes on the wire as `compressed`, what they inflate to
//! as `uncompressed`). `compressed / uncompressed` per direction is the
//! compression ratio. A connection registers its counters once, when the
//! extension is agreed; without the feature nothing is compiled in.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod codec;
mod config;
mod error;
mod layer;
#[cfg(feature = "metrics")]
mod observe;
mod oneshot;
mod params;
mod pool;

pub use codec::PerMessageDeflate;
pub use config::DeflateConfig;
pub use error::Error;
pub use layer::{Deflate, DeflateLayer, future};
pub use params::{Agreement, EXTENSION};

#[cfg(test)]
mod tests;
