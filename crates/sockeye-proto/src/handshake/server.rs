//! Server side: validate an upgrade request, build the 101 or the rejection.
//!
//! Two handshakes open a WebSocket: the HTTP/1.1 upgrade of RFC 6455 §4
//! ([`validate`]: `GET` with `Upgrade: websocket`, answered by 101), and
//! HTTP/2's extended CONNECT of RFC 8441 ([`validate_extended_connect`]:
//! `CONNECT` with the `:protocol` pseudo-header `websocket`, answered by
//! 200, the stream then carrying the frames). Both yield an
//! [`UpgradeRequest`] whose [`response`](UpgradeRequest::response) fits.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::header::{
    ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, SEC_WEBSOCKET_ACCEPT,
    SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderValue, Method, Response, StatusCode, Version, request};

use super::{accept_key, has_token, protocol_list};
use crate::error::HandshakeError;
use crate::extension::ExtensionItem;

/// A request that passed every check of RFC 6455 §4.2.1 (or of RFC 8441 §5
/// for HTTP/2).
#[derive(Clone, Debug)]
pub struct UpgradeRequest {
    /// `Sec-WebSocket-Accept` for an HTTP/1.1 upgrade; `None` for HTTP/2,
    /// which has no key.
    accept: Option<HeaderValue>,
    protocols: Vec<String>,
    extensions: Vec<ExtensionItem>,
}

/// Validates an upgrade request's head.
///
/// Checks, in order: method GET (405), HTTP/1.1 or later (400), one `Host`
/// (400), `Upgrade: websocket` (426), `Connection: upgrade` (400),
/// `Sec-WebSocket-Version: 13` (426), a key of 16 base64 bytes (400), no body
/// (400), and well-formed `Sec-WebSocket-Protocol` and
/// `Sec-WebSocket-Extensions` lists (400). Header lists are parsed as tokens,
/// never matched as substrings.
///
/// ```
/// use sockeye_proto::handshake::server;
/// let req = http::Request::get("/chat")
///     .header("host", "example.com")
///     .header("upgrade", "websocket")
///     .header("connection", "keep-alive, Upgrade")
///     .header("sec-websocket-version", "13")
///     .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
///     .header("sec-websocket-protocol", "v1.chat, v2.chat")
///     .body(())
///     .unwrap();
/// let (parts, ()) = req.into_parts();
/// let upgrade = server::validate(&parts).unwrap();
/// let chosen = upgrade.select_protocol(["v2.chat", "v1.chat"]);
/// assert_eq!(chosen, Some("v2.chat"));
/// let resp = upgrade.response(chosen, None);
/// assert_eq!(resp.status(), 101);
/// assert_eq!(resp.headers()["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn validate(req: &request::Parts) -> Result<UpgradeRequest, HandshakeError> {
    validate_head(&req.method, req.version, &req.headers)
}

/// [`validate`] for a whole request (the body is not looked at).
pub fn validate_request<B>(req: &http::Request<B>) -> Result<UpgradeRequest, HandshakeError> {
    validate_head(req.method(), req.version(), req.headers())
}

/// Whether a request asks for a WebSocket upgrade at all (`Upgrade:
/// websocket`), before any other check: a service uses it to send plain
/// requests to a fallback instead of answering 426. HTTP/1.1 only; see
/// [`is_websocket_request`] for both handshakes.
pub fn is_upgrade_request(headers: &http::HeaderMap) -> bool {
    has_token(headers, &UPGRADE, "Upgrade", "websocket").unwrap_or(false)
}

/// Whether a request asks for a WebSocket in either handshake, before any
/// other check: HTTP/1.x with `Upgrade: websocket`, or HTTP/2 and later
/// with `CONNECT` and a `Sec-WebSocket-Version` (RFC 8441 §5).
///
/// The `:protocol` pseudo-header is not in a header map, so the HTTP/2 test
/// errs on the side of "yes": a layer that guards WebSocket requests (an
/// Origin check, authentication) then also guards every CONNECT that could
/// become one, and [`validate_extended_connect`] decides.
///
/// ```
/// use http::{Method, Version, HeaderMap, HeaderValue};
/// use sockeye_proto::handshake::server::is_websocket_request;
/// let mut h = HeaderMap::new();
/// h.insert("sec-websocket-version", HeaderValue::from_static("13"));
/// assert!(is_websocket_request(&Method::CONNECT, Version::HTTP_2, &h));
/// assert!(!is_websocket_request(&Method::GET, Version::HTTP_2, &h));
/// h.insert("upgrade", HeaderValue::from_static("websocket"));
/// assert!(is_websocket_request(&Method::GET, Version::HTTP_11, &h));
/// ```
pub fn is_websocket_request(method: &Method, version: Version, headers: &http::HeaderMap) -> bool {
    if version >= Version::HTTP_2 {
        method == Method::CONNECT && headers.contains_key(SEC_WEBSOCKET_VERSION)
    } else {
        is_upgrade_request(headers)
    }
}

/// Validates an HTTP/2 extended CONNECT that opens a WebSocket (RFC 8441
/// §5). `protocol` is the request's `:protocol` pseudo-header, which the
/// HTTP/2 server hands over apart from the headers (hyper: the
/// `hyper::ext::Protocol` request extension).
///
/// Checks, in order: method CONNECT (405), HTTP/2 or later (400),
/// `:protocol` `websocket` (426), `Sec-WebSocket-Version: 13` (426), and
/// well-formed `Sec-WebSocket-Protocol` and `Sec-WebSocket-Extensions`
/// lists (400). There is no key: the answer is a 200 without
/// `Sec-WebSocket-Accept`, and the stream's DATA frames carry the
/// WebSocket frames, masked as over HTTP/1.1.
///
/// ```
/// use sockeye_proto::handshake::server;
/// let req = http::Request::connect("https://example.com/chat")
///     .version(http::Version::HTTP_2)
///     .header("sec-websocket-version", "13")
///     .header("sec-websocket-protocol", "v1.chat")
///     .body(())
///     .unwrap();
/// let upgrade = server::validate_extended_connect(
///     req.method(),
///     req.version(),
///     req.headers(),
///     Some("websocket"),
/// )
/// .unwrap();
/// assert!(upgrade.accept_key().is_none());
/// let resp = upgrade.response(upgrade.select_protocol(["v1.chat"]), None);
/// assert_eq!(resp.status(), 200);
/// assert_eq!(resp.headers()["sec-websocket-protocol"], "v1.chat");
/// ```
pub fn validate_extended_connect(
    method: &Method,
    version: Version,
    headers: &http::HeaderMap,
    protocol: Option<&str>,
) -> Result<UpgradeRequest, HandshakeError> {
    if method != Method::CONNECT {
        return Err(HandshakeError::MethodNotAllowed);
    }
    if version < Version::HTTP_2 {
        return Err(HandshakeError::UnsupportedHttpVersion);
    }
    if !protocol.is_some_and(|p| p.eq_ignore_ascii_case("websocket")) {
        return Err(HandshakeError::NotUpgrade);
    }
    check_version(headers)?;
    Ok(UpgradeRequest {
        accept: None,
        protocols: protocol_list(headers)?,
        extensions: ExtensionItem::from_headers(headers)?,
    })
}

fn check_version(headers: &http::HeaderMap) -> Result<(), HandshakeError> {
    let mut versions = headers.get_all(SEC_WEBSOCKET_VERSION).iter();
    match (versions.next(), versions.next()) {
        (Some(v), None) if v.as_bytes().trim_ascii() == b"13" => Ok(()),
        _ => Err(HandshakeError::UnsupportedVersion),
    }
}

/// [`validate`] from the pieces of a request head, for servers that do not
/// hold an `http::Request` or its `Parts`.
pub fn validate_head(
    method: &Method,
    version: Version,
    headers: &http::HeaderMap,
) -> Result<UpgradeRequest, HandshakeError> {
    if method != Method::GET {
        return Err(HandshakeError::MethodNotAllowed);
    }
    if version < Version::HTTP_11 {
        return Err(HandshakeError::UnsupportedHttpVersion);
    }
    if headers.get_all(HOST).iter().count() != 1 {
        return Err(HandshakeError::MissingHost);
    }
    if !has_token(headers, &UPGRADE, "Upgrade", "websocket")? {
        return Err(HandshakeError::NotUpgrade);
    }
    if !has_token(headers, &CONNECTION, "Connection", "upgrade")? {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    check_version(headers)?;
    let mut keys = headers.get_all(SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (Some(k), None) => k.as_bytes().trim_ascii(),
        _ => return Err(HandshakeError::InvalidKey),
    };
    match STANDARD.decode(key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => return Err(HandshakeError::InvalidKey),
    }
    let has_body = headers.contains_key(TRANSFER_ENCODING)
        || headers
            .get_all(CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes().trim_ascii() != b"0");
    if has_body {
        return Err(HandshakeError::UnexpectedBody);
    }
    let protocols = protocol_list(headers)?;
    let extensions = ExtensionItem::from_headers(headers)?;
    let accept = HeaderValue::try_from(accept_key(key)).map_err(|_| HandshakeError::InvalidKey)?;
    Ok(UpgradeRequest {
        accept: Some(accept),
        protocols,
        extensions,
    })
}

impl UpgradeRequest {
    /// The `Sec-WebSocket-Accept` value for this request's key (`None` for
    /// an HTTP/2 extended CONNECT, which has no key).
    pub fn accept_key(&self) -> Option<&HeaderValue> {
        self.accept.as_ref()
    }

    /// Whether this is an HTTP/2 extended CONNECT (RFC 8441), answered by
    /// 200 rather than 101.
    pub fn is_extended_connect(&self) -> bool {
        self.accept.is_none()
    }

    /// The subprotocols the client offered, in its order.
    pub fn protocols(&self) -> &[String] {
        &self.protocols
    }

    /// The extensions the client offered, in its order.
    pub fn extensions(&self) -> &[ExtensionItem] {
        &self.extensions
    }

    /// The first of `supported` (the server's preference order) that the
    /// client offered.
    pub fn select_protocol<'a, I>(&self, supported: I) -> Option<&'a str>
    where
        I: IntoIterator<Item = &'a str>,
    {
        supported
            .into_iter()
            .find(|s| self.protocols.iter().any(|p| p == s))
    }

    /// The response that opens the WebSocket, with the selected subprotocol
    /// and the accepted extensions (a `Sec-WebSocket-Extensions` value):
    /// 101 Switching Protocols with `Sec-WebSocket-Accept` over HTTP/1.1,
    /// 200 over HTTP/2 (which has no connection-level headers).
    pub fn response(
        &self,
        protocol: Option<&str>,
        extensions: Option<HeaderValue>,
    ) -> Response<()> {
        let mut resp = Response::new(());
        if let Some(accept) = &self.accept {
            *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let h = resp.headers_mut();
            h.insert(UPGRADE, HeaderValue::from_static("websocket"));
            h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
            h.insert(SEC_WEBSOCKET_ACCEPT, accept.clone());
        }
        let h = resp.headers_mut();
        if let Some(p) = protocol.and_then(|p| HeaderValue::from_str(p).ok()) {
            h.insert(SEC_WEBSOCKET_PROTOCOL, p);
        }
        if let Some(e) = extensions {
            h.insert(SEC_WEBSOCKET_EXTENSIONS, e);
        }
        resp
    }
}

/// The HTTP response for a rejected handshake: the status of
/// [`HandshakeError::http_status`] (400 when it has none), a short plain-text
/// body, `Sec-WebSocket-Version: 13` and `Upgrade: websocket` on 426, and
/// `Allow: GET` on 405.
///
/// ```
/// use sockeye_proto::{HandshakeError, handshake::server::rejection};
/// let resp = rejection(&HandshakeError::UnsupportedVersion);
/// assert_eq!(resp.status(), 426);
/// assert_eq!(resp.headers()["sec-websocket-version"], "13");
/// ```
pub fn rejection(err: &HandshakeError) -> Response<String> {
    let status = err.http_status().unwrap_or(StatusCode::BAD_REQUEST);
    let body = format!("{err}\n");
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    match status {
        StatusCode::UPGRADE_REQUIRED => {
            h.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            h.insert(UPGRADE, HeaderValue::from_static("websocket"));
            h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            h.insert(ALLOW, HeaderValue::from_static("GET"));
        }
        _ => {}
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn base() -> http::request::Builder {
        Request::get("/")
            .header("host", "h")
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
    }

    fn check(b: http::request::Builder) -> Result<UpgradeRequest, HandshakeError> {
        let (parts, ()) = b.body(()).unwrap().into_parts();
        validate(&parts)
    }

    fn without(name: &str) -> http::request::Builder {
        let full = base().body(()).unwrap();
        let mut b = Request::get("/");
        for (k, v) in full.headers() {
            if k.as_str() != name {
                b = b.header(k, v);
            }
        }
        b
    }

    #[test]
    fn accepts_a_valid_request() {
        let up = check(base()).unwrap();
        assert_eq!(up.accept_key().unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert!(!up.is_extended_connect());
        assert!(up.protocols().is_empty());
    }

    #[test]
    fn each_rule_maps_to_its_status() {
        use HandshakeError as H;
        let cases: Vec<(http::request::Builder, H)> = vec![
            (base().method("POST"), H::MethodNotAllowed),
            (base().version(Version::HTTP_10), H::UnsupportedHttpVersion),
            (without("host"), H::MissingHost),
            (base().header("host", "again"), H::MissingHost),
            (without("upgrade"), H::NotUpgrade),
            (without("upgrade").header("upgrade", "h2c"), H::NotUpgrade),
            (without("connection"), H::MissingConnectionUpgrade),
            (
                without("connection").header("connection", "upgrades"),
                H::MissingConnectionUpgrade,
            ),
            (without("sec-websocket-version"), H::UnsupportedVersion),
            (
                without("sec-websocket-version").header("sec-websocket-version", "8"),
                H::UnsupportedVersion,
            ),
            (without("sec-websocket-key"), H::InvalidKey),
            (
                without("sec-websocket-key").header("sec-websocket-key", "c2hvcnQ="),
                H::InvalidKey,
            ),
            (
                base().header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                H::InvalidKey,
            ),
            (base().header("content-length", "5"), H::UnexpectedBody),
            (
                base().header("transfer-encoding", "chunked"),
                H::UnexpectedBody,
            ),
            (
                base().header("sec-websocket-protocol", "a, a"),
                H::InvalidHeader("Sec-WebSocket-Protocol"),
            ),
            (
                base().header("sec-websocket-extensions", "x;"),
                H::InvalidHeader("Sec-WebSocket-Extensions"),
            ),
        ];
        for (b, expected) in cases {
            assert_eq!(check(b).unwrap_err(), expected);
        }
        assert!(check(base().header("content-length", "0")).is_ok());
    }

    #[test]
    fn protocol_selection_follows_server_preference() {
        let up = check(base().header("sec-websocket-protocol", "a, b, c")).unwrap();
        assert_eq!(up.select_protocol(["c", "a"]), Some("c"));
        assert_eq!(up.select_protocol(["z"]), None);
        let resp = up.response(Some("c"), Some(HeaderValue::from_static("x")));
        assert_eq!(resp.headers()[SEC_WEBSOCKET_PROTOCOL], "c");
        assert_eq!(resp.headers()[SEC_WEBSOCKET_EXTENSIONS], "x");
    }

    #[test]
    fn rejections_have_the_right_headers() {
        let r = rejection(&HandshakeError::MethodNotAllowed);
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()[ALLOW], "GET");
        let r = rejection(&HandshakeError::NotUpgrade);
        assert_eq!(r.status(), 426);
        assert_eq!(r.headers()[UPGRADE], "websocket");
        let r = rejection(&HandshakeError::TooManyHeaders);
        assert_eq!(r.status(), 431);
        assert!(!r.body().is_empty());
    }

    fn h2_base() -> http::request::Builder {
        Request::connect("https://example.com/chat")
            .version(Version::HTTP_2)
            .header("sec-websocket-version", "13")
    }

    fn check_h2(
        b: http::request::Builder,
        protocol: Option<&str>,
    ) -> Result<UpgradeRequest, HandshakeError> {
        let req = b.body(()).unwrap();
        validate_extended_connect(req.method(), req.version(), req.headers(), protocol)
    }

    #[test]
    fn extended_connect_is_answered_with_200_and_no_connection_headers() {
        let offer = "permessage-deflate; client_max_window_bits";
        let b = h2_base()
            .header("sec-websocket-protocol", "a, b")
            .header("sec-websocket-extensions", offer);
        let up = check_h2(b, Some("websocket")).unwrap();
        assert!(up.is_extended_connect());
        assert_eq!(up.accept_key(), None);
        assert_eq!(up.protocols(), ["a", "b"]);
        assert_eq!(up.extensions().len(), 1);
        let resp = up.response(Some("b"), Some(HeaderValue::from_static("x")));
        assert_eq!(resp.status(), StatusCode::OK);
        for name in [UPGRADE, CONNECTION, SEC_WEBSOCKET_ACCEPT] {
            assert!(!resp.headers().contains_key(&name), "{name}");
        }
        assert_eq!(resp.headers()[SEC_WEBSOCKET_PROTOCOL], "b");
        assert_eq!(resp.headers()[SEC_WEBSOCKET_EXTENSIONS], "x");
        // The pseudo-header's token is compared without case, as Upgrade's.
        assert!(check_h2(h2_base(), Some("WebSocket")).is_ok());
    }

    #[test]
    fn each_extended_connect_rule_maps_to_its_status() {
        use HandshakeError as H;
        let ws = Some("websocket");
        let versionless = || Request::connect("https://h/").version(Version::HTTP_2);
        let cases: Vec<(http::request::Builder, Option<&str>, H)> = vec![
            (h2_base().method("GET"), ws, H::MethodNotAllowed),
            (
                h2_base().version(Version::HTTP_11),
                ws,
                H::UnsupportedHttpVersion,
            ),
            (h2_base(), None, H::NotUpgrade),
            (h2_base(), Some("connect-udp"), H::NotUpgrade),
            (versionless(), ws, H::UnsupportedVersion),
            (
                versionless().header("sec-websocket-version", "8"),
                ws,
                H::UnsupportedVersion,
            ),
            (
                h2_base().header("sec-websocket-version", "13"),
                ws,
                H::UnsupportedVersion,
            ),
        ];
        for (b, protocol, expected) in cases {
            assert_eq!(check_h2(b, protocol).unwrap_err(), expected);
        }
        let bad_list = h2_base().header("sec-websocket-protocol", "a b");
        assert!(check_h2(bad_list, ws).is_err());
        let bad_ext = h2_base().header("sec-websocket-extensions", "x; =");
        assert!(check_h2(bad_ext, ws).is_err());
    }

    #[test]
    fn websocket_requests_are_recognised_in_both_handshakes() {
        let parts = |b: http::request::Builder| b.body(()).unwrap().into_parts().0;
        let yes = |p: &request::Parts| is_websocket_request(&p.method, p.version, &p.headers);
        assert!(yes(&parts(base())));
        assert!(yes(&parts(h2_base())));
        // A CONNECT without the WebSocket version header is a tunnel.
        assert!(!yes(&parts(
            Request::connect("https://h/").version(Version::HTTP_2)
        )));
        // Over HTTP/2, Upgrade means nothing (RFC 9113 §8.2.2).
        assert!(!yes(&parts(base().version(Version::HTTP_2))));
        assert!(!yes(&parts(without("upgrade"))));
    }
}
