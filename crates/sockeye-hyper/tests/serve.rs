//! `sockeye_hyper::serve` under the attacks the raw accept path holds off:
//! idle and trickling sockets closed at the handshake deadline, an oversized
//! head answered 431 before much is read, a long request target 414, caps
//! per IP and overall answered 503, a connection aborted through its
//! handle, and a graceful shutdown that drains the sockets.
#![cfg(feature = "serve")]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use std::future::IntoFuture;

use bytes::Bytes;
use sockeye_hyper::client::ClientBuilder;
use sockeye_hyper::serve::ServeCounters;
use sockeye_hyper::server::{Drain, Handshake, UpgradeService, WebSocket};
use sockeye_hyper::{CloseCode, Config, ConnectionHandle, Message, Serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::{echo, upgrade_request};

const DEADLINE: Duration = Duration::from_millis(800);

fn config() -> Config {
    Config::builder().handshake_timeout(DEADLINE).build()
}

/// Binds 127.0.0.1:0, builds the server on it and runs it.
async fn start<S>(build: impl FnOnce(TcpListener) -> Serve<S>) -> (SocketAddr, ServeCounters)
where
    Serve<S>: IntoFuture<Output = std::io::Result<()>>,
    <Serve<S> as IntoFuture>::IntoFuture: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = build(listener);
    let counters = serve.counters();
    let running = serve.into_future();
    tokio::spawn(async move { running.await.unwrap() });
    (addr, counters)
}

/// The echo server under the test deadline.
fn echo_server(listener: TcpListener) -> Serve<UpgradeService<EchoFn>> {
    sockeye_hyper::serve(listener, UpgradeService::new(echo_boxed as EchoFn)).config(config())
}

type EchoFn = fn(WebSocket, Handshake) -> EchoFuture;
type EchoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

fn echo_boxed(ws: WebSocket, hs: Handshake) -> EchoFuture {
    Box::pin(common::echo(ws, hs))
}

/// Reads until the server closes; returns what it sent and when it closed.
async fn until_closed(tcp: &mut TcpStream) -> (String, Instant) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
            .await
            .expect("not closed in time")
        {
            Ok(0) | Err(_) => return (String::from_utf8_lossy(&out).into_owned(), Instant::now()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn idle_and_trickling_sockets_are_closed_at_the_handshake_deadline() {
    let (addr, counters) = start(echo_server).await;
    // Nothing sent at all.
    let started = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // A request line, then one header byte every 100 ms.
    let mut trickle = TcpStream::connect(addr).await.unwrap();
    trickle
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let trickler = tokio::spawn(async move {
        let mut reply = Vec::new();
        let mut buf = [0u8; 256];
        for b in b"X-Slow: ".iter().cycle() {
            let _ = trickle.write_all(&[*b]).await;
            match tokio::time::timeout(Duration::from_millis(100), trickle.read(&mut buf)).await {
                Err(_) => continue,
                Ok(Ok(n)) if n > 0 => reply.extend_from_slice(&buf[..n]),
                Ok(_) => break,
            }
        }
        (String::from_utf8_lossy(&reply).into_owned(), Instant::now())
    });
    for tcp in &mut idle {
        let (sent, at) = until_closed(tcp).await;
        assert!(sent.is_empty(), "{sent}");
        let after = at - started;
        assert!(after >= DEADLINE - Duration::from_millis(50), "{after:?}");
        assert!(after <= DEADLINE + Duration::from_millis(250), "{after:?}");
    }
    // The started head gets 408 at the deadline.
    let (reply, at) = tokio::time::timeout(Duration::from_secs(5), trickler)
        .await
        .expect("the trickling socket is still open")
        .unwrap();
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?}");
    let after = at - started;
    assert!(after <= DEADLINE + Duration::from_millis(350), "{after:?}");
    let stats = counters.snapshot();
    assert!(
        stats.handshake_timeouts + stats.header_timeouts >= 21,
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_trickled_oversized_head_gets_431_before_32_kib() {
    let (addr, counters) = start(echo_server).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let line = format!("X-Pad: {}\r\n", "a".repeat(1014));
    let mut sent = 0;
    let mut reply = Vec::new();
    let mut buf = [0u8; 1024];
    while sent < 64 << 10 {
        if tcp.write_all(line.as_bytes()).await.is_err() {
            break;
        }
        sent += line.len();
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(20), tcp.read(&mut buf)).await
        {
            reply.extend_from_slice(&buf[..n]);
            if n == 0 || reply.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    }
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.starts_with("HTTP/1.1 431"),
        "{reply:?} after {sent} bytes"
    );
    assert!(sent < 32 << 10, "{sent}");
    assert_eq!(counters.snapshot().head_too_large, 1);
}

#[tokio::test]
async fn too_many_headers_get_431_and_a_long_target_414() {
    let (addr, counters) = start(echo_server).await;
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let reply = common::raw_exchange(addr, &upgrade_request("/", &many)).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    let path = format!("/{}", "p".repeat(10 << 10));
    let reply = common::raw_exchange(addr, &upgrade_request(&path, "")).await;
    assert!(reply.starts_with("HTTP/1.1 414"), "{reply}");
    // Within the limits, the upgrade goes through.
    let reply = common::raw_exchange(addr, &upgrade_request("/ok", "")).await;
    assert!(reply.starts_with("HTTP/1.1 101"), "{reply}");
    let stats = counters.snapshot();
    assert_eq!((stats.head_too_large, stats.uri_too_long), (1, 1));
}

#[tokio::test]
async fn connection_caps_answer_503_and_count_upgraded_sockets() {
    let (addr, counters) = start(|l| echo_server(l).max_connections_per_ip(Some(2))).await;
    let url = format!("ws://{addr}/");
    let (mut a, _) = ClientBuilder::new(&url).no_proxy().connect().await.unwrap();
    let idle = TcpStream::connect(addr).await.unwrap();
    // Both places are taken (a socket and an idle connection): refused at
    // once, nothing read.
    let mut third = TcpStream::connect(addr).await.unwrap();
    let (reply, _) = until_closed(&mut third).await;
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert!(ClientBuilder::new(&url).no_proxy().connect().await.is_err());
    drop(idle);
    // A place came back.
    let mut b = None;
    for _ in 0..50 {
        if let Ok((ws, _)) = ClientBuilder::new(&url).no_proxy().connect().await {
            b = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut b = b.expect("no place after a connection closed");
    for ws in [&mut a, &mut b] {
        ws.send(Message::text("still here")).await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::text("still here")
        );
    }
    let stats = counters.snapshot();
    assert_eq!(stats.refused_per_ip, 2, "{stats:?}");
    assert_eq!(stats.open, 2, "{stats:?}");

    let (addr, counters) = start(|l| echo_server(l).max_connections(1)).await;
    let _held = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut over = TcpStream::connect(addr).await.unwrap();
    let (reply, _) = until_closed(&mut over).await;
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert_eq!(counters.snapshot().refused_busy, 1);
}

#[tokio::test]
async fn a_service_aborts_its_connection_through_the_handle() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = tower::service_fn(|req: Request<Incoming>| async move {
        let handle = req.extensions().get::<ConnectionHandle>().cloned().unwrap();
        assert_eq!(handle.peer_addr().ip(), std::net::Ipv4Addr::LOCALHOST);
        // A response that never ends; the handle cuts it.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            handle.abort();
        });
        let (_tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        let stream = futures_util::stream::unfold((rx, _tx), |(mut rx, tx)| async move {
            let chunk = rx.recv().await?;
            Some((
                Ok::<_, sockeye_hyper::BoxError>(http_body::Frame::data(chunk)),
                (rx, tx),
            ))
        });
        Ok::<_, std::convert::Infallible>(Response::new(http_body_util::BodyExt::boxed_unsync(
            http_body_util::StreamBody::new(stream),
        )))
    });
    let serve = sockeye_hyper::serve(listener, service);
    let counters = serve.counters();
    tokio::spawn(async move { serve.await.unwrap() });
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let (reply, _) = until_closed(&mut tcp).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let stats = counters.snapshot();
    assert_eq!((stats.aborted, stats.open), (1, 0), "{stats:?}");
}

#[tokio::test]
async fn graceful_shutdown_drains_sockets_and_returns() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let drain = Drain::new();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serve = sockeye_hyper::serve(listener, UpgradeService::new(echo).drain(&drain))
        .drain(&drain)
        .with_graceful_shutdown(async {
            let _ = stop_rx.await;
        });
    let server = tokio::spawn(serve.into_future());
    let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/"))
        .no_proxy()
        .connect()
        .await
        .unwrap();
    stop_tx.send(()).unwrap();
    let mut code = None;
    while let Some(msg) = ws.recv().await {
        if let Ok(Message::Close(frame)) = msg {
            code = frame.map(|f| f.code);
        }
    }
    assert_eq!(code, Some(CloseCode::GOING_AWAY));
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve did not return")
        .unwrap()
        .unwrap();
    // The listener is gone.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn wss_is_served_and_a_stalled_tls_handshake_is_cut() {
    let (tls, roots) = common::localhost_tls_config(&[b"http/1.1"]);
    let tls_deadline = Duration::from_millis(400);
    let (addr, counters) =
        start(|l| echo_server(l).tls(tls).tls_handshake_timeout(tls_deadline)).await;
    // A wss client gets its echo.
    let (mut ws, _) = ClientBuilder::new(format!("wss://localhost:{}/", addr.port()))
        .no_proxy()
        .root_certificates(roots)
        .unwrap()
        .connect()
        .await
        .unwrap();
    ws.send(Message::text("over tls")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("over tls"));
    // A client that opens TCP and never starts TLS is closed at the TLS
    // deadline, long before the handshake deadline.
    let started = Instant::now();
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    let (sent, at) = until_closed(&mut stalled).await;
    assert!(sent.is_empty());
    let after = at - started;
    assert!(
        after >= tls_deadline - Duration::from_millis(50),
        "{after:?}"
    );
    assert!(
        after <= tls_deadline + Duration::from_millis(250),
        "{after:?}"
    );
    // Plain HTTP on the TLS port fails the handshake.
    let reply = common::raw_exchange(addr, &upgrade_request("/", "")).await;
    assert!(!reply.contains("101"), "{reply}");
    assert_eq!(counters.snapshot().tls_failures, 2);
}

/// `serve` records each request's peer as `PeerAddr`, so sockeye-auth's
/// per-IP cap works behind it: the second socket from 127.0.0.1 gets 429,
/// and a socket's slot is free again once it closes.
#[tokio::test]
async fn per_ip_socket_caps_see_the_peer_under_serve() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = tower::ServiceBuilder::new()
        .layer(sockeye_auth::SocketLimitLayer::new().per_ip(1))
        .service(UpgradeService::new(echo));
    let server = sockeye_hyper::serve(listener, service);
    tokio::spawn(server.into_future());
    let client = ClientBuilder::new(format!("ws://{addr}/")).no_proxy();
    let connect = || client.connect();

    let (mut first, _) = connect().await.unwrap();
    match connect().await {
        Err(e) => assert!(e.to_string().contains("429"), "{e}"),
        Ok(_) => panic!("a second socket from the same IP was let in"),
    }
    first.close(CloseCode::NORMAL, "").await.unwrap();
    while first.recv().await.is_some() {}
    // The permit goes with the socket's task: a new socket is let in.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match connect().await {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "still refused: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
