//! `FrameHeader::parse` accepts only the minimal encoding, so whatever it
//! accepts must re-encode to exactly the bytes it consumed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockeye_proto::frame::{FrameHeader, MAX_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    match FrameHeader::parse(data) {
        Ok(Some((h, n))) => {
            assert_eq!(n, h.encoded_len());
            let mut out = Vec::new();
            h.encode(&mut out);
            assert_eq!(out, &data[..n]);
            let (bytes, len) = h.to_bytes();
            assert_eq!(&bytes[..len], &data[..n]);
            if h.opcode.is_control() {
                assert!(h.fin && h.payload_len <= 125);
            }
        }
        Ok(None) => assert!(data.len() < MAX_HEADER_LEN),
        Err(_) => {}
    }
});
