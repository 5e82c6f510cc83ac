//! The clients of a fault case, raw WebSockets like the other scenarios':
//! subscribers that reconnect and subscribe again with `since` (after a
//! disconnection, a `lag`, an `unsubscribed` or a failed subscribe), and a
//! publisher that sends `{"i":N}` one at a time, retrying each until it is
//! acknowledged.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

use super::tally::{Tally, number, recovered, string};
use crate::fanout::{Frames, publication};
use crate::{BoxError, Target, client_frame, open};

/// How long a failed subscribe waits before it is sent again.
const RESUBSCRIBE_AFTER: Duration = Duration::from_millis(100);

/// What the subscribers share: the case's clock, and the longest time no
/// publication arrived at any of them.
pub(super) struct Shared {
    pub(super) base: Instant,
    last: Cell<Option<Instant>>,
    pub(super) gap: Cell<Duration>,
}

impl Shared {
    pub(super) fn new(base: Instant) -> Self {
        Self {
            base,
            last: Cell::new(None),
            gap: Cell::new(Duration::ZERO),
        }
    }

    fn arrived(&self, now: Instant) {
        if let Some(last) = self.last.get() {
            self.gap.set(self.gap.get().max(now - last));
        }
        self.last.set(Some(now));
    }
}

#[derive(Default)]
pub(super) struct Subscriber {
    pub(super) tally: Tally,
    /// Subscribed once at least.
    pub(super) ready: bool,
    /// Disconnected, or a subscribe is due or unanswered.
    pub(super) syncing: bool,
}

/// A subscribe command, from `since` when a position is known.
fn subscribe(id: u64, topic: &str, since: Option<&(u64, String)>) -> String {
    match since {
        Some((offset, epoch)) => format!(
            r#"{{"id":{id},"op":"subscribe","topic":"{topic}","since":{{"offset":{offset},"epoch":"{epoch}"}}}}"#
        ),
        None => format!(r#"{{"id":{id},"op":"subscribe","topic":"{topic}"}}"#),
    }
}

/// One subscriber on `target`, for ever (the case aborts it).
pub(super) async fn subscriber(
    target: Target,
    topic: Rc<str>,
    me: Rc<RefCell<Subscriber>>,
    shared: Rc<Shared>,
) {
    let (mut id, mut before) = (0, false);
    loop {
        let Ok((tcp, early)) = open(&target).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if before {
            me.borrow_mut().tally.events.reconnects += 1;
        }
        before = true;
        let _ = session(tcp, early, &topic, &me, &shared, &mut id).await;
        me.borrow_mut().syncing = true;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One connection: subscribes, then counts until it breaks.
async fn session(
    tcp: TcpStream,
    early: Vec<u8>,
    topic: &str,
    me: &RefCell<Subscriber>,
    shared: &Shared,
    id: &mut u64,
) -> Result<(), BoxError> {
    let (mut rd, mut wr) = tcp.into_split();
    let mut frames = Frames::default();
    let mut buf = vec![0u8; 16 << 10];
    let mut data = early;
    // A subscribe to send (when), the one unanswered.
    let mut due = Some(Instant::now());
    let mut pending: Option<u64> = None;
    loop {
        frames.feed(&data, |payload| {
            for line in String::from_utf8_lossy(payload).split('\n') {
                handle(line, me, shared, &mut pending, &mut due);
            }
        })?;
        if pending.is_none() && due.is_some_and(|t| t <= Instant::now()) {
            *id += 1;
            let command = subscribe(*id, topic, me.borrow().tally.position.as_ref());
            wr.write_all(&client_frame(0x1, command.as_bytes(), false))
                .await?;
            (pending, due) = (Some(*id), None);
        }
        let wake = due.filter(|_| pending.is_none());
        data.clear();
        tokio::select! {
            n = rd.read(&mut buf) => match n? {
                0 => return Err("closed".into()),
                n => data.extend_from_slice(&buf[..n]),
            },
            () = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now).into()), if wake.is_some() => {}
        }
    }
}

fn handle(
    line: &str,
    me: &RefCell<Subscriber>,
    shared: &Shared,
    pending: &mut Option<u64>,
    due: &mut Option<Instant>,
) {
    let mut s = me.borrow_mut();
    if line.starts_with("{\"id\":") {
        if pending.is_none() || number(line, "\"id\":") != *pending {
            return;
        }
        *pending = None;
        if line.contains("\"ok\":") {
            let resync = s.ready;
            let epoch = string(line, "\"epoch\":\"").map(str::to_owned);
            s.tally
                .on_subscribed(number(line, "\"offset\":"), epoch, recovered(line), resync);
            s.ready = true;
            s.syncing = due.is_some();
        } else {
            // E.g. `unavailable` while the broker is down: the hub dropped
            // the subscription; try again.
            s.tally.events.subscribe_errors += 1;
            *due = Some(Instant::now() + RESUBSCRIBE_AFTER);
        }
    } else if let Some(kind) = string(line, "\"event\":\"") {
        if s.tally.on_event(kind, recovered(line)) {
            s.syncing = true;
            due.get_or_insert_with(Instant::now);
        }
    } else if let Some(i) = number(line, "\"data\":{\"i\":") {
        let now = Instant::now();
        shared.arrived(now);
        let at = (now - shared.base).as_secs_f32();
        s.tally.on_push(i, number(line, "\"offset\":"), at);
    }
}

/// The publisher's progress, read by the case.
pub(super) struct Plan {
    /// No new publication is started from then on.
    pub(super) stop_at: Cell<Instant>,
    /// The highest `i` sent (once at least), and acknowledged.
    pub(super) sent: Cell<u64>,
    pub(super) acked: Cell<u64>,
    /// Publish commands answered with an error, then sent again.
    pub(super) retries: Cell<u64>,
}

impl Plan {
    pub(super) fn new(stop_at: Instant) -> Self {
        Self {
            stop_at: Cell::new(stop_at),
            sent: Cell::new(0),
            acked: Cell::new(0),
            retries: Cell::new(0),
        }
    }
}

/// Replies read off the publisher's connection.
struct Replies {
    rd: OwnedReadHalf,
    frames: Frames,
    lines: VecDeque<String>,
    buf: Vec<u8>,
}

impl Replies {
    /// The reply to command `id`.
    async fn to(&mut self, id: u64) -> Result<String, BoxError> {
        loop {
            while let Some(line) = self.lines.pop_front() {
                if line.starts_with("{\"id\":") && number(&line, "\"id\":") == Some(id) {
                    return Ok(line);
                }
            }
            let n = self.rd.read(&mut self.buf).await?;
            if n == 0 {
                return Err("node A closed the publisher's connection".into());
            }
            self.feed(n)?;
        }
    }

    fn feed(&mut self, n: usize) -> Result<(), BoxError> {
        let lines = &mut self.lines;
        self.frames.feed(&self.buf[..n], |p| {
            lines.extend(String::from_utf8_lossy(p).split('\n').map(str::to_owned));
        })
    }
}

/// Publishes `{"i":1}`, `{"i":2}`, ... to `topic`, one every `interval`
/// (or at once when the last took longer), each retried until acknowledged.
pub(super) async fn publisher(
    target: Target,
    topic: Rc<str>,
    plan: Rc<Plan>,
    interval: Duration,
) -> Result<(), BoxError> {
    let (tcp, early) = open(&target).await?;
    let (rd, mut wr) = tcp.into_split();
    let mut replies = Replies {
        rd,
        frames: Frames::default(),
        lines: VecDeque::new(),
        buf: early,
    };
    let n = replies.buf.len();
    replies.feed(n)?;
    replies.buf = vec![0u8; 16 << 10];
    let (mut next, mut id) = (Instant::now(), 0);
    while Instant::now() < plan.stop_at.get() {
        tokio::time::sleep_until(next.into()).await;
        let i = plan.acked.get() + 1;
        plan.sent.set(i);
        loop {
            id += 1;
            let text = publication(&topic, id, &format!("{{\"i\":{i}}}"));
            wr.write_all(&client_frame(0x1, text.as_bytes(), false))
                .await?;
            let reply = tokio::time::timeout(Duration::from_secs(6), replies.to(id))
                .await
                .map_err(|_| format!("no reply to publication {i} within 6 s"))??;
            if reply.contains("\"ok\":") {
                break;
            }
            if !reply.contains("\"temporary\":true") {
                return Err(format!("publication {i} refused: {reply}").into());
            }
            plan.retries.set(plan.retries.get() + 1);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        plan.acked.set(i);
        next = (next + interval).max(Instant::now());
    }
    Ok(())
}
