//! Fan-out peer: axum's WebSocket with a `tokio::sync::broadcast` channel,
//! the recipe of axum's chat example. Every text message a client sends is
//! broadcast to every connected client (itself included); a receiver that
//! lags past the channel's 1024 messages skips what it missed.

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::sync::broadcast;

fn main() -> std::io::Result<()> {
    let (tx, _) = broadcast::channel::<Utf8Bytes>(1024);
    let app = Router::new().route("/ws", get(upgrade)).with_state(tx);
    sockeye_benches::serve(move |tcp| {
        let service = TowerToHyperService::new(app.clone());
        async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades()
                .await;
        }
    })
}

async fn upgrade(ws: WebSocketUpgrade, State(tx): State<broadcast::Sender<Utf8Bytes>>) -> Response {
    ws.on_upgrade(move |socket| client(socket, tx))
}

async fn client(socket: WebSocket, tx: broadcast::Sender<Utf8Bytes>) {
    let mut rx = tx.subscribe();
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Ok(text) => {
                    if sink.send(Message::Text(text)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let _ = tx.send(text);
                }
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}
