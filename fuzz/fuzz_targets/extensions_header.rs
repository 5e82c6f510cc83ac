//! `Sec-WebSocket-Extensions`: what parses prints back (Display) to a list
//! that parses to the same items.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockeye_proto::extension::ExtensionItem;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(items) = ExtensionItem::parse_list(s) else {
        return;
    };
    assert!(!items.is_empty());
    let printed: Vec<String> = items.iter().map(ToString::to_string).collect();
    let joined = printed.join(", ");
    let again = ExtensionItem::parse_list(&joined)
        .unwrap_or_else(|e| panic!("{joined:?} does not re-parse: {e}"));
    assert_eq!(items, again, "{joined:?}");
});
