//! A subscriber that never reads is let go: once the hub decides it is a
//! slow consumer, its connection is released within the close timeout plus
//! a quarter second, on the raw accept path and over hyper, although the
//! close frame sits behind data the peer never takes; an event stream
//! (the SSE fallback) that is never read likewise, its session answering
//! 404 at once.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use sockeye_proto::handshake::client::ClientRequest;
use sockeye_proto::{Acceptor, Config, Error, Message, WebSocket};
use sockeye_pubsub::{Hub, Namespace, SlowConsumer};
use tokio::net::{TcpListener, TcpStream};

const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
const SLACK: Duration = Duration::from_millis(250);

fn hub() -> Hub {
    Hub::builder()
        .namespace(
            "feed",
            Namespace::new().slow_consumer(SlowConsumer::Disconnect),
        )
        .queue_limits(64, 256 << 10)
        .build()
}

fn config() -> Config {
    Config::builder()
        .close_timeout(CLOSE_TIMEOUT)
        .max_message_size(1 << 20)
        .build()
}

#[derive(Clone, Copy)]
enum Path {
    Raw,
    Hyper,
    /// `sockeye_hyper::serve` with the hub's upgrade + SSE service.
    Serve,
}

async fn serve(hub: &Hub, path: Path) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hub = hub.clone();
    if let Path::Serve = path {
        let service = hub
            .upgrade_service()
            .config(config())
            .fallback(hub.sse_service().close_timeout(CLOSE_TIMEOUT));
        let server = sockeye_hyper::serve(listener, service).config(config());
        tokio::spawn(std::future::IntoFuture::into_future(server));
        return addr;
    }
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let hub = hub.clone();
            tokio::spawn(async move {
                match path {
                    Path::Raw => {
                        let Ok((ws, _)) = Acceptor::new().config(config()).accept(tcp).await else {
                            return;
                        };
                        hub.serve(ws, None).await;
                    }
                    Path::Serve => unreachable!("served above"),
                    Path::Hyper => {
                        let svc = TowerToHyperService::new(hub.upgrade_service().config(config()));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), svc)
                            .with_upgrades()
                            .await;
                    }
                }
            });
        }
    });
    addr
}

/// Publishes 64 KiB pushes until the hub gives up on a subscriber; returns
/// when it decided.
async fn publish_until_slow(hub: &Hub) -> Instant {
    let payload = "z".repeat(64 << 10);
    let mut published = 0;
    while hub.metrics().slow_disconnects == 0 {
        hub.publish("feed:x", &json!({ "p": payload }))
            .await
            .unwrap();
        published += 1;
        assert!(published < 10_000, "never chosen as a slow consumer");
        tokio::task::yield_now().await;
    }
    Instant::now()
}

/// Waits until the hub forgets every session, which must be within the
/// close timeout (plus a quarter second) of `decided`.
async fn released_in_time(hub: &Hub, decided: Instant) {
    let deadline = decided + CLOSE_TIMEOUT + Duration::from_secs(5);
    while hub.metrics().sessions > 0 {
        assert!(Instant::now() < deadline, "the socket was never released");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = decided.elapsed();
    eprintln!("released {took:?} after the slow-consumer decision");
    assert!(
        took <= CLOSE_TIMEOUT + SLACK,
        "released {took:?} after the decision"
    );
}

/// A subscriber with a 4 KiB receive buffer that stops reading after its
/// subscription is confirmed.
async fn stalled_subscriber(addr: SocketAddr) -> WebSocket<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let (mut ws, _) = sockeye_proto::client_handshake(
        tcp,
        ClientRequest::new(format!("ws://{addr}/ws")),
        Config::default(),
    )
    .await
    .unwrap();
    ws.send(r#"{"id":1,"op":"subscribe","topic":"feed:x"}"#)
        .await
        .unwrap();
    let reply = ws.recv().await.unwrap().unwrap();
    assert!(matches!(&reply, Message::Text(t) if t.as_str().contains("\"ok\"")));
    ws
}

async fn released_within_the_close_timeout(path: Path) {
    let hub = hub();
    let addr = serve(&hub, path).await;
    let mut stalled = stalled_subscriber(addr).await;
    assert_eq!(hub.metrics().sessions, 1);

    let decided = publish_until_slow(&hub).await;
    // The hub forgets the session once its socket is released.
    released_in_time(&hub, decided).await;
    // And the peer finds a reset connection, not a close it never read.
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), stalled.recv())
            .await
            .unwrap()
        {
            Some(Ok(Message::Close(f))) => panic!("got the close frame: {f:?}"),
            Some(Ok(_)) => {}
            other => break other,
        }
    };
    assert!(
        matches!(&end, Some(Err(Error::Io(e))) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{end:?}"
    );
    assert_eq!(hub.metrics().queued_bytes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_reading_subscriber_is_released_on_the_raw_path() {
    released_within_the_close_timeout(Path::Raw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_reading_subscriber_is_released_over_hyper() {
    released_within_the_close_timeout(Path::Hyper).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_reading_subscriber_is_released_by_serve() {
    released_within_the_close_timeout(Path::Serve).await;
}

/// Sends `request` on a fresh connection; returns the response head.
async fn exchange(addr: SocketAddr, request: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before a response");
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn post(token: &str, body: &str) -> String {
    format!(
        "POST /ws?session={token} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_read_event_stream_is_cut_and_its_session_ends_at_once() {
    use tokio::io::AsyncReadExt;
    let hub = hub();
    let addr = serve(&hub, Path::Serve).await;
    // An event stream with a 4 KiB receive buffer, read up to its token.
    let (mut stream, token) = common::sse_stream(addr, Some(4096)).await;
    let mut buf = [0u8; 512];
    let subscribe = r#"{"id":1,"op":"subscribe","topic":"feed:x"}"#;
    assert!(
        exchange(addr, post(&token, subscribe))
            .await
            .starts_with("HTTP/1.1 202")
    );
    assert_eq!(hub.metrics().sessions, 1);

    // The stream is never read again.
    let decided = publish_until_slow(&hub).await;
    // Its token is dead at once: 404, not 202.
    let ping = r#"{"id":2,"op":"subscribe","topic":"feed:y"}"#;
    let reply = exchange(addr, post(&token, ping)).await;
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    released_in_time(&hub, decided).await;
    // The connection was reset, not left holding what it never read.
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .unwrap()
        {
            Ok(0) => break Ok(0),
            Ok(_) => {}
            Err(e) => break Err(e.kind()),
        }
    };
    assert_eq!(end, Err(std::io::ErrorKind::ConnectionReset));
    assert_eq!(hub.metrics().queued_bytes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_reading_subscriber_over_http2_is_released() {
    let hub = hub();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = sockeye_hyper::serve(listener, hub.upgrade_service().config(config()))
        .config(config())
        .http2(true);
    tokio::spawn(std::future::IntoFuture::into_future(server));
    // A socket as one stream of an HTTP/2 connection (RFC 8441).
    let builder = sockeye_hyper::client::ClientBuilder::new(format!("ws://{addr}/ws")).no_proxy();
    let mut connection = builder.connect_http2().await.unwrap();
    let (mut ws, _) = builder.connect_on(&mut connection).await.unwrap();
    ws.send(Message::text(
        r#"{"id":1,"op":"subscribe","topic":"feed:x"}"#,
    ))
    .await
    .unwrap();
    let reply = ws.recv().await.unwrap().unwrap();
    assert!(matches!(&reply, Message::Text(t) if t.as_str().contains("\"ok\"")));
    assert_eq!(hub.metrics().sessions, 1);
    // It never reads again: flow control stops the server's writes.
    let decided = publish_until_slow(&hub).await;
    released_in_time(&hub, decided).await;
    assert_eq!(hub.metrics().queued_bytes, 0);
    drop(ws);
}
