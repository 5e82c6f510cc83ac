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
    /// A connection of [`serve`](crate::serve()): its slot goes with it.
    #[cfg(feature = "serve")]
    Served(crate::serve::Tcp),
    Upgraded(TokioIo<hyper::upgrade::Upgraded>),
}

/// Every transport but hyper's indirection is a TCP stream.
macro_rules! tcp_mut {
    ($inner:expr) => {
        match $inner {
            Inner::Tcp(s) => Ok(s),
            #[cfg(feature = "serve")]
            Inner::Served(s) => Ok(s.stream_mut()),
            Inner::Upgraded(s) => Err(s),
        }
    };
}

impl ServerIo {
    /// Unwraps hyper's upgraded connection; returns the stream and the bytes
    /// hyper had already read past the request, which belong to the socket.
    ///
    /// Those bytes are copied out, so that hyper's read buffer (8 KiB or
    /// more, which `read_buf` shares) is freed now instead of living as long
    /// as the socket.
    pub(crate) fn new(upgraded: hyper::upgrade::Upgraded) -> (Self, BytesMut) {
        let rest = |buf: &bytes::Bytes| {
            if buf.is_empty() {
                BytesMut::new()
            } else {
                BytesMut::from(&buf[..])
            }
        };
        let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let rest = rest(&parts.read_buf);
                return (Self(Inner::Tcp(parts.io.into_inner())), rest);
            }
            Err(upgraded) => upgraded,
        };
        #[cfg(feature = "serve")]
        let upgraded = match upgraded.downcast::<TokioIo<crate::serve::Tcp>>() {
            Ok(parts) => {
                let rest = rest(&parts.read_buf);
                return (Self(Inner::Served(parts.io.into_inner())), rest);
            }
            Err(upgraded) => upgraded,
        };
        // hyper replays its buffered bytes itself on this path.
        (
            Self(Inner::Upgraded(TokioIo::new(upgraded))),
            BytesMut::new(),
        )
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
            #[cfg(feature = "serve")]
            Inner::Served(tcp) => Some(tcp.stream()),
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
        match tcp_mut!(&mut self.get_mut().0) {
            Ok(s) => Pin::new(s).poll_read(cx, buf),
            Err(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match tcp_mut!(&mut self.get_mut().0) {
            Ok(s) => Pin::new(s).poll_write(cx, buf),
            Err(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match tcp_mut!(&mut self.get_mut().0) {
            Ok(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Err(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.0 {
            Inner::Tcp(s) => s.is_write_vectored(),
            #[cfg(feature = "serve")]
            Inner::Served(s) => s.stream().is_write_vectored(),
            Inner::Upgraded(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match tcp_mut!(&mut self.get_mut().0) {
            Ok(s) => Pin::new(s).poll_flush(cx),
            Err(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match tcp_mut!(&mut self.get_mut().0) {
            Ok(s) => Pin::new(s).poll_shutdown(cx),
            Err(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
