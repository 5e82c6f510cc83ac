//! [`DeflateConfig`]: the policy of one side, the negotiation in both roles,
//! and compress-once prepared messages.

use std::sync::Arc;

use sockeye_proto::extension::{ClientExtension, Extension, ExtensionItem, ServerExtension};
use sockeye_proto::frame::Rsv;
use sockeye_proto::{HandshakeError, Message, PreparedMessage, Role};

use crate::codec::{PerMessageDeflate, compress_fresh, shared_key};
use crate::error::Error;
use crate::params::{Agreement, Params, is_deflate};
use crate::pool::Pool;

/// permessage-deflate settings for a server or a client.
///
/// | setting | default | meaning |
/// |---|---|---|
/// | [`level`](Self::level) | 1 | level 0–9: fast by default (see below) |
/// | [`threshold`](Self::threshold) | 256 bytes | smaller messages go out uncompressed |
/// | [`server_no_context_takeover`](Self::server_no_context_takeover) | on | the server's compressor is reset after each message and pooled: no compressor held per connection, and a message can be compressed once for every subscriber |
/// | [`client_no_context_takeover`](Self::client_no_context_takeover) | off | ask clients to reset theirs: the server's decompressor is then pooled too |
/// | [`server_max_window_bits`](Self::server_max_window_bits) | 15 | the server's window, 9–15 |
/// | [`client_max_window_bits`](Self::client_max_window_bits) | 15 | the window clients are asked to use, 9–15 |
///
/// Memory per connection (zlib's formulas): a compressor held with context
/// takeover is about 2^(w+3) bytes + 128 KiB (384 KiB at w = 15, 132 KiB at
/// w = 9), a decompressor 2^w + 7 KiB (39 KiB at w = 15). With the defaults a
/// server connection holds one decompressor (allocated on the first
/// compressed message) and no compressor; with both `no_context_takeover`
/// options, none while idle. Inflation stops at the connection's
/// message-size limit (close 1009), whatever the compression ratio.
///
/// Without context takeover at level 1, messages up to 64 KiB are
/// compressed by the crate's own one-shot encoder (greedy matches, fixed
/// Huffman code, as zlib's level 1) with a hash table sized to the message
/// instead of zlib's (128 KiB in zlib-rs), which would be cleared for every
/// message: 1 KiB of JSON in 1.8 µs instead of 11 µs (criterion,
/// `cargo bench -p sockeye-benches --bench deflate`). Other levels, larger messages
/// and context takeover use zlib. A message that compression would not
/// shrink goes out uncompressed when no context is kept.
///
/// One value serves as the server policy ([`ServerExtension`], the
/// [`DeflateLayer`](crate::DeflateLayer)) and as the client offer
/// ([`ClientExtension`]); clones share one pool of compressor states.
///
/// ```
/// use sockeye_deflate::DeflateConfig;
/// use sockeye_proto::extension::ExtensionItem;
///
/// let config = DeflateConfig::new().client_no_context_takeover(true).threshold(128);
/// let offers = ExtensionItem::parse_list("permessage-deflate; client_max_window_bits").unwrap();
/// let (response, agreement) = config.negotiate(&offers).unwrap();
/// assert_eq!(
///     response.to_string(),
///     "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
/// );
/// assert!(agreement.client_no_context_takeover);
/// ```
#[derive(Clone, Debug)]
pub struct DeflateConfig {
    level: u32,
    threshold: usize,
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: u8,
    client_max_window_bits: u8,
    pool: Arc<Pool>,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl DeflateConfig {
    /// The defaults of the table above.
    pub fn new() -> Self {
        Self {
            level: 1,
            threshold: 256,
            server_no_context_takeover: true,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            pool: Arc::default(),
        }
    }

    /// The zlib compression level, 0 (store) to 9 (best).
    #[must_use]
    pub fn level(mut self, level: u32) -> Self {
        self.level = level.min(9);
        self
    }

    /// Messages shorter than this are sent uncompressed.
    #[must_use]
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// Whether the server resets its compressor after each message (a
    /// client asks for it in its offer).
    #[must_use]
    pub fn server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }

    /// Whether the client resets its compressor after each message (a
    /// server asks for it in its response; a client announces it).
    #[must_use]
    pub fn client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }

    /// The server's window, 9 to 15 bits (zlib cannot compress with 8).
    #[must_use]
    pub fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits.clamp(9, 15);
        self
    }

    /// The client's window, 9 to 15 bits.
    #[must_use]
    pub fn client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = bits.clamp(9, 15);
        self
    }

    /// Server side (RFC 7692 §5, §7.1): accepts the first acceptable offer,
    /// declining offers with unknown, duplicate or invalid parameters and
    /// those asking for an 8-bit server window. Returns the response element
    /// and the agreement.
    pub fn negotiate(&self, offers: &[ExtensionItem]) -> Option<(ExtensionItem, Agreement)> {
        offers.iter().filter(|o| is_deflate(o)).find_map(|offer| {
            let p = match Params::parse(offer) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(error = %e, "declining a permessage-deflate offer");
                    return None;
                }
            };
            if p.server_max_window_bits == Some(8) {
                return None;
            }
            let server_bits = p
                .server_max_window_bits
                .map_or(self.server_max_window_bits, |b| {
                    b.min(self.server_max_window_bits)
                });
            let (client_bits, echo_client_bits) = match p.client_max_window_bits {
                None => (15, false),
                Some(offered) => {
                    let bits = offered.unwrap_or(15).min(self.client_max_window_bits);
                    (bits, offered.is_some() || bits < 15)
                }
            };
            let agreement = Agreement {
                server_no_context_takeover: p.server_no_context_takeover
                    || self.server_no_context_takeover,
                client_no_context_takeover: p.client_no_context_takeover
                    || self.client_no_context_takeover,
                server_max_window_bits: server_bits,
                client_max_window_bits: client_bits,
            };
            Some((agreement.to_item(echo_client_bits), agreement))
        })
    }

    /// The client's offer: `client_max_window_bits` (so the server may
    /// limit our window) plus what this config asks for.
    pub fn offer(&self) -> ExtensionItem {
        self.offer_params().to_item()
    }

    fn offer_params(&self) -> Params {
        Params {
            server_no_context_takeover: self.server_no_context_takeover,
            client_no_context_takeover: self.client_no_context_takeover,
            server_max_window_bits: (self.server_max_window_bits < 15)
                .then_some(self.server_max_window_bits),
            client_max_window_bits: Some(
                (self.client_max_window_bits < 15).then_some(self.client_max_window_bits),
            ),
        }
    }

    /// Client side (RFC 7692 §5, §7.1): checks the server's response
    /// against our offer. An unknown, duplicate or invalid parameter, a
    /// `client_max_window_bits` we did not offer or cannot honour (8 bits,
    /// or larger than we offered), or a server window larger than we asked
    /// for fails the connection.
    pub fn accept_response(&self, response: &ExtensionItem) -> Result<Agreement, Error> {
        let offered = self.offer_params();
        let p = Params::parse(response)?;
        let client_max_window_bits =
            match (p.client_max_window_bits, offered.client_max_window_bits) {
                (None, Some(ours)) => ours.unwrap_or(15),
                (None, None) => 15,
                (Some(_), None) => return Err(Error::UnofferedParameter("client_max_window_bits")),
                (Some(None), Some(_)) => return Err(Error::InvalidValue("client_max_window_bits")),
                (Some(Some(8)), Some(_)) => return Err(Error::UnsupportedWindowBits(8)),
                (Some(Some(bits)), Some(ours)) => {
                    if ours.is_some_and(|o| bits > o) {
                        return Err(Error::InvalidValue("client_max_window_bits"));
                    }
                    bits
                }
            };
        let server_max_window_bits =
            match (p.server_max_window_bits, offered.server_max_window_bits) {
                (Some(bits), Some(ours)) if bits > ours => {
                    return Err(Error::WindowLargerThanOffered);
                }
                (Some(bits), _) => bits,
                (None, Some(_)) => return Err(Error::InvalidValue("server_max_window_bits")),
                (None, None) => 15,
            };
        Ok(Agreement {
            server_no_context_takeover: p.server_no_context_takeover,
            client_no_context_takeover: p.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits,
            client_max_window_bits,
        })
    }

    /// The extension for one connection with this agreement.
    pub fn extension(&self, role: Role, agreement: Agreement) -> PerMessageDeflate {
        PerMessageDeflate::new(
            role,
            agreement,
            self.level,
            self.threshold,
            Arc::clone(&self.pool),
        )
    }

    /// A message framed once, and compressed once for every server
    /// connection that agreed on `server_no_context_takeover` with this
    /// config's level and window (they send the compressed frame; others the
    /// plain one). Below the threshold it is not compressed.
    ///
    /// ```
    /// use sockeye_deflate::DeflateConfig;
    /// use sockeye_proto::Message;
    /// let config = DeflateConfig::new().threshold(0);
    /// let prepared = config.prepare(Message::text("tick ".repeat(100))).unwrap();
    /// assert!(prepared.frame().len() > 500); // the plain frame is kept too
    /// ```
    pub fn prepare(&self, message: Message) -> Result<PreparedMessage, sockeye_proto::Error> {
        let prepared = PreparedMessage::new(message)?;
        if prepared.opcode().is_control() || prepared.payload().len() < self.threshold {
            return Ok(prepared);
        }
        let bits = self.server_max_window_bits;
        let payload = prepared.payload();
        let key = shared_key(self.level, bits, self.threshold);
        Ok(
            match compress_fresh(&self.pool, self.level, bits, &payload)? {
                Some(compressed) => {
                    #[cfg(feature = "metrics")]
                    crate::observe::Stage::compress().count(payload.len(), compressed.len());
                    prepared.with_encoding(key, Rsv::RSV1, &compressed)
                }
                // Compressing would not shrink it: it goes out as it is.
                None => prepared.with_encoding(key, Rsv::NONE, &payload),
            },
        )
    }

    #[cfg(test)]
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }
}

impl ServerExtension for DeflateConfig {
    fn negotiate(
        &self,
        offers: &[ExtensionItem],
    ) -> Result<Option<sockeye_proto::extension::Negotiated>, HandshakeError> {
        Ok(
            DeflateConfig::negotiate(self, offers).map(|(response, agreement)| {
                let ext: Box<dyn Extension> = Box::new(self.extension(Role::Server, agreement));
                (response, ext)
            }),
        )
    }
}

impl ClientExtension for DeflateConfig {
    fn offers(&self) -> Vec<ExtensionItem> {
        vec![self.offer()]
    }

    fn accept(&self, response: &ExtensionItem) -> Result<Box<dyn Extension>, HandshakeError> {
        if !is_deflate(response) {
            return Err(HandshakeError::UnofferedExtension);
        }
        let agreement = self.accept_response(response)?;
        Ok(Box::new(self.extension(Role::Client, agreement)))
    }
}
