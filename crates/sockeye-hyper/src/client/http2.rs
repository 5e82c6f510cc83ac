//! WebSockets as streams of an HTTP/2 connection (RFC 8441, feature `http2`).

use bytes::BytesMut;
use http::Response;
use hyper::client::conn::http2::SendRequest;
use hyper::ext::Protocol;
use hyper_util::rt::TokioIo;
use sockeye_proto::{Connection, Role, TimeoutKind};

use super::ClientBuilder;
use crate::disable;
use crate::error::Error;

/// A client WebSocket carried by an HTTP/2 stream.
pub type Http2WebSocket = sockeye_proto::WebSocket<TokioIo<hyper::upgrade::Upgraded>>;

impl ClientBuilder {
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
            let response = sender.send_request(req).await?;
            let (parts, body) = response.into_parts();
            let (_, extension) = handshake.finish(&parts)?;
            let head = parts.clone();
            let upgraded = hyper::upgrade::on(Response::from_parts(parts, body)).await?;
            Ok::<_, Error>((upgraded, head, extension))
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
