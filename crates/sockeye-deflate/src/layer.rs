//! [`DeflateLayer`]: negotiates permessage-deflate before the upgrade, in
//! tower's grammar (`Deflate<S>`, `DeflateLayer`, `future::ResponseFuture`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header::SEC_WEBSOCKET_EXTENSIONS;
use http::{HeaderValue, Request, Response, StatusCode, Version};
use sockeye_proto::Role;
use sockeye_proto::extension::{AgreedExtension, ExtensionItem};
use sockeye_proto::handshake::server::is_websocket_request;
use tower_layer::Layer;
use tower_service::Service;

use crate::config::DeflateConfig;

/// Wraps a WebSocket upgrade service with permessage-deflate negotiation.
///
/// For an upgrade request that offers permessage-deflate, the layer picks
/// the first acceptable offer under its [`DeflateConfig`], records the
/// agreement in the request's extensions as an [`AgreedExtension`] (the
/// upgrade installs it on the socket), and, if the inner service answers
/// 101, adds `Sec-WebSocket-Extensions` to that response. Any other
/// response (a rejection by an inner layer, a 4xx from the upgrade) is left
/// as it is. Works in front of sockeye-hyper's `UpgradeService` and on an
/// axum `Router`.
///
/// ```
/// use sockeye_deflate::{DeflateConfig, DeflateLayer};
/// // In front of the upgrade: `ServiceBuilder::new().layer(layer).service(upgrade_service)`,
/// // or `Router::layer(layer)` in axum.
/// let layer = DeflateLayer::new(DeflateConfig::new().client_no_context_takeover(true));
/// # drop(layer);
/// ```
#[derive(Clone, Debug, Default)]
pub struct DeflateLayer {
    config: DeflateConfig,
}

impl DeflateLayer {
    /// A layer negotiating with `config`.
    pub fn new(config: DeflateConfig) -> Self {
        Self { config }
    }
}

impl<S> Layer<S> for DeflateLayer {
    type Service = Deflate<S>;

    fn layer(&self, inner: S) -> Deflate<S> {
        Deflate {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service made by [`DeflateLayer`].
#[derive(Clone, Debug)]
pub struct Deflate<S> {
    inner: S,
    config: DeflateConfig,
}

impl<S> Deflate<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, config: DeflateConfig) -> Self {
        Self { inner, config }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, RB> Service<Request<B>> for Deflate<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = future::ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let mut header = None;
        // Over HTTP/2 (RFC 8441) the socket opens with a 2xx, not a 101.
        let http2 = req.version() >= Version::HTTP_2;
        if is_websocket_request(req.method(), req.version(), req.headers()) {
            // A malformed header is the upgrade's to reject (400); the
            // layer only declines to negotiate.
            if let Ok(offers) = ExtensionItem::from_headers(req.headers())
                && let Some((response, agreement)) = self.config.negotiate(&offers)
                && let Ok(value) = HeaderValue::try_from(response.to_string())
            {
                let config = self.config.clone();
                let agreed = AgreedExtension::new(response, move || {
                    Box::new(config.extension(Role::Server, agreement))
                });
                req.extensions_mut().insert(agreed);
                header = Some(value);
            }
        }
        future::ResponseFuture {
            inner: self.inner.call(req),
            header,
            http2,
        }
    }
}

pub mod future {
    //! The response future of [`Deflate`](super::Deflate).

    use super::*;

    pin_project_lite::pin_project! {
        /// Adds the agreed `Sec-WebSocket-Extensions` to the response that
        /// opens the socket: a 101, or a 2xx over HTTP/2.
        #[derive(Debug)]
        pub struct ResponseFuture<F> {
            #[pin]
            pub(super) inner: F,
            pub(super) header: Option<HeaderValue>,
            pub(super) http2: bool,
        }
    }

    impl<F, RB, E> Future for ResponseFuture<F>
    where
        F: Future<Output = Result<Response<RB>, E>>,
    {
        type Output = Result<Response<RB>, E>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let this = self.project();
            let mut response = ready!(this.inner.poll(cx))?;
            let status = response.status();
            let opened = if *this.http2 {
                status.is_success()
            } else {
                status == StatusCode::SWITCHING_PROTOCOLS
            };
            if opened && let Some(value) = this.header.take() {
                response
                    .headers_mut()
                    .insert(SEC_WEBSOCKET_EXTENSIONS, value);
            }
            Poll::Ready(Ok(response))
        }
    }
}
