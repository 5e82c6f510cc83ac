//! Shared pieces of the layers: the upgrade check and a response future
//! that either passes the inner service's response through or is a
//! rejection made on the spot.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::{HeaderName, HeaderValue, UPGRADE};
use http::{Request, Response, StatusCode, Version};
use sockeye_proto::handshake::server::is_websocket_request;

/// Whether the request asks for a WebSocket: the handshake's own test
/// ([`is_websocket_request`]): over HTTP/1.x, `Upgrade` lists `websocket`
/// as a token; over HTTP/2 (RFC 8441), a `CONNECT` carrying
/// `Sec-WebSocket-Version`. The `:protocol` pseudo-header is not visible
/// here, so every such CONNECT is guarded: the upgrade itself then checks
/// that it asks for `websocket`.
///
/// An HTTP/1.x `Upgrade` line that is not visible ASCII makes the
/// handshake's test say no (and sockeye's upgrade refuse the request), but
/// an upgrade service that reads only the first line might still upgrade:
/// such a request is guarded too, failing closed.
pub(crate) fn is_upgrade<B>(req: &Request<B>) -> bool {
    is_websocket_request(req.method(), req.version(), req.headers())
        || (req.version() < Version::HTTP_2
            && req
                .headers()
                .get_all(UPGRADE)
                .iter()
                .any(|v| v.to_str().is_err()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::SEC_WEBSOCKET_VERSION;

    fn request(build: http::request::Builder) -> Request<()> {
        build.body(()).unwrap()
    }

    #[test]
    fn upgrades_are_recognised_in_both_handshakes() {
        let ws = || request(Request::get("/").header(UPGRADE, "h2c, WebSocket"));
        assert!(is_upgrade(&ws()));
        let lines = request(
            Request::get("/")
                .header(UPGRADE, "h2c")
                .header(UPGRADE, "websocket"),
        );
        assert!(is_upgrade(&lines));
        // Plain requests and other upgrades pass the layers unchecked.
        assert!(!is_upgrade(&request(Request::get("/"))));
        assert!(!is_upgrade(&request(
            Request::get("/").header(UPGRADE, "h2c")
        )));
        assert!(!is_upgrade(&request(
            Request::get("/").header(UPGRADE, "websockets")
        )));
        // HTTP/2: a CONNECT with Sec-WebSocket-Version (RFC 8441); Upgrade
        // means nothing there.
        let connect = request(
            Request::connect("https://h/")
                .version(Version::HTTP_2)
                .header(SEC_WEBSOCKET_VERSION, "13"),
        );
        assert!(is_upgrade(&connect));
        let tunnel = request(Request::connect("https://h/").version(Version::HTTP_2));
        assert!(!is_upgrade(&tunnel));
        let h2_get = request(
            Request::get("/")
                .version(Version::HTTP_2)
                .header(UPGRADE, "websocket")
                .header(SEC_WEBSOCKET_VERSION, "13"),
        );
        assert!(!is_upgrade(&h2_get));
    }

    /// The handshake's own check refuses an `Upgrade` line that is not
    /// visible ASCII; another upgrade service may read only the first
    /// line. Such a request is checked, never waved through.
    #[test]
    fn an_unreadable_upgrade_line_is_checked() {
        let garbled = HeaderValue::from_bytes(b"\xffwebsocket").unwrap();
        let both = request(
            Request::get("/")
                .header(UPGRADE, "websocket")
                .header(UPGRADE, garbled.clone()),
        );
        assert!(is_upgrade(&both));
        assert!(is_upgrade(&request(
            Request::get("/").header(UPGRADE, garbled)
        )));
    }
}
