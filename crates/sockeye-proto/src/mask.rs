//! Payload masking (RFC 6455 §5.3): XOR with a 4-byte key, a word at a time.
//!
//! This is the one module where `unsafe` could ever be allowed, and only if a
//! benchmark in `benches/` proved a SIMD kernel pays. Today it is safe code:
//! 8-byte words built from the repeated key, which the compiler vectorises.

/// XORs `buf` with `key`, as if `buf` started `offset` bytes into the payload.
///
/// Masking is its own inverse, so this both masks and unmasks. `offset` lets a
/// payload be processed in pieces as it arrives.
///
/// ```
/// use sockeye_proto::mask::apply_mask;
/// let key = [0x37, 0xfa, 0x21, 0x3d];
/// let mut data = *b"Hello";
/// apply_mask(&mut data, key, 0);
/// assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// // Unmask in two pieces.
/// apply_mask(&mut data[..2], key, 0);
/// apply_mask(&mut data[2..], key, 2);
/// assert_eq!(&data, b"Hello");
/// ```
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate(key, offset);
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let masked = u64::from_ne_bytes(bytes) ^ word;
        chunk.copy_from_slice(&masked.to_ne_bytes());
    }
    // The key repeats every 4 bytes and whole 8-byte chunks preserve its phase.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i & 3];
    }
}

/// The reference implementation: one byte at a time. Kept for differential
/// tests and benchmarks.
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[(i + offset) & 3];
    }
}

#[inline]
fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    let s = offset & 3;
    [key[s], key[(s + 1) & 3], key[(s + 2) & 3], key[(s + 3) & 3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_bytewise_for_every_length_offset_and_alignment() {
        let key = [0xA1, 0x02, 0xF3, 0x44];
        let source: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for start in 0..8 {
            for len in 0..=64 + start {
                for offset in 0..4 {
                    let mut a = source[start..start + len].to_vec();
                    let mut b = a.clone();
                    apply_mask(&mut a, key, offset);
                    apply_mask_bytewise(&mut b, key, offset);
                    assert_eq!(a, b, "start {start} len {len} offset {offset}");
                }
            }
        }
    }

    #[test]
    fn piecewise_equals_whole() {
        let key = [1, 2, 3, 4];
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        let mut pieces = data.clone();
        let mut pos = 0;
        for step in [1, 3, 7, 8, 13, 100, 500] {
            let end = (pos + step).min(pieces.len());
            apply_mask(&mut pieces[pos..end], key, pos);
            pos = end;
        }
        apply_mask(&mut pieces[pos..], key, pos);
        assert_eq!(whole, pieces);
    }
}
