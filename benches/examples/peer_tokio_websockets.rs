//! Echo server on tokio-websockets (current-thread runtime), batching like
//! the tungstenite peer.

use futures_util::{FutureExt, SinkExt, StreamExt};

fn main() -> std::io::Result<()> {
    sockeye_benches::serve(|tcp| async move {
        let limits = tokio_websockets::Limits::default().max_payload_len(Some(64 << 20));
        let Ok((_req, mut ws)) = tokio_websockets::ServerBuilder::new()
            .limits(limits)
            .accept(tcp)
            .await
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
