//! The crate's error type. Display texts are for people, not API.

use std::fmt;

use http::StatusCode;

/// Everything that can go wrong in sockeye-hyper.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The WebSocket protocol or its handshake failed.
    Proto(sockeye_proto::Error),
    /// hyper failed (e.g. the connection could not be upgraded).
    Hyper(hyper::Error),
    /// The transport failed.
    Io(std::io::Error),
    /// The URL cannot be used.
    InvalidUrl(String),
    /// The request cannot be upgraded: no `OnUpgrade` in its extensions
    /// (HTTP/2 without extended CONNECT, or a request not from hyper).
    NotUpgradable,
    /// A proxy refused to open the tunnel.
    Proxy {
        /// The proxy, without credentials.
        proxy: String,
        /// Its status, e.g. 403 or 407.
        status: StatusCode,
    },
    /// A proxy answered something that is not HTTP.
    ProxyProtocol {
        /// The proxy, without credentials.
        proxy: String,
        /// What went wrong.
        reason: String,
    },
    /// TLS failed.
    #[cfg(feature = "tls")]
    Tls(rustls::Error),
    /// Connecting took longer than the connect timeout.
    ConnectTimeout,
    /// WebSockets are switched off (`WEBSOCKETS_DISABLE`, or the builder).
    Disabled,
}

impl Error {
    /// The HTTP status a server answers with for this error, if any.
    pub fn http_status(&self) -> Option<StatusCode> {
        match self {
            Self::Proto(e) => e.http_status(),
            Self::NotUpgradable => Some(StatusCode::UPGRADE_REQUIRED),
            Self::Disabled => Some(StatusCode::SERVICE_UNAVAILABLE),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Proto(e) => write!(f, "{e}"),
            Self::Hyper(e) => write!(f, "hyper: {e}"),
            Self::Io(e) => write!(f, "I/O error: {e}"),
            Self::InvalidUrl(why) => write!(f, "invalid URL: {why}"),
            Self::NotUpgradable => f.write_str("this connection cannot be upgraded"),
            Self::Proxy { proxy, status } => {
                write!(f, "proxy {proxy} refused the tunnel: {status}")
            }
            Self::ProxyProtocol { proxy, reason } => write!(f, "proxy {proxy}: {reason}"),
            #[cfg(feature = "tls")]
            Self::Tls(e) => write!(f, "TLS: {e}"),
            Self::ConnectTimeout => f.write_str("connect timed out"),
            Self::Disabled => {
                f.write_str("WebSockets are disabled (WEBSOCKETS_DISABLE or the builder)")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Proto(e) => Some(e),
            Self::Hyper(e) => Some(e),
            Self::Io(e) => Some(e),
            #[cfg(feature = "tls")]
            Self::Tls(e) => Some(e),
            _ => None,
        }
    }
}

impl From<sockeye_proto::Error> for Error {
    fn from(e: sockeye_proto::Error) -> Self {
        match e {
            sockeye_proto::Error::Io(io) => Self::Io(io),
            other => Self::Proto(other),
        }
    }
}

impl From<sockeye_proto::HandshakeError> for Error {
    fn from(e: sockeye_proto::HandshakeError) -> Self {
        Self::Proto(e.into())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<hyper::Error> for Error {
    fn from(e: hyper::Error) -> Self {
        Self::Hyper(e)
    }
}

#[cfg(feature = "tls")]
impl From<rustls::Error> for Error {
    fn from(e: rustls::Error) -> Self {
        Self::Tls(e)
    }
}
