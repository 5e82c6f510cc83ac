//! [`AuthLayer`]: credentials from the request, an async validator, the
//! [`Identity`] in the request's extensions — before the upgrade.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::credentials::{Carrier, Credentials, redacted_uri};
use crate::identity::{Identity, Rejection};
use crate::rejection::{is_upgrade, response};

/// Checks credentials: `Ok(identity)` lets the request through, a
/// [`Rejection`] answers 403 or 503.
///
/// Implemented for async closures `Fn(Credentials) -> impl Future<Output =
/// Result<Identity, Rejection>>`.
pub trait Validator: Clone + Send + Sync + 'static {
    /// The check in progress.
    type Future: Future<Output = Result<Identity, Rejection>> + Send + 'static;

    /// Checks `credentials`.
    fn validate(&self, credentials: Credentials) -> Self::Future;
}

impl<F, Fut> Validator for F
where
    F: Fn(Credentials) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Identity, Rejection>> + Send + 'static,
{
    type Future = Fut;

    fn validate(&self, credentials: Credentials) -> Fut {
        self(credentials)
    }
}

/// Authenticates WebSocket upgrade requests before the upgrade.
///
/// Credentials are looked for in the carriers added, in order (the first
/// found is used): `Authorization: Bearer`, Basic, a named cookie, a query
/// parameter (opt-in, redacted in logs), a subprotocol-carried token (the
/// token entry is removed from `Sec-WebSocket-Protocol`, so the upgrade
/// never selects or echoes it).
///
/// | outcome | response |
/// |---|---|
/// | no credentials | 401 with `WWW-Authenticate` (Bearer/Basic challenges) |
/// | [`Rejection::Invalid`] | 403 |
/// | [`Rejection::Unavailable`] | 503 |
/// | `Ok(identity)` | the inner service, with the [`Identity`] in the request's extensions |
///
/// Only upgrade requests are checked unless
/// [`check_all_requests`](Self::check_all_requests). Secrets never appear in
/// logs, errors or `Debug` output.
///
/// ```
/// use sockeye_auth::{AuthLayer, Credentials, Identity, Rejection};
/// let layer = AuthLayer::new(|creds: Credentials| async move {
///     match creds {
///         Credentials::Bearer(token) if token.matches("let-me-in") => Ok(Identity::new("bot")),
///         _ => Err(Rejection::Invalid),
///     }
/// })
/// .bearer()
/// .cookie("session");
/// # drop(layer);
/// ```
#[derive(Clone)]
pub struct AuthLayer<V> {
    validator: V,
    carriers: Arc<Vec<Carrier>>,
    realm: Arc<str>,
    all_requests: bool,
}

impl<V> fmt::Debug for AuthLayer<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("carriers", &self.carriers)
            .field("realm", &self.realm)
            .field("all_requests", &self.all_requests)
            .finish_non_exhaustive()
    }
}

impl<V: Validator> AuthLayer<V> {
    /// A layer with `validator` and no carrier yet (add at least one).
    pub fn new(validator: V) -> Self {
        Self {
            validator,
            carriers: Arc::new(Vec::new()),
            realm: Arc::from("sockeye"),
            all_requests: false,
        }
    }

    fn with(mut self, carrier: Carrier) -> Self {
        Arc::make_mut(&mut self.carriers).push(carrier);
        self
    }

    /// `Authorization: Bearer <token>` (services, non-browser clients).
    #[must_use]
    pub fn bearer(self) -> Self {
        self.with(Carrier::Bearer)
    }

    /// `Authorization: Basic` (services; constant-time compare the password).
    #[must_use]
    pub fn basic(self) -> Self {
        self.with(Carrier::Basic)
    }

    /// A session cookie (browsers: only together with an Origin policy).
    #[must_use]
    pub fn cookie(self, name: impl Into<String>) -> Self {
        self.with(Carrier::Cookie(name.into()))
    }

    /// A query parameter. Off unless added: URLs end up in proxy and server
    /// logs; use short-lived single-use tokens. sockeye's own logs redact it.
    ///
    /// The first `name=value` pair whose name is `name` as written (not
    /// decoded) is used; its value is decoded as a form field
    /// (`application/x-www-form-urlencoded`, what `URLSearchParams` writes):
    /// `+` is a space and `%` with two hex digits a byte (`%2B` is a plus);
    /// any other `%` is kept as written. An empty value is no credential.
    #[must_use]
    pub fn query(self, name: impl Into<String>) -> Self {
        self.with(Carrier::Query(name.into()))
    }

    /// A token offered as the `Sec-WebSocket-Protocol` entry
    /// `<prefix><token>` (browsers: `new WebSocket(url, ["chat", "bearer." + token])`).
    #[must_use]
    pub fn subprotocol(self, prefix: impl Into<String>) -> Self {
        self.with(Carrier::Subprotocol(prefix.into()))
    }

    /// The realm of the `WWW-Authenticate` challenge (default `sockeye`).
    #[must_use]
    pub fn realm(mut self, realm: &str) -> Self {
        self.realm = Arc::from(realm.replace('"', ""));
        self
    }

    /// Authenticate every request, not only WebSocket upgrades.
    #[must_use]
    pub fn check_all_requests(mut self, all: bool) -> Self {
        self.all_requests = all;
        self
    }
}

impl<S, V: Clone> Layer<S> for AuthLayer<V> {
    type Service = Auth<S, V>;

    fn layer(&self, inner: S) -> Auth<S, V> {
        Auth {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Clone)]
pub struct Auth<S, V> {
    inner: S,
    layer: AuthLayer<V>,
}

impl<S, V> fmt::Debug for Auth<S, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

impl<S, V> Auth<S, V> {
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

impl<S, V, B, RB> Service<Request<B>> for Auth<S, V>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    V: Validator,
    B: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = future::ResponseFuture<S::Future, RB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if !self.layer.all_requests && !is_upgrade(&req) {
            return future::ResponseFuture::pass(self.inner.call(req));
        }
        // The ready service goes into the future; a fresh clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        let (mut parts, body) = req.into_parts();
        let found = layer.carriers.iter().find_map(|c| c.extract(&mut parts));
        let secret_params: Vec<String> = layer
            .carriers
            .iter()
            .filter_map(|c| match c {
                Carrier::Query(name) => Some(name.clone()),
                _ => None,
            })
            .collect();
        let target = redacted_uri(&parts.uri, &secret_params);
        let Some(credentials) = found else {
            tracing::info!(target = %target, "websocket request without credentials");
            crate::observe::refused("auth", StatusCode::UNAUTHORIZED);
            let challenges = layer
                .carriers
                .iter()
                .filter_map(|c| c.challenge(&layer.realm))
                .filter_map(|c| HeaderValue::try_from(c).ok())
                .map(|v| (WWW_AUTHENTICATE, v))
                .collect();
            return future::ResponseFuture::ready(response(StatusCode::UNAUTHORIZED, challenges));
        };
        let check = layer.validator.validate(credentials);
        future::ResponseFuture::boxed(Box::pin(async move {
            match check.await {
                Ok(identity) => {
                    tracing::debug!(target = %target, subject = identity.subject(), "websocket request authenticated");
                    crate::observe::allowed("auth");
                    parts.extensions.insert(identity);
                    inner.call(Request::from_parts(parts, body)).await
                }
                Err(rejection) => {
                    let status = match rejection {
                        Rejection::Invalid => StatusCode::FORBIDDEN,
                        Rejection::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                    };
                    tracing::info!(target = %target, %rejection, "websocket request refused");
                    crate::observe::refused("auth", status);
                    Ok(response(status, Vec::new()))
                }
            }
        }))
    }
}

pub mod future {
    //! The response future of [`Auth`](super::Auth).

    use super::*;

    type Boxed<RB, E> = Pin<Box<dyn Future<Output = Result<Response<RB>, E>> + Send>>;

    pin_project_lite::pin_project! {
        /// Passes a request through, answers it at once, or validates first.
        pub struct ResponseFuture<F, RB, E> {
            #[pin]
            kind: Kind<F, RB, E>,
        }
    }

    pin_project_lite::pin_project! {
        #[project = KindProj]
        enum Kind<F, RB, E> {
            Pass { #[pin] fut: F },
            Ready { response: Option<Response<RB>> },
            Validating { fut: Boxed<RB, E> },
        }
    }

    impl<F, RB, E> ResponseFuture<F, RB, E> {
        pub(super) fn pass(fut: F) -> Self {
            Self {
                kind: Kind::Pass { fut },
            }
        }

        pub(super) fn ready(response: Response<RB>) -> Self {
            Self {
                kind: Kind::Ready {
                    response: Some(response),
                },
            }
        }

        pub(super) fn boxed(fut: Boxed<RB, E>) -> Self {
            Self {
                kind: Kind::Validating { fut },
            }
        }
    }

    impl<F, RB, E> fmt::Debug for ResponseFuture<F, RB, E> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ResponseFuture").finish_non_exhaustive()
        }
    }

    impl<F, RB, E> Future for ResponseFuture<F, RB, E>
    where
        F: Future<Output = Result<Response<RB>, E>>,
        RB: Default,
    {
        type Output = Result<Response<RB>, E>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            match self.project().kind.project() {
                KindProj::Pass { fut } => fut.poll(cx),
                KindProj::Ready { response: r } => Poll::Ready(Ok(r
                    .take()
                    .unwrap_or_else(|| response(StatusCode::INTERNAL_SERVER_ERROR, Vec::new())))),
                KindProj::Validating { fut } => fut.as_mut().poll(cx),
            }
        }
    }
}
