//! A proxy's answer to CONNECT: arbitrary bytes. Oracles: no panic; a
//! tunnel opens only on a complete 2xx head with nothing after it; more
//! input never turns a decision around (a prefix decides the same or asks
//! for more).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockeye_hyper::Config;
use sockeye_hyper::client::{ConnectResponse, Proxy};

fuzz_target!(|data: &[u8]| {
    let limits = Config::builder().max_header_bytes(4096).build();
    let verdict = Proxy::parse_connect_response(data, &limits);
    if let Ok(Some(())) = verdict {
        // The status line's code (after leading empty lines) is 2xx.
        let status_line = data
            .split(|&b| b == b'\n')
            .find(|l| !l.is_empty() && *l != b"\r")
            .unwrap_or_default();
        let code = status_line.split(|&b| b == b' ').nth(1).unwrap_or_default();
        assert!(
            code.first() == Some(&b'2'),
            "a tunnel without a 2xx: {status_line:?}"
        );
        assert!(data.ends_with(b"\n\n") || data.ends_with(b"\n\r\n"));
    }
    if let Err(ConnectResponse::Refused(status)) = &verdict {
        assert!(!status.is_success());
    }
    // A shorter input never opens the tunnel where the whole did not.
    for cut in [data.len() / 2, data.len().saturating_sub(1)] {
        if let Ok(Some(())) = Proxy::parse_connect_response(&data[..cut], &limits) {
            assert!(matches!(
                verdict,
                Ok(Some(())) | Err(ConnectResponse::Invalid(_))
            ));
        }
    }
});
