//! A [`MemoryBroker`](super::MemoryBroker)'s history: a log per topic, and
//! per namespace a ledger of what it retains, oldest first, which the
//! [`HistoryBudget`]s evict from; expired entries are swept.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::HistoryStats;
use crate::broker::{HistoryState, Publication, after, new_epoch};
use crate::protocol::StreamPosition;
use crate::sync::lock;
use crate::topic::{History, HistoryBudget};

/// The bookkeeping each retained publication is charged beyond its data.
pub(super) const ENTRY_OVERHEAD: usize = 64;

/// How often expired history is swept.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

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

pub(super) struct Log {
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
pub(super) struct Record {
    log: u64,
    at: Instant,
    topic: Arc<str>,
    offset: u64,
}

/// A namespace's retained history, oldest first.
#[derive(Default)]
pub(super) struct Ledger {
    pub(super) fifo: VecDeque<Record>,
    bytes: usize,
    entries: usize,
    topics: usize,
}

/// Everything a [`MemoryBroker`](super::MemoryBroker) keeps of its topics,
/// behind its one lock.
#[derive(Default)]
pub(super) struct State {
    pub(super) topics: HashMap<Arc<str>, Log>,
    /// Broker subscriptions per topic: a subscribed topic keeps its log.
    pub(super) subscribed: HashMap<Arc<str>, usize>,
    pub(super) ledgers: HashMap<Arc<str>, Ledger>,
    bytes: usize,
    pub(super) entries: usize,
    with_history: usize,
    next_id: u64,
    evicted: u64,
    expired: u64,
    trimmed: u64,
    /// Whether the TTL sweeper runs.
    pub(super) sweeping: bool,
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

/// Lets a map's table go once most of it is empty.
pub(super) fn shrink<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 64 && map.len() * 4 < map.capacity() {
        map.shrink_to(map.len() * 2);
    }
}

/// The namespace a ledger is kept for: the part before `:`.
pub(super) fn namespace_of(topic: &str) -> &str {
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
    /// What history holds now, and what was evicted or expired so far.
    pub(super) fn stats(&self) -> HistoryStats {
        HistoryStats {
            bytes: self.bytes,
            topics: self.with_history,
            entries: self.entries,
            logs: self.topics.len(),
            evicted: self.evicted,
            expired: self.expired,
            trimmed: self.trimmed,
        }
    }

    /// One more broker subscription to `topic`.
    pub(super) fn subscribe(&mut self, topic: &str) {
        *self.subscribed.entry(Arc::from(topic)).or_insert(0) += 1;
    }

    /// One fewer; the last one lets an idle log go.
    pub(super) fn unsubscribe(&mut self, topic: &str) {
        if let Some(count) = self.subscribed.get_mut(topic) {
            *count -= 1;
            if *count == 0 {
                self.subscribed.remove(topic);
                shrink(&mut self.subscribed);
                self.forget_if_idle(topic);
            }
        }
    }

    /// `topic`'s history after `since` ([`Broker::history`](crate::Broker::history)).
    pub(super) fn history(
        &mut self,
        topic: &str,
        since: Option<&StreamPosition>,
        history: History,
    ) -> HistoryState {
        self.prune(topic, history, Instant::now());
        // A subscribed topic keeps its epoch from now on; one nobody
        // subscribes to costs nothing until it has history.
        if !self.topics.contains_key(topic) && self.subscribed.contains_key(topic) {
            self.next_id += 1;
            let id = self.next_id;
            self.topics.insert(Arc::from(topic), Log::new(id, history));
        }
        let Some(log) = self.topics.get(topic) else {
            let epoch = new_epoch();
            let (_, complete) = after(&epoch, 0, None, since);
            return HistoryState {
                epoch,
                top: 0,
                publications: Vec::new(),
                complete,
            };
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
        HistoryState {
            epoch: log.epoch.to_string(),
            top: log.top,
            publications,
            complete,
        }
    }

    /// Appends a publication to `topic`'s log: the topic's shared name, the
    /// offset and the epoch.
    pub(super) fn push(
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
    pub(super) fn prune(&mut self, topic: &str, history: History, now: Instant) {
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
    pub(super) fn enforce(
        &mut self,
        ns: &str,
        namespace: Option<HistoryBudget>,
        hub: HistoryBudget,
    ) {
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
pub(super) async fn sweep_loop(state: Weak<Mutex<State>>) {
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
