//! The axum extractor: `WebSocketUpgrade`, in axum's own shape, on
//! axum-core. It reads the same request extensions as
//! [`UpgradeService`](crate::server::UpgradeService), so the same tower
//! layers (Origin, credentials, permessage-deflate) work on a `Router`.
//!
//! Settings come from an [`Upgrader`] put in the request extensions (e.g.
//! `Router::layer(axum::Extension(upgrader))`), else the defaults.
//!
//! An app served by [`serve`](crate::serve()) (the README's), with the
//! limits of the raw accept path:
//!
//! ```no_run
//! use axum::{Router, response::Response, routing::get};
//! use sockeye_hyper::{Message, axum::WebSocketUpgrade};
//!
//! async fn ws(upgrade: WebSocketUpgrade) -> Response {
//!     upgrade.on_upgrade(|mut socket| async move {
//!         while let Some(Ok(Message::Text(text))) = socket.recv().await {
//!             let _ = socket.send(format!("echo: {text}")).await;
//!         }
//!     })
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     sockeye_hyper::serve(listener, Router::new().route("/ws", get(ws))).await
//! }
//! ```

use std::future::Future;

use axum_core::body::Body;
use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use hyper::upgrade::OnUpgrade;
use sockeye_proto::extension::AgreedExtension;
use sockeye_proto::handshake::server::UpgradeRequest;
use sockeye_proto::{Config, Connection, Role};

use crate::error::Error;
use crate::server::{ServerIo, Upgrader, WebSocket, rejection, validate};

/// Extracts a WebSocket upgrade request.
///
/// ```no_run
/// use axum::{Router, routing::get, response::Response};
/// use sockeye_hyper::axum::WebSocketUpgrade;
///
/// async fn ws(upgrade: WebSocketUpgrade) -> Response {
///     upgrade.protocols(["chat.v1"]).on_upgrade(|mut socket| async move {
///         while let Some(Ok(msg)) = socket.recv().await {
///             if msg.is_text() {
///                 let _ = socket.send(msg).await;
///             }
///         }
///     })
/// }
///
/// let app: Router = Router::new().route("/ws", get(ws));
/// # drop(app);
/// ```
///
/// WebSockets over HTTP/2 (feature `http2`, RFC 8441) arrive as `CONNECT`
/// requests: route them with `any(ws)` or `get(ws).connect(ws)`, and serve
/// with hyper's `enable_connect_protocol`.
///
/// ```no_run
/// # use axum::{Router, routing::any, response::Response};
/// # use sockeye_hyper::axum::WebSocketUpgrade;
/// # async fn ws(upgrade: WebSocketUpgrade) -> Response { upgrade.on_upgrade(|_| async {}) }
/// let app: Router = Router::new().route("/ws", any(ws));
/// # drop(app);
/// ```
#[derive(Debug)]
pub struct WebSocketUpgrade {
    on_upgrade: OnUpgrade,
    request: UpgradeRequest,
    upgrader: Upgrader,
    protocol: Option<String>,
    agreed: Option<AgreedExtension>,
    /// The request's extensions, kept for the socket's lifetime (a permit
    /// from a limiting layer is released when the socket ends).
    extensions: http::Extensions,
}

/// Why a request could not be extracted as a WebSocket upgrade: rendered as
/// the same responses as the hyper service (400, 405, 426, 503, ...).
#[derive(Debug)]
pub struct WebSocketUpgradeRejection(Error);

impl IntoResponse for WebSocketUpgradeRejection {
    fn into_response(self) -> Response {
        rejection(&self.0).map(Body::new)
    }
}

impl std::fmt::Display for WebSocketUpgradeRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for WebSocketUpgradeRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = WebSocketUpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let upgrader = parts
            .extensions
            .get::<Upgrader>()
            .cloned()
            .unwrap_or_default();
        if upgrader.is_disabled() {
            return Err(WebSocketUpgradeRejection(Error::Disabled));
        }
        let request = validate(
            &parts.method,
            parts.version,
            &parts.headers,
            &parts.extensions,
        )
        .map_err(|e| WebSocketUpgradeRejection(e.into()))?;
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(WebSocketUpgradeRejection(Error::NotUpgradable))?;
        let agreed = parts.extensions.get::<AgreedExtension>().cloned();
        Ok(Self {
            on_upgrade,
            request,
            upgrader,
            protocol: None,
            agreed,
            extensions: parts.extensions.clone(),
        })
    }
}

impl WebSocketUpgrade {
    /// Selects the first of `protocols` (server preference) the client offered.
    #[must_use]
    pub fn protocols<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        let offered = self.request.protocols();
        self.protocol = protocols
            .into_iter()
            .find(|p| offered.iter().any(|o| o == p.as_ref()))
            .map(|p| p.as_ref().to_owned());
        self
    }

    /// The connection configuration (overrides the [`Upgrader`]'s).
    #[must_use]
    pub fn config(mut self, config: Config) -> Self {
        self.upgrader = self.upgrader.config(config);
        self
    }

    /// The subprotocol that will be selected.
    pub fn selected_protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The 101 response (200 over HTTP/2); `callback` runs with the socket once hyper hands
    /// over the connection.
    pub fn on_upgrade<F, Fut>(self, callback: F) -> Response
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // Boxed: the task below holds it until hyper hands the connection over.
        let mut conn = Box::new(Connection::new(
            Role::Server,
            self.upgrader.connection_config().clone(),
        ));
        if let Some(agreed) = &self.agreed {
            conn.set_extension(agreed.build());
        }
        let on_upgrade = self.on_upgrade;
        let keep_alive = self.extensions;
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(error = %e, "websocket upgrade failed after the 101");
                    return;
                }
            };
            let (io, read_buf) = ServerIo::new(upgraded);
            let ws = io.websocket(conn, read_buf);
            callback(ws).await;
            drop(keep_alive);
        });
        self.request
            .response(self.protocol.as_deref(), None)
            .map(|()| Body::empty())
    }
}
