//! Echo server: echoes every text and binary message, answers pings, allows
//! 64 MiB messages. The Autobahn fuzzing client and the load benchmark run
//! against it.
//!
//! ```text
//! cargo run --release --example echo_server -- --addr 127.0.0.1:9001 [--threads N]
//! ```
//! Prints `listening on ADDR` once ready. `--threads 1` runs a current-thread
//! runtime; otherwise a multi-thread runtime with N workers (default: one per
//! core).

use futures_util::{SinkExt, StreamExt};
use sockeye_examples::{Args, runtime};
use sockeye_proto::{Acceptor, Config, Message};
use tokio::net::{TcpListener, TcpStream};

const USAGE: &str = "usage: echo_server [--addr HOST:PORT] [--threads N]";

fn main() -> std::io::Result<()> {
    let args = Args::parse(USAGE, &["addr", "threads"], &[]);
    let addr = args.value("addr").unwrap_or("127.0.0.1:9001").to_owned();
    let threads = args.parsed("threads", 0usize);
    runtime(threads)?.block_on(serve(addr))
}

async fn serve(addr: String) -> std::io::Result<()> {
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    let acceptor = Acceptor::new().config(
        Config::builder()
            .max_message_size(64 << 20)
            .max_frame_size(64 << 20)
            .build(),
    );
    loop {
        let (tcp, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            if let Err(e) = echo(acceptor, tcp).await {
                eprintln!("connection ended: {e}");
            }
        });
    }
}

async fn echo(acceptor: Acceptor, tcp: TcpStream) -> Result<(), sockeye_proto::Error> {
    tcp.set_nodelay(true)?;
    let (mut ws, _) = acceptor.accept(tcp).await?;
    // Reading writes out what was fed before it waits, so a burst of
    // messages is echoed in one write. Errors close the connection with the
    // right code; reading on until `None` finishes that close.
    while let Some(msg) = ws.next().await {
        if let Ok(m @ (Message::Text(_) | Message::Binary(_))) = msg {
            // A refused feed means the socket is closing: reading on
            // finishes the close handshake.
            let _ = ws.feed(m).await;
        }
    }
    Ok(())
}
