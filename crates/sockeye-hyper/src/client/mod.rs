//! The client: `ws://` and `wss://`, through HTTP CONNECT proxies, with a
//! reconnecting connector.

#[cfg(feature = "http2")]
mod http2;
mod io;
mod proxy;
mod reconnect;
#[cfg(feature = "tls")]
mod tls;

use std::sync::Arc;
use std::time::Duration;

use http::{Response, Uri};
use sockeye_proto::extension::ClientExtension;
use sockeye_proto::handshake::client::ClientRequest;
use sockeye_proto::{Config, client_handshake};
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::disable;
use crate::error::Error;

#[cfg(feature = "http2")]
pub use self::http2::Http2WebSocket;
pub use self::io::ClientIo;
pub use self::proxy::{ConnectResponse, Proxy};
pub use self::reconnect::{Backoff, Reconnect, ReconnectEvent, ReconnectingSocket, StopHandle};

use self::io::Inner;

/// A client WebSocket.
pub type WebSocket = sockeye_proto::WebSocket<ClientIo>;

/// Connects to a `ws://` or `wss://` URL with the default [`ClientBuilder`]
/// (proxy from the environment, webpki roots for TLS).
///
/// ```no_run
/// # async fn run() -> Result<(), sockeye_hyper::Error> {
/// let (mut ws, _response) = sockeye_hyper::client::connect("wss://echo.example.com/").await?;
/// ws.send("hello").await?;
/// let reply = ws.recv().await;
/// # drop(reply); Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<(WebSocket, Response<()>), Error> {
    ClientBuilder::new(url).connect().await
}

/// The application protocol a connection is opened for (TLS ALPN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alpn {
    Http1,
    #[cfg_attr(not(feature = "http2"), allow(dead_code))]
    H2,
}

#[derive(Clone, Debug)]
enum ProxyMode {
    Env,
    Direct,
    Explicit(Proxy),
}

/// Client settings, by-value builder.
///
/// ```no_run
/// use std::time::Duration;
/// use sockeye_hyper::client::ClientBuilder;
/// # async fn run() -> Result<(), sockeye_hyper::Error> {
/// let (ws, resp) = ClientBuilder::new("ws://127.0.0.1:9001/chat")
///     .protocol("chat.v1")
///     .header("Authorization", "Bearer 3f1c")
///     .connect_timeout(Duration::from_secs(5))
///     .proxy("http://proxy.local:3128")?
///     .connect()
///     .await?;
/// # drop((ws, resp)); Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientBuilder {
    url: String,
    headers: Vec<(String, String)>,
    protocols: Vec<String>,
    config: Config,
    connect_timeout: Duration,
    proxy: ProxyMode,
    disabled: Option<bool>,
    extension: Option<Arc<dyn ClientExtension>>,
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("url", &self.url)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("protocols", &self.protocols)
            .field("connect_timeout", &self.connect_timeout)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

/// Where a URL points.
struct Target {
    host: String,
    port: u16,
    tls: bool,
}

impl Target {
    /// The span a connection attempt runs in (no path, query or
    /// credential: those may carry secrets).
    fn span(&self, transport: &'static str) -> tracing::Span {
        tracing::debug_span!(
            "websocket_connect",
            role = "client",
            host = %self.host,
            port = self.port,
            tls = self.tls,
            transport,
            proxied = tracing::field::Empty,
        )
    }

    fn parse(url: &str) -> Result<Self, Error> {
        let uri: Uri = url
            .parse()
            .map_err(|_| Error::InvalidUrl(format!("cannot parse {url:?}")))?;
        let tls = match uri.scheme_str() {
            Some("ws" | "http") => false,
            Some("wss" | "https") => true,
            _ => {
                return Err(Error::InvalidUrl(
                    "the scheme must be ws:// or wss://".into(),
                ));
            }
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Error::InvalidUrl("no host".into()))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Self { host, port, tls })
    }
}

impl ClientBuilder {
    /// A client for `url` (`ws://` or `wss://`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            headers: Vec::new(),
            protocols: Vec::new(),
            config: Config::default(),
            connect_timeout: Duration::from_secs(10),
            proxy: ProxyMode::Env,
            disabled: None,
            extension: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Adds a request header (`Authorization`, `Origin`, `Cookie`, ...).
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Offers a subprotocol (in order of preference).
    #[must_use]
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Offers several subprotocols.
    #[must_use]
    pub fn protocols<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.protocols.extend(protocols.into_iter().map(Into::into));
        self
    }

    /// The connection configuration (limits, keepalive, timeouts).
    #[must_use]
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The bound on TCP connect, proxy tunnel and TLS handshake (default
    /// 10 s). The WebSocket handshake has its own, in the `Config`.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Tunnels through this HTTP proxy (`http://[user:pass@]host:port`),
    /// whatever the environment says.
    pub fn proxy(mut self, url: &str) -> Result<Self, Error> {
        self.proxy = ProxyMode::Explicit(Proxy::parse(url)?);
        Ok(self)
    }

    /// Connects directly, ignoring proxy environment variables.
    #[must_use]
    pub fn no_proxy(mut self) -> Self {
        self.proxy = ProxyMode::Direct;
        self
    }

    /// Overrides `WEBSOCKETS_DISABLE` either way (`None`: the environment).
    #[must_use]
    pub fn disabled(mut self, disabled: Option<bool>) -> Self {
        self.disabled = disabled;
        self
    }

    /// Offers an extension (e.g. permessage-deflate) and installs what the
    /// server accepts.
    #[must_use]
    pub fn extension(mut self, negotiator: Arc<dyn ClientExtension>) -> Self {
        self.extension = Some(negotiator);
        self
    }

    /// Offers permessage-deflate (RFC 7692) with `config` and installs what
    /// the server accepts.
    #[cfg(feature = "deflate")]
    #[must_use]
    pub fn deflate(self, config: sockeye_deflate::DeflateConfig) -> Self {
        self.extension(Arc::new(config))
    }

    /// Uses this rustls configuration for `wss://`. Configure a crypto
    /// provider on it (e.g. `ClientConfig::builder_with_provider`).
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Trusts these roots for `wss://` instead of the webpki roots.
    #[cfg(feature = "tls")]
    pub fn root_certificates(mut self, roots: rustls::RootCertStore) -> Result<Self, Error> {
        self.tls = Some(tls::config_with_roots(roots)?);
        Ok(self)
    }

    /// Connects, tunnels, negotiates TLS and performs the WebSocket
    /// handshake. Fails at once with [`Error::Disabled`], opening nothing,
    /// when WebSockets are switched off.
    pub async fn connect(&self) -> Result<(WebSocket, Response<()>), Error> {
        if disable::resolve(self.disabled) {
            return Err(Error::Disabled);
        }
        let target = Target::parse(&self.url)?;
        let span = target.span("http1");
        async {
            let io = tokio::time::timeout(self.connect_timeout, self.dial(&target, Alpn::Http1))
                .await
                .map_err(|_| Error::ConnectTimeout)??;
            let (mut ws, response) =
                client_handshake(io, self.client_request(), self.config.clone()).await?;
            ws.set_abort(|io: &ClientIo| sockeye_proto::abort_tcp(io.tcp()));
            tracing::debug!("websocket connected");
            Ok((ws, response))
        }
        .instrument(span)
        .await
    }

    /// The handshake request: URL, subprotocols, headers, extension offers.
    fn client_request(&self) -> ClientRequest {
        let mut request =
            ClientRequest::new(self.url.as_str()).protocols(self.protocols.iter().cloned());
        for (name, value) in &self.headers {
            request = request.header(name.clone(), value.clone());
        }
        if let Some(ext) = &self.extension {
            request = request.negotiate(Arc::clone(ext));
        }
        request
    }

    /// TCP (through the proxy this builder names, or the environment's),
    /// then TLS for `wss://`, offering `alpn`.
    async fn dial(&self, target: &Target, alpn: Alpn) -> Result<ClientIo, Error> {
        let proxy = match &self.proxy {
            ProxyMode::Env => Proxy::from_env(target.tls, &target.host, target.port)?,
            ProxyMode::Direct => None,
            ProxyMode::Explicit(p) => Some(p.clone()),
        };
        tracing::Span::current().record("proxied", proxy.is_some());
        let tcp = match proxy {
            Some(p) => {
                let mut tcp = TcpStream::connect((p.host(), p.port())).await?;
                p.tunnel(&mut tcp, &target.host, target.port, &self.config)
                    .await?;
                tcp
            }
            None => TcpStream::connect((target.host.as_str(), target.port)).await?,
        };
        tcp.set_nodelay(true)?;
        if !target.tls {
            return Ok(ClientIo(Inner::Plain(tcp)));
        }
        #[cfg(feature = "tls")]
        {
            let mut config = match &self.tls {
                Some(c) => Arc::clone(c),
                None => tls::default_config()?,
            };
            if alpn == Alpn::H2 {
                let mut h2 = (*config).clone();
                h2.alpn_protocols = vec![b"h2".to_vec()];
                config = Arc::new(h2);
            }
            let stream = tls::connect(config, &target.host, tcp).await?;
            if alpn == Alpn::H2 && stream.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Err(Error::Io(std::io::Error::other(
                    "the server did not agree to HTTP/2 (ALPN h2)",
                )));
            }
            Ok(ClientIo(Inner::Tls(Box::new(stream))))
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = alpn;
            Err(Error::InvalidUrl("wss:// needs the `tls` feature".into()))
        }
    }

    /// A connector that yields a fresh socket after each drop.
    pub fn reconnecting(self) -> Reconnect {
        Reconnect::new(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("wss://example.com/chat").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.tls), ("example.com", 443, true));
        let t = Target::parse("ws://[::1]:9001").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.tls), ("::1", 9001, false));
        assert!(Target::parse("ftp://x").is_err());
        assert!(Target::parse("ws://").is_err());
    }

    #[tokio::test]
    async fn disabled_fails_without_opening_a_socket() {
        // Port 9 on a TEST-NET address: connecting would hang or fail
        // differently; Disabled comes first.
        let r = ClientBuilder::new("ws://192.0.2.1:9/")
            .disabled(Some(true))
            .connect()
            .await;
        assert!(matches!(r, Err(Error::Disabled)));
    }
}
