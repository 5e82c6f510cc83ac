//! Differential checks: sockeye's frame-header parser against an
//! independent decoder written here from RFC 6455 §5.2, its encoder against
//! its parser, the word-at-a-time mask against the bytewise one, and the
//! incremental UTF-8 validator against `std::str::from_utf8`.
//!
//! Input: byte 0 chooses a split point and mask offset; the rest is data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockeye_proto::frame::FrameHeader;
use sockeye_proto::mask::{apply_mask, apply_mask_bytewise};
use sockeye_proto::utf8::Utf8Validator;

/// What the reference decoder says: `None` incomplete, `Some(Err)` invalid,
/// `Some(Ok((fin, rsv, opcode, mask, len, header_len)))`.
type Decoded = Option<Result<(bool, u8, u8, Option<[u8; 4]>, u64, usize), ()>>;

fn reference(b: &[u8]) -> Decoded {
    if b.len() < 2 {
        return None;
    }
    let fin = b[0] >> 7 == 1;
    let rsv = b[0] & 0b0111_0000;
    let opcode = b[0] & 0x0F;
    if !matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10) {
        return Some(Err(()));
    }
    let control = opcode >= 8;
    let short = u64::from(b[1] & 0x7F);
    if control && (!fin || short > 125) {
        return Some(Err(()));
    }
    let (len, mut at) = match short {
        126 => {
            if b.len() < 4 {
                return None;
            }
            let l = u64::from(b[2]) << 8 | u64::from(b[3]);
            if l < 126 {
                return Some(Err(()));
            }
            (l, 4)
        }
        127 => {
            if b.len() < 10 {
                return None;
            }
            let mut l = 0u64;
            for &x in &b[2..10] {
                l = l << 8 | u64::from(x);
            }
            if l >> 63 == 1 || l < 65536 {
                return Some(Err(()));
            }
            (l, 10)
        }
        l => (l, 2),
    };
    let mask = if b[1] >> 7 == 1 {
        if b.len() < at + 4 {
            return None;
        }
        let k = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        at += 4;
        Some(k)
    } else {
        None
    };
    Some(Ok((fin, rsv, opcode, mask, len, at)))
}

fuzz_target!(|data: &[u8]| {
    let [knob, rest @ ..] = data else { return };

    // Frame headers: both decoders agree, and encoding re-creates the input.
    let ours = FrameHeader::parse(rest);
    match (reference(rest), &ours) {
        (None, Ok(None)) | (Some(Err(())), Err(_)) => {}
        (Some(Ok((fin, rsv, opcode, mask, len, at))), Ok(Some((h, n)))) => {
            assert_eq!(
                (
                    h.fin,
                    h.rsv.bits(),
                    h.opcode.as_u8(),
                    h.mask,
                    h.payload_len,
                    *n
                ),
                (fin, rsv, opcode, mask, len, at)
            );
            let mut encoded = Vec::new();
            h.encode(&mut encoded);
            assert_eq!(&encoded[..], &rest[..*n]);
        }
        (r, o) => panic!("decoders disagree: reference {r:?}, sockeye {o:?}"),
    }

    // Masking: word-at-a-time equals bytewise at any offset and alignment.
    let key = [rest.first().copied().unwrap_or(1), *knob, 0x5a, 0xc3];
    let offset = usize::from(*knob % 8);
    let start = usize::from(*knob >> 5).min(rest.len());
    let mut a = rest[start..].to_vec();
    let mut b = a.clone();
    apply_mask(&mut a, key, offset);
    apply_mask_bytewise(&mut b, key, offset);
    assert_eq!(a, b);

    // UTF-8: any split into two pieces agrees with std on the whole.
    let split = usize::from(*knob).min(rest.len());
    let mut v = Utf8Validator::new();
    let incremental = v
        .feed(&rest[..split])
        .and_then(|()| v.feed(&rest[split..]))
        .and_then(|()| v.finish());
    assert_eq!(incremental.is_ok(), std::str::from_utf8(rest).is_ok());
});
