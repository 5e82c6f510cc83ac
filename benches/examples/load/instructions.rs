//! Instructions per message (`instructions`): every echo server of the
//! throughput rows runs under valgrind's callgrind, driven by the same
//! closed loops (20 B text and 1 KiB binary, 100 connections × 16 in
//! flight; 64 KiB binary, 10 connections × 4), and the figure is the
//! user-space instructions it executed per message echoed. sockeye's two
//! servers run a second time with `--metrics` (the Prometheus recorder
//! installed): the difference is what its `sockeye_*` counters cost.
//!
//! The 64 KiB row says where a large message's time goes: the payload's
//! copies in and out of the kernel are kernel time (the raw TCP echo does
//! no other work), so what a WebSocket server adds in user space is
//! unmasking and any copy of its own, and a server that spends fewer
//! instructions here but more CPU time per message than a peer loses the
//! difference in the kernel (system calls per message, page faults).
//!
//! Unlike a rate or a CPU time on a shared VM, this count does not move
//! when the host takes the CPU away: the same binaries on the same input
//! give the same figure to within a few tenths of a percent, so a change of
//! 2 % shows. What it leaves out: the kernel (the TCP stack, about half of
//! every server's CPU time on small messages, and the same work for all of
//! them), cache misses and branch mispredictions. Valgrind offers no
//! AVX-512, so code that picks its SIMD kernel at run time takes its AVX2
//! path here; glibc's copies are kept off `rep movsb` (see
//! [`NO_REP_STRINGS`]).
//!
//! Counting covers a window after a warmup: `callgrind_control --zero` at
//! its start, `--dump` at its end, and the count is the dump's total ÷ the
//! messages echoed between the two. The generator waits while each
//! command runs, so the only messages on the boundary are those in flight
//! (at most 1 600, under 1 % of a window's); handshakes and start-up are
//! outside the window.
//!
//! The fan-out row counts the same way per delivery: `pubsub_server`
//! (in-memory broker, and again with `--metrics`) under callgrind, 1 000
//! subscribers on one topic and the fan-out rows' publisher of 64-byte
//! payloads (at most two publications, 2 000 deliveries, in flight at the
//! window's edges); the figure is the dump's total ÷ the deliveries the
//! subscribers received in the window.
//!
//! The dumps go to a temporary directory, deleted afterwards; with
//! `--callgrind-dir DIR` they go to DIR and stay, for `callgrind_annotate`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::fanout::{self, PUBSUB_ARGS};
use crate::{
    BoxError, Row, Running, Scenario, Server, Target, bin_dir, client_frame, launch,
    measured_window, scenarios,
};

/// The throughput scenarios counted.
const COUNTED: [&str; 3] = ["text20", "bin1k", "bin64k"];

/// glibc's memcpy and memset switch to `rep movsb` / `rep stosb` from 2
/// KiB on, and valgrind counts those one instruction per byte (a 16 KiB
/// read copied once counted 16 000); with the thresholds out of reach
/// they use their vector loops at every size, counted like any other code.
const NO_REP_STRINGS: &str = "glibc.cpu.x86_rep_movsb_threshold=0xffffffffffffffff:\
                              glibc.cpu.x86_rep_stosb_threshold=0xffffffffffffffff";

/// One row per case, for `servers`, and the fan-out row if `fanout`; the
/// dumps are kept in `keep_in` if given.
pub(crate) async fn rows(
    quick: bool,
    servers: &[&Server],
    fanout: bool,
    keep_in: Option<&Path>,
) -> Vec<Row> {
    // Under callgrind a server runs some 50 times slower: longer windows
    // than the throughput rows' for as many messages.
    let (warmup, window) = if quick {
        (Duration::from_secs(2), Duration::from_secs(3))
    } else {
        (Duration::from_secs(3), Duration::from_secs(6))
    };
    let dir = keep_in.map_or_else(
        || std::env::temp_dir().join(format!("sockeye-callgrind-{}", std::process::id())),
        Path::to_path_buf,
    );
    let mut rows = Vec::new();
    for sc in scenarios()
        .into_iter()
        .filter(|sc| COUNTED.contains(&sc.key) && !servers.is_empty())
    {
        let mut row = Row {
            title: format!(
                "{}: user-space instructions per message (callgrind)",
                sc.title
            ),
            unit: "instructions",
            higher_better: false,
            values: Vec::new(),
        };
        for server in servers {
            eprint!("{:<24} {:<8} instructions ... ", server.name, sc.key);
            let out = dir.join(format!("{}-{}.out", slug(server.name), sc.key));
            match count(server, &sc, &out, (warmup, window)).await {
                Ok(per_msg) => {
                    eprintln!("{per_msg:.0} per message");
                    row.values.push((
                        server.name,
                        server.ours,
                        Some(per_msg),
                        format!("{per_msg:.0}"),
                    ));
                }
                Err(e) => {
                    eprintln!("failed: {e}");
                    row.values
                        .push((server.name, server.ours, None, "failed".to_owned()));
                }
            }
        }
        rows.push(row);
    }
    if fanout {
        rows.push(fanout_row(&dir, (warmup, window)).await);
    }
    if keep_in.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    rows
}

/// Subscribers of the fan-out row.
const FANOUT_SUBSCRIBERS: usize = 1_000;

/// Instructions per delivery of `pubsub_server`, without and with the
/// Prometheus recorder.
async fn fanout_row(dir: &Path, window: (Duration, Duration)) -> Row {
    let mut row = Row {
        title: format!(
            "fan-out 64 B, 1 publisher → {FANOUT_SUBSCRIBERS} subscribers: user-space instructions per delivery (callgrind)"
        ),
        unit: "instructions",
        higher_better: false,
        values: Vec::new(),
    };
    let with_metrics: Vec<&str> = PUBSUB_ARGS
        .iter()
        .copied()
        .chain(["--metrics", "127.0.0.1:0"])
        .collect();
    for (name, args) in [
        (fanout::SOCKEYE.name, PUBSUB_ARGS),
        ("sockeye-pubsub, --metrics", with_metrics.as_slice()),
    ] {
        eprint!("{name:<24} fan-out  instructions ... ");
        let out = dir.join(format!("{}-fanout.out", slug(name)));
        match count_fanout(name, args, &out, window).await {
            Ok(per_delivery) => {
                eprintln!("{per_delivery:.0} per delivery");
                row.values
                    .push((name, true, Some(per_delivery), format!("{per_delivery:.0}")));
            }
            Err(e) => {
                eprintln!("failed: {e}");
                row.values.push((name, true, None, "failed".to_owned()));
            }
        }
    }
    row
}

async fn count_fanout(
    name: &str,
    args: &[&str],
    out: &Path,
    window: (Duration, Duration),
) -> Result<f64, BoxError> {
    let running = under_callgrind(name, "pubsub_server", args, out)?;
    let pid = running.child.id();
    let measured = fanout::measure(
        &fanout::SOCKEYE,
        &running,
        FANOUT_SUBSCRIBERS,
        64,
        window,
        || control(pid, "--zero"),
        || control(pid, "--dump"),
    )
    .await?;
    drop(running);
    if measured.delivered == 0 {
        return Err("no delivery in the window".into());
    }
    Ok(dump_total_of(out)? as f64 / measured.delivered as f64)
}

/// Starts `program args` from the benchmark binaries under callgrind, its
/// dumps going to `out` (see [`first_dump`]).
fn under_callgrind(
    name: &str,
    program: &str,
    args: &[&str],
    out: &Path,
) -> Result<Running, BoxError> {
    std::fs::create_dir_all(out.parent().ok_or("no parent")?)?;
    let program = bin_dir().join(program);
    let out_flag = format!("--callgrind-out-file={}", out.display());
    let pre = [
        "--tool=callgrind",
        out_flag.as_str(),
        program.to_str().ok_or("program path is not UTF-8")?,
    ];
    let env = [("GLIBC_TUNABLES", Path::new(NO_REP_STRINGS))];
    launch(name, Path::new("valgrind"), &pre, args, &env)
}

/// The total of the first dump made with `--callgrind-out-file=out`.
fn dump_total_of(out: &Path) -> Result<u64, BoxError> {
    let dump = first_dump(out);
    let text = std::fs::read_to_string(&dump)
        .map_err(|e| format!("cannot read {}: {e}", dump.display()))?;
    Ok(dump_total(&text).ok_or("no `totals:` line in the dump")?)
}

/// A file name for a server's name.
fn slug(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Runs `server` under callgrind with the closed loops of `sc`; returns
/// instructions per message over the measured window.
async fn count(
    server: &Server,
    sc: &Scenario,
    out: &Path,
    window: (Duration, Duration),
) -> Result<f64, BoxError> {
    let running = under_callgrind(server.name, server.program, server.args, out)?;
    let pid = running.child.id();
    let target = Target {
        addr: running.addr.clone(),
        websocket: server.websocket,
        deflate: false,
        path: "/",
        h2: None,
    };
    let frame = client_frame(if sc.text { 0x1 } else { 0x2 }, &sc.payload, false);
    let targets = vec![target; sc.conns];
    // Blocking on purpose: the loops wait while each command runs.
    let w = measured_window(
        &targets,
        frame,
        sc.in_flight,
        window,
        || control(pid, "--zero"),
        || control(pid, "--dump"),
    )
    .await?;
    drop(running);
    w.at_start?;
    w.at_end?;
    if w.delivered == 0 {
        return Err("no message was echoed in the window".into());
    }
    Ok(dump_total_of(out)? as f64 / w.delivered as f64)
}

/// `callgrind_control OP PID`.
fn control(pid: u32, op: &str) -> Result<(), BoxError> {
    let status = Command::new("callgrind_control")
        .args([op, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run callgrind_control: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("callgrind_control {op} {pid} failed: {status}").into())
    }
}

/// Callgrind names the first dump of `--callgrind-out-file=F` `F.1`.
fn first_dump(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// The event total of a callgrind dump (its `totals:` line; `summary:` in
/// older formats). With the default event set that is instructions.
fn dump_total(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line
            .strip_prefix("totals:")
            .or_else(|| line.strip_prefix("summary:"))?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_total_of_a_dump() {
        let dump = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\n\nfn=(1) main\n16 3\n\ntotals: 946\n";
        assert_eq!(dump_total(dump), Some(946));
        assert_eq!(dump_total("summary: 12 0\n"), Some(12));
        assert_eq!(dump_total("events: Ir\n"), None);
        assert_eq!(
            first_dump(Path::new("/tmp/x/a.out")),
            PathBuf::from("/tmp/x/a.out.1")
        );
        assert_eq!(slug("sockeye (raw)"), "sockeye--raw-");
    }
}
