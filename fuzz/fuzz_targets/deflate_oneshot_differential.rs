//! Differential: every message sockeye's encoder compresses without context
//! takeover at level 1 (the one-shot encoder up to 64 KiB) is inflated by
//! zlib (flate2's raw inflate, not sockeye's decoder) back to the input.
//!
//! Input: byte 0 picks the window bits and whether the payload is repeated
//! (long matches); the rest is the message. Oracles: the compressed form,
//! with RFC 7692's 00 00 ff ff tail put back, inflates to exactly the input
//! and ends where the tail says; an uncompressed message is passed through
//! only when compressing would not shrink it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockeye_deflate::{Agreement, DeflateConfig};
use sockeye_proto::frame::OpCode;
use sockeye_proto::{Extension, Role};

fuzz_target!(|data: &[u8]| {
    let [knobs, payload @ ..] = data else {
        return;
    };
    let bits = 9 + knobs % 7;
    let agreement = Agreement {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: bits,
        client_max_window_bits: bits,
    };
    let input = if knobs & 0x80 != 0 {
        payload.repeat(5)
    } else {
        payload.to_vec()
    };
    let config = DeflateConfig::new().level(1).threshold(0);
    let mut encoder = config.extension(Role::Server, agreement);
    let compressed = match encoder.encode(OpCode::Binary, &input.clone().into()) {
        Ok(Some((_, compressed))) => compressed,
        // Sent uncompressed: allowed without context takeover.
        Ok(None) => return,
        Err(e) => panic!("encode failed: {e}"),
    };
    let mut stream = compressed.to_vec();
    stream.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    let mut inflate = flate2::Decompress::new(false);
    // One byte of room beyond the input: more output than that is wrong,
    // and shows as a mismatch or as input left over.
    let mut out = Vec::with_capacity(input.len() + 1);
    if let Err(e) = inflate.decompress_vec(&stream, &mut out, flate2::FlushDecompress::Sync) {
        panic!("zlib refused our output: {e}");
    }
    assert_eq!(out, input, "zlib inflated something else");
    assert_eq!(inflate.total_in() as usize, stream.len(), "trailing bytes");
});
