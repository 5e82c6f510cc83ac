//! Client side: build the upgrade request, verify the server's 101 (or, for
//! HTTP/2's extended CONNECT of RFC 8441, its 200).

use http::header::{
    CONNECTION, HOST, HeaderName, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS,
    SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::uri::Scheme;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, Version, response};

use super::{accept_key, generate_key, has_token};
use std::sync::Arc;

use crate::error::HandshakeError;
use crate::extension::{ClientExtension, Extension, ExtensionItem, is_token};

/// Builds a client upgrade request.
///
/// ```
/// use sockeye_proto::handshake::client::ClientRequest;
/// let (req, handshake) = ClientRequest::new("ws://example.com:9001/chat?room=1")
///     .protocol("v1.chat")
///     .header("x-trace", "42")
///     .build()
///     .unwrap();
/// assert_eq!(req.uri(), "/chat?room=1");
/// assert_eq!(req.headers()["host"], "example.com:9001");
/// assert_eq!(req.headers()["sec-websocket-protocol"], "v1.chat");
/// assert_eq!(handshake.host(), "example.com");
/// assert_eq!(handshake.port(), 9001);
/// ```
#[derive(Debug)]
#[must_use]
pub struct ClientRequest {
    uri: Result<Uri, HandshakeError>,
    protocols: Vec<String>,
    extensions: Vec<ExtensionItem>,
    negotiator: Option<Arc<dyn ClientExtension>>,
    headers: Vec<(String, String)>,
}

/// What the client must remember to verify the response, and where to connect.
#[derive(Clone, Debug)]
pub struct ClientHandshake {
    /// The expected `Sec-WebSocket-Accept`; `None` for an extended CONNECT.
    accept: Option<String>,
    protocols: Vec<String>,
    extensions: Vec<ExtensionItem>,
    negotiator: Option<Arc<dyn ClientExtension>>,
    host: String,
    port: u16,
    tls: bool,
}

/// The outcome of a verified handshake.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// The subprotocol the server selected.
    pub protocol: Option<String>,
    /// The extensions the server accepted, with its parameters.
    pub extensions: Vec<ExtensionItem>,
}

impl ClientRequest {
    /// A request for a `ws://` or `wss://` URI (`http`/`https` are accepted
    /// as synonyms).
    pub fn new<U>(uri: U) -> Self
    where
        U: TryInto<Uri>,
    {
        Self {
            uri: uri
                .try_into()
                .map_err(|_| HandshakeError::InvalidUri("cannot parse")),
            protocols: Vec::new(),
            extensions: Vec::new(),
            negotiator: None,
            headers: Vec::new(),
        }
    }

    /// Offers a subprotocol (in order of preference).
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Offers several subprotocols.
    pub fn protocols<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.protocols.extend(protocols.into_iter().map(Into::into));
        self
    }

    /// Offers an extension by hand (the server may accept it or not). The
    /// connection cannot use an extension it has no implementation for: prefer
    /// [`negotiate`](Self::negotiate).
    pub fn extension(mut self, offer: ExtensionItem) -> Self {
        self.extensions.push(offer);
        self
    }

    /// Offers what `negotiator` offers, and lets it build the extension the
    /// server accepts (see [`ClientHandshake::finish`]).
    pub fn negotiate(mut self, negotiator: Arc<dyn ClientExtension>) -> Self {
        self.extensions.extend(negotiator.offers());
        self.negotiator = Some(negotiator);
        self
    }

    /// Adds a header (e.g. `Authorization`, `Origin`, `Cookie`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The request head and the state needed to verify the response.
    pub fn build(self) -> Result<(Request<()>, ClientHandshake), HandshakeError> {
        self.build_for(Version::HTTP_11)
    }

    /// The request for an HTTP/2 connection (RFC 8441 §5): `CONNECT` to the
    /// absolute URI (scheme `http`/`https`, which HTTP/2 sends as
    /// `:scheme`, `:authority` and `:path`), `Sec-WebSocket-Version: 13`, the
    /// offers and the user's headers, and no key, `Host`, `Upgrade` or
    /// `Connection`. The HTTP/2 client must add the `:protocol`
    /// pseudo-header `websocket` (with hyper: the `hyper::ext::Protocol`
    /// request extension), and the server must have announced
    /// SETTINGS_ENABLE_CONNECT_PROTOCOL.
    ///
    /// ```
    /// use sockeye_proto::handshake::client::ClientRequest;
    /// let (req, handshake) = ClientRequest::new("wss://example.com/chat")
    ///     .protocol("v1.chat")
    ///     .build_extended_connect()
    ///     .unwrap();
    /// assert_eq!(req.method(), http::Method::CONNECT);
    /// assert_eq!(req.version(), http::Version::HTTP_2);
    /// assert_eq!(req.uri(), "https://example.com/chat");
    /// assert!(!req.headers().contains_key("sec-websocket-key"));
    /// let ok = http::Response::builder()
    ///     .status(200)
    ///     .header("sec-websocket-protocol", "v1.chat")
    ///     .body(())
    ///     .unwrap();
    /// let negotiated = handshake.verify(&ok.into_parts().0).unwrap();
    /// assert_eq!(negotiated.protocol.as_deref(), Some("v1.chat"));
    /// ```
    pub fn build_extended_connect(self) -> Result<(Request<()>, ClientHandshake), HandshakeError> {
        self.build_for(Version::HTTP_2)
    }

    fn build_for(self, version: Version) -> Result<(Request<()>, ClientHandshake), HandshakeError> {
        let uri = self.uri?;
        let tls = match uri.scheme_str() {
            Some("ws" | "http") => false,
            Some("wss" | "https") => true,
            _ => return Err(HandshakeError::InvalidUri("scheme must be ws or wss")),
        };
        let authority = uri
            .authority()
            .ok_or(HandshakeError::InvalidUri("no host"))?;
        let host = authority.host();
        if host.is_empty() {
            return Err(HandshakeError::InvalidUri("no host"));
        }
        if authority.as_str().contains('@') {
            return Err(HandshakeError::InvalidUri("credentials in the URI"));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let target = uri.path_and_query().map_or("/", |pq| pq.as_str());

        let (mut builder, accept) = if version >= Version::HTTP_2 {
            let scheme = if tls { Scheme::HTTPS } else { Scheme::HTTP };
            let absolute = Uri::builder()
                .scheme(scheme)
                .authority(authority.clone())
                .path_and_query(target)
                .build()
                .map_err(|_| HandshakeError::InvalidUri("cannot build a request"))?;
            let builder = Request::builder()
                .method(Method::CONNECT)
                .version(version)
                .uri(absolute)
                .header(SEC_WEBSOCKET_VERSION, "13");
            (builder, None)
        } else {
            let key = generate_key();
            let builder = Request::get(target)
                .header(HOST, authority.as_str())
                .header(UPGRADE, "websocket")
                .header(CONNECTION, "Upgrade")
                .header(SEC_WEBSOCKET_VERSION, "13")
                .header(SEC_WEBSOCKET_KEY, key.as_str());
            (builder, Some(accept_key(key.as_bytes())))
        };
        if !self.protocols.is_empty() {
            if self.protocols.iter().any(|p| !is_token(p)) {
                return Err(HandshakeError::InvalidHeader("Sec-WebSocket-Protocol"));
            }
            builder = builder.header(SEC_WEBSOCKET_PROTOCOL, self.protocols.join(", "));
        }
        if !self.extensions.is_empty() {
            let offers: Vec<String> = self.extensions.iter().map(ToString::to_string).collect();
            builder = builder.header(SEC_WEBSOCKET_EXTENSIONS, offers.join(", "));
        }
        let mut req = builder
            .body(())
            .map_err(|_| HandshakeError::InvalidUri("cannot build a request"))?;
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| HandshakeError::InvalidHeader("user header name"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| HandshakeError::InvalidHeader("user header value"))?;
            req.headers_mut().append(name, value);
        }
        let handshake = ClientHandshake {
            accept,
            protocols: self.protocols,
            extensions: self.extensions,
            negotiator: self.negotiator,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            tls,
        };
        Ok((req, handshake))
    }
}

impl ClientHandshake {
    /// The host to connect to (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port to connect to (80/443 by default).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the URI asked for TLS (`wss`).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Verifies the server's response head (RFC 6455 §4.1): status 101,
    /// `Upgrade: websocket`, `Connection: upgrade`, the accept hash, and no
    /// subprotocol or extension that was not offered. For an extended
    /// CONNECT (RFC 8441 §5): a 2xx status and the same offer checks.
    pub fn verify(&self, resp: &response::Parts) -> Result<Negotiated, HandshakeError> {
        let h = &resp.headers;
        let opened = match self.accept {
            Some(_) => resp.status == StatusCode::SWITCHING_PROTOCOLS,
            None => resp.status.is_success(),
        };
        if !opened {
            return Err(HandshakeError::UnexpectedStatus(resp.status));
        }
        if let Some(expected) = &self.accept {
            if !has_token(h, &UPGRADE, "Upgrade", "websocket")?
                || !has_token(h, &CONNECTION, "Connection", "upgrade")?
            {
                return Err(HandshakeError::MissingUpgrade);
            }
            let mut accepts = h.get_all(SEC_WEBSOCKET_ACCEPT).iter();
            match (accepts.next(), accepts.next()) {
                (Some(v), None) if v.as_bytes().trim_ascii() == expected.as_bytes() => {}
                _ => return Err(HandshakeError::InvalidAccept),
            }
        }
        let protocol = selected_protocol(h)?;
        if let Some(p) = &protocol
            && !self.protocols.iter().any(|o| o == p)
        {
            return Err(HandshakeError::UnofferedProtocol);
        }
        let extensions = ExtensionItem::from_headers(h)?;
        for e in &extensions {
            if !self
                .extensions
                .iter()
                .any(|o| o.name().eq_ignore_ascii_case(e.name()))
            {
                return Err(HandshakeError::UnofferedExtension);
            }
        }
        Ok(Negotiated {
            protocol,
            extensions,
        })
    }
}

impl ClientHandshake {
    /// [`verify`](Self::verify), then builds the accepted extension with the
    /// negotiator given to [`ClientRequest::negotiate`]. The server may accept
    /// at most one extension that owns RSV bits.
    pub fn finish(
        &self,
        resp: &response::Parts,
    ) -> Result<(Negotiated, Option<Box<dyn Extension>>), HandshakeError> {
        let negotiated = self.verify(resp)?;
        let extension = match (negotiated.extensions.as_slice(), &self.negotiator) {
            ([], _) => None,
            ([one], Some(n)) => Some(n.accept(one)?),
            _ => return Err(HandshakeError::UnofferedExtension),
        };
        Ok((negotiated, extension))
    }
}

fn selected_protocol(h: &HeaderMap) -> Result<Option<String>, HandshakeError> {
    const WHAT: &str = "Sec-WebSocket-Protocol";
    let mut values = h.get_all(SEC_WEBSOCKET_PROTOCOL).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => {
            let s = v
                .to_str()
                .map_err(|_| HandshakeError::InvalidHeader(WHAT))?
                .trim();
            if is_token(s) {
                Ok(Some(s.to_owned()))
            } else {
                Err(HandshakeError::InvalidHeader(WHAT))
            }
        }
        _ => Err(HandshakeError::InvalidHeader(WHAT)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::server;

    fn respond(req: &Request<()>, proto: Option<&str>) -> response::Parts {
        let mut b = Request::get(req.uri().clone());
        for (k, v) in req.headers() {
            b = b.header(k, v);
        }
        let (parts, ()) = b.body(()).unwrap().into_parts();
        let up = server::validate(&parts).unwrap();
        up.response(proto, None).into_parts().0
    }

    #[test]
    fn request_passes_server_validation_and_response_verifies() {
        let (req, hs) = ClientRequest::new("ws://[::1]:9001")
            .protocol("a")
            .protocol("b")
            .build()
            .unwrap();
        assert_eq!(hs.host(), "::1");
        assert_eq!(req.uri(), "/");
        let resp = respond(&req, Some("b"));
        let n = hs.verify(&resp).unwrap();
        assert_eq!(n.protocol.as_deref(), Some("b"));
    }

    #[test]
    fn verification_failures() {
        let (req, hs) = ClientRequest::new("wss://h/x")
            .protocol("a")
            .build()
            .unwrap();
        assert!(hs.is_tls());
        assert_eq!(hs.port(), 443);
        let good = respond(&req, None);

        let mut r = good.clone();
        r.status = StatusCode::FORBIDDEN;
        assert_eq!(
            hs.verify(&r),
            Err(HandshakeError::UnexpectedStatus(StatusCode::FORBIDDEN))
        );

        let mut r = good.clone();
        r.headers.remove(UPGRADE);
        assert_eq!(hs.verify(&r), Err(HandshakeError::MissingUpgrade));

        let mut r = good.clone();
        r.headers
            .insert(SEC_WEBSOCKET_ACCEPT, HeaderValue::from_static("nope"));
        assert_eq!(hs.verify(&r), Err(HandshakeError::InvalidAccept));

        let mut r = good.clone();
        r.headers
            .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("zzz"));
        assert_eq!(hs.verify(&r), Err(HandshakeError::UnofferedProtocol));

        let mut r = good.clone();
        r.headers.insert(
            SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static("permessage-deflate"),
        );
        assert_eq!(hs.verify(&r), Err(HandshakeError::UnofferedExtension));

        assert!(hs.verify(&good).is_ok());
    }

    #[test]
    fn bad_uris() {
        for uri in ["http2://h/", "ws:///x", "ws://user:pw@h/", "not a uri"] {
            assert!(ClientRequest::new(uri).build().is_err(), "{uri}");
        }
        assert!(
            ClientRequest::new("ws://h/")
                .protocol("a b")
                .build()
                .is_err()
        );
    }

    #[test]
    fn extended_connect_request_and_its_verification() {
        let (req, hs) = ClientRequest::new("ws://h:8080/chat?x=1")
            .protocols(["a", "b"])
            .extension(ExtensionItem::new("permessage-deflate"))
            .header("origin", "http://h:8080")
            .build_extended_connect()
            .unwrap();
        assert_eq!(req.method(), Method::CONNECT);
        assert_eq!(req.version(), Version::HTTP_2);
        assert_eq!(req.uri(), "http://h:8080/chat?x=1");
        assert_eq!(req.headers()[SEC_WEBSOCKET_VERSION], "13");
        assert_eq!(req.headers()[SEC_WEBSOCKET_PROTOCOL], "a, b");
        assert_eq!(
            req.headers()[SEC_WEBSOCKET_EXTENSIONS],
            "permessage-deflate"
        );
        assert_eq!(req.headers()["origin"], "http://h:8080");
        for name in [HOST, UPGRADE, CONNECTION, SEC_WEBSOCKET_KEY] {
            assert!(!req.headers().contains_key(&name), "{name}");
        }
        assert_eq!((hs.host(), hs.port(), hs.is_tls()), ("h", 8080, false));
        // The server side accepts it, and its answer verifies.
        let up = crate::handshake::server::validate_extended_connect(
            req.method(),
            req.version(),
            req.headers(),
            Some("websocket"),
        )
        .unwrap();
        let answer = up.response(up.select_protocol(["b"]), None);
        assert_eq!(
            hs.verify(&answer.into_parts().0)
                .unwrap()
                .protocol
                .as_deref(),
            Some("b")
        );

        let resp = |status: u16, headers: &[(&str, &str)]| {
            let mut b = http::Response::builder().status(status);
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.body(()).unwrap().into_parts().0
        };
        let ok = hs
            .verify(&resp(200, &[("sec-websocket-protocol", "b")]))
            .unwrap();
        assert_eq!(ok.protocol.as_deref(), Some("b"));
        // A 101 does not open a stream; refusals keep their status.
        for status in [101, 403, 426] {
            assert_eq!(
                hs.verify(&resp(status, &[])),
                Err(HandshakeError::UnexpectedStatus(
                    StatusCode::from_u16(status).unwrap()
                ))
            );
        }
        assert_eq!(
            hs.verify(&resp(200, &[("sec-websocket-protocol", "z")])),
            Err(HandshakeError::UnofferedProtocol)
        );
        assert_eq!(
            hs.verify(&resp(200, &[("sec-websocket-extensions", "x-other")])),
            Err(HandshakeError::UnofferedExtension)
        );
        let (req, _) = ClientRequest::new("wss://h/")
            .build_extended_connect()
            .unwrap();
        assert_eq!(req.uri(), "https://h/");
    }
}
