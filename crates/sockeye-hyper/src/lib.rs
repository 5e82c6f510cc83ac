//! # sockeye-hyper
//!
//! WebSocket on hyper 1.x and axum, and a client for `ws://` and `wss://`.
//!
//! ## Server
//!
//! - [`server::upgrade`] turns a hyper request into the 101 response and a
//!   future of the socket, for hand-written services.
//! - [`server::UpgradeService`] is a tower `Service<Request<B>>` that
//!   upgrades WebSocket requests, runs a [`server::Handler`] per socket in its
//!   own task, and sends other requests to a fallback (426 by default), so
//!   one port serves a page and its socket. [`server::Callbacks`] gives the
//!   browser API's `onopen`/`onmessage`/`onclose` style on top.
//! - [`axum::WebSocketUpgrade`] (feature `axum`) is the same in axum's shape.
//! - [`server::Drain`] closes every socket with 1001 (or 1012) on shutdown
//!   and waits a bounded time for the close handshakes.
//! - WebSockets over HTTP/2 (feature `http2`, RFC 8441): the same service
//!   and extractor accept extended CONNECT requests (below).
//! - [`serve()`] (feature `serve`, on by default) runs a tower service or
//!   an axum `Router` on a `TcpListener` with the raw accept path's limits:
//!   handshake deadline, head size, header count, request target,
//!   connection caps overall and per IP, TLS handshake timeout, graceful
//!   shutdown. Prefer it to a hand-written hyper accept loop.
//! - Feature `metrics`: counters and gauges through the `metrics` facade
//!   (below).
//! - Tracing: each server socket's task runs in a `websocket` span (`role`,
//!   `transport`, `peer`, `protocol`, `extension`; never a credential), on
//!   which sockeye-proto records `close_code` and `close_initiator`
//!   (`local`, `remote` or `none`) when the socket ends, with a `debug`
//!   event "websocket closed". A client's `connect` runs in a
//!   `websocket_connect` span (`host`, `port`, `tls`, `transport`,
//!   `proxied`);
//!   its end event carries `role = "client"`.
//!
//! Tower layers go in front and decide before the upgrade: each records its
//! decision in the request's `http::Extensions` (an identity, the agreed
//! permessage-deflate parameters as
//! [`AgreedExtension`](sockeye_proto::extension::AgreedExtension)); the
//! upgrade executes it, and the handler sees the extensions.
//!
//! ```text
//! hyper http1 (with_upgrades) ─► [Origin] ─► [Auth] ─► [Deflate] ─► UpgradeService ─► handler(ws, handshake)
//!                                 403          401/403   agreement    400/405/426/431/503
//! ```
//!
//! ## Metrics
//!
//! With feature `metrics` (off by default), for whatever recorder the
//! application installs; the feature turns on sockeye-proto's and (with
//! `deflate`) sockeye-deflate's counters too. No label carries a peer
//! address, a credential or a path.
//!
//! | name | kind | labels | counts |
//! |---|---|---|---|
//! | `sockeye_http_connections_total` | counter | `outcome` | [`serve()`]'s connections, accepted or refused (see [`serve`](mod@serve)) |
//! | `sockeye_http_connections_open` | gauge | | [`serve()`]'s open connections |
//! | `sockeye_http_connections_aborted_total` | counter | | connections aborted through a [`ConnectionHandle`] |
//! | `sockeye_handshake_rejections_total` | counter | `status`, `reason` | upgrade requests answered other than 101 (by `serve` and the upgrade service) |
//! | `sockeye_sockets_opened_total` | counter | `role`, `transport` | server sockets upgraded |
//! | `sockeye_sockets_open` | gauge | `role` | server sockets open |
//! | `sockeye_drain_sockets_total` | counter | `outcome`: `closed`/`forced` | sockets a [`server::Drain`] saw finish within its timeout, or aborted at it |
//! | `sockeye_socket_closes_total` | counter | `role`, `code`, `initiator` | sockets over, by close code and by who closed (sockeye-proto; every socket, server and client) |
//! | `sockeye_messages_total` | counter | `role`, `direction`, `kind` | data messages in and out (sockeye-proto) |
//! | `sockeye_payload_bytes_total` | counter | `role`, `direction` | their payload bytes, uncompressed (sockeye-proto) |
//! | `sockeye_deflate_bytes_total` | counter | `direction`, `stage` | bytes before and after permessage-deflate (sockeye-deflate, with `deflate`) |
//!
//! The labels of the sockeye-proto and sockeye-deflate counters are
//! described in those crates' docs.
//!
//! ## WebSockets over HTTP/2
//!
//! With feature `http2`, [`server::UpgradeService`], [`server::upgrade`] and
//! the axum extractor also accept RFC 8441's extended CONNECT
//! (`:protocol websocket`, answered by 200 with no `Sec-WebSocket-Accept`):
//! the HTTP/2 stream carries the frames, and many sockets share one
//! connection. The layers guard these requests as they guard HTTP/1.1
//! upgrades. Turn the setting on in hyper's HTTP/2 server:
//!
//! ```no_run
//! # #[cfg(feature = "http2")]
//! # async fn serve(tcp: tokio::net::TcpStream) {
//! use hyper_util::rt::{TokioExecutor, TokioIo};
//! use hyper_util::server::conn::auto::Builder;
//! use hyper_util::service::TowerToHyperService;
//! use sockeye_hyper::server::{Handshake, UpgradeService, WebSocket};
//!
//! let service = UpgradeService::new(|_ws: WebSocket, _hs: Handshake| async {});
//! let mut builder = Builder::new(TokioExecutor::new());
//! builder.http2().enable_connect_protocol(); // SETTINGS_ENABLE_CONNECT_PROTOCOL
//! let _ = builder
//!     .serve_connection_with_upgrades(TokioIo::new(tcp), TowerToHyperService::new(service))
//!     .await;
//! # }
//! ```
//!
//! On the client side, [`client::ClientBuilder::connect_http2`] opens an
//! HTTP/2 connection (through the builder's proxy; TLS with ALPN `h2` for
//! `wss://`, prior knowledge for `ws://`), and
//! [`client::ClientBuilder::connect_on`] opens each socket as a new stream
//! of it, or of any hyper HTTP/2 client connection the caller holds.
//! [`client::ClientBuilder::connect`] and the reconnecting connector speak
//! HTTP/1.1.
//!
//! Server sockets keep dead peers in check by default: a ping after 30 s of
//! silence, close 1011 if 30 s more pass without an answer
//! ([`server::default_config`]).
//!
//! A whole server and client on loopback:
//!
//! ```
//! use hyper_util::{rt::TokioIo, service::TowerToHyperService};
//! use sockeye_hyper::server::{Handshake, UpgradeService, WebSocket};
//! use sockeye_hyper::{Message, client::ClientBuilder};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Server: shout back every text message.
//! let service = UpgradeService::new(|mut ws: WebSocket, _hs: Handshake| async move {
//!     while let Some(Ok(Message::Text(t))) = ws.recv().await {
//!         let _ = ws.send(t.to_uppercase()).await;
//!     }
//! });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     let (tcp, _) = listener.accept().await.unwrap();
//!     let conn = hyper::server::conn::http1::Builder::new()
//!         .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service));
//!     let _ = conn.with_upgrades().await;
//! });
//!
//! // Client.
//! let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/")).no_proxy().connect().await?;
//! ws.send("hello").await?;
//! assert_eq!(ws.recv().await.transpose()?, Some(Message::text("HELLO")));
//! # Ok(()) }
//! ```
//!
//! ## Client
//!
//! [`client::connect`] and [`client::ClientBuilder`]: extra headers,
//! subprotocols, limits, connect timeout, TLS with webpki roots (or your own
//! rustls config), HTTP CONNECT proxies given explicitly or through
//! `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY`, and
//! [`client::Reconnect`] for a fresh socket after every drop.
//!
//! ## `WEBSOCKETS_DISABLE`
//!
//! With `WEBSOCKETS_DISABLE` set to `1`, `true` or `yes`, servers answer
//! upgrades with 503 (plain requests still reach the fallback) and clients
//! fail at once with [`Error::Disabled`]. Builders override it either way.
//!
//! ## Features
//!
//! | feature | default | enables |
//! |---|---|---|
//! | `serve` | yes | [`serve()`]: the server loop with the raw path's limits, connection caps and graceful shutdown |
//! | `tls` | yes | `wss://` for the client (rustls with ring, webpki roots) and TLS in `serve` |
//! | `axum` | no | [`axum::WebSocketUpgrade`] |
//! | `deflate` | no | `ClientBuilder::deflate`: the client offers permessage-deflate (sockeye-deflate) |
//! | `http2` | no | WebSockets over HTTP/2 (RFC 8441): extended CONNECT in the upgrade service and the extractor, `ClientBuilder::connect_http2` / `connect_on` |
//! | `metrics` | no | counters and gauges through the `metrics` facade (the table above) |
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "axum")]
pub mod axum;
mod body;
pub mod client;
mod disable;
mod error;
#[cfg(feature = "serve")]
pub mod serve;
pub mod server;

pub use body::{Body, BoxError};
pub use disable::{DISABLE_ENV, disabled_by_env};
pub use error::Error;
#[cfg(feature = "serve")]
pub use serve::{ConnectionHandle, HttpService, Serve, serve};
pub use sockeye_proto::{CloseCode, CloseFrame, Config, Message};
