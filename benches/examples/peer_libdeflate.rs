//! sockeye's raw echo server with libdeflate (libdeflater) compressing its
//! outgoing messages instead of sockeye-deflate's own level-1 encoder: the
//! load benchmark's deflate row for issue-18's "maintained library or ours"
//! question, end to end. Negotiation and inflating stay sockeye-deflate's
//! (no context takeover, as `echo_server --raw --deflate`); each message is
//! compressed at libdeflate's level 1 as one DEFLATE stream ending in a
//! block with BFINAL set, which RFC 7692 §7.2.3.4 allows.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use libdeflater::{CompressionLvl, Compressor};
use sockeye_deflate::DeflateConfig;
use sockeye_proto::extension::{Extension, ExtensionItem, Negotiated, ServerExtension};
use sockeye_proto::frame::{OpCode, Rsv};
use sockeye_proto::{Acceptor, Config, Error, HandshakeError, Message};

/// sockeye-deflate's negotiation, with [`Libdeflate`] installed.
#[derive(Debug)]
struct Negotiate(DeflateConfig);

impl ServerExtension for Negotiate {
    fn negotiate(&self, offers: &[ExtensionItem]) -> Result<Option<Negotiated>, HandshakeError> {
        Ok(
            ServerExtension::negotiate(&self.0, offers)?.map(|(response, inner)| {
                let ext: Box<dyn Extension> = Box::new(Libdeflate {
                    inner,
                    // Level 1, as sockeye-deflate's default (`fastest()` is level 0:
                    // stored blocks, no compression).
                    compressor: Compressor::new(CompressionLvl::new(1).unwrap_or_default()),
                    out: Vec::new(),
                });
                (response, ext)
            }),
        )
    }
}

/// Encodes with libdeflate; decodes with sockeye-deflate's extension.
struct Libdeflate {
    inner: Box<dyn Extension>,
    compressor: Compressor,
    out: Vec<u8>,
}

impl std::fmt::Debug for Libdeflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Libdeflate").finish_non_exhaustive()
    }
}

impl Extension for Libdeflate {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn rsv(&self) -> Rsv {
        self.inner.rsv()
    }

    fn encode(&mut self, _opcode: OpCode, payload: &Bytes) -> Result<Option<(Rsv, Bytes)>, Error> {
        let bound = self.compressor.deflate_compress_bound(payload.len());
        self.out.resize(bound, 0);
        let n = self
            .compressor
            .deflate_compress(payload, &mut self.out)
            .map_err(|_| Error::InvalidInput("libdeflate: output bound too small"))?;
        if n >= payload.len() {
            return Ok(None);
        }
        Ok(Some((
            self.inner.rsv(),
            Bytes::copy_from_slice(&self.out[..n]),
        )))
    }

    fn decode(
        &mut self,
        payload: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), Error> {
        self.inner.decode(payload, fin, out, limit)
    }
}

fn main() -> std::io::Result<()> {
    let config = Config::builder()
        .max_message_size(64 << 20)
        .max_frame_size(64 << 20)
        .build();
    let acceptor = Arc::new(
        Acceptor::new()
            .config(config)
            .extension(Arc::new(Negotiate(DeflateConfig::new()))),
    );
    sockeye_benches::serve(move |tcp| {
        let acceptor = Arc::clone(&acceptor);
        async move {
            let Ok((mut ws, _)) = acceptor.accept(tcp).await else {
                return;
            };
            while let Some(msg) = ws.next().await {
                if let Ok(m @ (Message::Text(_) | Message::Binary(_))) = msg {
                    let _ = ws.feed(m).await;
                }
            }
        }
    })
}
