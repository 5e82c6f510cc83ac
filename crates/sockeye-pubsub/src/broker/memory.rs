//! The in-process broker: every publication goes straight to the local hub;
//! history is a log per topic, bounded per topic (size, TTL), per namespace
//! and per hub ([`HistoryBudget`]); presence a list per topic.
//!
//! A topic costs nothing here once it has neither a subscriber nor retained
//! history: its log is removed, and a later publication starts it in a new
//! epoch (so an old `since` is answered with `recovered: false`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant};

use super::{
    BoxFuture, Broker, BrokerEvent, BrokerHandler, HistoryState, Member, Publication,
    PublishOptions, after, new_epoch, notify,
};
use crate::error::Error;
use crate::protocol::StreamPosition;
use crate::topic::{History, HistoryBudget};

/// The bookkeeping each retained publication is charged beyond its data.
const ENTRY_OVERHEAD: usize = 64;

/// How often expired history is swept.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// What a [`MemoryBroker`] holds in history, and what it let go.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use sockeye_pubsub::MemoryBroker;
/// let broker = MemoryBroker::new();
/// let stats = broker.history_stats();
/// assert_eq!((stats.bytes, stats.topics, stats.entries), (0, 0, 0));
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryStats {
    /// Bytes charged to retained history (data plus 64 per publication).
    pub bytes: usize,
    /// Topics holding any history.
    pub topics: usize,
    /// Publications retained.
    pub entries: usize,
    /// Topics known to the broker at all (with history or subscribed).
    pub logs: usize,
    /// Publications evicted by a [`HistoryBudget`] so far.
    pub evicted: u64,
    /// Publications dropped at their TTL so far.
    pub expired: u64,
    /// Publications dropped past their topic's history size so far.
    pub trimmed: u64,
}

/// The default broker: one process, no network. Restarting the process
/// starts every stream in a new epoch, so clients never trust stale offsets.
#[derive(Default)]
pub struct MemoryBroker {
    handler: RwLock<Option<Weak<dyn BrokerHandler>>>,
    state: Arc<Mutex<State>>,
    presence: Mutex<HashMap<String, Vec<Member>>>,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker")
            .field("history", &self.history_stats())
            .finish_non_exhaustive()
    }
}

struct Entry {
    offset: u64,
    at: Instant,
    data: Arc<str>,
}

impl Entry {
    fn cost(&self) -> usize {
        self.data.len() + ENTRY_OVERHEAD
    }
}

struct Log {
    /// Tells a recreated log from the one a ledger record points at.
    id: u64,
    epoch: Arc<str>,
    top: u64,
    /// The per-topic bounds of the last publication (or history request).
    history: History,
    entries: VecDeque<Entry>,
}

impl Log {
    /// An empty log in a new epoch.
    fn new(id: u64, history: History) -> Self {
        Self {
            id,
            epoch: new_epoch().into(),
            top: 0,
            history,
            entries: VecDeque::new(),
        }
    }
}

/// One retained publication, in publication order within a namespace.
struct Record {
    log: u64,
    at: Instant,
    topic: Arc<str>,
    offset: u64,
}

/// A namespace's retained history, oldest first.
#[derive(Default)]
struct Ledger {
    fifo: VecDeque<Record>,
    bytes: usize,
    entries: usize,
    topics: usize,
}

#[derive(Default)]
struct State {
    topics: HashMap<Arc<str>, Log>,
    /// Broker subscriptions per topic: a subscribed topic keeps its log.
    subscribed: HashMap<Arc<str>, usize>,
    ledgers: HashMap<Arc<str>, Ledger>,
    bytes: usize,
    entries: usize,
    with_history: usize,
    next_id: u64,
    evicted: u64,
    expired: u64,
    trimmed: u64,
    sweeping: bool,
}

/// Why an entry leaves a log.
#[derive(Clone, Copy)]
enum Reason {
    /// A [`HistoryBudget`] was exceeded.
    Evicted,
    /// Past its topic's TTL.
    Expired,
    /// Past its topic's size.
    Trimmed,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Lets a map's table go once most of it is empty.
fn shrink<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 64 && map.len() * 4 < map.capacity() {
        map.shrink_to(map.len() * 2);
    }
}

/// The namespace a ledger is kept for: the part before `:`.
fn namespace_of(topic: &str) -> &str {
    topic.split_once(':').map_or("", |(ns, _)| ns)
}

/// Whether a record still points at its log's oldest entry.
fn live(topics: &HashMap<Arc<str>, Log>, record: &Record) -> bool {
    topics.get(&record.topic).is_some_and(|log| {
        log.id == record.log
            && log
                .entries
                .front()
                .is_some_and(|e| e.offset <= record.offset)
    })
}

impl State {
    /// Appends a publication to `topic`'s log: the topic's shared name, the
    /// offset and the epoch.
    fn push(
        &mut self,
        topic: &str,
        data: Arc<str>,
        history: History,
        now: Instant,
    ) -> (Arc<str>, u64, Arc<str>) {
        let key: Arc<str> = match self.topics.get_key_value(topic) {
            Some((key, _)) => Arc::clone(key),
            None => Arc::from(topic),
        };
        self.next_id += 1;
        let id = self.next_id;
        let log = self
            .topics
            .entry(Arc::clone(&key))
            .or_insert_with(|| Log::new(id, history));
        log.top += 1;
        log.history = history;
        let first = log.entries.is_empty();
        let entry = Entry {
            offset: log.top,
            at: now,
            data,
        };
        let cost = entry.cost();
        crate::metrics::history_kept(cost);
        log.entries.push_back(entry);
        let (offset, log_id, epoch) = (log.top, log.id, Arc::clone(&log.epoch));
        let ledger = self
            .ledgers
            .entry(Arc::from(namespace_of(topic)))
            .or_default();
        ledger.fifo.push_back(Record {
            log: log_id,
            at: now,
            topic: Arc::clone(&key),
            offset,
        });
        ledger.bytes += cost;
        ledger.entries += 1;
        self.bytes += cost;
        self.entries += 1;
        if first {
            ledger.topics += 1;
            self.with_history += 1;
        }
        // Records of entries trimmed by size or TTL stay behind in the
        // ledger; drop them once they outnumber the live ones.
        if ledger.fifo.len() > 2 * ledger.entries + 64 {
            let topics = &self.topics;
            ledger.fifo.retain(|r| live(topics, r));
            if ledger.fifo.capacity() > 4 * ledger.fifo.len() + 64 {
                ledger.fifo.shrink_to(2 * ledger.fifo.len());
            }
        }
        (key, offset, epoch)
    }

    /// Drops `topic`'s oldest entry with all accounting; a log left empty
    /// and unsubscribed goes, and so does an empty ledger.
    fn pop_front(&mut self, topic: &str, reason: Reason) {
        let Some(log) = self.topics.get_mut(topic) else {
            return;
        };
        let Some(entry) = log.entries.pop_front() else {
            return;
        };
        let emptied = log.entries.is_empty();
        let cost = entry.cost();
        let ns = namespace_of(topic);
        if let Some(ledger) = self.ledgers.get_mut(ns) {
            ledger.bytes -= cost;
            ledger.entries -= 1;
            if emptied {
                ledger.topics -= 1;
            }
            if ledger.entries == 0 {
                self.ledgers.remove(ns);
            }
        }
        self.bytes -= cost;
        self.entries -= 1;
        if emptied {
            self.with_history -= 1;
        }
        let label = match reason {
            Reason::Evicted => {
                self.evicted += 1;
                "budget"
            }
            Reason::Expired => {
                self.expired += 1;
                "ttl"
            }
            Reason::Trimmed => {
                self.trimmed += 1;
                "size"
            }
        };
        crate::metrics::history_dropped(label, cost);
        if emptied {
            self.forget_if_idle(topic);
        }
    }

    /// Removes a log with neither history nor a subscription.
    fn forget_if_idle(&mut self, topic: &str) {
        let idle = self
            .topics
            .get(topic)
            .is_some_and(|log| log.entries.is_empty())
            && !self.subscribed.contains_key(topic);
        if idle {
            self.topics.remove(topic);
            shrink(&mut self.topics);
        }
    }

    /// Applies `topic`'s own bounds (size, TTL).
    fn prune(&mut self, topic: &str, history: History, now: Instant) {
        loop {
            let Some(log) = self.topics.get(topic) else {
                return;
            };
            let reason = if log.entries.len() > history.size {
                Reason::Trimmed
            } else if log
                .entries
                .front()
                .is_some_and(|e| now.duration_since(e.at) > history.ttl)
            {
                Reason::Expired
            } else {
                return;
            };
            self.pop_front(topic, reason);
        }
    }

    /// Evicts the oldest retained publication of namespace `ns`.
    fn evict_oldest_in(&mut self, ns: &str) -> bool {
        loop {
            let Some(ledger) = self.ledgers.get_mut(ns) else {
                return false;
            };
            let Some(record) = ledger.fifo.pop_front() else {
                return false;
            };
            if live(&self.topics, &record) {
                self.pop_front(&record.topic, Reason::Evicted);
                return true;
            }
        }
    }

    /// Evicts the oldest retained publication of any namespace.
    fn evict_oldest(&mut self) -> bool {
        let mut oldest: Option<(Instant, Arc<str>)> = None;
        for (ns, ledger) in &mut self.ledgers {
            while ledger.fifo.front().is_some_and(|r| !live(&self.topics, r)) {
                ledger.fifo.pop_front();
            }
            if let Some(r) = ledger.fifo.front()
                && oldest.as_ref().is_none_or(|(at, _)| r.at < *at)
            {
                oldest = Some((r.at, Arc::clone(ns)));
            }
        }
        match oldest {
            Some((_, ns)) => self.evict_oldest_in(&ns),
            None => false,
        }
    }

    /// Evicts oldest-first until the namespace's and the hub's budgets hold.
    fn enforce(&mut self, ns: &str, namespace: Option<HistoryBudget>, hub: HistoryBudget) {
        if let Some(budget) = namespace {
            while self
                .ledgers
                .get(ns)
                .is_some_and(|l| l.bytes > budget.bytes || l.topics > budget.topics)
            {
                if !self.evict_oldest_in(ns) {
                    break;
                }
            }
        }
        while self.bytes > hub.bytes || self.with_history > hub.topics {
            if !self.evict_oldest() {
                break;
            }
        }
    }

    /// Drops every publication past its topic's TTL.
    fn sweep(&mut self, now: Instant) {
        let namespaces: Vec<Arc<str>> = self.ledgers.keys().cloned().collect();
        for ns in namespaces {
            while let Some(ledger) = self.ledgers.get_mut(&ns) {
                let Some(record) = ledger.fifo.front() else {
                    break;
                };
                let ttl = self
                    .topics
                    .get(&record.topic)
                    .filter(|_| live(&self.topics, record))
                    .map(|log| log.history.ttl);
                match ttl {
                    // A stale record.
                    None => {
                        ledger.fifo.pop_front();
                    }
                    Some(ttl) if now.duration_since(record.at) > ttl => {
                        let topic = Arc::clone(&record.topic);
                        ledger.fifo.pop_front();
                        self.pop_front(&topic, Reason::Expired);
                    }
                    Some(_) => break,
                }
            }
        }
    }
}

/// Sweeps expired history until none is left (or the broker is gone).
async fn sweep_loop(state: Weak<Mutex<State>>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        let mut state = lock(&state);
        state.sweep(Instant::now());
        if state.entries == 0 {
            state.sweeping = false;
            return;
        }
    }
}

impl MemoryBroker {
    /// A broker with no topics.
    pub fn new() -> Self {
        Self::default()
    }

    /// What history holds now, and what was evicted or expired so far.
    pub fn history_stats(&self) -> HistoryStats {
        let state = lock(&self.state);
        HistoryStats {
            bytes: state.bytes,
            topics: state.with_history,
            entries: state.entries,
            logs: state.topics.len(),
            evicted: state.evicted,
            expired: state.expired,
            trimmed: state.trimmed,
        }
    }

    fn handler(&self) -> Option<Weak<dyn BrokerHandler>> {
        self.handler
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Starts the TTL sweeper if history is kept and it is not running.
    fn start_sweeper(&self, state: &mut State) {
        if state.sweeping {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            state.sweeping = true;
            runtime.spawn(sweep_loop(Arc::downgrade(&self.state)));
        }
    }
}

impl Broker for MemoryBroker {
    fn attach(&self, handler: Weak<dyn BrokerHandler>) {
        *self.handler.write().unwrap_or_else(|e| e.into_inner()) = Some(handler);
    }

    fn subscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            *lock(&self.state)
                .subscribed
                .entry(Arc::from(topic))
                .or_insert(0) += 1;
            Ok(())
        })
    }

    fn unsubscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut state = lock(&self.state);
            if let Some(count) = state.subscribed.get_mut(topic) {
                *count -= 1;
                if *count == 0 {
                    state.subscribed.remove(topic);
                    shrink(&mut state.subscribed);
                    state.forget_if_idle(topic);
                }
            }
            Ok(())
        })
    }

    fn publish<'a>(
        &'a self,
        topic: &'a str,
        data: &'a str,
        options: PublishOptions,
    ) -> BoxFuture<'a, Result<Option<StreamPosition>, Error>> {
        Box::pin(async move {
            let data: Arc<str> = Arc::from(data);
            let handler = self.handler();
            let Some(history) = options.history else {
                notify(
                    &handler,
                    BrokerEvent::Publication {
                        topic: Arc::from(topic),
                        publication: Publication {
                            offset: 0,
                            epoch: Arc::from(""),
                            data,
                        },
                    },
                );
                return Ok(None);
            };
            // The lock orders offsets and deliveries alike.
            let mut state = lock(&self.state);
            let now = Instant::now();
            let (key, offset, epoch) = state.push(topic, Arc::clone(&data), history, now);
            state.prune(topic, history, now);
            state.enforce(
                namespace_of(topic),
                options.namespace_budget,
                options.budget,
            );
            if state.entries > 0 {
                self.start_sweeper(&mut state);
            }
            let position = StreamPosition {
                offset,
                epoch: epoch.to_string(),
            };
            notify(
                &handler,
                BrokerEvent::Publication {
                    topic: key,
                    publication: Publication {
                        offset,
                        epoch,
                        data,
                    },
                },
            );
            Ok(Some(position))
        })
    }

    fn history<'a>(
        &'a self,
        topic: &'a str,
        since: Option<&'a StreamPosition>,
        history: History,
    ) -> BoxFuture<'a, Result<HistoryState, Error>> {
        Box::pin(async move {
            let mut state = lock(&self.state);
            state.prune(topic, history, Instant::now());
            // A subscribed topic keeps its epoch from now on; one nobody
            // subscribes to costs nothing until it has history.
            if !state.topics.contains_key(topic) && state.subscribed.contains_key(topic) {
                state.next_id += 1;
                let id = state.next_id;
                state.topics.insert(Arc::from(topic), Log::new(id, history));
            }
            let Some(log) = state.topics.get(topic) else {
                let epoch = new_epoch();
                let (_, complete) = after(&epoch, 0, None, since);
                return Ok(HistoryState {
                    epoch,
                    top: 0,
                    publications: Vec::new(),
                    complete,
                });
            };
            let oldest = log.entries.front().map(|e| e.offset);
            let (from, complete) = after(&log.epoch, log.top, oldest, since);
            let publications = if complete && since.is_some() {
                log.entries
                    .iter()
                    .filter(|e| e.offset > from)
                    .map(|e| Publication {
                        offset: e.offset,
                        epoch: Arc::clone(&log.epoch),
                        data: Arc::clone(&e.data),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Ok(HistoryState {
                epoch: log.epoch.to_string(),
                top: log.top,
                publications,
                complete,
            })
        })
    }

    fn presence_join<'a>(
        &'a self,
        topic: &'a str,
        member: &'a Member,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            {
                let mut presence = lock(&self.presence);
                let members = presence.entry(topic.to_owned()).or_default();
                if !members.contains(member) {
                    members.push(member.clone());
                }
            }
            notify(
                &self.handler(),
                BrokerEvent::Join {
                    topic: Arc::from(topic),
                    member: member.clone(),
                },
            );
            Ok(())
        })
    }

    fn presence_leave<'a>(
        &'a self,
        topic: &'a str,
        member: &'a Member,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            {
                let mut presence = lock(&self.presence);
                if let Some(members) = presence.get_mut(topic) {
                    members.retain(|m| m != member);
                    if members.is_empty() {
                        presence.remove(topic);
                        shrink(&mut presence);
                    }
                }
            }
            notify(
                &self.handler(),
                BrokerEvent::Leave {
                    topic: Arc::from(topic),
                    member: member.clone(),
                },
            );
            Ok(())
        })
    }

    fn presence<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Vec<Member>, Error>> {
        Box::pin(async move { Ok(lock(&self.presence).get(topic).cloned().unwrap_or_default()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn history_and_recovery_rules() {
        let b = MemoryBroker::new();
        let h = History {
            size: 3,
            ttl: Duration::from_secs(60),
        };
        let opts = PublishOptions {
            history: Some(h),
            ..Default::default()
        };
        let mut last = None;
        for i in 1..=5 {
            last = b.publish("t:x", &i.to_string(), opts).await.unwrap();
        }
        let top = last.unwrap();
        assert_eq!(top.offset, 5);
        // Since 3: 4 and 5 are still there.
        let since = StreamPosition {
            offset: 3,
            epoch: top.epoch.clone(),
        };
        let s = b.history("t:x", Some(&since), h).await.unwrap();
        assert!(s.complete);
        assert_eq!(
            s.publications.iter().map(|p| p.offset).collect::<Vec<_>>(),
            [4, 5]
        );
        // Since 1: 2 was evicted (size 3 keeps 3..=5): never a partial replay.
        let since = StreamPosition {
            offset: 1,
            epoch: top.epoch.clone(),
        };
        let s = b.history("t:x", Some(&since), h).await.unwrap();
        assert!(!s.complete && s.publications.is_empty());
        // Another epoch.
        let since = StreamPosition {
            offset: 4,
            epoch: "other".into(),
        };
        assert!(!b.history("t:x", Some(&since), h).await.unwrap().complete);
        // Up to date.
        let since = StreamPosition {
            offset: 5,
            epoch: top.epoch,
        };
        let s = b.history("t:x", Some(&since), h).await.unwrap();
        assert!(s.complete && s.publications.is_empty());
    }

    fn keep(size: usize, ttl: Duration) -> History {
        History { size, ttl }
    }

    fn options(history: History, budget: HistoryBudget) -> PublishOptions {
        PublishOptions {
            history: Some(history),
            budget,
            namespace_budget: None,
        }
    }

    async fn recoverable(b: &MemoryBroker, topic: &str, since: &StreamPosition) -> bool {
        let h = keep(100, Duration::from_secs(60));
        b.history(topic, Some(since), h).await.unwrap().complete
    }

    #[tokio::test]
    async fn the_hub_budget_evicts_oldest_first_and_recovery_says_so() {
        let b = MemoryBroker::new();
        let h = keep(100, Duration::from_secs(60));
        // Room for ten 100-byte publications.
        let budget = HistoryBudget::new(10 * (100 + ENTRY_OVERHEAD), 1_000);
        let data = "x".repeat(100);
        let mut positions = Vec::new();
        for i in 0..25 {
            let topic = format!("t:{i}");
            let p = b.publish(&topic, &data, options(h, budget)).await.unwrap();
            positions.push(p.unwrap());
            let stats = b.history_stats();
            assert!(stats.bytes <= budget.bytes, "{stats:?}");
        }
        let stats = b.history_stats();
        assert_eq!((stats.entries, stats.topics, stats.evicted), (10, 10, 15));
        // Nobody subscribes: the evicted topics are gone entirely.
        assert_eq!(stats.logs, 10);
        // The oldest went: resuming from before them is refused, the
        // newest still recover.
        for (i, p) in positions.iter().enumerate() {
            let since = StreamPosition {
                offset: p.offset - 1,
                epoch: p.epoch.clone(),
            };
            assert_eq!(
                recoverable(&b, &format!("t:{i}"), &since).await,
                i >= 15,
                "t:{i}"
            );
        }
    }

    #[tokio::test]
    async fn a_namespace_budget_evicts_only_its_own() {
        let b = MemoryBroker::new();
        let h = keep(1_000, Duration::from_secs(60));
        let hub = HistoryBudget::default();
        for i in 0..5 {
            b.publish(&format!("keep:{i}"), "old", options(h, hub))
                .await
                .unwrap();
        }
        let mut small = options(h, hub);
        small.namespace_budget = Some(HistoryBudget::new(1 << 20, 3));
        for i in 0..20 {
            b.publish(&format!("room:{i}"), "new", small).await.unwrap();
        }
        let stats = b.history_stats();
        // Three room topics and every (older) keep topic remain.
        assert_eq!((stats.topics, stats.evicted), (8, 17), "{stats:?}");
        for i in 0..5 {
            let s = b.history(&format!("keep:{i}"), None, h).await.unwrap();
            assert_eq!(s.top, 1);
        }
    }

    #[tokio::test]
    async fn the_topic_count_budget_holds() {
        let b = MemoryBroker::new();
        let h = keep(10, Duration::from_secs(60));
        let budget = HistoryBudget::new(usize::MAX, 100);
        for i in 0..1_000 {
            b.publish(&format!("t:{i}"), "x", options(h, budget))
                .await
                .unwrap();
        }
        let stats = b.history_stats();
        assert_eq!((stats.topics, stats.entries, stats.logs), (100, 100, 100));
        assert_eq!(stats.evicted, 900);
    }

    #[tokio::test]
    async fn per_topic_trimming_keeps_the_ledger_bounded() {
        let b = MemoryBroker::new();
        let h = keep(3, Duration::from_secs(60));
        for i in 0..10_000 {
            b.publish(
                "t:hot",
                &i.to_string(),
                options(h, HistoryBudget::default()),
            )
            .await
            .unwrap();
        }
        let stats = b.history_stats();
        assert_eq!((stats.entries, stats.trimmed, stats.evicted), (3, 9_997, 0));
        let state = lock(&b.state);
        let ledger = &state.ledgers["t"];
        assert!(ledger.fifo.len() <= 2 * 3 + 64, "{}", ledger.fifo.len());
    }

    #[tokio::test]
    async fn expired_history_is_freed_without_further_traffic() {
        let b = MemoryBroker::new();
        let h = keep(100, Duration::from_millis(200));
        for i in 0..50 {
            b.publish(
                &format!("t:{i}"),
                &"y".repeat(1_000),
                options(h, HistoryBudget::default()),
            )
            .await
            .unwrap();
        }
        assert_eq!(b.history_stats().entries, 50);
        // The sweeper frees it within its period after the TTL; wait for
        // TTL + 1 s at most.
        let deadline = Instant::now() + Duration::from_millis(1_200);
        while b.history_stats().entries > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let stats = b.history_stats();
        assert_eq!(
            (stats.bytes, stats.topics, stats.logs, stats.expired),
            (0, 0, 0, 50)
        );
        // With nothing left the sweeper stops.
        assert!(!lock(&b.state).sweeping);
    }

    #[tokio::test]
    async fn a_topic_without_subscribers_or_history_costs_nothing() {
        let b = MemoryBroker::new();
        let h = keep(10, Duration::from_secs(60));
        for i in 0..1_000 {
            let topic = format!("t:{i}");
            b.subscribe(&topic).await.unwrap();
            let s = b.history(&topic, None, h).await.unwrap();
            // A subscribed topic keeps its epoch.
            let again = b.history(&topic, None, h).await.unwrap();
            assert_eq!(s.epoch, again.epoch);
            b.unsubscribe(&topic).await.unwrap();
        }
        // History asked of a topic nobody subscribes to is not kept.
        b.history("t:never", None, h).await.unwrap();
        let state = lock(&b.state);
        assert!(state.topics.is_empty() && state.subscribed.is_empty());
        assert!(
            state.topics.capacity() <= 128,
            "{}",
            state.topics.capacity()
        );
        assert!(state.subscribed.capacity() <= 128);
    }

    #[tokio::test]
    async fn a_log_that_comes_back_is_a_new_epoch() {
        let b = MemoryBroker::new();
        let h = keep(1, Duration::from_secs(60));
        let tiny = HistoryBudget::new(1, 10);
        let first = b
            .publish("t:a", "1", options(h, tiny))
            .await
            .unwrap()
            .unwrap();
        // Evicted at once (over budget), so the log is gone.
        assert_eq!(b.history_stats().logs, 0);
        let second = b
            .publish("t:a", "2", options(h, tiny))
            .await
            .unwrap()
            .unwrap();
        assert_ne!(first.epoch, second.epoch);
        assert!(!recoverable(&b, "t:a", &first).await);
    }
}
