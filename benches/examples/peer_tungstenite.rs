//! Echo server on tokio-tungstenite (current-thread runtime), batching
//! replies the way its `Sink` allows: feed while messages are ready, flush
//! before waiting.

use futures_util::{FutureExt, SinkExt, StreamExt};

fn main() -> std::io::Result<()> {
    sockeye_benches::serve(|tcp| async move {
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(64 << 20))
            .max_frame_size(Some(64 << 20));
        let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await
        else {
            return;
        };
        loop {
            let next = match ws.next().now_or_never() {
                Some(m) => m,
                None => {
                    if ws.flush().await.is_err() {
                        return;
                    }
                    ws.next().await
                }
            };
            match next {
                Some(Ok(m)) if m.is_text() || m.is_binary() => {
                    if ws.feed(m).await.is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                _ => return,
            }
        }
    })
}
