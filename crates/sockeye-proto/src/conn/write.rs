//! The write side: messages in, frames out.
//!
//! Small frames are appended to one contiguous tail buffer, so a burst of
//! messages leaves in a single write. A large server payload is queued as its
//! own `Bytes` and written with vectored I/O, header and payload without a
//! copy. Client frames are masked into the tail (masking needs a copy).

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

use super::{Connection, Role};
use crate::close::CloseFrame;
use crate::error::Error;
use crate::frame::{FrameHeader, OpCode, Rsv};
use crate::mask::apply_mask;

/// Payloads at least this large are queued by reference instead of copied.
const ZERO_COPY_MIN: usize = 4096;
/// The tail's first allocation after it was released.
const TAIL_MIN: usize = 4096;

/// Pending output: frozen chunks in order, then the tail being appended to.
#[derive(Debug, Default)]
pub(super) struct OutBuf {
    queue: VecDeque<Bytes>,
    queued: usize,
    tail: BytesMut,
}

impl OutBuf {
    pub(super) fn len(&self) -> usize {
        self.queued + self.tail.len()
    }

    /// The tail, with room for a burst once it was released: one
    /// allocation per burst, not one per doubling.
    fn tail(&mut self) -> &mut BytesMut {
        if self.tail.capacity() == 0 {
            self.tail.reserve(TAIL_MIN);
        }
        &mut self.tail
    }

    /// Queues `bytes` after everything pending, copying small ones.
    pub(super) fn push_bytes(&mut self, bytes: Bytes) {
        if bytes.len() < ZERO_COPY_MIN {
            self.tail().extend_from_slice(&bytes);
            return;
        }
        if !self.tail.is_empty() {
            let head = self.tail.split().freeze();
            self.queued += head.len();
            self.queue.push_back(head);
        }
        self.queued += bytes.len();
        self.queue.push_back(bytes);
    }

    pub(super) fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for chunk in self.queue.iter().map(|b| &b[..]).chain([&self.tail[..]]) {
            if n == dst.len() {
                break;
            }
            if !chunk.is_empty() {
                dst[n] = IoSlice::new(chunk);
                n += 1;
            }
        }
        n
    }

    #[cfg(all(test, feature = "tokio"))]
    pub(super) fn capacity(&self) -> usize {
        self.tail.capacity() + self.queue.capacity() * std::mem::size_of::<Bytes>()
    }

    /// Frees the allocations of an empty buffer (an idle connection holds
    /// none).
    pub(super) fn release_if_empty(&mut self) {
        if self.len() == 0 {
            self.queue = VecDeque::new();
            self.tail = BytesMut::new();
        }
    }

    /// Drops everything pending and its allocations.
    pub(super) fn clear(&mut self) {
        *self = Self::default();
    }

    pub(super) fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.queue.front_mut() else {
                break;
            };
            let step = n.min(front.len());
            front.advance(step);
            self.queued -= step;
            n -= step;
            if front.is_empty() {
                self.queue.pop_front();
            }
        }
        let step = n.min(self.tail.len());
        self.tail.advance(step);
        if self.tail.is_empty() {
            // Keep the allocation for the next burst.
            self.tail.clear();
        }
    }
}

impl Connection {
    /// Frames one data message, through the extension and auto-fragmentation.
    pub(super) fn send_data(&mut self, opcode: OpCode, data: Bytes) -> Result<(), Error> {
        let (rsv, payload) = match self.extension.as_mut() {
            Some(ext) => ext.encode(opcode, &data)?.unwrap_or((Rsv::NONE, data)),
            None => (Rsv::NONE, data),
        };
        self.timers.on_data_sent();
        match self.config.auto_fragment_size() {
            Some(size) if payload.len() > size => {
                let mut rest = payload;
                let mut first = true;
                while !rest.is_empty() {
                    let piece = rest.split_to(size.min(rest.len()));
                    let (op, bits) = if first {
                        (opcode, rsv)
                    } else {
                        (OpCode::Continuation, Rsv::NONE)
                    };
                    first = false;
                    self.write_frame(rest.is_empty(), bits, op, &piece);
                }
            }
            _ => self.write_frame(true, rsv, opcode, &payload),
        }
        Ok(())
    }

    /// Appends one frame to the output.
    pub(super) fn write_frame(&mut self, fin: bool, rsv: Rsv, opcode: OpCode, payload: &Bytes) {
        let mask = match self.role {
            Role::Client => Some(rand::random::<[u8; 4]>()),
            Role::Server => None,
        };
        let header = FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len: payload.len() as u64,
        };
        let (head, head_len) = header.to_bytes();
        match mask {
            None if payload.len() >= ZERO_COPY_MIN => {
                self.out.tail().extend_from_slice(&head[..head_len]);
                self.out.push_bytes(payload.clone());
            }
            None => {
                let tail = self.out.tail();
                tail.reserve(head_len + payload.len());
                tail.extend_from_slice(&head[..head_len]);
                tail.extend_from_slice(payload);
            }
            Some(key) => {
                let tail = self.out.tail();
                tail.reserve(head_len + payload.len());
                tail.extend_from_slice(&head[..head_len]);
                let start = tail.len();
                tail.extend_from_slice(payload);
                apply_mask(&mut tail[start..], key, 0);
            }
        }
    }

    /// Queues our close frame; nothing may follow it.
    pub(super) fn write_close(&mut self, frame: Option<CloseFrame>) {
        self.close.note_code(frame.as_ref().map(|f| f.code));
        let payload = frame.map(|f| f.to_payload()).unwrap_or_default();
        self.write_frame(true, Rsv::NONE, OpCode::Close, &payload);
        self.close.sent = true;
        self.pending_pong = None;
        self.timers.request_close_timer();
    }

    /// Answers a ping. Under the high-water mark the pong is written at once;
    /// above it only the latest one is kept (RFC 6455 §5.5.3), so a ping
    /// flood from a peer that does not read costs O(1) memory.
    pub(super) fn queue_pong(&mut self, data: Bytes) {
        if self.close.sent {
            return;
        }
        if self.out.len() < self.config.write_high_water_mark() {
            self.write_frame(true, Rsv::NONE, OpCode::Pong, &data);
        } else {
            self.pending_pong = Some(data);
        }
    }

    pub(super) fn flush_pending_pong(&mut self) {
        if self.out.len() < self.config.write_high_water_mark()
            && let Some(data) = self.pending_pong.take()
        {
            self.write_frame(true, Rsv::NONE, OpCode::Pong, &data);
        }
    }

    /// Fails the connection (RFC 6455 §7.1.7): queue a close frame with the
    /// error's code, stop interpreting input. Returns the error.
    pub(super) fn fail(&mut self, err: Error) -> Error {
        if !self.close.failed {
            self.close.failed = true;
            self.read.done = true;
            if !self.close.sent {
                let frame = err
                    .close_code()
                    .map(|code| CloseFrame::new(code, err.to_string()));
                self.write_close(frame);
            }
            tracing::debug!(error = %err, "websocket connection failed");
        }
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(out: &OutBuf) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); 8];
        let n = out.chunks_vectored(&mut slices);
        slices[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn outbuf_keeps_order_across_small_and_large() {
        let mut out = OutBuf::default();
        out.tail().extend_from_slice(b"ab");
        out.push_bytes(Bytes::from(vec![b'x'; ZERO_COPY_MIN]));
        out.tail().extend_from_slice(b"cd");
        out.push_bytes(Bytes::from_static(b"ef"));
        let all = collect(&out);
        assert_eq!(all.len(), out.len());
        assert_eq!(&all[..2], b"ab");
        assert_eq!(&all[all.len() - 4..], b"cdef");
        out.advance(3);
        assert_eq!(collect(&out), all[3..]);
        out.advance(out.len());
        assert_eq!(out.len(), 0);
        assert!(collect(&out).is_empty());
    }
}
