//! A peer that stops reading cannot hold a connection past the close
//! timeout: the close decision starts the timer even while every write is
//! blocked, and the transport is reset (the kernel's send buffer goes too).
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use sockeye_proto::{Acceptor, CloseCode, Config, Error, Message, TimeoutKind, WebSocket};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use common::upgrade_request;

const CLOSE_TIMEOUT: Duration = Duration::from_millis(800);
/// The bound the issue sets: the close timeout plus a quarter second.
const SLACK: Duration = Duration::from_millis(250);

/// A client socket with a small receive buffer that performs the
/// handshake and then reads nothing.
async fn stalled_client(addr: std::net::SocketAddr) -> TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    tcp.write_all(upgrade_request("").as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    tcp
}

async fn accepted(listener: &TcpListener) -> WebSocket<TcpStream> {
    let (tcp, _) = listener.accept().await.unwrap();
    let config = Config::builder().close_timeout(CLOSE_TIMEOUT).build();
    Acceptor::new().config(config).accept(tcp).await.unwrap().0
}

/// Feeds 64 KiB messages until the writes block (the peer's window and the
/// kernel's buffer are full); returns the socket with the last one queued.
async fn fill(ws: &mut WebSocket<TcpStream>) {
    let chunk = Message::binary(vec![7u8; 64 << 10]);
    loop {
        match tokio::time::timeout(Duration::from_millis(300), ws.send(chunk.clone())).await {
            Ok(r) => r.unwrap(),
            Err(_) => return, // blocked
        }
    }
}

/// What the stalled peer finds once it reads again: a reset, never the
/// close frame that sat behind the data it did not take.
async fn reads_to_reset(mut tcp: TcpStream) {
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0usize;
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) => return Ok(total),
                Ok(n) => total += n,
                Err(e) => return Err(e.kind()),
            }
        }
    })
    .await
    .expect("the connection ended");
    assert_eq!(
        outcome,
        Err(std::io::ErrorKind::ConnectionReset),
        "the server reset the connection (it read {total} bytes)"
    );
}

#[tokio::test]
async fn a_blocked_close_times_out_and_resets_the_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = tokio::spawn(stalled_client(addr));
    let mut ws = accepted(&listener).await;
    let client = client.await.unwrap();
    fill(&mut ws).await;

    // The close handshake itself blocks behind the unread data: the close
    // timer ends it.
    let decided = Instant::now();
    let err = ws
        .close(CloseCode::POLICY_VIOLATION, "slow consumer")
        .await
        .unwrap_err();
    let took = decided.elapsed();
    assert!(matches!(err, Error::Timeout(TimeoutKind::Close)), "{err:?}");
    assert!(
        took >= CLOSE_TIMEOUT && took <= CLOSE_TIMEOUT + SLACK,
        "{took:?}"
    );
    // The stream is over (the reader learns of the timeout too), and
    // dropping it releases the connection.
    assert!(matches!(
        ws.recv().await,
        Some(Err(Error::Timeout(TimeoutKind::Close)))
    ));
    assert!(ws.recv().await.is_none());
    drop(ws);
    reads_to_reset(client).await;
}

#[tokio::test]
async fn a_close_handle_on_split_halves_releases_a_blocked_writer() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = tokio::spawn(stalled_client(addr));
    let mut ws = accepted(&listener).await;
    let client = client.await.unwrap();
    let handle = ws.close_handle();
    let (mut read, mut write) = ws.split();
    // The writer blocks on the stalled peer; the reader waits for input.
    let writer = tokio::spawn(async move {
        let chunk = Message::binary(vec![1u8; 64 << 10]);
        loop {
            if let Err(e) = write.send(chunk.clone()).await {
                return (e, write);
            }
        }
    });
    let reader = tokio::spawn(async move {
        let mut last = None;
        while let Some(r) = read.recv().await {
            last = Some(r.map(|_| ()));
        }
        (last, Instant::now(), read)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!writer.is_finished(), "the writer should be blocked");

    let decided = Instant::now();
    handle.close(CloseCode::POLICY_VIOLATION, "slow consumer");
    let (err, write) = writer.await.unwrap();
    assert!(matches!(err, Error::Closed), "{err:?}");
    let (last, ended, read) = tokio::time::timeout(CLOSE_TIMEOUT + Duration::from_secs(5), reader)
        .await
        .expect("the reader ended")
        .unwrap();
    let took = ended - decided;
    assert!(
        matches!(last, Some(Err(Error::Timeout(TimeoutKind::Close)))),
        "{last:?}"
    );
    assert!(
        took >= CLOSE_TIMEOUT && took <= CLOSE_TIMEOUT + SLACK,
        "{took:?}"
    );
    drop((read, write));
    reads_to_reset(client).await;
}

/// The same close to a peer that reads: the handshake completes and the
/// connection is not reset.
#[tokio::test]
async fn a_reading_peer_still_gets_a_clean_close() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut ws, _) = sockeye_proto::client_handshake(
            tcp,
            sockeye_proto::handshake::client::ClientRequest::new(format!("ws://{addr}/")),
            Config::default(),
        )
        .await
        .unwrap();
        let (mut got, mut code) = (0, None);
        // Read on after the close frame: that sends the reply.
        while let Some(m) = ws.recv().await {
            match m.unwrap() {
                Message::Binary(b) => got += b.len(),
                Message::Close(f) => code = f.map(|f| f.code),
                _ => {}
            }
        }
        (got, code)
    });
    let mut ws = accepted(&listener).await;
    for _ in 0..64 {
        ws.send(Message::binary(vec![3u8; 64 << 10])).await.unwrap();
    }
    ws.close(CloseCode::POLICY_VIOLATION, "done").await.unwrap();
    let (got, code) = client.await.unwrap();
    assert_eq!(got, 64 * (64 << 10));
    assert_eq!(code, Some(CloseCode::POLICY_VIOLATION));
}
