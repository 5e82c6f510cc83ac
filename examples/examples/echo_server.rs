//! Echo server: echoes every text and binary message, answers pings, allows
//! 64 MiB messages. The Autobahn fuzzing client and the load benchmark run
//! against it.
//!
//! ```text
//! cargo run --release --example echo_server -- --addr 127.0.0.1:9001 [--threads N] [--raw]
//!     [--tls-cert cert.pem --tls-key key.pem]
//! ```
//! Prints `listening on ADDR` once ready. `--threads 1` runs a current-thread
//! runtime; otherwise a multi-thread runtime with N workers (default: one per
//! core). By default it serves through hyper and sockeye-hyper's
//! `UpgradeService`; `--raw` uses sockeye-proto's own accept path instead.
//! With a certificate and key it serves `wss://`. Ctrl-C or SIGTERM drains:
//! every open socket gets close 1001, then the process exits.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use sockeye_examples::{Args, runtime, tls_acceptor};
use sockeye_hyper::server::{Drain, Handshake, UpgradeService, WebSocket};
use sockeye_proto::{Acceptor, Config, Message};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const USAGE: &str = "usage: echo_server [--addr HOST:PORT] [--threads N] [--raw] \
                     [--tls-cert PEM --tls-key PEM]";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse(USAGE, &["addr", "threads", "tls-cert", "tls-key"], &["raw"]);
    let addr = args.value("addr").unwrap_or("127.0.0.1:9001").to_owned();
    let threads = args.parsed("threads", 0usize);
    let tls = match (args.value("tls-cert"), args.value("tls-key")) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };
    let raw = args.switch("raw");
    runtime(threads)?.block_on(serve(addr, raw, tls))?;
    Ok(())
}

/// Echo configuration: Autobahn needs 16 MiB messages; we allow 64 MiB.
fn config() -> Config {
    Config::builder()
        .max_message_size(64 << 20)
        .max_frame_size(64 << 20)
        .keepalive_interval(Some(Duration::from_secs(30)))
        .build()
}

async fn serve(addr: String, raw: bool, tls: Option<TlsAcceptor>) -> std::io::Result<()> {
    let listener = TcpListener::bind(&addr).await?;
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    println!("listening on {}", listener.local_addr()?);
    eprintln!(
        "echo server: {scheme}://{}/ ({})",
        listener.local_addr()?,
        if raw { "raw accept" } else { "hyper" }
    );

    let drain = Drain::new();
    let service = UpgradeService::new(echo_hyper)
        .config(config())
        .drain(&drain);
    let acceptor = Arc::new(Acceptor::new().config(config()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        if raw {
            let acceptor = Arc::clone(&acceptor);
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(tls) => match tls.accept(tcp).await {
                        Ok(stream) => echo_raw(&acceptor, stream).await,
                        Err(e) => eprintln!("TLS handshake failed: {e}"),
                    },
                    None => echo_raw(&acceptor, tcp).await,
                }
            });
            continue;
        }
        let svc = TowerToHyperService::new(service.clone());
        let tls = tls.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let builder = hyper::server::conn::http1::Builder::new();
            match tls {
                None => {
                    serve_http(
                        builder
                            .serve_connection(TokioIo::new(tcp), svc)
                            .with_upgrades(),
                        &mut stop,
                    )
                    .await
                }
                Some(tls) => {
                    let Ok(stream) = tls.accept(tcp).await else {
                        return;
                    };
                    serve_http(
                        builder
                            .serve_connection(TokioIo::new(stream), svc)
                            .with_upgrades(),
                        &mut stop,
                    )
                    .await;
                }
            }
        });
    }
    // Plain HTTP connections finish their request and close; sockets drain.
    let _ = stop_tx.send(true);
    eprintln!(
        "shutting down: closing {} socket(s) with 1001",
        drain.open_sockets()
    );
    let report = drain.shutdown().await;
    eprintln!(
        "drained: {} closed, {} dropped",
        report.closed, report.forced
    );
    Ok(())
}

/// Serves one HTTP connection; on shutdown lets it finish its request.
async fn serve_http<C>(conn: C, stop: &mut tokio::sync::watch::Receiver<bool>)
where
    C: std::future::Future + GracefulConnection,
{
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// hyper's connection futures that can finish gracefully.
trait GracefulConnection {
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>);
}

impl<I, S> GracefulConnection for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        hyper::server::conn::http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn echo_hyper(ws: WebSocket, _handshake: Handshake) {
    echo(ws).await;
}

async fn echo_raw<S>(acceptor: &Acceptor, io: S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match acceptor.accept(io).await {
        Ok((ws, _)) => echo(ws).await,
        Err(e) => eprintln!("handshake failed: {e}"),
    }
}

/// Reading writes out what was fed before it waits, so a burst of messages
/// is echoed in one write. Errors close the connection with the right code;
/// reading on until `None` finishes that close.
async fn echo<S>(mut ws: sockeye_proto::WebSocket<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(msg) = ws.next().await {
        if let Ok(m @ (Message::Text(_) | Message::Binary(_))) = msg {
            // A refused feed means the socket is closing.
            let _ = ws.feed(m).await;
        }
    }
}
