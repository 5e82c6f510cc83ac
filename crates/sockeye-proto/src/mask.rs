//! Payload masking (RFC 6455 §5.3): XOR with a 4-byte key, a word at a time.
//!
//! The kernel is safe code: 8-byte words built from the repeated key, which
//! the compiler vectorises. On x86-64 the same code is also compiled for
//! AVX-512F and for AVX2 and, for payloads from `WIDE_MIN` (128) bytes,
//! the widest the CPU has is picked at run time: the only `unsafe` of the
//! crate is that call, guarded by the feature check. On an AVX-512 Xeon
//! (`cargo bench -p sockeye-benches --bench mask`) 1 KiB takes 13 ns
//! instead of 27 and 1 MiB 24 µs instead of 38; the tests below compare
//! every kernel with the byte-at-a-time reference.

/// Payloads from this size go to a wide kernel where the CPU has one;
/// below it the feature check costs more than it saves.
const WIDE_MIN: usize = 128;

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
#[allow(unsafe_code)]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate(key, offset);
    #[cfg(target_arch = "x86_64")]
    if buf.len() >= WIDE_MIN {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: `words_avx512` is safe code compiled with AVX-512F
            // enabled; the one requirement of calling it is that the CPU
            // supports AVX-512F, which was checked just above.
            unsafe { words_avx512(buf, key) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above, for AVX2, checked just above.
            unsafe { words_avx2(buf, key) };
            return;
        }
    }
    words(buf, key);
}

/// [`apply_mask`] without the run-time choice of kernel: the portable word
/// loop, as built for the target. For differential tests and benchmarks.
pub fn apply_mask_portable(buf: &mut [u8], key: [u8; 4], offset: usize) {
    words(buf, rotate(key, offset));
}

/// The word loop, inlined into each kernel so that each is vectorised for
/// its own instruction set.
#[inline(always)]
fn words(buf: &mut [u8], key: [u8; 4]) {
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn words_avx512(buf: &mut [u8], key: [u8; 4]) {
    words(buf, key);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn words_avx2(buf: &mut [u8], key: [u8; 4]) {
    words(buf, key);
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

    type Kernel = fn(&mut [u8], [u8; 4], usize);

    /// Every kernel: the one `apply_mask` picks at run time, the portable
    /// loop, and each wide kernel the CPU has, called directly (the
    /// run-time choice only ever reaches the widest).
    #[allow(unsafe_code)]
    fn kernels() -> Vec<(&'static str, Kernel)> {
        let mut all: Vec<(&'static str, Kernel)> = vec![
            ("apply_mask", apply_mask),
            ("portable", apply_mask_portable),
        ];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                all.push(("avx512f", |b, k, o| {
                    // SAFETY: only listed when the feature was detected.
                    unsafe { words_avx512(b, rotate(k, o)) }
                }));
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                all.push(("avx2", |b, k, o| {
                    // SAFETY: only listed when the feature was detected.
                    unsafe { words_avx2(b, rotate(k, o)) }
                }));
            }
        }
        all
    }

    /// Each kernel equals the byte-at-a-time reference for every
    /// alignment and key phase, on both sides of `WIDE_MIN` and for large
    /// payloads.
    #[test]
    fn matches_bytewise_for_every_length_offset_and_alignment() {
        let key = [0xA1, 0x02, 0xF3, 0x44];
        let source: Vec<u8> = (0..(64 << 10) + 50)
            .map(|i: u32| (i * 7 + 3) as u8)
            .collect();
        let lengths = (0..=2 * WIDE_MIN + 70).chain([4096, (64 << 10) + 37]);
        let kernels = kernels();
        for len in lengths {
            for start in 0..8 {
                for offset in 0..4 {
                    let mut want = source[start..start + len].to_vec();
                    apply_mask_bytewise(&mut want, key, offset);
                    for (name, kernel) in &kernels {
                        let mut got = source[start..start + len].to_vec();
                        kernel(&mut got, key, offset);
                        assert!(
                            got == want,
                            "{name}: start {start} len {len} offset {offset}"
                        );
                    }
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
