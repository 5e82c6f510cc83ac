//! Origin policy (RFC 6455 §10.2, RFC 6454): which pages may open a socket.
//!
//! Origins are compared as whole tuples (scheme, host, port) after
//! normalisation: ASCII case folded, default ports made explicit, IPv6
//! addresses in their canonical form, `ws` treated as `http` and `wss` as
//! `https`. A host is a name, an IPv4 address or a bracketed IPv6 address;
//! anything else (`a:b:80`, `[not-v6]`) does not parse. A pattern may only widen the
//! host with an explicit leading `*.` on a label boundary; nothing is ever
//! matched as a substring or a suffix of a string.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{HOST, ORIGIN};
use http::{HeaderMap, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::rejection::{Reject, is_upgrade};

/// A parsed, normalised origin: `scheme://host:port`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    scheme: &'static str,
    host: String,
    port: u16,
}

impl Origin {
    /// Parses `scheme://host[:port]` (no path, no user info). `ws` and `wss`
    /// become `http` and `https`; `null` and anything else fail. The host
    /// is a name (ASCII letters, digits, `-`, `.`, `_`), an IPv4 address or
    /// an IPv6 address in brackets; the port, if written, digits.
    ///
    /// ```
    /// use sockeye_auth::Origin;
    /// let a = Origin::parse("https://Example.COM").unwrap();
    /// let b = Origin::parse("wss://example.com:443").unwrap();
    /// assert_eq!(a, b);
    /// assert_eq!(a.to_string(), "https://example.com");
    /// assert!(Origin::parse("null").is_none());
    /// ```
    pub fn parse(s: &str) -> Option<Self> {
        let (scheme, rest) = s.split_once("://")?;
        let (scheme, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "http" | "ws" => ("http", 80),
            "https" | "wss" => ("https", 443),
            _ => return None,
        };
        // An origin is scheme, host and port only; tolerate one trailing slash.
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ', '\\']) {
            return None;
        }
        let (host, port) = split_host_port(rest)?;
        let port = match port {
            Some(p) => p,
            None => default_port,
        };
        Some(Self { scheme, host, port })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &str {
        self.scheme
    }

    /// The host, lowercased (IPv6 without brackets, in canonical form).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (80 or 443 when not written).
    pub fn port(&self) -> u16 {
        self.port
    }

    fn default_port(&self) -> u16 {
        if self.scheme == "https" { 443 } else { 80 }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.default_port() {
            write!(f, "{}://{host}", self.scheme)
        } else {
            write!(f, "{}://{host}:{}", self.scheme, self.port)
        }
    }
}

/// `host[:port]`: the host a name (letters, digits, `-`, `.`, `_`;
/// lowercased), which covers IPv4 addresses, or an IPv6 address in
/// brackets (stored without them, in its canonical text form); the port,
/// when there is a `:`, one or more digits. Anything else, such as a
/// second `:` outside brackets (`a:b:80`), fails.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return None,
        };
        let v6: std::net::Ipv6Addr = v6.parse().ok()?;
        (v6.to_string(), port)
    } else {
        let (name, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !valid {
            return None;
        }
        (name.to_ascii_lowercase(), port)
    };
    let port = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
        None => None,
    };
    Some((host, port))
}

// ===== impl OriginPattern =====

/// An allowed origin: exact, or `scheme://*.domain[:port]` for the strict
/// subdomains of `domain` on a label boundary.
#[derive(Clone, Debug, PartialEq, Eq)]
struct OriginPattern {
    scheme: &'static str,
    /// The exact host, or for a wildcard the domain after `*.`.
    host: String,
    wildcard: bool,
    port: u16,
}

impl OriginPattern {
    fn parse(s: &str) -> Option<Self> {
        let (scheme, rest) = s.split_once("://")?;
        let (wildcard, rest) = match rest.strip_prefix("*.") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let origin = Origin::parse(&format!("{scheme}://{rest}"))?;
        // `*.com` style patterns would allow a whole public suffix.
        if wildcard && !origin.host.contains('.') {
            return None;
        }
        Some(Self {
            scheme: origin.scheme,
            host: origin.host,
            wildcard,
            port: origin.port,
        })
    }

    fn matches(&self, o: &Origin) -> bool {
        if self.scheme != o.scheme || self.port != o.port {
            return false;
        }
        if self.wildcard {
            o.host
                .strip_suffix(&self.host)
                .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.'))
        } else {
            o.host == self.host
        }
    }
}

// ===== impl OriginPolicy =====

type Predicate = Arc<dyn Fn(&Origin) -> bool + Send + Sync>;

/// Which origins may open a socket.
#[derive(Clone)]
pub struct OriginPolicy(Policy);

#[derive(Clone)]
enum Policy {
    Any,
    SameOrigin,
    List(Arc<[OriginPattern]>),
    Predicate(Predicate),
    Either(Arc<(OriginPolicy, OriginPolicy)>),
}

impl OriginPolicy {
    /// Every origin (a public API for any site; Origin still must parse).
    pub fn any() -> Self {
        Self(Policy::Any)
    }

    /// The origin's host and port must be the request's `Host` (the
    /// default: pages served by this server only).
    ///
    /// This trusts the `Host` header to name this server. A page on
    /// `http://evil.example` whose DNS name is re-pointed at this server's
    /// address (DNS rebinding) sends `Host: evil.example` and a matching
    /// `Origin`, so same-origin alone lets it in. A server reached only
    /// under known names should also list them with
    /// [`OriginLayer::allow_hosts`]; one bound to loopback gets the
    /// loopback names with [`OriginLayer::bound_to`].
    pub fn same_origin() -> Self {
        Self(Policy::SameOrigin)
    }

    /// An allow-list of origins such as `https://app.example.com` or
    /// `https://*.example.com` (subdomains only, on a label boundary). Fails
    /// on an entry that is not an origin.
    ///
    /// ```
    /// use sockeye_auth::{Origin, OriginPolicy};
    /// let policy = OriginPolicy::list(["https://*.example.com", "http://localhost:3000"]).unwrap();
    /// let ok = |s| policy.allows(&Origin::parse(s).unwrap(), None);
    /// assert!(ok("https://app.example.com"));
    /// assert!(!ok("https://example.com"));          // not a subdomain
    /// assert!(!ok("https://evil-example.com"));     // no suffix matching
    /// assert!(!ok("https://app.example.com.evil")); // no substring matching
    /// assert!(!ok("http://app.example.com"));       // scheme is part of it
    /// assert!(ok("ws://localhost:3000"));           // ws ≡ http
    /// ```
    pub fn list<I, S>(origins: I) -> Result<Self, InvalidOrigin>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let patterns = origins
            .into_iter()
            .map(|o| {
                OriginPattern::parse(o.as_ref()).ok_or_else(|| InvalidOrigin(o.as_ref().to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(Policy::List(patterns.into())))
    }

    /// A custom decision on the parsed origin.
    pub fn predicate<F>(f: F) -> Self
    where
        F: Fn(&Origin) -> bool + Send + Sync + 'static,
    {
        Self(Policy::Predicate(Arc::new(f)))
    }

    /// Allows what either policy allows: the server's own pages plus a
    /// list of others, say.
    ///
    /// ```
    /// use sockeye_auth::{Origin, OriginPolicy};
    /// let policy = OriginPolicy::same_origin().or(OriginPolicy::list(["https://app.example.com"]).unwrap());
    /// let ok = |o, host| policy.allows(&Origin::parse(o).unwrap(), host);
    /// assert!(ok("http://127.0.0.1:8080", Some("127.0.0.1:8080")));
    /// assert!(ok("https://app.example.com", Some("127.0.0.1:8080")));
    /// assert!(!ok("https://evil.example", Some("127.0.0.1:8080")));
    /// ```
    #[must_use]
    pub fn or(self, other: OriginPolicy) -> Self {
        Self(Policy::Either(Arc::new((self, other))))
    }

    /// Whether `origin` is allowed for a request to `host` (the `Host`
    /// header, used by [`same_origin`](Self::same_origin)).
    pub fn allows(&self, origin: &Origin, host: Option<&str>) -> bool {
        match &self.0 {
            Policy::Any => true,
            Policy::SameOrigin => host.is_some_and(|h| same_host(origin, h)),
            Policy::List(patterns) => patterns.iter().any(|p| p.matches(origin)),
            Policy::Predicate(f) => f(origin),
            Policy::Either(both) => both.0.allows(origin, host) || both.1.allows(origin, host),
        }
    }
}

impl fmt::Debug for OriginPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Policy::Any => f.write_str("OriginPolicy::any"),
            Policy::SameOrigin => f.write_str("OriginPolicy::same_origin"),
            Policy::List(p) => f.debug_tuple("OriginPolicy::list").field(&p.len()).finish(),
            Policy::Predicate(_) => f.write_str("OriginPolicy::predicate"),
            Policy::Either(both) => f
                .debug_tuple("OriginPolicy::or")
                .field(&both.0)
                .field(&both.1)
                .finish(),
        }
    }
}

/// The `Host` header names the origin's host and port (a `Host` without a
/// port stands for the origin scheme's default port).
fn same_host(origin: &Origin, host: &str) -> bool {
    match split_host_port(host.trim()) {
        Some((h, port)) => h == origin.host && port.unwrap_or(origin.default_port()) == origin.port,
        None => false,
    }
}

/// An allow-list entry that is not an origin, or (from
/// [`OriginLayer::allow_hosts`]) not a `host[:port]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidOrigin(pub String);

impl fmt::Display for InvalidOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not an origin (scheme://host[:port])", self.0)
    }
}

impl std::error::Error for InvalidOrigin {}

// ===== impl HostRule =====

/// Which `Host` headers a request may carry: the loopback names on the
/// port the server is bound to, plus the operator's list. An empty rule
/// (neither) allows every host.
#[derive(Clone, Debug, Default)]
struct HostRule {
    /// The listening port, when the listener is on a loopback address.
    loopback_port: Option<u16>,
    /// Extra names; `None` as the port allows any port.
    allowed: Vec<(String, Option<u16>)>,
}

impl HostRule {
    fn is_empty(&self) -> bool {
        self.loopback_port.is_none() && self.allowed.is_empty()
    }

    fn allows(&self, host: Option<&str>) -> bool {
        if self.is_empty() {
            return true;
        }
        let Some((name, port)) = host.and_then(|h| split_host_port(h.trim())) else {
            return false;
        };
        let loopback = matches!(name.as_str(), "localhost" | "127.0.0.1" | "::1");
        if loopback && port.is_some() && port == self.loopback_port {
            return true;
        }
        self.allowed
            .iter()
            .any(|(n, p)| *n == name && (p.is_none() || *p == port))
    }
}

// ===== impl OriginLayer =====

/// Rejects requests whose `Origin` the policy does not allow, with 403,
/// before anything else sees them; records the parsed [`Origin`] in the
/// request's extensions.
///
/// - A missing `Origin` (non-browser clients) passes, unless
///   [`require_origin`](Self::require_origin).
/// - `Origin: null`, an unparsable value, or more than one `Origin` header
///   get 403.
/// - Only WebSocket upgrade requests are checked, unless
///   [`check_all_requests`](Self::check_all_requests).
/// - With [`bound_to`](Self::bound_to) a loopback address or
///   [`allow_hosts`](Self::allow_hosts), a checked request whose `Host`
///   is not one of the allowed names gets 403 too (DNS rebinding).
///
/// ```
/// use sockeye_auth::{OriginLayer, OriginPolicy};
/// let layer = OriginLayer::new(OriginPolicy::list(["https://chat.example.com"]).unwrap())
///     .require_origin(true);
/// # drop(layer);
/// ```
#[derive(Clone, Debug)]
pub struct OriginLayer {
    policy: OriginPolicy,
    require_origin: bool,
    all_requests: bool,
    hosts: Arc<HostRule>,
}

impl OriginLayer {
    /// A layer enforcing `policy`.
    pub fn new(policy: OriginPolicy) -> Self {
        Self {
            policy,
            require_origin: false,
            all_requests: false,
            hosts: Arc::default(),
        }
    }

    /// The address the server listens on. When it is a loopback address,
    /// only requests to `localhost`, `127.0.0.1` or `[::1]` with that port
    /// pass (plus [`allow_hosts`](Self::allow_hosts)), as development
    /// servers such as Vite and Jupyter do: a page whose DNS name is
    /// re-pointed at 127.0.0.1 (DNS rebinding) still names its own host
    /// and is refused. Any other address changes nothing.
    ///
    /// ```
    /// use http::HeaderMap;
    /// use sockeye_auth::{OriginLayer, OriginPolicy};
    /// let layer = OriginLayer::new(OriginPolicy::same_origin())
    ///     .bound_to("127.0.0.1:8080".parse().unwrap());
    /// let request = |host: &str| {
    ///     let mut h = HeaderMap::new();
    ///     h.insert("host", host.parse().unwrap());
    ///     h.insert("origin", format!("http://{host}").parse().unwrap());
    ///     layer.check(&h)
    /// };
    /// assert!(request("localhost:8080").is_ok());
    /// assert!(request("127.0.0.1:8080").is_ok());
    /// assert!(request("evil.example:8080").is_err()); // same-origin, wrong host
    /// ```
    #[must_use]
    pub fn bound_to(mut self, addr: std::net::SocketAddr) -> Self {
        let rule = Arc::make_mut(&mut self.hosts);
        rule.loopback_port = addr.ip().is_loopback().then_some(addr.port());
        self
    }

    /// Host names requests may carry (`host` for any port, or
    /// `host:port`), beside the loopback names of
    /// [`bound_to`](Self::bound_to). Once any name is listed, a checked
    /// request with another `Host` (or none) gets 403. Fails on an entry
    /// that is not `host[:port]`.
    ///
    /// ```
    /// use sockeye_auth::{OriginLayer, OriginPolicy};
    /// let layer = OriginLayer::new(OriginPolicy::same_origin())
    ///     .bound_to("127.0.0.1:8080".parse().unwrap())
    ///     .allow_hosts(["chat.test", "dev.example:8080"])
    ///     .unwrap();
    /// # drop(layer);
    /// assert!(OriginLayer::new(OriginPolicy::any()).allow_hosts(["http://x"]).is_err());
    /// ```
    pub fn allow_hosts<I, S>(mut self, hosts: I) -> Result<Self, InvalidOrigin>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let rule = Arc::make_mut(&mut self.hosts);
        for host in hosts {
            let host = host.as_ref();
            let parsed = split_host_port(host.trim())
                .filter(|_| !host.contains(['/', '@', ' ', '?', '#']))
                .ok_or_else(|| InvalidOrigin(host.to_owned()))?;
            rule.allowed.push(parsed);
        }
        Ok(self)
    }

    /// Refuse requests without an `Origin` header (browsers always send one
    /// on WebSocket requests; other clients may not).
    #[must_use]
    pub fn require_origin(mut self, require: bool) -> Self {
        self.require_origin = require;
        self
    }

    /// Check every request, not only WebSocket upgrades.
    #[must_use]
    pub fn check_all_requests(mut self, all: bool) -> Self {
        self.all_requests = all;
        self
    }

    /// The decision for a request's headers: `Ok(Some(origin))` allowed,
    /// `Ok(None)` no Origin and allowed, `Err(reason)` refused.
    pub fn check(&self, headers: &HeaderMap) -> Result<Option<Origin>, &'static str> {
        self.check_for(headers, headers.get(HOST).and_then(|h| h.to_str().ok()))
    }

    /// [`check`](Self::check) with the request's host given (HTTP/2
    /// carries it in the `:authority`, not in a `Host` header).
    fn check_for(
        &self,
        headers: &HeaderMap,
        host: Option<&str>,
    ) -> Result<Option<Origin>, &'static str> {
        if !self.hosts.allows(host) {
            return Err("Host not allowed");
        }
        let mut values = headers.get_all(ORIGIN).iter();
        let value = match (values.next(), values.next()) {
            (None, _) if self.require_origin => return Err("an Origin header is required"),
            (None, _) => return Ok(None),
            (Some(_), Some(_)) => return Err("more than one Origin header"),
            (Some(v), None) => v,
        };
        let text = value.to_str().map_err(|_| "unparsable Origin")?;
        if text.trim().eq_ignore_ascii_case("null") {
            return Err("Origin null is not allowed");
        }
        let origin = Origin::parse(text.trim()).ok_or("unparsable Origin")?;
        if self.policy.allows(&origin, host) {
            Ok(Some(origin))
        } else {
            Err("Origin not allowed")
        }
    }
}

impl<S> Layer<S> for OriginLayer {
    type Service = OriginCheck<S>;

    fn layer(&self, inner: S) -> OriginCheck<S> {
        OriginCheck {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`OriginLayer`].
#[derive(Clone, Debug)]
pub struct OriginCheck<S> {
    inner: S,
    layer: OriginLayer,
}

impl<S> OriginCheck<S> {
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

impl<S, B, RB> Service<Request<B>> for OriginCheck<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: Default,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = Reject<S::Future, RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if !self.layer.all_requests && !is_upgrade(&req) {
            return Reject::pass(self.inner.call(req));
        }
        let host = match req.headers().get(HOST) {
            Some(h) => h.to_str().ok(),
            None => req.uri().authority().map(http::uri::Authority::as_str),
        };
        match self.layer.check_for(req.headers(), host) {
            Ok(origin) => {
                crate::observe::allowed("origin");
                if let Some(origin) = origin {
                    req.extensions_mut().insert(origin);
                }
                Reject::pass(self.inner.call(req))
            }
            Err(reason) => {
                tracing::info!(reason, origin = ?req.headers().get(ORIGIN), "websocket origin refused");
                crate::observe::refused("origin", StatusCode::FORBIDDEN);
                Reject::refuse(StatusCode::FORBIDDEN, Vec::new())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_of(origin: &str) -> Option<String> {
        Origin::parse(origin).map(|o| o.host().to_owned())
    }

    /// An unbracketed host took every `:` but the last: `a:b:80` was host
    /// `a:b`. A host is a reg-name, an IPv4 address or a bracketed IPv6
    /// address.
    #[test]
    fn hosts_are_names_ipv4_or_bracketed_ipv6() {
        for bad in [
            "http://a:b:80",
            "http://a:b:",
            "http://::1",
            "http://::1:80",
            "http://2001:db8::1",
            "http://[not-v6]",
            "http://[1.2.3.4]",
            "http://[::1",
            "http://::1]",
            "http://[::1]x",
            "http://[::1]:",
            "http://[]:80",
            "http://[fe80::1%25eth0]",
            "http://a[b]",
            "http://a:80:80",
            "http://:80",
            "http://a:+80",
            "http://a:65536",
        ] {
            assert_eq!(host_of(bad), None, "{bad}");
        }
        for (good, host) in [
            ("http://Example.COM:8080", "example.com"),
            ("http://my_host-1.test", "my_host-1.test"),
            ("http://192.0.2.1:80", "192.0.2.1"),
            ("http://[::1]:8080", "::1"),
            ("http://[2001:DB8::1]", "2001:db8::1"),
            ("http://[0:0:0:0:0:0:0:1]", "::1"),
        ] {
            assert_eq!(host_of(good).as_deref(), Some(host), "{good}");
        }
        assert_eq!(
            Origin::parse("https://[2001:db8::1]:8443")
                .unwrap()
                .to_string(),
            "https://[2001:db8::1]:8443"
        );
        // The same rule for `Host` and for the allowed hosts.
        assert!(split_host_port("a:b:80").is_none());
        assert!(split_host_port("[::1]:80").is_some());
        assert!(
            OriginLayer::new(OriginPolicy::any())
                .allow_hosts(["a:b:80"])
                .is_err()
        );
    }

    #[test]
    fn a_colon_in_a_host_is_refused_by_the_check() {
        let same = OriginLayer::new(OriginPolicy::same_origin());
        let mut h = HeaderMap::new();
        h.insert(HOST, "a:b:80".parse().unwrap());
        h.insert(ORIGIN, "http://a:b:80".parse().unwrap());
        assert_eq!(same.check(&h), Err("unparsable Origin"));
        // A Host that is not host[:port] matches no origin.
        h.insert(ORIGIN, "http://a".parse().unwrap());
        h.insert(HOST, "a:".parse().unwrap());
        assert_eq!(same.check(&h), Err("Origin not allowed"));
        h.insert(HOST, "[::1]:80".parse().unwrap());
        h.insert(ORIGIN, "http://[0::1]".parse().unwrap());
        assert!(same.check(&h).is_ok());
        let local = OriginLayer::new(OriginPolicy::any()).bound_to("[::1]:8080".parse().unwrap());
        h.insert(HOST, "[0:0::1]:8080".parse().unwrap());
        assert!(local.check(&h).is_ok());
        h.insert(HOST, "::1:8080".parse().unwrap());
        assert_eq!(local.check(&h), Err("Host not allowed"));
    }
}
