//! Cross-node rows: one publisher, S subscribers on `bench:x`, split half on
//! node A and half on node B (two `pubsub_server --threads 1` processes on
//! one Redis, then on one NATS server), against one in-memory node holding
//! all S (the single-node reference).
//!
//! The publisher is a connection on A (on the one node for in-memory).
//! Phase 1, peak: it keeps at most [`IN_FLIGHT`] publications in flight (it
//! waits until each node's subscribers received all but the last
//! [`IN_FLIGHT`], or 200 ms), for the usual warmup and measured window.
//! Measured over the window: deliveries to B's subscribers per second, the
//! CPU time of A, B and the broker process (utime + stime of
//! /proc/PID/stat, all threads) per second, and deliveries on B per B
//! CPU-second. Phase 2, latency: publications paced at half the peak
//! publication rate (deliveries on B per second ÷ B's subscribers), same
//! warmup and window; p50 and p99 publish→receive latency over B's
//! subscribers (payloads carry their send time, as in `fanout.rs`).
//!
//! Every server process runs on CPU 0: the nodes are started there with
//! taskset, and the broker (found by the port of its URL in /proc/net/tcp)
//! is pinned there with `taskset -a -p -c 0`; this generator runs on CPU 1.
//! The servers share one core, so the per-CPU-second figures are what
//! compare fairly.

use std::cell::Cell;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::task::JoinHandle;

use crate::fanout::{PUBSUB_ARGS, Stats, connect_subscribers, payload, publication, quantile};
use crate::{BoxError, Running, Table, Target, bin_dir, client_frame, cpu_seconds, launch, open};

const TOPIC: &str = "bench:x";
const SUBSCRIBE: &[u8] = br#"{"id":1,"op":"subscribe","topic":"bench:x"}"#;
/// Publications in flight at most in phase 1.
const IN_FLIGHT: u64 = 4;
/// The longest the publisher waits for lagging deliveries (some may be
/// lost) before it publishes anyway.
const MAX_WAIT: Duration = Duration::from_millis(200);
/// A process using this share of a CPU or more is taken as saturating it.
const SATURATED: f64 = 0.9;
/// Busy time of a CPU beyond what our processes used, from this share on,
/// is reported as a disturbance.
const OTHER_LOAD: f64 = 0.1;
/// The goals of issue 17.2.
const GOAL_PER_CPU: f64 = 100_000.0;
const GOAL_P99_US: f64 = 5_000.0;

/// A broker configuration: in-memory (one node) or a shared broker.
struct Broker {
    name: &'static str,
    /// pubsub_server's flag for the broker and its URL; `None`: in-memory,
    /// one node.
    link: Option<(&'static str, String)>,
    /// Why it cannot run (no URL given).
    missing: Option<&'static str>,
    /// The broker's process (its CPU time; pinned to CPU 0).
    pid: Option<u32>,
}

impl Broker {
    /// A broker at `url` (none: its rows fail with `missing`); finds its
    /// process by the URL's port and pins it to CPU 0.
    fn shared(
        name: &'static str,
        flag: &'static str,
        url: Option<&str>,
        default_port: u16,
        missing: &'static str,
    ) -> Self {
        let Some(url) = url else {
            return Self {
                name,
                link: None,
                missing: Some(missing),
                pid: None,
            };
        };
        let port = url_port(url, default_port);
        let pid = port.and_then(pid_listening_on);
        match (port, pid) {
            (Some(port), Some(pid)) => {
                let pinned = Command::new("taskset")
                    .args(["-a", "-p", "-c", "0", &pid.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                eprintln!(
                    "{name}: pid {pid} listens on port {port}{}",
                    if pinned {
                        ", pinned to CPU 0"
                    } else {
                        "; warning: could not pin it to CPU 0"
                    }
                );
            }
            _ => eprintln!(
                "warning: no process found listening on the port of {url}: \
                 {name}'s CPU time is not measured and it is not pinned"
            ),
        }
        Self {
            name,
            link: Some((flag, url.to_owned())),
            missing: None,
            pid,
        }
    }
}

/// The port of `scheme://[user[:pw]@]host[:port][/...]`.
pub(crate) fn url_port(url: &str, default: u16) -> Option<u16> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host_port.rsplit_once(':') {
        // `[::1]` alone has colons but no port.
        Some((host, port)) if !port.contains(']') && !host.is_empty() => port.parse().ok(),
        _ => Some(default),
    }
}

/// Inodes of the sockets listening on `port` in a /proc/net/tcp{,6} table.
fn listen_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = u16::from_str_radix(f.get(1)?.rsplit_once(':')?.1, 16).ok()?;
            // State 0A is LISTEN.
            (local_port == port && *f.get(3)? == "0A").then_some(())?;
            f.get(9)?.parse().ok()
        })
        .collect()
}

/// The process listening on loopback `port` (through its socket's inode).
pub(crate) fn pid_listening_on(port: u16) -> Option<u32> {
    let wanted: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| listen_inodes(&t, port))
        .map(|inode| format!("socket:[{inode}]"))
        .collect();
    if wanted.is_empty() {
        return None;
    }
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path())
                && wanted.iter().any(|w| link.as_os_str() == w.as_str())
            {
                return Some(pid);
            }
        }
    }
    None
}

/// Counts and CPU times at one instant.
#[derive(Clone, Copy, Debug, Default)]
struct Snapshot {
    /// Seconds since the run began.
    t: f64,
    /// Deliveries so far to A's and to B's subscribers.
    a: u64,
    b: u64,
    /// CPU seconds so far of node A, node B, the broker, this generator.
    cpu_a: Option<f64>,
    cpu_b: Option<f64>,
    cpu_broker: Option<f64>,
    cpu_gen: Option<f64>,
    /// Busy and total clock ticks of CPU 0 and CPU 1 so far (/proc/stat).
    cpu0_ticks: Option<(u64, u64)>,
    cpu1_ticks: Option<(u64, u64)>,
}

/// Busy and total clock ticks of CPU `cpu` in a /proc/stat text (busy:
/// everything but idle and iowait; steal counts as busy, as it is taken
/// from us).
fn cpu_ticks(stat: &str, cpu: usize) -> Option<(u64, u64)> {
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    // user nice system idle iowait irq softirq steal (guest is in user).
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = f.iter().sum();
    let idle = f.get(3)? + f.get(4)?;
    Some((total - idle, total))
}

/// The share of a CPU that was busy between two tick samples.
fn busy_share(t0: Option<(u64, u64)>, t1: Option<(u64, u64)>) -> Option<f64> {
    let ((b0, n0), (b1, n1)) = (t0?, t1?);
    (n1 > n0).then(|| b1.saturating_sub(b0) as f64 / (n1 - n0) as f64)
}

/// Phase 1's figures, from the snapshots around its window.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Rates {
    b_per_sec: f64,
    a_per_sec: f64,
    /// Deliveries on B per B CPU-second (and on A per A CPU-second).
    b_per_b_cpu: Option<f64>,
    a_per_a_cpu: Option<f64>,
    /// CPU-seconds per second.
    a_cpu: Option<f64>,
    b_cpu: Option<f64>,
    broker_cpu: Option<f64>,
    gen_cpu: Option<f64>,
    /// The share of CPU 0 and of CPU 1 that was busy (whoever used it).
    cpu0_busy: Option<f64>,
    cpu1_busy: Option<f64>,
    /// Publications per second delivered to all of B's subscribers.
    publications_per_sec: f64,
}

fn rates(s0: &Snapshot, s1: &Snapshot, b_subscribers: usize) -> Option<Rates> {
    let dt = s1.t - s0.t;
    if dt <= 0.0 || b_subscribers == 0 {
        return None;
    }
    let used = |x: Option<f64>, y: Option<f64>| Some(y? - x?);
    let per_cpu = |n: u64, cpu: Option<f64>| cpu.filter(|c| *c > 0.0).map(|c| n as f64 / c);
    let (da, db) = (s1.a.saturating_sub(s0.a), s1.b.saturating_sub(s0.b));
    let (cpu_a, cpu_b) = (used(s0.cpu_a, s1.cpu_a), used(s0.cpu_b, s1.cpu_b));
    Some(Rates {
        b_per_sec: db as f64 / dt,
        a_per_sec: da as f64 / dt,
        b_per_b_cpu: per_cpu(db, cpu_b),
        a_per_a_cpu: per_cpu(da, cpu_a),
        a_cpu: cpu_a.map(|c| c / dt),
        b_cpu: cpu_b.map(|c| c / dt),
        broker_cpu: used(s0.cpu_broker, s1.cpu_broker).map(|c| c / dt),
        gen_cpu: used(s0.cpu_gen, s1.cpu_gen).map(|c| c / dt),
        cpu0_busy: busy_share(s0.cpu0_ticks, s1.cpu0_ticks),
        cpu1_busy: busy_share(s0.cpu1_ticks, s1.cpu1_ticks),
        publications_per_sec: db as f64 / b_subscribers as f64 / dt,
    })
}

struct Measured {
    rates: Rates,
    /// Phase 2's publication rate (publications/s) and figures.
    latency_rate: f64,
    latency_rates: Option<Rates>,
    p50_us: f64,
    p99_us: f64,
}

pub(crate) fn ws_target(node: &Running) -> Target {
    Target {
        addr: node.addr.clone(),
        websocket: true,
        deflate: false,
        path: "/ws",
        h2: None,
    }
}

/// Node A (none for in-memory) and node B (the one node for in-memory).
fn start_nodes(broker: &Broker) -> Result<(Option<Running>, Running), BoxError> {
    let program = bin_dir().join("pubsub_server");
    match &broker.link {
        None => Ok((
            None,
            launch("pubsub_server", &program, &[], PUBSUB_ARGS, &[])?,
        )),
        Some((flag, url)) => {
            let mut args = PUBSUB_ARGS.to_vec();
            args.extend([*flag, url.as_str()]);
            let a = launch("node A", &program, &[], &args, &[])?;
            let b = launch("node B", &program, &[], &args, &[])?;
            Ok((Some(a), b))
        }
    }
}

/// Sends one publication stamped `t`; fails when the node has not taken it
/// within 5 s.
async fn publish(wr: &mut OwnedWriteHalf, id: u64, size: usize, t: u64) -> Result<(), BoxError> {
    let text = publication(TOPIC, id, &payload(size, t));
    let frame = client_frame(0x1, text.as_bytes(), false);
    tokio::time::timeout(Duration::from_secs(5), wr.write_all(&frame))
        .await
        .map_err(|_| "node A took no publication for 5 s")??;
    Ok(())
}

async fn measure(
    broker: &Broker,
    subscribers: usize,
    size: usize,
    warmup: Duration,
    duration: Duration,
) -> Result<Measured, BoxError> {
    let (a, b) = start_nodes(broker)?;
    let mut tasks = Vec::with_capacity(subscribers + 1);
    let result = phases(
        broker,
        a.as_ref(),
        &b,
        subscribers,
        size,
        (warmup, duration),
        &mut tasks,
    )
    .await;
    for t in tasks {
        t.abort();
    }
    result
}

async fn phases(
    broker: &Broker,
    a: Option<&Running>,
    b: &Running,
    subscribers: usize,
    size: usize,
    (warmup, duration): (Duration, Duration),
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<Measured, BoxError> {
    let base = Instant::now();
    let (stats_a, stats_b) = (Rc::new(Stats::new(base)), Rc::new(Stats::new(base)));
    let (n_a, n_b) = match a {
        Some(_) => (subscribers / 2, subscribers - subscribers / 2),
        None => (0, subscribers),
    };
    if let Some(a) = a {
        connect_subscribers(&ws_target(a), n_a, Some(SUBSCRIBE), &stats_a, tasks).await?;
    }
    connect_subscribers(&ws_target(b), n_b, Some(SUBSCRIBE), &stats_b, tasks).await?;

    // The publisher; its replies are read and dropped.
    let (tcp, _) = open(&ws_target(a.unwrap_or(b))).await?;
    let (mut rd, mut wr) = tcp.into_split();
    tasks.push(tokio::task::spawn_local(async move {
        let mut buf = vec![0u8; 64 << 10];
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    }));

    // Until a publication reaches both nodes' subscribers.
    let mut id = 0u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats_b.delivered.get() == 0 || (n_a > 0 && stats_a.delivered.get() == 0) {
        stats_a.check()?;
        stats_b.check()?;
        if Instant::now() > deadline {
            return Err("publications did not reach both nodes within 10 s".into());
        }
        publish(&mut wr, id, size, stats_b.now()).await?;
        id += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Phase 1: peak.
    let (base_a, base_b) = (stats_a.delivered.get(), stats_b.delivered.get());
    let stop = Rc::new(Cell::new(false));
    let publisher = {
        let (sa, sb, stop) = (Rc::clone(&stats_a), Rc::clone(&stats_b), Rc::clone(&stop));
        tokio::task::spawn_local(async move {
            let mut sent = 0u64;
            while !stop.get() {
                let waited = Instant::now();
                loop {
                    let due = sent.saturating_sub(IN_FLIGHT);
                    let lag_a = sa.delivered.get() - base_a < due * n_a as u64;
                    let lag_b = sb.delivered.get() - base_b < due * n_b as u64;
                    if !(lag_a || lag_b) || waited.elapsed() >= MAX_WAIT || stop.get() {
                        break;
                    }
                    let lagging = if lag_b { &sb } else { &sa };
                    let _ = tokio::time::timeout(
                        Duration::from_millis(20),
                        lagging.progress.notified(),
                    )
                    .await;
                }
                publish(&mut wr, id + sent, size, sb.now()).await?;
                sent += 1;
            }
            Ok::<_, BoxError>((wr, id + sent))
        })
    };
    let abort = publisher.abort_handle();
    let (pid_a, pid_b, me) = (a.map(|a| a.child.id()), b.child.id(), std::process::id());
    let snapshot = || {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        Snapshot {
            t: base.elapsed().as_secs_f64(),
            a: stats_a.delivered.get(),
            b: stats_b.delivered.get(),
            cpu_a: pid_a.and_then(cpu_seconds),
            cpu_b: cpu_seconds(pid_b),
            cpu_broker: broker.pid.and_then(cpu_seconds),
            cpu_gen: cpu_seconds(me),
            cpu0_ticks: cpu_ticks(&stat, 0),
            cpu1_ticks: cpu_ticks(&stat, 1),
        }
    };
    tokio::time::sleep(warmup).await;
    let s0 = snapshot();
    tokio::time::sleep(duration).await;
    let s1 = snapshot();
    stop.set(true);
    let (mut wr, mut id) = match tokio::time::timeout(Duration::from_secs(5), publisher).await {
        Ok(Ok(Ok(v))) => v,
        Ok(Ok(Err(e))) => return Err(e),
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => {
            abort.abort();
            return Err("the publisher did not stop within 5 s".into());
        }
    };
    stats_a.check()?;
    stats_b.check()?;
    let rates = rates(&s0, &s1, n_b).ok_or("empty measurement window")?;
    if rates.b_per_sec <= 0.0 {
        return Err("no deliveries on B in the window".into());
    }

    // Phase 2: latency at half the peak publication rate.
    let latency_rate = (rates.publications_per_sec / 2.0).max(1.0);
    let interval = Duration::from_secs_f64(1.0 / latency_rate);
    let start = Instant::now();
    let (record_at, end_at) = (start + warmup, start + warmup + duration);
    let mut next = start;
    let mut s2 = None;
    loop {
        let now = Instant::now();
        if now >= end_at {
            break;
        }
        if now >= record_at && s2.is_none() {
            s2 = Some(snapshot());
            stats_b.recording.set(true);
        }
        // Everything due by now goes out (a late timer catches up).
        while next <= now {
            publish(&mut wr, id, size, stats_b.now()).await?;
            id += 1;
            next += interval;
        }
        stats_a.check()?;
        stats_b.check()?;
        tokio::time::sleep_until(next.min(end_at).into()).await;
    }
    let s3 = snapshot();
    let latency_rates = s2.and_then(|s2| self::rates(&s2, &s3, n_b));
    // The last publications' deliveries still count.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stats_b.recording.set(false);
    stats_a.check()?;
    stats_b.check()?;
    let mut samples = stats_b.samples.borrow_mut();
    if samples.is_empty() {
        return Err("no latency samples on B".into());
    }
    samples.sort_unstable();
    Ok(Measured {
        rates,
        latency_rate,
        latency_rates,
        p50_us: quantile(&samples, 0.50),
        p99_us: quantile(&samples, 0.99),
    })
}

fn fixed(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "?".to_owned(), |v| format!("{v:.digits$}"))
}

fn percent(v: f64) -> String {
    format!("{:.0} %", 100.0 * v)
}

/// Our processes' shares of CPU 0 (by name) and their sum.
fn server_shares(single_node: bool, r: &Rates) -> (Vec<(&'static str, f64)>, f64) {
    let parts: Vec<(&str, f64)> = if single_node {
        vec![("the node", r.b_cpu)]
    } else {
        vec![("A", r.a_cpu), ("B", r.b_cpu), ("the broker", r.broker_cpu)]
    }
    .into_iter()
    .filter_map(|(name, v)| v.map(|v| (name, v)))
    .collect();
    let sum = parts.iter().map(|(_, v)| v).sum();
    (parts, sum)
}

/// What limits the peak: a saturated CPU (the servers share CPU 0), the
/// generator (CPU 1), or neither (the publication window); and whether
/// other processes took a noticeable share of either CPU meanwhile.
fn limit(single_node: bool, r: &Rates) -> String {
    let (parts, cpu0) = server_shares(single_node, r);
    let shares = parts
        .iter()
        .map(|(n, v)| format!("{n} {}", percent(*v)))
        .collect::<Vec<_>>()
        .join(", ");
    let mut by_share = parts.clone();
    by_share.sort_by(|x, y| y.1.total_cmp(&x.1));
    let largest = by_share.first();
    // Two always-runnable processes get the scheduler's fair halves: then
    // which of them would limit on its own core does not show here.
    let even = match by_share.as_slice() {
        [(first, x), (second, y), ..] if x - y < 0.05 => Some((*first, *second)),
        _ => None,
    };
    // Busy time of each CPU that none of our processes used.
    let other0 = r.cpu0_busy.map(|b| (b - cpu0).max(0.0));
    let other1 = r.cpu1_busy.zip(r.gen_cpu).map(|(b, g)| (b - g).max(0.0));
    let mut text = if let Some(g) = r.gen_cpu.filter(|g| *g >= SATURATED) {
        format!(
            "the generator's CPU 1 is saturated ({}; CPU 0: {shares}): the figures are a \
             floor, not the servers' limit",
            percent(g)
        )
    } else {
        match (largest, even) {
            (Some((name, v)), _) if *v >= SATURATED => {
                format!("{name} alone saturates CPU 0 ({shares})")
            }
            (Some(_), Some((x, y))) if cpu0 >= SATURATED => format!(
                "CPU 0 is saturated ({} in all: {shares}); {x} and {y} split it about evenly \
                 (the scheduler's fair share), so which would limit on a core of its own does \
                 not show: compare the per-CPU-second figures",
                percent(cpu0)
            ),
            (Some((name, v)), None) if cpu0 >= SATURATED => format!(
                "CPU 0 is saturated ({} in all: {shares}); the largest share is {name}'s ({})",
                percent(cpu0),
                percent(*v)
            ),
            _ if r.cpu0_busy.is_some_and(|b| b >= SATURATED) => format!(
                "CPU 0 is saturated, but the servers used only {} of it ({shares})",
                percent(cpu0)
            ),
            _ => format!(
                "no CPU is saturated (CPU 0 {} in all: {shares}; generator {}): the window of \
                 {IN_FLIGHT} publications in flight (the round trip) bounds the rate",
                percent(cpu0),
                r.gen_cpu.map_or_else(|| "?".to_owned(), percent)
            ),
        }
    };
    // Others on CPU 0 take from the servers; on CPU 1 they matter once
    // it is saturated.
    let cpu1_full = r.cpu1_busy.is_some_and(|b| b >= SATURATED);
    let disturbed: Vec<String> = [(0, other0, true), (1, other1, cpu1_full)]
        .into_iter()
        .filter_map(|(cpu, v, matters)| {
            v.filter(|v| matters && *v >= OTHER_LOAD)
                .map(|v| format!("{} of CPU {cpu}", percent(v)))
        })
        .collect();
    if !disturbed.is_empty() {
        text.push_str(&format!(
            "; other processes (or the kernel) took {} in the window: the figures are disturbed",
            disturbed.join(" and ")
        ));
    }
    text
}

/// How busy the CPUs were during phase 2.
fn half_load(single_node: bool, r: &Rates) -> String {
    let (_, cpu0) = server_shares(single_node, r);
    format!(
        "at that load the servers used {} of CPU 0 (busy {} in all), the generator {} of CPU 1",
        percent(cpu0),
        r.cpu0_busy.map_or_else(|| "?".to_owned(), percent),
        r.gen_cpu.map_or_else(|| "?".to_owned(), percent)
    )
}

fn meets(ok: bool) -> &'static str {
    if ok {
        "meets the goal"
    } else {
        "misses the goal"
    }
}

/// The note line of one broker: the goals and the limit, from the figures.
fn verdict(name: &str, single_node: bool, m: &Measured) -> String {
    let r = &m.rates;
    let judge = |node: &str, v: Option<f64>| match v {
        Some(v) => format!(
            "{v:.0} deliveries per {node} CPU-s ({})",
            meets(v >= GOAL_PER_CPU)
        ),
        None => format!("deliveries per {node} CPU-s unknown"),
    };
    let per_cpu = if single_node {
        judge("node", r.b_per_b_cpu)
    } else {
        format!(
            "{}, {}",
            judge("B", r.b_per_b_cpu),
            judge("A", r.a_per_a_cpu)
        )
    };
    // Every delivery over every server process's CPU time.
    let (_, cpu0) = server_shares(single_node, r);
    let on_a = if !single_node && cpu0 > 0.0 {
        format!(
            ", {:.0} per CPU-s of A, B and the broker together",
            (r.a_per_sec + r.b_per_sec) / cpu0
        )
    } else {
        String::new()
    };
    let half = m
        .latency_rates
        .as_ref()
        .map(|l| format!("; {}", half_load(single_node, l)))
        .unwrap_or_default();
    format!(
        "- {name}: peak {per_cpu}{on_a}; {}. Half load: p99 {:.2} ms at {:.0} publications/s \
         ({}){half}.",
        limit(single_node, r),
        m.p99_us / 1000.0,
        m.latency_rate,
        meets(m.p99_us <= GOAL_P99_US),
    )
}

/// The table line of one broker.
fn line(name: &str, single_node: bool, m: &Measured) -> Vec<String> {
    let r = &m.rates;
    let na = |v: Option<f64>| {
        if single_node {
            "–".to_owned()
        } else {
            fixed(v, 2)
        }
    };
    vec![
        name.to_owned(),
        format!("{:.0}", r.b_per_sec),
        fixed(r.b_per_b_cpu, 0),
        na(r.a_cpu),
        fixed(r.b_cpu, 2),
        na(r.broker_cpu),
        format!("{:.0}", m.p50_us),
        format!("{:.0}", m.p99_us),
    ]
}

/// The cross-node tables (64 B and 1 KiB), one line per broker.
pub(crate) async fn tables(quick: bool, redis: Option<&str>, nats: Option<&str>) -> Vec<Table> {
    let subscribers = if quick { 500 } else { 2_000 };
    let (warmup, duration) = if quick {
        (Duration::from_millis(500), Duration::from_secs(2))
    } else {
        (Duration::from_secs(1), Duration::from_secs(5))
    };
    let brokers = [
        Broker {
            name: "in-memory (one node)",
            link: None,
            missing: None,
            pid: None,
        },
        Broker::shared("Redis", "--redis", redis, 6379, "no --redis-url"),
        Broker::shared("NATS", "--nats", nats, 4222, "no --nats-url"),
    ];
    let half = subscribers / 2;
    let intro = format!(
        "Nodes are `pubsub_server --threads 1` processes. In-memory is one node holding all \
         {subscribers} subscribers and the publisher (its figures are in the B columns: \
         deliveries to all {subscribers}); Redis and NATS are two nodes A and B on one broker, \
         {half} subscribers on each, the publisher on A. Phase 1 keeps at most {IN_FLIGHT} \
         publications in flight; deliveries and CPU time (utime + stime from /proc/PID/stat, \
         in CPU-seconds per second) are measured over {:.0} s after {:.1} s of warmup. Phase 2 \
         publishes at half that broker's peak publication rate and measures publish→receive \
         latency over B's subscribers. Pinning: nodes A and B and the broker process \
         (redis-server / nats-server) all run on CPU 0, the generator on CPU 1. The servers \
         share one core, so the per-CPU-second figures are what compare fairly (? : not \
         measured, e.g. no process found on the broker's port; –: not applicable).",
        duration.as_secs_f64(),
        warmup.as_secs_f64(),
    );
    let mut out = Vec::new();
    for (i, (size, label)) in [(64usize, "64 B"), (1024, "1 KiB")].into_iter().enumerate() {
        let mut table = Table {
            title: format!(
                "cross-node fan-out {label}, 1 publisher on A → {subscribers} subscribers \
                 ({half} on A, {half} on B)"
            ),
            intro: if i == 0 { intro.clone() } else { String::new() },
            header: [
                "broker",
                "deliveries/s on B",
                "deliveries per B CPU-s",
                "A CPU-s/s",
                "B CPU-s/s",
                "broker CPU-s/s",
                "p50 µs",
                "p99 µs",
            ]
            .map(str::to_owned)
            .to_vec(),
            lines: Vec::new(),
            notes: vec![format!(
                "Goal: ≥ {GOAL_PER_CPU:.0} deliveries per node CPU-second, p99 ≤ {:.0} ms at \
                 half load. From the figures:",
                GOAL_P99_US / 1000.0
            )],
        };
        let mut notes = Vec::new();
        for broker in &brokers {
            let single_node = broker.link.is_none() && broker.missing.is_none();
            eprint!("{:<24} crossnode {label:<6} ... ", broker.name);
            let result = match broker.missing {
                Some(why) => Err(why.into()),
                None => measure(broker, subscribers, size, warmup, duration).await,
            };
            match result {
                Ok(m) => {
                    let r = &m.rates;
                    eprintln!(
                        "{:.0} deliveries/s on B ({:.0} on A), {} per B CPU-s; CPU-s/s A {} \
                         B {} broker {} generator {}; at {:.0} pub/s p50 {:.0} µs p99 {:.0} µs",
                        r.b_per_sec,
                        r.a_per_sec,
                        fixed(r.b_per_b_cpu, 0),
                        fixed(r.a_cpu, 2),
                        fixed(r.b_cpu, 2),
                        fixed(r.broker_cpu, 2),
                        fixed(r.gen_cpu, 2),
                        m.latency_rate,
                        m.p50_us,
                        m.p99_us
                    );
                    if let Some(l) = &m.latency_rates {
                        eprintln!(
                            "    phase 2: {:.0} deliveries/s on B ({:.0} pub/s), CPU-s/s A {} B {} \
                             broker {} generator {}",
                            l.b_per_sec,
                            l.publications_per_sec,
                            fixed(l.a_cpu, 2),
                            fixed(l.b_cpu, 2),
                            fixed(l.broker_cpu, 2),
                            fixed(l.gen_cpu, 2)
                        );
                    }
                    table.lines.push(line(broker.name, single_node, &m));
                    notes.push(verdict(broker.name, single_node, &m));
                }
                Err(e) => {
                    eprintln!("failed: {e}");
                    let mut cells = vec![broker.name.to_owned(), format!("failed: {e}")];
                    cells.extend(std::iter::repeat_n("–".to_owned(), 6));
                    table.lines.push(cells);
                }
            }
        }
        if notes.is_empty() {
            table.notes[0].push_str(" no broker ran.");
        } else {
            table.notes[0].push('\n');
            table.notes[0].push_str(&notes.join("\n"));
        }
        out.push(table);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_of_urls() {
        assert_eq!(url_port("redis://127.0.0.1:6390", 6379), Some(6390));
        assert_eq!(url_port("nats://127.0.0.1:4300/", 4222), Some(4300));
        assert_eq!(
            url_port("redis://user:pw@localhost:7000/0", 6379),
            Some(7000)
        );
        assert_eq!(url_port("redis://localhost", 6379), Some(6379));
        assert_eq!(url_port("nats://[::1]", 4222), Some(4222));
        assert_eq!(url_port("nats://[::1]:4333", 4222), Some(4333));
        assert_eq!(url_port("redis://h:notaport", 6379), None);
    }

    #[test]
    fn listening_sockets_from_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
             0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0\n   \
             1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 20 4 30 10 -1\n   \
             2: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(listen_inodes(table, 8080), [31337]);
        assert_eq!(listen_inodes(table, 8081), [777]);
        assert!(listen_inodes(table, 50000).is_empty());
    }

    fn snap(t: f64, a: u64, b: u64, cpu: [f64; 4]) -> Snapshot {
        Snapshot {
            t,
            a,
            b,
            cpu_a: Some(cpu[0]),
            cpu_b: Some(cpu[1]),
            cpu_broker: Some(cpu[2]),
            cpu_gen: Some(cpu[3]),
            cpu0_ticks: None,
            cpu1_ticks: None,
        }
    }

    #[test]
    fn rates_from_snapshots() {
        let s0 = snap(1.0, 1_000, 1_000, [1.0, 2.0, 3.0, 4.0]);
        // 2 s later: 400 000 more on A and B; A used 0.8 CPU-s, B 0.5.
        let s1 = snap(3.0, 401_000, 401_000, [1.8, 2.5, 3.4, 4.2]);
        let r = rates(&s0, &s1, 1_000).unwrap();
        let close = |x: Option<f64>, y: f64| (x.unwrap() - y).abs() < 1e-6;
        assert_eq!(r.b_per_sec, 200_000.0);
        assert_eq!(r.a_per_sec, 200_000.0);
        assert!(close(r.b_per_b_cpu, 800_000.0));
        assert!(close(r.a_per_a_cpu, 500_000.0));
        assert!(close(r.a_cpu, 0.4));
        assert!(close(r.b_cpu, 0.25));
        assert!(close(r.broker_cpu, 0.2));
        assert!(close(r.gen_cpu, 0.1));
        assert_eq!(r.publications_per_sec, 200.0);
        // No CPU time used: no per-CPU figure rather than infinity.
        let idle = rates(&s0, &snap(3.0, 1_000, 1_000, [1.0, 2.0, 3.0, 4.0]), 1).unwrap();
        assert_eq!(idle.b_per_b_cpu, None);
        assert!(rates(&s0, &s0, 1_000).is_none());
        let unknown = Snapshot {
            cpu_broker: None,
            ..s1
        };
        assert_eq!(rates(&s0, &unknown, 1_000).unwrap().broker_cpu, None);
    }

    fn with_cpu(a: f64, b: f64, broker: f64, generator: f64) -> Rates {
        Rates {
            b_per_sec: 1.0,
            a_per_sec: 1.0,
            b_per_b_cpu: None,
            a_per_a_cpu: None,
            a_cpu: Some(a),
            b_cpu: Some(b),
            broker_cpu: Some(broker),
            gen_cpu: Some(generator),
            cpu0_busy: None,
            cpu1_busy: None,
            publications_per_sec: 1.0,
        }
    }

    #[test]
    fn the_limit_follows_the_figures() {
        let shared = limit(false, &with_cpu(0.4, 0.35, 0.22, 0.3));
        assert!(
            shared.starts_with("CPU 0 is saturated (97 % in all"),
            "{shared}"
        );
        assert!(shared.contains("largest share is A's (40 %)"), "{shared}");
        let even = limit(false, &with_cpu(0.5, 0.48, 0.01, 0.3));
        assert!(
            even.starts_with("CPU 0 is saturated (99 % in all: A 50 %, B 48 %, the broker 1 %); A and B split it about evenly"),
            "{even}"
        );
        let broker = limit(false, &with_cpu(0.03, 0.04, 0.92, 0.1));
        assert!(
            broker.starts_with("the broker alone saturates CPU 0"),
            "{broker}"
        );
        let idle = limit(false, &with_cpu(0.2, 0.2, 0.1, 0.2));
        assert!(
            idle.starts_with("no CPU is saturated (CPU 0 50 %"),
            "{idle}"
        );
        let generator = limit(false, &with_cpu(0.2, 0.2, 0.1, 0.95));
        assert!(
            generator.starts_with("the generator's CPU 1"),
            "{generator}"
        );
        // One node: A and broker are not counted.
        let single = limit(true, &with_cpu(0.0, 0.97, 0.0, 0.3));
        assert!(single.starts_with("the node alone saturates"), "{single}");
        // Busy CPUs beyond our processes: someone else's load.
        let mut busy = with_cpu(0.2, 0.2, 0.1, 0.2);
        busy.cpu0_busy = Some(0.98);
        busy.cpu1_busy = Some(0.25);
        let busy = limit(false, &busy);
        assert!(
            busy.starts_with("CPU 0 is saturated, but the servers used only 50 %"),
            "{busy}"
        );
        assert!(
            busy.ends_with("took 48 % of CPU 0 in the window: the figures are disturbed"),
            "{busy}"
        );
        let mut quiet = with_cpu(0.2, 0.2, 0.1, 0.2);
        quiet.cpu0_busy = Some(0.55);
        quiet.cpu1_busy = Some(0.32);
        assert!(!limit(false, &quiet).contains("disturbed"));
        // Others on CPU 1 count once it is saturated.
        quiet.cpu1_busy = Some(0.95);
        assert!(
            limit(false, &quiet)
                .ends_with("took 75 % of CPU 1 in the window: the figures are disturbed")
        );
    }

    #[test]
    fn cpu_ticks_from_proc_stat() {
        let stat = "cpu  10 0 10 100 0 0 0 0 0 0\n\
                    cpu0 5 1 4 50 2 0 3 1 0 0\n\
                    cpu1 5 0 6 50 0 0 0 0 0 0\n\
                    intr 12345\n";
        assert_eq!(cpu_ticks(stat, 0), Some((14, 66)));
        assert_eq!(cpu_ticks(stat, 1), Some((11, 61)));
        assert_eq!(cpu_ticks(stat, 2), None);
        assert_eq!(busy_share(Some((14, 66)), Some((64, 166))), Some(0.5));
        assert_eq!(busy_share(Some((14, 66)), Some((14, 66))), None);
        assert_eq!(busy_share(None, Some((14, 66))), None);
    }

    #[test]
    fn verdicts_compare_with_the_goals() {
        let mut rates = with_cpu(0.4, 0.35, 0.22, 0.3);
        rates.b_per_b_cpu = Some(150_000.0);
        rates.a_per_a_cpu = Some(90_000.0);
        let m = Measured {
            rates,
            latency_rate: 60.0,
            latency_rates: None,
            p50_us: 900.0,
            p99_us: 6_500.0,
        };
        let v = verdict("Redis", false, &m);
        assert!(
            v.starts_with(
                "- Redis: peak 150000 deliveries per B CPU-s (meets the goal), 90000 deliveries \
                 per A CPU-s (misses the goal), 2 per CPU-s of A, B and the broker together; \
                 CPU 0 is saturated (97 % in all"
            ),
            "{v}"
        );
        assert!(
            v.ends_with("Half load: p99 6.50 ms at 60 publications/s (misses the goal)."),
            "{v}"
        );
        let cells = line("Redis", false, &m);
        assert_eq!(cells[2], "150000");
        assert_eq!(cells[3], "0.40");
        assert_eq!(line("in-memory", true, &m)[3], "–");
    }
}
