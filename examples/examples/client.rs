//! A line client: every line typed on stdin is sent as a text message; every
//! message received is printed.
//!
//! ```text
//! cargo run --example client -- URL [--proxy URL] [--header 'K: V']... [--protocol P]... [--reconnect]
//!     [--http2] [--deflate]
//! ```
//! `--proxy` tunnels through an HTTP CONNECT proxy (otherwise `HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` apply). `--reconnect` reconnects
//! with backoff after each drop, until a normal close or the end of stdin.
//! `--http2` opens the socket over HTTP/2 (RFC 8441: ALPN `h2` for `wss://`,
//! prior knowledge for `ws://`), e.g. against `echo_server --http2`.
//! `--deflate` offers permessage-deflate (RFC 7692); what the server
//! agreed is printed to stderr (`extensions: ...`). A message that inflates
//! past the 64 MiB message limit (a compression bomb) closes with 1009.
//!
//! At the end of stdin the client sends a normal close and keeps printing
//! what the server sent before its own close (or until the close timeout),
//! then exits 0: `printf 'hello\n' | client URL` prints the replies to `hello`.

use futures_util::{SinkExt, StreamExt};
use sockeye_examples::{parse_flags, runtime};
use sockeye_hyper::client::{ClientBuilder, ReconnectEvent};
use sockeye_hyper::{CloseCode, Message};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

/// A line client: sends every line of stdin as a text message and prints
/// every message received.
#[derive(Debug, clap::Parser)]
#[command(name = "client")]
struct Flags {
    /// The socket to open (ws:// or wss://).
    #[arg(value_name = "URL")]
    url: String,
    /// Tunnel through this HTTP CONNECT proxy (default: from HTTPS_PROXY,
    /// HTTP_PROXY, ALL_PROXY and NO_PROXY).
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
    /// Send this request header (repeatable).
    #[arg(long, value_name = "K: V")]
    header: Vec<String>,
    /// Offer this subprotocol (repeatable).
    #[arg(long, value_name = "P")]
    protocol: Vec<String>,
    /// Reconnect with backoff after each drop, until a normal close or the
    /// end of stdin.
    #[arg(long)]
    reconnect: bool,
    /// Open the socket over HTTP/2 (RFC 8441).
    #[arg(long)]
    http2: bool,
    /// Offer permessage-deflate.
    #[arg(long)]
    deflate: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flags: Flags = parse_flags();
    let mut builder = ClientBuilder::new(flags.url);
    if let Some(proxy) = &flags.proxy {
        builder = builder.proxy(proxy)?;
    }
    for header in &flags.header {
        let Some((name, value)) = header.split_once(':') else {
            return Err(format!("--header wants 'Name: value', got {header:?}").into());
        };
        builder = builder.header(name.trim(), value.trim());
    }
    builder = builder.protocols(flags.protocol);
    if flags.deflate {
        builder = builder.deflate(sockeye_deflate::DeflateConfig::new());
    }
    let reconnect = flags.reconnect;
    let http2 = flags.http2;
    if reconnect && http2 {
        return Err("--reconnect works over HTTP/1.1 only; drop --http2 or --reconnect".into());
    }
    runtime(1)?.block_on(run(builder, reconnect, http2))
}

async fn run(
    builder: ClientBuilder,
    reconnect: bool,
    http2: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    // Lines from stdin; `None` at end of input.
    let (tx, mut lines) = mpsc::channel::<String>(64);
    tokio::spawn(async move {
        let mut stdin = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = stdin.next_line().await {
            if tx.send(line).await.is_err() {
                break;
            }
        }
    });

    if http2 {
        let mut connection = builder.connect_http2().await?;
        let (ws, response) = builder.connect_on(&mut connection).await?;
        eprintln!("connected over HTTP/2");
        print_protocol(&response);
        session(ws, &mut lines).await;
        return Ok(());
    }
    if !reconnect {
        let (ws, response) = builder.connect().await?;
        print_protocol(&response);
        session(ws, &mut lines).await;
        return Ok(());
    }
    let mut connector = builder.reconnecting();
    while let Some(event) = connector.next().await {
        match event {
            ReconnectEvent::Connected { socket, attempt } => {
                eprintln!("connected (attempt {attempt})");
                if session(socket, &mut lines).await == End::Stdin {
                    connector.stop();
                }
            }
            ReconnectEvent::Retrying {
                attempt,
                error,
                delay,
            } => {
                eprintln!("attempt {attempt} failed: {error}; retrying in {delay:.1?}");
            }
            ReconnectEvent::GaveUp(error) => return Err(error.into()),
        }
    }
    Ok(())
}

fn print_protocol(response: &http::Response<()>) {
    if let Some(p) = response.headers().get("sec-websocket-protocol") {
        eprintln!("subprotocol: {}", p.to_str().unwrap_or("?"));
    }
    if let Some(e) = response.headers().get("sec-websocket-extensions") {
        eprintln!("extensions: {}", e.to_str().unwrap_or("?"));
    }
}

#[derive(PartialEq)]
enum End {
    Stdin,
    Socket,
}

async fn session<W>(mut ws: W, lines: &mut mpsc::Receiver<String>) -> End
where
    W: futures_util::Stream<Item = Result<Message, sockeye_proto::Error>>
        + futures_util::Sink<Message, Error = sockeye_proto::Error>
        + Unpin,
{
    let mut stdin_done = false;
    loop {
        tokio::select! {
            line = lines.recv(), if !stdin_done => match line {
                Some(line) => {
                    if let Err(e) = ws.send(Message::text(line)).await {
                        eprintln!("send failed: {e}");
                        return End::Socket;
                    }
                }
                None => {
                    // Start the close handshake but keep reading: what the
                    // server sent before its own close is still printed.
                    // `SinkExt::close` would drop it.
                    stdin_done = true;
                    if let Err(e) = ws.send(Message::close(CloseCode::NORMAL, "")).await {
                        eprintln!("close failed: {e}");
                        return End::Stdin;
                    }
                }
            },
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => println!("{t}"),
                Some(Ok(Message::Binary(b))) => println!("<{} bytes>", b.len()),
                Some(Ok(Message::Close(frame))) => {
                    match frame {
                        Some(f) => eprintln!("closed by the server: {} {}", f.code, f.reason),
                        None => eprintln!("closed by the server"),
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => eprintln!("error: {e}"),
                None if stdin_done => return End::Stdin,
                None => return End::Socket,
            },
        }
    }
}
