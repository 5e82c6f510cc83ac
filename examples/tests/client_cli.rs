//! The `client` example as a user runs it, `printf 'hello\n' | client URL
//! [--proxy URL]`, against a loopback server that answers `hello` only after
//! the client's stdin has ended: every reply sent before the server's close
//! is printed, and the client exits 0 (issue 21.5).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::example_binary;
use sockeye_proto::{CloseCode, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One WebSocket: waits for `hello`, then (the client's close frame is
/// already on its way) sends three replies and its own close.
async fn late_replier() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = sockeye_proto::accept(tcp).await.unwrap();
        let first = ws.recv().await.unwrap().unwrap();
        assert_eq!(first, Message::text("hello"));
        // The client has read its whole stdin by now and sent its close; we
        // have not read that close yet, so our state is still open.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for reply in ["one", "two", "three"] {
            ws.send(Message::text(reply)).await.unwrap();
        }
        let _ = ws.close(CloseCode::NORMAL, "bye").await;
    });
    (addr, task)
}

/// A CONNECT proxy for one tunnel.
async fn proxy() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut client, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            assert_eq!(client.read(&mut b).await.unwrap(), 1, "head cut short");
            head.push(b[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let target = head
            .strip_prefix("CONNECT ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("not a CONNECT: {head:?}"))
            .to_owned();
        let mut upstream = tokio::net::TcpStream::connect(target).await.unwrap();
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .unwrap();
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    });
    addr
}

/// Runs `client URL extra...` with `hello\n` on stdin; its exit status and
/// stdout.
async fn run_client(url: String, extra: Vec<String>) -> (std::process::ExitStatus, String) {
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(example_binary("client"))
            .arg(&url)
            .args(&extra)
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("ALL_PROXY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
        // stdin dropped: end of input.
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        (child.wait().unwrap(), out)
    })
    .await
    .unwrap()
}

async fn prints_every_reply(through_proxy: bool) {
    let (server, task) = late_replier().await;
    let mut extra = Vec::new();
    if through_proxy {
        extra.push("--proxy".to_owned());
        extra.push(format!("http://{}", proxy().await));
    }
    let run = run_client(format!("ws://{server}/"), extra);
    // The server's close comes at once; the close timeout (5 s) is the
    // client's bound if it did not.
    let (status, out) = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the client did not exit");
    assert!(status.success(), "{status}");
    assert_eq!(out, "one\ntwo\nthree\n");
    task.await.unwrap();
}

#[tokio::test]
async fn client_prints_what_arrives_after_stdin_ends() {
    prints_every_reply(false).await;
}

#[tokio::test]
async fn client_through_a_proxy_prints_what_arrives_after_stdin_ends() {
    prints_every_reply(true).await;
}

/// A raw DEFLATE stream of `mib` MiB of zeros, as permessage-deflate
/// carries it: one sync-flushed MiB, repeated (each copy decodes on its
/// own: a literal, then back-references to it), without the final
/// `00 00 ff ff`.
fn zeros_deflated(mib: usize) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::fast(), false);
    let mut one = Vec::with_capacity(16 << 10);
    c.compress_vec(&vec![0u8; 1 << 20], &mut one, flate2::FlushCompress::Sync)
        .unwrap();
    assert!(one.ends_with(&[0, 0, 0xff, 0xff]));
    let mut all = one.repeat(mib);
    all.truncate(all.len() - 4);
    all
}

/// The client's peak resident memory, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn client_with_deflate_closes_a_compression_bomb_with_1009() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut child = Command::new(example_binary("client"))
        .arg(format!("ws://{addr}/"))
        .arg("--deflate")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut tcp, _) = listener.accept().await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(tcp.read(&mut b).await.unwrap(), 1);
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.contains("permessage-deflate"), "no offer: {head}");
    let key = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .unwrap();
    let accept = sockeye_proto::handshake::accept_key(key.as_bytes());
    tcp.write_all(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: permessage-deflate; \
             server_no_context_takeover; client_no_context_takeover\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // One compressed binary message of 1 GiB of zeros, about 1 MiB on the
    // wire: past the client's 64 MiB message limit.
    let bomb = zeros_deflated(1024);
    let mut frame = vec![0xC2, 127];
    frame.extend_from_slice(&(bomb.len() as u64).to_be_bytes());
    frame.extend_from_slice(&bomb);
    // The client may close before it read the whole frame.
    let _ = tcp.write_all(&frame).await;
    // Its close frame: masked, code first.
    let mut close = [0u8; 8];
    tokio::time::timeout(Duration::from_secs(20), tcp.read_exact(&mut close))
        .await
        .expect("no close from the client")
        .unwrap();
    assert_eq!(close[0], 0x88, "{close:?}");
    let code = u16::from_be_bytes([close[6] ^ close[2], close[7] ^ close[3]]);
    assert_eq!(code, 1009);
    // Inflation stopped at the limit: nowhere near the bomb's 1 GiB.
    let peak = peak_rss_kib(child.id());
    assert!(peak < 160 << 10, "client peaked at {peak} KiB");
    drop(tcp);
    drop(child.stdin.take());
    let status = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(
        stderr.contains("extensions: permessage-deflate"),
        "{stderr}"
    );
}
