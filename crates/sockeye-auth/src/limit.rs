//! Caps on concurrent sockets per identity and per client IP, checked before
//! the upgrade (429), released when the socket ends.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::forwarded::{ForwardedHeader, client_ip};
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
/// ## The client IP
///
/// The client IP is the [`PeerAddr`]. Only when that peer is one of the
/// [`trusted_proxies`](Self::trusted_proxies) is it taken from the one
/// header those proxies set, chosen with
/// [`forwarded_header`](Self::forwarded_header): `X-Forwarded-For` (the
/// default) or `Forwarded` (RFC 7239, its `for=` parameter). The other
/// header is ignored, since a proxy passes on whatever the client sent in
/// it.
///
/// The header's hops (every line, in order, each a comma-separated list)
/// are walked from the right, the hop the peer added first:
///
/// - a trusted proxy: the walk goes on to the hop on its left;
/// - any other address: that is the client;
/// - a hop that does not parse (`for=unknown`, an obfuscated `for=_hidden`,
///   an element without `for=`, garbage): the walk stops and the client is
///   the last address known, the nearest trusted proxy. Hops further left
///   were written by the client, so a client sending garbage is counted
///   with its proxy, never under an address of its choosing.
///
/// If every hop is a trusted proxy, the left-most is the client; without
/// the header, the peer. A hop is an IPv4 address or an IPv6 address,
/// bare or in brackets, either with an optional `:port` (`Forwarded`'s
/// obfuscated ports `:_x` too); `Forwarded` values may be quoted
/// (`for="[2001:db8::1]:4711"`), and its quoted strings may hold commas
/// and semicolons. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is
/// trusted as its IPv4 address.
///
/// Each admitted request carries a [`SocketPermit`] in its extensions; the
/// count is released when the last clone of the permit is dropped. The
/// upgrade services of sockeye-hyper keep the request's extensions alive
/// for as long as the socket's handler runs, so the permit lasts as long as
/// the socket.
///
/// ```
/// use sockeye_auth::{ForwardedHeader, SocketLimitLayer};
/// let limits = SocketLimitLayer::new()
///     .per_identity(5)
///     .per_ip(50)
///     .trusted_proxies(["10.0.0.1".parse().unwrap()])
///     .forwarded_header(ForwardedHeader::XForwardedFor);
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
    header: ForwardedHeader,
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
            .field("forwarded_header", &self.header)
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
                header: self.state.header,
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

    /// Proxies whose [`forwarded_header`](Self::forwarded_header) is
    /// believed, when one is the peer or a hop in that header. None by
    /// default: the peer is the client.
    #[must_use]
    pub fn trusted_proxies<I: IntoIterator<Item = IpAddr>>(self, proxies: I) -> Self {
        let proxies: Vec<IpAddr> = proxies.into_iter().collect();
        self.map(|s| s.trusted = proxies)
    }

    /// The one header the [trusted proxies](Self::trusted_proxies) set:
    /// [`ForwardedHeader::XForwardedFor`] (the default) or
    /// [`ForwardedHeader::Forwarded`]. The other is ignored: a proxy that
    /// only appends `X-Forwarded-For` passes a client's own `Forwarded`
    /// through untouched, and believing it would let the client pick its
    /// IP. See [the walk](Self#the-client-ip).
    ///
    /// ```
    /// use sockeye_auth::{ForwardedHeader, SocketLimitLayer};
    /// // Behind a proxy that writes `Forwarded: for=...` (RFC 7239).
    /// let limits = SocketLimitLayer::new()
    ///     .per_ip(50)
    ///     .trusted_proxies(["10.0.0.1".parse().unwrap()])
    ///     .forwarded_header(ForwardedHeader::Forwarded);
    /// # drop(limits);
    /// ```
    #[must_use]
    pub fn forwarded_header(self, header: ForwardedHeader) -> Self {
        self.map(|s| s.header = header)
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
        let ip = req.extensions().get::<PeerAddr>().map(|p| {
            client_ip(
                p.0.ip(),
                req.headers(),
                &self.state.trusted,
                self.state.header,
            )
        });
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
    fn the_forwarded_header_is_chosen_on_the_layer() {
        let layer = SocketLimitLayer::new().forwarded_header(ForwardedHeader::Forwarded);
        assert_eq!(layer.state.header, ForwardedHeader::Forwarded);
        assert_eq!(
            SocketLimitLayer::new().state.header,
            ForwardedHeader::XForwardedFor
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
