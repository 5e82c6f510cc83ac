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
//!
//! ## Metrics
//!
//! [`Hub::metrics`] returns the hub's counters at any time. With feature
//! `metrics` the same events go through the `metrics` facade too, for
//! whatever recorder the application installs, beside the sockets' own
//! counters (sockeye-proto, sockeye-hyper, sockeye-deflate, sockeye-auth):
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `sockeye_pubsub_publications_total` | counter | |
//! | `sockeye_pubsub_deliveries_total` | counter | |
//! | `sockeye_pubsub_drops_total` | counter | `policy`: `disconnect`, `drop_newest`, `drop_oldest`, `keep_latest` |
//! | `sockeye_pubsub_slow_disconnects_total` | counter | `reason`: `slow_consumer`, `queue_bound` |
//! | `sockeye_pubsub_queued_bytes` | gauge | |
//! | `sockeye_pubsub_sessions` | gauge | |
//! | `sockeye_pubsub_history_evictions_total` | counter | `reason`: `budget`, `ttl`, `size` |
//! | `sockeye_pubsub_history_bytes` | gauge | (memory broker) |
//! | `sockeye_pubsub_broker_reconnects_total` | counter | `broker`: `redis`, `nats` |
//!
//! A publication's deliveries, and the bytes they add to the subscribers'
//! queues, are counted once its fan-out is over, not per subscriber: while
//! a fan-out is under way the queued-bytes gauge may trail the writers,
//! which take their bytes off as they go, by that publication's bytes. The
//! counters updated per publication or per write keep the handles they
//! were registered with at the hub's first publication or write: install
//! the recorder before traffic starts.
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
