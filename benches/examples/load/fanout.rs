//! Fan-out rows: one publisher, N subscribers on one topic, against axum +
//! `tokio::sync::broadcast` and Node `ws` with its broadcast recipe.
//!
//! Each server runs pinned to CPU 0 (sockeye's `pubsub_server --threads 1`
//! on its in-memory broker, namespace `bench:` without history or
//! presence). The generator opens N connections (sockeye's subscribe with
//! `{"op":"subscribe","topic":"bench:fan"}` and waits for the reply; the
//! peers deliver to every open socket), measures the server's RSS per
//! subscribed idle connection, then one publisher sends payloads of a fixed
//! size carrying a send timestamp, keeping at most two publications in
//! flight (it waits until the deliveries of all but the last two arrived,
//! or 200 ms when a server skips some). Every delivery is counted and its
//! publish→receive latency recorded.

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{BoxError, Row, Running, Target, bin_dir, client_frame, launch, open, rss_kib};

pub(crate) struct FanoutServer {
    pub(crate) name: &'static str,
    ours: bool,
    /// Clients subscribe with the hub protocol (sockeye) or are subscribed
    /// by connecting (the peers).
    subscribe: bool,
    /// Publications are wrapped in a publish command (sockeye).
    envelope: bool,
}

/// sockeye's `pubsub_server`: clients subscribe, the publisher's payloads
/// go in publish commands.
pub(crate) const SOCKEYE: FanoutServer = FanoutServer {
    name: "sockeye-pubsub",
    ours: true,
    subscribe: true,
    envelope: true,
};

const SERVERS: &[FanoutServer] = &[
    SOCKEYE,
    FanoutServer {
        name: "axum + broadcast",
        ours: false,
        subscribe: false,
        envelope: false,
    },
    FanoutServer {
        name: "Node ws (broadcast)",
        ours: false,
        subscribe: false,
        envelope: false,
    },
];

/// `pubsub_server`'s flags in the benchmarks: a current-thread runtime, and
/// the publisher is a client, so the per-socket command rate limit is lifted.
pub(crate) const PUBSUB_ARGS: &[&str] = &["--threads", "1", "--rate-limit", "1000000"];

fn start(server: &FanoutServer, node_modules: Option<&Path>) -> Result<Running, BoxError> {
    match server.name {
        "sockeye-pubsub" => launch(
            server.name,
            &bin_dir().join("pubsub_server"),
            &[],
            PUBSUB_ARGS,
            &[],
        ),
        "axum + broadcast" => launch(
            server.name,
            &bin_dir().join("peer_axum_broadcast"),
            &[],
            &[],
            &[],
        ),
        _ => {
            let modules =
                node_modules.ok_or("Node ws is not installed (run through `cargo xtask bench`)")?;
            let script = std::env::current_dir()?.join("benches/node/broadcast.js");
            let script = script.to_str().ok_or("non-UTF-8 path")?.to_owned();
            launch(
                server.name,
                Path::new("node"),
                &[&script],
                &[],
                &[("NODE_PATH", modules)],
            )
        }
    }
}

/// Text payloads of WebSocket frames from a server (unmasked), parsed out
/// of a byte stream.
#[derive(Default)]
pub(crate) struct Frames {
    buf: Vec<u8>,
}

impl Frames {
    /// Feeds bytes; calls `f` with each complete text/binary payload.
    pub(crate) fn feed(&mut self, data: &[u8], mut f: impl FnMut(&[u8])) -> Result<(), BoxError> {
        self.buf.extend_from_slice(data);
        let mut at = 0;
        loop {
            let h = &self.buf[at..];
            if h.len() < 2 {
                break;
            }
            let (len, head) = match h[1] & 0x7F {
                126 if h.len() >= 4 => (usize::from(u16::from_be_bytes([h[2], h[3]])), 4),
                127 if h.len() >= 10 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&h[2..10]);
                    (usize::try_from(u64::from_be_bytes(b))?, 10)
                }
                126 | 127 => break,
                n => (usize::from(n), 2),
            };
            if h.len() < head + len {
                break;
            }
            match h[0] & 0x0F {
                0x8 => return Err("the server closed the connection".into()),
                0x1 | 0x2 => f(&h[head..head + len]),
                _ => {}
            }
            at += head + len;
        }
        self.buf.drain(..at);
        Ok(())
    }
}

/// The `"t":<nanoseconds>` stamp of a payload.
pub(crate) fn stamp(payload: &[u8]) -> Option<u64> {
    let i = payload.windows(4).position(|w| w == b"\"t\":")? + 4;
    let digits = payload[i..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&payload[i..i + digits])
        .ok()?
        .parse()
        .ok()
}

/// A JSON payload of exactly `size` bytes: `{"t":<ns>,"p":"xx..."}`.
pub(crate) fn payload(size: usize, t: u64) -> String {
    let head = format!("{{\"t\":{t},\"p\":\"");
    let pad = size.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad))
}

/// What a group of subscribers received (and the errors they ended with).
pub(crate) struct Stats {
    /// Stamps are nanoseconds since this instant.
    pub(crate) base: Instant,
    pub(crate) delivered: Cell<u64>,
    /// Latency samples are kept while set.
    pub(crate) recording: Cell<bool>,
    /// Publish→receive latencies in µs.
    pub(crate) samples: RefCell<Vec<u32>>,
    pub(crate) errors: RefCell<Vec<String>>,
    /// Subscribers connected (and subscribed).
    pub(crate) ready: Cell<usize>,
    /// Notified when deliveries arrive (a publisher can wait on it instead
    /// of spinning).
    pub(crate) progress: tokio::sync::Notify,
}

impl Stats {
    pub(crate) fn new(base: Instant) -> Self {
        Self {
            base,
            delivered: Cell::new(0),
            recording: Cell::new(false),
            samples: RefCell::new(Vec::new()),
            errors: RefCell::new(Vec::new()),
            ready: Cell::new(0),
            progress: tokio::sync::Notify::new(),
        }
    }

    /// Nanoseconds since `base` (what payloads carry).
    pub(crate) fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Fails with the first subscriber error, if any.
    pub(crate) fn check(&self) -> Result<(), BoxError> {
        match self.errors.borrow().first() {
            Some(e) => Err(format!(
                "{} subscriber error(s), first: {e}",
                self.errors.borrow().len()
            )
            .into()),
            None => Ok(()),
        }
    }
}

/// The `q` quantile of sorted samples (0 when there are none).
pub(crate) fn quantile(sorted: &[u32], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n => f64::from(sorted[((n - 1) as f64 * q) as usize]),
    }
}

/// A publish command of `data` (raw JSON) to `topic`.
pub(crate) fn publication(topic: &str, id: u64, data: &str) -> String {
    format!(r#"{{"id":{id},"op":"publish","topic":"{topic}","data":{data}}}"#)
}

const SUBSCRIBE: &[u8] = br#"{"id":1,"op":"subscribe","topic":"bench:fan"}"#;
const MAX_SAMPLES: usize = 8 << 20;

/// Opens `n` subscribers, 100 at a time (each batch connected before the
/// next: the accept backlog), sending `subscribe` (a hub command) when
/// given and waiting for its reply. Their tasks go to `tasks`.
pub(crate) async fn connect_subscribers(
    target: &Target,
    n: usize,
    subscribe: Option<&'static [u8]>,
    stats: &Rc<Stats>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<(), BoxError> {
    let before = stats.ready.get();
    for batch in 0..n.div_ceil(100) {
        for _ in 0..100.min(n - batch * 100) {
            let (target, stats) = (target.clone(), Rc::clone(stats));
            tasks.push(tokio::task::spawn_local(async move {
                if let Err(e) = subscriber(target, subscribe, Rc::clone(&stats)).await {
                    stats.errors.borrow_mut().push(e.to_string());
                }
            }));
        }
        let want = before + ((batch + 1) * 100).min(n);
        let deadline = Instant::now() + Duration::from_secs(10);
        while stats.ready.get() < want {
            if let Some(e) = stats.errors.borrow().first() {
                return Err(format!("subscriber failed: {e}").into());
            }
            if Instant::now() > deadline {
                return Err("subscribers did not connect in time".into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    Ok(())
}

async fn subscriber(
    target: Target,
    subscribe: Option<&'static [u8]>,
    stats: Rc<Stats>,
) -> Result<(), BoxError> {
    let (tcp, early) = open(&target).await?;
    let (mut rd, mut wr) = tcp.into_split();
    let mut frames = Frames::default();
    let mut buf = vec![0u8; 8 << 10];
    let mut pending = early;
    if let Some(command) = subscribe {
        wr.write_all(&client_frame(0x1, command, false)).await?;
        let mut ok = false;
        while !ok {
            frames.feed(&pending, |p| ok |= p.windows(5).any(|w| w == b"\"ok\":"))?;
            pending.clear();
            if !ok {
                let n = rd.read(&mut buf).await?;
                if n == 0 {
                    return Err("closed before the subscribe reply".into());
                }
                pending.extend_from_slice(&buf[..n]);
            }
        }
    }
    stats.ready.set(stats.ready.get() + 1);
    let on_payload = |p: &[u8]| {
        if let Some(t) = stamp(p) {
            stats.delivered.set(stats.delivered.get() + 1);
            if stats.recording.get() {
                let mut s = stats.samples.borrow_mut();
                if s.len() < MAX_SAMPLES {
                    s.push(((stats.now().saturating_sub(t)) / 1000) as u32);
                }
            }
        }
    };
    frames.feed(&pending, on_payload)?;
    loop {
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let before = stats.delivered.get();
        frames.feed(&buf[..n], on_payload)?;
        if stats.delivered.get() != before {
            stats.progress.notify_one();
        }
    }
}

pub(crate) struct Measured {
    deliveries_per_sec: f64,
    /// Deliveries received in the measured window.
    pub(crate) delivered: u64,
    p99_us: f64,
    memory_kib: f64,
}

/// Subscribes `subscribers` sockets, publishes `size`-byte payloads for
/// `warmup + duration` and measures the window after the warmup, calling
/// `at_start` as it opens (before the count is read) and `at_end` as it
/// closes (after); an error from either fails the measurement.
pub(crate) async fn measure(
    server: &FanoutServer,
    running: &Running,
    subscribers: usize,
    size: usize,
    (warmup, duration): (Duration, Duration),
    at_start: impl FnOnce() -> Result<(), BoxError>,
    at_end: impl FnOnce() -> Result<(), BoxError>,
) -> Result<Measured, BoxError> {
    let target = Target {
        addr: running.addr.clone(),
        websocket: true,
        deflate: false,
        path: "/ws",
        h2: None,
    };
    let stats = Rc::new(Stats::new(Instant::now()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base_rss = rss_kib(running.child.id());
    let mut tasks = Vec::with_capacity(subscribers + 2);
    let subscribe = server.subscribe.then_some(SUBSCRIBE);
    connect_subscribers(&target, subscribers, subscribe, &stats, &mut tasks).await?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let memory_kib =
        rss_kib(running.child.id()).saturating_sub(base_rss) as f64 / subscribers as f64;

    // The publisher.
    let (tcp, _) = open(&target).await?;
    let (mut rd, mut wr) = tcp.into_split();
    // Replies (sockeye) and the echo of its own publications (the peers'
    // recipes send to every client) are read and dropped.
    tasks.push(tokio::task::spawn_local(async move {
        let mut buf = vec![0u8; 64 << 10];
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    }));
    let stop = Rc::new(Cell::new(false));
    let publisher = {
        let (stats, stop) = (Rc::clone(&stats), Rc::clone(&stop));
        let envelope = server.envelope;
        tokio::task::spawn_local(async move {
            let n = subscribers as u64;
            let mut sent = 0u64;
            while !stop.get() {
                // At most two publications in flight.
                let waited = Instant::now();
                while stats.delivered.get() < sent.saturating_sub(2) * n
                    && waited.elapsed() < Duration::from_millis(200)
                {
                    tokio::task::yield_now().await;
                }
                let data = payload(size, stats.now());
                let text = if envelope {
                    publication("bench:fan", sent, &data)
                } else {
                    data
                };
                if wr
                    .write_all(&client_frame(0x1, text.as_bytes(), false))
                    .await
                    .is_err()
                {
                    return;
                }
                sent += 1;
            }
        })
    };
    tokio::time::sleep(warmup).await;
    let opened = at_start();
    let start_count = stats.delivered.get();
    stats.recording.set(true);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    let elapsed = started.elapsed();
    stats.recording.set(false);
    let end_count = stats.delivered.get();
    let closed = at_end();
    stop.set(true);
    publisher.abort();
    for t in tasks {
        t.abort();
    }
    opened?;
    closed?;
    stats.check()?;
    let mut samples = stats.samples.borrow_mut();
    if samples.is_empty() {
        return Err("no deliveries".into());
    }
    samples.sort_unstable();
    let p99 = quantile(&samples, 0.99);
    Ok(Measured {
        deliveries_per_sec: (end_count - start_count) as f64 / elapsed.as_secs_f64(),
        delivered: end_count - start_count,
        p99_us: p99,
        memory_kib,
    })
}

/// The fan-out rows (64 B and 1 KiB: deliveries/s and p99; memory).
pub(crate) async fn rows(
    quick: bool,
    node_modules: Option<&Path>,
    only: Option<&[String]>,
) -> Vec<Row> {
    let subscribers = if quick { 1_000 } else { 10_000 };
    let (warmup, duration) = if quick {
        (Duration::from_millis(500), Duration::from_secs(2))
    } else {
        (Duration::from_secs(1), Duration::from_secs(5))
    };
    let mut out = Vec::new();
    let mut memory = Row {
        title: format!(
            "memory per subscribed idle connection ({subscribers} subscribers, fan-out servers)"
        ),
        unit: "KiB",
        higher_better: false,
        values: Vec::new(),
    };
    for (size, label) in [(64usize, "64 B"), (1024, "1 KiB")] {
        let mut rate = Row {
            title: format!("fan-out {label}, 1 publisher → {subscribers} subscribers, deliveries"),
            unit: "deliveries/s",
            higher_better: true,
            values: Vec::new(),
        };
        let mut p99 = Row {
            title: format!("fan-out {label}, p99 publish→receive latency, same run"),
            unit: "µs",
            higher_better: false,
            values: Vec::new(),
        };
        for server in SERVERS {
            if only.is_some_and(|names| !names.iter().any(|n| server.name.contains(n.as_str()))) {
                continue;
            }
            eprint!("{:<24} fan-out {label:<6} ... ", server.name);
            let result = match start(server, node_modules) {
                Ok(running) => {
                    let window = (warmup, duration);
                    let none = || Ok(());
                    measure(server, &running, subscribers, size, window, none, none).await
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(m) => {
                    eprintln!(
                        "{:.0} deliveries/s, p99 {:.0} µs, {:.1} KiB/conn",
                        m.deliveries_per_sec, m.p99_us, m.memory_kib
                    );
                    let push = |row: &mut Row, v: f64, shown: String| {
                        row.values.push((server.name, server.ours, Some(v), shown));
                    };
                    push(
                        &mut rate,
                        m.deliveries_per_sec,
                        format!("{:.0}", m.deliveries_per_sec),
                    );
                    push(&mut p99, m.p99_us, format!("{:.0}", m.p99_us));
                    if size == 64 {
                        push(&mut memory, m.memory_kib, format!("{:.1}", m.memory_kib));
                    }
                }
                Err(e) => {
                    eprintln!("failed: {e}");
                    for row in [&mut rate, &mut p99] {
                        row.values
                            .push((server.name, server.ours, None, "failed".to_owned()));
                    }
                    if size == 64 {
                        memory
                            .values
                            .push((server.name, server.ours, None, "failed".to_owned()));
                    }
                }
            }
        }
        out.push(rate);
        out.push(p99);
    }
    out.push(memory);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_and_frames() {
        let p = payload(64, 12345);
        assert_eq!(p.len(), 64);
        assert_eq!(stamp(p.as_bytes()), Some(12345));
        let mut f = Frames::default();
        let mut got = Vec::new();
        // Two unmasked text frames, one split across feeds.
        let mut bytes = vec![0x81, 3, b'a', b'b', b'c', 0x81, 126, 0, 200];
        bytes.extend(std::iter::repeat_n(b'z', 200));
        f.feed(&bytes[..7], |p| got.push(p.len())).unwrap();
        f.feed(&bytes[7..], |p| got.push(p.len())).unwrap();
        assert_eq!(got, [3, 200]);
    }

    #[test]
    fn quantiles_and_publications() {
        assert_eq!(quantile(&[], 0.99), 0.0);
        let sorted: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&sorted, 0.5), 50.0);
        assert_eq!(quantile(&sorted, 0.99), 99.0);
        assert_eq!(
            publication("bench:x", 7, r#"{"t":1}"#),
            r#"{"id":7,"op":"publish","topic":"bench:x","data":{"t":1}}"#
        );
    }
}
