//! Counters through the `metrics` facade (feature `metrics`); the list is
//! in the [crate docs](crate#metrics).

use metrics::Counter;

const BYTES: &str = "sockeye_deflate_bytes_total";

/// One direction's pair of byte counters, registered once per extension
/// (per connection) so a message costs two increments, not a lookup.
#[derive(Debug)]
pub(crate) struct Stage {
    uncompressed: Counter,
    compressed: Counter,
}

impl Stage {
    fn new(direction: &'static str) -> Self {
        Self {
            uncompressed: metrics::counter!(BYTES, "direction" => direction, "stage" => "uncompressed"),
            compressed: metrics::counter!(BYTES, "direction" => direction, "stage" => "compressed"),
        }
    }

    pub(crate) fn compress() -> Self {
        Self::new("compress")
    }

    pub(crate) fn decompress() -> Self {
        Self::new("decompress")
    }

    pub(crate) fn count(&self, uncompressed: usize, compressed: usize) {
        self.uncompressed.increment(uncompressed as u64);
        self.compressed.increment(compressed as u64);
    }
}

/// Both directions of one connection.
#[derive(Debug)]
pub(crate) struct Deflate {
    pub(crate) compress: Stage,
    pub(crate) decompress: Stage,
}

impl Deflate {
    pub(crate) fn new() -> Self {
        Self {
            compress: Stage::compress(),
            decompress: Stage::decompress(),
        }
    }
}
