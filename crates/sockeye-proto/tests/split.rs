//! Split halves in two tasks, and cancel safety of `next()`.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sockeye_proto::{Acceptor, Config, Message, WebSocket};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use common::{client, masked_frame, server, upgrade_request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halves_in_two_tasks_read_and_write_concurrently() {
    // The server sends 2000 messages from one task while another reads.
    let (done_tx, done_rx) = tokio::sync::mpsc::unbounded_channel();
    let addr = server(Acceptor::new(), move |ws: WebSocket<TcpStream>| {
        let done_tx = done_tx.clone();
        async move {
            let (mut read, mut write) = ws.split();
            let writer = tokio::spawn(async move {
                for i in 0..2000u32 {
                    write.feed(Message::text(format!("s{i}"))).await.unwrap();
                }
                write.flush().await.unwrap();
                write
            });
            let mut got = 0u32;
            while let Some(Ok(m)) = read.next().await {
                if let Message::Text(t) = m {
                    if t != format!("c{got}").as_str() {
                        break;
                    }
                    got += 1;
                }
            }
            let write = writer.await.unwrap();
            let reunited = read.reunite(write).is_ok();
            let _ = done_tx.send((got, reunited));
        }
    })
    .await;

    let ws = client(addr, Config::default()).await;
    let (mut read, mut write) = ws.split();
    let sender = tokio::spawn(async move {
        for i in 0..2000u32 {
            write.feed(Message::text(format!("c{i}"))).await.unwrap();
        }
        write.flush().await.unwrap();
        write
    });
    for i in 0..2000u32 {
        let m = read.next().await.unwrap().unwrap();
        assert_eq!(m, Message::text(format!("s{i}")));
    }
    let mut write = sender.await.unwrap();
    write
        .close(sockeye_proto::CloseCode::NORMAL, "")
        .await
        .unwrap();
    // The read half sees the server's reply and ends.
    while let Some(m) = read.next().await {
        assert!(m.unwrap().is_close());
    }
    let mut done_rx = done_rx;
    assert_eq!(done_rx.recv().await, Some((2000, true)));
}

#[tokio::test]
async fn read_half_answers_pings_while_the_write_half_is_idle() {
    let (done_tx, done_rx) = tokio::sync::mpsc::unbounded_channel();
    let addr = server(Acceptor::new(), move |mut ws: WebSocket<TcpStream>| {
        let done_tx = done_tx.clone();
        async move {
            let mut pongs = 0;
            for i in 0..10u8 {
                ws.send(Message::ping(vec![i])).await.unwrap();
                if ws.next().await.unwrap().unwrap() == Message::pong(vec![i]) {
                    pongs += 1;
                }
            }
            ws.close(sockeye_proto::CloseCode::NORMAL, "")
                .await
                .unwrap();
            let _ = done_tx.send(pongs);
        }
    })
    .await;
    let ws = client(addr, Config::default()).await;
    let (mut read, _write) = ws.split();
    let mut pings = 0;
    while let Some(m) = read.next().await {
        if let Message::Ping(_) = m.unwrap() {
            pings += 1;
        }
    }
    assert_eq!(pings, 10);
    let mut done_rx = done_rx;
    assert_eq!(done_rx.recv().await, Some(10));
}

#[tokio::test]
async fn dropping_next_mid_frame_loses_no_byte() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (mut ws, _) = Acceptor::new().accept(tcp).await.unwrap();
        // Cancel `next()` repeatedly while the frame trickles in.
        let mut cancelled = 0;
        loop {
            match tokio::time::timeout(Duration::from_millis(20), ws.next()).await {
                Ok(m) => return (m.unwrap().unwrap(), cancelled),
                Err(_) => cancelled += 1,
            }
        }
    });
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(upgrade_request("").as_bytes()).await.unwrap();
    let payload: Vec<u8> = (0..3000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let frame = masked_frame(0x81, &payload);
    for piece in frame.chunks(700) {
        tcp.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let (msg, cancelled) = server.await.unwrap();
    assert!(
        cancelled > 0,
        "the test must cancel at least once mid-frame"
    );
    assert_eq!(msg, Message::text(String::from_utf8(payload).unwrap()));
}
