//! Shared pieces of the layers: the upgrade check and a response future
//! that either passes the inner service's response through or is a
//! rejection made on the spot.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::{HeaderName, HeaderValue, SEC_WEBSOCKET_VERSION, UPGRADE};
use http::{Method, Request, Response, StatusCode, Version};

/// Whether the request asks for a WebSocket: over HTTP/1.x, `Upgrade` lists
/// `websocket` as a token; over HTTP/2 (RFC 8441), a `CONNECT` carrying
/// `Sec-WebSocket-Version`. The `:protocol` pseudo-header is not visible
/// here, so every such CONNECT is guarded: the upgrade itself then checks
/// that it asks for `websocket`.
pub(crate) fn is_upgrade<B>(req: &Request<B>) -> bool {
    if req.version() >= Version::HTTP_2 {
        return req.method() == Method::CONNECT
            && req.headers().contains_key(SEC_WEBSOCKET_VERSION);
    }
    req.headers().get_all(UPGRADE).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
        })
    })
}

/// A rejection response: the status, headers, and an empty body (the
/// body type only has to implement `Default`, like tower-http's auth).
pub(crate) fn response<RB: Default>(
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
) -> Response<RB> {
    let mut resp = Response::new(RB::default());
    *resp.status_mut() = status;
    for (name, value) in headers {
        resp.headers_mut().append(name, value);
    }
    resp
}

pin_project_lite::pin_project! {
    /// The response future of [`OriginCheck`](crate::OriginCheck) and
    /// [`SocketLimit`](crate::SocketLimit): the inner response, or a rejection.
    pub struct Reject<F, RB> {
        #[pin]
        kind: RejectKind<F, RB>,
    }
}

pin_project_lite::pin_project! {
    #[project = RejectProj]
    enum RejectKind<F, RB> {
        Pass { #[pin] fut: F },
        Rejected { response: Option<Response<RB>> },
    }
}

impl<F, RB> std::fmt::Debug for Reject<F, RB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reject").finish_non_exhaustive()
    }
}

impl<F, RB> Reject<F, RB> {
    pub(crate) fn pass(fut: F) -> Self {
        Self {
            kind: RejectKind::Pass { fut },
        }
    }

    pub(crate) fn refuse(status: StatusCode, headers: Vec<(HeaderName, HeaderValue)>) -> Self
    where
        RB: Default,
    {
        Self {
            kind: RejectKind::Rejected {
                response: Some(response(status, headers)),
            },
        }
    }
}

impl<F, RB, E> Future for Reject<F, RB>
where
    F: Future<Output = Result<Response<RB>, E>>,
    RB: Default,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            RejectProj::Pass { fut } => fut.poll(cx),
            RejectProj::Rejected { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| self::response(StatusCode::INTERNAL_SERVER_ERROR, Vec::new())))),
        }
    }
}
