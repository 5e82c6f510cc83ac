//! What one subscriber made of the publications `{"i":1..=P}`: every
//! publication is, in the end, delivered in order, recovered (a `since`
//! replay), out of order, told (missing, and a notice covers it) or
//! silently missing; receipts past the first are duplicates.
//!
//! A notice covers the gap next to it: a `lag`, a `link_up` that does not
//! say `recovered: true`, or a re-subscribe reply that does not say
//! `recovered: true`, between the last receipt before the gap and the
//! first receipt after it (or the end). A `link_up` that says it did not
//! recover also covers the gaps seen since the `link_down` before it: the
//! node may deliver new publications before it sends the `link_up`.

/// One publication as one subscriber saw it.
#[derive(Clone, Copy, Default)]
struct Receipt {
    count: u32,
    /// Seconds since the case began, at the first receipt.
    at: f32,
    /// Missing when a later one arrived, and a notice covers it.
    told: bool,
}

/// The notices and re-subscriptions of one subscriber.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Events {
    pub(super) lag: u64,
    pub(super) link_down: u64,
    pub(super) link_up_recovered: u64,
    pub(super) link_up_lost: u64,
    pub(super) resubscribe_recovered: u64,
    pub(super) resubscribe_lost: u64,
    pub(super) reconnects: u64,
    /// Error replies to subscribe commands (retried).
    pub(super) subscribe_errors: u64,
}

impl Events {
    pub(super) fn add(&mut self, o: &Self) {
        self.lag += o.lag;
        self.link_down += o.link_down;
        self.link_up_recovered += o.link_up_recovered;
        self.link_up_lost += o.link_up_lost;
        self.resubscribe_recovered += o.resubscribe_recovered;
        self.resubscribe_lost += o.resubscribe_lost;
        self.reconnects += o.reconnects;
        self.subscribe_errors += o.subscribe_errors;
    }
}

/// Per-publication outcomes, summed (over subscribers, in the table).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Counts {
    pub(super) in_order: u64,
    pub(super) recovered: u64,
    pub(super) out_of_order: u64,
    pub(super) duplicates: u64,
    pub(super) told: u64,
    pub(super) silent: u64,
}

impl Counts {
    pub(super) fn add(&mut self, o: &Self) {
        self.in_order += o.in_order;
        self.recovered += o.recovered;
        self.out_of_order += o.out_of_order;
        self.duplicates += o.duplicates;
        self.told += o.told;
        self.silent += o.silent;
    }
}

#[derive(Default)]
pub(super) struct Tally {
    got: Vec<Receipt>,
    /// The highest `i` received.
    pub(super) high: u64,
    /// A notice arrived since the last receipt that moved `high`.
    notice: bool,
    /// Between a `link_down` and its `link_up`: gaps seen meanwhile.
    down: Option<Vec<u64>>,
    /// After a reply `recovered: true`: offsets up to this are the replay.
    replay_top: Option<u64>,
    /// The last push's offset and the epoch of the last reply (topics with
    /// history): where a re-subscription starts (`since`).
    pub(super) position: Option<(u64, String)>,
    counts: Counts,
    pub(super) events: Events,
}

impl Tally {
    /// A successful subscribe reply; `resync`: not the first subscription
    /// (after a reconnection, a `lag` or a failed attempt).
    pub(super) fn on_subscribed(
        &mut self,
        offset: Option<u64>,
        epoch: Option<String>,
        recovered: Option<bool>,
        resync: bool,
    ) {
        if recovered == Some(true) {
            self.events.resubscribe_recovered += 1;
            self.replay_top = offset;
            if let (Some((_, e)), Some(new)) = (&mut self.position, epoch) {
                *e = new;
            }
            return;
        }
        if resync {
            // No history, another epoch or evicted: none are replayed.
            self.events.resubscribe_lost += 1;
            self.notice = true;
        }
        self.replay_top = None;
        self.position = offset.zip(epoch);
    }

    /// An event of the topic; returns whether to subscribe again (`lag`
    /// is sent once until then).
    pub(super) fn on_event(&mut self, kind: &str, recovered: Option<bool>) -> bool {
        match kind {
            "lag" => {
                self.events.lag += 1;
                self.notice = true;
                true
            }
            "link_down" => {
                self.events.link_down += 1;
                self.down.get_or_insert_with(Vec::new);
                false
            }
            "link_up" => {
                let gaps = self.down.take().unwrap_or_default();
                if recovered == Some(true) {
                    self.events.link_up_recovered += 1;
                } else {
                    self.events.link_up_lost += 1;
                    self.notice = true;
                    for j in gaps {
                        self.got[j as usize].told = true;
                    }
                }
                false
            }
            "unsubscribed" => true,
            _ => false,
        }
    }

    /// Publication `i` (push offset `offset`) arrived, `at` seconds in.
    pub(super) fn on_push(&mut self, i: u64, offset: Option<u64>, at: f32) {
        if let (Some((last, _)), Some(o)) = (&mut self.position, offset) {
            *last = o;
        }
        let replay = match (self.replay_top, offset) {
            (Some(top), Some(o)) if o <= top => true,
            (Some(_), _) => {
                self.replay_top = None;
                false
            }
            _ => false,
        };
        let i = i as usize;
        if self.got.len() <= i {
            self.got.resize(i + 1, Receipt::default());
        }
        self.got[i].count += 1;
        if self.got[i].count > 1 {
            self.counts.duplicates += 1;
            return;
        }
        self.got[i].at = at;
        let high = self.high as usize;
        if replay {
            self.counts.recovered += 1;
        } else if i > high {
            self.counts.in_order += 1;
        } else {
            self.counts.out_of_order += 1;
        }
        if i > high {
            for j in high + 1..i {
                if self.got[j].count == 0 {
                    self.got[j].told = self.notice;
                    if let Some(gaps) = &mut self.down {
                        gaps.push(j as u64);
                    }
                }
            }
            self.high = i as u64;
            self.notice = false;
        }
    }

    /// The first receipt of a publication after `i`, in seconds.
    pub(super) fn first_receipt_after(&self, i: u64) -> Option<f32> {
        self.got
            .iter()
            .skip(i as usize + 1)
            .filter(|r| r.count > 0)
            .map(|r| r.at)
            .reduce(f32::min)
    }

    /// The outcome of `{"i":1..=published}`.
    pub(super) fn finish(&self, published: u64) -> Counts {
        let mut c = self.counts;
        for j in 1..=published {
            let r = self.got.get(j as usize).copied().unwrap_or_default();
            if r.count > 0 {
                continue;
            }
            if r.told || (j > self.high && self.notice) {
                c.told += 1;
            } else {
                c.silent += 1;
            }
        }
        c
    }
}

/// The digits after `key` in a JSON line (first occurrence).
pub(super) fn number(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The string after `key` (which ends with the opening quote).
pub(super) fn string<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = &line[line.find(key)? + key.len()..];
    Some(&rest[..rest.find('"')?])
}

/// `"recovered": true / false`, if present.
pub(super) fn recovered(line: &str) -> Option<bool> {
    let rest = &line[line.find("\"recovered\":")? + 12..];
    Some(rest.starts_with("true"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_lines() {
        let reply = r#"{"id":7,"ok":{"offset":57,"epoch":"5f0c","recovered":false}}"#;
        assert_eq!(number(reply, "\"id\":"), Some(7));
        assert_eq!(number(reply, "\"offset\":"), Some(57));
        assert_eq!(string(reply, "\"epoch\":\""), Some("5f0c"));
        assert_eq!(recovered(reply), Some(false));
        let push = r#"{"topic":"test:f","offset":58,"data":{"i":12}}"#;
        assert_eq!(number(push, "\"data\":{\"i\":"), Some(12));
        assert_eq!(recovered(push), None);
    }

    #[test]
    fn in_order_duplicates_and_a_silent_gap() {
        let mut t = Tally::default();
        t.on_subscribed(Some(0), Some("e".into()), None, false);
        for (i, o) in [(1, 1), (2, 2), (2, 2), (5, 5), (3, 3)] {
            t.on_push(i, Some(o), 0.1);
        }
        // 4 never came, no notice; 6 published after, never came either.
        let c = t.finish(6);
        assert_eq!(
            c,
            Counts {
                in_order: 3,
                out_of_order: 1,
                duplicates: 1,
                silent: 2,
                ..Counts::default()
            }
        );
        assert_eq!(t.position, Some((3, "e".into())));
    }

    #[test]
    fn lag_then_replay_recovers_and_unrecoverable_is_told() {
        let mut t = Tally::default();
        t.on_subscribed(Some(0), Some("e".into()), None, false);
        t.on_push(1, Some(1), 0.0);
        assert!(t.on_event("lag", None));
        t.on_push(4, Some(4), 0.0); // 2, 3 dropped, told by the lag
        t.on_subscribed(Some(4), Some("e".into()), Some(true), true);
        // The replay after `since` 4 is empty; 5 and 6 arrive live.
        t.on_push(5, Some(5), 0.0);
        // Reconnected: since 5, replay of 6 (recovered), 7 live.
        t.on_subscribed(Some(6), Some("e".into()), Some(true), true);
        t.on_push(6, Some(6), 0.5);
        t.on_push(7, Some(7), 0.6);
        // Another epoch: told.
        t.on_subscribed(Some(3), Some("f".into()), Some(false), true);
        t.on_push(10, Some(4), 0.7);
        let c = t.finish(11);
        assert_eq!(c.in_order, 5);
        assert_eq!(c.recovered, 1);
        assert_eq!(c.told, 2 + 2);
        assert_eq!(c.silent, 1, "11: after the last receipt, no notice");
        assert_eq!(t.events.resubscribe_recovered, 2);
        assert_eq!(t.events.resubscribe_lost, 1);
        assert_eq!(t.first_receipt_after(5), Some(0.5));
        assert_eq!(t.first_receipt_after(10), None);
    }

    #[test]
    fn a_link_up_without_recovery_covers_the_gaps_since_link_down() {
        let mut t = Tally::default();
        t.on_subscribed(None, None, None, false);
        t.on_push(1, None, 0.0);
        t.on_event("link_down", None);
        t.on_push(3, None, 0.0); // before the link_up
        t.on_event("link_up", None);
        t.on_push(5, None, 0.0); // after it
        t.on_event("link_down", None);
        t.on_push(7, None, 0.0);
        t.on_event("link_up", Some(true)); // said recovered, 6 is not
        let c = t.finish(8);
        assert_eq!((c.in_order, c.told, c.silent), (4, 2, 2));
        assert_eq!(t.events.link_up_lost, 1);
        assert_eq!(t.events.link_up_recovered, 1);
    }
}
