//! HTTP CONNECT proxies: explicit, or from `HTTPS_PROXY` / `HTTP_PROXY` /
//! `ALL_PROXY` and `NO_PROXY` (either case), with Basic credentials.

use std::fmt;
use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sockeye_proto::Config;
use sockeye_proto::handshake::http1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::Error;

/// An HTTP proxy (`http://[user:password@]host[:port]`).
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    host: String,
    port: u16,
    /// `Basic` credentials, already base64-encoded.
    auth: Option<String>,
}

impl Proxy {
    /// Parses a proxy URL. Only `http://` proxies are supported (the tunnel
    /// itself carries TLS for `wss://`); a bare `host:port` means `http://`.
    ///
    /// ```
    /// use sockeye_hyper::client::Proxy;
    /// let p = Proxy::parse("http://alice:s%40cret@proxy.local:3128").unwrap();
    /// assert_eq!(p.to_string(), "http://proxy.local:3128"); // never the credentials
    /// assert!(Proxy::parse("socks5://proxy:1080").is_err());
    /// ```
    pub fn parse(url: &str) -> Result<Self, Error> {
        let url = url.trim();
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                return Err(Error::InvalidUrl(format!(
                    "unsupported proxy scheme {scheme}:// (only http:// CONNECT proxies)"
                )));
            }
            None => url,
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport, 80)
            .ok_or_else(|| Error::InvalidUrl("proxy URL has no host".into()))?;
        let auth = match userinfo {
            Some(u) => {
                let (user, pass) = u.split_once(':').unwrap_or((u, ""));
                let creds = format!("{}:{}", percent_decode(user), percent_decode(pass));
                Some(STANDARD.encode(creds))
            }
            None => None,
        };
        Ok(Self { host, port, auth })
    }

    /// The proxy's host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The proxy to use for `target`, from the environment: `HTTPS_PROXY`
    /// for `wss`, `HTTP_PROXY` for `ws`, then `ALL_PROXY` (upper or lower
    /// case), unless `NO_PROXY` excludes the host.
    pub fn from_env(tls: bool, host: &str, port: u16) -> Result<Option<Self>, Error> {
        let get = |name: &str| {
            std::env::var(name)
                .ok()
                .or_else(|| std::env::var(name.to_ascii_lowercase()).ok())
                .filter(|v| !v.trim().is_empty())
        };
        let no_proxy = get("NO_PROXY").unwrap_or_default();
        if no_proxy_matches(&no_proxy, host, port) {
            return Ok(None);
        }
        let var = if tls { "HTTPS_PROXY" } else { "HTTP_PROXY" };
        match get(var).or_else(|| get("ALL_PROXY")) {
            Some(url) => Self::parse(&url).map(Some),
            None => Ok(None),
        }
    }

    /// Opens a tunnel to `host:port` through this proxy on `tcp` (already
    /// connected to the proxy). A refusal is an error naming the status.
    pub(crate) async fn tunnel(
        &self,
        tcp: &mut TcpStream,
        host: &str,
        port: u16,
        limits: &Config,
    ) -> Result<(), Error> {
        let target = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(auth) = &self.auth {
            head.push_str("Proxy-Authorization: Basic ");
            head.push_str(auth);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        tcp.write_all(head.as_bytes()).await?;

        let mut buf = Vec::with_capacity(512);
        loop {
            match Self::parse_connect_response(&buf, limits) {
                Ok(Some(())) => return Ok(()),
                Ok(None) => {}
                Err(ConnectResponse::Refused(status)) => {
                    return Err(Error::Proxy {
                        proxy: self.to_string(),
                        status,
                    });
                }
                Err(ConnectResponse::Invalid(reason)) => return Err(self.protocol_error(&reason)),
            }
            let mut chunk = [0u8; 1024];
            let n = tcp.read(&mut chunk).await?;
            if n == 0 {
                return Err(self.protocol_error("closed the connection before answering"));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Parses a proxy's answer to CONNECT (sans-IO): `Ok(None)` needs more
    /// bytes, `Ok(Some(()))` the tunnel is open (a 2xx with nothing after
    /// the head), otherwise the refusal or what is wrong with the answer.
    ///
    /// ```
    /// use sockeye_hyper::client::{ConnectResponse, Proxy};
    /// let limits = sockeye_hyper::Config::default();
    /// assert_eq!(Proxy::parse_connect_response(b"HTTP/1.1 200 OK\r\n\r\n", &limits), Ok(Some(())));
    /// assert_eq!(Proxy::parse_connect_response(b"HTTP/1.1 200 OK\r\n", &limits), Ok(None));
    /// assert!(matches!(
    ///     Proxy::parse_connect_response(b"HTTP/1.1 407 Auth\r\n\r\n", &limits),
    ///     Err(ConnectResponse::Refused(s)) if s == 407
    /// ));
    /// ```
    pub fn parse_connect_response(
        buf: &[u8],
        limits: &Config,
    ) -> Result<Option<()>, ConnectResponse> {
        let Some(end) = http1::find_head_end(buf, 0) else {
            if buf.len() >= limits.max_header_bytes() {
                return Err(ConnectResponse::Invalid("response head too large".into()));
            }
            return Ok(None);
        };
        let parsed = http1::parse_response(&buf[..end], limits)
            .map_err(|e| ConnectResponse::Invalid(e.to_string()))?;
        let Some((parts, _)) = parsed else {
            return Err(ConnectResponse::Invalid("incomplete response head".into()));
        };
        if !parts.status.is_success() {
            return Err(ConnectResponse::Refused(parts.status));
        }
        if buf.len() > end {
            // Nothing may come before we speak through the tunnel.
            return Err(ConnectResponse::Invalid(
                "sent data after opening the tunnel".into(),
            ));
        }
        Ok(Some(()))
    }

    fn protocol_error(&self, reason: &str) -> Error {
        Error::ProxyProtocol {
            proxy: self.to_string(),
            reason: reason.to_owned(),
        }
    }
}

/// Why a proxy's answer to CONNECT does not open a tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectResponse {
    /// A non-2xx status.
    Refused(http::StatusCode),
    /// Not an acceptable HTTP answer.
    Invalid(String),
}

/// Never shows the credentials.
impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "http://{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `host[:port]` or `[v6][:port]`.
fn split_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        (host.to_owned(), port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().ok()?),
            None => (s.to_owned(), default_port),
        }
    };
    (!host.is_empty()).then_some((host, port))
}

/// User info as RFC 3986 writes it: `%` and two hex digits are a byte
/// (`+` is a plus, no form encoding); a `%` not followed by two hex digits
/// is kept as written; bytes that are not UTF-8 become U+FFFD.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Whether `NO_PROXY` excludes `host:port`. Entries are separated by commas
/// or spaces: `*` (everything), a domain (itself and its subdomains, a
/// leading dot optional), an IP address, or a CIDR block; any may end in
/// `:port` to apply to that port only. Case-insensitive.
pub(crate) fn no_proxy_matches(no_proxy: &str, host: &str, port: u16) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let host_ip: Option<IpAddr> = host.parse().ok();
    no_proxy
        .split([',', ' '])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let entry = entry.to_ascii_lowercase();
            // A port suffix, unless the entry is a bare IPv6 address.
            let (name, entry_port) = match entry.rsplit_once(':') {
                Some((n, p)) if !n.contains(':') || n.ends_with(']') => (
                    n.trim_start_matches('[').trim_end_matches(']').to_owned(),
                    p.parse().ok(),
                ),
                _ => (
                    entry
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_owned(),
                    None,
                ),
            };
            if entry_port.is_some_and(|p: u16| p != port) {
                return false;
            }
            if let Some((net, bits)) = name.split_once('/') {
                return match (host_ip, net.parse::<IpAddr>(), bits.parse::<u8>()) {
                    (Some(ip), Ok(net), Ok(bits)) => in_cidr(ip, net, bits),
                    _ => false,
                };
            }
            if let (Some(ip), Ok(entry_ip)) = (host_ip, name.parse::<IpAddr>()) {
                return ip == entry_ip;
            }
            let domain = name.trim_start_matches('.');
            !domain.is_empty()
                && (host == domain
                    || host
                        .strip_suffix(domain)
                        .is_some_and(|prefix| prefix.ends_with('.')))
        })
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proxies() {
        let p = Proxy::parse("http://u:p%3Aw@proxy:8080/").unwrap();
        assert_eq!((p.host(), p.port()), ("proxy", 8080));
        assert_eq!(p.auth.as_deref(), Some(STANDARD.encode("u:p:w").as_str()));
        assert_eq!(Proxy::parse("proxy.local").unwrap().port(), 80);
        assert_eq!(Proxy::parse("[::1]:3128").unwrap().host(), "::1");
        assert!(Proxy::parse("https://proxy").is_err());
        assert!(Proxy::parse("http://:80").is_err());
        assert!(!format!("{p:?}").contains("p:w"));
        assert!(!p.to_string().contains('u'));
    }

    /// `u8::from_str_radix` takes a sign: `%+A` once decoded to a newline.
    /// An escape is `%` and two hex digits; anything else stays as written,
    /// and `+` is a plus (user info is not form-encoded).
    #[test]
    fn userinfo_percent_escapes_are_two_hex_digits() {
        let auth = |url: &str| {
            let encoded = Proxy::parse(url).unwrap().auth.unwrap();
            String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap()
        };
        assert_eq!(auth("http://u%+A:%+a@proxy:8080"), "u%+A:%+a");
        assert_eq!(auth("http://u+1:p%zz%4@proxy"), "u+1:p%zz%4");
        assert_eq!(auth("http://%75:p%40%3a@proxy"), "u:p@:");
        assert_eq!(auth("http://u:%FF@proxy"), "u:\u{FFFD}");
    }

    /// Inputs the `proxy_connect_response` fuzz target once flagged: a 2xx
    /// head with obs-text in a field value, and one whose status line
    /// ends in a bare LF before the CRLF that ends the head.
    #[test]
    fn connect_response_fuzz_regressions() {
        let limits = Config::builder().max_header_bytes(4096).build();
        let mut garbled = b"HTTP/1.0 286\r\n0Y:NNNNNNNNNN".to_vec();
        garbled.extend_from_slice(&[0x91; 50]);
        garbled.extend_from_slice(b"\xcb\xcbH\n\n");
        let lf_then_crlf = b"HTTP/1.1 200 Connection [Established!\n\r\n";
        // Bytes above 0x7f are obs-text, allowed in a field value (RFC 9110 §5.5).
        for input in [&garbled[..], &lf_then_crlf[..]] {
            assert_eq!(Proxy::parse_connect_response(input, &limits), Ok(Some(())));
            // The tunnel opens on the complete head, never before it.
            for cut in 0..input.len() {
                assert_eq!(
                    Proxy::parse_connect_response(&input[..cut], &limits),
                    Ok(None),
                    "prefix of {cut} bytes"
                );
            }
        }
    }

    #[test]
    fn no_proxy_rules() {
        let rules = "localhost, .internal.example, example.org:8443, 10.0.0.0/8, ::1, 192.168.1.5";
        let m = |host, port| no_proxy_matches(rules, host, port);
        assert!(m("localhost", 80));
        assert!(m("LOCALHOST", 80));
        assert!(m("a.internal.example", 443));
        assert!(m("internal.example", 443));
        assert!(!m("notinternal.example", 443), "label boundary");
        assert!(m("example.org", 8443));
        assert!(!m("example.org", 443), "port-specific entry");
        assert!(m("10.20.30.40", 80));
        assert!(!m("11.0.0.1", 80));
        assert!(m("::1", 80));
        assert!(m("[::1]", 80));
        assert!(m("192.168.1.5", 1));
        assert!(!m("example.com", 80));
        assert!(no_proxy_matches("*", "anything", 1));
        assert!(!no_proxy_matches("", "anything", 1));
    }
}
