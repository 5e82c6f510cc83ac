//! Limits and timers of a connection, with a by-value builder.

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// Connection limits and timers. Every limit has a default that passes the
/// Autobahn suite and real browsers, and is configurable.
///
/// | setting | default | on overflow |
/// |---|---|---|
/// | [`max_frame_size`](ConfigBuilder::max_frame_size) | 16 MiB | close 1009, checked on the header before reading the payload |
/// | [`max_message_size`](ConfigBuilder::max_message_size) | 64 MiB | close 1009, after reassembly and after any extension decoding |
/// | [`max_fragments`](ConfigBuilder::max_fragments) | 131 072 | close 1008 (empty fragments count) |
/// | [`write_high_water_mark`](ConfigBuilder::write_high_water_mark) | 1 MiB | `send` refused, the `Sink` waits for the buffer to drain |
/// | [`auto_fragment_size`](ConfigBuilder::auto_fragment_size) | off | outgoing data messages split into frames of this size |
/// | [`max_header_bytes`](ConfigBuilder::max_header_bytes) | 16 KiB | handshake refused with 431 |
/// | [`max_headers`](ConfigBuilder::max_headers) | 100 | handshake refused with 431 |
/// | [`handshake_timeout`](ConfigBuilder::handshake_timeout) | 10 s | handshake aborted |
/// | [`close_timeout`](ConfigBuilder::close_timeout) | 5 s | transport dropped without the peer's close |
/// | [`keepalive_interval`](ConfigBuilder::keepalive_interval) | off | a ping after this much silence from the peer |
/// | [`pong_timeout`](ConfigBuilder::pong_timeout) | 30 s | peer declared dead, close 1011 |
/// | [`idle_timeout`](ConfigBuilder::idle_timeout) | off | close 1001 after no data message either way |
///
/// ```
/// use std::time::Duration;
/// use sockeye_proto::Config;
/// let config = Config::builder()
///     .max_message_size(1 << 20)
///     .keepalive_interval(Some(Duration::from_secs(20)))
///     .build();
/// assert_eq!(config.max_message_size(), 1 << 20);
/// assert_eq!(config.max_frame_size(), 1 << 20); // never above the message limit
/// ```
///
/// Cloning is cheap: the values are shared, so the thousands of connections
/// made from one configuration hold a pointer each, not a copy.
#[derive(Clone)]
pub struct Config(Arc<Values>);

/// The values behind a [`Config`], in a struct of the same name so that
/// `{:?}` prints `Config { .. }`.
mod values {
    use std::time::Duration;

    #[derive(Clone, Debug)]
    pub(super) struct Config {
        pub(super) max_frame_size: usize,
        pub(super) max_message_size: usize,
        pub(super) max_fragments: usize,
        pub(super) write_high_water_mark: usize,
        pub(super) auto_fragment_size: Option<usize>,
        pub(super) max_header_bytes: usize,
        pub(super) max_headers: usize,
        pub(super) handshake_timeout: Duration,
        pub(super) close_timeout: Duration,
        pub(super) keepalive_interval: Option<Duration>,
        pub(super) pong_timeout: Duration,
        pub(super) idle_timeout: Option<Duration>,
        pub(super) accept_unmasked_frames: bool,
    }
}
use values::Config as Values;

/// The defaults, allocated once.
static DEFAULT: LazyLock<Config> = LazyLock::new(|| Config(Arc::new(Values::default())));

impl Default for Config {
    fn default() -> Self {
        DEFAULT.clone()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Default for Values {
    fn default() -> Self {
        Self {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            max_fragments: 131_072,
            write_high_water_mark: 1 << 20,
            auto_fragment_size: None,
            max_header_bytes: 16 << 10,
            max_headers: 100,
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            keepalive_interval: None,
            pong_timeout: Duration::from_secs(30),
            idle_timeout: None,
            accept_unmasked_frames: false,
        }
    }
}

impl Config {
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder(Values::default())
    }

    /// The largest frame payload accepted.
    pub fn max_frame_size(&self) -> usize {
        self.0.max_frame_size
    }
    /// The largest message accepted, after reassembly and decoding.
    pub fn max_message_size(&self) -> usize {
        self.0.max_message_size
    }
    /// The most frames one message may span.
    pub fn max_fragments(&self) -> usize {
        self.0.max_fragments
    }
    /// Outgoing bytes buffered before `send` pushes back.
    pub fn write_high_water_mark(&self) -> usize {
        self.0.write_high_water_mark
    }
    /// Outgoing data messages are split into frames of at most this size.
    pub fn auto_fragment_size(&self) -> Option<usize> {
        self.0.auto_fragment_size
    }
    /// The largest handshake header block (request or response head).
    pub fn max_header_bytes(&self) -> usize {
        self.0.max_header_bytes
    }
    /// The most header lines in a handshake.
    pub fn max_headers(&self) -> usize {
        self.0.max_headers
    }
    /// The deadline for the whole opening handshake.
    pub fn handshake_timeout(&self) -> Duration {
        self.0.handshake_timeout
    }
    /// How long to wait for the peer's close frame (and, for a client, for
    /// the server to close TCP) after ours is sent.
    pub fn close_timeout(&self) -> Duration {
        self.0.close_timeout
    }
    /// Send a ping after this much silence from the peer.
    pub fn keepalive_interval(&self) -> Option<Duration> {
        self.0.keepalive_interval
    }
    /// After a keepalive ping, how long the peer has to show it is alive.
    pub fn pong_timeout(&self) -> Duration {
        self.0.pong_timeout
    }
    /// Close after this long without a data message in either direction.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.0.idle_timeout
    }
    /// Whether a server accepts unmasked client frames (never by default).
    pub fn accept_unmasked_frames(&self) -> bool {
        self.0.accept_unmasked_frames
    }
}

/// Builds a [`Config`]; every method takes and returns the builder by value.
#[derive(Clone, Debug)]
#[must_use]
pub struct ConfigBuilder(Values);

impl ConfigBuilder {
    /// The largest frame payload accepted (default 16 MiB). Capped at the
    /// message size limit.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.0.max_frame_size = bytes;
        self
    }
    /// The largest message accepted (default 64 MiB), measured after
    /// reassembly and after any extension decoding (decompression).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.0.max_message_size = bytes;
        self
    }
    /// The most frames one message may span, empty ones included (default
    /// 131 072; at least 65 536 are needed for Autobahn 9.3.1).
    pub fn max_fragments(mut self, frames: usize) -> Self {
        self.0.max_fragments = frames.max(1);
        self
    }
    /// Outgoing bytes buffered before sending pushes back (default 1 MiB).
    pub fn write_high_water_mark(mut self, bytes: usize) -> Self {
        self.0.write_high_water_mark = bytes.max(1);
        self
    }
    /// Split outgoing data messages into frames of at most this many bytes
    /// (default: off, one frame per message). `Some(0)` is treated as off.
    pub fn auto_fragment_size(mut self, bytes: Option<usize>) -> Self {
        self.0.auto_fragment_size = bytes.filter(|&b| b > 0);
        self
    }
    /// The largest handshake head in bytes (default 16 KiB; 431 beyond).
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.0.max_header_bytes = bytes;
        self
    }
    /// The most header lines in a handshake (default 100; 431 beyond).
    pub fn max_headers(mut self, count: usize) -> Self {
        self.0.max_headers = count;
        self
    }
    /// The deadline for the opening handshake (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.0.handshake_timeout = timeout;
        self
    }
    /// How long to wait for the close handshake to finish (default 5 s).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.0.close_timeout = timeout;
        self
    }
    /// Ping the peer after this much silence (default: off).
    pub fn keepalive_interval(mut self, interval: Option<Duration>) -> Self {
        self.0.keepalive_interval = interval;
        self
    }
    /// How long a keepalive ping may go unanswered (default 30 s).
    pub fn pong_timeout(mut self, timeout: Duration) -> Self {
        self.0.pong_timeout = timeout;
        self
    }
    /// Close after this long without a data message (default: off).
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.0.idle_timeout = timeout;
        self
    }
    /// Accept unmasked frames from clients, against RFC 6455 §5.1. Only for
    /// trusted peers that cannot mask; never needed by browsers.
    pub fn dangerous_accept_unmasked_frames(mut self, accept: bool) -> Self {
        self.0.accept_unmasked_frames = accept;
        self
    }
    /// The finished configuration.
    pub fn build(self) -> Config {
        let mut c = self.0;
        c.max_frame_size = c.max_frame_size.min(c.max_message_size);
        Config(Arc::new(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connections made from one configuration share its values: a clone
    /// (what each connection keeps) is a pointer, and the defaults are
    /// allocated once.
    #[test]
    fn clones_share_the_values() {
        let config = Config::builder().max_message_size(1000).build();
        let copy = config.clone();
        assert!(Arc::ptr_eq(&config.0, &copy.0));
        assert_eq!(copy.max_message_size(), 1000);
        assert_eq!(copy.max_frame_size(), 1000);
        assert!(Arc::ptr_eq(&Config::default().0, &Config::default().0));
        assert_eq!(std::mem::size_of::<Config>(), std::mem::size_of::<usize>());
        assert!(format!("{config:?}").starts_with("Config { max_frame_size: 1000,"));
    }
}
