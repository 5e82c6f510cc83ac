//! The extension end to end through two sans-IO connections, negotiation in
//! both roles, bombs, corrupt data, pools and prepared messages.

use bytes::BytesMut;
use sockeye_proto::extension::ExtensionItem;
use sockeye_proto::{
    CapacityError, CloseCode, Config, Connection, Error, Message, PreparedMessage, Role,
};

use crate::codec::{PerMessageDeflate, compress_message};
use crate::pool::new_compressor;
use crate::{Agreement, DeflateConfig};

fn offers(s: &str) -> Vec<ExtensionItem> {
    ExtensionItem::parse_list(s).unwrap()
}

/// A client and a server connection with the extension agreed by
/// `server_config` for `offer`.
fn pair(
    server_config: &DeflateConfig,
    client_config: &DeflateConfig,
    limit: usize,
) -> (Connection, Connection) {
    let (response, agreement) = server_config.negotiate(&[client_config.offer()]).unwrap();
    let client_agreement = client_config.accept_response(&response).unwrap();
    assert_eq!(client_agreement, agreement, "both sides agree");
    let config = Config::builder().max_message_size(limit).build();
    let mut server = Connection::new(Role::Server, config.clone());
    server.set_extension(Box::new(server_config.extension(Role::Server, agreement)));
    let mut client = Connection::new(Role::Client, config);
    client.set_extension(Box::new(
        client_config.extension(Role::Client, client_agreement),
    ));
    (client, server)
}

/// Moves everything `from` wrote into `to`; returns the messages and any error.
fn transfer(from: &mut Connection, to: &mut Connection) -> (Vec<Message>, Option<Error>) {
    let mut wire = BytesMut::new();
    from.poll_transmit(&mut wire);
    let mut got = Vec::new();
    loop {
        let before = wire.len();
        if let Err(e) = to.handle_read(&mut wire) {
            return (got, Some(e));
        }
        let mut progressed = wire.len() != before;
        while let Some(m) = to.poll_event() {
            got.push(m);
            progressed = true;
        }
        if !progressed || wire.is_empty() {
            return (got, None);
        }
    }
}

fn corpus(len: usize) -> String {
    let words = [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "κόσμε",
        "🦀",
        "{\"id\":42}",
    ];
    let mut s = String::new();
    let mut i = 0usize;
    while s.len() < len {
        s.push_str(words[(i * 7 + i / 3) % words.len()]);
        s.push(' ');
        i += 1;
    }
    s
}

#[test]
fn roundtrip_in_every_agreement() {
    for server_nct in [false, true] {
        for client_nct in [false, true] {
            for bits in [9u8, 12, 15] {
                let server = DeflateConfig::new()
                    .server_no_context_takeover(server_nct)
                    .client_no_context_takeover(client_nct)
                    .server_max_window_bits(bits)
                    .client_max_window_bits(bits)
                    .threshold(0);
                let client = server.clone();
                let (mut c, mut s) = pair(&server, &client, 64 << 20);
                for len in [0usize, 1, 100, 5_000, 70_000] {
                    let text = corpus(len);
                    for _ in 0..2 {
                        c.send(Message::text(text.as_str())).unwrap_or_else(|e| {
                            panic!("{e} len {len} bits {bits} {server_nct} {client_nct}")
                        });
                        s.send(Message::text(text.as_str())).unwrap();
                    }
                    let (got, err) = transfer(&mut c, &mut s);
                    assert!(
                        err.is_none(),
                        "{err:?} server_nct={server_nct} client_nct={client_nct} bits={bits} len={len}"
                    );
                    assert_eq!(got, vec![Message::text(text.as_str()); 2]);
                    let (got, err) = transfer(&mut s, &mut c);
                    assert!(err.is_none(), "{err:?}");
                    assert_eq!(got, vec![Message::text(text.as_str()); 2]);
                }
            }
        }
    }
}

#[test]
fn fragmented_compressed_messages_decode() {
    let config = DeflateConfig::new().threshold(0);
    let (_, agreement) = config.negotiate(&[config.offer()]).unwrap();
    let wire_config = Config::builder().auto_fragment_size(Some(100)).build();
    let mut client = Connection::new(Role::Client, wire_config);
    client.set_extension(Box::new(config.extension(Role::Client, agreement)));
    let mut server = Connection::new(Role::Server, Config::default());
    server.set_extension(Box::new(config.extension(Role::Server, agreement)));
    let text = corpus(10_000);
    client.send(Message::text(text.as_str())).unwrap();
    let (got, err) = transfer(&mut client, &mut server);
    assert!(err.is_none());
    assert_eq!(got, [Message::text(text.as_str())]);
}

#[test]
fn small_messages_go_out_uncompressed() {
    let config = DeflateConfig::new().threshold(256);
    let (mut c, mut s) = pair(&config, &config, 1 << 20);
    s.send(Message::text("short")).unwrap();
    let mut wire = Vec::new();
    s.poll_transmit(&mut wire);
    assert_eq!(wire[0] & 0x40, 0, "RSV1 clear below the threshold");
    s.send(Message::text(corpus(1000))).unwrap();
    let mut wire2 = Vec::new();
    s.poll_transmit(&mut wire2);
    assert_eq!(wire2[0] & 0x40, 0x40, "RSV1 set above it");
    assert!(wire2.len() < 1000, "compressed: {}", wire2.len());
    let _ = transfer(&mut c, &mut s);
}

#[test]
fn a_bomb_stops_at_the_message_limit_with_1009() {
    let limit = 1 << 20;
    let config = DeflateConfig::new().threshold(0).level(9);
    let (mut client, mut server) = pair(&config, &config, limit);
    // 64 MiB of zeros deflate to about 64 KiB at level 9; the client's own
    // limit does not apply to what it sends.
    let zeros = vec![0u8; 64 << 20];
    client.send(Message::binary(zeros)).unwrap();
    let mut wire = BytesMut::new();
    let sent = client.poll_transmit(&mut wire);
    assert!(sent < 200_000, "compressed size {sent}");
    let err = loop {
        match server.handle_read(&mut wire) {
            Err(e) => break e,
            Ok(()) if wire.is_empty() => panic!("the bomb was accepted"),
            Ok(()) => while server.poll_event().is_some() {},
        }
    };
    match err {
        Error::Capacity(CapacityError::MessageTooLarge { size, max }) => {
            assert_eq!(max, limit);
            assert_eq!(size, limit as u64 + 1, "stopped one byte past the limit");
        }
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    assert_eq!(err_code(&mut server), Some(1009));
}

fn err_code(conn: &mut Connection) -> Option<u16> {
    let mut out = Vec::new();
    conn.poll_transmit(&mut out);
    let (h, n) = sockeye_proto::frame::FrameHeader::parse(&out).ok()??;
    (h.opcode == sockeye_proto::frame::OpCode::Close)
        .then(|| u16::from_be_bytes([out[n], out[n + 1]]))
}

#[test]
fn corrupt_data_closes_with_1007() {
    let config = DeflateConfig::new();
    let (_, agreement) = config.negotiate(&[config.offer()]).unwrap();
    let mut server = Connection::new(Role::Server, Config::default());
    server.set_extension(Box::new(config.extension(Role::Server, agreement)));
    // RSV1 text frame with garbage (an invalid block type) as payload.
    let payload = [0xFFu8, 0xFF, 0xFF, 0xFF];
    let key = [1u8, 2, 3, 4];
    let mut frame = vec![0xC1, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    let mut wire = BytesMut::from(&frame[..]);
    let err = server.handle_read(&mut wire).unwrap_err();
    assert_eq!(err.close_code(), Some(CloseCode::INVALID_PAYLOAD));
    assert_eq!(err_code(&mut server), Some(1007));
}

#[test]
fn rsv1_on_control_and_continuation_frames_fails_with_1002() {
    let config = DeflateConfig::new();
    let (_, agreement) = config.negotiate(&[config.offer()]).unwrap();
    let mut server = Connection::new(Role::Server, Config::default());
    server.set_extension(Box::new(config.extension(Role::Server, agreement)));
    let mut wire = BytesMut::from(&[0xC9u8, 0x80, 0, 0, 0, 0][..]); // ping with RSV1
    let err = server.handle_read(&mut wire).unwrap_err();
    assert_eq!(err.close_code(), Some(CloseCode::PROTOCOL_ERROR));
}

#[test]
fn invalid_utf8_inside_compressed_text_fails_with_1007() {
    let config = DeflateConfig::new().threshold(0);
    let (_, agreement) = config.negotiate(&[config.offer()]).unwrap();
    let mut server = Connection::new(Role::Server, Config::default());
    server.set_extension(Box::new(config.extension(Role::Server, agreement)));
    let mut c = new_compressor(1, 15);
    let compressed = compress_message(&mut c, b"ok \xff\xfe not utf-8").unwrap();
    let key = [9u8, 9, 9, 9];
    let mut frame = vec![0xC1, 0x80 | compressed.len() as u8];
    frame.extend_from_slice(&key);
    frame.extend(compressed.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    let err = server
        .handle_read(&mut BytesMut::from(&frame[..]))
        .unwrap_err();
    assert_eq!(err.close_code(), Some(CloseCode::INVALID_PAYLOAD));
}

#[test]
fn a_final_block_from_the_peer_is_accepted() {
    // RFC 7692 §7.2.3.3: a sender may end the DEFLATE stream with BFINAL.
    use flate2::{FlushCompress, Status};
    let mut c = new_compressor(6, 15);
    let mut out = Vec::with_capacity(4096);
    let st = c
        .compress_vec(b"final block message", &mut out, FlushCompress::Finish)
        .unwrap();
    assert_eq!(st, Status::StreamEnd);
    let config = DeflateConfig::new();
    let (_, agreement) = config.negotiate(&[config.offer()]).unwrap();
    let mut server = Connection::new(Role::Server, Config::default());
    server.set_extension(Box::new(config.extension(Role::Server, agreement)));
    for _ in 0..2 {
        let key = [0u8; 4];
        let mut frame = vec![0xC1, 0x80 | out.len() as u8];
        frame.extend_from_slice(&key);
        frame.extend_from_slice(&out);
        let mut wire = BytesMut::from(&frame[..]);
        server.handle_read(&mut wire).unwrap();
        assert_eq!(
            server.poll_event(),
            Some(Message::text("final block message"))
        );
    }
}

#[test]
fn without_context_takeover_states_come_from_the_pool() {
    for level in [1, 6] {
        let config = DeflateConfig::new()
            .level(level)
            .server_no_context_takeover(true)
            .client_no_context_takeover(true)
            .threshold(0);
        let (mut c, mut s) = pair(&config, &config, 1 << 20);
        for _ in 0..5 {
            c.send(Message::text(corpus(2000))).unwrap();
            s.send(Message::text(corpus(2000))).unwrap();
            assert_eq!(
                transfer(&mut c, &mut s).0,
                vec![Message::text(corpus(2000))]
            );
            assert_eq!(
                transfer(&mut s, &mut c).0,
                vec![Message::text(corpus(2000))]
            );
        }
        // Between messages both sides hold nothing: the states are idle in
        // the pool. At level 1 the one-shot encoder needs no zlib state.
        let (compressors, decompressors) = config.pool().idle();
        if level == 1 {
            assert_eq!(compressors, 0, "level 1 compresses without zlib");
        } else {
            assert!(
                (1..=2).contains(&compressors),
                "{compressors}: reused, not leaked"
            );
        }
        assert!(
            (1..=2).contains(&decompressors),
            "{decompressors}: reused, not leaked"
        );
    }
}

#[test]
fn prepared_messages_are_compressed_once_and_decode_on_every_client() {
    let config = DeflateConfig::new().threshold(0);
    let prepared = config.prepare(Message::text(corpus(4000))).unwrap();
    let plain = PreparedMessage::new(Message::text(corpus(4000))).unwrap();
    for _ in 0..3 {
        let (mut client, mut server) = pair(&config, &config, 1 << 20);
        server.send_prepared(&prepared).unwrap();
        let mut wire = Vec::new();
        server.poll_transmit(&mut wire);
        assert_eq!(wire[0] & 0x40, 0x40, "the compressed variant was used");
        assert!(wire.len() < plain.frame().len());
        let mut buf = BytesMut::from(&wire[..]);
        client.handle_read(&mut buf).unwrap();
        assert_eq!(client.poll_event(), Some(Message::text(corpus(4000))));
    }
    // A connection with context takeover sends the plain frame.
    let takeover = DeflateConfig::new().server_no_context_takeover(false);
    let (_, mut server) = pair(&takeover, &takeover, 1 << 20);
    server.send_prepared(&prepared).unwrap();
    let mut wire = Vec::new();
    server.poll_transmit(&mut wire);
    assert_eq!(&wire[..], &prepared.frame()[..]);
}

#[test]
fn incompressible_messages_go_out_uncompressed_without_context_takeover() {
    // Bytes with no repeats: compressed, they would only grow.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let noise: Vec<u8> = (0..3000)
        .map(|_| crate::oneshot::tests::xorshift(&mut seed) as u8)
        .collect();
    let config = DeflateConfig::new().threshold(0);
    // Sent directly, and prepared once for many connections.
    let prepared = config.prepare(Message::binary(noise.clone())).unwrap();
    let (mut client, mut server) = pair(&config, &config, 1 << 20);
    server.send(Message::binary(noise.clone())).unwrap();
    server.send_prepared(&prepared).unwrap();
    let mut wire = Vec::new();
    server.poll_transmit(&mut wire);
    let frame_len = 4 + noise.len();
    assert_eq!(
        wire.len(),
        2 * frame_len,
        "both frames as large as the input"
    );
    assert_eq!(wire[0] & 0x40, 0, "RSV1 unset: not compressed");
    assert_eq!(wire[frame_len] & 0x40, 0, "RSV1 unset: not compressed");
    let mut buf = BytesMut::from(&wire[..]);
    client.handle_read(&mut buf).unwrap();
    client.handle_read(&mut buf).unwrap();
    assert_eq!(client.poll_event(), Some(Message::binary(noise.clone())));
    assert_eq!(client.poll_event(), Some(Message::binary(noise)));
}

// ===== negotiation =====

#[test]
fn server_accepts_the_first_acceptable_offer() {
    let config = DeflateConfig::new().server_no_context_takeover(false);
    let offered = offers(
        "permessage-deflate; bogus_param, \
         permessage-deflate; server_max_window_bits=8, \
         permessage-deflate; server_max_window_bits=10; client_max_window_bits",
    );
    let (response, agreement) = config.negotiate(&offered).unwrap();
    assert_eq!(
        response.to_string(),
        "permessage-deflate; server_max_window_bits=10"
    );
    assert_eq!(
        agreement,
        Agreement {
            server_max_window_bits: 10,
            ..Agreement::default()
        }
    );
    assert!(
        config
            .negotiate(&offers("x-other, permessage-deflate; a=1"))
            .is_none()
    );
}

#[test]
fn server_policy_limits_windows_and_context() {
    let config = DeflateConfig::new()
        .server_max_window_bits(11)
        .client_max_window_bits(10)
        .client_no_context_takeover(true);
    let (response, agreement) = config
        .negotiate(&offers("permessage-deflate; client_max_window_bits"))
        .unwrap();
    assert_eq!(
        response.to_string(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=11; client_max_window_bits=10"
    );
    assert_eq!(agreement.client_max_window_bits, 10);
    // Without client_max_window_bits in the offer the client cannot be limited.
    let (response, agreement) = config.negotiate(&offers("permessage-deflate")).unwrap();
    assert!(!response.to_string().contains("client_max_window_bits"));
    assert_eq!(agreement.client_max_window_bits, 15);
}

#[test]
fn client_checks_the_response() {
    let client = DeflateConfig::new().server_no_context_takeover(false);
    let ok = |s: &str| client.accept_response(&offers(s)[0]);
    assert!(ok("permessage-deflate").is_ok());
    assert_eq!(
        ok("permessage-deflate; client_max_window_bits=9")
            .unwrap()
            .client_max_window_bits,
        9
    );
    assert!(
        ok("permessage-deflate; client_max_window_bits").is_err(),
        "value required"
    );
    assert!(
        ok("permessage-deflate; client_max_window_bits=8").is_err(),
        "zlib cannot"
    );
    assert!(ok("permessage-deflate; x=1").is_err());
    assert!(
        ok("permessage-deflate; server_no_context_takeover; server_no_context_takeover").is_err()
    );
    let limited = DeflateConfig::new()
        .server_max_window_bits(10)
        .client_max_window_bits(12);
    let ok = |s: &str| limited.accept_response(&offers(s)[0]);
    assert!(
        ok("permessage-deflate; server_max_window_bits=11").is_err(),
        "larger than offered"
    );
    assert!(
        ok("permessage-deflate").is_err(),
        "offered server_max_window_bits must be answered"
    );
    assert!(
        ok("permessage-deflate; server_max_window_bits=10; client_max_window_bits=13").is_err()
    );
    assert!(ok("permessage-deflate; server_max_window_bits=9; client_max_window_bits=11").is_ok());
}

#[test]
fn offers_render_every_parameter() {
    let config = DeflateConfig::new()
        .server_no_context_takeover(true)
        .client_no_context_takeover(true)
        .server_max_window_bits(12)
        .client_max_window_bits(10);
    assert_eq!(
        config.offer().to_string(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=12; client_max_window_bits=10"
    );
    assert_eq!(
        DeflateConfig::new()
            .server_no_context_takeover(false)
            .offer()
            .to_string(),
        "permessage-deflate; client_max_window_bits"
    );
}

#[test]
fn extension_is_installed_through_the_trait_objects() {
    use sockeye_proto::extension::{ClientExtension, ServerExtension};
    let config = DeflateConfig::new();
    let negotiated = ServerExtension::negotiate(&config, &[config.offer()])
        .unwrap()
        .unwrap();
    assert_eq!(negotiated.1.name(), "permessage-deflate");
    let ext = ClientExtension::accept(&config, &negotiated.0).unwrap();
    assert_eq!(ext.name(), "permessage-deflate");
    let _: &PerMessageDeflate = &config.extension(Role::Client, Agreement::default());
}
