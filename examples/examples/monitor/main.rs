//! System monitor: the server samples this machine's CPU, memory and load
//! once a second and streams them to a page that draws live charts.
//!
//! ```text
//! cargo run --example monitor -- [--addr 127.0.0.1:8081] [--allowed-host HOST]...
//!     [--metrics ADDR] [--scrape http://HOST:PORT/metrics]
//! ```
//! Bound to loopback (the default), only requests naming `localhost`,
//! `127.0.0.1` or `[::1]` on its port reach the socket (DNS rebinding);
//! `--allowed-host NAME[:PORT]` adds names.
//! Open http://127.0.0.1:8081 and watch. Prints `listening on ADDR` once
//! ready. Linux only: it reads `/proc/stat`, `/proc/meminfo` and
//! `/proc/loadavg`.
//!
//! What it shows:
//!
//! - Beside CPU and memory, sockeye's own metrics (the `metrics` feature of
//!   each crate): sockets open, pub/sub sessions, messages in and out per
//!   second, publications and deliveries per second, closes, handshake
//!   rejections and slow-consumer drops per second, bytes queued. By
//!   default they are this process's (its recorder also serves
//!   `/metrics` with `--metrics ADDR`); `--scrape URL` charts another
//!   sockeye server's instead, e.g. `chat --metrics 127.0.0.1:9100` with
//!   `--scrape http://127.0.0.1:9100/metrics`. A failed scrape is shown as
//!   an error on the page and a gap in the chart.
//! - Server-side publishing on a sockeye-pubsub [`Hub`]: every sample goes
//!   to the topic `metrics:host` with `hub.publish`. Clients may only
//!   subscribe (the `metrics` namespace refuses client publishes).
//! - History as a backlog: the namespace keeps the last 120 samples (two
//!   minutes) for five minutes. A page that opens subscribes once to learn
//!   the stream position, then subscribes again with
//!   `since = newest offset - 120` and draws the last two minutes at once.
//!   After a lost connection it resubscribes `since` the last sample it has
//!   and gets exactly what it missed.
//! - A slow-consumer policy for dashboards: `SlowConsumer::KeepLatest`. A
//!   page that cannot keep up (a backgrounded tab, a bad link) is not
//!   disconnected and does not make the server queue a backlog: queued
//!   samples are replaced by the newest one.
//!
//! A sample, as published (CPU in percent, memory in bytes; in `sockeye`,
//! gauges as read and counters as rates per second, `null` on the first
//! sample, or `{"source": ..., "error": "..."}` when reading failed):
//!
//! ```json
//! {"t":1732670000123,"host":"box","cpu":12.5,"cores":[10.0,15.1],
//!  "mem":{"total":25276502016,"used":1200365568},"load":[0.52,0.58,0.59],
//!  "sockeye":{"source":"this process","sockets":2.0,"sessions":2.0,
//!   "queued_bytes":0.0,"messages_in":0.0,"messages_out":2.0,"bytes_in":0.0,
//!   "bytes_out":598.0,"publications":1.0,"deliveries":2.0,"closes":0.0,
//!   "rejections":0.0,"drops":0.0}}
//! ```
//! The page speaks the JSON protocol of `crates/sockeye-pubsub/PROTOCOL.md`
//! at `/ws`; any WebSocket client can subscribe the same way, and clients
//! that cannot open a WebSocket can use the Server-Sent Events + POST
//! fallback on the same URL (`hub.service()` serves both).

mod sockeye;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Method, Request};
use hyper::body::Incoming;
use serde_json::json;
use sockeye_auth::{OriginLayer, OriginPolicy};
use sockeye_examples::{Caps, html_page, not_found, parse_flags, runtime, serve_hub};
use sockeye_hyper::server::Drain;
use sockeye_pubsub::{Hub, Namespace, SlowConsumer};
use tokio::net::TcpListener;
use tokio::time::MissedTickBehavior;
use tower::{ServiceBuilder, ServiceExt};

/// The page, embedded in the binary.
const PAGE: &str = include_str!("index.html");

/// The one topic: this host's samples.
const TOPIC: &str = "metrics:host";

/// Samples kept for a page that opens (two minutes at one a second).
const HISTORY: usize = 120;

/// System monitor: streams this machine's CPU, memory and load to a page
/// of live charts.
#[derive(Debug, clap::Parser)]
#[command(name = "monitor")]
struct Flags {
    /// Listen on this address.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8081")]
    addr: String,
    /// Answer requests naming this host too, beside the loopback names
    /// (repeatable).
    #[arg(long, value_name = "NAME[:PORT]")]
    allowed_host: Vec<String>,
    /// Serve this process's sockeye_* metrics at http://ADDR/metrics
    /// (Prometheus text format).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Chart another sockeye server's metrics, read from this URL once a
    /// second, instead of this process's.
    #[arg(long, value_name = "URL")]
    scrape: Option<String>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flags: Flags = parse_flags();
    runtime(0)?.block_on(serve(flags))
}

async fn serve(flags: Flags) -> Result<(), Box<dyn std::error::Error>> {
    let Flags {
        addr,
        allowed_host: hosts,
        metrics,
        scrape,
    } = flags;
    // This process's recorder: read by the sampler, served with --metrics.
    let mut prometheus = metrics_exporter_prometheus::PrometheusBuilder::new();
    let handle = match metrics {
        Some(at) => {
            prometheus = prometheus.with_http_listener(at);
            let (recorder, exporter) = prometheus
                .build()
                .map_err(|e| format!("--metrics {at}: {e}"))?;
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).map_err(|e| format!("--metrics {at}: {e}"))?;
            tokio::spawn(exporter);
            eprintln!("metrics: http://{at}/metrics");
            handle
        }
        None => prometheus.install_recorder()?,
    };
    let source = match scrape {
        Some(url) => sockeye::Source::remote(&url)?,
        None => sockeye::Source::Local(handle),
    };

    // Fail early, before listening, where there is no /proc to read.
    let first = read_cpu()
        .await
        .map_err(|e| format!("monitor reads Linux's /proc: {e}"))?;
    let host = tokio::fs::read_to_string("/proc/sys/kernel/hostname")
        .await
        .map_or_else(|_| "localhost".to_owned(), |h| h.trim().to_owned());

    // Clients may subscribe, not publish (the default); two minutes of
    // samples kept; a slow page gets the newest sample instead of a backlog.
    let metrics = Namespace::new()
        .history(HISTORY, Duration::from_secs(300))
        .slow_consumer(SlowConsumer::KeepLatest);
    let hub = Hub::builder().namespace("metrics", metrics).build();
    tokio::spawn(sample_forever(
        hub.clone(),
        host,
        first,
        sockeye::Reader::new(source),
    ));

    // Host metrics are for this page only: other sites' pages that a
    // browser opens may not connect (requests without `Origin`, from
    // scripts and tools, pass).
    let listener = TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    let drain = Drain::new();
    let socket = ServiceBuilder::new()
        .layer(
            OriginLayer::new(OriginPolicy::same_origin())
                .check_all_requests(true)
                .bound_to(local)
                .allow_hosts(&hosts)?,
        )
        .service(hub.service().drain(&drain));
    let service = tower::service_fn(move |req: Request<Incoming>| {
        let socket = socket.clone();
        async move {
            match (req.method(), req.uri().path()) {
                (_, "/ws") => socket.oneshot(req).await,
                (&Method::GET, "/") => Ok(html_page(PAGE)),
                _ => Ok(not_found()),
            }
        }
    });

    println!("listening on {local}");
    eprintln!("monitor: http://{local}/ (topic {TOPIC}, one sample a second)");
    // On Ctrl-C or SIGTERM: every session (WebSocket, or SSE fallback) is
    // closed with 1001, then the sockets drain.
    serve_hub(listener, service, &drain, Caps::default(), &hub).await?;
    Ok(())
}

/// Samples once a second and publishes each sample to [`TOPIC`].
async fn sample_forever(
    hub: Hub,
    host: String,
    mut cpu: Vec<CpuTimes>,
    mut sockeye: sockeye::Reader,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.tick().await; // The first tick is at once; `cpu` was read just now.
    loop {
        tick.tick().await;
        let sample = match read_sample(&host, &mut cpu).await {
            Ok(mut sample) => {
                sample["sockeye"] = sockeye.next().await;
                sample
            }
            Err(e) => {
                eprintln!("monitor: reading /proc failed: {e}");
                continue;
            }
        };
        // Serialised once, framed once, queued to every subscriber.
        if let Err(e) = hub.publish(TOPIC, &sample).await {
            eprintln!("monitor: publish failed: {e}");
        }
    }
}

/// Reads the counters and builds one sample; CPU use is the change since
/// `prev`, which is updated.
async fn read_sample(host: &str, prev: &mut Vec<CpuTimes>) -> std::io::Result<serde_json::Value> {
    let cpu = read_cpu().await?;
    let meminfo = tokio::fs::read_to_string("/proc/meminfo").await?;
    let loadavg = tokio::fs::read_to_string("/proc/loadavg").await?;
    let (total_kib, available_kib) = parse_meminfo(&meminfo)
        .ok_or_else(|| std::io::Error::other("no MemTotal/MemAvailable in /proc/meminfo"))?;
    let load =
        parse_loadavg(&loadavg).ok_or_else(|| std::io::Error::other("unreadable /proc/loadavg"))?;

    // Line 0 is all CPUs together, then one line per core.
    let usage: Vec<f64> = prev
        .iter()
        .zip(&cpu)
        .map(|(before, now)| round1(now.busy_percent_since(before)))
        .collect();
    *prev = cpu;
    let (total, cores) = usage.split_first().unwrap_or((&0.0, &[]));

    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Ok(json!({
        "t": t,
        "host": host,
        "cpu": total,
        "cores": cores,
        "mem": {
            "total": total_kib * 1024,
            "used": total_kib.saturating_sub(available_kib) * 1024,
        },
        "load": load,
    }))
}

async fn read_cpu() -> std::io::Result<Vec<CpuTimes>> {
    let stat = tokio::fs::read_to_string("/proc/stat").await?;
    let cpu = parse_stat(&stat);
    if cpu.is_empty() {
        return Err(std::io::Error::other("no cpu lines in /proc/stat"));
    }
    Ok(cpu)
}

/// One `cpu` line of `/proc/stat`: time spent since boot, in clock ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct CpuTimes {
    /// Time not idle.
    busy: u64,
    /// All time.
    total: u64,
}

impl CpuTimes {
    /// The share of time busy between `before` and `self`, in percent.
    fn busy_percent_since(&self, before: &CpuTimes) -> f64 {
        // Counters only grow, but iowait may step back on some kernels.
        let total = self.total.saturating_sub(before.total);
        let busy = self.busy.saturating_sub(before.busy);
        if total == 0 {
            return 0.0;
        }
        (100.0 * busy as f64 / total as f64).clamp(0.0, 100.0)
    }
}

/// The `cpu` lines of `/proc/stat`: all CPUs first, then `cpu0`, `cpu1`...
///
/// Each line has `user nice system idle iowait irq softirq steal guest
/// guest_nice`; the first eight add up to all time (guest time is already
/// counted in user and nice), idle and iowait are the idle time.
fn parse_stat(text: &str) -> Vec<CpuTimes> {
    text.lines()
        .filter(|line| line.starts_with("cpu"))
        .filter_map(|line| {
            let fields: Vec<u64> = line
                .split_ascii_whitespace()
                .skip(1)
                .take(8)
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            let total: u64 = fields.iter().sum();
            let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
            (fields.len() >= 4).then(|| CpuTimes {
                busy: total.saturating_sub(idle),
                total,
            })
        })
        .collect()
}

/// `MemTotal` and `MemAvailable` of `/proc/meminfo`, in KiB.
fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.split_ascii_whitespace().next()?.parse().ok())
    };
    Some((field("MemTotal")?, field("MemAvailable")?))
}

/// The 1, 5 and 15 minute load averages of `/proc/loadavg`.
fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_ascii_whitespace().map(str::parse::<f64>);
    Some([it.next()?.ok()?, it.next()?.ok()?, it.next()?.ok()?])
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_from_two_readings() {
        let before = parse_stat(
            "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 50 0 50 350 50 0 0 0 0 0\nintr 1 2\n",
        );
        let after =
            parse_stat("cpu  200 0 200 1200 100 0 0 0 50 0\ncpu0 100 0 100 450 50 0 0 0 0 0\n");
        assert_eq!(before.len(), 2);
        // Busy 200 of 700 ticks; guest time is not counted twice.
        assert_eq!(round1(after[0].busy_percent_since(&before[0])), 28.6);
        assert_eq!(after[1].busy_percent_since(&before[1]), 50.0);
        assert_eq!(after[1].busy_percent_since(&after[1]), 0.0);
    }

    #[test]
    fn meminfo_and_loadavg() {
        let meminfo =
            "MemTotal:       24684084 kB\nMemFree:         1000 kB\nMemAvailable:   23511732 kB\n";
        assert_eq!(parse_meminfo(meminfo), Some((24684084, 23511732)));
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
        assert_eq!(
            parse_loadavg("1.63 1.89 1.98 3/107 13169\n"),
            Some([1.63, 1.89, 1.98])
        );
        assert_eq!(parse_loadavg("1.0 x"), None);
    }
}
