//! WebSockets over HTTP/2 (RFC 8441) beside HTTP/1.1, on sockeye's echo
//! server with `--http2`: the same closed loops as the echo rows, each
//! socket a stream of an HTTP/2 connection, all on one connection or one
//! connection each. No peer serves RFC 8441, so the reference is sockeye's
//! own HTTP/1.1 path in the same run.
//!
//! The generator opens each stream with hyper's HTTP/2 client (an extended
//! CONNECT with `:protocol websocket`) and then sends the same pre-masked
//! frames as over TCP; hyper frames them into DATA frames on its side.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Empty;
use hyper::client::conn::http2::SendRequest;
use hyper::ext::Protocol;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::{BoxError, Server, Table, Target, Throughput, client_frame, start, throughput_of};

/// A client's side of one HTTP/2 connection.
pub(crate) type Sender = SendRequest<Empty<Bytes>>;

/// The server: sockeye-hyper with HTTP/2 beside HTTP/1.1 (h2c by prior
/// knowledge) on a current-thread runtime.
const SERVER: Server = Server {
    name: "sockeye (hyper, --http2)",
    program: "echo_server",
    args: &["--threads", "1", "--http2"],
    websocket: true,
    ours: true,
};

/// Opens an HTTP/2 connection by prior knowledge, its driver spawned.
async fn connect(addr: &str) -> Result<Sender, BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tcp))
        .await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Opens one socket as a stream of `sender`'s connection.
pub(crate) async fn open_stream(
    sender: &Sender,
    target: &Target,
) -> Result<TokioIo<Upgraded>, BoxError> {
    let mut sender = sender.clone();
    let mut request = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("http://{}{}", target.addr, target.path))
        .header("sec-websocket-version", "13")
        .body(Empty::new())?;
    request
        .extensions_mut()
        .insert(Protocol::from_static("websocket"));
    // hyper sends an extended CONNECT only once the server's SETTINGS
    // allowed it; right after the handshake it may not have them yet.
    let mut tries = 0;
    let response = loop {
        sender.ready().await?;
        match sender.send_request(clone_request(&request)).await {
            Ok(response) => break response,
            Err(_) if tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    if response.status() != StatusCode::OK {
        return Err(format!("extended CONNECT refused: {}", response.status()).into());
    }
    Ok(TokioIo::new(hyper::upgrade::on(response).await?))
}

/// The CONNECT again, for a retry (a request is consumed by sending it).
fn clone_request(request: &Request<Empty<Bytes>>) -> Request<Empty<Bytes>> {
    let mut copy = Request::new(Empty::new());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.headers_mut() = request.headers().clone();
    if let Some(protocol) = request.extensions().get::<Protocol>() {
        copy.extensions_mut().insert(protocol.clone());
    }
    copy
}

/// How the sockets of a row travel.
struct Layout {
    name: &'static str,
    /// HTTP/2 connections (0: HTTP/1.1, one TCP connection per socket).
    connections: usize,
}

const LAYOUTS: &[Layout] = &[
    Layout {
        name: "HTTP/1.1, a TCP connection per socket",
        connections: 0,
    },
    Layout {
        name: "HTTP/2, all sockets on one connection",
        connections: 1,
    },
    Layout {
        name: "HTTP/2, 10 connections",
        connections: 10,
    },
    Layout {
        name: "HTTP/2, a connection per socket",
        connections: 100,
    },
];

/// The payloads: (title, opcode, payload, sockets, in flight per socket).
fn sizes() -> Vec<(&'static str, u8, Vec<u8>, usize, usize)> {
    vec![
        ("20 B text", 0x1, vec![b'x'; 20], 100, 16),
        ("1 KiB binary", 0x2, vec![0xAB; 1024], 100, 16),
        ("64 KiB binary", 0x2, vec![0xCD; 64 << 10], 10, 4),
    ]
}

/// The HTTP/2 tables, one per payload size.
pub(crate) async fn tables(quick: bool) -> Vec<Table> {
    let window = if quick {
        (Duration::from_millis(500), Duration::from_secs(2))
    } else {
        (Duration::from_secs(1), Duration::from_secs(5))
    };
    let mut tables = Vec::new();
    for (title, opcode, payload, sockets, in_flight) in sizes() {
        let mut lines = Vec::new();
        let mut reference: Option<Throughput> = None;
        for layout in LAYOUTS {
            // A row with as many connections as sockets is the same as
            // "a connection per socket" when the sockets are few.
            let connections = layout.connections.min(sockets);
            if layout.connections > 1 && connections < layout.connections && connections > 1 {
                continue;
            }
            eprint!("{:<24} http2 {title}, {} ... ", SERVER.name, layout.name);
            let result = row(
                connections,
                sockets,
                in_flight,
                client_frame(opcode, &payload, false),
                payload.len(),
                window,
            )
            .await;
            match result {
                Ok(t) => {
                    let cpu = t.cpu_us_per_msg;
                    eprintln!(
                        "{:.0} msg/s, server CPU {} µs/msg",
                        t.msgs_per_sec,
                        cpu.map_or_else(|| "?".to_owned(), |c| format!("{c:.2}"))
                    );
                    let vs = reference.as_ref().map_or_else(
                        || "1.00×".to_owned(),
                        |r| ratio(t.msgs_per_sec, r.msgs_per_sec),
                    );
                    let cpu_vs = match (cpu, reference.as_ref().and_then(|r| r.cpu_us_per_msg)) {
                        (Some(c), Some(r)) if c > 0.0 => format!("{:.2}×", c / r),
                        (Some(_), None) if reference.is_none() => "1.00×".to_owned(),
                        _ => "–".to_owned(),
                    };
                    lines.push(vec![
                        layout.name.to_owned(),
                        format!("{:.0}", t.msgs_per_sec),
                        format!("{:.1}", t.bytes_per_sec / 1e6),
                        vs,
                        cpu.map_or_else(|| "?".to_owned(), |c| format!("{c:.2}")),
                        cpu_vs,
                    ]);
                    if reference.is_none() {
                        reference = Some(t);
                    }
                }
                Err(e) => {
                    eprintln!("failed: {e}");
                    lines.push(vec![
                        layout.name.to_owned(),
                        "failed".to_owned(),
                        "–".to_owned(),
                        "–".to_owned(),
                        "–".to_owned(),
                        "–".to_owned(),
                    ]);
                }
            }
        }
        tables.push(Table {
            title: format!(
                "{title} over HTTP/2 and HTTP/1.1, {sockets} sockets × {in_flight} in flight"
            ),
            intro: "sockeye's `echo_server --http2 --threads 1`, each socket an RFC 8441 stream \
                 (h2c by prior knowledge) or its own HTTP/1.1 connection; the generator is \
                 hyper's HTTP/2 client. Ratios are against the HTTP/1.1 row of the same run \
                 (for CPU, lower is better)."
                .to_owned(),
            header: [
                "sockets travel on",
                "msg/s",
                "MB/s",
                "vs HTTP/1.1",
                "server CPU µs/msg",
                "CPU vs HTTP/1.1",
            ]
            .map(str::to_owned)
            .to_vec(),
            lines,
            notes: Vec::new(),
        });
    }
    tables
}

fn ratio(value: f64, reference: f64) -> String {
    if reference > 0.0 {
        format!("{:.2}×", value / reference)
    } else {
        "–".to_owned()
    }
}

/// One measurement on a fresh server: `sockets` closed loops spread over
/// `connections` HTTP/2 connections (0: HTTP/1.1).
async fn row(
    connections: usize,
    sockets: usize,
    in_flight: usize,
    frame: Vec<u8>,
    payload_len: usize,
    window: (Duration, Duration),
) -> Result<Throughput, BoxError> {
    let running = start(&SERVER)?;
    let mut targets = Vec::with_capacity(sockets);
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        senders.push(connect(&running.addr).await?);
    }
    for i in 0..sockets {
        targets.push(Target {
            addr: running.addr.clone(),
            websocket: true,
            deflate: false,
            path: "/",
            h2: senders.get(i % connections.max(1)).cloned(),
        });
    }
    let result = throughput_of(
        &targets,
        running.child.id(),
        frame,
        payload_len,
        in_flight,
        window,
    )
    .await;
    drop(senders);
    drop(running);
    result
}
