//! Helpers for integration tests over real sockets on 127.0.0.1.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;

use sockeye_proto::handshake::client::ClientRequest;
use sockeye_proto::{Acceptor, Config, WebSocket, client_handshake};
use tokio::net::{TcpListener, TcpStream};

/// Starts a server on 127.0.0.1:0 that runs `handler` for every accepted
/// socket; returns its address.
pub async fn server<F, Fut>(acceptor: Acceptor, handler: F) -> SocketAddr
where
    F: Fn(WebSocket<TcpStream>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = std::sync::Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                if let Ok((ws, _)) = acceptor.accept(tcp).await {
                    handler(ws).await;
                }
            });
        }
    });
    addr
}

/// Connects a client with `config`.
pub async fn client(addr: SocketAddr, config: Config) -> WebSocket<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (ws, _) = client_handshake(tcp, ClientRequest::new(format!("ws://{addr}/")), config)
        .await
        .unwrap();
    ws
}

/// A masked client frame.
pub fn masked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let key = [1u8, 2, 3, 4];
    let mut out = vec![first];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// An upgrade request head.
pub fn upgrade_request(extra: &str) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}
