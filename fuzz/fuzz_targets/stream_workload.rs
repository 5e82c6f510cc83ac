//! A structured workload against a real `WebSocket` over an in-memory
//! duplex stream: the peer's messages arrive in arbitrary pieces, futures
//! are dropped mid-poll (`next`, `feed`, `flush`), the server sends and
//! closes, raw garbage may be injected.
//!
//! Invariants: no panic; before any garbage, error or close, every message
//! the peer sent is delivered exactly once and in order, and every message
//! the server queued reaches the peer intact and in order.
#![no_main]

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use sockeye_proto::{CloseCode, Config, Connection, Message, Role, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

#[derive(Arbitrary, Debug)]
enum Op {
    /// The peer queues a message, split into `fragments + 1` frames.
    PeerSend { text: bool, len: u16, fragments: u8 },
    /// The peer queues raw bytes (may break the protocol).
    PeerRaw(Vec<u8>),
    /// Up to `n` queued peer bytes go into the stream.
    Deliver(u16),
    /// Polls `next()` up to `polls` times, then drops it if still pending.
    Read { polls: u8 },
    /// The server feeds a message (dropped if not ready after a few polls).
    ServerSend { text: bool, len: u16 },
    /// Polls `flush()` a few times.
    Flush,
    /// The server starts closing.
    Close,
    /// The peer reads and decodes what the server wrote.
    PeerDrain,
}

fn payload(len: u16, text: bool, salt: usize) -> Message {
    let len = usize::from(len) % 20_000;
    if text {
        Message::text(
            (0..len)
                .map(|i| char::from(b'a' + ((i + salt) % 26) as u8))
                .collect::<String>(),
        )
    } else {
        Message::binary((0..len).map(|i| (i * 31 + salt) as u8).collect::<Vec<u8>>())
    }
}

/// Masked client frames for `message`, encoded here (not by sockeye).
fn frames(message: &Message, pieces: usize) -> Vec<u8> {
    let (opcode, data) = match message {
        Message::Text(t) => (1u8, t.as_bytes().to_vec()),
        Message::Binary(b) => (2u8, b.to_vec()),
        _ => unreachable!(),
    };
    let pieces = pieces.max(1);
    let step = data.len().div_ceil(pieces).max(1);
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![&[][..]]
    } else {
        data.chunks(step).collect()
    };
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let fin = if i + 1 == chunks.len() { 0x80 } else { 0 };
        out.push(fin | if i == 0 { opcode } else { 0 });
        match chunk.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        let key = [7u8, 1, 9, 3];
        out.extend_from_slice(&key);
        out.extend(chunk.iter().enumerate().map(|(j, b)| b ^ key[j % 4]));
    }
    out
}

/// Polls `fut` at most `polls` times with a no-op waker.
fn poll_some<F: Future>(fut: F, polls: usize) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..polls.max(1) {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return Some(v);
        }
    }
    None
}

struct Peer {
    io: DuplexStream,
    outgoing: VecDeque<u8>,
    decoder: Connection,
    inbox: BytesMut,
}

impl Peer {
    fn deliver(&mut self, n: usize) {
        let mut cx = Context::from_waker(Waker::noop());
        let take = n.min(self.outgoing.len());
        let bytes: Vec<u8> = self.outgoing.iter().take(take).copied().collect();
        if let Poll::Ready(Ok(written)) =
            std::pin::Pin::new(&mut self.io).poll_write(&mut cx, &bytes)
        {
            self.outgoing.drain(..written);
        }
    }

    /// Decodes what the server wrote so far.
    fn drain(&mut self) -> Vec<Message> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut buf = [0u8; 8192];
        loop {
            let mut rb = ReadBuf::new(&mut buf);
            match std::pin::Pin::new(&mut self.io).poll_read(&mut cx, &mut rb) {
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                    self.inbox.extend_from_slice(rb.filled())
                }
                _ => break,
            }
        }
        let mut got = Vec::new();
        loop {
            let before = self.inbox.len();
            if self.decoder.handle_read(&mut self.inbox).is_err() {
                break;
            }
            let mut progressed = before != self.inbox.len();
            while let Some(m) = self.decoder.poll_event() {
                got.push(m);
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        got
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (server_io, peer_io) = tokio::io::duplex(16 << 10);
        let config = Config::builder()
            .max_message_size(64 << 10)
            .max_frame_size(32 << 10)
            .write_high_water_mark(8 << 10)
            .build();
        let mut server = WebSocket::from_raw_socket(server_io, Role::Server, config);
        let mut peer = Peer {
            io: peer_io,
            outgoing: VecDeque::new(),
            decoder: Connection::new(Role::Client, Config::default()),
            inbox: BytesMut::new(),
        };
        let mut to_server: VecDeque<Message> = VecDeque::new();
        let mut to_peer: VecDeque<Message> = VecDeque::new();
        // After garbage, an error or a close, order is no longer promised.
        let mut tainted = false;
        for (i, op) in ops.into_iter().take(64).enumerate() {
            match op {
                Op::PeerSend {
                    text,
                    len,
                    fragments,
                } => {
                    let m = payload(len, text, i);
                    peer.outgoing
                        .extend(frames(&m, usize::from(fragments % 8) + 1));
                    to_server.push_back(m);
                }
                Op::PeerRaw(bytes) => {
                    tainted = true;
                    peer.outgoing.extend(bytes.into_iter().take(256));
                }
                Op::Deliver(n) => peer.deliver(usize::from(n)),
                Op::Read { polls } => match poll_some(server.next(), usize::from(polls % 16)) {
                    Some(Some(Ok(m @ (Message::Text(_) | Message::Binary(_))))) => {
                        if !tainted {
                            let expected = to_server.pop_front();
                            assert_eq!(
                                Some(&m),
                                expected.as_ref(),
                                "lost, duplicated or reordered"
                            );
                        }
                    }
                    Some(Some(Ok(_))) => {}
                    Some(Some(Err(_))) | Some(None) => tainted = true,
                    None => {}
                },
                Op::ServerSend { text, len } => {
                    let m = payload(len, text, i + 1000);
                    if let Some(Ok(())) = poll_some(server.feed(m.clone()), 4) {
                        to_peer.push_back(m);
                    }
                }
                Op::Flush => {
                    let _ = poll_some(server.flush(), 4);
                }
                Op::Close => {
                    tainted = true;
                    let _ = poll_some(server.close(CloseCode::NORMAL, ""), 4);
                }
                Op::PeerDrain => {
                    for m in peer.drain() {
                        if let Message::Text(_) | Message::Binary(_) = m {
                            let expected = to_peer.pop_front();
                            assert_eq!(
                                Some(&m),
                                expected.as_ref(),
                                "server message lost or reordered"
                            );
                        }
                    }
                }
            }
        }
    });
});
