//! Client handshake: verifying a response head only succeeds for a 101 that
//! selects no subprotocol or the one offered ("chat").
#![no_main]

use std::sync::OnceLock;

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use sockeye_proto::Config;
use sockeye_proto::handshake::accept_key;
use sockeye_proto::handshake::client::{ClientHandshake, ClientRequest};
use sockeye_proto::handshake::http1::{find_head_end, parse_response};

/// The handshake, and the accept value that matches its random key.
static CLIENT: OnceLock<(ClientHandshake, HeaderValue)> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let (handshake, accept) = CLIENT.get_or_init(|| {
        let (req, hs) = ClientRequest::new("ws://h/")
            .protocol("chat")
            .build()
            .unwrap();
        let key = req.headers()["sec-websocket-key"].as_bytes();
        (hs, HeaderValue::try_from(accept_key(key)).unwrap())
    });
    let Ok(Some((mut parts, n))) = parse_response(data, &Config::default()) else {
        return;
    };
    assert_eq!(find_head_end(data, 0), Some(n));
    // The key is random: an accept of "*" stands for the right one, so the
    // checks after the accept are reachable.
    if let Some(v) = parts.headers.get_mut("sec-websocket-accept")
        && v == "*"
    {
        *v = accept.clone();
    }
    if let Ok(negotiated) = handshake.verify(&parts) {
        assert_eq!(parts.status, 101);
        assert!(matches!(
            negotiated.protocol.as_deref(),
            None | Some("chat")
        ));
        assert!(negotiated.extensions.is_empty(), "no extension was offered");
    }
});
