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
/// The tail's first allocation when no burst was seen yet, and the least
/// it grows by.
const TAIL_MIN: usize = 4096;
/// A burst that copied at most this much into tails is small: the first
/// tail after it is sized to it (a power of two, at least
/// [`TAIL_FIRST_MIN`]) instead of at least [`TAIL_MIN`]. A socket whose
/// writes are one small frame each (a pub/sub subscriber, a small echo)
/// then takes an allocation glibc serves from its per-thread cache (up to
/// 1 KiB) instead of a 4 KiB one from its bins, each time it writes.
const SMALL_BURST: usize = 512;
/// The least first tail after a small burst.
const TAIL_FIRST_MIN: usize = 256;
/// The largest tail allocation (a full tail then joins the queue).
const TAIL_MAX: usize = 64 << 10;

/// Pending output: frozen chunks in order, then the tail being appended to.
#[derive(Debug, Default)]
pub(super) struct OutBuf {
    queue: VecDeque<Bytes>,
    queued: usize,
    tail: BytesMut,
    /// The first tail allocation after a release (0: [`TAIL_MIN`]): what
    /// the last burst copied into tails, so that a burst like it fits its
    /// first tail (at least [`TAIL_MIN`], or [`TAIL_FIRST_MIN`] after a
    /// [small](SMALL_BURST) one). Payloads queued by reference do not
    /// count: a burst of 64 KiB frames needs a tail for their headers only.
    first_tail: u32,
    /// Bytes copied into tails since the last release.
    tail_bytes: u32,
}

impl OutBuf {
    pub(super) fn len(&self) -> usize {
        self.queued + self.tail.len()
    }

    /// The tail, with room for `additional` more bytes.
    ///
    /// A tail without that room is not grown in place, which would copy
    /// everything in it (a burst of 16 KiB of 1 KiB replies was copied 28
    /// KiB over by the doublings from 4 KiB): it joins the queue as a chunk
    /// of its own, written by the same vectored write, and a new tail of
    /// twice its size (up to [`TAIL_MAX`]) takes over. After a release the
    /// first tail is sized for the bursts before (see `first_tail`).
    #[inline]
    fn tail_with_room(&mut self, additional: usize) -> &mut BytesMut {
        self.tail_bytes = self
            .tail_bytes
            .saturating_add(u32::try_from(additional).unwrap_or(u32::MAX));
        if self.tail.capacity() - self.tail.len() < additional {
            self.make_room(additional);
        }
        &mut self.tail
    }

    #[inline(never)]
    fn make_room(&mut self, additional: usize) {
        if self.tail.is_empty() {
            let first = match self.first_tail {
                0 => TAIL_MIN,
                sized => sized as usize,
            };
            self.tail.reserve(additional.max(first));
        } else {
            let next = (2 * self.tail.capacity())
                .clamp(TAIL_MIN, TAIL_MAX)
                .max(additional);
            self.seal_tail();
            // The sealed bytes keep the old allocation: this takes a new one.
            self.tail.reserve(next);
        }
    }

    /// Queues what the tail holds as a chunk of its own, without a copy.
    fn seal_tail(&mut self) {
        let chunk = self.tail.split().freeze();
        self.queued += chunk.len();
        self.queue.push_back(chunk);
    }

    /// Appends `data` to the tail.
    pub(super) fn extend(&mut self, data: &[u8]) {
        self.tail_with_room(data.len()).extend_from_slice(data);
    }

    /// Queues `bytes` after everything pending, copying small ones.
    pub(super) fn push_bytes(&mut self, bytes: Bytes) {
        if bytes.len() < ZERO_COPY_MIN {
            self.extend(&bytes);
            return;
        }
        if !self.tail.is_empty() {
            self.seal_tail();
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
            let used = std::mem::take(&mut self.tail_bytes) as usize;
            if used > 0 {
                let least = if used <= SMALL_BURST {
                    TAIL_FIRST_MIN
                } else {
                    TAIL_MIN
                };
                self.first_tail = used.next_power_of_two().clamp(least, TAIL_MAX) as u32;
            }
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
                self.out.extend(&head[..head_len]);
                self.out.push_bytes(payload.clone());
            }
            None => {
                let tail = self.out.tail_with_room(head_len + payload.len());
                tail.extend_from_slice(&head[..head_len]);
                tail.extend_from_slice(payload);
            }
            Some(key) => {
                let tail = self.out.tail_with_room(head_len + payload.len());
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
        out.extend(b"ab");
        out.push_bytes(Bytes::from(vec![b'x'; ZERO_COPY_MIN]));
        out.extend(b"cd");
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

    /// Bytes once in the output stay where they are until written: a full
    /// tail is queued, not grown (which would move them), and what leaves
    /// is still everything, in order.
    #[test]
    fn a_burst_is_never_moved_and_stays_in_order() {
        let mut out = OutBuf::default();
        let frame = |i: usize| vec![(i % 251) as u8; 1030];
        out.extend(&frame(0));
        let first = collect(&out).len();
        let mut slices = [IoSlice::new(&[]); 1];
        out.chunks_vectored(&mut slices);
        let start = slices[0].as_ptr();
        let mut expected = frame(0);
        for i in 1..100 {
            out.extend(&frame(i));
            expected.extend_from_slice(&frame(i));
        }
        assert_eq!(first, 1030);
        let mut slices = [IoSlice::new(&[]); 64];
        let n = out.chunks_vectored(&mut slices);
        assert_eq!(slices[0].as_ptr(), start, "the first bytes moved");
        // 103 000 bytes in chunks of 4, 8, 16, 32, 64 KiB at most.
        assert!(n <= 6, "{n} chunks");
        let all: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(all, expected);
        assert_eq!(out.len(), expected.len());
        out.advance(5000);
        assert_eq!(collect(&out), expected[5000..]);
        // Written out and released, the next burst like it needs no
        // second tail: its first one is sized from this burst.
        out.advance(out.len());
        out.release_if_empty();
        for i in 0..60 {
            out.extend(&frame(i));
        }
        let mut again = [IoSlice::new(&[]); 64];
        assert_eq!(
            out.chunks_vectored(&mut again),
            1,
            "a second tail was needed"
        );
        // Large payloads queued by reference do not size the next tail:
        // their headers alone (80 bytes) give it the smallest first size.
        let mut big = OutBuf::default();
        for _ in 0..8 {
            big.extend(&[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
            big.push_bytes(Bytes::from(vec![1u8; 64 << 10]));
        }
        big.advance(big.len());
        big.release_if_empty();
        big.extend(b"ab");
        assert_eq!(big.tail.capacity(), TAIL_FIRST_MIN);
        // A frame larger than the next tail gets a tail of its own size.
        out.extend(&[7u8; 100 << 10]);
        assert_eq!(out.len(), 60 * 1030 + (100 << 10));
        assert_eq!(collect(&out).len(), out.len());
    }

    #[test]
    fn a_small_burst_gives_the_next_one_a_small_first_tail() {
        let mut out = OutBuf::default();
        // No burst seen yet: the first tail is the default size.
        out.extend(&[0x81; 70]);
        assert_eq!(out.tail.capacity(), TAIL_MIN);
        out.advance(out.len());
        out.release_if_empty();
        // After a 70-byte burst, a small allocation.
        out.extend(b"x");
        assert_eq!(out.tail.capacity(), TAIL_FIRST_MIN);
        // Past it the tail is sealed and a full-size one follows.
        out.extend(&[0u8; 599]);
        assert_eq!(out.tail.capacity(), TAIL_MIN);
        assert_eq!(collect(&out).len(), 600);
        out.advance(out.len());
        out.release_if_empty();
        // 600 bytes is past a small burst: back to the default size.
        out.extend(b"x");
        assert_eq!(out.tail.capacity(), TAIL_MIN);
    }
}
