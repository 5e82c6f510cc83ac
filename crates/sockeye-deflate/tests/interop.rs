//! Interop over real sockets with the two mainstream stacks that compress by
//! default: Python `websockets` and Node `ws`, in both roles. The tests
//! install them when missing (pip, npm) and fail, never skip, if they cannot.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Once};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sockeye_deflate::DeflateConfig;
use sockeye_proto::handshake::client::ClientRequest;
use sockeye_proto::{Acceptor, Config, Message, client_handshake};
use tokio::net::{TcpListener, TcpStream};

const MESSAGES: &str = r#"["hello", "the quick brown fox jumps over the lazy dog. the quick brown fox jumps over the lazy dog. the quick brown fox jumps over the lazy dog. the quick brown fox jumps over the lazy dog.", "κόσμε κόσμε κόσμε κόσμε κόσμε κόσμε κόσμε κόσμε κόσμε κόσμε κόσμε κόσμε κόσμε κόσμε κόσμε κόσμε κόσμε κόσμε κόσμε κόσμε κόσμε κόσμε κόσμε κόσμε κόσμε κόσμε κόσμε κόσμε κόσμε κόσμε"]"#;

fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("interop");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .is_ok_and(|s| s.success())
}

/// Python 3 with `websockets` importable, installed with pip when missing.
fn python() -> &'static str {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let ok = || run(Command::new("python3").args(["-c", "import websockets.asyncio.server"]));
        if !ok() {
            eprintln!("installing Python websockets with pip (interop test)");
            assert!(
                run(Command::new("python3").args(["-m", "pip", "install", "-q", "websockets>=13"])),
                "pip could not install websockets: the interop test needs it"
            );
            assert!(ok(), "websockets installed but not importable");
        }
    });
    "python3"
}

/// A directory with Node's `ws` installed by npm when missing.
fn node_ws() -> PathBuf {
    static ONCE: Once = Once::new();
    let dir = scratch().join("node");
    ONCE.call_once(|| {
        std::fs::create_dir_all(&dir).unwrap();
        if !dir.join("node_modules/ws/package.json").is_file() {
            eprintln!(
                "installing Node ws with npm in {} (interop test)",
                dir.display()
            );
            assert!(
                run(Command::new("npm")
                    .args(["install", "--no-audit", "--no-fund", "--silent", "ws@8"])
                    .current_dir(&dir)),
                "npm could not install ws: the interop test needs it"
            );
        }
    });
    dir
}

/// Runs a script; it must exit 0. Returns its stdout.
async fn run_script(program: &str, dir: &Path, file: &str, body: &str, args: &[String]) -> String {
    let path = dir.join(file);
    std::fs::write(&path, body).unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(program)
            .arg(&path)
            .args(args)
            .current_dir(dir)
            .stderr(Stdio::inherit())
            .output(),
    )
    .await
    .expect("the peer script timed out")
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{file} failed: {stdout}");
    stdout
}

/// A sockeye echo server (raw accept path) with permessage-deflate; returns
/// its port and a receiver of the negotiated extension per connection.
async fn sockeye_server() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let acceptor = Acceptor::new().extension(Arc::new(DeflateConfig::new().threshold(16)));
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let (mut ws, _) = acceptor.accept(tcp).await.unwrap();
                let name = ws.connection().extension().map(|e| e.name().to_owned());
                let _ = tx.send(name.unwrap_or_default());
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text() || m.is_binary() {
                        let _ = ws.feed(m).await;
                    }
                }
            });
        }
    });
    (port, rx)
}

/// Our client against `url`, offering deflate: sends the messages, expects
/// them echoed, and returns the server's `Sec-WebSocket-Extensions`.
async fn sockeye_client(url: String) -> String {
    let port: u16 = url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = ClientRequest::new(url).negotiate(Arc::new(DeflateConfig::new().threshold(16)));
    let (mut ws, resp) = client_handshake(tcp, request, Config::default())
        .await
        .unwrap();
    let messages: Vec<String> = serde_like_list(MESSAGES);
    for m in &messages {
        ws.send(Message::text(m.as_str())).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(m.as_str()));
    }
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 7) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(big));
    let _ = ws.close(sockeye_proto::CloseCode::NORMAL, "").await;
    resp.headers()
        .get("sec-websocket-extensions")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The test messages (a JSON list of strings without escapes).
fn serde_like_list(json: &str) -> Vec<String> {
    json.trim_matches(|c| c == '[' || c == ']')
        .split("\", \"")
        .map(|s| s.trim_matches('"').to_owned())
        .collect()
}

/// Waits until something listens on `port`.
async fn wait_for(port: u16) {
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {port}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const PY_CLIENT: &str = r#"
import asyncio, json, sys
from websockets.asyncio.client import connect

async def main(url, messages):
    async with connect(url, max_size=2**24) as ws:
        ext = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert "permessage-deflate" in ext, ext
        for m in messages:
            await ws.send(m)
            assert await ws.recv() == m
        big = bytes(i % 7 for i in range(200000))
        await ws.send(big)
        assert await ws.recv() == big
        print(ext)

asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
"#;

const PY_SERVER: &str = r#"
import asyncio, sys
from websockets.asyncio.server import serve

async def echo(ws):
    async for m in ws:
        await ws.send(m)

async def main(port):
    async with serve(echo, "127.0.0.1", port, max_size=2**24):
        await asyncio.sleep(30)

asyncio.run(main(int(sys.argv[1])))
"#;

const NODE_CLIENT: &str = r#"
const WebSocket = require('ws');
const [url, json] = process.argv.slice(2);
const messages = JSON.parse(json);
const ws = new WebSocket(url, { perMessageDeflate: { threshold: 0 } });
let i = 0;
ws.on('upgrade', (res) => {
  const ext = res.headers['sec-websocket-extensions'] || '';
  if (!ext.includes('permessage-deflate')) { console.error('no deflate: ' + ext); process.exit(1); }
  console.log(ext);
});
ws.on('open', () => ws.send(messages[0]));
ws.on('message', (data, isBinary) => {
  if (data.toString() !== messages[i]) { console.error('mismatch'); process.exit(1); }
  i += 1;
  if (i === messages.length) { ws.close(1000); } else { ws.send(messages[i]); }
});
ws.on('close', () => process.exit(i === messages.length ? 0 : 1));
ws.on('error', (e) => { console.error(e); process.exit(1); });
"#;

const NODE_SERVER: &str = r#"
const WebSocket = require('ws');
const port = Number(process.argv[2]);
const wss = new WebSocket.Server({ port, host: '127.0.0.1', perMessageDeflate: { threshold: 0 } });
wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
setTimeout(() => process.exit(0), 30000);
"#;

#[tokio::test]
async fn python_websockets_client_against_sockeye_server() {
    let py = python();
    let (port, mut negotiated) = sockeye_server().await;
    let out = run_script(
        py,
        &scratch(),
        "py_client.py",
        PY_CLIENT,
        &[format!("ws://127.0.0.1:{port}/"), MESSAGES.to_owned()],
    )
    .await;
    assert!(out.contains("permessage-deflate"), "{out}");
    assert_eq!(negotiated.recv().await.unwrap(), "permessage-deflate");
}

#[tokio::test]
async fn sockeye_client_against_python_websockets_server() {
    let py = python();
    let port = free_port();
    let path = scratch().join("py_server.py");
    std::fs::write(&path, PY_SERVER).unwrap();
    let mut server = tokio::process::Command::new(py)
        .arg(&path)
        .arg(port.to_string())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_for(port).await;
    let ext = sockeye_client(format!("ws://127.0.0.1:{port}")).await;
    assert!(ext.contains("permessage-deflate"), "{ext}");
    let _ = server.kill().await;
}

#[tokio::test]
async fn node_ws_client_against_sockeye_server() {
    let dir = node_ws();
    let (port, mut negotiated) = sockeye_server().await;
    let out = run_script(
        "node",
        &dir,
        "client.js",
        NODE_CLIENT,
        &[format!("ws://127.0.0.1:{port}/"), MESSAGES.to_owned()],
    )
    .await;
    assert!(out.contains("permessage-deflate"), "{out}");
    assert_eq!(negotiated.recv().await.unwrap(), "permessage-deflate");
}

#[tokio::test]
async fn sockeye_client_against_node_ws_server() {
    let dir = node_ws();
    let port = free_port();
    let path = dir.join("server.js");
    std::fs::write(&path, NODE_SERVER).unwrap();
    let mut server = tokio::process::Command::new("node")
        .arg(&path)
        .arg(port.to_string())
        .current_dir(&dir)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_for(port).await;
    let ext = sockeye_client(format!("ws://127.0.0.1:{port}")).await;
    assert!(ext.contains("permessage-deflate"), "{ext}");
    let _ = server.kill().await;
}
