//! The axum extractor on a `Router`, with the same tower layers.
#![cfg(feature = "axum")]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Duration;

use axum::Router;
use axum::response::Response;
use axum::routing::get;
use futures_util::StreamExt;
use sockeye_hyper::axum::WebSocketUpgrade;
use sockeye_hyper::client::ClientBuilder;
use sockeye_hyper::server::Upgrader;
use sockeye_hyper::{Config, Message};

#[derive(Clone, Debug)]
struct Identity(&'static str);

async fn ws_handler(
    axum::Extension(identity): axum::Extension<Identity>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let upgrade = upgrade.protocols(["v2", "v1"]);
    let protocol = upgrade.selected_protocol().unwrap_or("none").to_owned();
    upgrade.on_upgrade(move |mut socket| async move {
        let _ = socket
            .send(format!("{} speaks {protocol}", identity.0))
            .await;
        while let Some(Ok(m)) = socket.next().await {
            if m.is_text() || m.is_binary() {
                let _ = socket.send(m).await;
            }
        }
    })
}

async fn app(upgrader: Upgrader) -> std::net::SocketAddr {
    let router = Router::new()
        .route("/", get(|| async { "page" }))
        .route("/ws", get(ws_handler))
        .layer(axum::Extension(Identity("carol")))
        .layer(axum::Extension(upgrader));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

#[tokio::test]
async fn extractor_upgrades_selects_protocols_and_sees_layers() {
    let addr = app(Upgrader::new()).await;
    let (mut ws, resp) = ClientBuilder::new(format!("ws://{addr}/ws"))
        .no_proxy()
        .protocols(["v1", "v2"])
        .connect()
        .await
        .unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "v2");
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("carol speaks v2")
    );
    ws.send("echo").await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("echo"));
}

#[tokio::test]
async fn extractor_rejects_plain_requests_and_honours_the_switch() {
    let addr = app(Upgrader::new()).await;
    let resp = common_get(addr, "/ws").await;
    assert!(resp.starts_with("HTTP/1.1 426"), "{resp}");
    let addr = app(Upgrader::new().disabled(Some(true))).await;
    let r = ClientBuilder::new(format!("ws://{addr}/ws"))
        .no_proxy()
        .connect()
        .await;
    assert!(r.unwrap_err().to_string().contains("503"));
    assert!(common_get(addr, "/").await.ends_with("page"));
}

#[tokio::test]
async fn extractor_uses_the_upgraders_config() {
    let config = Config::builder().max_message_size(1000).build();
    let addr = app(Upgrader::new().config(config)).await;
    let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/ws"))
        .no_proxy()
        .connect()
        .await
        .unwrap();
    let _greeting = ws.next().await;
    ws.send(Message::binary(vec![0u8; 2000])).await.unwrap();
    let close = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap();
    match close {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code.as_u16(), 1009),
        other => panic!("expected close 1009, got {other:?}"),
    }
}

async fn common_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    out
}

/// A `Drain` in the router's extensions tracks the extractor's sockets:
/// shutdown closes them with 1001, and while it runs a new upgrade gets
/// 503.
#[tokio::test]
async fn extractor_sockets_are_drained() {
    use sockeye_hyper::CloseCode;
    use sockeye_hyper::server::Drain;

    let drain = Drain::new().with_timeout(Duration::from_secs(5));
    let router = Router::new()
        .route(
            "/ws",
            get(|upgrade: WebSocketUpgrade| async move {
                upgrade.on_upgrade(|mut socket| async move {
                    while let Some(Ok(m)) = socket.next().await {
                        if m.is_text() {
                            let _ = socket.send(m).await;
                        }
                    }
                })
            }),
        )
        .layer(axum::Extension(drain.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let client = ClientBuilder::new(format!("ws://{addr}/ws")).no_proxy();

    let (mut ws, _) = client.connect().await.unwrap();
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hi"));
    assert_eq!(drain.open_sockets(), 1);

    let shutdown = tokio::spawn({
        let drain = drain.clone();
        async move { drain.shutdown().await }
    });
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        Ok(Some(Ok(Message::Close(Some(frame))))) => assert_eq!(frame.code, CloseCode::GOING_AWAY),
        other => panic!("expected close 1001, got {other:?}"),
    }
    // Draining: refused before the upgrade.
    match client.connect().await {
        Err(e) => assert!(e.to_string().contains("503"), "{e}"),
        Ok(_) => panic!("upgraded while draining"),
    }
    while ws.next().await.is_some() {}
    let report = shutdown.await.unwrap();
    assert_eq!((report.closed, report.forced), (1, 0));
}
