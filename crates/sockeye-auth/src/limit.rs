//! Caps on concurrent sockets per identity and per client IP, checked before
//! the upgrade (429), released when the socket ends.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use http::header::HeaderName;
use http::{HeaderMap, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::identity::Identity;
use crate::rejection::{Reject, is_upgrade};

pub use sockeye_proto::handshake::PeerAddr;

/// The client IP the limits use, recorded in the request's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

/// Caps concurrent WebSocket upgrades per [`Identity`] (from an
/// [`AuthLayer`](crate::AuthLayer) in front) and per client IP: over a cap
/// the request gets 429 before the upgrade.
///
/// The client IP is the [`PeerAddr`]; only when that peer is a configured
/// trusted proxy is it taken from `Forwarded` (`for=`) or `X-Forwarded-For`
/// (the right-most address that is not itself a trusted proxy).
///
/// Each admitted request carries a [`SocketPermit`] in its extensions; the
/// count is released when the last clone of the permit is dropped. The
/// upgrade services of sockeye-hyper keep the request's extensions alive
/// for as long as the socket's handler runs, so the permit lasts as long as
/// the socket.
///
/// ```
/// use sockeye_auth::SocketLimitLayer;
/// let limits = SocketLimitLayer::new()
///     .per_identity(5)
///     .per_ip(50)
///     .trusted_proxies(["10.0.0.1".parse().unwrap()]);
/// # drop(limits);
/// ```
#[derive(Clone, Debug, Default)]
pub struct SocketLimitLayer {
    state: Arc<LimitState>,
}

#[derive(Default)]
struct LimitState {
    per_identity: Option<usize>,
    per_ip: Option<usize>,
    trusted: Vec<IpAddr>,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    identities: HashMap<Arc<str>, usize>,
    ips: HashMap<IpAddr, usize>,
}

impl fmt::Debug for LimitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts = self.lock();
        f.debug_struct("SocketLimits")
            .field("per_identity", &self.per_identity)
            .field("per_ip", &self.per_ip)
            .field("trusted_proxies", &self.trusted)
            .field("identities", &counts.identities.len())
            .field("ips", &counts.ips.len())
            .finish()
    }
}

impl LimitState {
    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SocketLimitLayer {
    /// No caps yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(mut self, f: impl FnOnce(&mut LimitState)) -> Self {
        let state = Arc::get_mut(&mut self.state);
        if let Some(state) = state {
            f(state);
        } else {
            let mut fresh = LimitState {
                per_identity: self.state.per_identity,
                per_ip: self.state.per_ip,
                trusted: self.state.trusted.clone(),
                counts: Mutex::default(),
            };
            f(&mut fresh);
            self.state = Arc::new(fresh);
        }
        self
    }

    /// At most `n` open sockets per identity.
    #[must_use]
    pub fn per_identity(self, n: usize) -> Self {
        self.map(|s| s.per_identity = Some(n))
    }

    /// At most `n` open sockets per client IP.
    #[must_use]
    pub fn per_ip(self, n: usize) -> Self {
        self.map(|s| s.per_ip = Some(n))
    }

    /// Proxies whose `Forwarded` / `X-Forwarded-For` headers are believed.
    #[must_use]
    pub fn trusted_proxies<I: IntoIterator<Item = IpAddr>>(self, proxies: I) -> Self {
        let proxies: Vec<IpAddr> = proxies.into_iter().collect();
        self.map(|s| s.trusted = proxies)
    }

    /// Open sockets counted for `ip`.
    pub fn open_for_ip(&self, ip: IpAddr) -> usize {
        self.state.lock().ips.get(&ip).copied().unwrap_or(0)
    }

    /// Open sockets counted for an identity's subject.
    pub fn open_for_identity(&self, subject: &str) -> usize {
        self.state
            .lock()
            .identities
            .get(subject)
            .copied()
            .unwrap_or(0)
    }
}

/// The client IP: the peer, or what a trusted proxy says.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    // Forwarded: for=...; the right-most untrusted hop is the client.
    let forwarded: Vec<IpAddr> = headers
        .get_all(http::header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| parse_node(v))?
            })
        })
        .collect();
    let chain = if forwarded.is_empty() {
        headers
            .get_all(HeaderName::from_static("x-forwarded-for"))
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(parse_node)
            .collect()
    } else {
        forwarded
    };
    chain
        .into_iter()
        .rev()
        .find(|ip| !trusted.contains(ip))
        .unwrap_or(peer)
}

/// An address from `Forwarded` (`"[2001:db8::1]:4711"`, `192.0.2.43`) or
/// `X-Forwarded-For`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    s.parse::<SocketAddr>().ok().map(|a| a.ip())
}

/// A held place under the caps. Clones share it; the last drop releases.
#[derive(Clone)]
pub struct SocketPermit(Arc<PermitInner>);

struct PermitInner {
    state: Arc<LimitState>,
    identity: Option<Arc<str>>,
    ip: Option<IpAddr>,
}

impl fmt::Debug for SocketPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketPermit")
            .field("identity", &self.0.identity)
            .field("ip", &self.0.ip)
            .finish()
    }
}

impl Drop for PermitInner {
    fn drop(&mut self) {
        let mut counts = self.state.lock();
        if let Some(id) = &self.identity {
            release(&mut counts.identities, id);
        }
        if let Some(ip) = &self.ip {
            release(&mut counts.ips, ip);
        }
    }
}

fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl LimitState {
    /// Takes a place for the request, or refuses.
    fn admit(
        self: &Arc<Self>,
        identity: Option<&Identity>,
        ip: Option<IpAddr>,
    ) -> Option<SocketPermit> {
        let mut counts = self.lock();
        let subject: Option<Arc<str>> = identity.map(|i| Arc::from(i.subject()));
        if let (Some(max), Some(s)) = (self.per_identity, &subject)
            && counts.identities.get(s).copied().unwrap_or(0) >= max
        {
            return None;
        }
        if let (Some(max), Some(ip)) = (self.per_ip, ip)
            && counts.ips.get(&ip).copied().unwrap_or(0) >= max
        {
            return None;
        }
        let identity = subject.filter(|_| self.per_identity.is_some());
        let ip = ip.filter(|_| self.per_ip.is_some());
        if let Some(s) = &identity {
            *counts.identities.entry(Arc::clone(s)).or_default() += 1;
        }
        if let Some(ip) = ip {
            *counts.ips.entry(ip).or_default() += 1;
        }
        drop(counts);
        Some(SocketPermit(Arc::new(PermitInner {
            state: Arc::clone(self),
            identity,
            ip,
        })))
    }
}

impl<S> Layer<S> for SocketLimitLayer {
    type Service = SocketLimit<S>;

    fn layer(&self, inner: S) -> SocketLimit<S> {
        SocketLimit {
            inner,
            state: Arc::clone(&self.state),
        }
    }
}

/// The service made by [`SocketLimitLayer`].
#[derive(Clone, Debug)]
pub struct SocketLimit<S> {
    inner: S,
    state: Arc<LimitState>,
}

impl<S> SocketLimit<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, RB> Service<Request<B>> for SocketLimit<S>
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
        if !is_upgrade(&req) {
            return Reject::pass(self.inner.call(req));
        }
        let ip = req
            .extensions()
            .get::<PeerAddr>()
            .map(|p| client_ip(p.0.ip(), req.headers(), &self.state.trusted));
        let identity = req.extensions().get::<Identity>();
        match self.state.admit(identity, ip) {
            Some(permit) => {
                crate::observe::allowed("limit");
                if let Some(ip) = ip {
                    req.extensions_mut().insert(ClientIp(ip));
                }
                req.extensions_mut().insert(permit);
                Reject::pass(self.inner.call(req))
            }
            None => {
                tracing::info!(?ip, "websocket socket cap reached");
                crate::observe::refused("limit", StatusCode::TOO_MANY_REQUESTS);
                Reject::refuse(StatusCode::TOO_MANY_REQUESTS, Vec::new())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn client_ip_trusts_only_configured_proxies() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.7, 10.0.0.2".parse().unwrap());
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("203.0.113.7"));
        // An untrusted peer's headers are ignored.
        assert_eq!(
            client_ip(ip("198.51.100.1"), &h, &trusted),
            ip("198.51.100.1")
        );
        let mut h = HeaderMap::new();
        h.insert(
            "forwarded",
            "for=192.0.2.60;proto=https, for=\"[2001:db8::1]:4711\""
                .parse()
                .unwrap(),
        );
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("2001:db8::1"));
        // A proxy that says nothing: the peer itself.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn permits_count_and_release() {
        let layer = SocketLimitLayer::new().per_identity(2).per_ip(3);
        let alice = Identity::new("alice");
        let a = ip("192.0.2.1");
        let p1 = layer.state.admit(Some(&alice), Some(a)).unwrap();
        let p2 = layer.state.admit(Some(&alice), Some(a)).unwrap();
        assert!(
            layer.state.admit(Some(&alice), Some(a)).is_none(),
            "identity cap"
        );
        let p3 = layer
            .state
            .admit(Some(&Identity::new("bob")), Some(a))
            .unwrap();
        assert!(
            layer
                .state
                .admit(Some(&Identity::new("carol")), Some(a))
                .is_none(),
            "ip cap"
        );
        assert_eq!(layer.open_for_identity("alice"), 2);
        let clone = p1.clone();
        drop(p1);
        assert_eq!(
            layer.open_for_identity("alice"),
            2,
            "a clone still holds it"
        );
        drop(clone);
        assert_eq!(layer.open_for_identity("alice"), 1);
        drop((p2, p3));
        assert_eq!(layer.open_for_ip(a), 0);
    }
}
