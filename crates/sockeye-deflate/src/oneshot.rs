//! A one-shot DEFLATE encoder (RFC 1951) for messages compressed without
//! context takeover at the fastest level.
//!
//! Why: such a message needs a compressor with an empty history. zlib gets
//! there by clearing its hash table (128 KiB, a fixed size, in zlib-rs;
//! 64 KiB by default in C zlib), which took about a quarter of a server's
//! CPU on 1 KiB messages, more than compressing them. This encoder keeps a hash table sized to the message (2^9 to
//! 2^14 entries), so starting afresh costs next to nothing.
//!
//! What it emits: greedy LZ77 matches of 4 to 258 bytes found through a
//! hash of the next four bytes (the way zlib's fastest level works), coded
//! with the fixed Huffman code in one non-final block, then the empty
//! stored block of a sync flush with its `00 00 ff ff` left out, exactly
//! the payload RFC 7692 §7.2.1 asks for. Any inflater reads it.

/// Messages up to this size take this path; larger ones go to zlib, whose
/// table reset is then small next to the work.
pub(crate) const MAX_INPUT: usize = 64 << 10;

const MIN_MATCH: usize = 4;
const MAX_MATCH: usize = 258;
const END_OF_BLOCK: usize = 256;

/// A fixed-code symbol: its code bits, reversed into the order they are
/// sent (DEFLATE packs Huffman codes from their most significant bit), and
/// their count.
#[derive(Clone, Copy)]
struct Code {
    bits: u32,
    len: u32,
}

const fn reverse(code: u32, len: u32) -> u32 {
    let mut out = 0;
    let mut i = 0;
    while i < len {
        out |= ((code >> i) & 1) << (len - 1 - i);
        i += 1;
    }
    out
}

/// The fixed literal/length code (RFC 1951 §3.2.6).
const LITLEN: [Code; 288] = {
    let mut table = [Code { bits: 0, len: 0 }; 288];
    let mut s = 0;
    while s < 288 {
        let (code, len) = match s {
            0..=143 => (0x30 + s as u32, 8),
            144..=255 => (0x190 + (s as u32 - 144), 9),
            256..=279 => (s as u32 - 256, 7),
            _ => (0xC0 + (s as u32 - 280), 8),
        };
        table[s] = Code {
            bits: reverse(code, len),
            len,
        };
        s += 1;
    }
    table
};

/// A match length (index: length − 3) as its length symbol's code followed
/// by the extra bits, ready to send in one piece.
const LENGTHS: [Code; 256] = {
    let mut table = [Code { bits: 0, len: 0 }; 256];
    let mut x = 0;
    while x < 256 {
        let (symbol, extra_len, extra) = if x < 8 {
            (257 + x, 0, 0)
        } else if x == 255 {
            (285, 0, 0)
        } else {
            // Lengths come in groups of four codes per extra bit.
            let top = 31 - (x as u32).leading_zeros();
            let extra_len = top - 2;
            let symbol = 257 + 4 * (top as usize - 1) + ((x >> extra_len) & 3);
            (symbol, extra_len, (x as u32) & ((1 << extra_len) - 1))
        };
        let code = LITLEN[symbol];
        table[x] = Code {
            bits: code.bits | (extra << code.len),
            len: code.len + extra_len,
        };
        x += 1;
    }
    table
};

/// The fixed distance code (5 bits, reversed) of distance code `c`.
const DISTANCES: [u32; 30] = {
    let mut table = [0; 30];
    let mut c = 0;
    while c < 30 {
        table[c] = reverse(c as u32, 5);
        c += 1;
    }
    table
};

/// A distance (1 to 32768) as its code followed by the extra bits.
fn distance(d: usize) -> Code {
    let x = (d - 1) as u32;
    if x < 4 {
        return Code {
            bits: DISTANCES[x as usize],
            len: 5,
        };
    }
    // Two codes per extra bit.
    let top = 31 - x.leading_zeros();
    let extra_len = top - 1;
    let code = 2 * top + ((x >> extra_len) & 1);
    Code {
        bits: DISTANCES[code as usize] | ((x & ((1 << extra_len) - 1)) << 5),
        len: 5 + extra_len,
    }
}

/// Bits packed least significant first, written out 32 at a time.
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    filled: u32,
}

impl BitWriter {
    #[inline]
    fn put(&mut self, code: Code) {
        self.acc |= u64::from(code.bits) << self.filled;
        self.filled += code.len;
        if self.filled >= 32 {
            self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.filled -= 32;
        }
    }

    /// Pads the last byte with zero bits.
    fn finish(mut self) -> Vec<u8> {
        while self.filled > 0 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.filled = self.filled.saturating_sub(8);
        }
        self.out
    }
}

fn read4(input: &[u8], at: usize) -> Option<u32> {
    let bytes = input.get(at..at + 4)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// How many bytes at `a` and at `b > a` agree, up to `max` (compared eight
/// at a time).
fn common_length(input: &[u8], a: usize, b: usize, max: usize) -> usize {
    let (x, y) = (&input[a..a + max], &input[b..b + max]);
    let mut n = 0;
    for (cx, cy) in x.chunks_exact(8).zip(y.chunks_exact(8)) {
        let wx = u64::from_le_bytes([cx[0], cx[1], cx[2], cx[3], cx[4], cx[5], cx[6], cx[7]]);
        let wy = u64::from_le_bytes([cy[0], cy[1], cy[2], cy[3], cy[4], cy[5], cy[6], cy[7]]);
        let diff = wx ^ wy;
        if diff != 0 {
            return n + (diff.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    n + x[n..]
        .iter()
        .zip(&y[n..])
        .take_while(|(p, q)| p == q)
        .count()
}

/// Compresses `input` (at most [`MAX_INPUT`] bytes) with no history and
/// back-references of at most `window` bytes; returns the RFC 7692 payload.
pub(crate) fn compress(input: &[u8], window: usize) -> Vec<u8> {
    debug_assert!(input.len() <= MAX_INPUT);
    let n = input.len();
    // One table slot per input byte or so: few collisions, little to clear.
    let bits = n.max(1).next_power_of_two().trailing_zeros().clamp(9, 14);
    // Positions plus one; zero is an empty slot.
    let mut table = vec![0u32; 1 << bits];
    let mut w = BitWriter {
        // Literals take 8 or 9 bits: the output is rarely longer than this.
        out: Vec::with_capacity(n + n / 8 + 16),
        acc: 0,
        filled: 0,
    };
    // BFINAL = 0, BTYPE = 01 (fixed Huffman codes).
    w.put(Code {
        bits: 0b010,
        len: 3,
    });
    let mut i = 0;
    while let Some(cur) = read4(input, i) {
        let slot = (cur.wrapping_mul(0x9E37_79B1) >> (32 - bits)) as usize;
        let candidate = table[slot] as usize;
        table[slot] = i as u32 + 1;
        if let Some(c) = candidate.checked_sub(1)
            && i - c <= window
            && read4(input, c) == Some(cur)
        {
            let max = (n - i).min(MAX_MATCH);
            let len =
                MIN_MATCH + common_length(input, c + MIN_MATCH, i + MIN_MATCH, max - MIN_MATCH);
            w.put(LENGTHS[len - 3]);
            w.put(distance(i - c));
            i += len;
            continue;
        }
        w.put(LITLEN[input[i] as usize]);
        i += 1;
    }
    for &b in &input[i..] {
        w.put(LITLEN[b as usize]);
    }
    w.put(LITLEN[END_OF_BLOCK]);
    // The sync flush: an empty stored block (BFINAL = 0, BTYPE = 00), padded
    // to a byte; its LEN/NLEN are the 00 00 ff ff the wire leaves out.
    w.put(Code { bits: 0, len: 3 });
    w.finish()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn inflate(compressed: &[u8]) -> Vec<u8> {
        let mut d = Decompress::new(false);
        let mut input = compressed.to_vec();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = Vec::with_capacity(MAX_INPUT * 2);
        d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .expect("valid DEFLATE");
        assert_eq!(d.total_in() as usize, input.len(), "all input consumed");
        out
    }

    fn check(input: &[u8], window: usize) {
        let compressed = compress(input, window);
        assert_eq!(
            inflate(&compressed),
            input,
            "round trip of {} bytes",
            input.len()
        );
    }

    /// A deterministic generator, so failures reproduce.
    pub(crate) fn xorshift(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[test]
    fn round_trips_through_zlib() {
        let json =
            br#"{"id":1234,"user":"alice","text":"hello there","tags":["a","b"]}"#.repeat(40);
        check(&json, 1 << 15);
        check(b"", 1 << 15);
        check(b"a", 1 << 15);
        check(b"abcd", 1 << 15);
        check(&[0u8; 300], 1 << 15);
        check(&[7u8; MAX_INPUT], 1 << 15);
        let mut seed = 0x1234_5678_9abc_def0;
        let random: Vec<u8> = (0..5000).map(|_| xorshift(&mut seed) as u8).collect();
        check(&random, 1 << 15);
        // A small alphabet: many short matches at every distance.
        for len in [5, 17, 258, 259, 1000, 40_000, MAX_INPUT] {
            let data: Vec<u8> = (0..len)
                .map(|_| b"abc"[(xorshift(&mut seed) % 3) as usize])
                .collect();
            check(&data, 1 << 15);
            check(&data, 1 << 9);
        }
    }

    #[test]
    fn every_length_and_distance_code_decodes() {
        // A random prefix, then copies of it at growing distances and lengths.
        let mut seed = 99;
        let mut data: Vec<u8> = (0..32_000).map(|_| xorshift(&mut seed) as u8).collect();
        let mut at = 0;
        for len in 3..=258 {
            let from = at % 31_000;
            let piece = data[from..from + len].to_vec();
            data.extend_from_slice(&piece);
            at += 127;
        }
        assert!(data.len() <= MAX_INPUT);
        check(&data, 1 << 15);
    }

    #[test]
    fn back_references_stay_inside_the_window() {
        // The same 600 random bytes twice, 1000 bytes apart: a 512-byte
        // window must not reach back to the first copy.
        let mut seed = 7;
        let block: Vec<u8> = (0..600).map(|_| xorshift(&mut seed) as u8).collect();
        let gap: Vec<u8> = (0..400).map(|_| xorshift(&mut seed) as u8).collect();
        let data = [&block[..], &gap[..], &block[..]].concat();
        let narrow = compress(&data, 1 << 9);
        let wide = compress(&data, 1 << 15);
        assert_eq!(inflate(&narrow), data);
        assert_eq!(inflate(&wide), data);
        assert!(
            wide.len() + 400 < narrow.len(),
            "{} vs {}",
            wide.len(),
            narrow.len()
        );
        // And an inflater with a 2^9 window accepts the narrow stream.
        let mut d = Decompress::new_with_window_bits(false, 9);
        let mut out = Vec::with_capacity(data.len());
        let mut input = narrow.clone();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn compresses_about_as_well_as_zlib_level_one() {
        let json =
            br#"{"id":1234,"user":"alice","text":"hello there","tags":["a","b"]}"#.repeat(16);
        let ours = compress(&json, 1 << 15).len();
        let mut c = flate2::Compress::new(flate2::Compression::new(1), false);
        let mut zlib = Vec::with_capacity(json.len() * 2);
        c.compress_vec(&json, &mut zlib, flate2::FlushCompress::Sync)
            .unwrap();
        let zlib = zlib.len() - 4;
        assert!(
            ours <= zlib + zlib / 4 + 8,
            "ours {ours} bytes, zlib {zlib}"
        );
    }
}
