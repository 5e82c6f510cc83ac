//! Topics and fan-out over WebSocket.
//!
//! A [`Hub`] serves sockets that speak a small JSON protocol
//! (`PROTOCOL.md`): subscribe, unsubscribe, publish, presence. Publications
//! are serialised once and framed once (compressed once with
//! permessage-deflate), then queued to each subscriber as a cheap clone.
//!
//! - Each socket has a bounded queue (1024 messages or 1 MiB by default);
//!   a namespace's [`SlowConsumer`] policy decides what happens past it, and
//!   publishing never waits on a subscriber.
//! - Namespaces opt into history: publications get an offset in a stream
//!   with an epoch, and a client that resubscribes with `since` receives what
//!   it missed, or is told recovery failed — never a partial replay.
//! - Presence lists members and announces joins and leaves.
//! - The [`Broker`] links nodes: [`MemoryBroker`] in one process,
//!   `RedisBroker` (feature `redis`) or `NatsBroker` (feature `nats`, no
//!   history) across processes, with one broker
//!   subscription per topic per node.
//!
//! ```no_run
//! use std::time::Duration;
//! use sockeye_pubsub::{Hub, Namespace};
//! # async fn run() -> std::io::Result<()> {
//! let hub = Hub::builder()
//!     .namespace("chat", Namespace::new().client_publish(true).history(1000, Duration::from_secs(600)).presence(true))
//!     .build();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9002").await?;
//! loop {
//!     let (tcp, _) = listener.accept().await?;
//!     let hub = hub.clone();
//!     tokio::spawn(async move {
//!         if let Ok(ws) = sockeye_proto::accept(tcp).await {
//!             hub.serve(ws, None).await;
//!         }
//!     });
//! }
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod authorizer;
pub mod broker;
#[cfg(feature = "hyper")]
pub mod client;
mod error;
mod hub;
mod metrics;
pub mod protocol;
mod queue;
mod session;
mod sync;
mod topic;
mod transport;

pub use authorizer::{Access, Action, AllowAll, Authorizer};
pub use broker::{
    Broker, BrokerEvent, BrokerHandler, HistoryStats, Member, MemoryBroker, Publication,
};
#[cfg(feature = "nats")]
pub use broker::{NatsBroker, NatsBrokerBuilder};
#[cfg(feature = "redis")]
pub use broker::{RedisBroker, RedisBrokerBuilder, RedisMode};
pub use error::{Error, ErrorCode};
pub use hub::{Hub, HubBuilder, SessionHandle};
pub use metrics::MetricsSnapshot;
pub use protocol::StreamPosition;
pub use session::RateLimit;
pub use topic::{History, HistoryBudget, Namespace, SlowConsumer, topic_namespace};
#[cfg(feature = "hyper")]
pub use transport::sse::SseService;
#[cfg(feature = "hyper")]
pub use transport::ws::HubHandler;
