//! The server side: upgrade a hyper request ([`upgrade`], [`Upgrader`]) or
//! serve sockets from a tower service ([`UpgradeService`]), with a graceful
//! [`Drain`].

mod callbacks;
mod drain;
mod io;
pub(crate) mod observe;
mod service;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{
    Extensions, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version, request,
};
use hyper::upgrade::OnUpgrade;
use sockeye_proto::HandshakeError;
use sockeye_proto::extension::AgreedExtension;
use sockeye_proto::handshake::server::{self as handshake, UpgradeRequest};
use sockeye_proto::{Config, Connection, Role};

use crate::body::{self, Body};
use crate::disable;
use crate::error::Error;

pub use self::callbacks::{Callbacks, CloseEvent, SendError, Session};
pub use self::drain::{DEFAULT_DRAIN_TIMEOUT, Drain, DrainReport};
pub use self::io::ServerIo;
#[cfg(feature = "axum")]
pub(crate) use self::service::spawn_upgraded;
pub use self::service::{Handler, RequireUpgrade, ResponseFuture, UpgradeService};

/// A server-side WebSocket over an upgraded hyper connection.
pub type WebSocket = sockeye_proto::WebSocket<ServerIo>;

/// Upgrades a request with the default [`Upgrader`]: returns the response
/// to send (101, or 200 for an HTTP/2 extended CONNECT) and a future of the
/// socket, which completes once hyper hands over the connection (after the
/// response is written).
///
/// ```
/// use http_body_util::Full;
/// use hyper::{Request, Response, body::Incoming};
/// use sockeye_hyper::{Body, server};
///
/// async fn handle(mut req: Request<Incoming>) -> Result<Response<Body>, hyper::Error> {
///     match server::upgrade(&mut req) {
///         Ok((response, upgrading)) => {
///             tokio::spawn(async move {
///                 if let Ok(mut ws) = upgrading.await {
///                     while let Some(Ok(msg)) = ws.recv().await {
///                         if msg.is_text() || msg.is_binary() {
///                             let _ = ws.send(msg).await;
///                         }
///                     }
///                 }
///             });
///             Ok(response)
///         }
///         Err(e) => Ok(server::rejection(&e)),
///     }
/// }
/// ```
pub fn upgrade<B>(req: &mut Request<B>) -> Result<(Response<Body>, Upgrading), Error> {
    Upgrader::new().upgrade(req)
}

/// Server upgrade settings: the connection [`Config`], the subprotocols in
/// order of preference, and the `WEBSOCKETS_DISABLE` switch.
///
/// The default `Config` here turns keepalive on (a ping after 30 s of
/// silence, 30 s for the answer, close 1011 otherwise), unlike the protocol
/// crate's default: a server should notice dead peers.
#[derive(Clone, Debug)]
pub struct Upgrader {
    config: Config,
    protocols: Vec<String>,
    disabled: bool,
}

impl Default for Upgrader {
    fn default() -> Self {
        Self::new()
    }
}

/// The server's default connection settings: the protocol defaults plus
/// keepalive (30 s ping, 30 s pong timeout).
pub fn default_config() -> Config {
    Config::builder()
        .keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .pong_timeout(std::time::Duration::from_secs(30))
        .build()
}

impl Upgrader {
    /// Defaults: [`default_config`], no subprotocols, disabled only if
    /// `WEBSOCKETS_DISABLE` says so (read now).
    pub fn new() -> Self {
        Self {
            config: default_config(),
            protocols: Vec::new(),
            disabled: disable::disabled_by_env(),
        }
    }

    /// The connection configuration (limits, keepalive, idle timeout).
    #[must_use]
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Subprotocols this server speaks, most preferred first.
    #[must_use]
    pub fn protocols<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Overrides `WEBSOCKETS_DISABLE` either way (`None`: read the
    /// environment now).
    #[must_use]
    pub fn disabled(mut self, disabled: Option<bool>) -> Self {
        self.disabled = disable::resolve(disabled);
        self
    }

    /// Whether upgrades are refused (503).
    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    /// The connection configuration.
    pub fn connection_config(&self) -> &Config {
        &self.config
    }

    /// Validates the request and prepares the upgrade. The extension a layer
    /// agreed on ([`AgreedExtension`] in the request's extensions) is
    /// installed on the connection; the layer adds its header to the 101.
    pub fn upgrade<B>(&self, req: &mut Request<B>) -> Result<(Response<Body>, Upgrading), Error> {
        if self.disabled {
            return Err(Error::Disabled);
        }
        let validated = validate(req.method(), req.version(), req.headers(), req.extensions())?;
        if req.extensions().get::<OnUpgrade>().is_none() {
            return Err(Error::NotUpgradable);
        }
        let protocol = validated
            .select_protocol(self.protocols.iter().map(String::as_str))
            .map(str::to_owned);
        let agreed = req.extensions().get::<AgreedExtension>().cloned();
        let on_upgrade = hyper::upgrade::on(&mut *req);
        let response = validated
            .response(protocol.as_deref(), None)
            .map(|()| body::empty());
        let upgrading = Upgrading::new(on_upgrade, &self.config, agreed.as_ref(), protocol);
        Ok((response, upgrading))
    }
}

/// Validates either handshake: the HTTP/1.1 upgrade, or HTTP/2's extended
/// CONNECT (RFC 8441), whose `:protocol` hyper keeps in the request's
/// extensions. Without feature `http2` hyper serves no HTTP/2, and an
/// HTTP/2 request (from elsewhere) fails for want of `:protocol`.
pub(crate) fn validate(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
    extensions: &Extensions,
) -> Result<UpgradeRequest, HandshakeError> {
    if version < Version::HTTP_2 {
        return handshake::validate_head(method, version, headers);
    }
    #[cfg(feature = "http2")]
    let protocol = extensions
        .get::<hyper::ext::Protocol>()
        .map(hyper::ext::Protocol::as_str);
    #[cfg(not(feature = "http2"))]
    let protocol = {
        let _ = extensions;
        None
    };
    handshake::validate_extended_connect(method, version, headers, protocol)
}

/// The HTTP response for a failed upgrade: the handshake's own status (400,
/// 405, 426, 431, ...), 503 naming `WEBSOCKETS_DISABLE` when switched off,
/// 426 when the connection cannot be upgraded. Each with a short body.
pub fn rejection(err: &Error) -> Response<Body> {
    match err {
        Error::Proto(sockeye_proto::Error::Handshake(h)) => handshake::rejection(h).map(body::text),
        Error::Disabled => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "WebSockets are disabled on this server (WEBSOCKETS_DISABLE)\n",
        ),
        Error::NotUpgradable => plain(
            StatusCode::UPGRADE_REQUIRED,
            "this connection cannot be upgraded to a WebSocket\n",
        ),
        _ => plain(StatusCode::BAD_REQUEST, "bad WebSocket upgrade request\n"),
    }
}

/// 503 while the server drains.
pub(crate) fn draining() -> Response<Body> {
    let mut resp = plain(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down\n");
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("5"));
    resp
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut resp = Response::new(body::text(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A future of the upgraded socket.
pub struct Upgrading {
    on_upgrade: OnUpgrade,
    conn: Option<Box<Connection>>,
    protocol: Option<String>,
}

impl Upgrading {
    /// The socket-to-be: its connection (with the extension agreed on, if
    /// any) waits, boxed, in the upgrade's task until hyper hands the
    /// connection over.
    pub(crate) fn new(
        on_upgrade: OnUpgrade,
        config: &Config,
        agreed: Option<&AgreedExtension>,
        protocol: Option<String>,
    ) -> Self {
        let mut conn = Box::new(Connection::new(Role::Server, config.clone()));
        if let Some(agreed) = agreed {
            conn.set_extension(agreed.build());
        }
        Self {
            on_upgrade,
            conn: Some(conn),
            protocol,
        }
    }

    /// The subprotocol the 101 selected.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }
}

impl fmt::Debug for Upgrading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgrading")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl Future for Upgrading {
    type Output = Result<WebSocket, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let upgraded = ready!(Pin::new(&mut this.on_upgrade).poll(cx))?;
        let (io, read_buf) = ServerIo::new(upgraded);
        let conn = this.conn.take().ok_or(Error::NotUpgradable)?;
        Poll::Ready(Ok(io.websocket(conn, read_buf)))
    }
}

/// What the handler learns about the upgrade request.
#[derive(Debug)]
pub struct Handshake {
    /// The request head: URI, headers, and the extensions tower layers put
    /// there (an identity, an agreed extension, ...).
    pub parts: request::Parts,
    /// The selected subprotocol.
    pub protocol: Option<String>,
}

impl Handshake {
    /// A value a layer stored in the request's extensions.
    pub fn extension<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.parts.extensions.get::<T>()
    }

    /// The request URI.
    pub fn uri(&self) -> &http::Uri {
        &self.parts.uri
    }

    /// The request headers.
    pub fn headers(&self) -> &http::HeaderMap {
        &self.parts.headers
    }
}

pub(crate) type SharedUpgrader = Arc<Upgrader>;
