//! The crate's error type: why a permessage-deflate offer or response is not
//! acceptable. Display texts are not API.

use std::fmt;

/// A permessage-deflate negotiation problem (RFC 7692 §5, §7.1).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A parameter this extension does not define.
    UnknownParameter(String),
    /// A parameter given twice.
    DuplicateParameter(&'static str),
    /// A parameter with a value it may not have, or without one it needs.
    InvalidValue(&'static str),
    /// The server set `client_max_window_bits` though the client did not offer it.
    UnofferedParameter(&'static str),
    /// A window of 8 bits: zlib compresses with at least 9, so the agreement
    /// could not be kept.
    UnsupportedWindowBits(u8),
    /// The server accepted a larger `server_max_window_bits` than offered.
    WindowLargerThanOffered,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownParameter(p) => write!(f, "unknown permessage-deflate parameter {p:?}"),
            Self::DuplicateParameter(p) => write!(f, "duplicate permessage-deflate parameter {p}"),
            Self::InvalidValue(p) => write!(f, "invalid value for {p}"),
            Self::UnofferedParameter(p) => write!(f, "{p} in the response but not in the offer"),
            Self::UnsupportedWindowBits(b) => write!(f, "a {b}-bit window is not supported"),
            Self::WindowLargerThanOffered => {
                f.write_str("server_max_window_bits larger than offered")
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for sockeye_proto::HandshakeError {
    fn from(_: Error) -> Self {
        sockeye_proto::HandshakeError::InvalidHeader("Sec-WebSocket-Extensions")
    }
}
