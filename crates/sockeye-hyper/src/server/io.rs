//! The transport of an upgraded connection: the TCP stream itself when hyper
//! served a plain `TcpStream` (no indirection), else hyper's `Upgraded`.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The stream under a server-side [`WebSocket`](super::WebSocket).
#[derive(Debug)]
pub struct ServerIo(Inner);

#[derive(Debug)]
enum Inner {
    Tcp(TcpStream),
    Upgraded(TokioIo<hyper::upgrade::Upgraded>),
}

impl ServerIo {
    /// Unwraps hyper's upgraded connection; returns the stream and the bytes
    /// hyper had already read past the request, which belong to the socket.
    ///
    /// Those bytes are copied out, so that hyper's read buffer (8 KiB or
    /// more, which `read_buf` shares) is freed now instead of living as long
    /// as the socket.
    pub(crate) fn new(upgraded: hyper::upgrade::Upgraded) -> (Self, BytesMut) {
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let rest = if parts.read_buf.is_empty() {
                    BytesMut::new()
                } else {
                    BytesMut::from(&parts.read_buf[..])
                };
                (Self(Inner::Tcp(parts.io.into_inner())), rest)
            }
            // hyper replays its buffered bytes itself on this path.
            Err(upgraded) => (
                Self(Inner::Upgraded(TokioIo::new(upgraded))),
                BytesMut::new(),
            ),
        }
    }

    /// The socket over this transport, with the abort hook that resets the
    /// TCP connection when it is given up with output unwritten.
    pub(crate) fn websocket(
        self,
        conn: Box<sockeye_proto::Connection>,
        read_buf: BytesMut,
    ) -> super::WebSocket {
        let mut ws = sockeye_proto::WebSocket::from_connection(self, conn, read_buf);
        ws.set_abort(Self::abort);
        ws
    }

    /// Makes closing the transport reset the TCP connection, when there is
    /// one under it (an HTTP/2 stream is reset by dropping it).
    fn abort(&self) {
        if let Some(tcp) = self.tcp() {
            sockeye_proto::abort_tcp(tcp);
        }
    }

    /// The TCP stream, when the connection was a plain TCP one.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match &self.0 {
            Inner::Tcp(tcp) => Some(tcp),
            Inner::Upgraded(_) => None,
        }
    }
}

impl AsyncRead for ServerIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Inner::Upgraded(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().0 {
            Inner::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Inner::Upgraded(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().0 {
            Inner::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Inner::Upgraded(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.0 {
            Inner::Tcp(s) => s.is_write_vectored(),
            Inner::Upgraded(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::Tcp(s) => Pin::new(s).poll_flush(cx),
            Inner::Upgraded(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Inner::Upgraded(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
