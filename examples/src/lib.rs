//! Shared helpers for the sockeye examples: the flags the servers share (clap
//! structs to flatten; the examples' flags are an interface, this keeps them
//! uniform), runtime construction, TLS from PEM files, and
//! `sockeye_hyper::serve` with the examples' connection caps and a drain on
//! Ctrl-C/SIGTERM.
#![forbid(unsafe_code)]

use http::Response;
use sockeye_hyper::Body;
use sockeye_hyper::HttpService;
use sockeye_hyper::server::Drain;
use tokio::net::TcpListener;

/// Parses the command line into `T`, as `T::parse()` does (`--help`; a
/// usage error exits 2 with clap's message), keeping the examples' long
/// flag syntax: an option's value may start with `-` (`--bearer -x`), and
/// a flag given twice keeps its last value.
pub fn parse_flags<T: clap::Parser>() -> T {
    let mut cmd = flags_command::<T>();
    let mut matches = cmd.get_matches_mut();
    T::from_arg_matches_mut(&mut matches)
        .map_err(|e| e.format(&mut cmd))
        .unwrap_or_else(|e| e.exit())
}

/// [`parse_flags`] from `args` (the program name first), returning the
/// error instead of exiting.
pub fn try_parse_flags_from<T, I>(args: I) -> Result<T, clap::Error>
where
    T: clap::Parser,
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString> + Clone,
{
    let mut cmd = flags_command::<T>();
    let mut matches = cmd.try_get_matches_from_mut(args)?;
    T::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut cmd))
}

/// `T`'s command with the examples' flag syntax (see [`parse_flags`]).
fn flags_command<T: clap::CommandFactory>() -> clap::Command {
    T::command().args_override_self(true).mut_args(|arg| {
        if !arg.is_positional() && arg.get_action().takes_values() {
            arg.allow_hyphen_values(true)
        } else {
            arg
        }
    })
}

/// The hub's history budget flags (see [`history_budget`]).
#[derive(Clone, Debug, clap::Args)]
pub struct HistoryFlags {
    /// History kept over all topics at most, in MiB.
    #[arg(
        long,
        value_name = "N",
        default_value_t = sockeye_pubsub::HistoryBudget::default().bytes >> 20
    )]
    pub history_mb: usize,
    /// Topics holding history at most.
    #[arg(
        long,
        value_name = "N",
        default_value_t = sockeye_pubsub::HistoryBudget::default().topics
    )]
    pub history_topics: usize,
}

/// The hub's history budget from `--history-mb N` (MiB) and
/// `--history-topics N`.
pub fn history_budget(flags: &HistoryFlags) -> sockeye_pubsub::HistoryBudget {
    sockeye_pubsub::HistoryBudget::new(
        flags.history_mb.saturating_mul(1 << 20),
        flags.history_topics,
    )
}

/// The Redis flags of a hub: `--redis URL` and `--redis-mode MODE`.
#[derive(Clone, Debug, clap::Args)]
pub struct RedisFlags {
    /// Share publications with other servers through this Redis (default:
    /// in-memory broker).
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// How to use --redis: SUBSCRIBE and PUBLISH, or sharded pub/sub on a
    /// Redis Cluster (give any node).
    #[arg(
        long,
        value_name = "MODE",
        value_enum,
        default_value_t = RedisModeFlag::Standalone
    )]
    pub redis_mode: RedisModeFlag,
}

impl RedisFlags {
    /// The Redis URL and mode, if `--redis` was given.
    pub fn broker(&self) -> Option<(String, sockeye_pubsub::RedisMode)> {
        let mode = match self.redis_mode {
            RedisModeFlag::Standalone => sockeye_pubsub::RedisMode::Standalone,
            RedisModeFlag::Sharded => sockeye_pubsub::RedisMode::Sharded,
        };
        self.redis.clone().map(|url| (url, mode))
    }
}

/// The value of `--redis-mode`: `standalone` or `sharded`
/// ([`sockeye_pubsub::RedisMode`]'s variants).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RedisModeFlag {
    Standalone,
    Sharded,
}

/// A tokio runtime: current-thread for `threads == 1`, else multi-thread
/// with that many workers (0: one per core). Logging is set up first
/// ([`init_tracing`]).
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    init_tracing();
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

/// Logs to stderr through `tracing-subscriber`, filtered by `RUST_LOG`
/// (default: warnings and errors). Spans are printed when they close, with
/// their fields: `RUST_LOG=sockeye_hyper=info` shows each server socket's
/// `websocket` span as it ends (transport, peer, subprotocol, extension,
/// `close_code`, `close_initiator`); `RUST_LOG=debug` adds every event
/// (refused upgrades, the end of each socket, slow consumers). A second
/// call does nothing.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::fmt::format::FmtSpan;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
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

/// The flags every server example shares: `--threads N` and
/// `--metrics ADDR` ([`server_runtime`]), and the connection caps
/// ([`Caps::from_flags`]).
#[derive(Clone, Debug, clap::Args)]
pub struct ServerFlags {
    /// Runtime worker threads (1: a current-thread runtime; 0: one per
    /// core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
    /// Serve the sockeye_* metrics at http://ADDR/metrics (Prometheus text
    /// format).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Open connections at most (503 beyond).
    #[arg(
        long,
        value_name = "N",
        default_value_t = sockeye_hyper::serve::DEFAULT_MAX_CONNECTIONS
    )]
    pub max_connections: usize,
    /// Open connections per client IP at most (503 beyond; 0: no cap).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_connections_per_ip: usize,
}

/// The runtime of a server example ([`runtime`] with `--threads N`). With
/// `--metrics ADDR` it also serves every `sockeye_*` counter and gauge at
/// `http://ADDR/metrics` in the Prometheus text format, on this runtime.
pub fn server_runtime(
    flags: &ServerFlags,
) -> Result<tokio::runtime::Runtime, Box<dyn std::error::Error>> {
    let runtime = runtime(flags.threads)?;
    if let Some(addr) = flags.metrics {
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
    /// The caps from `--max-connections` and `--max-connections-per-ip`.
    pub fn from_flags(flags: &ServerFlags) -> Self {
        let per_ip = flags.max_connections_per_ip;
        Self {
            max: flags.max_connections,
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

    /// A server's command line: the shared structs flattened.
    #[derive(Debug, clap::Parser)]
    struct Flags {
        #[arg(long, default_value = "127.0.0.1:1")]
        addr: String,
        #[arg(long)]
        bearer: Option<String>,
        #[arg(long)]
        header: Vec<String>,
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        redis: RedisFlags,
        #[command(flatten)]
        history: HistoryFlags,
        #[command(flatten)]
        server: ServerFlags,
    }

    fn parse(args: &[&str]) -> Result<Flags, clap::Error> {
        try_parse_flags_from(std::iter::once("test").chain(args.iter().copied()))
    }

    #[test]
    fn defaults() {
        let f = parse(&[]).unwrap();
        assert_eq!(f.addr, "127.0.0.1:1");
        assert_eq!(
            history_budget(&f.history),
            sockeye_pubsub::HistoryBudget::default()
        );
        assert_eq!(f.server.threads, 0);
        assert_eq!(f.server.metrics, None);
        let caps = Caps::from_flags(&f.server);
        assert_eq!((caps.max, caps.per_ip), (Caps::default().max, None));
        assert_eq!(f.redis.broker(), None);
    }

    #[test]
    fn values_switches_and_repeats() {
        let f = parse(&[
            "--addr",
            "1:2",
            "--addr=3:4",
            "--bearer",
            "-tok",
            "--header=a: b",
            "--header",
            "c: d",
            "--raw",
            "--raw",
            "--threads=1",
            "--metrics",
            "127.0.0.1:9",
            "--max-connections",
            "10",
            "--max-connections-per-ip=2",
            "--history-mb",
            "3",
            "--history-topics=7",
            "--redis",
            "redis://r",
            "--redis-mode=sharded",
        ])
        .unwrap();
        assert_eq!(f.addr, "3:4");
        assert_eq!(f.bearer.as_deref(), Some("-tok"));
        assert_eq!(f.header, ["a: b", "c: d"]);
        assert!(f.raw);
        assert_eq!(f.server.threads, 1);
        assert_eq!(f.server.metrics, Some("127.0.0.1:9".parse().unwrap()));
        let caps = Caps::from_flags(&f.server);
        assert_eq!((caps.max, caps.per_ip), (10, Some(2)));
        assert_eq!(
            history_budget(&f.history),
            sockeye_pubsub::HistoryBudget::new(3 << 20, 7)
        );
        assert_eq!(
            f.redis.broker(),
            Some(("redis://r".to_owned(), sockeye_pubsub::RedisMode::Sharded))
        );
    }

    #[test]
    fn usage_errors() {
        use clap::error::ErrorKind;
        let kind = |args: &[&str]| parse(args).unwrap_err().kind();
        assert_eq!(kind(&["--nope"]), ErrorKind::UnknownArgument);
        assert_eq!(kind(&["--threads", "abc"]), ErrorKind::ValueValidation);
        assert_eq!(kind(&["--metrics", "nowhere"]), ErrorKind::ValueValidation);
        assert_eq!(kind(&["--redis-mode", "x"]), ErrorKind::InvalidValue);
        assert_eq!(kind(&["--addr"]), ErrorKind::InvalidValue);
        assert_eq!(kind(&["--raw=1"]), ErrorKind::TooManyValues);
        assert_eq!(kind(&["stray"]), ErrorKind::UnknownArgument);
        let err = parse(&["--threads", "abc"]).unwrap_err().to_string();
        assert!(err.contains("--threads"), "{err}");
    }
}

/// The guide's chapters (`docs/src`), compiled as doctests: every `rust`
/// block in them is built by `cargo test -p sockeye-examples --doc`.
#[cfg(doctest)]
mod guide {
    #[doc = include_str!("../../docs/src/start.md")]
    mod start {}
    #[doc = include_str!("../../docs/src/axum.md")]
    mod axum {}
    #[doc = include_str!("../../docs/src/client.md")]
    mod client {}
    #[doc = include_str!("../../docs/src/pubsub.md")]
    mod pubsub {}
    #[doc = include_str!("../../docs/src/limits.md")]
    mod limits {}
    #[doc = include_str!("../../docs/src/operating.md")]
    mod operating {}
}
