//! Broker and node faults (`faults`): for every publication, what each
//! subscriber got of it — delivered in order, recovered from history, or
//! told it is lost — never silently missing.
//!
//! Each case runs two `pubsub_server` nodes A and B on one broker (on CPU
//! 0, like the broker), [`SUBSCRIBERS`] raw WebSocket subscribers on B on
//! one `test:` topic (history 1000 on Redis, none on NATS), and a
//! publisher on A sending `{"i":1}`, `{"i":2}`, ... at [`RATE`] per second,
//! one at a time, each retried until acknowledged (an error reply such as
//! `unavailable`, `temporary: true`, while the broker is down). At 1.5 s
//! the fault: the broker killed with SIGKILL and restarted on its port
//! 0.5 s later (Redis with an fsync'ed AOF, then without persistence, then
//! NATS), the broker stopped for 2 s (SIGSTOP, SIGCONT), node B killed and
//! restarted on its port (its subscribers reconnect and subscribe again
//! with `since`), node B stopped for 2 s. Publishing goes on for 6 s in
//! all, 2.5 s past the fault at least; then the subscribers get up to 3 s
//! to catch up. How each subscriber counts is in `faults/tally.rs`.
//!
//! The brokers are started here (redis-server, nats-server, in a temporary
//! directory, on free loopback ports); without the binary, the URL given
//! with `--redis-url` / `--nats-url` serves the cases that do not restart
//! the broker (a pause needs its process, found by its port).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::task::AbortHandle;

use crate::crossnode::ws_target;
use crate::fanout::PUBSUB_ARGS;
use crate::{BoxError, Table, bin_dir, launch, launch_at};

mod broker;
mod clients;
mod tally;

use broker::{Broker, Source, Stopped, source};
use clients::{Plan, Shared, Subscriber};
use tally::{Counts, Events};

const SUBSCRIBERS: usize = 100;
/// Publications per second.
const RATE: f64 = 200.0;
const FAULT_AT: Duration = Duration::from_millis(1500);
/// A killed process is started again after this.
const DOWN_FOR: Duration = Duration::from_millis(500);
/// A stopped process is continued after this.
const PAUSE: Duration = Duration::from_secs(2);
const STREAM: Duration = Duration::from_secs(6);
const AFTER_FAULT: Duration = Duration::from_millis(2500);
const MAX_STREAM: Duration = Duration::from_secs(9);
const DRAIN: Duration = Duration::from_secs(3);
const CASE_LIMIT: Duration = Duration::from_secs(15);
const SCENARIO_LIMIT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Redis { persist: bool },
    Nats,
}

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    KillBroker,
    StopBroker,
    KillNode,
    StopNode,
}

struct Case {
    name: &'static str,
    kind: Kind,
    fault: Fault,
}

const CASES: &[Case] = &[
    Case {
        name: "Redis killed, restarted 0.5 s later (AOF, fsync always)",
        kind: Kind::Redis { persist: true },
        fault: Fault::KillBroker,
    },
    Case {
        name: "Redis killed, restarted 0.5 s later (no persistence)",
        kind: Kind::Redis { persist: false },
        fault: Fault::KillBroker,
    },
    Case {
        name: "Redis paused 2 s (SIGSTOP)",
        kind: Kind::Redis { persist: false },
        fault: Fault::StopBroker,
    },
    Case {
        name: "node B killed, restarted 0.5 s later (Redis)",
        kind: Kind::Redis { persist: false },
        fault: Fault::KillNode,
    },
    Case {
        name: "node B paused 2 s (SIGSTOP, Redis)",
        kind: Kind::Redis { persist: false },
        fault: Fault::StopNode,
    },
    Case {
        name: "NATS killed, restarted 0.5 s later",
        kind: Kind::Nats,
        fault: Fault::KillBroker,
    },
    Case {
        name: "NATS paused 2 s (SIGSTOP)",
        kind: Kind::Nats,
        fault: Fault::StopBroker,
    },
];

/// Aborts the case's tasks when it ends, however it ends.
#[derive(Default)]
struct Tasks(Vec<AbortHandle>);

impl Drop for Tasks {
    fn drop(&mut self) {
        self.0.iter().for_each(AbortHandle::abort);
    }
}

struct Measured {
    published: u64,
    counts: Counts,
    events: Events,
    retries: u64,
    outage: Duration,
    /// None: a subscriber got no publication sent after the fault.
    catch_up: Option<Duration>,
}

async fn run_case(index: usize, case: &Case, source: Source) -> Result<Measured, BoxError> {
    let mut broker = Broker::start(case.kind, source).await?;
    let flag = if case.kind == Kind::Nats {
        "--nats"
    } else {
        "--redis"
    };
    let mut args: Vec<String> = PUBSUB_ARGS.iter().map(|s| (*s).to_owned()).collect();
    args.extend([flag.to_owned(), broker.url.clone()]);
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let program = bin_dir().join("pubsub_server");
    let a = launch("node A", &program, &[], &arg_refs, &[])?;
    let mut b = Some(launch("node B", &program, &[], &arg_refs, &[])?);
    let b_target = ws_target(b.as_ref().ok_or("no node B")?);
    let topic: Rc<str> = Rc::from(format!("test:faults-{}-{index}", std::process::id()));

    let base = Instant::now();
    let shared = Rc::new(Shared::new(base));
    let mut tasks = Tasks::default();
    let subs: Vec<Rc<RefCell<Subscriber>>> = (0..SUBSCRIBERS).map(|_| Rc::default()).collect();
    for s in &subs {
        let task = clients::subscriber(
            b_target.clone(),
            Rc::clone(&topic),
            Rc::clone(s),
            Rc::clone(&shared),
        );
        tasks.0.push(tokio::task::spawn_local(task).abort_handle());
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !subs.iter().all(|s| s.borrow().ready) {
        if Instant::now() > deadline {
            return Err("the subscribers did not subscribe within 5 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let start = Instant::now();
    let plan = Rc::new(Plan::new(start + STREAM));
    let publisher = tokio::task::spawn_local(clients::publisher(
        ws_target(&a),
        Rc::clone(&topic),
        Rc::clone(&plan),
        Duration::from_secs_f64(1.0 / RATE),
    ));
    tasks.0.push(publisher.abort_handle());
    tokio::time::sleep_until((start + FAULT_AT).into()).await;
    match case.fault {
        Fault::KillBroker => {
            drop(broker.running.take()); // SIGKILL
            tokio::time::sleep(DOWN_FOR).await;
            broker.restart().await?;
        }
        Fault::StopBroker => {
            let _stopped = Stopped::new(broker.pid.ok_or("no broker process")?)?;
            tokio::time::sleep(PAUSE).await;
        }
        Fault::KillNode => {
            drop(b.take()); // SIGKILL
            tokio::time::sleep(DOWN_FOR).await;
            let addr = b_target.addr.clone();
            let again = tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                launch_at("node B", &program, &[], &refs, &[], &addr).map_err(|e| e.to_string())
            });
            b = Some(again.await??);
        }
        Fault::StopNode => {
            let pid = b.as_ref().ok_or("no node B")?.child.id();
            let _stopped = Stopped::new(pid)?;
            tokio::time::sleep(PAUSE).await;
        }
    }
    let fault_end = Instant::now();
    let backlog = plan.sent.get();
    let stop_at = (fault_end + AFTER_FAULT).clamp(start + STREAM, start + MAX_STREAM);
    plan.stop_at.set(stop_at);
    tokio::time::timeout_at((stop_at + Duration::from_secs(7)).into(), publisher)
        .await
        .map_err(|_| "the publisher did not finish in time")???;
    let published = plan.acked.get();

    let deadline = Instant::now() + DRAIN;
    let done = |s: &Rc<RefCell<Subscriber>>| {
        let s = s.borrow();
        s.tally.high >= published && !s.syncing
    };
    while Instant::now() < deadline && !subs.iter().all(done) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Late duplicates still count.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(tasks);
    drop((a, b, broker));

    let (mut counts, mut events) = (Counts::default(), Events::default());
    let fault_end_s = (fault_end - base).as_secs_f32();
    // Every subscriber live again: none if one never was.
    let mut live = Some(fault_end_s);
    for s in &subs {
        let s = s.borrow();
        counts.add(&s.tally.finish(published));
        events.add(&s.tally.events);
        live = live
            .zip(s.tally.first_receipt_after(backlog))
            .map(|(a, b)| a.max(b));
    }
    Ok(Measured {
        published,
        counts,
        events,
        retries: plan.retries.get(),
        outage: shared.gap.get(),
        catch_up: live.map(|t| Duration::from_secs_f32(t - fault_end_s)),
    })
}

fn events_note(case: &Case, e: &Events) -> String {
    format!(
        "- {}: `lag` {}, `link_down` {}, `link_up` recovered {} / not {}, re-subscribe replies \
         recovered {} / not {}, reconnections {}, subscribe errors (retried) {}.",
        case.name,
        e.lag,
        e.link_down,
        e.link_up_recovered,
        e.link_up_lost,
        e.resubscribe_recovered,
        e.resubscribe_lost,
        e.reconnects,
        e.subscribe_errors
    )
}

/// The fault table, one line per case.
pub(crate) async fn tables(redis: Option<&str>, nats: Option<&str>) -> Vec<Table> {
    let began = Instant::now();
    let header = [
        "case",
        "publications",
        "delivered in order",
        "recovered",
        "duplicates",
        "told",
        "silently missing",
        "out of order",
        "publish retries",
        "outage s",
        "catch-up s",
    ];
    let mut table = Table {
        title: format!(
            "faults: 1 publisher on A → {SUBSCRIBERS} subscribers on B, {RATE:.0} publications/s"
        ),
        intro: format!(
            "Two `pubsub_server --threads 1` nodes on one broker started for the case (Redis: \
             topic `test:` with history 1000; NATS: no history), {SUBSCRIBERS} subscribers on B, \
             the publisher on A sending `{{\"i\":N}}` one at a time, each retried until \
             acknowledged. The fault comes {:.1} s in; publishing lasts {:.0} s ({:.1} s past \
             the fault at least), then up to {:.0} s to catch up. Counts are per publication per \
             subscriber, summed over subscribers: each publication ends as delivered in order \
             (first receipt, live), recovered (first receipt in the replay after a `since` \
             re-subscribe), out of order (first receipt behind a later one, not a replay), told \
             (never received, and a `lag`, a `link_up` without `recovered: true` or a \
             re-subscribe reply without `recovered: true` came next to the gap) or silently \
             missing (never received, never told); duplicates are receipts past the first. \
             Per line, delivered + recovered + out of order + told + silently missing = \
             publications × {SUBSCRIBERS}. Publish retries: error replies (`temporary: true`) \
             to the publisher, each followed by a resend. Outage: the longest time no \
             publication reached any subscriber. Catch-up: from the end of the fault (the restarted \
             process answering, or SIGCONT) until every subscriber had received a publication \
             first sent after that end: its backlog was delivered, replayed or reported by then \
             (never: a subscriber got none).",
            FAULT_AT.as_secs_f64(),
            STREAM.as_secs_f64(),
            AFTER_FAULT.as_secs_f64(),
            DRAIN.as_secs_f64(),
        ),
        header: header.map(str::to_owned).to_vec(),
        lines: Vec::new(),
        notes: Vec::new(),
    };
    let mut notes = Vec::new();
    let mut silent = Vec::new();
    for (index, case) in CASES.iter().enumerate() {
        eprint!("{:<58} faults ... ", case.name);
        let result = if began.elapsed() + CASE_LIMIT > SCENARIO_LIMIT {
            Err("not run: the scenario's 2 min are spent".to_owned())
        } else {
            match source(case, redis, nats) {
                Err(why) => Err(format!("not run: {why}")),
                Ok(source) => {
                    match tokio::time::timeout(CASE_LIMIT, run_case(index, case, source)).await {
                        Ok(Ok(m)) => Ok(m),
                        Ok(Err(e)) => Err(format!("failed: {e}")),
                        Err(_) => Err(format!("failed: over {} s", CASE_LIMIT.as_secs())),
                    }
                }
            }
        };
        match result {
            Ok(m) => {
                let c = &m.counts;
                let catch_up = m
                    .catch_up
                    .map_or_else(|| "never".to_owned(), |d| format!("{:.2}", d.as_secs_f64()));
                eprintln!(
                    "{} published, in order {}, recovered {}, told {}, silently missing {}, \
                     duplicates {}, out of order {}, retries {}, outage {:.2} s, catch-up {} s",
                    m.published,
                    c.in_order,
                    c.recovered,
                    c.told,
                    c.silent,
                    c.duplicates,
                    c.out_of_order,
                    m.retries,
                    m.outage.as_secs_f64(),
                    catch_up
                );
                let total = c.in_order + c.recovered + c.out_of_order + c.told + c.silent;
                if total != m.published * SUBSCRIBERS as u64 {
                    notes.push(format!(
                        "- {}: the outcomes add up to {total}, not {}.",
                        case.name,
                        m.published * SUBSCRIBERS as u64
                    ));
                }
                if c.silent > 0 {
                    silent.push(case.name);
                }
                notes.push(events_note(case, &m.events));
                table.lines.push(vec![
                    case.name.to_owned(),
                    m.published.to_string(),
                    c.in_order.to_string(),
                    c.recovered.to_string(),
                    c.duplicates.to_string(),
                    c.told.to_string(),
                    c.silent.to_string(),
                    c.out_of_order.to_string(),
                    m.retries.to_string(),
                    format!("{:.2}", m.outage.as_secs_f64()),
                    catch_up,
                ]);
            }
            Err(e) => {
                eprintln!("{e}");
                let mut cells = vec![case.name.to_owned(), e];
                cells.extend(std::iter::repeat_n("–".to_owned(), header.len() - 2));
                table.lines.push(cells);
            }
        }
    }
    let verdict = if silent.is_empty() {
        "No publication went silently missing in the cases that ran.".to_owned()
    } else {
        format!(
            "**Publications went silently missing** in: {}.",
            silent.join("; ")
        )
    };
    table.notes.push(verdict);
    if !notes.is_empty() {
        table.notes.push(format!(
            "Notices seen by the subscribers (summed):\n{}",
            notes.join("\n")
        ));
    }
    vec![table]
}
