//! WebSockets as streams of an HTTP/2 connection (RFC 8441, feature `http2`).

use bytes::{Bytes, BytesMut};
use http::Response;
use http_body_util::Empty;
use hyper::client::conn::http2::SendRequest;
use hyper::ext::Protocol;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sockeye_proto::{Connection, Role, TimeoutKind};
use tracing::Instrument;

use super::{Alpn, ClientBuilder, Target};
use crate::disable;
use crate::error::Error;

/// A client WebSocket carried by an HTTP/2 stream.
pub type Http2WebSocket = sockeye_proto::WebSocket<TokioIo<hyper::upgrade::Upgraded>>;

impl ClientBuilder {
    /// Opens an HTTP/2 connection to this builder's server, for
    /// [`connect_on`](Self::connect_on): TCP (through the proxy, as
    /// [`connect`](Self::connect) does), TLS with ALPN `h2` for `wss://`
    /// (failing if the server does not agree to it), or HTTP/2 by prior
    /// knowledge for `ws://`; then the HTTP/2 handshake, all within the
    /// connect timeout. The connection runs in a spawned task until every
    /// sender and socket on it is gone.
    ///
    /// ```no_run
    /// use sockeye_hyper::client::ClientBuilder;
    /// # async fn run() -> Result<(), sockeye_hyper::Error> {
    /// let chat = ClientBuilder::new("wss://chat.example.com/ws").protocol("chat.v1");
    /// let mut connection = chat.connect_http2().await?;
    /// let (mut room_a, _) = chat.connect_on(&mut connection).await?;
    /// let (mut room_b, _) = chat.connect_on(&mut connection).await?;
    /// room_a.send("hello a").await?;
    /// room_b.send("hello b").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_http2(&self) -> Result<SendRequest<Empty<Bytes>>, Error> {
        if disable::resolve(self.disabled) {
            return Err(Error::Disabled);
        }
        let target = Target::parse(&self.url)?;
        let span = target.span("http2");
        let open = async {
            let io = self.dial(&target, Alpn::H2).await?;
            let (sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                    .await?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "HTTP/2 connection ended");
                }
            });
            Ok::<_, Error>(sender)
        };
        tokio::time::timeout(self.connect_timeout, open.instrument(span))
            .await
            .map_err(|_| Error::ConnectTimeout)?
    }

    /// Opens the socket as a new stream of an HTTP/2 connection the caller
    /// holds (RFC 8441): an extended CONNECT to this builder's URL (`ws` as
    /// `http`, `wss` as `https`) with its subprotocols, extension offers
    /// and headers; a 2xx opens the socket. Many sockets, and other
    /// requests, can share the connection. The server must have announced
    /// extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL); otherwise hyper
    /// refuses to send the request and this fails with [`Error::Hyper`].
    /// The proxy, TLS and connect-timeout settings belong to the
    /// connection and are not used here; the handshake timeout of the
    /// [`Config`](sockeye_proto::Config) bounds the exchange.
    ///
    /// ```no_run
    /// use hyper_util::rt::{TokioExecutor, TokioIo};
    /// use sockeye_hyper::client::ClientBuilder;
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let tcp = tokio::net::TcpStream::connect("127.0.0.1:8080").await?;
    /// let (mut sender, conn) = hyper::client::conn::http2::handshake(
    ///     TokioExecutor::new(),
    ///     TokioIo::new(tcp),
    /// )
    /// .await?;
    /// tokio::spawn(conn);
    /// let builder = ClientBuilder::new("ws://127.0.0.1:8080/chat").protocol("chat.v1");
    /// let (mut one, _) = builder.connect_on::<http_body_util::Empty<bytes::Bytes>>(&mut sender).await?;
    /// let (mut two, _) = builder.connect_on(&mut sender).await?;
    /// one.send("over the first stream").await?;
    /// two.send("over the second").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_on<B>(
        &self,
        sender: &mut SendRequest<B>,
    ) -> Result<(Http2WebSocket, Response<()>), Error>
    where
        B: http_body::Body + Default + Send + 'static,
    {
        if disable::resolve(self.disabled) {
            return Err(Error::Disabled);
        }
        let (req, handshake) = self.client_request().build_extended_connect()?;
        let mut req = req.map(|()| B::default());
        req.extensions_mut()
            .insert(Protocol::from_static("websocket"));
        let exchange = async {
            sender.ready().await?;
            let mut response = sender.send_request(req).await?;
            let on_upgrade = hyper::upgrade::on(&mut response);
            let (head, _) = response.into_parts();
            let (_, extension) = handshake.finish(&head)?;
            Ok::<_, Error>((on_upgrade.await?, head, extension))
        };
        let (upgraded, head, extension) =
            tokio::time::timeout(self.config.handshake_timeout(), exchange)
                .await
                .map_err(|_| sockeye_proto::Error::Timeout(TimeoutKind::Handshake))??;
        let mut conn = Connection::new(Role::Client, self.config.clone());
        if let Some(ext) = extension {
            conn.set_extension(ext);
        }
        let ws = Http2WebSocket::from_connection(TokioIo::new(upgraded), conn, BytesMut::new());
        Ok((ws, Response::from_parts(head, ())))
    }
}
