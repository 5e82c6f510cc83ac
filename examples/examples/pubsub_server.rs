//! Pub/sub server: a sockeye-pubsub hub at `/ws` with one open namespace,
//! `test:` (clients may publish; the last 1000 publications of each topic
//! are kept 10 minutes for recovery; presence on), and `bench:` for the
//! fan-out benchmark (clients publish; no history, no presence). The wire
//! protocol is in `crates/sockeye-pubsub/PROTOCOL.md`.
//!
//! ```text
//! cargo run --release --example pubsub_server -- --addr 127.0.0.1:9002
//!     [--redis redis://127.0.0.1:6379 [--redis-mode standalone|sharded]]
//!     [--threads N] [--deflate] [--allow-origin ORIGIN]... [--rate-limit N] [--history-mb N] [--history-topics N]
//!     [--max-connections N] [--max-connections-per-ip N] [--metrics ADDR]
//! ```
//! Prints `listening on ADDR` once ready. Without `--redis` the hub uses the
//! in-memory broker; with it, several servers on one Redis deliver each
//! other's publications (`sharded` uses SSUBSCRIBE/SPUBLISH on a Redis
//! Cluster; give any node). `--rate-limit` sets the commands a socket may
//! send per second (default 100, bursts of twice that). Other paths answer
//! 404. Ctrl-C or SIGTERM closes
//! every socket with 1001.

use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use sockeye_auth::{OriginLayer, OriginPolicy};
use sockeye_deflate::{DeflateConfig, DeflateLayer};
use sockeye_examples::{
    Args, Caps, SERVER_FLAGS, history_budget, serve_hub, server_runtime, text_body,
};
use sockeye_hyper::server::Drain;
use sockeye_pubsub::{HistoryBudget, Hub, Namespace, RateLimit, RedisBroker, RedisMode};
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt};

const USAGE: &str = "usage: pubsub_server [--addr HOST:PORT] [--redis URL [--redis-mode standalone|sharded]] \
                     [--threads N] [--deflate] [--allow-origin ORIGIN]... [--rate-limit N] [--history-mb N] [--history-topics N] \
                     [--max-connections N] [--max-connections-per-ip N] [--metrics ADDR]";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse(
        USAGE,
        &[
            &[
                "addr",
                "redis",
                "redis-mode",
                "allow-origin",
                "rate-limit",
                "history-mb",
                "history-topics",
            ][..],
            &SERVER_FLAGS,
        ]
        .concat(),
        &["deflate"],
    );
    let addr = args.value("addr").unwrap_or("127.0.0.1:9002").to_owned();
    let mode = match args.value("redis-mode").unwrap_or("standalone") {
        "standalone" => RedisMode::Standalone,
        "sharded" => RedisMode::Sharded,
        other => return Err(format!("--redis-mode: {other}: standalone or sharded").into()),
    };
    let redis = args.value("redis").map(|url| (url.to_owned(), mode));
    let origins = match args.values("allow-origin") {
        [] => None,
        list => Some(OriginLayer::new(OriginPolicy::list(list)?)),
    };
    let options = Options {
        redis,
        deflate: args.switch("deflate"),
        origins,
        rate: args.parsed("rate-limit", 100.0f64),
        history: history_budget(&args),
        caps: Caps::from_args(&args),
    };
    server_runtime(&args)?.block_on(serve(addr, options))
}

struct Options {
    redis: Option<(String, RedisMode)>,
    deflate: bool,
    origins: Option<OriginLayer>,
    rate: f64,
    history: HistoryBudget,
    caps: Caps,
}

async fn serve(addr: String, options: Options) -> Result<(), Box<dyn std::error::Error>> {
    let Options {
        redis,
        deflate,
        origins,
        rate,
        history,
        caps,
    } = options;
    let test = Namespace::new()
        .client_publish(true)
        .history(1000, Duration::from_secs(600))
        .presence(true);
    // For benchmarks: clients publish, nothing kept.
    let bench = Namespace::new().client_publish(true);
    let burst = (2.0 * rate).clamp(1.0, f64::from(u32::MAX)) as u32;
    let mut builder = Hub::builder()
        .namespace("test", test)
        .namespace("bench", bench)
        .rate_limit(RateLimit::new(rate, burst))
        .history_budget(history);
    if let Some((url, mode)) = &redis {
        let broker = RedisBroker::builder(url.as_str())
            .mode(*mode)
            .connect()
            .await?;
        builder = builder.broker(broker);
    }
    if deflate {
        builder = builder.deflate(DeflateConfig::new());
    }
    let hub = builder.build();
    let drain = Drain::new();
    let upgrade = hub.upgrade_service().drain(&drain);
    let ws = ServiceBuilder::new()
        .option_layer(origins)
        .option_layer(deflate.then(|| DeflateLayer::new(DeflateConfig::new())))
        .service(upgrade);
    // `/ws` is the hub; anything else is 404.
    let service = tower::service_fn(move |req: Request<Incoming>| {
        let ws = ws.clone();
        async move {
            if req.uri().path() == "/ws" {
                ws.oneshot(req).await
            } else {
                let mut resp = Response::new(text_body("not found\n"));
                *resp.status_mut() = StatusCode::NOT_FOUND;
                Ok(resp)
            }
        }
    });
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    eprintln!(
        "pubsub server: ws://{}/ws, namespace test: ({})",
        listener.local_addr()?,
        match &redis {
            Some((url, mode)) => format!("Redis {url}, {mode:?}"),
            None => "in-memory broker".to_owned(),
        }
    );
    serve_hub(listener, service, &drain, caps, &hub).await?;
    Ok(())
}
