//! Messages, and prepared messages that are framed once and sent many times.

use bytes::{Bytes, BytesMut};

use crate::close::{CloseCode, CloseFrame};
use crate::error::{CapacityError, Error};
use crate::frame::{FrameHeader, MAX_CONTROL_PAYLOAD, OpCode, Rsv};
use crate::utf8::Utf8Bytes;

/// A WebSocket message: what the application sends and receives.
///
/// Data messages (text, binary) arrive whole, however the peer fragmented
/// them. Pings are answered automatically and still reported; a `Close` is
/// the peer's close frame (the reply is sent for you).
///
/// ```
/// use sockeye_proto::Message;
/// let m = Message::text("hi");
/// assert!(m.is_text());
/// assert_eq!(m.as_text(), Some("hi"));
/// assert_eq!(Message::binary(vec![1, 2, 3]).len(), 3);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping (at most 125 bytes).
    Ping(Bytes),
    /// A pong (at most 125 bytes).
    Pong(Bytes),
    /// A close frame; `None` when it carried no status code.
    Close(Option<CloseFrame>),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Self::Text(text.into())
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Self::Binary(data.into())
    }

    /// A ping.
    pub fn ping(data: impl Into<Bytes>) -> Self {
        Self::Ping(data.into())
    }

    /// A pong.
    pub fn pong(data: impl Into<Bytes>) -> Self {
        Self::Pong(data.into())
    }

    /// A close message with a code and reason.
    pub fn close(code: CloseCode, reason: impl Into<Utf8Bytes>) -> Self {
        Self::Close(Some(CloseFrame::new(code, reason)))
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text(_))
    }

    /// Whether this is a binary message.
    pub fn is_binary(&self) -> bool {
        matches!(self, Self::Binary(_))
    }

    /// Whether this is a close message.
    pub fn is_close(&self) -> bool {
        matches!(self, Self::Close(_))
    }

    /// The text of a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(t) => Some(t.as_str()),
            _ => None,
        }
    }

    /// The payload length in bytes (for a close, the encoded payload).
    pub fn len(&self) -> usize {
        match self {
            Self::Text(t) => t.len(),
            Self::Binary(b) | Self::Ping(b) | Self::Pong(b) => b.len(),
            Self::Close(None) => 0,
            Self::Close(Some(f)) => 2 + f.reason.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload bytes (for a close, the encoded payload).
    pub fn into_data(self) -> Bytes {
        match self {
            Self::Text(t) => t.into_bytes(),
            Self::Binary(b) | Self::Ping(b) | Self::Pong(b) => b,
            Self::Close(None) => Bytes::new(),
            Self::Close(Some(f)) => f.to_payload(),
        }
    }

    pub(crate) fn opcode(&self) -> OpCode {
        match self {
            Self::Text(_) => OpCode::Text,
            Self::Binary(_) => OpCode::Binary,
            Self::Ping(_) => OpCode::Ping,
            Self::Pong(_) => OpCode::Pong,
            Self::Close(_) => OpCode::Close,
        }
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Self::text(s)
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Self {
        Self::text(s)
    }
}

impl From<Vec<u8>> for Message {
    fn from(b: Vec<u8>) -> Self {
        Self::binary(b)
    }
}

impl From<Bytes> for Message {
    fn from(b: Bytes) -> Self {
        Self::binary(b)
    }
}

// ===== impl PreparedMessage =====

/// A server message framed once, whose bytes any number of connections write
/// as they are (server frames are unmasked, so the bytes are the same for all).
///
/// Cloning is a reference-count increment. A client connection must mask,
/// so it re-frames the payload instead.
///
/// ```
/// use sockeye_proto::{Message, PreparedMessage};
/// let p = PreparedMessage::new(Message::text("tick")).unwrap();
/// assert_eq!(&p.frame()[..], b"\x81\x04tick");
/// assert_eq!(&p.payload()[..], b"tick");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedMessage {
    frame: Bytes,
    header_len: usize,
    opcode: OpCode,
    /// The same message encoded once by an extension, for the connections
    /// whose [`Extension::shared_encoding`](crate::Extension::shared_encoding)
    /// returns this key.
    encoded: Option<(u64, Bytes)>,
}

impl PreparedMessage {
    /// Frames a text, binary, ping or pong message as one unmasked frame.
    /// Close messages cannot be prepared (the close handshake is per
    /// connection); control payloads are limited to 125 bytes.
    pub fn new(message: Message) -> Result<Self, Error> {
        let opcode = message.opcode();
        if opcode == OpCode::Close {
            return Err(Error::InvalidInput("a close message cannot be prepared"));
        }
        let payload = message.into_data();
        if opcode.is_control() && payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(Error::Capacity(CapacityError::ControlFrameTooLong));
        }
        let header = FrameHeader::new(opcode, payload.len() as u64, None);
        let mut frame = BytesMut::with_capacity(header.encoded_len() + payload.len());
        header.encode(&mut frame);
        let header_len = frame.len();
        frame.extend_from_slice(&payload);
        Ok(Self {
            frame: frame.freeze(),
            header_len,
            opcode,
            encoded: None,
        })
    }

    /// Adds the message as encoded by an extension (e.g. compressed once),
    /// framed with `rsv`, for connections whose extension reports `key` as
    /// its shared encoding. Other connections keep sending the plain frame.
    pub fn with_encoding(mut self, key: u64, rsv: Rsv, payload: &[u8]) -> Self {
        let mut header = FrameHeader::new(self.opcode, payload.len() as u64, None);
        header.rsv = rsv;
        let mut frame = BytesMut::with_capacity(header.encoded_len() + payload.len());
        header.encode(&mut frame);
        frame.extend_from_slice(payload);
        self.encoded = Some((key, frame.freeze()));
        self
    }

    /// The encoded frame for `key`, if one was added.
    pub fn encoded_frame(&self, key: u64) -> Option<&Bytes> {
        match &self.encoded {
            Some((k, frame)) if *k == key => Some(frame),
            _ => None,
        }
    }

    /// The complete encoded frame.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    /// The payload (a cheap slice of the frame).
    pub fn payload(&self) -> Bytes {
        self.frame.slice(self.header_len..)
    }

    /// The payload's length.
    #[cfg(feature = "metrics")]
    pub(crate) fn payload_len(&self) -> usize {
        self.frame.len() - self.header_len
    }

    /// The opcode of the frame.
    pub fn opcode(&self) -> OpCode {
        self.opcode
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepared_frames_every_length_form() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let p = PreparedMessage::new(Message::binary(vec![7u8; len])).unwrap();
            let (h, n) = FrameHeader::parse(p.frame()).unwrap().unwrap();
            assert_eq!(h, FrameHeader::new(OpCode::Binary, len as u64, None));
            assert_eq!(p.frame().len(), n + len);
            assert_eq!(p.payload().len(), len);
        }
    }

    #[test]
    fn prepared_rejects_close_and_big_control() {
        assert!(PreparedMessage::new(Message::close(CloseCode::NORMAL, "")).is_err());
        assert!(PreparedMessage::new(Message::ping(vec![0u8; 126])).is_err());
        assert!(PreparedMessage::new(Message::ping(vec![0u8; 125])).is_ok());
    }

    #[test]
    fn lengths_and_data() {
        let c = Message::close(CloseCode::NORMAL, "ab");
        assert_eq!(c.len(), 4);
        assert_eq!(&c.into_data()[..], b"\x03\xe8ab");
        assert!(Message::Close(None).is_empty());
    }
}
