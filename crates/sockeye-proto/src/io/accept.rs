//! The raw server accept: read and parse the HTTP request from any stream,
//! validate it, answer 101 (or the right 4xx), and hand over a [`WebSocket`].

use std::sync::Arc;

use bytes::BytesMut;
use http::{HeaderValue, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::WebSocket;
use crate::config::Config;
use crate::conn::{Connection, Role};
use crate::error::{Error, HandshakeError, TimeoutKind};
use crate::extension::ServerExtension;
use crate::handshake::{http1, server};

/// Accepts a WebSocket on a stream with the default [`Acceptor`].
///
/// ```no_run
/// # async fn run() -> Result<(), sockeye_proto::Error> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let (tcp, _) = listener.accept().await?;
/// let ws = sockeye_proto::accept(tcp).await?;
/// # drop(ws); Ok(()) }
/// ```
pub async fn accept<S>(io: S) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    Acceptor::new().accept(io).await.map(|(ws, _)| ws)
}

/// Server handshake settings: the connection [`Config`] (its header limits
/// and handshake timeout apply here), the subprotocols in order of
/// preference, and an optional extension negotiator.
#[derive(Clone, Default)]
pub struct Acceptor {
    config: Config,
    protocols: Vec<String>,
    extension: Option<Arc<dyn ServerExtension>>,
    check: Option<RequestCheck>,
}

type RequestCheck = Arc<dyn Fn(&http::request::Parts) -> Result<(), StatusCode> + Send + Sync>;

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("config", &self.config)
            .field("protocols", &self.protocols)
            .field("extension", &self.extension)
            .field("check", &self.check.is_some())
            .finish()
    }
}

/// What the handshake accepted.
#[derive(Debug)]
pub struct Accepted {
    /// The request head (path, query, headers such as `Origin` and `Cookie`).
    pub request: http::request::Parts,
    /// The selected subprotocol.
    pub protocol: Option<String>,
    /// The agreed extension, as answered in `Sec-WebSocket-Extensions`.
    pub extension: Option<String>,
}

impl Accepted {
    /// A `websocket` span for the socket's task, with the fields of
    /// sockeye-hyper's (`role`, `transport` = `raw`, `peer`, `protocol`,
    /// `extension`; never a credential) and room for `close_code` and
    /// `close_initiator`, which the socket records on it when it ends. Run
    /// the task in it with `tracing::Instrument`:
    ///
    /// ```no_run
    /// use tracing::Instrument;
    /// # async fn run(acceptor: sockeye_proto::Acceptor, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    /// let (tcp, peer) = listener.accept().await?;
    /// tokio::spawn(async move {
    ///     let Ok((mut ws, accepted)) = acceptor.accept(tcp).await else { return };
    ///     let span = accepted.span(Some(peer));
    ///     async move { while let Some(Ok(_)) = ws.recv().await {} }
    ///         .instrument(span)
    ///         .await;
    /// });
    /// # Ok(()) }
    /// ```
    pub fn span(&self, peer: Option<std::net::SocketAddr>) -> tracing::Span {
        let extension = self.extension.as_ref();
        socket_span(
            "raw",
            peer,
            self.protocol.as_deref(),
            extension.map(|e| e as &dyn std::fmt::Display),
        )
    }
}

/// The `websocket` span a server socket's task runs in (sockeye-hyper's
/// upgrade paths and [`Accepted::span`] use it): `role`, `transport`,
/// `peer`, `protocol`, `extension` (the agreed `Sec-WebSocket-Extensions`
/// value; never a credential), and room for `close_code` and
/// `close_initiator`, which the socket records on it when it ends. The
/// peer and the extension are formatted only when the span is enabled.
pub fn socket_span(
    transport: &'static str,
    peer: Option<std::net::SocketAddr>,
    protocol: Option<&str>,
    extension: Option<&dyn std::fmt::Display>,
) -> tracing::Span {
    let span = tracing::info_span!(
        "websocket",
        role = "server",
        transport,
        peer = tracing::field::Empty,
        protocol = protocol.unwrap_or(""),
        extension = tracing::field::Empty,
        close_code = tracing::field::Empty,
        close_initiator = tracing::field::Empty,
    );
    if span.is_disabled() {
        return span;
    }
    if let Some(peer) = peer {
        span.record("peer", tracing::field::display(peer));
    }
    if let Some(extension) = extension {
        span.record("extension", tracing::field::display(extension));
    }
    span
}

impl Acceptor {
    /// Defaults: [`Config::default`], no subprotocols, no extensions.
    pub fn new() -> Self {
        Self::default()
    }

    /// The connection configuration.
    #[must_use]
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Subprotocols this server speaks, most preferred first.
    #[must_use]
    pub fn protocols<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// An extension negotiator (e.g. permessage-deflate).
    #[must_use]
    pub fn extension(mut self, negotiator: Arc<dyn ServerExtension>) -> Self {
        self.extension = Some(negotiator);
        self
    }

    /// A decision on the request before the upgrade (an Origin policy, a
    /// token): `Err(status)` answers with that status and no upgrade.
    ///
    /// ```
    /// use sockeye_proto::Acceptor;
    /// let acceptor = Acceptor::new().check_request(|req| {
    ///     match req.headers.get("origin").map(|o| o.as_bytes()) {
    ///         None | Some(b"https://chat.example.com") => Ok(()),
    ///         Some(_) => Err(http::StatusCode::FORBIDDEN),
    ///     }
    /// });
    /// # drop(acceptor);
    /// ```
    #[must_use]
    pub fn check_request<F>(mut self, check: F) -> Self
    where
        F: Fn(&http::request::Parts) -> Result<(), StatusCode> + Send + Sync + 'static,
    {
        self.check = Some(Arc::new(check));
        self
    }

    /// Reads the request (at most the configured header bytes and lines,
    /// within the handshake timeout), validates it and answers. A rejected
    /// request gets its HTTP status (400, 405, 426, 431, ...) before the
    /// error is returned. Bytes the client sent after the request are kept
    /// for the WebSocket.
    pub async fn accept<S>(&self, mut io: S) -> Result<(WebSocket<S>, Accepted), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let timeout = self.config.handshake_timeout();
        // Boxed: the handshake's state lives on the heap while it runs, so
        // the caller's task is sized for the socket, not for the handshake.
        let handshake = Box::pin(self.handshake(&mut io));
        match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok((conn, accepted, rest))) => {
                let mut ws = WebSocket::from_connection(io, conn, rest);
                if let Some(abort) = super::tcp_abort::<S>() {
                    ws.set_abort(abort);
                }
                Ok((ws, accepted))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Timeout(TimeoutKind::Handshake)),
        }
    }

    async fn handshake<S>(&self, io: &mut S) -> Result<(Connection, Accepted, BytesMut), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (parts, rest) = match read_head(io, &self.config, http1::parse_request).await {
            Ok(head) => head,
            Err(Error::Handshake(e)) => return Err(reject(io, e).await),
            Err(e) => return Err(e),
        };
        if let Some(check) = &self.check
            && let Err(status) = check(&parts)
        {
            let mut wire = Vec::with_capacity(128);
            let mut resp = http::Response::new("");
            *resp.status_mut() = status;
            http1::encode_response(&resp, &mut wire);
            let _ = io.write_all(&wire).await;
            let _ = io.shutdown().await;
            return Err(Error::Handshake(HandshakeError::Refused(status)));
        }
        let result = server::validate(&parts).and_then(|upgrade| {
            let protocol = upgrade
                .select_protocol(self.protocols.iter().map(String::as_str))
                .map(str::to_owned);
            let negotiated = match &self.extension {
                Some(n) => n.negotiate(upgrade.extensions())?,
                None => None,
            };
            Ok((upgrade, protocol, negotiated))
        });
        let (upgrade, protocol, negotiated) = match result {
            Ok(ok) => ok,
            Err(e) => return Err(reject(io, e).await),
        };
        let mut conn = Connection::new(Role::Server, self.config.clone());
        let agreed = negotiated.map(|(response, extension)| {
            conn.set_extension(extension);
            response.to_string()
        });
        let ext_header = agreed
            .as_deref()
            .and_then(|text| HeaderValue::try_from(text).ok());
        let response = upgrade.response(protocol.as_deref(), ext_header);
        let mut wire = Vec::with_capacity(256);
        http1::encode_response(&response.map(|()| ""), &mut wire);
        io.write_all(&wire).await?;
        io.flush().await?;
        let accepted = Accepted {
            request: parts,
            protocol,
            extension: agreed,
        };
        Ok((conn, accepted, rest))
    }
}

/// Answers a rejected handshake with its status and returns the error.
async fn reject<S>(io: &mut S, err: HandshakeError) -> Error
where
    S: AsyncWrite + Unpin,
{
    let mut wire = Vec::with_capacity(256);
    http1::encode_response(&server::rejection(&err), &mut wire);
    // Best effort: the client may already be gone.
    let _ = io.write_all(&wire).await;
    let _ = io.shutdown().await;
    Error::Handshake(err)
}

type ParseHead<T> = fn(&[u8], &Config) -> Result<Option<(T, usize)>, HandshakeError>;

/// Reads until a complete head is buffered, then parses it once. Returns the
/// head and the bytes after it.
pub(super) async fn read_head<S, T>(
    io: &mut S,
    config: &Config,
    parse: ParseHead<T>,
) -> Result<(T, BytesMut), Error>
where
    S: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(1024);
    let mut searched = 0;
    let mut dropped = 0;
    loop {
        if let Some(end) = http1::find_head_end(&buf, searched) {
            let Some((head, len)) = parse(&buf[..end], config)? else {
                return Err(HandshakeError::MalformedHead("incomplete head").into());
            };
            // The rest is copied out so the head's buffer is freed now,
            // not held for the connection's life.
            let rest = if buf.len() > len {
                BytesMut::from(&buf[len..])
            } else {
                BytesMut::new()
            };
            return Ok((head, rest));
        }
        // Empty lines before the start line are ignored; drop them now so
        // they are never scanned twice. They still count against the limit.
        let lead = http1::leading_empty_lines(&buf);
        if lead > 0 {
            dropped += lead;
            let _ = buf.split_to(lead);
            searched = 0;
            continue;
        }
        searched = buf.len();
        if buf.len() + dropped >= config.max_header_bytes() {
            // Parse what we have to tell "too many lines" from "too many bytes".
            parse(&buf, config)?;
            return Err(HandshakeError::HeadTooLarge.into());
        }
        let room = config
            .max_header_bytes()
            .saturating_sub(buf.len() + dropped)
            .clamp(1, 4096);
        buf.reserve(room);
        let n = (&mut *io).take(room as u64).read_buf(&mut buf).await?;
        if n == 0 {
            return Err(HandshakeError::ConnectionClosed.into());
        }
    }
}
