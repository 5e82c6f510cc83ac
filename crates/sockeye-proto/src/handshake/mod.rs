//! The opening handshake (RFC 6455 §4) as data: validate a request and build
//! the 101 ([`server`]), build a request and verify the 101 ([`client`]), and
//! read or write HTTP/1.1 heads for drivers that own the socket ([`http1`]).
//! Nothing here performs I/O.

pub mod client;
pub mod http1;
pub mod server;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use http::header::HeaderName;
use sha1::{Digest, Sha1};

use crate::error::HandshakeError;
use crate::extension::is_token;

/// The TCP peer of an HTTP request, as a server records it in the
/// request's `http::Extensions` for what runs before the upgrade (the
/// per-IP caps of sockeye-auth's `SocketLimitLayer` read it).
/// `sockeye_hyper::serve` inserts it in every request; with another
/// server loop, insert it yourself (with axum's
/// `into_make_service_with_connect_info`, copy `ConnectInfo` into it).
///
/// ```
/// use sockeye_proto::handshake::PeerAddr;
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(PeerAddr("192.0.2.7:50000".parse().unwrap()));
/// assert_eq!(request.extensions().get::<PeerAddr>().unwrap().0.port(), 50000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// The GUID of RFC 6455 §1.3.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
///
/// ```
/// use sockeye_proto::handshake::accept_key;
/// // The example of RFC 6455 §1.3.
/// assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    STANDARD.encode(sha.finalize())
}

/// A fresh random `Sec-WebSocket-Key`: 16 bytes from a CSPRNG, base64.
pub fn generate_key() -> String {
    STANDARD.encode(rand::random::<[u8; 16]>())
}

/// The comma-separated tokens of every instance of a header, trimmed, empty
/// elements skipped. `Err` if a value is not visible ASCII.
fn header_tokens<'a>(
    headers: &'a HeaderMap,
    name: &'static HeaderName,
    what: &'static str,
) -> Result<Vec<&'a str>, HandshakeError> {
    let mut out = Vec::new();
    for value in headers.get_all(name) {
        let s = value
            .to_str()
            .map_err(|_| HandshakeError::InvalidHeader(what))?;
        out.extend(s.split(',').map(str::trim).filter(|t| !t.is_empty()));
    }
    Ok(out)
}

/// Whether any instance of the header lists `token` (case-insensitive).
fn has_token(
    headers: &HeaderMap,
    name: &'static HeaderName,
    what: &'static str,
    token: &str,
) -> Result<bool, HandshakeError> {
    Ok(header_tokens(headers, name, what)?
        .iter()
        .any(|t| t.eq_ignore_ascii_case(token)))
}

/// Parses `Sec-WebSocket-Protocol`: tokens, no duplicates.
fn protocol_list(headers: &HeaderMap) -> Result<Vec<String>, HandshakeError> {
    const WHAT: &str = "Sec-WebSocket-Protocol";
    let tokens = header_tokens(headers, &http::header::SEC_WEBSOCKET_PROTOCOL, WHAT)?;
    let mut out: Vec<String> = Vec::with_capacity(tokens.len());
    for t in tokens {
        if !is_token(t) || out.iter().any(|p| p == t) {
            return Err(HandshakeError::InvalidHeader(WHAT));
        }
        out.push(t.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use http::header::{CONNECTION, SEC_WEBSOCKET_PROTOCOL};

    #[test]
    fn tokens_across_lines_not_substrings() {
        let mut h = HeaderMap::new();
        h.append(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        assert!(has_token(&h, &CONNECTION, "Connection", "upgrade").unwrap());
        let mut h = HeaderMap::new();
        h.append(
            CONNECTION,
            HeaderValue::from_static("upgrades, not-upgrade"),
        );
        assert!(!has_token(&h, &CONNECTION, "Connection", "upgrade").unwrap());
        let mut h = HeaderMap::new();
        h.append(CONNECTION, HeaderValue::from_static("close"));
        h.append(CONNECTION, HeaderValue::from_static("upgrade"));
        assert!(has_token(&h, &CONNECTION, "Connection", "upgrade").unwrap());
    }

    #[test]
    fn protocol_list_rules() {
        let mut h = HeaderMap::new();
        h.append(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("chat, v2.json"),
        );
        assert_eq!(protocol_list(&h).unwrap(), ["chat", "v2.json"]);
        h.append(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("chat"));
        assert!(protocol_list(&h).is_err());
        let mut h = HeaderMap::new();
        h.append(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("a b"));
        assert!(protocol_list(&h).is_err());
    }

    #[test]
    fn keys_are_random_and_16_bytes() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert_eq!(STANDARD.decode(a).unwrap().len(), 16);
    }
}
