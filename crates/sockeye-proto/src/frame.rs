//! Frame headers (RFC 6455 §5.2): parsing and encoding as pure functions over bytes.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```
//!
//! [`FrameHeader::parse`] checks everything that can be judged from the header
//! alone: reserved opcodes, control frames longer than 125 bytes or fragmented,
//! a 64-bit length with its top bit set, and lengths not encoded in the minimal
//! form. Rules that depend on the connection (masking direction, RSV bits owned
//! by a negotiated extension, continuation order, size limits) are enforced by
//! [`Connection`](crate::Connection).

use std::fmt;

use bytes::BufMut;

use crate::error::ProtocolViolation;

/// The largest encoded header: 2 bytes, 8 bytes of extended length, 4 of mask.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload a control frame may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

// ===== impl OpCode =====

/// A frame opcode (RFC 6455 §5.2, §11.8). Reserved opcodes never get this far:
/// they are protocol errors at parse time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continues a fragmented data message.
    Continuation,
    /// 0x1: a text message (UTF-8).
    Text,
    /// 0x2: a binary message.
    Binary,
    /// 0x8: the close frame.
    Close,
    /// 0x9: a ping.
    Ping,
    /// 0xA: a pong.
    Pong,
}

impl OpCode {
    /// The opcode for a 4-bit value, or `None` for the reserved values
    /// 0x3–0x7 and 0xB–0xF.
    pub const fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    /// The 4-bit wire value.
    pub const fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Close, ping and pong are control frames (the high bit of the opcode).
    pub const fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

// ===== impl Rsv =====

/// The three reserved bits of a frame header, kept in their wire position
/// (`0x40`, `0x20`, `0x10` of the first byte). An [`Extension`](crate::Extension)
/// declares which of them it owns; any other set bit is a protocol error.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Rsv(u8);

impl Rsv {
    /// No reserved bit set.
    pub const NONE: Self = Self(0);
    /// RSV1, used by permessage-deflate (RFC 7692).
    pub const RSV1: Self = Self(0x40);
    /// RSV2.
    pub const RSV2: Self = Self(0x20);
    /// RSV3.
    pub const RSV3: Self = Self(0x10);

    /// The bits from the first header byte (other bits are ignored).
    pub const fn from_bits(bits: u8) -> Self {
        Self(bits & 0x70)
    }

    /// The bits in their wire position.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets of bits.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl fmt::Debug for Rsv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rsv(")?;
        let mut first = true;
        for (bit, name) in [
            (Self::RSV1, "RSV1"),
            (Self::RSV2, "RSV2"),
            (Self::RSV3, "RSV3"),
        ] {
            if self.contains(bit) && !bit.is_empty() {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        f.write_str(")")
    }
}

// ===== impl FrameHeader =====

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the last frame of a message.
    pub fin: bool,
    /// The reserved bits.
    pub rsv: Rsv,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, present on every client-to-server frame.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes (at most 2^63 - 1 on the wire).
    pub payload_len: u64,
}

impl FrameHeader {
    /// A header for a single unfragmented frame without reserved bits.
    pub const fn new(opcode: OpCode, payload_len: u64, mask: Option<[u8; 4]>) -> Self {
        Self {
            fin: true,
            rsv: Rsv::NONE,
            opcode,
            mask,
            payload_len,
        }
    }

    /// Parses a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold the whole header,
    /// `Ok(Some((header, consumed)))` otherwise. Errors are the violations that
    /// the header alone shows (see the module docs).
    pub fn parse(buf: &[u8]) -> Result<Option<(Self, usize)>, ProtocolViolation> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        let opcode =
            OpCode::from_u8(b0 & 0x0F).ok_or(ProtocolViolation::ReservedOpcode(b0 & 0x0F))?;
        let fin = b0 & 0x80 != 0;
        let rsv = Rsv::from_bits(b0);
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7F;

        if opcode.is_control() {
            if !fin {
                return Err(ProtocolViolation::FragmentedControlFrame);
            }
            if usize::from(len7) > MAX_CONTROL_PAYLOAD {
                return Err(ProtocolViolation::ControlFrameTooLong);
            }
        }

        let (payload_len, mut pos) = match len7 {
            126 => {
                let Some(ext) = buf.get(2..4) else {
                    return Ok(None);
                };
                let len = u16::from_be_bytes([ext[0], ext[1]]);
                if len < 126 {
                    return Err(ProtocolViolation::NonMinimalLength);
                }
                (u64::from(len), 4)
            }
            127 => {
                let Some(ext) = buf.get(2..10) else {
                    return Ok(None);
                };
                let mut be = [0u8; 8];
                be.copy_from_slice(ext);
                let len = u64::from_be_bytes(be);
                if len >> 63 != 0 {
                    return Err(ProtocolViolation::LengthMsbSet);
                }
                if len <= u64::from(u16::MAX) {
                    return Err(ProtocolViolation::NonMinimalLength);
                }
                (len, 10)
            }
            n => (u64::from(n), 2),
        };

        let mask = if masked {
            let Some(key) = buf.get(pos..pos + 4) else {
                return Ok(None);
            };
            pos += 4;
            Some([key[0], key[1], key[2], key[3]])
        } else {
            None
        };

        Ok(Some((
            Self {
                fin,
                rsv,
                opcode,
                mask,
                payload_len,
            },
            pos,
        )))
    }

    /// The number of bytes [`encode`](Self::encode) writes.
    pub const fn encoded_len(&self) -> usize {
        let len = match self.payload_len {
            0..=125 => 2,
            126..=0xFFFF => 4,
            _ => 10,
        };
        if self.mask.is_some() { len + 4 } else { len }
    }

    /// Encodes the header into a fixed array; returns it and its used length.
    pub fn to_bytes(&self) -> ([u8; MAX_HEADER_LEN], usize) {
        let mut out = [0u8; MAX_HEADER_LEN];
        out[0] = u8::from(self.fin) << 7 | self.rsv.bits() | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut pos = match self.payload_len {
            // The match arms bound the values, so these casts never truncate.
            len @ 0..=125 => {
                out[1] = mask_bit | len as u8;
                2
            }
            len @ 126..=0xFFFF => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                4
            }
            len => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&len.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            out[pos..pos + 4].copy_from_slice(&key);
            pos += 4;
        }
        (out, pos)
    }

    /// Appends the encoded header to `dst`.
    pub fn encode(&self, dst: &mut impl BufMut) {
        let (bytes, len) = self.to_bytes();
        dst.put_slice(&bytes[..len]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(h: FrameHeader) {
        let mut buf = Vec::new();
        h.encode(&mut buf);
        assert_eq!(buf.len(), h.encoded_len());
        assert_eq!(FrameHeader::parse(&buf), Ok(Some((h, buf.len()))));
        // Every strict prefix is incomplete, never an error.
        for cut in 0..buf.len() {
            assert_eq!(FrameHeader::parse(&buf[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn every_length_form_roundtrips() {
        for len in [
            0,
            1,
            125,
            126,
            127,
            128,
            65535,
            65536,
            1 << 32,
            (1 << 63) - 1,
        ] {
            for mask in [None, Some([1, 2, 3, 4])] {
                roundtrip(FrameHeader::new(OpCode::Binary, len, mask));
            }
        }
    }

    #[test]
    fn header_bits_roundtrip() {
        roundtrip(FrameHeader {
            fin: false,
            rsv: Rsv::RSV1.union(Rsv::RSV3),
            opcode: OpCode::Text,
            mask: Some([9, 8, 7, 6]),
            payload_len: 300,
        });
    }

    #[test]
    fn known_encodings() {
        // "Hello" unmasked text frame, RFC 6455 §5.7.
        assert_eq!(
            FrameHeader::parse(&[0x81, 0x05]),
            Ok(Some((FrameHeader::new(OpCode::Text, 5, None), 2)))
        );
        // Masked "Hello".
        let (h, n) = FrameHeader::parse(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d])
            .unwrap()
            .unwrap();
        assert_eq!(n, 6);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        // 256 bytes binary: 16-bit length.
        assert_eq!(
            FrameHeader::parse(&[0x82, 0x7E, 0x01, 0x00])
                .unwrap()
                .unwrap()
                .0
                .payload_len,
            256
        );
    }

    #[test]
    fn reserved_opcodes_fail() {
        for op in (0x3..=0x7).chain(0xB..=0xF) {
            assert_eq!(
                FrameHeader::parse(&[0x80 | op, 0]),
                Err(ProtocolViolation::ReservedOpcode(op))
            );
        }
    }

    #[test]
    fn control_frame_rules() {
        assert_eq!(
            FrameHeader::parse(&[0x09, 0x00]),
            Err(ProtocolViolation::FragmentedControlFrame)
        );
        assert_eq!(
            FrameHeader::parse(&[0x89, 126]),
            Err(ProtocolViolation::ControlFrameTooLong)
        );
        assert!(FrameHeader::parse(&[0x89, 125]).unwrap().is_some());
    }

    #[test]
    fn length_msb_and_non_minimal_lengths_fail() {
        let mut b = vec![0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(FrameHeader::parse(&b), Err(ProtocolViolation::LengthMsbSet));
        b[2] = 0;
        b[9] = 10;
        assert_eq!(
            FrameHeader::parse(&b),
            Err(ProtocolViolation::NonMinimalLength)
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 126, 0, 125]),
            Err(ProtocolViolation::NonMinimalLength)
        );
    }

    #[test]
    fn opcode_values() {
        for v in 0..16u8 {
            if let Some(op) = OpCode::from_u8(v) {
                assert_eq!(op.as_u8(), v);
                assert_eq!(op.is_control(), v >= 8);
            }
        }
    }
}
