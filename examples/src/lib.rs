//! Shared helpers for the sockeye examples: a tiny command-line parser (the
//! examples' flags are an interface; this keeps them uniform), runtime
//! construction, TLS from PEM files, and `sockeye_hyper::serve` with the
//! examples' connection-cap flags and a drain on Ctrl-C/SIGTERM.
#![forbid(unsafe_code)]

use http::Response;
use sockeye_hyper::Body;
use sockeye_hyper::HttpService;
use sockeye_hyper::server::Drain;
use std::collections::HashMap;
use tokio::net::TcpListener;

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

/// A TLS server configuration from PEM files: a certificate chain and a
/// private key; ALPN offers `h2` too when `http2` is on.
pub fn tls_config(
    cert: &str,
    key: &str,
    http2: bool,
) -> Result<std::sync::Arc<rustls::ServerConfig>, Box<dyn std::error::Error>> {
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
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(std::sync::Arc::new(config))
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

/// The flags every server example shares, to list in [`Args::parse`]:
/// `--threads N` and `--metrics ADDR` ([`server_runtime`]), and the
/// connection caps ([`Caps::from_args`]).
pub const SERVER_FLAGS: [&str; 4] = [
    "threads",
    "metrics",
    "max-connections",
    "max-connections-per-ip",
];

/// The runtime of a server example ([`runtime`] with `--threads N`). With
/// `--metrics ADDR` it also serves every `sockeye_*` counter and gauge at
/// `http://ADDR/metrics` in the Prometheus text format, on this runtime.
pub fn server_runtime(args: &Args) -> Result<tokio::runtime::Runtime, Box<dyn std::error::Error>> {
    let runtime = runtime(args.parsed("threads", 0usize))?;
    if let Some(addr) = args.value("metrics") {
        let addr: std::net::SocketAddr =
            addr.parse().map_err(|e| format!("--metrics {addr}: {e}"))?;
        let _in_runtime = runtime.enter();
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .map_err(|e| format!("--metrics {addr}: {e}"))?;
        eprintln!("metrics: http://{addr}/metrics");
    }
    Ok(runtime)
}

/// The connection caps of a server example: `--max-connections N`
/// (default 65,536) and `--max-connections-per-ip N` (default none).
#[derive(Clone, Copy, Debug)]
pub struct Caps {
    /// Open connections at most (503 beyond).
    pub max: usize,
    /// Open connections per client IP at most (503 beyond).
    pub per_ip: Option<usize>,
}

impl Default for Caps {
    fn default() -> Self {
        Self {
            max: sockeye_hyper::serve::DEFAULT_MAX_CONNECTIONS,
            per_ip: None,
        }
    }
}

impl Caps {
    /// The caps from the flags.
    pub fn from_args(args: &Args) -> Self {
        let per_ip = args.parsed("max-connections-per-ip", 0usize);
        Self {
            max: args.parsed("max-connections", Self::default().max),
            per_ip: (per_ip > 0).then_some(per_ip),
        }
    }
}

/// `sockeye_hyper::serve` on `listener` under `caps`, draining `drain` on
/// Ctrl-C or SIGTERM after `on_shutdown` ran (a pub/sub hub closes its
/// sessions there, so event streams end and their connections finish).
pub fn serve<S: HttpService>(
    listener: TcpListener,
    service: S,
    drain: &Drain,
    caps: Caps,
    on_shutdown: impl FnOnce() + Send + 'static,
) -> sockeye_hyper::Serve<S> {
    let open = drain.clone();
    sockeye_hyper::serve(listener, service)
        .max_connections(caps.max)
        .max_connections_per_ip(caps.per_ip)
        .drain(drain)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            on_shutdown();
            eprintln!(
                "shutting down: closing {} socket(s) with 1001",
                open.open_sockets()
            );
        })
}

/// A hub's server: [`serve`] closing every session of `hub` (WebSocket or
/// event stream) with 1001 on shutdown.
pub fn serve_hub<S: HttpService>(
    listener: TcpListener,
    service: S,
    drain: &Drain,
    caps: Caps,
    hub: &sockeye_pubsub::Hub,
) -> sockeye_hyper::Serve<S> {
    let hub = hub.clone();
    serve(listener, service, drain, caps, move || {
        hub.close_all(sockeye_proto::CloseCode::GOING_AWAY, "server shutting down");
    })
}

/// Ctrl-C or SIGTERM.
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
