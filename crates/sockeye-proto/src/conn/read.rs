//! The read side: frames in, messages out.
//!
//! Frames are parsed straight from the driver's buffer. A complete unmasked
//! single-frame message is split off that buffer and handed out without a
//! copy; fragments are appended to one contiguous buffer per message. Text
//! payloads are unmasked and UTF-8-checked in place as they arrive, so an
//! invalid byte fails the connection before the rest of the frame comes.

use bytes::{Buf, Bytes, BytesMut};

use super::{Connection, Role};
use crate::close::CloseFrame;
use crate::error::{CapacityError, Error, ProtocolViolation};
use crate::frame::{FrameHeader, OpCode, Rsv};
use crate::mask::apply_mask;
use crate::message::Message;
use crate::utf8::{Utf8Bytes, Utf8Validator};

#[derive(Debug, Default)]
pub(super) struct ReadState {
    /// The header of the frame whose payload is still arriving.
    header: Option<FrameHeader>,
    /// Payload bytes of that frame already unmasked (and validated, for text).
    processed: usize,
    /// Bytes the current frame still needs.
    want: usize,
    /// The fragmented (or extension-decoded) message being assembled.
    message: Option<Incoming>,
    /// UTF-8 state of the text message being received.
    utf8: Utf8Validator,
    /// Input is no longer interpreted (close received, or failed).
    pub(super) done: bool,
}

#[derive(Debug)]
struct Incoming {
    opcode: OpCode,
    /// The first frame carried the extension's RSV bits: the payload is
    /// decoded into `decoded`, else reassembled in `buf`.
    encoded: bool,
    buf: BytesMut,
    decoded: Vec<u8>,
    frames: usize,
    /// Payload bytes on the wire so far (before decoding).
    wire_len: u64,
}

impl Connection {
    /// Consumes frames from `buf` until one produces a message for
    /// [`poll_event`](Self::poll_event) (or `buf` holds no complete frame),
    /// queueing the automatic replies (pong, close) for transmission. The
    /// rest stays in `buf`: call again once the events are drained, so that
    /// the application's reactions to a message are queued before anything a
    /// later frame causes (such as a failure's close frame).
    ///
    /// An error means the connection was failed: the close frame carrying
    /// [`Error::close_code`] is queued, nothing is delivered from the bad
    /// frame on, and later input is ignored.
    pub fn handle_read(&mut self, buf: &mut BytesMut) -> Result<(), Error> {
        match self.read_frames(buf) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// How many more bytes the frame being received needs (0 when between
    /// frames). Drivers use it to size their next read.
    pub fn read_hint(&self) -> usize {
        self.read.want
    }

    /// The peer closed the transport. Before the close handshake completed,
    /// that is an [`Error::AbnormalClosure`] (status 1006).
    pub fn handle_eof(&mut self) -> Result<(), Error> {
        self.close.eof = true;
        self.read.want = 0;
        if self.close.received || self.close.failed || self.read.done {
            Ok(())
        } else {
            self.read.done = true;
            Err(Error::AbnormalClosure)
        }
    }

    fn read_frames(&mut self, buf: &mut BytesMut) -> Result<(), Error> {
        loop {
            if self.read.done {
                buf.clear();
                self.read.want = 0;
                return Ok(());
            }
            let header = match self.read.header {
                Some(h) => h,
                None => {
                    let Some((h, n)) = FrameHeader::parse(buf)? else {
                        self.read.want = 0;
                        return Ok(());
                    };
                    self.check_header(&h)?;
                    buf.advance(n);
                    self.timers.on_peer_input();
                    self.read.header = Some(h);
                    self.read.processed = 0;
                    h
                }
            };
            // Checked against max_frame_size (a usize) in check_header.
            let len = header.payload_len as usize;
            if buf.len() < len {
                self.read.want = len - buf.len();
                self.process_partial(&header, buf)?;
                return Ok(());
            }
            self.read.want = 0;
            let payload = buf.split_to(len);
            self.read.header = None;
            self.process_frame(header, payload)?;
            if !self.events.is_empty() {
                return Ok(());
            }
        }
    }

    /// Rules that need the connection's state, checked before any payload
    /// byte is read or any memory is reserved.
    fn check_header(&mut self, h: &FrameHeader) -> Result<(), Error> {
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) if !self.config.accept_unmasked_frames() => {
                return Err(ProtocolViolation::UnmaskedFrame.into());
            }
            (Role::Client, true) => return Err(ProtocolViolation::MaskedFrame.into()),
            _ => {}
        }
        if !h.rsv.is_empty() {
            let owned = match (h.opcode, &self.extension) {
                (OpCode::Text | OpCode::Binary, Some(ext)) => ext.rsv(),
                _ => Rsv::NONE,
            };
            if !owned.contains(h.rsv) {
                return Err(ProtocolViolation::UnexpectedRsv(h.rsv).into());
            }
        }
        let max_frame = self.config.max_frame_size();
        if h.payload_len > max_frame as u64 {
            return Err(CapacityError::FrameTooLarge {
                size: h.payload_len,
                max: max_frame,
            }
            .into());
        }
        let max_message = self.config.max_message_size();
        match h.opcode {
            OpCode::Continuation => {
                let Some(msg) = &self.read.message else {
                    return Err(ProtocolViolation::UnexpectedContinuation.into());
                };
                if msg.frames >= self.config.max_fragments() {
                    return Err(CapacityError::TooManyFragments {
                        max: self.config.max_fragments(),
                    }
                    .into());
                }
                let total = msg.wire_len.saturating_add(h.payload_len);
                if total > max_message as u64 {
                    return Err(CapacityError::MessageTooLarge {
                        size: total,
                        max: max_message,
                    }
                    .into());
                }
            }
            OpCode::Text | OpCode::Binary => {
                if self.read.message.is_some() {
                    return Err(ProtocolViolation::ExpectedContinuation.into());
                }
                self.read.utf8.reset();
            }
            OpCode::Close | OpCode::Ping | OpCode::Pong => {}
        }
        Ok(())
    }

    /// Whether the current frame's raw payload is text to validate as it
    /// arrives (text not transformed by an extension).
    fn is_plain_text(&self, h: &FrameHeader) -> bool {
        match h.opcode {
            OpCode::Text => h.rsv.is_empty(),
            OpCode::Continuation => self
                .read
                .message
                .as_ref()
                .is_some_and(|m| m.opcode == OpCode::Text && !m.encoded),
            _ => false,
        }
    }

    /// Unmasks the part of a payload that has arrived, while the transport
    /// has just put it in cache, and validates it if it is plain text (so
    /// invalid text fails before the rest arrives).
    fn process_partial(&mut self, h: &FrameHeader, buf: &mut BytesMut) -> Result<(), Error> {
        let plain_text = self.is_plain_text(h);
        if h.mask.is_none() && !plain_text {
            return Ok(());
        }
        let start = self.read.processed;
        let end = buf.len();
        if end > start {
            let chunk = &mut buf[start..end];
            if let Some(key) = h.mask {
                apply_mask(chunk, key, start);
            }
            if plain_text {
                self.read
                    .utf8
                    .feed(chunk)
                    .map_err(|_| ProtocolViolation::InvalidUtf8)?;
            }
            self.read.processed = end;
        }
        Ok(())
    }

    fn process_frame(&mut self, h: FrameHeader, mut payload: BytesMut) -> Result<(), Error> {
        let processed = std::mem::take(&mut self.read.processed);
        if let Some(key) = h.mask {
            apply_mask(&mut payload[processed..], key, processed);
        }
        match h.opcode {
            OpCode::Ping => {
                let data = payload.freeze();
                self.queue_pong(data.clone());
                self.events.push_back(Message::Ping(data));
            }
            OpCode::Pong => self.events.push_back(Message::Pong(payload.freeze())),
            OpCode::Close => self.on_close(&payload)?,
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                self.on_data(&h, payload, processed)?;
            }
        }
        Ok(())
    }

    fn on_close(&mut self, payload: &[u8]) -> Result<(), Error> {
        let frame = CloseFrame::parse(payload)?;
        if self.close.first_code.is_none() {
            self.close.peer_first = true;
        }
        self.close.note_code(frame.as_ref().map(|f| f.code));
        self.close.received = true;
        self.read.done = true;
        self.read.message = None;
        if !self.close.sent {
            // Echo the peer's code (RFC 6455 §5.5.1); an empty close gets an
            // empty reply.
            let reply = frame.as_ref().map(|f| CloseFrame {
                code: f.code,
                reason: Utf8Bytes::default(),
            });
            self.write_close(reply);
        }
        self.events.push_back(Message::Close(frame));
        Ok(())
    }

    fn on_data(
        &mut self,
        h: &FrameHeader,
        payload: BytesMut,
        processed: usize,
    ) -> Result<(), Error> {
        let plain_text = self.is_plain_text(h);
        if plain_text {
            self.read
                .utf8
                .feed(&payload[processed..])
                .map_err(|_| ProtocolViolation::InvalidUtf8)?;
        }
        let encoded = match h.opcode {
            OpCode::Continuation => self.read.message.as_ref().is_some_and(|m| m.encoded),
            _ => !h.rsv.is_empty(),
        };

        if !encoded && h.fin && self.read.message.is_none() {
            // A whole message in one frame: hand out the buffer itself.
            let message = if h.opcode == OpCode::Text {
                self.read
                    .utf8
                    .finish()
                    .map_err(|_| ProtocolViolation::InvalidUtf8)?;
                Message::Text(Utf8Bytes::from_validated(payload.freeze()))
            } else {
                Message::Binary(payload.freeze())
            };
            self.timers.on_data_received();
            self.events.push_back(message);
            return Ok(());
        }

        let wire = payload.len() as u64;
        if encoded {
            let limit = self.config.max_message_size();
            let msg = self.read.message.get_or_insert_with(|| Incoming {
                opcode: h.opcode,
                encoded: true,
                buf: BytesMut::new(),
                decoded: Vec::new(),
                frames: 0,
                wire_len: 0,
            });
            msg.frames += 1;
            msg.wire_len += wire;
            let before = msg.decoded.len();
            let ext = self
                .extension
                .as_mut()
                .ok_or(ProtocolViolation::UnexpectedRsv(h.rsv))?;
            ext.decode(&payload, h.fin, &mut msg.decoded, limit)?;
            if msg.decoded.len() > limit {
                return Err(CapacityError::MessageTooLarge {
                    size: msg.decoded.len() as u64,
                    max: limit,
                }
                .into());
            }
            if msg.opcode == OpCode::Text {
                self.read
                    .utf8
                    .feed(&msg.decoded[before..])
                    .map_err(|_| ProtocolViolation::InvalidUtf8)?;
            }
        } else {
            match &mut self.read.message {
                Some(msg) => {
                    msg.buf.extend_from_slice(&payload);
                    msg.frames += 1;
                    msg.wire_len += wire;
                }
                None => {
                    self.read.message = Some(Incoming {
                        opcode: h.opcode,
                        encoded: false,
                        buf: payload,
                        decoded: Vec::new(),
                        frames: 1,
                        wire_len: wire,
                    });
                }
            }
        }

        if h.fin
            && let Some(msg) = self.read.message.take()
        {
            let data: Bytes = if msg.encoded {
                Bytes::from(msg.decoded)
            } else {
                msg.buf.freeze()
            };
            let message = if msg.opcode == OpCode::Text {
                self.read
                    .utf8
                    .finish()
                    .map_err(|_| ProtocolViolation::InvalidUtf8)?;
                Message::Text(Utf8Bytes::from_validated(data))
            } else {
                Message::Binary(data)
            };
            self.timers.on_data_received();
            self.events.push_back(message);
        }
        Ok(())
    }
}
