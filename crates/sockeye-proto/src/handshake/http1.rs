//! HTTP/1.1 heads on the wire, for drivers that own the socket (the raw
//! accept and client paths). Pure functions over bytes, with the limits of
//! [`Config`]: head size (431), header count (431) and
//! request-target length (414).
//!
//! Callers look for the end of the head with [`find_head_end`], scanning only
//! the bytes that are new since the last look, and parse once the head is
//! complete, so a head trickled in byte by byte costs linear time
//! (CVE-2023-43669 was the quadratic version).

use std::fmt::Write as _;

use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version, request, response};

use crate::config::Config;
use crate::error::HandshakeError;

/// The longest request target accepted (414 beyond).
pub const MAX_URI_LEN: usize = 8 << 10;

/// The end of the head (just past the blank line) if it lies in `buf`.
/// `from` is where the previous search stopped; bytes before it are not
/// scanned again. Empty lines before the start line are skipped, as the
/// parsers do (RFC 9112 §2.2); a caller reading incrementally should drop
/// them as they arrive ([`leading_empty_lines`]) so they are not rescanned.
///
/// ```
/// use sockeye_proto::handshake::http1::find_head_end;
/// let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest";
/// assert_eq!(find_head_end(head, 0), Some(27));
/// assert_eq!(find_head_end(&head[..20], 0), None);
/// assert_eq!(find_head_end(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n", 0), Some(22));
/// ```
pub fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let lead = leading_empty_lines(buf);
    let start = from.saturating_sub(3).max(lead);
    let hay = buf.get(start..)?;
    let mut i = 0;
    while i + 1 < hay.len() {
        if hay[i] == b'\n' {
            if hay[i + 1] == b'\n' {
                return Some(start + i + 2);
            }
            if hay[i + 1] == b'\r' && hay.get(i + 2) == Some(&b'\n') {
                return Some(start + i + 3);
            }
        }
        i += 1;
    }
    None
}

/// The length of the empty lines (`\r\n` or `\n`) at the start of `buf`.
pub fn leading_empty_lines(buf: &[u8]) -> usize {
    let mut lead = 0;
    loop {
        match &buf[lead..] {
            [b'\r', b'\n', ..] => lead += 2,
            [b'\n', ..] => lead += 1,
            _ => return lead,
        }
    }
}

fn check_size(len: usize, config: &Config) -> Result<(), HandshakeError> {
    if len > config.max_header_bytes() {
        Err(HandshakeError::HeadTooLarge)
    } else {
        Ok(())
    }
}

fn map_parse_error(e: httparse::Error) -> HandshakeError {
    match e {
        httparse::Error::TooManyHeaders => HandshakeError::TooManyHeaders,
        httparse::Error::Version => HandshakeError::UnsupportedHttpVersion,
        httparse::Error::HeaderName => HandshakeError::MalformedHead("header name"),
        httparse::Error::HeaderValue => HandshakeError::MalformedHead("header value"),
        httparse::Error::Token => HandshakeError::MalformedHead("method"),
        httparse::Error::Status => HandshakeError::MalformedHead("status"),
        httparse::Error::NewLine => HandshakeError::MalformedHead("line ending"),
    }
}

fn version(minor: Option<u8>) -> Version {
    match minor {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    }
}

fn collect_headers(
    raw: &[httparse::Header<'_>],
    dst: &mut http::HeaderMap,
) -> Result<(), HandshakeError> {
    dst.reserve(raw.len());
    for h in raw {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| HandshakeError::MalformedHead("header name"))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| HandshakeError::MalformedHead("header value"))?;
        dst.append(name, value);
    }
    Ok(())
}

/// Parses a request head. `Ok(None)`: incomplete (and within the limits).
/// On success returns the head and the number of bytes it took; bytes after
/// it belong to the WebSocket stream.
pub fn parse_request(
    buf: &[u8],
    config: &Config,
) -> Result<Option<(request::Parts, usize)>, HandshakeError> {
    let mut headers = vec![httparse::EMPTY_HEADER; config.max_headers()];
    let mut req = httparse::Request::new(&mut headers);
    let status = req.parse(buf).map_err(map_parse_error)?;
    let httparse::Status::Complete(len) = status else {
        check_size(buf.len(), config)?;
        return Ok(None);
    };
    check_size(len, config)?;
    let path = req.path.unwrap_or("/");
    if path.len() > MAX_URI_LEN {
        return Err(HandshakeError::UriTooLong);
    }
    let method = Method::from_bytes(req.method.unwrap_or("GET").as_bytes())
        .map_err(|_| HandshakeError::MalformedHead("method"))?;
    let uri = Uri::try_from(path).map_err(|_| HandshakeError::MalformedHead("request target"))?;
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = version(req.version);
    collect_headers(req.headers, &mut parts.headers)?;
    Ok(Some((parts, len)))
}

/// Parses a response head, like [`parse_request`].
pub fn parse_response(
    buf: &[u8],
    config: &Config,
) -> Result<Option<(response::Parts, usize)>, HandshakeError> {
    let mut headers = vec![httparse::EMPTY_HEADER; config.max_headers()];
    let mut resp = httparse::Response::new(&mut headers);
    let status = resp.parse(buf).map_err(map_parse_error)?;
    let httparse::Status::Complete(len) = status else {
        check_size(buf.len(), config)?;
        return Ok(None);
    };
    check_size(len, config)?;
    let code = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(HandshakeError::MalformedHead("status"))?;
    let (mut parts, ()) = Response::new(()).into_parts();
    parts.status = code;
    parts.version = version(resp.version);
    collect_headers(resp.headers, &mut parts.headers)?;
    Ok(Some((parts, len)))
}

/// Writes a request head (`GET target HTTP/1.1`, the headers, a blank line).
pub fn encode_request(req: &Request<()>, dst: &mut Vec<u8>) {
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let mut head = String::with_capacity(256);
    let _ = write!(head, "{} {} HTTP/1.1\r\n", req.method(), target);
    dst.extend_from_slice(head.as_bytes());
    encode_headers(req.headers(), dst);
}

/// Writes a response head with the given body (a `Content-Length` is added
/// unless the status is 101).
pub fn encode_response<B: AsRef<[u8]>>(resp: &Response<B>, dst: &mut Vec<u8>) {
    let status = resp.status();
    let mut head = String::with_capacity(128);
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    dst.extend_from_slice(head.as_bytes());
    let body = resp.body().as_ref();
    let mut headers = resp.headers().clone();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    encode_headers(&headers, dst);
    dst.extend_from_slice(body);
}

fn encode_headers(headers: &http::HeaderMap, dst: &mut Vec<u8>) {
    for (name, value) in headers {
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    dst.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_roundtrip() {
        let req = Request::get("/a?b=c")
            .header("host", "h")
            .header("x-two", "1")
            .header("x-two", "2")
            .body(())
            .unwrap();
        let mut wire = Vec::new();
        encode_request(&req, &mut wire);
        wire.extend_from_slice(b"\x81\x00");
        let end = find_head_end(&wire, 0).unwrap();
        let (parts, len) = parse_request(&wire, &Config::default()).unwrap().unwrap();
        assert_eq!(len, end);
        assert_eq!(&wire[len..], b"\x81\x00");
        assert_eq!(parts.uri, "/a?b=c");
        assert_eq!(parts.headers.get_all("x-two").iter().count(), 2);
    }

    #[test]
    fn response_roundtrip() {
        let resp = Response::builder()
            .status(403)
            .header("x", "y")
            .body("nope")
            .unwrap();
        let mut wire = Vec::new();
        encode_response(&resp, &mut wire);
        let (parts, len) = parse_response(&wire, &Config::default()).unwrap().unwrap();
        assert_eq!(parts.status, 403);
        assert_eq!(&wire[len..], b"nope");
        assert_eq!(parts.headers["content-length"], "4");
    }

    #[test]
    fn limits() {
        let config = Config::builder()
            .max_header_bytes(64)
            .max_headers(2)
            .build();
        let big = format!("GET / HTTP/1.1\r\nx: {}\r\n", "a".repeat(100));
        assert_eq!(
            parse_request(big.as_bytes(), &config).unwrap_err(),
            HandshakeError::HeadTooLarge
        );
        let many = "GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n";
        assert_eq!(
            parse_request(many.as_bytes(), &config).unwrap_err(),
            HandshakeError::TooManyHeaders
        );
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_URI_LEN));
        let roomy = Config::builder().max_header_bytes(1 << 20).build();
        assert_eq!(
            parse_request(long.as_bytes(), &roomy).unwrap_err(),
            HandshakeError::UriTooLong
        );
        assert!(
            parse_request(b"GET / HTTP/1.1\r\nHo", &config)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn malformed_heads_are_errors_not_panics() {
        for bad in [
            &b"GET / HTTP/1.1\r\nbad header\r\n\r\n"[..],
            b"\0\0\0 / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET /\0 HTTP/1.1\r\n\r\n",
        ] {
            assert!(parse_request(bad, &Config::default()).is_err(), "{bad:?}");
        }
        assert!(parse_response(b"HTTP/1.1 abc OK\r\n\r\n", &Config::default()).is_err());
    }

    #[test]
    fn leading_empty_lines_are_skipped_like_the_parser_does() {
        // Found by the handshake_request fuzz target.
        for wire in [
            &b"\n\nGET / HTTP/1.1\n\n"[..],
            b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            let (_, n) = parse_request(wire, &Config::default()).unwrap().unwrap();
            assert_eq!(find_head_end(wire, 0), Some(n));
        }
        let wire = b"\r\n\r\nHTTP/1.1 101 Switching Protocols\r\n\r\n";
        let (_, n) = parse_response(wire, &Config::default()).unwrap().unwrap();
        assert_eq!(find_head_end(wire, 0), Some(n));
        assert_eq!(leading_empty_lines(b"\r\n\nx"), 3);
        assert_eq!(leading_empty_lines(b"\r"), 0);
    }

    #[test]
    fn head_end_search_resumes() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut from = 0;
        let mut found = None;
        for end in 1..=head.len() {
            found = find_head_end(&head[..end], from);
            if found.is_some() {
                break;
            }
            from = end;
        }
        assert_eq!(found, Some(head.len()));
        assert_eq!(find_head_end(b"HTTP/1.1 101 x\n\nab", 0), Some(16));
    }
}
