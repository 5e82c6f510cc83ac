//! Compressor and decompressor states shared by connections that reset
//! theirs after every message (no context takeover): a connection holds one
//! only while it encodes or decodes a message.

use std::sync::{Mutex, MutexGuard};

use flate2::{Compress, Compression, Decompress};

/// The most idle states kept of each kind.
const MAX_IDLE: usize = 64;

#[derive(Default)]
pub(crate) struct Pool {
    compressors: Mutex<Vec<(u32, u8, Compress)>>,
    decompressors: Mutex<Vec<(u8, Decompress)>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("idle_compressors", &lock(&self.compressors).len())
            .field("idle_decompressors", &lock(&self.decompressors).len())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A raw-deflate compressor (no zlib header) with a 2^bits window.
pub(crate) fn new_compressor(level: u32, bits: u8) -> Compress {
    Compress::new_with_window_bits(Compression::new(level), false, bits)
}

/// A raw-deflate decompressor with a 2^bits window.
pub(crate) fn new_decompressor(bits: u8) -> Decompress {
    Decompress::new_with_window_bits(false, bits)
}

impl Pool {
    pub(crate) fn take_compressor(&self, level: u32, bits: u8) -> Compress {
        let mut idle = lock(&self.compressors);
        match idle.iter().position(|(l, b, _)| *l == level && *b == bits) {
            Some(i) => idle.swap_remove(i).2,
            None => {
                drop(idle);
                new_compressor(level, bits)
            }
        }
    }

    /// Takes back a compressor that was reset.
    pub(crate) fn put_compressor(&self, level: u32, bits: u8, c: Compress) {
        let mut idle = lock(&self.compressors);
        if idle.len() < MAX_IDLE {
            idle.push((level, bits, c));
        }
    }

    pub(crate) fn take_decompressor(&self, bits: u8) -> Decompress {
        let mut idle = lock(&self.decompressors);
        match idle.iter().position(|(b, _)| *b == bits) {
            Some(i) => idle.swap_remove(i).1,
            None => {
                drop(idle);
                new_decompressor(bits)
            }
        }
    }

    /// Takes back a decompressor that was reset.
    pub(crate) fn put_decompressor(&self, bits: u8, d: Decompress) {
        let mut idle = lock(&self.decompressors);
        if idle.len() < MAX_IDLE {
            idle.push((bits, d));
        }
    }

    #[cfg(test)]
    pub(crate) fn idle(&self) -> (usize, usize) {
        (
            lock(&self.compressors).len(),
            lock(&self.decompressors).len(),
        )
    }
}
