//! Shared helpers for the sockeye examples: a tiny command-line parser (the
//! examples' flags are an interface; this keeps them uniform), runtime
//! construction, and the accept loop serving hyper connections with
//! upgrades and a drain on Ctrl-C/SIGTERM.
#![forbid(unsafe_code)]

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use sockeye_hyper::Body;
use sockeye_hyper::server::Drain;
use std::collections::HashMap;
use std::convert::Infallible;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// Parsed `--flag value` and `--switch` arguments plus positionals.
#[derive(Debug, Default)]
pub struct Args {
    values: HashMap<String, Vec<String>>,
    switches: Vec<String>,
    positional: Vec<String>,
}

impl Args {
    /// Parses `std::env::args()`. `flags` take a value, `switches` do not;
    /// anything else starting with `--` is an error. `--help` prints `usage`.
    pub fn parse(usage: &str, flags: &[&str], switches: &[&str]) -> Self {
        match Self::parse_from(std::env::args().skip(1), flags, switches) {
            Ok(args) => args,
            Err(msg) => {
                if msg != "help" {
                    eprintln!("error: {msg}");
                }
                eprintln!("{usage}");
                std::process::exit(if msg == "help" { 0 } else { 2 });
            }
        }
    }

    /// Parses the given arguments (without the program name).
    pub fn parse_from<I: IntoIterator<Item = String>>(
        args: I,
        flags: &[&str],
        switches: &[&str],
    ) -> Result<Self, String> {
        let mut out = Self::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            if arg == "--help" || arg == "-h" {
                return Err("help".into());
            }
            if let Some(name) = arg.strip_prefix("--") {
                let (name, inline) = match name.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_owned())),
                    None => (name, None),
                };
                if flags.contains(&name) {
                    let value = match inline {
                        Some(v) => v,
                        None => it.next().ok_or_else(|| format!("--{name} needs a value"))?,
                    };
                    out.values.entry(name.to_owned()).or_default().push(value);
                } else if switches.contains(&name) && inline.is_none() {
                    out.switches.push(name.to_owned());
                } else {
                    return Err(format!("unknown flag --{name}"));
                }
            } else {
                out.positional.push(arg);
            }
        }
        Ok(out)
    }

    /// The last value of a flag.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// Every value of a repeatable flag.
    pub fn values(&self, name: &str) -> &[String] {
        self.values.get(name).map_or(&[], Vec::as_slice)
    }

    /// Whether a switch was given.
    pub fn switch(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }

    /// Positional arguments.
    pub fn positional(&self) -> &[String] {
        &self.positional
    }

    /// A flag parsed as `T`, or exit with a message.
    pub fn parsed<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.value(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("error: invalid value for --{name}: {v}");
                std::process::exit(2);
            }),
        }
    }
}

/// The hub's history budget from `--history-mb N` (MiB, default 64) and
/// `--history-topics N` (default 100,000).
pub fn history_budget(args: &Args) -> sockeye_pubsub::HistoryBudget {
    let default = sockeye_pubsub::HistoryBudget::default();
    let mb: usize = args.parsed("history-mb", default.bytes >> 20);
    sockeye_pubsub::HistoryBudget::new(
        mb.saturating_mul(1 << 20),
        args.parsed("history-topics", default.topics),
    )
}

/// A tokio runtime: current-thread for `threads == 1`, else multi-thread
/// with that many workers (0: one per core).
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if threads > 1 {
            b.worker_threads(threads);
        }
        b.enable_all().build()
    }
}

/// A TLS acceptor from PEM files: a certificate chain and a private key.
pub fn tls_acceptor(
    cert: &str,
    key: &str,
    versions: HttpVersions,
) -> Result<tokio_rustls::TlsAcceptor, Box<dyn std::error::Error>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{cert}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{cert}: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{key}: {e}"))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = match versions {
        HttpVersions::Http1 => vec![b"http/1.1".to_vec()],
        HttpVersions::Http1And2 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)))
}

// ---- Serving over hyper, shared by the server examples ----

/// A plain-text response body.
pub fn text_body(text: &'static str) -> Body {
    use http_body_util::BodyExt;
    http_body_util::Full::new(hyper::body::Bytes::from_static(text.as_bytes()))
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// An HTML page (`no-cache`, so a rebuilt example serves its new page).
pub fn html_page(html: &'static str) -> Response<Body> {
    let mut resp = Response::new(text_body(html));
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    resp
}

/// 404 with a short body.
pub fn not_found() -> Response<Body> {
    let mut resp = Response::new(text_body("not found\n"));
    *resp.status_mut() = http::StatusCode::NOT_FOUND;
    resp
}

/// Serves `service` over HTTP/1 (plain TCP) until Ctrl-C or SIGTERM; then
/// every session of `hub` (WebSocket or event stream) is closed with 1001,
/// and the sockets and HTTP connections drain.
pub async fn serve_hub<S>(
    listener: TcpListener,
    drain: &Drain,
    service: S,
    hub: &sockeye_pubsub::Hub,
) -> std::io::Result<()>
where
    S: tower::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let closing = hub.clone();
    accept_loop_with(
        listener,
        drain,
        hyper_connection(service, None, HttpVersions::Http1),
        move || {
            closing.close_all(sockeye_proto::CloseCode::GOING_AWAY, "server shutting down");
        },
    )
    .await
}

/// Accepts until Ctrl-C or SIGTERM, handing each connection to `on_conn`,
/// then drains the sockets and waits (at most [`HTTP_GRACE`]) for the plain
/// HTTP connections to finish their responses.
pub async fn accept_loop<F>(listener: TcpListener, drain: &Drain, on_conn: F) -> std::io::Result<()>
where
    F: Fn(TcpStream, watch::Receiver<bool>),
{
    accept_loop_with(listener, drain, on_conn, || {}).await
}

/// [`accept_loop`] running `on_shutdown` first when the signal comes (a
/// pub/sub hub closes its sessions there, so event streams end and HTTP
/// connections can finish).
pub async fn accept_loop_with<F>(
    listener: TcpListener,
    drain: &Drain,
    on_conn: F,
    on_shutdown: impl FnOnce(),
) -> std::io::Result<()>
where
    F: Fn(TcpStream, watch::Receiver<bool>),
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        on_conn(tcp, stop_rx.clone());
    }
    on_shutdown();
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
    // Every connection task holds a receiver until hyper is done with it;
    // an event stream that got its closing event finishes writing here,
    // instead of being cut when the runtime stops.
    drop(stop_rx);
    if tokio::time::timeout(HTTP_GRACE, stop_tx.closed())
        .await
        .is_err()
    {
        eprintln!(
            "{} HTTP connection(s) still open after {HTTP_GRACE:?}: dropped",
            stop_tx.receiver_count()
        );
    }
    Ok(())
}

/// How long a shutdown waits for plain HTTP connections (event streams,
/// slow responses) once the sockets have drained.
pub const HTTP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Which HTTP versions a server example speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HttpVersions {
    /// HTTP/1.1 only (WebSockets by upgrade).
    #[default]
    Http1,
    /// HTTP/1.1 and HTTP/2 (h2c by prior knowledge, or `h2` by ALPN over
    /// TLS), with RFC 8441 extended CONNECT announced for WebSockets.
    Http1And2,
}

/// Serves each connection with hyper, speaking `versions` (upgrades on),
/// over TLS when an acceptor is given.
pub fn hyper_connection<S>(
    service: S,
    tls: Option<TlsAcceptor>,
    versions: HttpVersions,
) -> impl Fn(TcpStream, watch::Receiver<bool>)
where
    S: tower::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    move |tcp, mut stop| {
        let svc = TowerToHyperService::new(service.clone());
        let tls = tls.clone();
        // Two task types, so a plain connection's task is not sized for
        // a TLS stream's state (kilobytes).
        match tls {
            None => drop(tokio::spawn(async move {
                serve_io(TokioIo::new(tcp), svc, versions, &mut stop).await;
            })),
            Some(tls) => drop(tokio::spawn(async move {
                let Ok(stream) = tls.accept(tcp).await else {
                    return;
                };
                serve_io(TokioIo::new(stream), svc, versions, &mut stop).await;
            })),
        }
    }
}

async fn serve_io<I, S>(io: I, svc: S, versions: HttpVersions, stop: &mut watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    match versions {
        HttpVersions::Http1 => {
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, svc);
            serve_http(conn.with_upgrades(), stop).await;
        }
        HttpVersions::Http1And2 => {
            let mut builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            builder.http2().enable_connect_protocol();
            serve_http(builder.serve_connection_with_upgrades(io, svc), stop).await;
        }
    }
}

/// A served HTTP connection that can be asked to finish its requests and
/// close (hyper's and hyper-util's upgradeable connections).
pub trait GracefulHttp: std::future::Future {
    /// Stops taking new requests; the future ends once the open ones do.
    fn shut_down(self: std::pin::Pin<&mut Self>);
}

impl<I, S> GracefulHttp for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shut_down(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B> GracefulHttp
    for hyper_util::server::conn::auto::UpgradeableConnection<
        '_,
        I,
        S,
        hyper_util::rt::TokioExecutor,
    >
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shut_down(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Serves one HTTP connection; on shutdown lets it finish its request.
pub async fn serve_http<C: GracefulHttp>(conn: C, stop: &mut watch::Receiver<bool>) {
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {
            conn.as_mut().shut_down();
            let _ = conn.await;
        }
    }
}

pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return std::future::pending().await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        Args::parse_from(
            args.iter().map(|s| s.to_string()),
            &["addr", "header"],
            &["raw"],
        )
    }

    #[test]
    fn flags_switches_and_positionals() {
        let a = parse(&[
            "ws://x",
            "--addr",
            "1:2",
            "--header=a: b",
            "--header",
            "c: d",
            "--raw",
        ])
        .unwrap();
        assert_eq!(a.value("addr"), Some("1:2"));
        assert_eq!(a.values("header"), ["a: b", "c: d"]);
        assert!(a.switch("raw"));
        assert_eq!(a.positional(), ["ws://x"]);
        assert!(parse(&["--nope"]).is_err());
        assert!(parse(&["--addr"]).is_err());
        assert!(parse(&["--raw=1"]).is_err());
    }
}
