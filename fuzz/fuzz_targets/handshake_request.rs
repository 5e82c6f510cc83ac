//! Server handshake: a request head is parsed, validated, and answered with a
//! 101 or a 4xx rejection that encodes and parses back with its status. The
//! same headers are then checked as an HTTP/2 extended CONNECT (RFC 8441),
//! with the `:protocol` taken from the request target's path: accepted only
//! as `websocket` with version 13, answered by a 200 without the HTTP/1.1
//! connection headers, or refused with a client-error status.
#![no_main]

use http::{Method, Version};
use libfuzzer_sys::fuzz_target;
use sockeye_proto::Config;
use sockeye_proto::handshake::http1::{
    encode_response, find_head_end, parse_request, parse_response,
};
use sockeye_proto::handshake::{accept_key, server};

fuzz_target!(|data: &[u8]| {
    let config = Config::default();
    let (parts, n) = match parse_request(data, &config) {
        Ok(Some(head)) => head,
        Ok(None) => return,
        Err(e) => {
            assert!(
                e.http_status().is_some_and(|s| s.is_client_error()),
                "{e:?}"
            );
            return;
        }
    };
    // Drivers find the end of the head first, then parse exactly that much
    // (this once diverged on empty lines before the request line).
    assert_eq!(find_head_end(data, 0), Some(n));
    assert!(matches!(parse_request(&data[..n], &config), Ok(Some((_, m))) if m == n));
    let resp = match server::validate(&parts) {
        Ok(upgrade) => {
            let resp = upgrade.response(None, None);
            assert_eq!(resp.status(), 101);
            let key = parts.headers["sec-websocket-key"].as_bytes().trim_ascii();
            assert_eq!(
                resp.headers()["sec-websocket-accept"],
                accept_key(key).as_str()
            );
            resp.map(|()| String::new())
        }
        Err(e) => {
            let status = e.http_status().expect("server-side errors have a status");
            assert!(status.is_client_error(), "{e:?} -> {status}");
            let resp = server::rejection(&e);
            assert_eq!(resp.status(), status);
            resp
        }
    };
    let protocol = parts.uri.path().trim_start_matches('/');
    match server::validate_extended_connect(
        &Method::CONNECT,
        Version::HTTP_2,
        &parts.headers,
        Some(protocol),
    ) {
        Ok(upgrade) => {
            assert!(protocol.eq_ignore_ascii_case("websocket"));
            assert_eq!(
                parts.headers["sec-websocket-version"]
                    .as_bytes()
                    .trim_ascii(),
                b"13"
            );
            let resp = upgrade.response(upgrade.protocols().first().map(String::as_str), None);
            assert_eq!(resp.status(), 200);
            for name in ["upgrade", "connection", "sec-websocket-accept"] {
                assert!(!resp.headers().contains_key(name));
            }
        }
        Err(e) => {
            let status = e.http_status().expect("server-side errors have a status");
            assert!(status.is_client_error(), "{e:?} -> {status}");
        }
    }
    let mut wire = Vec::new();
    encode_response(&resp, &mut wire);
    let (back, len) = parse_response(&wire, &config).unwrap().unwrap();
    assert_eq!(
        (back.status, &wire[len..]),
        (resp.status(), resp.body().as_bytes())
    );
});
