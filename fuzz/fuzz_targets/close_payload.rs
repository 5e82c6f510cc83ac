//! Close payloads: only sendable codes and UTF-8 reasons parse, and what
//! parses encodes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockeye_proto::CloseFrame;

fuzz_target!(|data: &[u8]| match CloseFrame::parse(data) {
    Ok(Some(f)) => {
        assert!(f.code.is_sendable(), "{:?}", f.code);
        assert!(std::str::from_utf8(&data[2..]).is_ok());
        if data.len() <= 125 {
            assert_eq!(f.to_payload(), data);
        }
        assert_eq!(CloseFrame::parse(&f.to_payload()), Ok(Some(f)));
    }
    Ok(None) => assert!(data.is_empty()),
    Err(_) => assert!(!data.is_empty()),
});
