//! Echo server on ratchet with permessage-deflate available (its own
//! example's shape: write then flush), current-thread runtime.

use bytes::BytesMut;
use ratchet_rs::deflate::DeflateExtProvider;
use ratchet_rs::{Message, PayloadType, SubprotocolRegistry, WebSocketConfig};

fn main() -> std::io::Result<()> {
    sockeye_benches::serve(|tcp| async move {
        let config = WebSocketConfig {
            max_message_size: 64 << 20,
        };
        let Ok(upgrader) = ratchet_rs::accept_with(
            tcp,
            config,
            DeflateExtProvider::default(),
            SubprotocolRegistry::default(),
        )
        .await
        else {
            return;
        };
        let Ok(upgraded) = upgrader.upgrade().await else {
            return;
        };
        let mut ws = upgraded.websocket;
        let mut buf = BytesMut::new();
        loop {
            let kind = match ws.read(&mut buf).await {
                Ok(Message::Text) => PayloadType::Text,
                Ok(Message::Binary) => PayloadType::Binary,
                Ok(Message::Close(_)) | Err(_) => return,
                Ok(_) => continue,
            };
            if ws.write(&mut buf, kind).await.is_err() || ws.flush().await.is_err() {
                return;
            }
            buf.clear();
        }
    })
}
