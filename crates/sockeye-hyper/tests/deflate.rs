//! permessage-deflate through the tower layer in front of `UpgradeService`
//! and on an axum `Router`, with the client offer from `ClientBuilder::deflate`.
#![cfg(all(feature = "deflate", feature = "axum"))]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use futures_util::StreamExt;
use http::Request;
use sockeye_deflate::{DeflateConfig, DeflateLayer};
use sockeye_hyper::Message;
use sockeye_hyper::client::ClientBuilder;
use sockeye_hyper::server::{Handshake, UpgradeService, WebSocket};
use tower::{Layer, ServiceBuilder};

use common::{echo, raw_exchange, serve, upgrade_request};

/// Echoes, then reports whether the socket compresses.
async fn echo_and_report(mut ws: WebSocket, _hs: Handshake) {
    let name = ws
        .connection()
        .extension()
        .map(|e| e.name().to_owned())
        .unwrap_or_default();
    let _ = ws.send(format!("extension: {name}")).await;
    echo(ws, _hs).await;
}

#[tokio::test]
async fn layer_negotiates_and_the_socket_compresses() {
    let service =
        DeflateLayer::new(DeflateConfig::new()).layer(UpgradeService::new(echo_and_report));
    let addr = serve(service).await;
    let (mut ws, resp) = ClientBuilder::new(format!("ws://{addr}/"))
        .no_proxy()
        .deflate(DeflateConfig::new())
        .connect()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["sec-websocket-extensions"],
        "permessage-deflate; server_no_context_takeover"
    );
    assert_eq!(
        ws.connection().extension().unwrap().name(),
        "permessage-deflate"
    );
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("extension: permessage-deflate")
    );
    let text = "compressible ".repeat(10_000);
    ws.send(text.as_str()).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text(text.as_str())
    );
}

#[tokio::test]
async fn without_an_offer_nothing_is_negotiated() {
    let service =
        DeflateLayer::new(DeflateConfig::new()).layer(UpgradeService::new(echo_and_report));
    let addr = serve(service).await;
    let (mut ws, resp) = ClientBuilder::new(format!("ws://{addr}/"))
        .no_proxy()
        .connect()
        .await
        .unwrap();
    assert!(resp.headers().get("sec-websocket-extensions").is_none());
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("extension: ")
    );
}

#[tokio::test]
async fn a_rejected_upgrade_carries_no_extension_header() {
    let service = DeflateLayer::new(DeflateConfig::new()).layer(UpgradeService::new(echo));
    let addr = serve(service).await;
    let bad = upgrade_request("/", "Sec-WebSocket-Extensions: permessage-deflate\r\n")
        .replace("Version: 13", "Version: 8");
    let resp = raw_exchange(addr, &bad).await;
    assert!(resp.starts_with("HTTP/1.1 426"), "{resp}");
    assert!(
        !resp
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions"),
        "{resp}"
    );
}

#[tokio::test]
async fn layer_composes_in_a_service_builder_and_on_axum() {
    // ServiceBuilder: an outer layer sees the agreement in the extensions.
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = seen.clone();
    let service = ServiceBuilder::new()
        .layer(DeflateLayer::new(DeflateConfig::new()))
        .map_request(move |req: Request<hyper::body::Incoming>| {
            let agreed = req
                .extensions()
                .get::<sockeye_proto::extension::AgreedExtension>()
                .is_some();
            flag.store(agreed, std::sync::atomic::Ordering::SeqCst);
            req
        })
        .service(UpgradeService::new(echo));
    let addr = serve(service).await;
    let _ = ClientBuilder::new(format!("ws://{addr}/"))
        .no_proxy()
        .deflate(DeflateConfig::new())
        .connect()
        .await
        .unwrap();
    assert!(seen.load(std::sync::atomic::Ordering::SeqCst));

    // axum: the same layer on a Router, the extractor installs the agreement.
    use axum::routing::get;
    async fn ws(upgrade: sockeye_hyper::axum::WebSocketUpgrade) -> axum::response::Response {
        upgrade.on_upgrade(|mut socket| async move {
            let name = socket
                .connection()
                .extension()
                .map(|e| e.name().to_owned())
                .unwrap_or_default();
            let _ = socket.send(name).await;
        })
    }
    let app = axum::Router::new()
        .route("/ws", get(ws))
        .layer(DeflateLayer::new(DeflateConfig::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (mut ws, resp) = ClientBuilder::new(format!("ws://{addr}/ws"))
        .no_proxy()
        .deflate(DeflateConfig::new())
        .connect()
        .await
        .unwrap();
    assert!(
        resp.headers()["sec-websocket-extensions"]
            .to_str()
            .unwrap()
            .starts_with("permessage-deflate")
    );
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("permessage-deflate")
    );
}
