//! State-machine tests over the in-memory pair and hand-built frames.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::pair::Pair;
use super::{Connection, Role, State};
use crate::close::{CloseCode, CloseFrame};
use crate::config::Config;
use crate::error::{CapacityError, Error, ProtocolViolation, TimeoutKind};
use crate::frame::{FrameHeader, OpCode, Rsv};
use crate::mask::apply_mask;
use crate::message::{Message, PreparedMessage};

/// A raw frame; `mask` masks the payload.
fn frame(fin: bool, rsv: u8, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(u8::from(fin) << 7 | rsv | opcode);
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(m | n as u8),
        n @ 126..=0xFFFF => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mut body = payload.to_vec();
    if let Some(k) = mask {
        out.extend_from_slice(&k);
        apply_mask(&mut body, k, 0);
    }
    out.extend_from_slice(&body);
    out
}

const KEY: Option<[u8; 4]> = Some([0x11, 0x22, 0x33, 0x44]);

fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(fin, 0, opcode, KEY, payload)
}

fn server() -> Connection {
    Connection::new(Role::Server, Config::default())
}

/// Feeds bytes to a server; returns its events and the frames it wrote.
fn feed(
    conn: &mut Connection,
    bytes: &[u8],
) -> (Vec<Message>, Result<(), Error>, Vec<FrameHeader>, Vec<u8>) {
    let mut buf = BytesMut::from(bytes);
    let mut events = Vec::new();
    let mut errors = Vec::new();
    super::pair::read_all(conn, &mut buf, &mut events, &mut errors);
    let r = match errors.pop() {
        Some(e) => Err(e),
        None => Ok(()),
    };
    let mut out = Vec::new();
    conn.poll_transmit(&mut out);
    let (headers, payload) = decode_all(&out);
    (events, r, headers, payload)
}

/// Decodes every frame of `out`; returns headers and the last payload.
fn decode_all(mut out: &[u8]) -> (Vec<FrameHeader>, Vec<u8>) {
    let mut headers = Vec::new();
    let mut last = Vec::new();
    while !out.is_empty() {
        let (h, n) = FrameHeader::parse(out).unwrap().unwrap();
        let len = h.payload_len as usize;
        let mut p = out[n..n + len].to_vec();
        if let Some(k) = h.mask {
            apply_mask(&mut p, k, 0);
        }
        headers.push(h);
        last = p;
        out = &out[n + len..];
    }
    (headers, last)
}

fn sent_close_code(headers: &[FrameHeader], payload: &[u8]) -> Option<u16> {
    let last = headers.last()?;
    (last.opcode == OpCode::Close && payload.len() >= 2)
        .then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

fn assert_fails(bytes: &[u8], expected: ProtocolViolation) {
    let mut s = server();
    let (events, r, headers, payload) = feed(&mut s, bytes);
    assert!(events.is_empty(), "delivered {events:?} before failing");
    match r {
        Err(Error::Protocol(v)) => assert_eq!(v, expected),
        other => panic!("expected {expected:?}, got {other:?}"),
    }
    assert_eq!(
        sent_close_code(&headers, &payload),
        Some(u16::from(expected.close_code()))
    );
    assert_eq!(s.state(), State::Closed);
    assert!(s.should_shutdown());
}

// ===== framing =====

#[test]
fn echo_both_ways_every_length_form() {
    let mut p = Pair::default_pair();
    for len in [0, 1, 125, 126, 127, 65535, 65536, 200_000] {
        let data = Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        p.client.send(Message::Binary(data.clone())).unwrap();
        p.server.send(Message::Binary(data.clone())).unwrap();
        p.drive();
        assert_eq!(p.server_events(), [Message::Binary(data.clone())]);
        assert_eq!(p.client_events(), [Message::Binary(data)]);
    }
    p.client.send(Message::text("héllo")).unwrap();
    p.drive();
    assert_eq!(p.server_events(), [Message::text("héllo")]);
    assert!(p.client_errors.is_empty() && p.server_errors.is_empty());
}

#[test]
fn fragments_reassemble_with_control_frames_between() {
    let mut bytes = client_frame(false, 0x1, "frag".as_bytes());
    bytes.extend(client_frame(true, 0x9, b"ping in the middle"));
    bytes.extend(client_frame(false, 0x0, "men".as_bytes()));
    bytes.extend(client_frame(true, 0xA, b"unsolicited pong"));
    bytes.extend(client_frame(true, 0x0, "ted €".as_bytes()));
    let mut s = server();
    let (events, r, headers, payload) = feed(&mut s, &bytes);
    r.unwrap();
    assert_eq!(
        events,
        [
            Message::ping(&b"ping in the middle"[..]),
            Message::pong(&b"unsolicited pong"[..]),
            Message::text("fragmented €"),
        ]
    );
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].opcode, OpCode::Pong);
    assert_eq!(payload, b"ping in the middle");
}

#[test]
fn partial_input_is_kept_until_complete() {
    // Each piece is unmasked as it arrives, at its offset in the key.
    let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut bytes = client_frame(false, 0x2, &payload[..600]);
    bytes.extend(client_frame(true, 0x0, &payload[600..]));
    for piece in [1, 3, 37, 1000] {
        let mut s = server();
        let mut buf = BytesMut::new();
        for chunk in bytes.chunks(piece) {
            buf.extend_from_slice(chunk);
            s.handle_read(&mut buf).unwrap();
        }
        assert_eq!(s.poll_event(), Some(Message::binary(payload.clone())));
        assert!(buf.is_empty());
        assert_eq!(s.read_hint(), 0);
    }
}

#[test]
fn read_hint_reports_missing_payload() {
    let bytes = client_frame(true, 0x2, &[0u8; 5000]);
    let mut s = server();
    let mut buf = BytesMut::from(&bytes[..100]);
    s.handle_read(&mut buf).unwrap();
    assert_eq!(s.read_hint(), bytes.len() - 100);
}

#[test]
fn masking_direction_is_enforced() {
    assert_fails(
        &frame(true, 0, 0x1, None, b"hi"),
        ProtocolViolation::UnmaskedFrame,
    );
    let mut c = Connection::new(Role::Client, Config::default());
    let (_, r, headers, payload) = feed(&mut c, &frame(true, 0, 0x1, KEY, b"hi"));
    assert!(matches!(
        r,
        Err(Error::Protocol(ProtocolViolation::MaskedFrame))
    ));
    assert_eq!(sent_close_code(&headers, &payload), Some(1002));
    // The dangerous opt-in accepts unmasked frames.
    let mut s = Connection::new(
        Role::Server,
        Config::builder()
            .dangerous_accept_unmasked_frames(true)
            .build(),
    );
    let (events, r, ..) = feed(&mut s, &frame(true, 0, 0x1, None, b"hi"));
    r.unwrap();
    assert_eq!(events, [Message::text("hi")]);
}

#[test]
fn reserved_bits_and_opcodes_fail_with_1002() {
    for rsv in [0x40, 0x20, 0x10] {
        assert_fails(
            &frame(true, rsv, 0x1, KEY, b"x"),
            ProtocolViolation::UnexpectedRsv(Rsv::from_bits(rsv)),
        );
    }
    assert_fails(
        &frame(true, 0, 0x3, KEY, b""),
        ProtocolViolation::ReservedOpcode(3),
    );
    assert_fails(
        &frame(true, 0, 0xB, KEY, b""),
        ProtocolViolation::ReservedOpcode(0xB),
    );
}

#[test]
fn control_frame_rules() {
    assert_fails(
        &client_frame(true, 0x9, &[0u8; 126]),
        ProtocolViolation::ControlFrameTooLong,
    );
    assert_fails(
        &client_frame(false, 0x9, b""),
        ProtocolViolation::FragmentedControlFrame,
    );
}

#[test]
fn continuation_rules() {
    assert_fails(
        &client_frame(true, 0x0, b"x"),
        ProtocolViolation::UnexpectedContinuation,
    );
    let mut bytes = client_frame(false, 0x1, b"a");
    bytes.extend(client_frame(true, 0x1, b"b"));
    assert_fails(&bytes, ProtocolViolation::ExpectedContinuation);
}

#[test]
fn length_with_top_bit_fails() {
    let mut bytes = vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0];
    bytes.extend_from_slice(&[1, 2, 3, 4]);
    assert_fails(&bytes, ProtocolViolation::LengthMsbSet);
}

// ===== UTF-8 =====

#[test]
fn invalid_utf8_fails_with_1007() {
    assert_fails(
        &client_frame(true, 0x1, b"ok\xff"),
        ProtocolViolation::InvalidUtf8,
    );
    // Split across fragments, truncated at the end.
    let mut bytes = client_frame(false, 0x1, "€".as_bytes().get(..2).unwrap());
    bytes.extend(client_frame(true, 0x0, b""));
    assert_fails(&bytes, ProtocolViolation::InvalidUtf8);
}

#[test]
fn utf8_split_inside_code_points_across_fragments_is_valid() {
    let text = "κόσμε €𝄞";
    let raw = text.as_bytes();
    let mut bytes = Vec::new();
    for (i, chunk) in raw.chunks(1).enumerate() {
        let op = if i == 0 { 0x1 } else { 0x0 };
        bytes.extend(client_frame(i == raw.len() - 1, op, chunk));
    }
    let mut s = server();
    let (events, r, ..) = feed(&mut s, &bytes);
    r.unwrap();
    assert_eq!(events, [Message::text(text)]);
}

#[test]
fn invalid_utf8_fails_fast_inside_a_frame_still_arriving() {
    // Autobahn 6.4.3: the invalid bytes come in the middle of one frame.
    let mut payload = b"valid start ".to_vec();
    payload.extend_from_slice(b"\xf4\x90\x80\x80");
    payload.extend_from_slice(&[b'a'; 500]);
    let bytes = client_frame(true, 0x1, &payload);
    let mut s = server();
    let mut buf = BytesMut::from(&bytes[..40]);
    let r = s.handle_read(&mut buf);
    assert!(matches!(
        r,
        Err(Error::Protocol(ProtocolViolation::InvalidUtf8))
    ));
}

// ===== close =====

#[test]
fn close_handshake_started_by_client() {
    let mut p = Pair::default_pair();
    p.client.close(CloseCode::NORMAL, "bye").unwrap();
    assert_eq!(p.client.state(), State::Closing);
    p.drive();
    assert_eq!(
        p.server_events(),
        [Message::Close(Some(CloseFrame::new(
            CloseCode::NORMAL,
            "bye"
        )))]
    );
    // The server echoed the code and closes TCP first.
    assert_eq!(
        p.client_events(),
        [Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "")))]
    );
    assert_eq!(p.server.state(), State::Closed);
    assert!(p.server.should_shutdown());
    // The client waits for the server's FIN...
    assert!(!p.client.should_shutdown());
    p.client.handle_eof().unwrap();
    assert!(p.client.should_shutdown());
    assert!(matches!(
        p.client.send(Message::text("late")),
        Err(Error::Closed)
    ));
}

#[test]
fn client_stops_waiting_for_fin_after_close_timeout() {
    let mut p = Pair::default_pair();
    p.server.close(CloseCode::GOING_AWAY, "restart").unwrap();
    p.drive();
    assert_eq!(p.client.state(), State::Closed);
    assert!(!p.client.should_shutdown());
    p.advance(Duration::from_secs(6));
    assert!(p.client.should_shutdown());
    // The handshake itself completed: the timeout is not an error.
    assert!(p.client_errors.is_empty());
}

#[test]
fn unanswered_close_times_out() {
    let mut s = server();
    let now = std::time::Instant::now();
    s.close(CloseCode::NORMAL, "").unwrap();
    s.handle_timeout(now).unwrap();
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(5)));
    assert!(matches!(
        s.handle_timeout(now + Duration::from_secs(5)),
        Err(Error::Timeout(TimeoutKind::Close))
    ));
    assert!(s.should_shutdown());
}

#[test]
fn close_payload_rules() {
    assert_fails(
        &client_frame(true, 0x8, &[3]),
        ProtocolViolation::InvalidClosePayload,
    );
    assert_fails(
        &client_frame(true, 0x8, &[3, 0xed]),
        ProtocolViolation::InvalidCloseCode(1005),
    );
    assert_fails(
        &client_frame(true, 0x8, &[0x13, 0x88]),
        ProtocolViolation::InvalidCloseCode(5000),
    );
    assert_fails(
        &client_frame(true, 0x8, b"\x03\xe8\xff"),
        ProtocolViolation::InvalidCloseReason,
    );
    // Empty close: answered with an empty close.
    let mut s = server();
    let (events, r, headers, payload) = feed(&mut s, &client_frame(true, 0x8, b""));
    r.unwrap();
    assert_eq!(events, [Message::Close(None)]);
    assert_eq!(headers[0].opcode, OpCode::Close);
    assert!(payload.is_empty());
    // Private codes are echoed.
    let mut s = server();
    let (_, r, headers, payload) = feed(&mut s, &client_frame(true, 0x8, &[0x0f, 0xa0]));
    r.unwrap();
    assert_eq!(sent_close_code(&headers, &payload), Some(4000));
}

#[test]
fn frames_after_close_are_ignored() {
    let mut bytes = client_frame(true, 0x8, &[3, 0xe8]);
    bytes.extend(client_frame(true, 0x1, b"after"));
    bytes.extend(client_frame(true, 0x9, b"ping after"));
    let mut s = server();
    let (events, r, headers, _) = feed(&mut s, &bytes);
    r.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(headers.len(), 1, "no pong after the close reply");
}

#[test]
fn messages_keep_arriving_after_we_sent_close() {
    let mut p = Pair::default_pair();
    p.server.close(CloseCode::NORMAL, "").unwrap();
    p.client.send(Message::text("in flight")).unwrap();
    p.drive();
    let events = p.server_events();
    assert_eq!(events[0], Message::text("in flight"));
    assert!(events[1].is_close());
}

#[test]
fn unsendable_close_codes_are_refused() {
    let mut s = server();
    assert!(matches!(
        s.close(CloseCode::ABNORMAL, ""),
        Err(Error::InvalidInput(_))
    ));
    assert!(s.close(CloseCode::from_u16_unchecked(4999), "").is_ok());
    // Idempotent once sent.
    assert!(s.close(CloseCode::NORMAL, "").is_ok());
}

// ===== limits =====

#[test]
fn frame_over_the_limit_fails_before_its_payload_arrives() {
    let config = Config::builder().max_frame_size(1000).build();
    let mut s = Connection::new(Role::Server, config);
    let bytes = client_frame(true, 0x2, &[0u8; 1001]);
    let mut buf = BytesMut::from(&bytes[..8]);
    let r = s.handle_read(&mut buf);
    assert!(matches!(
        r,
        Err(Error::Capacity(CapacityError::FrameTooLarge {
            size: 1001,
            max: 1000
        }))
    ));
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    let (h, p) = decode_all(&out);
    assert_eq!(sent_close_code(&h, &p), Some(1009));
}

#[test]
fn message_over_the_limit_across_fragments() {
    let config = Config::builder().max_message_size(100).build();
    let mut s = Connection::new(Role::Server, config);
    let mut bytes = client_frame(false, 0x2, &[0u8; 60]);
    bytes.extend(client_frame(true, 0x0, &[0u8; 60]));
    let (events, r, h, p) = feed(&mut s, &bytes);
    assert!(events.is_empty());
    assert!(matches!(
        r,
        Err(Error::Capacity(CapacityError::MessageTooLarge { .. }))
    ));
    assert_eq!(sent_close_code(&h, &p), Some(1009));
}

#[test]
fn too_many_fragments_fail_with_1008_empty_ones_included() {
    let config = Config::builder().max_fragments(3).build();
    let mut s = Connection::new(Role::Server, config);
    let mut bytes = client_frame(false, 0x2, b"");
    for _ in 0..3 {
        bytes.extend(client_frame(false, 0x0, b""));
    }
    let (_, r, h, p) = feed(&mut s, &bytes);
    assert!(matches!(
        r,
        Err(Error::Capacity(CapacityError::TooManyFragments { max: 3 }))
    ));
    assert_eq!(sent_close_code(&h, &p), Some(1008));
}

#[test]
fn write_high_water_mark_pushes_back() {
    let config = Config::builder().write_high_water_mark(1000).build();
    let mut s = Connection::new(Role::Server, config);
    s.send(Message::binary(vec![0u8; 1500])).unwrap();
    assert!(!s.can_send());
    assert!(matches!(
        s.send(Message::text("more")),
        Err(Error::Capacity(CapacityError::WriteBufferFull))
    ));
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    assert!(s.can_send());
}

#[test]
fn ping_flood_without_reading_stays_bounded() {
    let config = Config::builder().write_high_water_mark(4096).build();
    let mut s = Connection::new(Role::Server, config);
    let mut bytes = Vec::new();
    for i in 0..10_000u32 {
        bytes.extend(client_frame(true, 0x9, &i.to_be_bytes()));
    }
    let mut buf = BytesMut::from(&bytes[..]);
    let (mut events, mut errors) = (Vec::new(), Vec::new());
    super::pair::read_all(&mut s, &mut buf, &mut events, &mut errors);
    assert!(errors.is_empty());
    assert_eq!(events.len(), 10_000);
    assert!(s.transmit_len() < 4096 + 200, "{}", s.transmit_len());
    // Only the latest pong waits once the buffer drains.
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    let (headers, last) = decode_all(&out);
    assert!(headers.iter().all(|h| h.opcode == OpCode::Pong));
    assert_eq!(last, 9999u32.to_be_bytes());
}

#[test]
fn control_payload_limit_on_send() {
    let mut s = server();
    assert!(matches!(
        s.send(Message::ping(vec![0u8; 126])),
        Err(Error::Capacity(CapacityError::ControlFrameTooLong))
    ));
}

// ===== sending =====

#[test]
fn auto_fragmentation_splits_outgoing_messages() {
    let config = Config::builder().auto_fragment_size(Some(1300)).build();
    let mut p = Pair::new(config.clone(), config);
    let text = "x".repeat(65536);
    p.server.send(Message::text(text.as_str())).unwrap();
    let mut out = Vec::new();
    p.server.poll_transmit(&mut out);
    let (headers, _) = decode_all(&out);
    assert_eq!(headers.len(), 65536usize.div_ceil(1300));
    assert_eq!(headers[0].opcode, OpCode::Text);
    assert!(
        headers[1..]
            .iter()
            .all(|h| h.opcode == OpCode::Continuation)
    );
    assert!(headers.last().unwrap().fin && !headers[0].fin);
    let mut buf = BytesMut::from(&out[..]);
    p.client.handle_read(&mut buf).unwrap();
    assert_eq!(p.client.poll_event(), Some(Message::text(text.as_str())));
}

#[test]
fn prepared_messages_are_written_as_is_by_servers_and_masked_by_clients() {
    let prepared = PreparedMessage::new(Message::text("fan-out")).unwrap();
    let mut s = server();
    s.send_prepared(&prepared).unwrap();
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    assert_eq!(&out[..], &prepared.frame()[..]);

    let mut p = Pair::default_pair();
    p.client.send_prepared(&prepared).unwrap();
    p.drive();
    assert_eq!(p.server_events(), [Message::text("fan-out")]);
    assert!(p.server_errors.is_empty());
}

#[test]
fn client_frames_use_fresh_mask_keys() {
    let mut c = Connection::new(Role::Client, Config::default());
    c.send(Message::text("a")).unwrap();
    c.send(Message::text("a")).unwrap();
    let mut out = Vec::new();
    c.poll_transmit(&mut out);
    let (h1, n) = FrameHeader::parse(&out).unwrap().unwrap();
    let (h2, _) = FrameHeader::parse(&out[n + 1..]).unwrap().unwrap();
    assert!(h1.mask.is_some() && h2.mask.is_some());
    assert_ne!(h1.mask, h2.mask);
}

#[test]
fn vectored_output_is_zero_copy_for_large_server_payloads() {
    let mut s = server();
    let big = Bytes::from(vec![9u8; 100_000]);
    s.send(Message::text("small")).unwrap();
    s.send(Message::Binary(big.clone())).unwrap();
    let mut slices = [std::io::IoSlice::new(&[]); 8];
    let n = s.transmit_chunks(&mut slices);
    assert!(n >= 2);
    assert!(slices[..n].iter().any(|sl| sl.as_ptr() == big.as_ptr()));
}

// ===== timers =====

#[test]
fn keepalive_pings_after_silence_and_fails_after_pong_timeout() {
    let config = Config::builder()
        .keepalive_interval(Some(Duration::from_secs(20)))
        .pong_timeout(Duration::from_secs(10))
        .build();
    let mut s = Connection::new(Role::Server, config);
    let t0 = std::time::Instant::now();
    s.handle_timeout(t0).unwrap();
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(20)));
    s.handle_timeout(t0 + Duration::from_secs(20)).unwrap();
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    let (h, _) = decode_all(&out);
    assert_eq!(h[0].opcode, OpCode::Ping);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    let r = s.handle_timeout(t0 + Duration::from_secs(30));
    assert!(matches!(r, Err(Error::Timeout(TimeoutKind::Keepalive))));
    out.clear();
    s.poll_transmit(&mut out);
    let (h, p) = decode_all(&out);
    assert_eq!(sent_close_code(&h, &p), Some(1011));
}

#[test]
fn keepalive_is_satisfied_by_any_input() {
    let config = Config::builder()
        .keepalive_interval(Some(Duration::from_secs(20)))
        .pong_timeout(Duration::from_secs(10))
        .build();
    let mut p = Pair::new(Config::default(), config);
    for _ in 0..10 {
        p.advance(Duration::from_secs(15));
        p.client.send(Message::text("alive")).unwrap();
        p.drive();
    }
    assert!(p.server_errors.is_empty());
    // Silence: the client answers the ping automatically, so no failure.
    p.advance(Duration::from_secs(25));
    p.advance(Duration::from_secs(25));
    assert!(p.server_errors.is_empty(), "{:?}", p.server_errors);
    assert_eq!(p.server.state(), State::Open);
}

#[test]
fn idle_timeout_closes_with_1001() {
    let config = Config::builder()
        .idle_timeout(Some(Duration::from_secs(60)))
        .build();
    let mut p = Pair::new(Config::default(), config);
    p.advance(Duration::from_secs(50));
    p.client.send(Message::text("data")).unwrap();
    p.drive();
    p.advance(Duration::from_secs(50));
    assert_eq!(p.server.state(), State::Open);
    p.advance(Duration::from_secs(15));
    let events = p.client_events();
    assert!(events.contains(&Message::Close(Some(CloseFrame::new(
        CloseCode::GOING_AWAY,
        "idle timeout"
    )))));
    assert_eq!(p.server.state(), State::Closed);
}

#[test]
fn eof_before_close_is_abnormal() {
    let mut s = server();
    assert!(matches!(s.handle_eof(), Err(Error::AbnormalClosure)));
    assert!(s.should_shutdown());
}

#[test]
fn close_code_reports_the_first_close_frame_only_after_a_clean_handshake() {
    let mut p = Pair::default_pair();
    p.server.close(CloseCode::GOING_AWAY, "restart").unwrap();
    assert_eq!(p.server.close_code(), None);
    p.drive();
    assert_eq!(p.client.close_code(), Some(CloseCode::GOING_AWAY));
    assert_eq!(p.server.close_code(), Some(CloseCode::GOING_AWAY));

    let mut p = Pair::default_pair();
    p.client.close(CloseCode::NORMAL, "").unwrap();
    p.drive();
    assert_eq!(p.client.close_code(), Some(CloseCode::NORMAL));

    let mut s = server();
    let _ = feed(&mut s, &frame(true, 0, 0x1, None, b"unmasked"));
    assert_eq!(s.close_code(), None, "a failure is not a clean close");
}
