//! The raw accept path over TCP: every rejection is a proper HTTP response.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::time::Duration;

use sockeye_proto::{Acceptor, Config, Error, HandshakeError, TimeoutKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::upgrade_request;

/// Runs one accept on a fresh listener; returns the raw response and the
/// server's result.
async fn exchange(acceptor: Acceptor, request: Vec<u8>) -> (String, Result<(), Error>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        acceptor.accept(tcp).await.map(|_| ())
    });
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before everything is written.
    let _ = tcp.write_all(&request).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut response)).await;
    let result = server.await.unwrap();
    (String::from_utf8_lossy(&response).into_owned(), result)
}

#[tokio::test]
async fn plain_http_gets_426_with_the_version() {
    let (resp, r) = exchange(
        Acceptor::new(),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 426"), "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("sec-websocket-version: 13")
    );
    assert!(matches!(
        r,
        Err(Error::Handshake(HandshakeError::NotUpgrade))
    ));
}

#[tokio::test]
async fn wrong_method_gets_405() {
    let req = upgrade_request("").replacen("GET", "POST", 1);
    let (resp, _) = exchange(Acceptor::new(), req.into_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 405"), "{resp}");
}

#[tokio::test]
async fn bad_key_and_bad_version_get_400_and_426() {
    let req = upgrade_request("").replace("dGhlIHNhbXBsZSBub25jZQ==", "short");
    let (resp, _) = exchange(Acceptor::new(), req.into_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    let req = upgrade_request("").replace("Version: 13", "Version: 8");
    let (resp, _) = exchange(Acceptor::new(), req.into_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 426"), "{resp}");
}

#[tokio::test]
async fn huge_or_numerous_headers_get_431() {
    let big = format!("X-Big: {}\r\n", "a".repeat(20_000));
    let (resp, r) = exchange(Acceptor::new(), upgrade_request(&big).into_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");
    assert!(matches!(
        r,
        Err(Error::Handshake(HandshakeError::HeadTooLarge))
    ));

    let many: String = (0..150).map(|i| format!("X-{i}: v\r\n")).collect();
    let (resp, r) = exchange(Acceptor::new(), upgrade_request(&many).into_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");
    assert!(matches!(
        r,
        Err(Error::Handshake(HandshakeError::TooManyHeaders))
    ));
}

#[tokio::test]
async fn garbage_gets_400() {
    let (resp, _) = exchange(Acceptor::new(), b"\x16\x03\x01\x02\x00\r\n\r\n".to_vec()).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
}

#[tokio::test]
async fn a_silent_client_hits_the_handshake_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = Acceptor::new().config(
        Config::builder()
            .handshake_timeout(Duration::from_millis(200))
            .build(),
    );
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        acceptor.accept(tcp).await.map(|_| ())
    });
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(r, Err(Error::Timeout(TimeoutKind::Handshake))),
        "{r:?}"
    );
}

#[tokio::test]
async fn subprotocol_is_selected_by_server_preference() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = Acceptor::new().protocols(["v2", "v1"]);
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (_, accepted) = acceptor.accept(tcp).await.unwrap();
        accepted.protocol
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let request = sockeye_proto::handshake::client::ClientRequest::new(format!("ws://{addr}/"))
        .protocols(["v1", "v2"]);
    let (_ws, resp) = sockeye_proto::client_handshake(tcp, request, Config::default())
        .await
        .unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "v2");
    assert_eq!(server.await.unwrap().as_deref(), Some("v2"));
}

#[tokio::test]
async fn client_rejects_a_server_that_does_not_upgrade() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = tcp.read(&mut buf).await;
        let _ = tcp
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
            .await;
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let request = sockeye_proto::handshake::client::ClientRequest::new(format!("ws://{addr}/"));
    let r = sockeye_proto::client_handshake(tcp, request, Config::default()).await;
    assert!(matches!(
        r,
        Err(Error::Handshake(HandshakeError::UnexpectedStatus(s))) if s == 200
    ));
}

#[tokio::test]
async fn empty_lines_before_the_request_line_are_ignored() {
    // Regression: found by the handshake_request fuzz target; the head end was
    // taken at the first blank lines and a valid request got a 400.
    let request = format!("\r\n\r\n{}", upgrade_request(""));
    let (resp, r) = exchange(Acceptor::new(), request.into_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 101"), "{resp}");
    r.unwrap();
}
