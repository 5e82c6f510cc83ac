//! Echo server: echoes every text and binary message, answers pings, allows
//! 64 MiB messages. The Autobahn fuzzing client and the load benchmark run
//! against it.
//!
//! ```text
//! cargo run --release --example echo_server -- --addr 127.0.0.1:9001 [--threads N] [--raw]
//!     [--deflate] [--deflate-takeover] [--tls-cert cert.pem --tls-key key.pem]
//!     [--allow-origin ORIGIN]... [--bearer TOKEN] [--http2]
//!     [--max-connections N] [--max-connections-per-ip N] [--metrics ADDR]
//! ```
//! Prints `listening on ADDR` once ready. `--threads 1` runs a current-thread
//! runtime; otherwise a multi-thread runtime with N workers (default: one per
//! core). By default it serves through hyper and sockeye-hyper's
//! `UpgradeService`; `--raw` uses sockeye-proto's own accept path instead.
//! `--deflate` accepts permessage-deflate offers (sockeye-deflate's
//! defaults: the server resets its compressor after each message, so none
//! is held per connection); `--deflate-takeover` does too but keeps one
//! compressor per connection across messages, as zlib does by default. With a certificate and key
//! it serves `wss://`. `--allow-origin` (repeatable) refuses upgrades from
//! other origins with 403 (requests without `Origin` pass); `--bearer`
//! requires `Authorization: Bearer TOKEN` (401 without, 403 if wrong).
//! `--http2` serves HTTP/2 beside HTTP/1.1 (h2c by prior knowledge; `h2`
//! by ALPN with TLS) and accepts WebSockets over it (RFC 8441 extended
//! CONNECT). The hyper path runs under `sockeye_hyper::serve`: the same
//! handshake deadline, head and header limits as the raw path, 414 past an
//! 8 KiB request target, and 503 past `--max-connections` (default 65,536)
//! or `--max-connections-per-ip` (default off). Ctrl-C or SIGTERM drains: every open socket gets close
//! 1001, then the process exits.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sockeye_auth::{
    AuthLayer, Credentials, Identity, OriginLayer, OriginPolicy, Rejection, Secret,
};
use sockeye_deflate::{DeflateConfig, DeflateLayer};
use sockeye_examples::{
    Caps, ServerFlags, parse_flags, server_runtime, shutdown_signal, tls_config,
};
use sockeye_hyper::server::{Drain, Handshake, UpgradeService, WebSocket};
use sockeye_proto::{Acceptor, Config, Message};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tower::ServiceBuilder;

/// Echo server: echoes every text and binary message (Autobahn and the
/// load benchmark run against it).
#[derive(Debug, clap::Parser)]
#[command(name = "echo_server")]
struct Flags {
    /// Listen on this address.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9001")]
    addr: String,
    /// Use sockeye-proto's own accept path instead of hyper.
    #[arg(long)]
    raw: bool,
    /// Accept permessage-deflate, resetting the compressor after each
    /// message.
    #[arg(long)]
    deflate: bool,
    /// Accept permessage-deflate, keeping one compressor per connection.
    #[arg(long)]
    deflate_takeover: bool,
    /// Serve wss:// with this certificate chain (with --tls-key).
    #[arg(long, value_name = "PEM")]
    tls_cert: Option<String>,
    /// The private key of --tls-cert.
    #[arg(long, value_name = "PEM")]
    tls_key: Option<String>,
    /// Refuse upgrades from other origins with 403 (repeatable).
    #[arg(long, value_name = "ORIGIN")]
    allow_origin: Vec<String>,
    /// Require "Authorization: Bearer TOKEN" (401 without, 403 if wrong).
    #[arg(long, value_name = "TOKEN")]
    bearer: Option<String>,
    /// Serve HTTP/2 beside HTTP/1.1, WebSockets over it by RFC 8441.
    #[arg(long)]
    http2: bool,
    #[command(flatten)]
    server: ServerFlags,
}

struct Options {
    raw: bool,
    http2: bool,
    deflate: Option<DeflateConfig>,
    tls: Option<Arc<rustls::ServerConfig>>,
    origins: Option<OriginLayer>,
    bearer: Option<Secret>,
    caps: Caps,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flags: Flags = parse_flags();
    let http2 = flags.http2;
    let tls = match (&flags.tls_cert, &flags.tls_key) {
        (Some(cert), Some(key)) => Some(tls_config(cert, key, http2)?),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };
    let origins = match flags.allow_origin.as_slice() {
        [] => None,
        list => Some(OriginLayer::new(OriginPolicy::list(list)?)),
    };
    if http2 && flags.raw {
        return Err("--http2 serves through hyper; the raw accept path is HTTP/1.1 only".into());
    }
    let options = Options {
        raw: flags.raw,
        http2,
        deflate: if flags.deflate_takeover {
            Some(DeflateConfig::new().server_no_context_takeover(false))
        } else {
            flags.deflate.then(DeflateConfig::new)
        },
        tls,
        origins,
        bearer: flags.bearer.map(Secret::new),
        caps: Caps::from_flags(&flags.server),
    };
    server_runtime(&flags.server)?.block_on(serve(flags.addr, options))?;
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

async fn serve(addr: String, options: Options) -> std::io::Result<()> {
    let listener = TcpListener::bind(&addr).await?;
    let scheme = if options.tls.is_some() { "wss" } else { "ws" };
    println!("listening on {}", listener.local_addr()?);
    eprintln!(
        "echo server: {scheme}://{}/ ({}{})",
        listener.local_addr()?,
        match (options.raw, options.http2) {
            (true, _) => "raw accept",
            (false, false) => "hyper",
            (false, true) => "hyper, HTTP/1.1 and HTTP/2",
        },
        if options.deflate.is_some() {
            ", permessage-deflate"
        } else {
            ""
        }
    );
    let drain = Drain::new();
    let tls = options.tls;
    if options.raw {
        let mut acceptor = Acceptor::new().config(config());
        if let Some(deflate) = options.deflate {
            acceptor = acceptor.extension(Arc::new(deflate));
        }
        let (origins, bearer) = (options.origins, options.bearer);
        if origins.is_some() || bearer.is_some() {
            acceptor = acceptor
                .check_request(move |req| raw_check(req, origins.as_ref(), bearer.as_ref()));
        }
        let acceptor = Arc::new(acceptor);
        return accept_raw(
            listener,
            acceptor,
            tls.map(tokio_rustls::TlsAcceptor::from),
            &drain,
        )
        .await;
    }
    // hyper: Origin -> Auth -> Deflate -> UpgradeService, each layer only if asked for.
    let auth = options.bearer.map(|token| {
        AuthLayer::new(move |creds: Credentials| {
            let ok = matches!(&creds, Credentials::Bearer(t) if token.matches(t.expose()));
            async move {
                if ok {
                    Ok(Identity::new("bearer"))
                } else {
                    Err(Rejection::Invalid)
                }
            }
        })
        .bearer()
    });
    let service = ServiceBuilder::new()
        .option_layer(options.origins)
        .option_layer(auth)
        .option_layer(options.deflate.map(DeflateLayer::new))
        .service(
            UpgradeService::new(echo_hyper)
                .config(config())
                .drain(&drain),
        );
    let mut server = sockeye_examples::serve(listener, service, &drain, options.caps, || {})
        .config(config())
        .http2(options.http2);
    if let Some(tls) = tls {
        server = server.tls(tls);
    }
    server.await
}

/// The raw accept path: sockeye-proto's `Acceptor` on each connection
/// (TLS first when configured), until Ctrl-C or SIGTERM, then a drain.
async fn accept_raw(
    listener: TcpListener,
    acceptor: Arc<Acceptor>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    drain: &Drain,
) -> std::io::Result<()> {
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = Arc::clone(&acceptor);
        // Two task types: a TLS stream's state is kilobytes, and a plain
        // connection's task must not be sized for it.
        match tls.clone() {
            Some(tls) => drop(tokio::spawn(async move {
                let deadline = config().handshake_timeout();
                match tokio::time::timeout(deadline, tls.accept(tcp)).await {
                    Ok(Ok(stream)) => echo_raw(&acceptor, stream).await,
                    Ok(Err(e)) => eprintln!("TLS handshake failed: {e}"),
                    Err(_) => eprintln!("TLS handshake timed out"),
                }
            })),
            None => drop(tokio::spawn(async move { echo_raw(&acceptor, tcp).await })),
        }
    }
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

/// The same checks on the raw accept path (synchronous: the token is compared here).
fn raw_check(
    req: &http::request::Parts,
    origins: Option<&OriginLayer>,
    bearer: Option<&Secret>,
) -> Result<(), http::StatusCode> {
    if let Some(origins) = origins
        && origins.check(&req.headers).is_err()
    {
        return Err(http::StatusCode::FORBIDDEN);
    }
    if let Some(token) = bearer {
        let presented = req
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            None => return Err(http::StatusCode::UNAUTHORIZED),
            Some(t) if !token.matches(t.trim()) => return Err(http::StatusCode::FORBIDDEN),
            Some(_) => {}
        }
    }
    Ok(())
}

/// Not an `async fn`: one would keep room for its arguments (the socket
/// and the request head) beside the echo loop's own copy of the socket for
/// the socket's whole life. The head is dropped here, before the socket's
/// task starts, and the task holds the echo loop alone.
fn echo_hyper(ws: WebSocket, handshake: Handshake) -> impl Future<Output = ()> + Send {
    drop(handshake);
    echo(ws)
}

/// The handshake in this task, the echo loop in a task of its own: a
/// task's size is fixed when it is spawned, and the socket's task then
/// holds no room for the handshake's state while the socket lives.
async fn echo_raw<S>(acceptor: &Acceptor, io: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match acceptor.accept(io).await {
        // The request head is not needed: dropped before echoing.
        Ok((ws, accepted)) => {
            drop(accepted);
            drop(tokio::spawn(echo(ws)));
        }
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
