//! Client side: build the upgrade request, verify the server's 101.

use http::header::{
    CONNECTION, HOST, HeaderName, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS,
    SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri, response};

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
    accept: String,
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

        let key = generate_key();
        let mut builder = Request::get(target)
            .header(HOST, authority.as_str())
            .header(UPGRADE, "websocket")
            .header(CONNECTION, "Upgrade")
            .header(SEC_WEBSOCKET_VERSION, "13")
            .header(SEC_WEBSOCKET_KEY, key.as_str());
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
            accept: accept_key(key.as_bytes()),
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
    /// subprotocol or extension that was not offered.
    pub fn verify(&self, resp: &response::Parts) -> Result<Negotiated, HandshakeError> {
        if resp.status != StatusCode::SWITCHING_PROTOCOLS {
            return Err(HandshakeError::UnexpectedStatus(resp.status));
        }
        let h = &resp.headers;
        if !has_token(h, &UPGRADE, "Upgrade", "websocket")?
            || !has_token(h, &CONNECTION, "Connection", "upgrade")?
        {
            return Err(HandshakeError::MissingUpgrade);
        }
        let mut accepts = h.get_all(SEC_WEBSOCKET_ACCEPT).iter();
        match (accepts.next(), accepts.next()) {
            (Some(v), None) if v.as_bytes().trim_ascii() == self.accept.as_bytes() => {}
            _ => return Err(HandshakeError::InvalidAccept),
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
}
