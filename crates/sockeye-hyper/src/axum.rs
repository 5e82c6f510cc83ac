//! The axum extractor: `WebSocketUpgrade`, in axum's own shape, on
//! axum-core. It reads the same request extensions as
//! [`UpgradeService`](crate::server::UpgradeService), so the same tower
//! layers (Origin, credentials, permessage-deflate) work on a `Router`.
//!
//! Settings come from an [`Upgrader`] put in the request extensions (e.g.
//! `Router::layer(axum::Extension(upgrader))`), else the defaults. A
//! [`Drain`] in the extensions (`Router::layer(axum::Extension(drain))`), or
//! given with [`WebSocketUpgrade::drain`], tracks the sockets for a
//! graceful shutdown, as with the upgrade service. Each socket's task runs
//! in the same `websocket` span, and is counted by the same metrics
//! (feature `metrics`), as the upgrade service's.
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
use sockeye_proto::Config;
use sockeye_proto::extension::AgreedExtension;
use sockeye_proto::handshake::server::UpgradeRequest;

use crate::error::Error;
use crate::server::observe;
use crate::server::{
    Drain, Upgrader, Upgrading, WebSocket, draining, rejection, spawn_upgraded, validate,
};

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
    /// `http1`, or `http2` for an extended CONNECT.
    transport: &'static str,
    drain: Option<Drain>,
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
        let refuse = |e: Error, reason: &'static str| {
            observe::rejected(rejection(&e).status(), reason);
            WebSocketUpgradeRejection(e)
        };
        if upgrader.is_disabled() {
            return Err(refuse(Error::Disabled, "disabled"));
        }
        let request = validate(
            &parts.method,
            parts.version,
            &parts.headers,
            &parts.extensions,
        )
        .map_err(|e| refuse(e.into(), "invalid_upgrade"))?;
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or_else(|| refuse(Error::NotUpgradable, "not_upgradable"))?;
        let agreed = parts.extensions.get::<AgreedExtension>().cloned();
        let drain = parts.extensions.get::<Drain>().cloned();
        Ok(Self {
            on_upgrade,
            request,
            upgrader,
            protocol: None,
            agreed,
            extensions: parts.extensions.clone(),
            transport: observe::transport(parts.version),
            drain,
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

    /// Tracks the socket in `drain` (overrides a [`Drain`] from the request
    /// extensions): a drain in progress answers 503 instead of upgrading,
    /// and [`Drain::shutdown`] closes the socket with 1001, or aborts its
    /// task at the drain's timeout.
    #[must_use]
    pub fn drain(mut self, drain: &Drain) -> Self {
        self.drain = Some(drain.clone());
        self
    }

    /// The 101 response (200 over HTTP/2); `callback` runs with the socket
    /// once hyper hands over the connection, in its own task (in a
    /// `websocket` span). While a [`drain`](Self::drain) is in progress the
    /// answer is 503 and `callback` never runs.
    pub fn on_upgrade<F, Fut>(self, callback: F) -> Response
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if self.drain.as_ref().is_some_and(Drain::is_draining) {
            let response = draining();
            observe::rejected(response.status(), "draining");
            return response.map(Body::new);
        }
        let span = observe::socket_span(self.transport, self.protocol.as_deref(), &self.extensions);
        let upgrading = Upgrading::new(
            self.on_upgrade,
            self.upgrader.connection_config(),
            self.agreed.as_ref(),
            self.protocol.clone(),
        );
        spawn_upgraded(
            upgrading,
            self.transport,
            self.extensions,
            self.drain.as_ref(),
            span,
            callback,
        );
        self.request
            .response(self.protocol.as_deref(), None)
            .map(|()| Body::empty())
    }
}
