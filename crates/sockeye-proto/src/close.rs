//! Close codes and the close frame payload (RFC 6455 §5.5.1, §7.4).

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ProtocolViolation;
use crate::utf8::{self, Utf8Bytes};

/// The longest close reason: a control payload is at most 125 bytes, two of
/// which are the code.
pub const MAX_REASON_LEN: usize = 123;

/// A close status code (RFC 6455 §7.4).
///
/// An open code space, so a newtype with associated constants rather than an
/// enum. [`TryFrom<u16>`] accepts only the codes that may appear on the wire;
/// the constants also name the codes that never do (1005, 1006, 1015), which
/// applications use to report how a connection ended.
///
/// ```
/// use sockeye_proto::CloseCode;
/// assert_eq!(u16::from(CloseCode::PROTOCOL_ERROR), 1002);
/// assert!(CloseCode::try_from(4000).is_ok());   // private use
/// assert!(CloseCode::try_from(1005).is_err());  // never sent
/// assert!(CloseCode::try_from(999).is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: normal closure; the purpose of the connection is fulfilled.
    pub const NORMAL: Self = Self(1000);
    /// 1001: going away (server shutting down, browser leaving the page).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: unsupported data type (e.g. binary to a text-only endpoint).
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1005: no status code was present (never on the wire).
    pub const NO_STATUS_RECEIVED: Self = Self(1005);
    /// 1006: closed abnormally, without a close frame (never on the wire).
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: invalid payload data (e.g. non-UTF-8 text).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: policy violation.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: message too big to process.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: internal server error.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: service restart.
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later.
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014: bad gateway.
    pub const BAD_GATEWAY: Self = Self(1014);
    /// 1015: TLS handshake failure (never on the wire).
    pub const TLS_HANDSHAKE: Self = Self(1015);

    /// Any code, including those that may not be sent. Use
    /// [`TryFrom<u16>`](#impl-TryFrom%3Cu16%3E-for-CloseCode) for wire values.
    pub const fn from_u16_unchecked(code: u16) -> Self {
        Self(code)
    }

    /// The numeric code.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// Whether the code may appear in a close frame: 1000–1003, 1007–1014,
    /// and the registered (3000–3999) and private (4000–4999) ranges.
    pub const fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// 3000–3999: registered with IANA by libraries and frameworks.
    pub const fn is_registered(self) -> bool {
        matches!(self.0, 3000..=3999)
    }

    /// 4000–4999: private use by applications.
    pub const fn is_private(self) -> bool {
        matches!(self.0, 4000..=4999)
    }

    /// The name of a code defined by RFC 6455 or the IANA registry.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1000 => "normal closure",
            1001 => "going away",
            1002 => "protocol error",
            1003 => "unsupported data",
            1005 => "no status received",
            1006 => "abnormal closure",
            1007 => "invalid payload data",
            1008 => "policy violation",
            1009 => "message too big",
            1010 => "mandatory extension",
            1011 => "internal error",
            1012 => "service restart",
            1013 => "try again later",
            1014 => "bad gateway",
            1015 => "TLS handshake failure",
            _ => return None,
        })
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "CloseCode({} {name})", self.0),
            None => write!(f, "CloseCode({})", self.0),
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{} ({name})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
    }
}

impl TryFrom<u16> for CloseCode {
    type Error = ProtocolViolation;

    /// Accepts only codes allowed on the wire ([`CloseCode::is_sendable`]).
    fn try_from(code: u16) -> Result<Self, ProtocolViolation> {
        let code = Self(code);
        if code.is_sendable() {
            Ok(code)
        } else {
            Err(ProtocolViolation::InvalidCloseCode(code.0))
        }
    }
}

// ===== impl CloseFrame =====

/// The payload of a close frame: a code and a UTF-8 reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason, at most [`MAX_REASON_LEN`] bytes on the wire.
    pub reason: Utf8Bytes,
}

impl CloseFrame {
    /// A close frame; a reason longer than [`MAX_REASON_LEN`] bytes is cut at
    /// the last character boundary that fits.
    pub fn new(code: CloseCode, reason: impl Into<Utf8Bytes>) -> Self {
        let reason = reason.into();
        let reason = if reason.len() > MAX_REASON_LEN {
            let s = reason.as_str();
            let mut end = MAX_REASON_LEN;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            Utf8Bytes::from(&s[..end])
        } else {
            reason
        };
        Self { code, reason }
    }

    /// Parses a received close payload. Empty means no status (`None`);
    /// one byte, a code not allowed on the wire, or a reason that is not
    /// UTF-8 are protocol errors.
    ///
    /// ```
    /// use sockeye_proto::{CloseCode, CloseFrame};
    /// let f = CloseFrame::parse(b"\x03\xe8bye").unwrap().unwrap();
    /// assert_eq!(f.code, CloseCode::NORMAL);
    /// assert_eq!(f.reason, "bye");
    /// assert!(CloseFrame::parse(b"\x03").is_err());
    /// ```
    pub fn parse(payload: &[u8]) -> Result<Option<Self>, ProtocolViolation> {
        match payload {
            [] => Ok(None),
            [_] => Err(ProtocolViolation::InvalidClosePayload),
            [hi, lo, reason @ ..] => {
                let code = CloseCode::try_from(u16::from_be_bytes([*hi, *lo]))?;
                utf8::validate(reason).map_err(|_| ProtocolViolation::InvalidCloseReason)?;
                let reason = Utf8Bytes::from_validated(Bytes::copy_from_slice(reason));
                Ok(Some(Self { code, reason }))
            }
        }
    }

    /// Appends the payload (code, then reason) to `dst`.
    pub fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u16(self.code.0);
        dst.put_slice(self.reason.as_bytes());
    }

    /// The encoded payload.
    pub fn to_payload(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(2 + self.reason.len());
        self.encode(&mut b);
        b.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_validity_matches_rfc_table() {
        // Autobahn 7.7 (valid) and 7.9 (invalid).
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(CloseCode::try_from(ok).is_ok(), "{ok}");
        }
        for bad in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert_eq!(
                CloseCode::try_from(bad),
                Err(ProtocolViolation::InvalidCloseCode(bad))
            );
        }
    }

    #[test]
    fn parse_rules() {
        assert_eq!(CloseFrame::parse(&[]), Ok(None));
        assert_eq!(
            CloseFrame::parse(&[3]),
            Err(ProtocolViolation::InvalidClosePayload)
        );
        assert_eq!(
            CloseFrame::parse(&[0x03, 0xe8, 0xff]),
            Err(ProtocolViolation::InvalidCloseReason)
        );
        assert_eq!(
            CloseFrame::parse(&[0x03, 0xed]),
            Err(ProtocolViolation::InvalidCloseCode(1005))
        );
        let f = CloseFrame::parse(&[0x0f, 0xa0]).unwrap().unwrap();
        assert_eq!(f.code.as_u16(), 4000);
        assert!(f.reason.is_empty());
    }

    #[test]
    fn encode_roundtrip_and_truncation() {
        let f = CloseFrame::new(CloseCode::GOING_AWAY, "bye");
        assert_eq!(CloseFrame::parse(&f.to_payload()), Ok(Some(f)));
        let long = "é".repeat(100); // 200 bytes
        let f = CloseFrame::new(CloseCode::NORMAL, long.as_str());
        assert!(f.reason.len() <= MAX_REASON_LEN);
        assert_eq!(f.reason.len(), 122);
        assert!(CloseFrame::parse(&f.to_payload()).is_ok());
    }

    #[test]
    fn names_and_ranges() {
        assert_eq!(
            CloseCode::MESSAGE_TOO_BIG.to_string(),
            "1009 (message too big)"
        );
        assert!(CloseCode::from_u16_unchecked(3500).is_registered());
        assert!(CloseCode::from_u16_unchecked(4500).is_private());
        assert!(!CloseCode::ABNORMAL.is_sendable());
    }
}
