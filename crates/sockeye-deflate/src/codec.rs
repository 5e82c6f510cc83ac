//! The permessage-deflate [`Extension`]: whole-message DEFLATE with RSV1,
//! the `00 00 ff ff` tail removed on send and restored on receipt (RFC 7692
//! §7.2), context takeover or not as agreed, inflation capped at the
//! message-size limit.

use std::sync::Arc;

use bytes::Bytes;
use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};
use sockeye_proto::frame::{OpCode, Rsv};
use sockeye_proto::{CapacityError, CloseCode, Error, Extension, ExtensionError, Role};

use crate::oneshot;
use crate::params::{Agreement, EXTENSION};
use crate::pool::{Pool, new_compressor, new_decompressor};

/// The tail a sync flush ends with, which the wire leaves out.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// Inflate output is produced in chunks of at most this size, so a bomb is
/// stopped within one chunk of the limit.
const CHUNK: usize = 64 << 10;

/// permessage-deflate on one connection.
///
/// Memory: a compressor with a 2^w window holds about 2^(w+3) bytes plus
/// 128 KiB of tables (about 384 KiB at w = 15; less with smaller windows),
/// a decompressor about 2^w + 7 KiB (39 KiB at w = 15). Without context
/// takeover on a side, that side's state is borrowed from a pool for the
/// duration of one message, so an idle connection holds nothing for it.
#[derive(Debug)]
pub struct PerMessageDeflate {
    role: Role,
    agreement: Agreement,
    level: u32,
    threshold: usize,
    pool: Arc<Pool>,
    compressor: Option<Compress>,
    decompressor: Option<Decompress>,
    #[cfg(feature = "metrics")]
    metrics: crate::observe::Deflate,
}

fn corrupt() -> Error {
    ExtensionError::new(CloseCode::INVALID_PAYLOAD, "invalid compressed data").into()
}

fn internal(what: &'static str) -> Error {
    ExtensionError::new(CloseCode::INTERNAL_ERROR, what).into()
}

impl PerMessageDeflate {
    pub(crate) fn new(
        role: Role,
        agreement: Agreement,
        level: u32,
        threshold: usize,
        pool: Arc<Pool>,
    ) -> Self {
        Self {
            role,
            agreement,
            level,
            threshold,
            pool,
            compressor: None,
            decompressor: None,
            #[cfg(feature = "metrics")]
            metrics: crate::observe::Deflate::new(),
        }
    }

    /// The agreed parameters.
    pub fn agreement(&self) -> &Agreement {
        &self.agreement
    }

    /// Our window (zlib compresses with 9 bits at least).
    fn own_bits(&self) -> u8 {
        let bits = match self.role {
            Role::Server => self.agreement.server_max_window_bits,
            Role::Client => self.agreement.client_max_window_bits,
        };
        bits.max(9)
    }

    fn own_resets(&self) -> bool {
        match self.role {
            Role::Server => self.agreement.server_no_context_takeover,
            Role::Client => self.agreement.client_no_context_takeover,
        }
    }

    /// The peer's window: inflating with a window at least as large is
    /// always correct.
    fn peer_bits(&self) -> u8 {
        let bits = match self.role {
            Role::Server => self.agreement.client_max_window_bits,
            Role::Client => self.agreement.server_max_window_bits,
        };
        bits.max(9)
    }

    fn peer_resets(&self) -> bool {
        match self.role {
            Role::Server => self.agreement.client_no_context_takeover,
            Role::Client => self.agreement.server_no_context_takeover,
        }
    }
}

/// Compresses `input` with a sync flush and strips the tail.
pub(crate) fn compress_message(c: &mut Compress, input: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    let mut consumed = 0;
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(1024));
        }
        let before = c.total_in();
        c.compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
            .map_err(|_| internal("deflate failed"))?;
        consumed += (c.total_in() - before) as usize;
        // The flush is complete once all input is in and output space is left.
        if consumed == input.len() && out.len() < out.capacity() {
            break;
        }
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    } else if !out.is_empty() {
        return Err(internal("deflate did not end with a sync flush"));
    }
    // Empty output: nothing was pending since the last flush (an empty
    // message with context takeover). An empty payload inflates to nothing.
    Ok(out)
}

/// Compresses one message with an empty history (no context takeover);
/// `None` when that would not make it smaller, and it goes out as it is.
///
/// At level 1, messages up to 64 KiB use the [`oneshot`] encoder, which
/// starts afresh for free; zlib clears a 128 KiB table per message.
pub(crate) fn compress_fresh(
    pool: &Pool,
    level: u32,
    bits: u8,
    input: &[u8],
) -> Result<Option<Vec<u8>>, Error> {
    let out = if level == 1 && input.len() <= oneshot::MAX_INPUT {
        oneshot::compress(input, 1 << bits)
    } else {
        let mut c = pool.take_compressor(level, bits);
        let result = compress_message(&mut c, input);
        c.reset();
        pool.put_compressor(level, bits, c);
        result?
    };
    Ok((out.len() < input.len()).then_some(out))
}

/// Inflates `input` onto `out`, never letting `out` pass `limit`: each step
/// produces into at most `limit - len + 1` bytes of room, so one byte over
/// is detected before more is made. The room starts near the expected size
/// and doubles up to [`CHUNK`], so small messages stay cheap.
///
/// Returns whether the input ended exactly at the end of a DEFLATE stream
/// (a block with BFINAL): the stream is then over, and the sync-flush tail
/// must not be fed to the fresh state.
fn inflate(
    d: &mut Decompress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<bool, Error> {
    let mut step = input.len().saturating_mul(4).clamp(256, CHUNK);
    loop {
        let room = (limit - out.len().min(limit)).saturating_add(1).min(step);
        let start = out.len();
        out.resize(start + room, 0);
        let (before_in, before_out) = (d.total_in(), d.total_out());
        let status = d.decompress(input, &mut out[start..], FlushDecompress::Sync);
        let used = (d.total_in() - before_in) as usize;
        let made = (d.total_out() - before_out) as usize;
        out.truncate(start + made);
        let status = status.map_err(|_| corrupt())?;
        input = &input[used..];
        if out.len() > limit {
            return Err(CapacityError::MessageTooLarge {
                size: out.len() as u64,
                max: limit,
            }
            .into());
        }
        if status == Status::StreamEnd {
            // A block with BFINAL ended the stream (RFC 7692 §7.2.3.3): what
            // follows, if anything, starts a new one.
            d.reset(false);
            if input.is_empty() {
                return Ok(true);
            }
        } else if input.is_empty() && made < room {
            return Ok(false);
        }
        if used == 0 && made == 0 {
            // Input left, room left, and no progress: the data is broken.
            return Err(corrupt());
        }
        if made == room {
            step = (step * 2).min(CHUNK);
        }
    }
}

impl Extension for PerMessageDeflate {
    fn name(&self) -> &str {
        EXTENSION
    }

    fn rsv(&self) -> Rsv {
        Rsv::RSV1
    }

    fn encode(&mut self, _opcode: OpCode, payload: &Bytes) -> Result<Option<(Rsv, Bytes)>, Error> {
        if payload.is_empty() || payload.len() < self.threshold {
            return Ok(None);
        }
        let bits = self.own_bits();
        let compressed = if self.own_resets() {
            compress_fresh(&self.pool, self.level, bits, payload)?
        } else {
            let c = self
                .compressor
                .get_or_insert_with(|| new_compressor(self.level, bits));
            Some(compress_message(c, payload)?)
        };
        #[cfg(feature = "metrics")]
        if let Some(c) = &compressed {
            self.metrics.compress.count(payload.len(), c.len());
        }
        Ok(compressed.map(|c| (Rsv::RSV1, Bytes::from(c))))
    }

    fn decode(
        &mut self,
        payload: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), Error> {
        let bits = self.peer_bits();
        let mut d = match self.decompressor.take() {
            Some(d) => d,
            None if self.peer_resets() => self.pool.take_decompressor(bits),
            None => new_decompressor(bits),
        };
        #[cfg(feature = "metrics")]
        let before = out.len();
        let mut result = inflate(&mut d, payload, out, limit);
        if fin && matches!(result, Ok(false)) {
            result = inflate(&mut d, &TAIL, out, limit);
        }
        // On an error the connection fails; the broken state is dropped here.
        result?;
        #[cfg(feature = "metrics")]
        self.metrics
            .decompress
            .count(out.len() - before, payload.len());
        if fin && self.peer_resets() {
            d.reset(false);
            self.pool.put_decompressor(bits, d);
        } else {
            self.decompressor = Some(d);
        }
        Ok(())
    }

    fn shared_encoding(&self) -> Option<u64> {
        (self.role == Role::Server && self.own_resets())
            .then(|| shared_key(self.level, self.own_bits(), self.threshold))
    }
}

/// The key of compressed-once messages: level, window and threshold decide
/// the bytes (and whether there are any).
pub(crate) fn shared_key(level: u32, bits: u8, threshold: usize) -> u64 {
    (u64::from(level) << 56) | (u64::from(bits) << 48) | (threshold as u64 & 0xFFFF_FFFF_FFFF)
}
