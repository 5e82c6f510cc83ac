//! Extensions (RFC 6455 §9): the `Sec-WebSocket-Extensions` grammar and the
//! [`Extension`] trait that negotiated extensions (permessage-deflate)
//! implement.
//!
//! ```text
//! extension-list = 1#extension
//! extension      = extension-token *( ";" extension-param )
//! extension-param = token [ "=" (token | quoted-string) ]
//! ```
//! Quoted values must unescape to a token (§9.1).

use std::fmt;

use bytes::Bytes;
use http::HeaderMap;
use http::header::SEC_WEBSOCKET_EXTENSIONS;

use crate::error::{Error, HandshakeError};
use crate::frame::{OpCode, Rsv};

/// A negotiated extension, transforming whole data messages.
///
/// Outgoing: [`encode`](Self::encode) sees each complete text or binary
/// message and may replace its payload, setting RSV bits on the first frame.
/// Incoming: for a message whose first frame has RSV bits the extension owns,
/// [`decode`](Self::decode) is called once per frame, in order, and appends
/// the decoded bytes; the connection enforces the message-size limit on the
/// decoded size through `limit`, and validates UTF-8 on the decoded text.
/// RSV bits are only allowed on the first frame of a data message; control
/// and continuation frames with RSV bits are protocol errors (1002).
pub trait Extension: Send + fmt::Debug {
    /// The extension token, e.g. `permessage-deflate`.
    fn name(&self) -> &str;

    /// The RSV bits this extension owns.
    fn rsv(&self) -> Rsv;

    /// Transforms an outgoing data message. `Ok(None)` sends it unchanged
    /// (e.g. under a size threshold).
    fn encode(&mut self, opcode: OpCode, payload: &Bytes) -> Result<Option<(Rsv, Bytes)>, Error>;

    /// Decodes one frame of an incoming transformed message, appending to
    /// `out`. `fin` marks the last frame. Must fail with
    /// [`CapacityError::MessageTooLarge`](crate::CapacityError::MessageTooLarge)
    /// rather than let `out` grow much past `limit` bytes (at most one
    /// internal chunk beyond it).
    fn decode(
        &mut self,
        payload: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), Error>;

    /// When this connection's encoding of a message does not depend on
    /// earlier messages (e.g. deflate without context takeover), a key that
    /// is equal for every connection that would encode identically. A
    /// [`PreparedMessage`](crate::PreparedMessage) encoded once under that key
    /// is then sent as is by all of them.
    fn shared_encoding(&self) -> Option<u64> {
        None
    }
}

/// An accepted extension: the response parameters for
/// `Sec-WebSocket-Extensions`, and the extension to install.
pub type Negotiated = (ExtensionItem, Box<dyn Extension>);

/// Server-side negotiation of an extension during the opening handshake.
///
/// Given every offer of the client, in order, accept one (returning the
/// response parameters for `Sec-WebSocket-Extensions` and the extension to
/// install), decline all (`Ok(None)`), or refuse the handshake.
pub trait ServerExtension: Send + Sync + fmt::Debug {
    /// Chooses among the client's offers.
    fn negotiate(&self, offers: &[ExtensionItem]) -> Result<Option<Negotiated>, HandshakeError>;
}

/// Client-side negotiation: what to offer, and how to install what the
/// server accepted.
pub trait ClientExtension: Send + Sync + fmt::Debug {
    /// The offers to send, in order of preference.
    fn offers(&self) -> Vec<ExtensionItem>;

    /// Builds the extension from the server's response parameters; an
    /// unacceptable response fails the handshake.
    fn accept(&self, response: &ExtensionItem) -> Result<Box<dyn Extension>, HandshakeError>;
}

/// An extension agreed before the upgrade by a layer that parsed the offer
/// (such as a permessage-deflate tower layer), recorded in the request's
/// `http::Extensions`. The upgrade installs [`build`](Self::build) on the
/// new connection; the layer answers with [`response`](Self::response) in
/// the 101.
#[derive(Clone)]
pub struct AgreedExtension {
    response: ExtensionItem,
    make: std::sync::Arc<dyn Fn() -> Box<dyn Extension> + Send + Sync>,
}

impl AgreedExtension {
    /// An agreement answered with `response`, built by `make`.
    pub fn new<F>(response: ExtensionItem, make: F) -> Self
    where
        F: Fn() -> Box<dyn Extension> + Send + Sync + 'static,
    {
        Self {
            response,
            make: std::sync::Arc::new(make),
        }
    }

    /// The `Sec-WebSocket-Extensions` element of the 101.
    pub fn response(&self) -> &ExtensionItem {
        &self.response
    }

    /// A fresh extension for one connection.
    pub fn build(&self) -> Box<dyn Extension> {
        (self.make)()
    }
}

impl fmt::Debug for AgreedExtension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgreedExtension")
            .field("response", &self.response)
            .finish_non_exhaustive()
    }
}

// ===== impl ExtensionItem =====

/// One extension from a `Sec-WebSocket-Extensions` list: a name and its
/// parameters, values already unquoted.
///
/// ```
/// use sockeye_proto::extension::ExtensionItem;
/// let list = ExtensionItem::parse_list(
///     "permessage-deflate; client_max_window_bits, permessage-deflate; server_max_window_bits=\"10\"",
/// ).unwrap();
/// assert_eq!(list.len(), 2);
/// assert_eq!(list[1].param("server_max_window_bits"), Some(Some("10")));
/// assert_eq!(list[0].to_string(), "permessage-deflate; client_max_window_bits");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionItem {
    name: String,
    params: Vec<(String, Option<String>)>,
}

impl ExtensionItem {
    /// An extension with no parameters. `name` must be a token.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            params: Vec::new(),
        }
    }

    /// Adds a parameter (by value, for building offers and responses).
    #[must_use]
    pub fn with_param(mut self, name: impl Into<String>, value: Option<String>) -> Self {
        self.params.push((name.into(), value));
        self
    }

    /// The extension token.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parameters, in order.
    pub fn params(&self) -> &[(String, Option<String>)] {
        &self.params
    }

    /// The first parameter with this name (case-insensitive): `Some(None)`
    /// when present without a value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// Parses a full extension list (one header value, or several joined by
    /// commas). Linear time, no regex.
    pub fn parse_list(input: &str) -> Result<Vec<Self>, HandshakeError> {
        Parser {
            s: input.as_bytes(),
            pos: 0,
        }
        .list()
        .ok_or(HandshakeError::InvalidHeader("Sec-WebSocket-Extensions"))
    }

    /// Parses every `Sec-WebSocket-Extensions` header of a head, in order.
    pub fn from_headers(headers: &HeaderMap) -> Result<Vec<Self>, HandshakeError> {
        let mut all = Vec::new();
        for value in headers.get_all(SEC_WEBSOCKET_EXTENSIONS) {
            let s = value
                .to_str()
                .map_err(|_| HandshakeError::InvalidHeader("Sec-WebSocket-Extensions"))?;
            all.extend(Self::parse_list(s)?);
        }
        Ok(all)
    }
}

impl fmt::Display for ExtensionItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for (name, value) in &self.params {
            match value {
                Some(v) => write!(f, "; {name}={v}")?,
                None => write!(f, "; {name}")?,
            }
        }
        Ok(())
    }
}

/// Whether `c` may appear in an RFC 7230 token.
pub(crate) fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Whether `s` is a non-empty RFC 7230 token.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> Option<String> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        (self.pos > start).then(|| String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    fn quoted(&mut self) -> Option<String> {
        // Opening quote already seen.
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    break;
                }
                b'\\' => {
                    self.pos += 1;
                    out.push(self.peek()?);
                    self.pos += 1;
                }
                c => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        let value = String::from_utf8(out).ok()?;
        is_token(&value).then_some(value)
    }

    fn item(&mut self) -> Option<ExtensionItem> {
        self.skip_ws();
        let mut item = ExtensionItem::new(self.token()?);
        loop {
            self.skip_ws();
            if self.peek() != Some(b';') {
                return Some(item);
            }
            self.pos += 1;
            self.skip_ws();
            let name = self.token()?;
            self.skip_ws();
            let value = if self.peek() == Some(b'=') {
                self.pos += 1;
                self.skip_ws();
                Some(if self.peek() == Some(b'"') {
                    self.quoted()?
                } else {
                    self.token()?
                })
            } else {
                None
            };
            item.params.push((name, value));
        }
    }

    fn list(&mut self) -> Option<Vec<ExtensionItem>> {
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            // Empty list elements (", ,") are allowed by the #rule.
            if self.peek() == Some(b',') {
                self.pos += 1;
                continue;
            }
            if self.peek().is_none() {
                break;
            }
            items.push(self.item()?);
            self.skip_ws();
            match self.peek() {
                None => break,
                Some(b',') => self.pos += 1,
                Some(_) => return None,
            }
        }
        (!items.is_empty()).then_some(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_params_and_quotes() {
        let list = ExtensionItem::parse_list("foo, bar; baz=2;quux ,  x; y=\"tok\\en\"").unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[0], ExtensionItem::new("foo"));
        assert_eq!(list[1].param("baz"), Some(Some("2")));
        assert_eq!(list[1].param("QUUX"), Some(None));
        assert_eq!(list[2].param("y"), Some(Some("token")));
        assert_eq!(list[1].param("nope"), None);
    }

    #[test]
    fn rejects_bad_grammar() {
        for bad in [
            "",
            ",",
            "foo;",
            "foo; =1",
            "foo; a=",
            "foo; a=\"unterminated",
            "foo; a=\"not a token\"",
            "fo o",
            "foo; a=b c",
            "constructor(",
            "é",
        ] {
            assert!(ExtensionItem::parse_list(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn display_roundtrips() {
        let s = "permessage-deflate; client_max_window_bits=10; server_no_context_takeover";
        let list = ExtensionItem::parse_list(s).unwrap();
        assert_eq!(list[0].to_string(), s);
    }

    #[test]
    fn linear_on_pathological_input() {
        // The ws CVE-2021-32640 shape: many spaces between tokens.
        let s = format!("b{}x", " ".repeat(100_000));
        assert!(ExtensionItem::parse_list(&s).is_err());
    }
}
