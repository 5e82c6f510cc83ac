//! An axum app: a page at `/` whose script opens a socket at `/ws` and echoes
//! what you type.
//!
//! ```text
//! cargo run --example axum -- [--addr 127.0.0.1:3000]
//! ```

use axum::Router;
use axum::response::{Html, Response};
use axum::routing::get;
use futures_util::StreamExt;
use sockeye_examples::parse_flags;
use sockeye_hyper::Message;
use sockeye_hyper::axum::WebSocketUpgrade;

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8"><title>sockeye + axum</title>
<style>body{font:16px system-ui;margin:2em;max-width:40em}#log{white-space:pre-wrap;border:1px solid #ccc;padding:.5em;min-height:8em}</style>
<h1>sockeye + axum</h1>
<p>Status: <b id="status">connecting</b></p>
<form id="f"><input id="msg" autofocus placeholder="say something"> <button>send</button></form>
<div id="log"></div>
<script>
const log = (t) => { document.getElementById('log').textContent += t + '\n'; };
const ws = new WebSocket(`ws://${location.host}/ws`);
ws.onopen = () => { document.getElementById('status').textContent = 'open'; };
ws.onclose = (e) => { document.getElementById('status').textContent = `closed (${e.code})`; };
ws.onmessage = (e) => log('< ' + e.data);
document.getElementById('f').onsubmit = (e) => {
  e.preventDefault();
  const m = document.getElementById('msg');
  ws.send(m.value); log('> ' + m.value); m.value = '';
};
</script>
"#;

async fn ws(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(|mut socket| async move {
        while let Some(Ok(msg)) = socket.next().await {
            if let Message::Text(text) = msg
                && socket.send(format!("echo: {text}")).await.is_err()
            {
                break;
            }
        }
    })
}

/// An axum app: a page at / whose script echoes what you type over a
/// socket at /ws.
#[derive(Debug, clap::Parser)]
#[command(name = "axum")]
struct Flags {
    /// Listen on this address.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:3000")]
    addr: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let Flags { addr } = parse_flags();
    sockeye_examples::init_tracing();
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/ws", get(ws));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    // hyper with the raw path's limits (handshake deadline, head size,
    // 414, connection caps), stopping on Ctrl-C or SIGTERM.
    sockeye_hyper::serve(listener, app)
        .with_graceful_shutdown(sockeye_examples::shutdown_signal())
        .await
}
