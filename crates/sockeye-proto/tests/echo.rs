//! End-to-end behaviour over TCP: echo, fragmentation, pings, close paths,
//! limits, pipelined bytes.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sockeye_proto::{
    Acceptor, CloseCode, CloseFrame, Config, Error, Message, TimeoutKind, WebSocket,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{client, masked_frame, server, upgrade_request};

async fn echo(mut ws: WebSocket<TcpStream>) {
    while let Some(msg) = ws.next().await {
        if let Ok(m @ (Message::Text(_) | Message::Binary(_))) = msg {
            let _ = ws.feed(m).await;
        }
    }
}

/// Reads the raw server bytes until EOF and decodes the frames.
async fn read_frames_to_eof(tcp: &mut TcpStream) -> Vec<(u8, Vec<u8>)> {
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw))
        .await
        .expect("server closed the connection")
        .unwrap();
    let mut frames = Vec::new();
    let mut rest = &raw[..];
    while let Ok(Some((h, n))) = sockeye_proto::frame::FrameHeader::parse(rest) {
        let len = h.payload_len as usize;
        frames.push((h.opcode.as_u8(), rest[n..n + len].to_vec()));
        rest = &rest[n + len..];
    }
    frames
}

/// Performs a raw handshake and returns the stream positioned after the 101.
async fn raw_client(addr: std::net::SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(upgrade_request("").as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    tcp
}

#[tokio::test]
async fn echo_text_and_binary_of_every_size() {
    let addr = server(Acceptor::new(), echo).await;
    let mut ws = client(addr, Config::default()).await;
    for len in [0usize, 1, 125, 126, 65535, 65536, 1 << 20] {
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        ws.send(Message::binary(data.clone())).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(data));
    }
    ws.send("héllo wörld").await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::text("héllo wörld")
    );
    ws.close(CloseCode::NORMAL, "done").await.unwrap();
}

#[tokio::test]
async fn fed_messages_leave_together_and_arrive_in_order() {
    let addr = server(Acceptor::new(), echo).await;
    let mut ws = client(addr, Config::default()).await;
    for i in 0..1000u32 {
        ws.feed(Message::text(i.to_string())).await.unwrap();
    }
    ws.flush().await.unwrap();
    for i in 0..1000u32 {
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text(i.to_string())
        );
    }
}

#[tokio::test]
async fn fragmented_messages_are_reassembled() {
    let addr = server(Acceptor::new(), echo).await;
    let config = Config::builder().auto_fragment_size(Some(1000)).build();
    let mut ws = client(addr, config).await;
    let text = "ünïcödé ".repeat(2000);
    ws.send(text.as_str()).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text(text.as_str())
    );
}

#[tokio::test]
async fn pings_are_answered_and_reported() {
    let addr = server(Acceptor::new(), echo).await;
    let mut ws = client(addr, Config::default()).await;
    ws.send(Message::ping(&b"are you there"[..])).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::pong(&b"are you there"[..])
    );
}

#[tokio::test]
async fn server_initiated_close_is_echoed_and_ends_both_streams() {
    let addr = server(Acceptor::new(), |mut ws: WebSocket<TcpStream>| async move {
        ws.close(CloseCode::GOING_AWAY, "shutting down")
            .await
            .unwrap();
    })
    .await;
    let mut ws = client(addr, Config::default()).await;
    let msg = ws.next().await.unwrap().unwrap();
    assert_eq!(
        msg,
        Message::Close(Some(CloseFrame::new(
            CloseCode::GOING_AWAY,
            "shutting down"
        )))
    );
    assert!(ws.next().await.is_none());
}

#[tokio::test]
async fn protocol_errors_close_with_1002_and_the_server_closes_tcp() {
    let addr = server(Acceptor::new(), echo).await;
    let mut tcp = raw_client(addr).await;
    // Unmasked client frame.
    tcp.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    let frames = read_frames_to_eof(&mut tcp).await;
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0, 0x8);
    assert_eq!(&frames[0].1[..2], &1002u16.to_be_bytes());
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007_and_earlier_messages_are_echoed() {
    let addr = server(Acceptor::new(), echo).await;
    let mut tcp = raw_client(addr).await;
    let mut bytes = masked_frame(0x81, b"fine");
    bytes.extend(masked_frame(0x81, b"bad \xc0\xaf"));
    tcp.write_all(&bytes).await.unwrap();
    let frames = read_frames_to_eof(&mut tcp).await;
    assert_eq!(frames[0], (0x1, b"fine".to_vec()));
    assert_eq!(frames[1].0, 0x8);
    assert_eq!(&frames[1].1[..2], &1007u16.to_be_bytes());
}

#[tokio::test]
async fn oversized_messages_close_with_1009() {
    let acceptor = Acceptor::new().config(Config::builder().max_message_size(1000).build());
    let addr = server(acceptor, echo).await;
    let mut tcp = raw_client(addr).await;
    // Two fragments adding up past the limit.
    let mut bytes = masked_frame(0x02, &[0u8; 600]);
    bytes.extend(masked_frame(0x80, &[0u8; 600]));
    tcp.write_all(&bytes).await.unwrap();
    let frames = read_frames_to_eof(&mut tcp).await;
    assert_eq!(frames.last().unwrap().0, 0x8);
    assert_eq!(&frames.last().unwrap().1[..2], &1009u16.to_be_bytes());
}

#[tokio::test]
async fn bytes_pipelined_after_the_request_are_not_lost() {
    let addr = server(Acceptor::new(), echo).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut wire = upgrade_request("").into_bytes();
    wire.extend(masked_frame(0x81, b"right behind the head"));
    tcp.write_all(&wire).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    let mut frame = [0u8; 23];
    tcp.read_exact(&mut frame).await.unwrap();
    assert_eq!(&frame[..2], &[0x81, 21]);
    assert_eq!(&frame[2..], b"right behind the head");
}

#[tokio::test]
async fn unanswered_close_times_out() {
    let acceptor = Acceptor::new().config(
        Config::builder()
            .close_timeout(Duration::from_millis(200))
            .build(),
    );
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let addr = server(acceptor, move |mut ws: WebSocket<TcpStream>| {
        let tx = tx.lock().unwrap().take();
        async move {
            let r = ws.close(CloseCode::NORMAL, "").await;
            if let Some(tx) = tx {
                let _ = tx.send(r);
            }
        }
    })
    .await;
    // A peer that completes the handshake, then never answers.
    let _tcp = raw_client(addr).await;
    let result = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(result, Err(Error::Timeout(TimeoutKind::Close))),
        "{result:?}"
    );
}

#[tokio::test]
async fn keepalive_declares_a_silent_peer_dead_with_1011() {
    let acceptor = Acceptor::new().config(
        Config::builder()
            .keepalive_interval(Some(Duration::from_millis(50)))
            .pong_timeout(Duration::from_millis(100))
            .build(),
    );
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let addr = server(acceptor, move |mut ws: WebSocket<TcpStream>| {
        let tx = tx.lock().unwrap().take();
        async move {
            let mut first_error = None;
            while let Some(m) = ws.next().await {
                if let Err(e) = m {
                    first_error.get_or_insert(e);
                }
            }
            if let Some(tx) = tx {
                let _ = tx.send(first_error);
            }
        }
    })
    .await;
    let mut tcp = raw_client(addr).await;
    // Never answer: read the ping(s) and the close.
    let frames = read_frames_to_eof(&mut tcp).await;
    assert_eq!(frames[0].0, 0x9);
    let close = frames.last().unwrap();
    assert_eq!(close.0, 0x8);
    assert_eq!(&close.1[..2], &1011u16.to_be_bytes());
    let err = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(err, Some(Error::Timeout(TimeoutKind::Keepalive))),
        "{err:?}"
    );
}

#[tokio::test]
async fn abrupt_disconnect_is_an_abnormal_closure() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let addr = server(Acceptor::new(), move |mut ws: WebSocket<TcpStream>| {
        let tx = tx.lock().unwrap().take();
        async move {
            let r = ws.next().await;
            if let Some(tx) = tx {
                let _ = tx.send(r.map(|r| r.map_err(|e| e.to_string())));
            }
        }
    })
    .await;
    let tcp = raw_client(addr).await;
    drop(tcp);
    let r = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .unwrap()
        .unwrap();
    match r {
        Some(Err(e)) => assert!(e.contains("1006"), "{e}"),
        other => panic!("expected an abnormal closure, got {other:?}"),
    }
}

#[tokio::test]
async fn sink_close_completes_the_handshake() {
    let addr = server(Acceptor::new(), echo).await;
    let mut ws = client(addr, Config::default()).await;
    ws.send("last").await.unwrap();
    SinkExt::close(&mut ws).await.unwrap();
    assert!(ws.next().await.is_none());
    assert!(matches!(ws.send("after").await, Err(Error::Closed)));
}

#[tokio::test]
async fn a_close_handle_closes_the_socket_from_another_task() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let addr = server(Acceptor::new(), move |mut ws: WebSocket<TcpStream>| {
        let tx = tx.lock().unwrap().take();
        async move {
            if let Some(tx) = tx {
                let _ = tx.send(ws.close_handle());
            }
            // The handler only reads; the handle makes it close.
            while ws.next().await.is_some() {}
        }
    })
    .await;
    let mut ws = client(addr, Config::default()).await;
    let handle = rx.await.unwrap();
    assert!(!handle.is_requested());
    handle.close(CloseCode::GOING_AWAY, "draining");
    let msg = ws.next().await.unwrap().unwrap();
    assert_eq!(
        msg,
        Message::Close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "draining")))
    );
    assert!(ws.next().await.is_none());
    assert_eq!(ws.connection().close_code(), Some(CloseCode::GOING_AWAY));
}
