//! [`serve`]: a tower service or an axum `Router` on a `TcpListener`, over
//! hyper, with the limits of the raw accept path.
//!
//! hyper on its own leaves the pre-upgrade phase open: without a timer its
//! header timeout is off, its head buffer is ~400 KiB and it has no
//! request-target limit or connection caps. [`serve`] sets them all from the
//! same [`Config`] as [`sockeye_proto::accept`]:
//!
//! | limit | default | crossing it |
//! |---|---|---|
//! | handshake deadline, accept → first request (TLS and head included) | [`Config::handshake_timeout`], 10 s | 408 if a head started (plain TCP), else closed |
//! | head bytes (request line and headers) | [`Config::max_header_bytes`], 16 KiB | 431 |
//! | header lines | [`Config::max_headers`], 100 | 431 |
//! | request target | 8 KiB ([`Serve::max_request_target`]) | 414 |
//! | open connections, upgraded sockets included | 65,536 ([`Serve::max_connections`]) | 503, closed |
//! | open connections per client IP | off ([`Serve::max_connections_per_ip`]) | 503, closed |
//! | TLS handshake | the handshake deadline ([`Serve::tls_handshake_timeout`]) | closed |
//!
//! Every refusal is counted ([`Serve::counters`]; with feature `metrics`
//! also as `sockeye_http_connections_total{outcome}`,
//! `sockeye_http_connections_open`, `sockeye_handshake_rejections_total
//! {status, reason}` and `sockeye_http_connections_aborted_total`). Each request carries a
//! [`ConnectionHandle`] in its extensions, with which a service can abort
//! its connection (an event stream its client stopped reading).

use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use sockeye_proto::Config;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower_service::Service;

use crate::body::{self, Body, BoxError};
use crate::server::Drain;

/// The default cap on open connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 65_536;
/// The default longest request target (414 beyond), as on the raw path.
pub const DEFAULT_MAX_REQUEST_TARGET: usize = 8 << 10;
/// How long a graceful shutdown waits for HTTP connections by default.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `service` on `listener` until the shutdown signal (see
/// [`Serve::with_graceful_shutdown`]), HTTP/1.1 with upgrades (and HTTP/2
/// with extended CONNECT once [`Serve::http2`] is on), under the limits in
/// the [module docs](self).
///
/// ```no_run
/// use sockeye_hyper::server::{Handshake, UpgradeService, WebSocket};
/// # async fn run() -> std::io::Result<()> {
/// let echo = UpgradeService::new(|mut ws: WebSocket, _: Handshake| async move {
///     while let Some(Ok(msg)) = ws.recv().await {
///         if msg.is_text() || msg.is_binary() {
///             let _ = ws.send(msg).await;
///         }
///     }
/// });
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
/// sockeye_hyper::serve(listener, echo)
///     .with_graceful_shutdown(async { let _ = tokio::signal::ctrl_c().await; })
///     .await
/// # }
/// ```
///
/// An axum app: see [`crate::axum`] (with feature `axum`).
pub fn serve<S: HttpService>(listener: TcpListener, service: S) -> Serve<S> {
    Serve {
        listener,
        service,
        config: Config::default(),
        max_connections: DEFAULT_MAX_CONNECTIONS,
        max_per_ip: None,
        max_request_target: DEFAULT_MAX_REQUEST_TARGET,
        tls_timeout: None,
        #[cfg(feature = "tls")]
        tls: None,
        #[cfg(feature = "http2")]
        http2: false,
        drain: None,
        signal: None,
        grace: DEFAULT_SHUTDOWN_GRACE,
        counters: Arc::default(),
    }
}

/// What [`serve`] runs: a cloneable tower service of hyper requests whose
/// response bodies carry `Bytes` (an axum `Router`, an
/// [`UpgradeService`](crate::server::UpgradeService), a `ServiceBuilder`
/// stack of them). Implemented for every such service; not to implement.
pub trait HttpService:
    Service<
        Request<Incoming>,
        Response = Response<Self::ResBody>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
    /// The response body.
    type ResBody: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B> HttpService for S
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type ResBody = B;
}

/// A server being configured; `.await` runs it. See [`serve`].
#[must_use = "a Serve does nothing until awaited"]
pub struct Serve<S> {
    listener: TcpListener,
    service: S,
    config: Config,
    max_connections: usize,
    max_per_ip: Option<usize>,
    max_request_target: usize,
    tls_timeout: Option<Duration>,
    #[cfg(feature = "tls")]
    tls: Option<tokio_rustls::TlsAcceptor>,
    #[cfg(feature = "http2")]
    http2: bool,
    drain: Option<Drain>,
    signal: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    grace: Duration,
    counters: Arc<Counters>,
}

impl<S> fmt::Debug for Serve<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("local_addr", &self.listener.local_addr().ok())
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_per_ip)
            .field("max_request_target", &self.max_request_target)
            .field("counters", &self.counters.snapshot())
            .finish_non_exhaustive()
    }
}

impl<S> Serve<S> {
    /// The handshake deadline, head bytes and header count come from here
    /// (default [`Config::default`]); give the same `Config` as the upgrade
    /// service's.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// At most `n` connections open at once, upgraded sockets included
    /// (default [`DEFAULT_MAX_CONNECTIONS`]); beyond it a connection gets
    /// 503 and is closed, nothing read.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// At most `n` connections open at once from one IP address (default:
    /// no cap, as a server behind a proxy sees one address for all); beyond
    /// it 503 and closed before any HTTP is read. `None` turns it off.
    pub fn max_connections_per_ip(mut self, n: Option<usize>) -> Self {
        self.max_per_ip = n.map(|n| n.max(1));
        self
    }

    /// The longest request target, in bytes (default
    /// [`DEFAULT_MAX_REQUEST_TARGET`]); a longer one gets 414.
    pub fn max_request_target(mut self, bytes: usize) -> Self {
        self.max_request_target = bytes;
        self
    }

    /// The deadline for a TLS handshake (default: the handshake deadline).
    pub fn tls_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.tls_timeout = Some(timeout);
        self
    }

    /// Serves TLS (`wss://`, `https://`); with [`Serve::http2`] the ALPN
    /// list should name `h2` and `http/1.1`.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(tokio_rustls::TlsAcceptor::from(config));
        self
    }

    /// Also speaks HTTP/2 (h2c by prior knowledge, `h2` by ALPN), with RFC
    /// 8441 extended CONNECT announced for WebSockets (default off).
    #[cfg(feature = "http2")]
    pub fn http2(mut self, on: bool) -> Self {
        self.http2 = on;
        self
    }

    /// On shutdown, drains these sockets (1001 to each, bounded wait).
    pub fn drain(mut self, drain: &Drain) -> Self {
        self.drain = Some(drain.clone());
        self
    }

    /// Stops when `signal` completes: no more accepts, every HTTP
    /// connection finishes its request, the [`Serve::drain`] closes the
    /// sockets, then at most the grace period for the rest.
    pub fn with_graceful_shutdown<F>(mut self, signal: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.signal = Some(Box::pin(signal));
        self
    }

    /// How long a shutdown waits for HTTP connections after the drain
    /// (default [`DEFAULT_SHUTDOWN_GRACE`]); the rest are dropped.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The counters of this server, live.
    pub fn counters(&self) -> ServeCounters {
        ServeCounters(Arc::clone(&self.counters))
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// What a [`serve`] did so far. Cheap to clone.
#[derive(Clone)]
pub struct ServeCounters(Arc<Counters>);

impl ServeCounters {
    /// A snapshot of the counters.
    pub fn snapshot(&self) -> ServeStats {
        self.0.snapshot()
    }
}

impl fmt::Debug for ServeCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.snapshot().fmt(f)
    }
}

/// A snapshot of [`ServeCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeStats {
    /// Connections accepted and served.
    pub accepted: u64,
    /// Connections open now (upgraded sockets included).
    pub open: u64,
    /// Refused with 503: the connection cap.
    pub refused_busy: u64,
    /// Refused with 503: the per-IP cap.
    pub refused_per_ip: u64,
    /// Closed at the handshake deadline before a request arrived.
    pub handshake_timeouts: u64,
    /// Requests answered 408 by hyper's header timeout.
    pub header_timeouts: u64,
    /// Requests answered 431 (head bytes or header count).
    pub head_too_large: u64,
    /// Requests answered 414.
    pub uri_too_long: u64,
    /// TLS handshakes that failed or timed out.
    pub tls_failures: u64,
    /// Connections aborted through a [`ConnectionHandle`].
    pub aborted: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    open: AtomicU64,
    refused_busy: AtomicU64,
    refused_per_ip: AtomicU64,
    handshake_timeouts: AtomicU64,
    header_timeouts: AtomicU64,
    head_too_large: AtomicU64,
    uri_too_long: AtomicU64,
    tls_failures: AtomicU64,
    aborted: AtomicU64,
    /// Open connections per client IP (only while a per-IP cap is set).
    per_ip: Mutex<std::collections::HashMap<IpAddr, usize>>,
}

/// Counts an event here and, with feature `metrics`, as `name` with
/// `labels` through the `metrics` facade.
fn bump(counter: &AtomicU64, name: &'static str, labels: &'static [(&'static str, &'static str)]) {
    counter.fetch_add(1, Ordering::Relaxed);
    #[cfg(feature = "metrics")]
    metrics::counter!(name, labels).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (name, labels);
}

/// `sockeye_http_connections_open` moved by `delta`.
fn open_gauge(delta: f64) {
    #[cfg(feature = "metrics")]
    metrics::gauge!("sockeye_http_connections_open").increment(delta);
    #[cfg(not(feature = "metrics"))]
    let _ = delta;
}

const CONNECTIONS: &str = "sockeye_http_connections_total";
const REJECTIONS: &str = "sockeye_handshake_rejections_total";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Counters {
    fn snapshot(&self) -> ServeStats {
        let r = Ordering::Relaxed;
        ServeStats {
            accepted: self.accepted.load(r),
            open: self.open.load(r),
            refused_busy: self.refused_busy.load(r),
            refused_per_ip: self.refused_per_ip.load(r),
            handshake_timeouts: self.handshake_timeouts.load(r),
            header_timeouts: self.header_timeouts.load(r),
            head_too_large: self.head_too_large.load(r),
            uri_too_long: self.uri_too_long.load(r),
            tls_failures: self.tls_failures.load(r),
            aborted: self.aborted.load(r),
        }
    }
}

/// One open connection's place under the caps; given back on drop, which
/// is when the TCP stream goes (an upgraded socket holds it to the end).
struct Slot {
    counters: Arc<Counters>,
    ip: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counters.open.fetch_sub(1, Ordering::Relaxed);
        open_gauge(-1.0);
        if let Some(ip) = self.ip {
            let mut per_ip = lock(&self.counters.per_ip);
            if let Some(n) = per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&ip);
                    if per_ip.capacity() > 64 && per_ip.len() * 4 < per_ip.capacity() {
                        let len = per_ip.len();
                        per_ip.shrink_to(len * 2);
                    }
                }
            }
        }
    }
}

/// Why a connection is refused at accept.
enum Refusal {
    Busy,
    PerIp,
}

impl Counters {
    fn take_slot(
        self: &Arc<Self>,
        ip: IpAddr,
        max: usize,
        max_per_ip: Option<usize>,
    ) -> Result<Slot, Refusal> {
        if self.open.load(Ordering::Relaxed) as usize >= max {
            bump(
                &self.refused_busy,
                CONNECTIONS,
                &[("outcome", "refused_busy")],
            );
            return Err(Refusal::Busy);
        }
        let ip = match max_per_ip {
            None => None,
            Some(cap) => {
                let mut per_ip = lock(&self.per_ip);
                let n = per_ip.entry(ip).or_insert(0);
                if *n >= cap {
                    drop(per_ip);
                    bump(
                        &self.refused_per_ip,
                        CONNECTIONS,
                        &[("outcome", "refused_per_ip")],
                    );
                    return Err(Refusal::PerIp);
                }
                *n += 1;
                Some(ip)
            }
        };
        self.open.fetch_add(1, Ordering::Relaxed);
        open_gauge(1.0);
        bump(&self.accepted, CONNECTIONS, &[("outcome", "accepted")]);
        Ok(Slot {
            counters: Arc::clone(self),
            ip,
        })
    }
}

/// A one-way event of a connection: set once, awaited by any number of
/// tasks. A flag and a `Notify` inline in the connection's [`Handle`]:
/// tokio-util's `CancellationToken` does the same with an allocation of
/// its own, 335 bytes of heap per connection for the three (measured with
/// massif on 1,000 idle sockets), which an idle socket keeps for its life.
#[derive(Default)]
struct Flag {
    set: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Flag {
    fn cancel(&self) {
        self.set.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    fn is_cancelled(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    async fn cancelled(&self) {
        loop {
            // Registered before the check, so a `cancel` in between wakes it.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

struct Handle {
    peer: SocketAddr,
    abort: Flag,
    closed: Flag,
    /// Set when the first request arrived (the handshake deadline is met).
    requested: Flag,
    /// Bytes arrived (a request head started).
    head_started: AtomicBool,
    /// The deadline passed mid-head on plain TCP: 408 on the way out.
    late_head: AtomicBool,
}

/// The connection a request came on, in the request's extensions when
/// served by [`serve`]. Cheap to clone.
#[derive(Clone)]
pub struct ConnectionHandle(Arc<Handle>);

impl fmt::Debug for ConnectionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionHandle")
            .field("peer", &self.0.peer)
            .field("closed", &self.0.closed.is_cancelled())
            .finish()
    }
}

impl ConnectionHandle {
    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.0.peer
    }

    /// Drops the connection now, with a TCP reset: for a response its
    /// client stopped reading (every request on it ends).
    pub fn abort(&self) {
        self.0.abort.cancel();
    }

    /// Completes once the connection is gone.
    pub async fn closed(&self) {
        self.0.closed.cancelled().await;
    }
}

/// The TCP stream under hyper (and TLS): holds the connection's slot, and
/// resets on drop once aborted. An upgraded socket keeps it (see
/// [`ServerIo`](crate::server::ServerIo)), so the slot lasts as long.
pub(crate) struct Tcp {
    stream: TcpStream,
    reset: Arc<Handle>,
    _slot: Slot,
}

impl Tcp {
    /// The TCP stream itself.
    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub(crate) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

impl fmt::Debug for Tcp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tcp")
            .field("peer", &self.reset.peer)
            .finish_non_exhaustive()
    }
}

/// What a plain-TCP connection whose head did not arrive in time gets.
const LATE_HEAD: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\n\
content-type: text/plain\r\ncontent-length: 16\r\n\r\nrequest timeout\n";

impl Drop for Tcp {
    fn drop(&mut self) {
        if self.reset.late_head.load(Ordering::Relaxed) {
            // Nothing was sent on this connection yet: the send buffer
            // takes these bytes without waiting.
            let _ = self.stream.try_write(LATE_HEAD);
        }
        if self.reset.abort.is_cancelled() {
            // A reset frees the kernel's send buffer at once.
            let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for Tcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before && !self.reset.head_started.load(Ordering::Relaxed) {
            self.reset.head_started.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Tcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// What every connection task shares.
struct Shared<S> {
    service: S,
    config: Config,
    max_request_target: usize,
    #[cfg(feature = "tls")]
    tls_timeout: Duration,
    #[cfg(feature = "tls")]
    tls: Option<tokio_rustls::TlsAcceptor>,
    #[cfg(feature = "http2")]
    http2: bool,
    counters: Arc<Counters>,
}

impl<S: HttpService> IntoFuture for Serve<S> {
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
content-type: text/plain\r\ncontent-length: 20\r\nretry-after: 1\r\n\r\ntoo many connections";

impl<S: HttpService> Serve<S> {
    async fn run(self) -> io::Result<()> {
        let Self {
            listener,
            service,
            config,
            max_connections,
            max_per_ip,
            max_request_target,
            tls_timeout,
            #[cfg(feature = "tls")]
            tls,
            #[cfg(feature = "http2")]
            http2,
            drain,
            signal,
            grace,
            counters,
        } = self;
        #[cfg(not(feature = "tls"))]
        let _ = tls_timeout;
        let shared = Arc::new(Shared {
            service,
            #[cfg(feature = "tls")]
            tls_timeout: tls_timeout.unwrap_or(config.handshake_timeout()),
            config,
            max_request_target,
            #[cfg(feature = "tls")]
            tls,
            #[cfg(feature = "http2")]
            http2,
            counters: Arc::clone(&counters),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut signal = signal.unwrap_or_else(|| Box::pin(std::future::pending()));
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut signal => break,
            };
            let (tcp, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let slot = match counters.take_slot(peer.ip(), max_connections, max_per_ip) {
                Ok(slot) => slot,
                Err(refusal) => {
                    let why = match refusal {
                        Refusal::Busy => "connection cap",
                        Refusal::PerIp => "per-IP connection cap",
                    };
                    tracing::debug!(%peer, why, "connection refused with 503");
                    tokio::spawn(refuse(tcp));
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let handle = Arc::new(Handle {
                peer,
                abort: Flag::default(),
                closed: Flag::default(),
                requested: Flag::default(),
                head_started: AtomicBool::new(false),
                late_head: AtomicBool::new(false),
            });
            let tcp = Tcp {
                stream: tcp,
                reset: Arc::clone(&handle),
                _slot: slot,
            };
            let shared = Arc::clone(&shared);
            let stop = stop_rx.clone();
            tokio::spawn(async move {
                connection(tcp, handle, shared, stop).await;
            });
        }
        // No more connections: new ones are refused at once instead of
        // waiting in the backlog of a server that is going away.
        drop(listener);
        // Plain HTTP connections finish their request and close; sockets
        // drain; then the grace period for the rest.
        let _ = stop_tx.send(true);
        if let Some(drain) = drain {
            let report = drain.shutdown().await;
            tracing::info!(
                closed = report.closed,
                dropped = report.forced,
                "sockets drained"
            );
        }
        drop(stop_rx);
        if tokio::time::timeout(grace, stop_tx.closed()).await.is_err() {
            tracing::info!(
                open = stop_tx.receiver_count(),
                "HTTP connections still open after the grace period: dropped"
            );
        }
        Ok(())
    }
}

/// Answers 503 without reading and closes.
async fn refuse(mut tcp: TcpStream) {
    use tokio::io::AsyncWriteExt;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = tcp.write_all(BUSY).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

/// Serves one connection: TLS, then HTTP, under the handshake deadline
/// until its first request, and until aborted or shut down.
async fn connection<S: HttpService>(
    tcp: Tcp,
    handle: Arc<Handle>,
    shared: Arc<Shared<S>>,
    stop: watch::Receiver<bool>,
) {
    let deadline = tokio::time::Instant::now() + shared.config.handshake_timeout();
    let served = async {
        #[cfg(feature = "tls")]
        if let Some(tls) = shared.tls.clone() {
            let accepted = tokio::time::timeout(shared.tls_timeout, tls.accept(tcp)).await;
            let Ok(Ok(stream)) = accepted else {
                bump(
                    &shared.counters.tls_failures,
                    REJECTIONS,
                    &[("status", "closed"), ("reason", "tls_handshake")],
                );
                return;
            };
            http(TokioIo::new(stream), &handle, &shared, stop).await;
            return;
        }
        http(TokioIo::new(tcp), &handle, &shared, stop).await;
    };
    tokio::pin!(served);
    // The deadline holds until the first request arrives.
    let first = async {
        tokio::select! {
            () = handle.requested.cancelled() => {}
            () = tokio::time::sleep_until(deadline) => {
                if !handle.requested.is_cancelled() {
                    #[cfg(feature = "tls")]
                    let plain = shared.tls.is_none();
                    #[cfg(not(feature = "tls"))]
                    let plain = true;
                    let late_head = plain && handle.head_started.load(Ordering::Relaxed);
                    handle.late_head.store(late_head, Ordering::Relaxed);
                    bump(
                        &shared.counters.handshake_timeouts,
                        REJECTIONS,
                        if late_head {
                            &[("status", "408"), ("reason", "handshake_timeout")]
                        } else {
                            &[("status", "closed"), ("reason", "handshake_timeout")]
                        },
                    );
                    return false;
                }
            }
        }
        true
    };
    let in_time = tokio::select! {
        () = served.as_mut() => None,
        in_time = first => Some(in_time),
        () = handle.abort.cancelled() => Some(false),
    };
    if in_time == Some(true) {
        tokio::select! {
            () = served.as_mut() => {}
            () = handle.abort.cancelled() => bump(
                &shared.counters.aborted,
                "sockeye_http_connections_aborted_total",
                &[],
            ),
        }
    }
    handle.closed.cancel();
}

/// Runs a hyper connection; once `stop` changes, lets it finish its
/// requests (graceful shutdown) and waits for it.
macro_rules! until_stopped {
    ($conn:ident, $stop:ident) => {{
        tokio::pin!($conn);
        tokio::select! {
            result = $conn.as_mut() => result,
            _ = $stop.changed() => {
                $conn.as_mut().graceful_shutdown();
                $conn.await
            }
        }
    }};
}

/// HTTP on an established stream.
async fn http<I, S>(
    io: I,
    handle: &Arc<Handle>,
    shared: &Arc<Shared<S>>,
    mut stop: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: HttpService,
{
    let service = Wrapped {
        shared: Arc::clone(shared),
        handle: ConnectionHandle(Arc::clone(handle)),
    };
    let config = &shared.config;
    // hyper's read buffer must be at least 8 KiB.
    let head = config.max_header_bytes().max(8 << 10);
    // The first request is under our deadline (which answers 408); hyper's
    // own timer bounds the heads of the requests after it.
    let header_timeout = config.handshake_timeout() + Duration::from_millis(100);
    #[cfg(feature = "http2")]
    if shared.http2 {
        let mut builder =
            hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_buf_size(head)
            .max_headers(config.max_headers());
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(config.max_header_bytes()).unwrap_or(u32::MAX))
            .enable_connect_protocol();
        let conn = builder.serve_connection_with_upgrades(io, service);
        let result = until_stopped!(conn, stop);
        if let Err(e) = result {
            count_error(&shared.counters, e.downcast_ref::<hyper::Error>());
        }
        return;
    }
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(head)
        .max_headers(config.max_headers())
        .serve_connection(io, service)
        .with_upgrades();
    let result = until_stopped!(conn, stop);
    if let Err(e) = result {
        count_error(&shared.counters, Some(&e));
    }
}

/// Counts what hyper refused on its own (its error ends the connection).
fn count_error(counters: &Counters, error: Option<&hyper::Error>) {
    let Some(error) = error else {
        return;
    };
    if error.is_timeout() {
        bump(
            &counters.header_timeouts,
            REJECTIONS,
            &[("status", "closed"), ("reason", "header_timeout")],
        );
    } else if error.is_parse_too_large() {
        bump(
            &counters.head_too_large,
            REJECTIONS,
            &[("status", "431"), ("reason", "head_too_large")],
        );
    }
    tracing::debug!(%error, "HTTP connection ended with an error");
}

/// The user's service behind the checks [`serve`] adds per request.
struct Wrapped<S> {
    shared: Arc<Shared<S>>,
    handle: ConnectionHandle,
}

impl<S: HttpService> hyper::service::Service<Request<Incoming>> for Wrapped<S> {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        self.handle.0.requested.cancel();
        let uri = req.uri();
        let target = uri.scheme_str().map_or(0, |s| s.len() + 3)
            + uri.authority().map_or(0, |a| a.as_str().len())
            + uri.path_and_query().map_or(0, |p| p.as_str().len());
        if target > self.shared.max_request_target {
            bump(
                &self.shared.counters.uri_too_long,
                REJECTIONS,
                &[("status", "414"), ("reason", "uri_too_long")],
            );
            let mut resp = Response::new(body::text("request target too long\n"));
            *resp.status_mut() = StatusCode::URI_TOO_LONG;
            return Box::pin(async { Ok(resp) });
        }
        req.extensions_mut().insert(self.handle.clone());
        // For what runs before the upgrade: sockeye-auth's per-IP caps.
        req.extensions_mut()
            .insert(sockeye_proto::handshake::PeerAddr(self.handle.peer_addr()));
        let mut service = self.shared.service.clone();
        Box::pin(async move {
            std::future::poll_fn(|cx| service.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            let resp = service.call(req).await.map_err(Into::into)?;
            Ok(resp.map(body::boxed))
        })
    }
}
