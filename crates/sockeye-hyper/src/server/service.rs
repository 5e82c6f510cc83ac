//! [`UpgradeService`]: a tower service that upgrades WebSocket requests and
//! hands each socket to a handler in its own task.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use http::{Request, Response};
use sockeye_proto::Config;
use sockeye_proto::handshake::server::is_websocket_request;
use tower_service::Service;
use tracing::Instrument;

use super::{
    Drain, Handshake, SharedUpgrader, Upgrader, Upgrading, WebSocket, draining, observe, rejection,
};
use crate::body::{self, Body, BoxError};
use crate::error::Error;

/// What runs for each socket: an async function of the socket and the
/// [`Handshake`] (request head with the layers' extensions, subprotocol).
///
/// Implemented for every `Fn(WebSocket, Handshake) -> impl Future<Output = ()>`
/// that is `Clone + Send + Sync + 'static`, and for [`Callbacks`](super::Callbacks).
pub trait Handler: Clone + Send + Sync + 'static {
    /// The future run in the socket's task.
    type Future: Future<Output = ()> + Send + 'static;

    /// Handles one socket.
    fn call(&self, socket: WebSocket, handshake: Handshake) -> Self::Future;
}

impl<F, Fut> Handler for F
where
    F: Fn(WebSocket, Handshake) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    type Future = Fut;

    fn call(&self, socket: WebSocket, handshake: Handshake) -> Fut {
        self(socket, handshake)
    }
}

/// A tower `Service<Request<B>>` that upgrades WebSocket requests.
///
/// - A WebSocket request (an HTTP/1.1 upgrade, or with feature `http2` an
///   HTTP/2 extended CONNECT) is validated ([`Upgrader`]): on success the
///   101 (200 over HTTP/2) is
///   returned and, once hyper hands over the connection, the handler runs in
///   a new task with the socket; otherwise the right status (400, 405, 426,
///   431, 503 when disabled or draining) with a short body.
/// - Any other request goes to the fallback service, or gets 426 with
///   `Upgrade: websocket` when there is none — so one port can serve a page
///   and its socket.
///
/// Tower layers in front of it decide (Origin, credentials, extension
/// agreement) and record their decisions in the request's extensions; the
/// handler finds them in [`Handshake::parts`].
///
/// ```no_run
/// use hyper::server::conn::http1;
/// use hyper_util::{rt::TokioIo, service::TowerToHyperService};
/// use sockeye_hyper::server::{Handshake, UpgradeService, WebSocket};
///
/// # async fn run() -> std::io::Result<()> {
/// let service = UpgradeService::new(|mut ws: WebSocket, _hs: Handshake| async move {
///     while let Some(Ok(msg)) = ws.recv().await {
///         if msg.is_text() || msg.is_binary() {
///             let _ = ws.send(msg).await;
///         }
///     }
/// });
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// loop {
///     let (tcp, _) = listener.accept().await?;
///     let service = TowerToHyperService::new(service.clone());
///     tokio::spawn(async move {
///         let conn = http1::Builder::new().serve_connection(TokioIo::new(tcp), service);
///         let _ = conn.with_upgrades().await;
///     });
/// }
/// # }
/// ```
pub struct UpgradeService<H, F = RequireUpgrade> {
    upgrader: SharedUpgrader,
    handler: H,
    fallback: F,
    drain: Option<Drain>,
}

impl<H: Handler> UpgradeService<H> {
    /// A service running `handler` for every socket, with the default
    /// [`Upgrader`] and no fallback.
    pub fn new(handler: H) -> Self {
        Self {
            upgrader: Arc::new(Upgrader::new()),
            handler,
            fallback: RequireUpgrade,
            drain: None,
        }
    }
}

impl<H, F> UpgradeService<H, F> {
    fn map_upgrader(mut self, f: impl FnOnce(Upgrader) -> Upgrader) -> Self {
        let upgrader = Arc::try_unwrap(self.upgrader).unwrap_or_else(|shared| (*shared).clone());
        self.upgrader = Arc::new(f(upgrader));
        self
    }

    /// The connection configuration (limits, keepalive, idle timeout).
    #[must_use]
    pub fn config(self, config: Config) -> Self {
        self.map_upgrader(|u| u.config(config))
    }

    /// Subprotocols this server speaks, most preferred first.
    #[must_use]
    pub fn protocols<I, P>(self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.map_upgrader(|u| u.protocols(protocols))
    }

    /// Overrides `WEBSOCKETS_DISABLE` either way.
    #[must_use]
    pub fn disabled(self, disabled: Option<bool>) -> Self {
        self.map_upgrader(|u| u.disabled(disabled))
    }

    /// Registers every socket with `drain`, which closes them on shutdown;
    /// while it drains, new upgrades get 503.
    #[must_use]
    pub fn drain(mut self, drain: &Drain) -> Self {
        self.drain = Some(drain.clone());
        self
    }

    /// Sends requests that are not WebSocket upgrades to `fallback`.
    pub fn fallback<F2>(self, fallback: F2) -> UpgradeService<H, F2> {
        UpgradeService {
            upgrader: self.upgrader,
            handler: self.handler,
            fallback,
            drain: self.drain,
        }
    }

    /// The upgrade settings.
    pub fn upgrader(&self) -> &Upgrader {
        &self.upgrader
    }

    /// The fallback service.
    pub fn get_ref(&self) -> &F {
        &self.fallback
    }
}

impl<H: Clone, F: Clone> Clone for UpgradeService<H, F> {
    fn clone(&self) -> Self {
        Self {
            upgrader: Arc::clone(&self.upgrader),
            handler: self.handler.clone(),
            fallback: self.fallback.clone(),
            drain: self.drain.clone(),
        }
    }
}

impl<H, F: fmt::Debug> fmt::Debug for UpgradeService<H, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpgradeService")
            .field("upgrader", &self.upgrader)
            .field("fallback", &self.fallback)
            .field("drain", &self.drain)
            .finish_non_exhaustive()
    }
}

impl<H, F, B, FB> Service<Request<B>> for UpgradeService<H, F>
where
    H: Handler,
    F: Service<Request<B>, Response = Response<FB>>,
    F::Future: Send + 'static,
    FB: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    FB::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = F::Error;
    type Future = ResponseFuture<F::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The request may go to the fallback: it must be ready.
        self.fallback.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if !is_websocket_request(req.method(), req.version(), req.headers()) {
            return ResponseFuture::fallback(self.fallback.call(req));
        }
        if self.drain.as_ref().is_some_and(Drain::is_draining) {
            let response = draining();
            observe::rejected(response.status(), "draining");
            return ResponseFuture::ready(response);
        }
        let transport = observe::transport(req.version());
        let (response, upgrading) = match self.upgrader.upgrade(&mut req) {
            Ok(ok) => ok,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade refused");
                let response = rejection(&e);
                observe::rejected(response.status(), "invalid_upgrade");
                return ResponseFuture::ready(response);
            }
        };
        let protocol = upgrading.protocol().map(str::to_owned);
        let span = observe::socket_span(transport, protocol.as_deref(), req.extensions());
        let (mut parts, _body) = req.into_parts();
        own_head(&mut parts);
        // What layers put in the extensions (a socket permit, say) lives as
        // long as the socket's task, even if the handler drops its copy.
        let keep_alive = parts.extensions.clone();
        let handshake = Handshake { parts, protocol };
        let handler = self.handler.clone();
        spawn_upgraded(
            upgrading,
            transport,
            keep_alive,
            self.drain.as_ref(),
            span,
            move |socket| handler.call(socket, handshake),
        );
        ResponseFuture::ready(response)
    }
}

/// Serves a socket whose 101 is on its way, in two tasks. The first waits
/// for hyper to hand the connection over, spawns the socket's own task and
/// ends: a task's size is fixed when it is spawned, so the socket's task
/// holds only what lives as long as the socket, not the room the upgrade
/// needed. The socket's task runs `run(socket)`, then drops the
/// open-socket gauge, the drain's slot and `keep_alive` (what layers put
/// in the request's extensions: a socket permit lives as long as its
/// socket). It is `map`, not an async block around `.await`: a block
/// holds a captured future twice (the capture and the awaited copy).
pub(crate) fn spawn_upgraded<R, F>(
    upgrading: Upgrading,
    transport: &'static str,
    keep_alive: http::Extensions,
    drain: Option<&Drain>,
    span: tracing::Span,
    run: R,
) where
    R: FnOnce(WebSocket) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let registration = drain.map(Drain::reserve);
    let slot = registration.as_ref().map(|r| r.id());
    let socket_drain = drain.cloned();
    let upgrade = tokio::spawn(
        async move {
            let mut socket = match upgrading.await {
                Ok(socket) => socket,
                Err(e) => {
                    tracing::debug!(error = %e, "websocket upgrade failed after the 101");
                    return;
                }
            };
            if let Some(registration) = &registration {
                registration.set_close_handle(socket.close_handle());
            }
            let open = observe::SocketOpen::new(transport);
            tracing::debug!("socket open");
            let task = tokio::spawn(
                run(socket)
                    .map(move |()| {
                        tracing::debug!("socket ended");
                        drop(open);
                        drop(registration);
                        drop(keep_alive);
                    })
                    .in_current_span(),
            );
            if let (Some(drain), Some(id)) = (&socket_drain, slot) {
                drain.set_abort(id, task.abort_handle(), true);
            }
        }
        .instrument(span),
    );
    if let (Some(drain), Some(id)) = (drain, slot) {
        drain.set_abort(id, upgrade.abort_handle(), false);
    }
}

/// Copies the URI and header values into allocations of their own. hyper
/// parses them as slices of its connection's read buffer (8 KiB or more),
/// and a handler that keeps its [`Handshake`] for the socket's life would
/// otherwise keep that whole buffer alive with it.
fn own_head(parts: &mut http::request::Parts) {
    for value in parts.headers.values_mut() {
        let owned = http::HeaderValue::from_bytes(value.as_bytes())
            .map(|mut v| {
                v.set_sensitive(value.is_sensitive());
                v
            })
            .ok();
        if let Some(owned) = owned {
            *value = owned;
        }
    }
    if let Ok(uri) = http::Uri::try_from(parts.uri.to_string()) {
        parts.uri = uri;
    }
}

/// The default fallback: 426 Upgrade Required with `Upgrade: websocket` and
/// `Sec-WebSocket-Version: 13`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequireUpgrade;

impl<B> Service<Request<B>> for RequireUpgrade {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<B>) -> Self::Future {
        let err = Error::from(sockeye_proto::HandshakeError::NotUpgrade);
        std::future::ready(Ok(rejection(&err)))
    }
}

/// The response future of [`UpgradeService`].
pub struct ResponseFuture<Fut> {
    kind: Kind<Fut>,
}

enum Kind<Fut> {
    Ready(Option<Response<Body>>),
    Fallback(Pin<Box<Fut>>),
}

impl<Fut> ResponseFuture<Fut> {
    fn ready(response: Response<Body>) -> Self {
        Self {
            kind: Kind::Ready(Some(response)),
        }
    }

    fn fallback(fut: Fut) -> Self {
        Self {
            kind: Kind::Fallback(Box::pin(fut)),
        }
    }
}

impl<Fut> fmt::Debug for ResponseFuture<Fut> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<Fut, FB, E> Future for ResponseFuture<Fut>
where
    Fut: Future<Output = Result<Response<FB>, E>>,
    FB: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    FB::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().kind {
            Kind::Ready(response) => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| rejection(&Error::NotUpgradable)))),
            Kind::Fallback(fut) => fut
                .as_mut()
                .poll(cx)
                .map(|r| r.map(|resp| resp.map(body::boxed))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::own_head;

    #[test]
    fn owned_head_keeps_every_value_and_flag() {
        let req = http::Request::get("/ws?room=a%20b")
            .header("host", "example.com")
            .header("sec-websocket-protocol", "chat, superchat")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .body(())
            .unwrap_or_default();
        let (mut parts, ()) = req.into_parts();
        let mut token = http::HeaderValue::from_static("Bearer t");
        token.set_sensitive(true);
        parts.headers.insert(http::header::AUTHORIZATION, token);
        let before = parts.headers.clone();
        own_head(&mut parts);
        assert_eq!(parts.headers, before);
        assert_eq!(parts.headers.get_all("cookie").iter().count(), 2);
        assert!(parts.headers[http::header::AUTHORIZATION].is_sensitive());
        assert_eq!(parts.uri, "/ws?room=a%20b");
    }
}
