//! The client: wss with a certificate made here, CONNECT proxies (open,
//! refusing, with credentials), reconnect, interop with tokio-tungstenite.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use sockeye_hyper::client::{Backoff, ClientBuilder, ReconnectEvent};
use sockeye_hyper::server::{Handshake, UpgradeService, WebSocket};
use sockeye_hyper::{CloseCode, Error, Message};
use tokio::net::TcpListener;

use common::{ProxyMode, echo, proxy, serve};

/// A wss server with a fresh self-signed certificate for `localhost`;
/// returns its port and a root store trusting it.
async fn tls_server() -> (u16, rustls::RootCertStore) {
    let (acceptor, roots) = common::localhost_tls(&[]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let service = UpgradeService::new(echo);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let svc = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (port, roots)
}

#[tokio::test]
async fn wss_with_a_certificate_made_in_the_test() {
    let (port, roots) = tls_server().await;
    let (mut ws, _) = ClientBuilder::new(format!("wss://localhost:{port}/secure"))
        .no_proxy()
        .root_certificates(roots)
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert!(ws.get_ref().is_tls());
    ws.send("over tls").await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("over tls"));
    // The default webpki roots do not trust it.
    let r = ClientBuilder::new(format!("wss://localhost:{port}/"))
        .no_proxy()
        .connect()
        .await;
    assert!(r.is_err());
}

#[tokio::test]
async fn through_a_connect_proxy_ws_and_wss() {
    let (proxy_addr, tunnels) = proxy(ProxyMode::Open).await;
    let addr = serve(UpgradeService::new(echo)).await;
    let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/"))
        .proxy(&format!("http://{proxy_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    ws.send("tunnelled").await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("tunnelled")
    );
    assert_eq!(tunnels.load(Ordering::SeqCst), 1);

    let (port, roots) = tls_server().await;
    let (mut ws, _) = ClientBuilder::new(format!("wss://localhost:{port}/"))
        .proxy(&proxy_addr.to_string())
        .unwrap()
        .root_certificates(roots)
        .unwrap()
        .connect()
        .await
        .unwrap();
    ws.send("tls in a tunnel").await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("tls in a tunnel")
    );
    assert_eq!(tunnels.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_refusing_proxy_is_an_error_naming_its_status() {
    let (proxy_addr, _) = proxy(ProxyMode::Refuse).await;
    let r = ClientBuilder::new("ws://127.0.0.1:9/")
        .proxy(&format!("http://{proxy_addr}"))
        .unwrap()
        .connect()
        .await;
    match r {
        Err(Error::Proxy { status, proxy }) => {
            assert_eq!(status, 403);
            assert_eq!(proxy, format!("http://{proxy_addr}"));
        }
        other => panic!("expected a proxy error, got {other:?}"),
    }
}

#[tokio::test]
async fn proxy_credentials() {
    let (proxy_addr, _) = proxy(ProxyMode::Auth("alice", "p@ss")).await;
    let addr = serve(UpgradeService::new(echo)).await;
    let r = ClientBuilder::new(format!("ws://{addr}/"))
        .proxy(&format!("http://{proxy_addr}"))
        .unwrap()
        .connect()
        .await;
    let err = r.err().unwrap();
    assert!(matches!(err, Error::Proxy { status, .. } if status == 407));
    assert!(err.to_string().contains("407"));
    let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/"))
        .proxy(&format!("http://alice:p%40ss@{proxy_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    ws.send("authorised").await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("authorised")
    );
    let shown = format!(
        "{:?}",
        ClientBuilder::new("ws://x/")
            .proxy(&format!("http://alice:p%40ss@{proxy_addr}"))
            .unwrap()
    );
    assert!(
        !shown.contains("p@ss") && !shown.contains("p%40ss"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_server_that_does_not_speak_websocket_is_a_clear_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 2048];
        let _ = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf).await;
        let _ = tokio::io::AsyncWriteExt::write_all(
            &mut tcp,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        // Then hold the connection open: the client must not hang.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        ClientBuilder::new(format!("ws://{addr}/"))
            .no_proxy()
            .connect(),
    )
    .await
    .unwrap();
    let err = r.err().unwrap();
    assert!(err.to_string().contains("200"), "{err}");
}

#[tokio::test]
async fn reconnect_after_drops_and_stop_on_normal_close() {
    // The first two sockets are dropped by the server, the third closes
    // normally.
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    let service = UpgradeService::new(move |mut ws: WebSocket, _: Handshake| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        async move {
            let _ = ws.send(format!("session {n}")).await;
            if n >= 2 {
                let _ = ws.close(CloseCode::NORMAL, "done").await;
            }
            // Otherwise: drop the socket without a close frame.
        }
    });
    let addr = serve(service).await;
    let mut connector = ClientBuilder::new(format!("ws://{addr}/"))
        .no_proxy()
        .reconnecting()
        .backoff(Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
            ..Backoff::default()
        });
    let mut sessions = Vec::new();
    while let Some(event) = connector.next().await {
        match event {
            ReconnectEvent::Connected { mut socket, .. } => {
                while let Some(Ok(m)) = socket.next().await {
                    if let Message::Text(t) = m {
                        sessions.push(t.to_string());
                    }
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(sessions, ["session 0", "session 1", "session 2"]);
}

#[tokio::test]
async fn reconnect_retries_with_backoff_until_the_server_is_up() {
    // Reserve a port, then start the server on it only after a while.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut connector = ClientBuilder::new(format!("ws://{addr}/"))
        .no_proxy()
        .reconnecting()
        .backoff(Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(100),
            ..Backoff::default()
        });
    let mut failures = 0;
    loop {
        match connector.next().await.unwrap() {
            ReconnectEvent::Retrying { attempt, delay, .. } => {
                failures += 1;
                assert_eq!(attempt, failures);
                assert!(delay <= Duration::from_millis(100));
                if failures == 3 {
                    let listener = TcpListener::bind(addr).await.unwrap();
                    tokio::spawn(async move {
                        let (tcp, _) = listener.accept().await.unwrap();
                        let (mut ws, _) = sockeye_proto::Acceptor::new().accept(tcp).await.unwrap();
                        let _ = ws.close(CloseCode::NORMAL, "").await;
                    });
                }
            }
            ReconnectEvent::Connected {
                attempt,
                mut socket,
            } => {
                assert_eq!(attempt, 4);
                while socket.next().await.is_some() {}
                break;
            }
            ReconnectEvent::GaveUp(e) => panic!("gave up: {e}"),
        }
    }
    assert!(
        connector.next().await.is_none(),
        "a normal close stops the connector"
    );
}

#[tokio::test]
async fn reconnect_gives_up_after_max_attempts_and_stops_on_request() {
    let mut connector = ClientBuilder::new("ws://127.0.0.1:9/")
        .no_proxy()
        .reconnecting()
        .backoff(Backoff {
            initial: Duration::from_millis(1),
            ..Backoff::default()
        })
        .max_attempts(2);
    assert!(matches!(
        connector.next().await,
        Some(ReconnectEvent::Retrying { attempt: 1, .. })
    ));
    assert!(matches!(
        connector.next().await,
        Some(ReconnectEvent::GaveUp(_))
    ));
    assert!(connector.next().await.is_none());

    let mut connector = ClientBuilder::new("ws://127.0.0.1:9/")
        .no_proxy()
        .reconnecting()
        .backoff(Backoff {
            initial: Duration::from_secs(3600),
            ..Backoff::default()
        });
    let stop = connector.stop_handle();
    assert!(matches!(
        connector.next().await,
        Some(ReconnectEvent::Retrying { .. })
    ));
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.stop();
    });
    // Ends the hour-long wait at once.
    let next = tokio::time::timeout(Duration::from_secs(10), connector.next())
        .await
        .unwrap();
    assert!(next.is_none());
}

#[tokio::test]
async fn interop_tungstenite_client_against_sockeye_server() {
    let addr = serve(UpgradeService::new(echo)).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .unwrap();
    use tokio_tungstenite::tungstenite::Message as T;
    ws.send(T::text("from tungstenite")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        T::text("from tungstenite")
    );
    ws.send(T::binary(vec![1u8; 100_000])).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        T::binary(vec![1u8; 100_000])
    );
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn interop_sockeye_client_against_tungstenite_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        while let Some(Ok(m)) = ws.next().await {
            if m.is_text() || m.is_binary() {
                ws.send(m).await.unwrap();
            }
        }
    });
    let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/"))
        .no_proxy()
        .connect()
        .await
        .unwrap();
    ws.send("to tungstenite").await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("to tungstenite")
    );
    let big = vec![7u8; 300_000];
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(big));
    ws.close(CloseCode::NORMAL, "").await.unwrap();
}
