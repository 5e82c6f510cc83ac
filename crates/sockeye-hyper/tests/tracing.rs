//! Tracing: each server socket runs in a `websocket` span that ends with
//! how the socket closed (`close_code`, `close_initiator`), for each way a
//! socket ends; a client's connect runs in a `websocket_connect` span
//! without the URL's path or query. One thread (tokio's current-thread
//! runtime: the server's tasks run here too) under a capturing
//! subscriber, over loopback.
#![cfg(all(feature = "serve", feature = "deflate"))]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use sockeye_hyper::client::ClientBuilder;
use sockeye_hyper::server::{Handshake, UpgradeService, WebSocket};
use sockeye_hyper::{CloseCode, Message};
use tokio::io::AsyncWriteExt;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use common::echo;

type Fields = BTreeMap<String, String>;

/// Spans by name with their fields, as they were when they closed.
#[derive(Clone, Default)]
struct Closed(Arc<Mutex<Vec<(String, Fields)>>>);

impl Closed {
    fn spans(&self, name: &str) -> Vec<Fields> {
        let closed = self.0.lock().unwrap();
        closed
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, f)| f.clone())
            .collect()
    }

    /// Waits (bounded) for the `n`th closed span named `name`.
    async fn wait_for(&self, name: &str, n: usize) -> Fields {
        for _ in 0..500 {
            if let Some(fields) = self.spans(name).get(n - 1) {
                return fields.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no {n} closed {name} spans: {:?}", self.spans(name));
    }
}

struct Visitor<'a>(&'a mut Fields);

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Closed {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        attrs.record(&mut Visitor(&mut fields));
        ctx.span(id).unwrap().extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let mut ext = span.extensions_mut();
        values.record(&mut Visitor(ext.get_mut::<Fields>().unwrap()));
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).unwrap();
        let fields = span.extensions().get::<Fields>().cloned().unwrap();
        self.0
            .lock()
            .unwrap()
            .push((span.name().to_owned(), fields));
    }
}

#[tokio::test]
async fn a_socket_span_ends_with_how_the_socket_closed() {
    let closed = Closed::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(closed.clone()));

    // `/policy` closes with 1008 itself; the others echo.
    let handler = |mut ws: WebSocket, hs: Handshake| async move {
        if hs.uri().path() == "/policy" {
            let _ = ws.close(CloseCode::POLICY_VIOLATION, "no").await;
            while ws.next().await.is_some() {}
        } else {
            echo(ws, hs).await;
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // permessage-deflate is agreed when the client offers it.
    let service = tower::Layer::layer(
        &sockeye_deflate::DeflateLayer::new(sockeye_deflate::DeflateConfig::new()),
        UpgradeService::new(handler),
    );
    let server = sockeye_hyper::serve(listener, service);
    tokio::spawn(async move { server.await.unwrap() });
    let connect = |path: &'static str| async move {
        ClientBuilder::new(format!("ws://{addr}{path}?token=secret"))
            .no_proxy()
            .connect()
            .await
            .unwrap()
            .0
    };

    // The client closes with 4001: remote, from the server's side.
    let mut ws = connect("/").await;
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hi"));
    ws.close(CloseCode::from_u16_unchecked(4001), "bye")
        .await
        .unwrap();
    while ws.next().await.is_some() {}
    let first = closed.wait_for("websocket", 1).await;
    assert_eq!(first["role"], "server");
    assert_eq!(first["transport"], "http1");
    assert_eq!(first["close_code"], "4001", "{first:?}");
    assert_eq!(first["close_initiator"], "remote");
    assert!(first["peer"].starts_with("127.0.0.1:"), "{first:?}");
    assert_eq!(first["protocol"], "");
    assert!(!first.contains_key("extension"), "{first:?}");

    // The server closes with 1008: local.
    let mut ws = connect("/policy").await;
    match ws.next().await {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(frame.code, CloseCode::POLICY_VIOLATION)
        }
        other => panic!("expected close 1008, got {other:?}"),
    }
    while ws.next().await.is_some() {}
    let second = closed.wait_for("websocket", 2).await;
    assert_eq!(second["close_code"], "1008", "{second:?}");
    assert_eq!(second["close_initiator"], "local");

    // The client's TCP connection ends without a close frame: 1006, none.
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    raw.write_all(
        format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = [0u8; 12];
    tokio::io::AsyncReadExt::read_exact(&mut raw, &mut head)
        .await
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    drop(raw);
    let third = closed.wait_for("websocket", 3).await;
    assert_eq!(third["close_code"], "1006", "{third:?}");
    assert_eq!(third["close_initiator"], "none");

    // The agreed extension is on the span.
    let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/"))
        .no_proxy()
        .deflate(sockeye_deflate::DeflateConfig::new())
        .connect()
        .await
        .unwrap();
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    while ws.next().await.is_some() {}
    let fourth = closed.wait_for("websocket", 4).await;
    assert!(
        fourth["extension"].starts_with("permessage-deflate"),
        "{fourth:?}"
    );
    assert_eq!(fourth["close_code"], "1000");

    // The client's connects: host and port, never the path or query.
    let connects = closed.spans("websocket_connect");
    assert_eq!(connects.len(), 3, "{connects:?}");
    for c in &connects {
        assert_eq!(c["role"], "client");
        assert_eq!(c["host"], "127.0.0.1");
        assert_eq!(c["port"], addr.port().to_string());
        assert_eq!(c["proxied"], "false");
        assert!(!format!("{c:?}").contains("secret"), "{c:?}");
    }
}

/// The axum extractor's sockets run in the same span, ended the same way.
#[cfg(feature = "axum")]
#[tokio::test]
async fn the_extractors_sockets_get_the_same_span() {
    use sockeye_hyper::axum::WebSocketUpgrade;

    let closed = Closed::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(closed.clone()));
    let router = axum::Router::new().route(
        "/ws",
        axum::routing::get(|upgrade: WebSocketUpgrade| async move {
            upgrade.on_upgrade(|mut socket| async move { while socket.next().await.is_some() {} })
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = sockeye_hyper::serve(listener, router);
    tokio::spawn(async move { server.await.unwrap() });

    let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/ws"))
        .no_proxy()
        .connect()
        .await
        .unwrap();
    ws.close(CloseCode::NORMAL, "done").await.unwrap();
    while ws.next().await.is_some() {}
    let span = closed.wait_for("websocket", 1).await;
    assert_eq!(span["role"], "server");
    assert_eq!(span["transport"], "http1");
    assert!(span["peer"].starts_with("127.0.0.1:"), "{span:?}");
    assert_eq!(span["close_code"], "1000", "{span:?}");
    assert_eq!(span["close_initiator"], "remote");
}

/// The raw accept path: `Accepted::span` gives the socket's task the same
/// span, and the socket records its close on it.
#[tokio::test]
async fn the_raw_paths_span_ends_with_the_close() {
    use std::sync::Arc;
    use tracing::Instrument;

    let closed = Closed::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(closed.clone()));
    let acceptor = Arc::new(
        sockeye_proto::Acceptor::new().extension(Arc::new(sockeye_deflate::DeflateConfig::new())),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, peer) = listener.accept().await.unwrap();
        let (mut ws, accepted) = acceptor.accept(tcp).await.unwrap();
        let span = accepted.span(Some(peer));
        async move { while ws.next().await.is_some() {} }
            .instrument(span)
            .await;
    });

    let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/"))
        .no_proxy()
        .deflate(sockeye_deflate::DeflateConfig::new())
        .connect()
        .await
        .unwrap();
    ws.close(CloseCode::from_u16_unchecked(4002), "raw")
        .await
        .unwrap();
    while ws.next().await.is_some() {}
    let span = closed.wait_for("websocket", 1).await;
    assert_eq!(span["role"], "server");
    assert_eq!(span["transport"], "raw");
    assert!(span["peer"].starts_with("127.0.0.1:"), "{span:?}");
    assert!(
        span["extension"].starts_with("permessage-deflate"),
        "{span:?}"
    );
    assert_eq!(span["close_code"], "4002", "{span:?}");
    assert_eq!(span["close_initiator"], "remote");
}
