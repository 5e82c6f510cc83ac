//! The pub/sub wire protocol from untrusted clients: the command parser on
//! arbitrary text, then a real hub session over an in-memory duplex that
//! receives the input as frames (text lines, binary, invalid UTF-8 split
//! points) from two clients sharing topics.
//!
//! Invariants: no panic; every parsed `publish` keeps its data as valid
//! JSON; every line the hub sends is one valid JSON object with either an
//! `id` (a reply: `ok` or `error` with a known code) or a `topic`; replies
//! come back in command order; the hub completes the close handshake and
//! ends every session it served.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use libfuzzer_sys::fuzz_target;
use sockeye_proto::{Config, Message, Role, WebSocket};
use sockeye_pubsub::protocol::{Command, parse_command, split_commands};
use sockeye_pubsub::{Hub, Namespace, RateLimit, SlowConsumer};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

const CODES: [&str; 6] = [
    "forbidden",
    "bad_request",
    "unknown_topic",
    "limit_exceeded",
    "rate_limited",
    "unavailable",
];

fn check_line(line: &str, expected_ids: &mut Vec<u64>) {
    let v: serde_json::Value = serde_json::from_str(line).expect("hub sent invalid JSON");
    let obj = v.as_object().expect("hub sent a non-object");
    if let Some(id) = obj.get("id") {
        if let Some(err) = obj.get("error") {
            let code = err["code"].as_str().expect("error without code");
            assert!(CODES.contains(&code), "unknown code {code}");
            assert!(err["message"].is_string());
        } else {
            assert!(obj.contains_key("ok"), "reply without ok or error: {line}");
        }
        if let Some(id) = id.as_u64() {
            // Replies to readable commands come in order.
            let pos = expected_ids.iter().position(|e| *e == id).expect("reply to an unknown id");
            assert_eq!(pos, 0, "reply out of order: {line}");
            expected_ids.remove(0);
        }
    } else {
        assert!(obj.get("topic").is_some_and(|t| t.is_string()), "push without topic: {line}");
    }
}

fuzz_target!(|data: &[u8]| {
    // 1. The parser alone.
    let text = String::from_utf8_lossy(data);
    let mut ids = Vec::new();
    for line in split_commands(&text) {
        match parse_command(line) {
            Ok(cmd) => {
                ids.push(cmd.id());
                if let Command::Publish { data, .. } = &cmd {
                    serde_json::from_str::<serde_json::Value>(data.get()).expect("raw data must be JSON");
                }
            }
            Err(bad) => assert!(!bad.message.is_empty()),
        }
    }
    if data.len() > 4096 {
        return;
    }

    // 2. A hub session fed the same bytes.
    runtime().block_on(async {
        let hub = Hub::builder()
            .namespace("a", Namespace::new().client_publish(true).history(4, Duration::from_secs(60)).presence(true))
            .namespace("b", Namespace::new().client_publish(true).slow_consumer(SlowConsumer::DropOldest).max_subscribers(1))
            .queue_limits(8, 4096)
            .rate_limit(RateLimit::new(1000.0, 64))
            .max_strikes(8)
            .linger(Duration::ZERO)
            .build();
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        let server = WebSocket::from_raw_socket(server_io, Role::Server, Config::default());
        let session = tokio::spawn({
            let hub = hub.clone();
            async move { hub.serve(server, None).await }
        });
        let mut client = WebSocket::from_raw_socket(client_io, Role::Client, Config::default());
        // The input as frames: split at 0xFF bytes; a frame that is not
        // UTF-8 goes as binary.
        let mut expected = Vec::new();
        for chunk in data.split(|b| *b == 0xFF) {
            let message = match std::str::from_utf8(chunk) {
                Ok(s) => {
                    for line in split_commands(s) {
                        // A reply carries the id of every command whose id
                        // could be read, parsed or not.
                        match parse_command(line) {
                            Ok(cmd) => expected.push(cmd.id()),
                            Err(bad) => expected.extend(bad.id),
                        }
                    }
                    Message::text(s.to_owned())
                }
                Err(_) => Message::binary(chunk.to_vec()),
            };
            if client.feed(message).await.is_err() {
                break;
            }
        }
        // Server-side publishing meanwhile, then the client closes: the
        // hub answers what it read before the close and ends the session.
        let _ = hub.publish("a:x", &serde_json::json!({"k": 1})).await;
        let _ = client.feed(Message::close(sockeye_proto::CloseCode::NORMAL, "")).await;
        let _ = client.flush().await;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), client.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    for line in t.as_str().split('\n') {
                        check_line(line, &mut expected);
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) => break,
                Err(_) => panic!("the hub did not finish the close handshake"),
            }
        }
        drop(client);
        tokio::time::timeout(Duration::from_secs(5), session)
            .await
            .expect("the hub did not end the session")
            .expect("the session panicked");
    });
});
