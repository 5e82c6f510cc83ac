//! The connection harness shared by `conn_server` and `conn_client`.
//!
//! Input: three bytes choosing the sizes of the pieces the rest is fed in
//! (cycled; `n` means `n + 1` bytes, `0xFF` everything left), then the bytes
//! from the peer. Every data message is echoed back.

use bytes::BytesMut;
use sockeye_proto::frame::{FrameHeader, OpCode};
use sockeye_proto::mask::apply_mask;
use sockeye_proto::{CloseFrame, Config, Connection, Message, Role, State};

const MAX_MESSAGE: usize = 128 << 10;

pub fn run(role: Role, data: &[u8]) {
    let (sizes, mut rest) = data.split_at(data.len().min(3));
    let config = Config::builder()
        .max_frame_size(64 << 10)
        .max_message_size(MAX_MESSAGE)
        .max_fragments(64)
        .write_high_water_mark(1024)
        .build();
    let mut conn = Connection::new(role, config);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    // The close frame that must end the output: Some(code) or None (empty).
    let mut expect_close: Option<Option<u16>> = None;
    let mut failed = false;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() || failed {
            break;
        }
        let n = if size == 0xFF {
            rest.len()
        } else {
            rest.len().min(usize::from(size) + 1)
        };
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            let before = buf.len();
            let result = conn.handle_read(&mut buf);
            let mut events = 0;
            while let Some(msg) = conn.poll_event() {
                events += 1;
                match &msg {
                    Message::Text(t) => assert!(std::str::from_utf8(t.as_bytes()).is_ok()),
                    Message::Ping(p) | Message::Pong(p) => assert!(p.len() <= 125),
                    Message::Close(f) => expect_close = Some(f.as_ref().map(|f| f.code.as_u16())),
                    Message::Binary(_) => {}
                }
                if matches!(msg, Message::Text(_) | Message::Binary(_)) {
                    assert!(msg.len() <= MAX_MESSAGE, "{} bytes", msg.len());
                    let _ = conn.send(msg);
                }
            }
            if let Err(e) = result {
                assert_eq!(conn.state(), State::Closed, "{e}");
                expect_close = Some(e.close_code().map(u16::from));
                failed = true;
                break;
            }
            if events == 0 && buf.len() == before {
                break;
            }
        }
        conn.poll_transmit(&mut out);
    }
    if failed {
        // Input after a failure is ignored.
        buf.extend_from_slice(rest);
        assert!(conn.handle_read(&mut buf).is_ok());
        assert!(conn.poll_event().is_none());
        assert_eq!(conn.transmit_len(), 0);
        assert!(conn.should_shutdown());
    }
    let last_close = check_output(role, &out);
    if let Some(code) = expect_close {
        let payload = last_close.expect("the output must end with a close frame");
        assert_eq!(
            payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]])),
            code
        );
    }
    let eof = conn.handle_eof();
    assert_eq!(eof.is_err(), expect_close.is_none());
    assert_eq!(conn.state(), State::Closed);
}

/// Checks that `out` is a sequence of complete, valid frames masked as the
/// role requires, with nothing after a close frame. Returns the close
/// frame's (unmasked) payload if the last frame is one.
fn check_output(role: Role, out: &[u8]) -> Option<Vec<u8>> {
    let mut pos = 0;
    let mut last_close = None;
    while pos < out.len() {
        assert!(last_close.is_none(), "a frame after the close frame");
        let (h, n) = FrameHeader::parse(&out[pos..])
            .unwrap()
            .expect("a whole header");
        assert_eq!(h.mask.is_some(), role == Role::Client, "{h:?}");
        assert!(h.fin && h.rsv.is_empty(), "{h:?}");
        assert!(!h.opcode.is_control() || h.payload_len <= 125);
        let len = usize::try_from(h.payload_len).unwrap();
        let body = out[pos + n..].get(..len).expect("a whole payload");
        let mut payload = body.to_vec();
        if let Some(key) = h.mask {
            apply_mask(&mut payload, key, 0);
        }
        match h.opcode {
            OpCode::Text => assert!(std::str::from_utf8(&payload).is_ok()),
            OpCode::Close => {
                assert!(CloseFrame::parse(&payload).is_ok(), "{payload:?}");
                last_close = Some(payload);
            }
            _ => {}
        }
        pos += n + len;
    }
    last_close
}
