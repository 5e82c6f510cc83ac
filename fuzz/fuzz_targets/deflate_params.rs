//! permessage-deflate negotiation: arbitrary `Sec-WebSocket-Extensions`
//! values as offers (server side) and as responses (client side).
//! Oracles: no panic; an accepted offer yields a response that a client
//! offering the same parameters accepts with the same agreement; window bits
//! always within 9–15 for what we compress.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockeye_deflate::DeflateConfig;
use sockeye_proto::extension::ExtensionItem;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(items) = ExtensionItem::parse_list(text) else {
        return;
    };
    let server = DeflateConfig::new();
    if let Some((response, agreement)) = server.negotiate(&items) {
        assert!((9..=15).contains(&agreement.server_max_window_bits));
        assert!((8..=15).contains(&agreement.client_max_window_bits));
        let reparsed = ExtensionItem::parse_list(&response.to_string()).expect("renders valid");
        assert_eq!(reparsed.len(), 1);
    }
    // Every parsed item as a server's response to our default offer.
    let client = DeflateConfig::new();
    for item in &items {
        if let Ok(agreement) = client.accept_response(item) {
            assert!((9..=15).contains(&agreement.client_max_window_bits));
        }
    }
    // Our own offer, answered by our own server: both sides agree.
    let (response, agreement) = server.negotiate(&[client.offer()]).expect("own offer");
    assert_eq!(client.accept_response(&response), Ok(agreement));
});
