//! The load benchmark: sockeye's echo server and echo servers built on its
//! peers, in one run, on loopback. Each server runs pinned to CPU 0 on a
//! current-thread runtime; this generator runs pinned to CPU 1.
//!
//! ```text
//! cargo xtask bench [--quick]      # builds everything, then runs this
//! target/release/examples/load [--quick] [--out DIR] [--servers a,b] [--scenarios x,y]
//!     [--node-modules DIR] [--latency-rate MSGS_PER_SEC]
//!     [--redis-url redis://HOST:PORT] [--nats-url nats://HOST:PORT]
//!     [--callgrind-dir DIR]
//! ```
//!
//! Scenarios: 20-byte text and 1 KiB binary with 100 connections and 16
//! messages in flight each, 64 KiB with 10 connections, 1 MiB with one,
//! permessage-deflate on 1 KiB JSON, memory per idle connection at 10 000
//! connections, p50/p99 latency at half the lowest peak rate (20 B) and at
//! half the lowest peer's peak (1 KiB binary), and fan-out
//! (`fanout`: one publisher to 10 000 subscribers against axum + broadcast
//! and Node ws, see `fanout.rs`), and cross-node fan-out (`crossnode`: two
//! `pubsub_server` nodes on Redis and on NATS, subscribers split between
//! them, against one in-memory node; peak deliveries per CPU-second of each
//! process and p50/p99 at half the peak, see `crossnode.rs`; the brokers come
//! from `--redis-url` / `--nats-url`, which `cargo xtask bench` starts).
//! WebSockets over HTTP/2 (`http2`: sockeye's sockets as RFC 8441 streams
//! of one connection, of ten, of one each, beside its HTTP/1.1 path; no
//! peer serves RFC 8441, see `http2.rs`). Broker and node faults (`faults`:
//! Redis killed and restarted with and without persistence, Redis paused,
//! node B killed and restarted, node B paused, NATS killed and paused, on
//! brokers started for it; per publication and subscriber: delivered in
//! order, recovered, told, or silently missing, see `faults.rs`).
//! User-space instructions per message of every echo server under
//! callgrind, free of the VM's noise (`instructions`, see
//! `instructions.rs`; needs valgrind, which `cargo xtask bench` installs).
//! Scenario keys for `--scenarios`: `text20`, `bin1k`, `bin64k`, `bin1m`,
//! `deflate`, `memory`, `latency`, `fanout`, `crossnode`, `http2`, `faults`,
//! `instructions` (default: all). A raw TCP
//! echo of the same bytes is the physical ceiling. The generator sends
//! pre-masked frames and only parses frame headers, so it costs far less
//! than any server (the TCP row shows its own ceiling).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

mod crossnode;
mod fanout;
mod faults;
mod http2;
mod instructions;

use sockeye_benches::json_payload;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error>;

const KEY: [u8; 4] = [0x5a, 0xa5, 0x3c, 0xc3];

// ===== servers =====

#[derive(Clone, Debug)]
struct Server {
    name: &'static str,
    program: &'static str,
    args: &'static [&'static str],
    /// Speaks WebSocket (the raw TCP echo does not: no handshake).
    websocket: bool,
    /// Is one of sockeye's own (ratios are against the best non-sockeye).
    ours: bool,
}

const SERVERS: &[Server] = &[
    Server {
        name: "sockeye (hyper)",
        program: "echo_server",
        args: &["--threads", "1"],
        websocket: true,
        ours: true,
    },
    Server {
        name: "sockeye (raw)",
        program: "echo_server",
        args: &["--threads", "1", "--raw"],
        websocket: true,
        ours: true,
    },
    Server {
        name: "tokio-tungstenite",
        program: "peer_tungstenite",
        args: &[],
        websocket: true,
        ours: false,
    },
    Server {
        name: "fastwebsockets",
        program: "peer_fastwebsockets",
        args: &[],
        websocket: true,
        ours: false,
    },
    Server {
        name: "tokio-websockets",
        program: "peer_tokio_websockets",
        args: &[],
        websocket: true,
        ours: false,
    },
    Server {
        name: "yawc",
        program: "peer_yawc",
        args: &[],
        websocket: true,
        ours: false,
    },
    Server {
        name: "ratchet",
        program: "peer_ratchet",
        args: &[],
        websocket: true,
        ours: false,
    },
    Server {
        name: "raw TCP echo",
        program: "tcp_echo",
        args: &[],
        websocket: false,
        ours: false,
    },
];

/// sockeye with the Prometheus recorder installed (`--metrics`, on a port
/// of its own): counted in the instructions rows only, beside the same
/// servers without it, so the cost of the `sockeye_*` counters shows.
const METRICS_SERVERS: &[Server] = &[
    Server {
        name: "sockeye (hyper, --metrics)",
        program: "echo_server",
        args: &["--threads", "1", "--metrics", "127.0.0.1:0"],
        websocket: true,
        ours: true,
    },
    Server {
        name: "sockeye (raw, --metrics)",
        program: "echo_server",
        args: &["--threads", "1", "--raw", "--metrics", "127.0.0.1:0"],
        websocket: true,
        ours: true,
    },
];

const DEFLATE_SERVERS: &[Server] = &[
    Server {
        name: "sockeye (hyper)",
        program: "echo_server",
        args: &["--threads", "1", "--deflate"],
        websocket: true,
        ours: true,
    },
    Server {
        name: "sockeye (raw)",
        program: "echo_server",
        args: &["--threads", "1", "--raw", "--deflate"],
        websocket: true,
        ours: true,
    },
    Server {
        name: "sockeye (raw, context takeover)",
        program: "echo_server",
        args: &["--threads", "1", "--raw", "--deflate-takeover"],
        websocket: true,
        ours: true,
    },
    // sockeye's raw path with libdeflate compressing instead of its own
    // level-1 encoder (the maintained-library comparison, end to end).
    Server {
        name: "sockeye (raw, libdeflate encoder)",
        program: "peer_libdeflate",
        args: &[],
        websocket: true,
        ours: true,
    },
    Server {
        name: "yawc",
        program: "peer_yawc",
        args: &["--deflate"],
        websocket: true,
        ours: false,
    },
    Server {
        name: "ratchet",
        program: "peer_ratchet",
        args: &[],
        websocket: true,
        ours: false,
    },
];

/// A running server, killed on drop.
struct Running {
    child: Child,
    addr: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target/release/examples"))
}

fn start(server: &Server) -> Result<Running, BoxError> {
    let program = bin_dir().join(server.program);
    launch(server.name, &program, &[], server.args, &[])
}

/// Starts `program [pre...] --addr ADDR [args...]` pinned to CPU 0 on a
/// free port, once it prints `listening on`.
fn launch(
    name: &str,
    program: &Path,
    pre: &[&str],
    args: &[&str],
    env: &[(&str, &Path)],
) -> Result<Running, BoxError> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    launch_at(name, program, pre, args, env, &format!("127.0.0.1:{port}"))
}

/// [`launch`] on a given address (a node restarted on its port).
fn launch_at(
    name: &str,
    program: &Path,
    pre: &[&str],
    args: &[&str],
    env: &[(&str, &Path)],
    addr: &str,
) -> Result<Running, BoxError> {
    let mut child = Command::new("taskset")
        .arg("-c")
        .arg("0")
        .arg(program)
        .args(pre)
        .arg("--addr")
        .arg(addr)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if !line.starts_with("listening on") {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("{name} did not start: {line:?}").into());
    }
    Ok(Running {
        child,
        addr: addr.to_owned(),
    })
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time the process has used (user + system, all its threads), in
/// seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    parse_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// utime + stime of a `/proc/PID/stat` line, in seconds (/proc counts them
/// in clock ticks of 1/100 s on Linux).
fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 of `rest`.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

// ===== frames =====

/// A masked client frame carrying `payload` (RSV1 when `compressed`).
fn client_frame(opcode: u8, payload: &[u8], compressed: bool) -> Vec<u8> {
    let mut out = vec![0x80 | if compressed { 0x40 } else { 0 } | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&KEY);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    out
}

/// The payload compressed as one permessage-deflate message without
/// context takeover (so the same frame can be sent again and again).
fn deflated(payload: &[u8]) -> Vec<u8> {
    let mut c = flate2::Compress::new_with_window_bits(flate2::Compression::new(1), false, 15);
    let mut out = Vec::with_capacity(payload.len() + 64);
    let _ = c.compress_vec(payload, &mut out, flate2::FlushCompress::Sync);
    out.truncate(out.len().saturating_sub(4));
    out
}

/// Counts complete messages (frames with FIN and a data opcode) in a byte
/// stream, skipping payloads without looking at them.
#[derive(Default)]
struct FrameCounter {
    skip: u64,
    header: Vec<u8>,
}

impl FrameCounter {
    fn feed(&mut self, mut data: &[u8]) -> Result<u64, BoxError> {
        let mut complete = 0;
        while !data.is_empty() {
            if self.skip > 0 {
                let n = (self.skip.min(data.len() as u64)) as usize;
                self.skip -= n as u64;
                data = &data[n..];
                continue;
            }
            // Gather a whole header (2 to 14 bytes).
            let take = (14 - self.header.len()).min(data.len());
            let before = self.header.len();
            self.header.extend_from_slice(&data[..take]);
            let h = &self.header;
            if h.len() < 2 {
                data = &data[take..];
                continue;
            }
            let masked = h[1] & 0x80 != 0;
            let (len, mut used) = match h[1] & 0x7F {
                126 if h.len() >= 4 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
                127 if h.len() >= 10 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&h[2..10]);
                    (u64::from_be_bytes(b), 10)
                }
                126 | 127 => {
                    data = &data[take..];
                    continue;
                }
                n => (u64::from(n), 2),
            };
            if masked {
                used += 4;
            }
            if h.len() < used {
                data = &data[take..];
                continue;
            }
            let opcode = h[0] & 0x0F;
            if opcode == 0x8 {
                return Err("the server closed the connection".into());
            }
            if h[0] & 0x80 != 0 && opcode < 0x8 {
                complete += 1;
            }
            // Bytes of this chunk that went past the header are payload.
            data = &data[used - before..];
            self.header.clear();
            self.skip = len;
        }
        Ok(complete)
    }
}

// ===== the generator =====

#[derive(Clone)]
struct Target {
    addr: String,
    websocket: bool,
    deflate: bool,
    /// The request path (`/` for echo servers).
    path: &'static str,
    /// Open each socket as a stream of this HTTP/2 connection (RFC 8441)
    /// instead of a TCP connection of its own.
    h2: Option<http2::Sender>,
}

/// Connects and performs the handshake; returns the stream and any bytes
/// read past the 101.
async fn open(target: &Target) -> Result<(TcpStream, Vec<u8>), BoxError> {
    let mut tcp = TcpStream::connect(&target.addr).await?;
    tcp.set_nodelay(true)?;
    if !target.websocket {
        return Ok((tcp, Vec::new()));
    }
    let ext = if target.deflate {
        "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; client_max_window_bits\r\n"
    } else {
        ""
    };
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{ext}\r\n",
        target.path, target.addr
    );
    tcp.write_all(req.as_bytes()).await?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Err("closed during the handshake".into());
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
            if !text.starts_with("http/1.1 101") {
                return Err(
                    format!("handshake refused: {}", text.lines().next().unwrap_or("")).into(),
                );
            }
            if target.deflate && !text.contains("permessage-deflate") {
                return Err("the server did not negotiate permessage-deflate".into());
            }
            return Ok((tcp, head[end + 4..].to_vec()));
        }
    }
}

struct Shared {
    delivered: Cell<u64>,
    stop: Cell<bool>,
    errors: RefCell<Vec<String>>,
}

/// One socket keeping `in_flight` messages outstanding: its own TCP
/// connection, or a stream of the target's HTTP/2 connection.
async fn closed_loop(target: Target, frame: Rc<Vec<u8>>, in_flight: usize, shared: Rc<Shared>) {
    let result: Result<(), BoxError> = async {
        match &target.h2 {
            None => {
                let (tcp, early) = open(&target).await?;
                let (rd, wr) = tcp.into_split();
                drive(rd, wr, &early, &frame, in_flight, &shared).await
            }
            Some(sender) => {
                let stream = http2::open_stream(sender, &target).await?;
                let (rd, wr) = tokio::io::split(stream);
                drive(rd, wr, &[], &frame, in_flight, &shared).await
            }
        }
    }
    .await;
    if let Err(e) = result
        && !shared.stop.get()
    {
        shared.errors.borrow_mut().push(e.to_string());
    }
}

/// Sends `in_flight` frames, then one more for each message echoed, until
/// told to stop; `early` is what was read past the handshake.
async fn drive(
    mut rd: impl AsyncRead + Unpin,
    mut wr: impl AsyncWrite + Unpin,
    early: &[u8],
    frame: &[u8],
    in_flight: usize,
    shared: &Shared,
) -> Result<(), BoxError> {
    let mut counter = FrameCounter::default();
    let big = frame.len() >= 16 << 10;
    let mut out = Vec::with_capacity(if big { 0 } else { frame.len() * in_flight });
    let send = |n: u64, out: &mut Vec<u8>| {
        out.clear();
        for _ in 0..n {
            out.extend_from_slice(frame);
        }
    };
    if big {
        for _ in 0..in_flight {
            wr.write_all(frame).await?;
        }
    } else {
        send(in_flight as u64, &mut out);
        wr.write_all(&out).await?;
    }
    let mut got = counter.feed(early)?;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        if got > 0 {
            shared.delivered.set(shared.delivered.get() + got);
            if shared.stop.get() {
                return Ok(());
            }
            if big {
                for _ in 0..got {
                    wr.write_all(frame).await?;
                }
            } else {
                send(got, &mut out);
                wr.write_all(&out).await?;
            }
        }
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        got = counter.feed(&buf[..n])?;
    }
}

struct Throughput {
    msgs_per_sec: f64,
    bytes_per_sec: f64,
    /// The server's CPU time per message in the window (µs): unlike the
    /// rate, it does not move when the VM's CPU is taken away for a while.
    cpu_us_per_msg: Option<f64>,
}

/// Runs `conns` closed loops for `warmup + duration`; returns the rate in
/// the measured window.
async fn throughput(
    target: &Target,
    server_pid: u32,
    frame: Vec<u8>,
    payload_len: usize,
    conns: usize,
    in_flight: usize,
    window: (Duration, Duration),
) -> Result<Throughput, BoxError> {
    let targets = vec![target.clone(); conns];
    throughput_of(&targets, server_pid, frame, payload_len, in_flight, window).await
}

/// [`throughput`] with one closed loop per target.
async fn throughput_of(
    targets: &[Target],
    server_pid: u32,
    frame: Vec<u8>,
    payload_len: usize,
    in_flight: usize,
    window: (Duration, Duration),
) -> Result<Throughput, BoxError> {
    let w = measured_window(
        targets,
        frame,
        in_flight,
        window,
        || cpu_seconds(server_pid),
        || cpu_seconds(server_pid),
    )
    .await?;
    let delivered = w.delivered as f64;
    let msgs = delivered / w.elapsed.as_secs_f64();
    let cpu_us_per_msg = match (w.at_start, w.at_end) {
        (Some(a), Some(b)) if delivered > 0.0 => Some((b - a) * 1e6 / delivered),
        _ => None,
    };
    Ok(Throughput {
        msgs_per_sec: msgs,
        bytes_per_sec: msgs * payload_len as f64,
        cpu_us_per_msg,
    })
}

/// What [`measured_window`] saw.
struct Window<T> {
    /// Messages echoed in the window.
    delivered: u64,
    elapsed: Duration,
    /// What the hooks returned at its start and its end.
    at_start: T,
    at_end: T,
}

/// Runs one closed loop per target for `warmup + duration` and counts the
/// messages echoed in the measured window, calling `at_start` as it opens
/// (before the count is read) and `at_end` as it closes (after).
async fn measured_window<T>(
    targets: &[Target],
    frame: Vec<u8>,
    in_flight: usize,
    (warmup, duration): (Duration, Duration),
    at_start: impl FnOnce() -> T,
    at_end: impl FnOnce() -> T,
) -> Result<Window<T>, BoxError> {
    let shared = Rc::new(Shared {
        delivered: Cell::new(0),
        stop: Cell::new(false),
        errors: RefCell::new(Vec::new()),
    });
    let frame = Rc::new(frame);
    let mut tasks = Vec::new();
    for target in targets {
        tasks.push(tokio::task::spawn_local(closed_loop(
            target.clone(),
            Rc::clone(&frame),
            in_flight,
            Rc::clone(&shared),
        )));
    }
    tokio::time::sleep(warmup).await;
    let first = at_start();
    let (start_count, start) = (shared.delivered.get(), Instant::now());
    tokio::time::sleep(duration).await;
    let (end_count, elapsed) = (shared.delivered.get(), start.elapsed());
    let last = at_end();
    shared.stop.set(true);
    for t in tasks {
        t.abort();
    }
    if let Some(e) = shared.errors.borrow().first() {
        return Err(format!("{} error(s), first: {e}", shared.errors.borrow().len()).into());
    }
    Ok(Window {
        delivered: end_count - start_count,
        elapsed,
        at_start: first,
        at_end: last,
    })
}

/// Opens `n` idle WebSocket connections and returns the server's extra RSS
/// per connection, in bytes.
async fn memory_per_connection(target: &Target, pid: u32, n: usize) -> Result<f64, BoxError> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = rss_kib(pid);
    let mut held = Vec::with_capacity(n);
    for batch in 0..n.div_ceil(100) {
        let mut opens = Vec::new();
        for _ in 0..100.min(n - batch * 100) {
            let target = target.clone();
            opens.push(tokio::task::spawn_local(async move { open(&target).await }));
        }
        for o in opens {
            held.push(o.await??.0);
        }
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = rss_kib(pid);
    drop(held);
    Ok((after.saturating_sub(base) as f64 * 1024.0) / n as f64)
}

/// `conns` connections sending `rate` messages per second between them;
/// returns (p50, p99) round-trip times in µs.
///
/// Sends are paced to the microsecond by one loop that round-robins over
/// the connections: message k goes to connection k mod conns at
/// start + k / rate. Independent clients' sends are spread like that; with
/// per-connection millisecond timers (tokio's resolution) every connection
/// sent at the same instant, and the p99 measured how long both processes
/// took to get through that wave rather than the server's response time.
async fn latency(
    target: &Target,
    frame: Vec<u8>,
    conns: usize,
    rate: f64,
    warmup: Duration,
    duration: Duration,
) -> Result<(f64, f64), BoxError> {
    let samples = Rc::new(RefCell::new(Vec::<u32>::with_capacity(1 << 20)));
    let recording = Rc::new(Cell::new(false));
    let mut writers = Vec::with_capacity(conns);
    let mut readers = Vec::with_capacity(conns);
    for _ in 0..conns {
        let (tcp, _) = open(target).await?;
        let (mut rd, wr) = tcp.into_split();
        let sent: Rc<RefCell<VecDeque<Instant>>> = Rc::default();
        let reader_sent = Rc::clone(&sent);
        let (rs, rr) = (Rc::clone(&samples), Rc::clone(&recording));
        readers.push(tokio::task::spawn_local(async move {
            let mut counter = FrameCounter::default();
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let Ok(got) = counter.feed(&buf[..n]) else {
                    return;
                };
                let now = Instant::now();
                for _ in 0..got {
                    if let Some(t) = reader_sent.borrow_mut().pop_front()
                        && rr.get()
                    {
                        rs.borrow_mut().push((now - t).as_micros() as u32);
                    }
                }
            }
        }));
        writers.push((wr, sent));
    }
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let (record_at, end_at) = (start + warmup, start + warmup + duration);
    let mut next = start;
    let mut k = 0usize;
    let result: Result<(), BoxError> = async {
        loop {
            let now = Instant::now();
            if now >= end_at {
                return Ok(());
            }
            recording.set(now >= record_at);
            // Everything due by now goes out (a late loop catches up).
            while next <= now {
                let (wr, sent) = &mut writers[k % conns];
                sent.borrow_mut().push_back(Instant::now());
                let n = match wr.try_write(&frame) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
                    Err(e) => return Err(e.into()),
                };
                if n < frame.len() {
                    wr.write_all(&frame[n..]).await?;
                }
                k += 1;
                next += interval;
            }
            // Lets the readers run; the runtime polls for I/O on the way.
            tokio::task::yield_now().await;
        }
    }
    .await;
    recording.set(false);
    tokio::time::sleep(Duration::from_millis(20)).await;
    for r in readers {
        r.abort();
    }
    result?;
    let mut s = samples.borrow_mut();
    if s.is_empty() {
        return Err("no latency samples".into());
    }
    s.sort_unstable();
    let pick = |q: f64| f64::from(s[((s.len() - 1) as f64 * q) as usize]);
    Ok((pick(0.50), pick(0.99)))
}

// ===== orchestration =====

struct Options {
    quick: bool,
    out: PathBuf,
    /// Where npm installed Node's `ws` (for the fan-out peer).
    node_modules: Option<PathBuf>,
    servers: Option<Vec<String>>,
    scenarios: Option<Vec<String>>,
    /// The latency rows' rate (msg/s) instead of half the lowest 20-byte
    /// peak and half the lowest peer's 1 KiB peak, so runs with different
    /// server sets compare.
    latency_rate: Option<f64>,
    /// The Redis and NATS servers of the cross-node scenario (and of the
    /// fault cases that need no restart, when redis-server / nats-server
    /// are not installed).
    redis_url: Option<String>,
    nats_url: Option<String>,
    /// Where the instruction rows write their callgrind dumps and keep
    /// them (default: a temporary directory, removed afterwards).
    callgrind_dir: Option<PathBuf>,
}

fn parse_options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let list = |v: Option<String>| v.map(|s| s.split(',').map(str::to_owned).collect());
    Options {
        quick: args.iter().any(|a| a == "--quick"),
        out: value("--out").map_or_else(|| PathBuf::from("benches/results"), PathBuf::from),
        node_modules: value("--node-modules").map(PathBuf::from),
        servers: list(value("--servers")),
        scenarios: list(value("--scenarios")),
        latency_rate: value("--latency-rate").and_then(|r| r.parse().ok()),
        redis_url: value("--redis-url"),
        nats_url: value("--nats-url"),
        callgrind_dir: value("--callgrind-dir").map(PathBuf::from),
    }
}

struct Scenario {
    key: &'static str,
    title: &'static str,
    payload: Vec<u8>,
    text: bool,
    conns: usize,
    in_flight: usize,
    deflate: bool,
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            key: "text20",
            title: "20 B text, 100 conns × 16 in flight",
            payload: vec![b'x'; 20],
            text: true,
            conns: 100,
            in_flight: 16,
            deflate: false,
        },
        Scenario {
            key: "bin1k",
            title: "1 KiB binary, 100 conns × 16 in flight",
            payload: vec![0xAB; 1024],
            text: false,
            conns: 100,
            in_flight: 16,
            deflate: false,
        },
        Scenario {
            key: "bin64k",
            title: "64 KiB binary, 10 conns × 4 in flight",
            payload: vec![0xCD; 64 << 10],
            text: false,
            conns: 10,
            in_flight: 4,
            deflate: false,
        },
        Scenario {
            key: "bin1m",
            title: "1 MiB binary, 1 conn × 2 in flight",
            payload: vec![0xEF; 1 << 20],
            text: false,
            conns: 1,
            in_flight: 2,
            deflate: false,
        },
        Scenario {
            key: "deflate",
            title: "1 KiB JSON, permessage-deflate, 100 conns × 16 in flight",
            payload: json_payload(1024).into_bytes(),
            text: true,
            conns: 100,
            in_flight: 16,
            deflate: true,
        },
    ]
}

#[derive(Default)]
struct Row {
    title: String,
    unit: &'static str,
    /// Higher is better (throughput) or lower (memory, latency).
    higher_better: bool,
    values: Vec<(&'static str, bool, Option<f64>, String)>,
}

/// A plain table (no ratios), for scenarios whose figures are not "server
/// vs best peer": a title, text above it, a header, lines, notes below.
#[derive(Default)]
struct Table {
    title: String,
    intro: String,
    header: Vec<String>,
    lines: Vec<Vec<String>>,
    notes: Vec<String>,
}

fn main() -> Result<(), BoxError> {
    let options = parse_options();
    // Pin ourselves to CPU 1 (servers get CPU 0).
    let _ = Command::new("taskset")
        .args(["-p", "-c", "1", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let report = local.block_on(&rt, run(&options))?;
    println!("{report}");
    std::fs::create_dir_all(&options.out)?;
    let stamp = Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let mode = if options.quick { "quick" } else { "full" };
    let file = options.out.join(format!("{stamp}-{mode}.md"));
    std::fs::write(&file, &report)?;
    std::fs::write(options.out.join(format!("latest-{mode}.md")), &report)?;
    eprintln!("written to {}", file.display());
    Ok(())
}

fn selected<'a>(servers: &'a [Server], options: &Options) -> Vec<&'a Server> {
    servers
        .iter()
        .filter(|s| {
            options
                .servers
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| s.name.contains(n.as_str())))
        })
        .collect()
}

async fn run(options: &Options) -> Result<String, BoxError> {
    let (warmup, duration) = if options.quick {
        (Duration::from_millis(500), Duration::from_secs(2))
    } else {
        (Duration::from_secs(1), Duration::from_secs(5))
    };
    let wants = |key: &str| {
        options
            .scenarios
            .as_ref()
            .is_none_or(|s| s.iter().any(|k| k == key))
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut tables: Vec<Table> = Vec::new();
    let mut text20_peaks: Vec<f64> = Vec::new();
    // The 1 KiB latency row runs at half the lowest *peer's* peak.
    let mut bin1k_peer_peaks: Vec<f64> = Vec::new();

    for sc in scenarios() {
        if !wants(sc.key) {
            continue;
        }
        let servers = if sc.deflate {
            selected(DEFLATE_SERVERS, options)
        } else {
            selected(SERVERS, options)
        };
        let (unit, scale) = if sc.payload.len() >= 64 << 10 {
            ("MB/s", 1e-6)
        } else {
            ("msg/s", 1.0)
        };
        let mut row = Row {
            title: sc.title.to_owned(),
            unit,
            higher_better: true,
            values: Vec::new(),
        };
        let mut cpu_row = Row {
            title: format!("{}: server CPU time per message", sc.title),
            unit: "µs",
            higher_better: false,
            values: Vec::new(),
        };
        for server in servers {
            let payload = if sc.deflate {
                deflated(&sc.payload)
            } else {
                sc.payload.clone()
            };
            let frame = client_frame(if sc.text { 0x1 } else { 0x2 }, &payload, sc.deflate);
            let running = start(server)?;
            let target = Target {
                addr: running.addr.clone(),
                websocket: server.websocket,
                deflate: sc.deflate,
                path: "/",
                h2: None,
            };
            eprint!("{:<24} {:<8} ... ", server.name, sc.key);
            let result = throughput(
                &target,
                running.child.id(),
                frame,
                sc.payload.len(),
                sc.conns,
                sc.in_flight,
                (warmup, duration),
            )
            .await;
            drop(running);
            match result {
                Ok(t) => {
                    let v = if unit == "MB/s" {
                        t.bytes_per_sec * scale
                    } else {
                        t.msgs_per_sec
                    };
                    let cpu = t.cpu_us_per_msg;
                    let cpu_text = cpu.map_or_else(|| "?".to_owned(), |c| format!("{c:.2}"));
                    eprintln!("{v:.0} {unit}, server CPU {cpu_text} µs/msg");
                    if sc.key == "text20" && server.websocket {
                        text20_peaks.push(t.msgs_per_sec);
                    }
                    if sc.key == "bin1k" && server.websocket && !server.ours {
                        bin1k_peer_peaks.push(t.msgs_per_sec);
                    }
                    row.values
                        .push((server.name, server.ours, Some(v), format!("{v:.0}")));
                    cpu_row
                        .values
                        .push((server.name, server.ours, cpu, cpu_text));
                }
                Err(e) => {
                    eprintln!("failed: {e}");
                    row.values
                        .push((server.name, server.ours, None, "failed".to_owned()));
                    cpu_row
                        .values
                        .push((server.name, server.ours, None, "failed".to_owned()));
                }
            }
        }
        rows.push(row);
        rows.push(cpu_row);
    }

    if wants("instructions") {
        let mut servers = selected(SERVERS, options);
        servers.extend(selected(METRICS_SERVERS, options));
        let fanout = options.servers.as_ref().is_none_or(|names| {
            names
                .iter()
                .any(|n| fanout::SOCKEYE.name.contains(n.as_str()))
        });
        rows.extend(
            instructions::rows(
                options.quick,
                &servers,
                fanout,
                options.callgrind_dir.as_deref(),
            )
            .await,
        );
    }

    if wants("memory") {
        let n = if options.quick { 2_000 } else { 10_000 };
        let mut row = Row {
            title: format!("memory per idle connection ({n} connections)"),
            unit: "KiB",
            higher_better: false,
            values: Vec::new(),
        };
        for server in selected(SERVERS, options)
            .into_iter()
            .filter(|s| s.websocket)
        {
            let running = start(server)?;
            let target = Target {
                addr: running.addr.clone(),
                websocket: true,
                deflate: false,
                path: "/",
                h2: None,
            };
            eprint!("{:<24} memory   ... ", server.name);
            match memory_per_connection(&target, running.child.id(), n).await {
                Ok(bytes) => {
                    let kib = bytes / 1024.0;
                    eprintln!("{kib:.1} KiB");
                    row.values
                        .push((server.name, server.ours, Some(kib), format!("{kib:.1}")));
                }
                Err(e) => {
                    eprintln!("failed: {e}");
                    row.values
                        .push((server.name, server.ours, None, "failed".to_owned()));
                }
            }
            drop(running);
        }
        rows.push(row);
    }

    let lowest_half = |peaks: &[f64], why: &'static str| {
        (!peaks.is_empty()).then(|| {
            (
                0.5 * peaks.iter().copied().fold(f64::INFINITY, f64::min),
                why,
            )
        })
    };
    let latency_rows = [
        (
            "20 B",
            client_frame(0x1, &[b'x'; 20], false),
            match options.latency_rate {
                Some(rate) => Some((rate, "as asked")),
                None => lowest_half(&text20_peaks, "half the lowest peak"),
            },
        ),
        (
            "1 KiB binary",
            client_frame(0x2, &[0xAB; 1024], false),
            match options.latency_rate {
                Some(rate) => Some((rate, "as asked")),
                None => lowest_half(&bin1k_peer_peaks, "half the lowest peer's peak"),
            },
        ),
    ];
    for (size, frame, rate) in latency_rows {
        let Some((rate, why)) = rate.filter(|_| wants("latency")) else {
            continue;
        };
        let mut p50 = Row {
            title: format!("p50 latency, {size} at {rate:.0} msg/s ({why}), 100 conns"),
            unit: "µs",
            higher_better: false,
            values: Vec::new(),
        };
        let mut p99 = Row {
            title: format!("p99 latency, {size}, same load"),
            unit: "µs",
            higher_better: false,
            values: Vec::new(),
        };
        for server in selected(SERVERS, options)
            .into_iter()
            .filter(|s| s.websocket)
        {
            let running = start(server)?;
            let target = Target {
                addr: running.addr.clone(),
                websocket: true,
                deflate: false,
                path: "/",
                h2: None,
            };
            eprint!("{:<24} latency {size} ... ", server.name);
            match latency(&target, frame.clone(), 100, rate, warmup, duration).await {
                Ok((a, b)) => {
                    eprintln!("p50 {a:.0} µs, p99 {b:.0} µs");
                    p50.values
                        .push((server.name, server.ours, Some(a), format!("{a:.0}")));
                    p99.values
                        .push((server.name, server.ours, Some(b), format!("{b:.0}")));
                }
                Err(e) => {
                    eprintln!("failed: {e}");
                    p50.values
                        .push((server.name, server.ours, None, "failed".to_owned()));
                    p99.values
                        .push((server.name, server.ours, None, "failed".to_owned()));
                }
            }
            drop(running);
        }
        rows.push(p50);
        rows.push(p99);
    }
    if wants("fanout") {
        rows.extend(
            fanout::rows(
                options.quick,
                options.node_modules.as_deref(),
                options.servers.as_deref(),
            )
            .await,
        );
    }
    if wants("http2") {
        tables.extend(http2::tables(options.quick).await);
    }
    if wants("crossnode") {
        tables.extend(
            crossnode::tables(
                options.quick,
                options.redis_url.as_deref(),
                options.nats_url.as_deref(),
            )
            .await,
        );
    }
    if wants("faults") {
        tables.extend(
            faults::tables(options.redis_url.as_deref(), options.nats_url.as_deref()).await,
        );
    }
    Ok(render(&rows, &tables, options.quick))
}

fn render(rows: &[Row], tables: &[Table], quick: bool) -> String {
    let mut out = String::new();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "# sockeye load benchmark ({})\n",
        if quick { "quick" } else { "full" }
    );
    let _ = writeln!(
        out,
        "Loopback, each server pinned to CPU 0 on a current-thread tokio runtime, the generator \
         pinned to CPU 1 ({cpu}). Produced by `cargo xtask bench{}`.\n",
        if quick { " --quick" } else { "" }
    );
    for row in rows {
        let _ = writeln!(out, "## {} ({})\n", row.title, row.unit);
        let _ = writeln!(
            out,
            "| server | {} | vs best peer |\n|---|---:|---:|",
            row.unit
        );
        let best_peer = row
            .values
            .iter()
            .filter(|(name, ours, v, _)| !ours && v.is_some() && *name != "raw TCP echo")
            .filter_map(|(_, _, v, _)| *v)
            .fold(None, |acc: Option<f64>, v| {
                Some(match acc {
                    None => v,
                    Some(a) if row.higher_better => a.max(v),
                    Some(a) => a.min(v),
                })
            });
        for (name, ours, value, shown) in &row.values {
            let ratio = match (value, best_peer) {
                (Some(v), Some(b)) if b > 0.0 && *v > 0.0 => {
                    let r = if row.higher_better { v / b } else { b / v };
                    format!("{r:.2}×")
                }
                _ => "–".to_owned(),
            };
            let name = if *ours {
                format!("**{name}**")
            } else {
                (*name).to_owned()
            };
            let _ = writeln!(out, "| {name} | {shown} | {ratio} |");
        }
        // A share of the ceiling means something for rates only.
        let ceiling = row
            .values
            .iter()
            .find(|(n, ..)| *n == "raw TCP echo" && row.higher_better)
            .and_then(|(_, _, v, _)| *v);
        if let Some(c) = ceiling {
            for (name, ours, value, _) in &row.values {
                if *ours && let Some(v) = value {
                    let _ = writeln!(
                        out,
                        "\n{name}: {:.0} % of the raw TCP ceiling.",
                        100.0 * v / c
                    );
                }
            }
        }
        let _ = writeln!(out);
    }
    if !rows.is_empty() {
        let _ = writeln!(
            out,
            "Ratios: higher is better (for memory and latency, best peer ÷ value). \
             \"Best peer\" excludes sockeye and the raw TCP echo."
        );
        if !tables.is_empty() {
            let _ = writeln!(out);
        }
    }
    for table in tables {
        render_table(&mut out, table);
    }
    out
}

fn render_table(out: &mut String, table: &Table) {
    let _ = writeln!(out, "## {}\n", table.title);
    if !table.intro.is_empty() {
        let _ = writeln!(out, "{}\n", table.intro);
    }
    let _ = writeln!(out, "| {} |", table.header.join(" | "));
    let align: Vec<&str> = (0..table.header.len())
        .map(|i| if i == 0 { "---" } else { "---:" })
        .collect();
    let _ = writeln!(out, "|{}|", align.join("|"));
    for line in &table.lines {
        let _ = writeln!(out, "| {} |", line.join(" | "));
    }
    let _ = writeln!(out);
    for note in &table.notes {
        let _ = writeln!(out, "{note}\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_from_proc_stat() {
        // A command name with spaces and parentheses; utime 250, stime 75.
        let stat = "4242 (pubsub (x) server) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    250 75 0 0 20 0 3 0 12345 100000 2000 18446744073709551615";
        assert_eq!(parse_cpu_seconds(stat), Some(3.25));
        assert_eq!(parse_cpu_seconds("4242 (short) S 1"), None);
        assert_eq!(parse_cpu_seconds("garbage"), None);
    }

    #[test]
    fn tables_render_as_markdown() {
        let table = Table {
            title: "t".to_owned(),
            intro: "i".to_owned(),
            header: vec!["a".to_owned(), "b".to_owned()],
            lines: vec![vec!["x".to_owned(), "1".to_owned()]],
            notes: vec!["n".to_owned()],
        };
        let mut out = String::new();
        render_table(&mut out, &table);
        assert_eq!(
            out,
            "## t\n\ni\n\n| a | b |\n|---|---:|\n| x | 1 |\n\nn\n\n"
        );
    }
}
