//! The `client` example as a user runs it, `printf 'hello\n' | client URL
//! [--proxy URL]`, against a loopback server that answers `hello` only after
//! the client's stdin has ended: every reply sent before the server's close
//! is printed, and the client exits 0 (issue 21.5).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use sockeye_proto::{CloseCode, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An example binary, built next to this test by `cargo test`.
fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().and_then(Path::parent).unwrap();
    let bin = debug.join("examples").join(name);
    assert!(bin.is_file(), "{} is missing", bin.display());
    bin
}

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
