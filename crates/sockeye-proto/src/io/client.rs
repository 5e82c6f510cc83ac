//! The raw client handshake over any stream (TCP, TLS, a proxy tunnel).

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::WebSocket;
use super::accept::read_head;
use crate::config::Config;
use crate::conn::{Connection, Role};
use crate::error::{Error, TimeoutKind};
use crate::handshake::client::ClientRequest;
use crate::handshake::http1;

/// Performs the client handshake on a connected stream and returns the
/// socket and the server's response head (with the selected subprotocol in
/// `Sec-WebSocket-Protocol`). Bytes the server sent right after its 101 are
/// kept for the WebSocket. Bounded by the handshake timeout of `config`.
///
/// ```no_run
/// use sockeye_proto::{Config, client_handshake, handshake::client::ClientRequest};
/// # async fn run() -> Result<(), sockeye_proto::Error> {
/// let tcp = tokio::net::TcpStream::connect("127.0.0.1:9001").await?;
/// let (ws, response) =
///     client_handshake(tcp, ClientRequest::new("ws://127.0.0.1:9001/"), Config::default()).await?;
/// # drop((ws, response)); Ok(()) }
/// ```
pub async fn client_handshake<S>(
    mut io: S,
    request: ClientRequest,
    config: Config,
) -> Result<(WebSocket<S>, http::Response<()>), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let timeout = config.handshake_timeout();
    let work = async {
        let (req, handshake) = request.build()?;
        let mut wire = Vec::with_capacity(256);
        http1::encode_request(&req, &mut wire);
        io.write_all(&wire).await?;
        io.flush().await?;
        let (parts, rest) = read_head(&mut io, &config, http1::parse_response).await?;
        let (_, extension) = handshake.finish(&parts)?;
        Ok::<_, Error>((parts, rest, extension))
    };
    let (parts, rest, extension) = match tokio::time::timeout(timeout, work).await {
        Ok(r) => r?,
        Err(_) => return Err(Error::Timeout(TimeoutKind::Handshake)),
    };
    let mut conn = Connection::new(Role::Client, config);
    if let Some(ext) = extension {
        conn.set_extension(ext);
    }
    let mut ws = WebSocket::from_connection(io, conn, rest);
    if let Some(abort) = super::tcp_abort::<S>() {
        ws.set_abort(abort);
    }
    Ok((ws, http::Response::from_parts(parts, ())))
}
