//! Inflation of arbitrary compressed streams through a server connection
//! that negotiated permessage-deflate, and a compress/inflate round trip.
//!
//! Input: byte 0 picks window bits, context takeover and whether the round
//! trip's input is repeated (so it has long matches); byte 1 the number of
//! frames; the rest is payload, split into RSV1 (first) and continuation
//! frames. Oracles: no panic; a delivered message never exceeds the limit;
//! the round trip returns the input, whether zlib or the one-shot encoder
//! (no context takeover) compressed it; a message is left uncompressed
//! only without context takeover.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sockeye_deflate::{Agreement, DeflateConfig};
use sockeye_proto::frame::OpCode;
use sockeye_proto::{Config, Connection, Extension, Message, Role};

const LIMIT: usize = 64 << 10;

fuzz_target!(|data: &[u8]| {
    let [knobs, frames, payload @ ..] = data else {
        return;
    };
    let bits = 9 + knobs % 7;
    let takeover = knobs & 0x80 == 0;
    let agreement = Agreement {
        server_no_context_takeover: !takeover,
        client_no_context_takeover: !takeover,
        server_max_window_bits: bits,
        client_max_window_bits: bits,
    };
    let config = DeflateConfig::new().threshold(0);
    let mut server = Connection::new(
        Role::Server,
        Config::builder().max_message_size(LIMIT).build(),
    );
    server.set_extension(Box::new(config.extension(Role::Server, agreement)));

    // Arbitrary compressed data in 1..=8 frames, masked with a zero key.
    let count = usize::from(frames % 8) + 1;
    let step = payload.len().div_ceil(count).max(1);
    let mut wire = BytesMut::new();
    let chunks: Vec<&[u8]> = payload.chunks(step).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let first = if i == 0 { 0x40 | 0x01 } else { 0x00 };
        let fin = if i + 1 == chunks.len() { 0x80 } else { 0 };
        wire.extend_from_slice(&[fin | first]);
        if chunk.len() < 126 {
            wire.extend_from_slice(&[0x80 | chunk.len() as u8]);
        } else {
            wire.extend_from_slice(&[0x80 | 126]);
            wire.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        }
        wire.extend_from_slice(&[0, 0, 0, 0]);
        wire.extend_from_slice(chunk);
    }
    loop {
        let before = wire.len();
        if server.handle_read(&mut wire).is_err() {
            break;
        }
        let mut progressed = before != wire.len();
        while let Some(m) = server.poll_event() {
            assert!(m.len() <= LIMIT, "a message passed the limit");
            if let Message::Text(t) = &m {
                assert!(std::str::from_utf8(t.as_bytes()).is_ok());
            }
            progressed = true;
        }
        if !progressed || wire.is_empty() {
            break;
        }
    }

    // Round trip: whatever we compress, the peer's decoder restores.
    let mut sender = config.extension(Role::Server, agreement);
    let mut receiver = config.extension(Role::Client, agreement);
    let input = if knobs & 0x40 != 0 {
        payload.repeat(3)
    } else {
        payload.to_vec()
    };
    for _ in 0..2 {
        let bytes = bytes::Bytes::copy_from_slice(&input);
        let encoded = sender.encode(OpCode::Binary, &bytes).expect("compresses");
        let mut out = Vec::new();
        match encoded {
            Some((_, compressed)) => {
                assert!(takeover || compressed.len() < input.len(), "no gain");
                receiver
                    .decode(&compressed, true, &mut out, usize::MAX)
                    .expect("inflates");
                assert_eq!(out, input);
            }
            // Sent as it is: empty, or not smaller compressed (which only
            // a sender without context takeover may skip).
            None => assert!(input.is_empty() || !takeover),
        }
    }
});
