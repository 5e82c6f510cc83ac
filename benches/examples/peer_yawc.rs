//! Echo server on yawc through hyper's upgrade (current-thread runtime),
//! batching like the tungstenite peer; `--deflate` accepts
//! permessage-deflate with yawc's fast compression level.

use futures_util::{FutureExt, SinkExt, StreamExt};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use yawc::{CompressionLevel, OpCode, Options, WebSocket};

async fn handle(mut req: Request<Incoming>) -> yawc::Result<Response<Empty<Bytes>>> {
    let mut options = Options::default()
        .with_limits(64 << 20, 128 << 20)
        .with_utf8();
    if sockeye_benches::flag("--deflate") {
        options = options.with_compression_level(CompressionLevel::fast());
    }
    let (response, fut) = WebSocket::upgrade_with_options(&mut req, options)?;
    tokio::task::spawn_local(async move {
        let Ok(mut ws) = fut.await else { return };
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
                Some(frame) if matches!(frame.opcode(), OpCode::Text | OpCode::Binary) => {
                    if ws.feed(frame).await.is_err() {
                        return;
                    }
                }
                Some(frame) if frame.opcode() == OpCode::Close => return,
                Some(_) => {}
                None => return,
            }
        }
    });
    Ok(response)
}

fn main() -> std::io::Result<()> {
    sockeye_benches::serve(|tcp| async move {
        let service = hyper::service::service_fn(handle);
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades();
        let _ = conn.await;
    })
}
