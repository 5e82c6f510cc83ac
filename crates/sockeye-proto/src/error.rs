//! The crate's one public error type, its detail enums, and the single place
//! where failures map to the wire: [`Error::close_code`] and
//! [`Error::http_status`].
//!
//! Display texts are for people and logs; they are not API and may change.

use std::borrow::Cow;
use std::{fmt, io};

use http::StatusCode;

use crate::close::CloseCode;
use crate::frame::Rsv;

/// Everything that can go wrong in sockeye-proto.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke RFC 6455; the connection was failed with 1002 or 1007.
    Protocol(ProtocolViolation),
    /// A size or count limit was exceeded (1009 or 1008 on receipt), or a
    /// send was refused because the write buffer is full.
    Capacity(CapacityError),
    /// The opening handshake failed.
    Handshake(HandshakeError),
    /// A negotiated extension failed to transform a message.
    Extension(ExtensionError),
    /// A timer expired.
    Timeout(TimeoutKind),
    /// The transport failed.
    Io(io::Error),
    /// The transport closed without a close frame (status 1006).
    AbnormalClosure,
    /// The connection is closing or closed: nothing more can be sent.
    Closed,
    /// The API was used in a way it does not allow (e.g. sending close code
    /// 1005; a ping over 125 bytes is a
    /// [`CapacityError::ControlFrameTooLong`] instead).
    InvalidInput(&'static str),
}

impl Error {
    /// The close code a connection is failed with because of this error, if
    /// it is one the peer caused (or a timer that closes the connection).
    ///
    /// ```
    /// use sockeye_proto::{CloseCode, Error, ProtocolViolation};
    /// let e = Error::Protocol(ProtocolViolation::InvalidUtf8);
    /// assert_eq!(e.close_code(), Some(CloseCode::INVALID_PAYLOAD));
    /// ```
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Self::Protocol(v) => Some(v.close_code()),
            Self::Capacity(c) => c.close_code(),
            Self::Extension(e) => Some(e.close_code()),
            Self::Timeout(TimeoutKind::Keepalive) => Some(CloseCode::INTERNAL_ERROR),
            Self::Timeout(TimeoutKind::Idle) => Some(CloseCode::GOING_AWAY),
            _ => None,
        }
    }

    /// The HTTP status a server answers a failed handshake with.
    ///
    /// ```
    /// use sockeye_proto::{Error, HandshakeError};
    /// let e = Error::Handshake(HandshakeError::UnsupportedVersion);
    /// assert_eq!(e.http_status().map(|s| s.as_u16()), Some(426));
    /// ```
    pub fn http_status(&self) -> Option<StatusCode> {
        match self {
            Self::Handshake(h) => h.http_status(),
            Self::Timeout(TimeoutKind::Handshake) => Some(StatusCode::REQUEST_TIMEOUT),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Protocol(v) => write!(f, "protocol error: {v}"),
            Self::Capacity(c) => write!(f, "{c}"),
            Self::Handshake(h) => write!(f, "handshake failed: {h}"),
            Self::Extension(e) => write!(f, "extension failed: {e}"),
            Self::Timeout(t) => write!(f, "{t} timed out"),
            Self::Io(e) => write!(f, "I/O error: {e}"),
            Self::AbnormalClosure => f.write_str("connection closed without a close frame (1006)"),
            Self::Closed => f.write_str("connection closed"),
            Self::InvalidInput(what) => write!(f, "invalid input: {what}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Protocol(v) => Some(v),
            Self::Capacity(c) => Some(c),
            Self::Handshake(h) => Some(h),
            Self::Extension(e) => Some(e),
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<ProtocolViolation> for Error {
    fn from(v: ProtocolViolation) -> Self {
        Self::Protocol(v)
    }
}

impl From<CapacityError> for Error {
    fn from(c: CapacityError) -> Self {
        Self::Capacity(c)
    }
}

impl From<HandshakeError> for Error {
    fn from(h: HandshakeError) -> Self {
        Self::Handshake(h)
    }
}

impl From<ExtensionError> for Error {
    fn from(e: ExtensionError) -> Self {
        Self::Extension(e)
    }
}

// ===== impl ProtocolViolation =====

/// How the peer broke RFC 6455.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolViolation {
    /// An opcode reserved for future use (0x3–0x7, 0xB–0xF).
    ReservedOpcode(u8),
    /// A control frame without FIN.
    FragmentedControlFrame,
    /// A control frame payload over 125 bytes.
    ControlFrameTooLong,
    /// A 64-bit length with its most significant bit set.
    LengthMsbSet,
    /// A length not encoded in the minimal number of bytes.
    NonMinimalLength,
    /// RSV bits set that no negotiated extension owns.
    UnexpectedRsv(Rsv),
    /// A client frame without a mask.
    UnmaskedFrame,
    /// A server frame with a mask.
    MaskedFrame,
    /// A continuation frame with no message to continue.
    UnexpectedContinuation,
    /// A new data message while a fragmented one is unfinished.
    ExpectedContinuation,
    /// A text message (or close reason) that is not UTF-8 (closes with 1007).
    InvalidUtf8,
    /// A close code that may not appear on the wire.
    InvalidCloseCode(u16),
    /// A close payload of exactly one byte.
    InvalidClosePayload,
    /// A close reason that is not UTF-8 (closes with 1007).
    InvalidCloseReason,
}

impl ProtocolViolation {
    /// 1007 for invalid UTF-8, 1002 for everything else.
    pub fn close_code(self) -> CloseCode {
        match self {
            Self::InvalidUtf8 | Self::InvalidCloseReason => CloseCode::INVALID_PAYLOAD,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ProtocolViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            Self::FragmentedControlFrame => f.write_str("fragmented control frame"),
            Self::ControlFrameTooLong => f.write_str("control frame over 125 bytes"),
            Self::LengthMsbSet => f.write_str("64-bit length with the top bit set"),
            Self::NonMinimalLength => f.write_str("length not minimally encoded"),
            Self::UnexpectedRsv(rsv) => write!(f, "reserved bits {rsv:?} not negotiated"),
            Self::UnmaskedFrame => f.write_str("unmasked client frame"),
            Self::MaskedFrame => f.write_str("masked server frame"),
            Self::UnexpectedContinuation => f.write_str("continuation with nothing to continue"),
            Self::ExpectedContinuation => f.write_str("new message inside a fragmented one"),
            Self::InvalidUtf8 => f.write_str("invalid UTF-8 in a text message"),
            Self::InvalidCloseCode(c) => write!(f, "close code {c} not allowed on the wire"),
            Self::InvalidClosePayload => f.write_str("one-byte close payload"),
            Self::InvalidCloseReason => f.write_str("invalid UTF-8 in the close reason"),
        }
    }
}

impl std::error::Error for ProtocolViolation {}

// ===== impl CapacityError =====

/// A limit was exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CapacityError {
    /// A frame payload over the frame limit (closes with 1009).
    FrameTooLarge {
        /// The declared payload length.
        size: u64,
        /// The configured limit.
        max: usize,
    },
    /// A message over the message limit, after reassembly or decoding
    /// (closes with 1009).
    MessageTooLarge {
        /// The size reached when the limit was crossed.
        size: u64,
        /// The configured limit.
        max: usize,
    },
    /// A message spanning more frames than allowed (closes with 1008).
    TooManyFragments {
        /// The configured limit.
        max: usize,
    },
    /// A ping or pong to send over 125 bytes.
    ControlFrameTooLong,
    /// The outgoing buffer is above its high-water mark: flush first.
    WriteBufferFull,
}

impl CapacityError {
    /// 1009 for sizes, 1008 for fragment counts; none for local refusals.
    pub fn close_code(self) -> Option<CloseCode> {
        match self {
            Self::FrameTooLarge { .. } | Self::MessageTooLarge { .. } => {
                Some(CloseCode::MESSAGE_TOO_BIG)
            }
            Self::TooManyFragments { .. } => Some(CloseCode::POLICY_VIOLATION),
            Self::ControlFrameTooLong | Self::WriteBufferFull => None,
        }
    }
}

impl fmt::Display for CapacityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FrameTooLarge { size, max } => {
                write!(f, "frame of {size} bytes over the {max}-byte limit")
            }
            Self::MessageTooLarge { size, max } => {
                write!(f, "message of {size}+ bytes over the {max}-byte limit")
            }
            Self::TooManyFragments { max } => write!(f, "message in more than {max} frames"),
            Self::ControlFrameTooLong => f.write_str("control payload over 125 bytes"),
            Self::WriteBufferFull => f.write_str("write buffer full"),
        }
    }
}

impl std::error::Error for CapacityError {}

// ===== impl HandshakeError =====

/// Why an opening handshake failed. Server-side variants map to an HTTP
/// status with [`http_status`](Self::http_status).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The method is not GET (405).
    MethodNotAllowed,
    /// HTTP/1.0 or an unknown version (400).
    UnsupportedHttpVersion,
    /// No `Host` header, or more than one (400).
    MissingHost,
    /// Not a WebSocket upgrade request: no `Upgrade: websocket` (426).
    NotUpgrade,
    /// `Upgrade: websocket` without `Connection: upgrade` (400).
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Version` is missing or not 13 (426, with
    /// `Sec-WebSocket-Version: 13`).
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` missing, repeated, or not 16 bytes of base64 (400).
    InvalidKey,
    /// The upgrade request carries a body (400).
    UnexpectedBody,
    /// A header is malformed or repeated where it may not be (400).
    InvalidHeader(&'static str),
    /// The request or response head is malformed (400).
    MalformedHead(&'static str),
    /// The head is over the byte limit (431).
    HeadTooLarge,
    /// The head has more header lines than allowed (431).
    TooManyHeaders,
    /// The request target is over 8 KiB (414).
    UriTooLong,
    /// Client: the URI cannot be used (scheme, host).
    InvalidUri(&'static str),
    /// Client: the server answered with another status than 101.
    UnexpectedStatus(StatusCode),
    /// Client: the 101 lacks `Upgrade: websocket` or `Connection: upgrade`.
    MissingUpgrade,
    /// Client: `Sec-WebSocket-Accept` does not match the key.
    InvalidAccept,
    /// Client: the server selected a subprotocol that was not offered.
    UnofferedProtocol,
    /// Client: the server accepted an extension that was not offered.
    UnofferedExtension,
    /// The transport closed during the handshake.
    ConnectionClosed,
    /// The server's own check refused the request with this status.
    Refused(StatusCode),
}

impl HandshakeError {
    /// The status a server answers with, for server-side rejections.
    pub fn http_status(&self) -> Option<StatusCode> {
        Some(match self {
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotUpgrade | Self::UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
            Self::HeadTooLarge | Self::TooManyHeaders => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::UnsupportedHttpVersion
            | Self::MissingHost
            | Self::MissingConnectionUpgrade
            | Self::InvalidKey
            | Self::UnexpectedBody
            | Self::InvalidHeader(_)
            | Self::MalformedHead(_) => StatusCode::BAD_REQUEST,
            Self::InvalidUri(_)
            | Self::UnexpectedStatus(_)
            | Self::MissingUpgrade
            | Self::InvalidAccept
            | Self::UnofferedProtocol
            | Self::UnofferedExtension
            | Self::ConnectionClosed => return None,
            Self::Refused(status) => *status,
        })
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MethodNotAllowed => f.write_str("method must be GET"),
            Self::UnsupportedHttpVersion => f.write_str("HTTP/1.1 or later is required"),
            Self::MissingHost => f.write_str("exactly one Host header is required"),
            Self::NotUpgrade => f.write_str("not a WebSocket upgrade request"),
            Self::MissingConnectionUpgrade => f.write_str("Connection header lacks \"upgrade\""),
            Self::UnsupportedVersion => f.write_str("Sec-WebSocket-Version must be 13"),
            Self::InvalidKey => f.write_str("invalid Sec-WebSocket-Key"),
            Self::UnexpectedBody => f.write_str("an upgrade request must not have a body"),
            Self::InvalidHeader(name) => write!(f, "invalid {name} header"),
            Self::MalformedHead(what) => write!(f, "malformed HTTP head: {what}"),
            Self::HeadTooLarge => f.write_str("header block too large"),
            Self::TooManyHeaders => f.write_str("too many header lines"),
            Self::UriTooLong => f.write_str("request target too long"),
            Self::InvalidUri(what) => write!(f, "invalid URI: {what}"),
            Self::UnexpectedStatus(s) => write!(f, "server answered {s} instead of 101"),
            Self::MissingUpgrade => f.write_str("101 response lacks the upgrade headers"),
            Self::InvalidAccept => f.write_str("Sec-WebSocket-Accept does not match the key"),
            Self::UnofferedProtocol => f.write_str("server selected a subprotocol never offered"),
            Self::UnofferedExtension => f.write_str("server accepted an extension never offered"),
            Self::ConnectionClosed => f.write_str("connection closed during the handshake"),
            Self::Refused(status) => write!(f, "refused with {status}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

// ===== impl ExtensionError =====

/// An extension failed on a message: the connection is failed with the
/// extension's close code (e.g. 1007 for corrupt compressed data).
#[derive(Debug)]
pub struct ExtensionError {
    code: CloseCode,
    message: Cow<'static, str>,
}

impl ExtensionError {
    /// An error that fails the connection with `code`.
    pub fn new(code: CloseCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The close code.
    pub fn close_code(&self) -> CloseCode {
        self.code
    }
}

impl fmt::Display for ExtensionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExtensionError {}

// ===== impl TimeoutKind =====

/// Which timer expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// The opening handshake took too long.
    Handshake,
    /// The peer did not answer our close frame in time.
    Close,
    /// The peer did not answer a keepalive ping in time (closes with 1011).
    Keepalive,
    /// No data message in either direction for the idle timeout (closes with 1001).
    Idle,
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Handshake => "opening handshake",
            Self::Close => "close handshake",
            Self::Keepalive => "keepalive ping",
            Self::Idle => "idle connection",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_mapping_is_in_one_place() {
        let cases: &[(Error, Option<u16>, Option<u16>)] = &[
            (
                ProtocolViolation::ReservedOpcode(3).into(),
                Some(1002),
                None,
            ),
            (ProtocolViolation::InvalidUtf8.into(), Some(1007), None),
            (
                ProtocolViolation::InvalidCloseReason.into(),
                Some(1007),
                None,
            ),
            (
                CapacityError::FrameTooLarge { size: 9, max: 1 }.into(),
                Some(1009),
                None,
            ),
            (
                CapacityError::TooManyFragments { max: 1 }.into(),
                Some(1008),
                None,
            ),
            (CapacityError::WriteBufferFull.into(), None, None),
            (Error::Timeout(TimeoutKind::Keepalive), Some(1011), None),
            (HandshakeError::MethodNotAllowed.into(), None, Some(405)),
            (HandshakeError::NotUpgrade.into(), None, Some(426)),
            (HandshakeError::InvalidKey.into(), None, Some(400)),
            (HandshakeError::HeadTooLarge.into(), None, Some(431)),
            (HandshakeError::TooManyHeaders.into(), None, Some(431)),
            (HandshakeError::InvalidAccept.into(), None, None),
        ];
        for (err, close, status) in cases {
            assert_eq!(err.close_code().map(u16::from), *close, "{err}");
            assert_eq!(err.http_status().map(|s| s.as_u16()), *status, "{err}");
        }
    }
}
