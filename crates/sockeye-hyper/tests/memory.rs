//! What an idle upgraded socket keeps on the heap, counted by dhat (this
//! test binary's allocator).
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use sockeye_hyper::server::{Handshake, UpgradeService, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{serve, upgrade_request};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Bytes the handler's future holds across its wait.
const PAD: usize = 32 << 10;
/// Handlers that reached their wait.
static WAITING: AtomicUsize = AtomicUsize::new(0);

fn padded(ws: WebSocket, handshake: Handshake) -> impl Future<Output = ()> + Send {
    drop(handshake);
    padded_socket(ws)
}

async fn padded_socket(mut ws: WebSocket) {
    let pad = [1u8; PAD];
    WAITING.fetch_add(1, Ordering::SeqCst);
    while let Some(Ok(_)) = ws.next().await {}
    std::hint::black_box(&pad);
}

/// Opens `SOCKETS` sockets on `addr` at `path`, waits until their handlers
/// wait, and returns the heap bytes per socket that appeared meanwhile.
async fn heap_per_idle_socket(addr: std::net::SocketAddr, path: &str) -> usize {
    const SOCKETS: usize = 8;
    WAITING.store(0, Ordering::SeqCst);
    let _profiler = dhat::Profiler::builder().testing().build();
    let before = dhat::HeapStats::get().curr_bytes;
    let mut clients = Vec::new();
    for _ in 0..SOCKETS {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(upgrade_request(path, "").as_bytes())
            .await
            .unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.ends_with(b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed during the handshake");
            head.extend_from_slice(&buf[..n]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"));
        clients.push(tcp);
    }
    tokio::time::timeout(Duration::from_secs(5), async {
        while WAITING.load(Ordering::SeqCst) < SOCKETS {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    // hyper's connection tasks end once they handed their sockets over.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let per_socket = (dhat::HeapStats::get().curr_bytes - before) / SOCKETS;
    drop(clients);
    per_socket
}

/// More than the future (it is counted), well under two of it.
fn holds_the_future_once(path: &str, per_socket: usize) {
    assert!(
        per_socket > PAD,
        "{path}: {per_socket} bytes, the future is not counted"
    );
    assert!(
        per_socket < PAD + PAD / 2,
        "{path}: {per_socket} bytes per idle socket for a {PAD}-byte future"
    );
}

/// The socket's task is sized for the handler's future once: the upgrade's
/// state is not kept, nor a second copy of the future (an async block that
/// awaits a captured future holds it twice). One test function: dhat
/// allows one profiler at a time.
#[tokio::test]
async fn an_idle_socket_holds_its_handler_future_once() {
    let addr = serve(UpgradeService::new(padded)).await;
    holds_the_future_once("upgrade service", heap_per_idle_socket(addr, "/").await);

    #[cfg(feature = "axum")]
    {
        use axum::routing::get;
        use sockeye_hyper::axum::WebSocketUpgrade;
        let router = axum::Router::new().route(
            "/ws",
            get(|upgrade: WebSocketUpgrade| async move { upgrade.on_upgrade(padded_socket) }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        holds_the_future_once("axum extractor", heap_per_idle_socket(addr, "/ws").await);
    }
}
