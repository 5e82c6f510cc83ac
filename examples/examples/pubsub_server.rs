//! Pub/sub server: a sockeye-pubsub hub at `/ws` with one open namespace,
//! `test:` (clients may publish; the last 1000 publications of each topic
//! are kept 10 minutes for recovery; presence on), and `bench:` for the
//! fan-out benchmark (clients publish; no history, no presence). The wire
//! protocol is in `crates/sockeye-pubsub/PROTOCOL.md`.
//!
//! ```text
//! cargo run --release --example pubsub_server -- --addr 127.0.0.1:9002
//!     [--redis redis://127.0.0.1:6379 [--redis-mode standalone|sharded] | --nats nats://127.0.0.1:4222]
//!     [--threads N] [--deflate] [--allow-origin ORIGIN]... [--rate-limit N] [--history-mb N] [--history-topics N]
//!     [--max-connections N] [--max-connections-per-ip N] [--metrics ADDR]
//! ```
//! Prints `listening on ADDR` once ready. Without `--redis` the hub uses the
//! in-memory broker; with it, several servers on one Redis deliver each
//! other's publications (`sharded` uses SSUBSCRIBE/SPUBLISH on a Redis
//! Cluster; give any node). `--nats` does the same on a NATS server, which
//! keeps no history: `test:` then has none either (presence stays on).
//! `--rate-limit` sets the commands a socket may
//! send per second (default 100, bursts of twice that). Other paths answer
//! 404. Ctrl-C or SIGTERM closes
//! every socket with 1001.

use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use sockeye_auth::{OriginLayer, OriginPolicy};
use sockeye_deflate::{DeflateConfig, DeflateLayer};
use sockeye_examples::{
    Caps, HistoryFlags, RedisFlags, ServerFlags, history_budget, parse_flags, serve_hub,
    server_runtime, text_body,
};
use sockeye_hyper::server::Drain;
use sockeye_pubsub::{
    HistoryBudget, Hub, Namespace, NatsBroker, RateLimit, RedisBroker, RedisMode,
};
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt};

/// Pub/sub server: a sockeye-pubsub hub at /ws with the namespaces test: and bench:.
#[derive(Debug, clap::Parser)]
#[command(name = "pubsub_server")]
struct Flags {
    /// Listen on this address.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9002")]
    addr: String,
    #[command(flatten)]
    redis: RedisFlags,
    /// Share publications with other servers through this NATS server (no
    /// history: the test: namespace keeps none).
    #[arg(long, value_name = "URL", conflicts_with = "redis")]
    nats: Option<String>,
    /// Offer permessage-deflate.
    #[arg(long)]
    deflate: bool,
    /// Refuse upgrades from other origins with 403 (repeatable).
    #[arg(long, value_name = "ORIGIN")]
    allow_origin: Vec<String>,
    /// Commands a socket may send per second (bursts of twice that).
    #[arg(long, value_name = "N", default_value_t = 100.0)]
    rate_limit: f64,
    #[command(flatten)]
    history: HistoryFlags,
    #[command(flatten)]
    server: ServerFlags,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flags: Flags = parse_flags();
    let origins = match flags.allow_origin.as_slice() {
        [] => None,
        list => Some(OriginLayer::new(OriginPolicy::list(list)?)),
    };
    let options = Options {
        redis: flags.redis.broker(),
        nats: flags.nats,
        deflate: flags.deflate,
        origins,
        rate: flags.rate_limit,
        history: history_budget(&flags.history),
        caps: Caps::from_flags(&flags.server),
    };
    server_runtime(&flags.server)?.block_on(serve(flags.addr, options))
}

struct Options {
    redis: Option<(String, RedisMode)>,
    nats: Option<String>,
    deflate: bool,
    origins: Option<OriginLayer>,
    rate: f64,
    history: HistoryBudget,
    caps: Caps,
}

async fn serve(addr: String, options: Options) -> Result<(), Box<dyn std::error::Error>> {
    let Options {
        redis,
        nats,
        deflate,
        origins,
        rate,
        history,
        caps,
    } = options;
    let mut test = Namespace::new().client_publish(true).presence(true);
    if nats.is_none() {
        test = test.history(1000, Duration::from_secs(600));
    }
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
    if let Some(url) = &nats {
        builder = builder.broker(NatsBroker::connect(url).await?);
    }
    if deflate {
        builder = builder.deflate(DeflateConfig::new());
    }
    let hub = builder.try_build()?;
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
        match (&redis, &nats) {
            (Some((url, mode)), _) => format!("Redis {url}, {mode:?}"),
            (None, Some(url)) => format!("NATS {url}, no history"),
            (None, None) => "in-memory broker".to_owned(),
        }
    );
    serve_hub(listener, service, &drain, caps, &hub).await?;
    Ok(())
}
