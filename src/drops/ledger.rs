//! The accounting behind `nsfw drops --follow`'s "N more dropped as REASON and not logged":
//! per topology and reason, what the kernel counted since following began, less what was
//! logged (each logged packet is said, as a drop or one of its repeats), less what was
//! already said unlogged.
//!
//! Two things make that difference hard to take at once:
//! - a packet is counted before it is logged, and nflog holds a message up to 100 ms (or 20
//!   packets) before it passes it on: a counter read now counts packets whose messages have
//!   not arrived yet, which would be said unlogged now and again as repeats when they arrive.
//!   So a read is *settled* only [`SETTLE`] after it was taken, against every packet logged
//!   by then (some later than the read: the rest is then said short, never twice, and the
//!   next read makes it up);
//! - the counters are read at most once a [`super::WINDOW`] per topology (a dump of the
//!   table's rules also reads its sets, which a large policy makes costly), and only while
//!   something of the topology was logged since (drops go unlogged only past the log's rate,
//!   so only while packets are logged), until a settled read finds nothing more.
//!
//! Pure bookkeeping over instants given by the caller: unit-tested without a kernel.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long after a counter read it is settled: nflog passes a message on within 100 ms
/// (`firewall::droplog`'s group settings), and the follower reads it at once.
pub(super) const SETTLE: Duration = Duration::from_millis(300);

/// One topology's reason.
#[derive(Debug, Default)]
struct Account {
    /// The counter when following began (or when it was first read).
    start: u64,
    /// Packets logged since.
    logged: u64,
    /// Unlogged drops worked out since (said, or owed).
    settled: u64,
    /// Of those, not said yet.
    owed: u64,
}

/// One topology's counter reads.
#[derive(Debug, Default)]
struct Reads {
    last: Option<Instant>,
    /// A read not settled yet: when it was taken and what it counted per reason.
    pending: Option<(Instant, Vec<(String, u64)>)>,
    /// Something may be unlogged: a packet was logged, or the last settled read found more.
    dirty: bool,
    /// A packet was logged since the pending read was taken.
    since_read: bool,
}

#[derive(Debug, Default)]
pub(super) struct Ledger {
    accounts: HashMap<(String, String), Account>,
    reads: HashMap<String, Reads>,
}

impl Ledger {
    /// Following begins with `counts`, `topology`'s counters per reason.
    pub(super) fn begin(&mut self, topology: &str, counts: Vec<(String, u64)>) {
        for (r, n) in counts {
            self.accounts.insert(
                (topology.to_string(), r),
                Account {
                    start: n,
                    ..Account::default()
                },
            );
        }
        self.reads.entry(topology.to_string()).or_default();
    }

    /// A packet of `topology` logged for `reason` (the counter's reason) was received.
    pub(super) fn logged(&mut self, topology: &str, reason: &str) {
        if let Some(a) = self
            .accounts
            .get_mut(&(topology.to_string(), reason.to_string()))
        {
            a.logged += 1;
        }
        // A topology applied after following began: its counters start at its first read.
        let r = self.reads.entry(topology.to_string()).or_default();
        r.dirty = true;
        r.since_read = true;
    }

    /// The topologies whose counters are to be read at `now`: every one when `all` (the
    /// last reads, as following ends).
    pub(super) fn due(&self, now: Instant, all: bool) -> Vec<String> {
        let mut due: Vec<String> = self
            .reads
            .iter()
            .filter(|(_, r)| {
                all || (r.dirty
                    && r.pending.is_none()
                    && r.last
                        .is_none_or(|l| now.duration_since(l) >= super::WINDOW))
            })
            .map(|(t, _)| t.clone())
            .collect();
        due.sort();
        due
    }

    /// `topology`'s counters, read at `at` (None: it has no table now).
    pub(super) fn read(&mut self, topology: &str, counts: Option<Vec<(String, u64)>>, at: Instant) {
        let r = self.reads.entry(topology.to_string()).or_default();
        r.last = Some(at);
        r.since_read = false;
        match counts {
            Some(counts) => {
                for (reason, n) in &counts {
                    self.accounts
                        .entry((topology.to_string(), reason.clone()))
                        .or_insert(Account {
                            start: *n,
                            ..Account::default()
                        });
                }
                r.pending = Some((at, counts));
            }
            // Its table is gone (flushed): nothing more of it can be counted.
            None => {
                r.pending = None;
                r.dirty = false;
            }
        }
    }

    /// Settles the reads taken [`SETTLE`] before `now` (every one when `all`): what each
    /// counted beyond what was logged and settled before is owed.
    pub(super) fn settle(&mut self, now: Instant, all: bool) {
        for (t, r) in &mut self.reads {
            let Some((at, _)) = &r.pending else { continue };
            if !all && now.duration_since(*at) < SETTLE {
                continue;
            }
            let Some((_, counts)) = r.pending.take() else {
                continue;
            };
            let mut more = 0;
            for (reason, n) in counts {
                let Some(a) = self.accounts.get_mut(&(t.clone(), reason)) else {
                    continue;
                };
                let new = n.saturating_sub(a.start + a.logged + a.settled);
                a.settled += new;
                a.owed += new;
                more += new;
            }
            // Quiet: nothing more found and nothing logged since: no read until a packet is.
            if more == 0 && !r.since_read {
                r.dirty = false;
            }
        }
    }

    /// The unlogged drops of `topology`'s `reason` owed, now to be said.
    pub(super) fn take(&mut self, topology: &str, reason: &str) -> u64 {
        self.accounts
            .get_mut(&(topology.to_string(), reason.to_string()))
            .map_or(0, |a| std::mem::take(&mut a.owed))
    }

    /// Every topology and reason with unlogged drops owed.
    pub(super) fn owing(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .accounts
            .iter()
            .filter(|(_, a)| a.owed > 0)
            .map(|(k, _)| k.clone())
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(n: u64) -> Option<Vec<(String, u64)>> {
        Some(vec![("policy".to_string(), n), ("host".to_string(), 0)])
    }

    /// A ledger begun at counter 100 for lab's policy.
    fn begun() -> (Ledger, Instant) {
        let mut l = Ledger::default();
        l.begin("lab", counts(100).unwrap_or_default());
        (l, Instant::now())
    }

    #[test]
    fn packets_counted_before_their_messages_arrive_are_not_said_twice() {
        let (mut l, t0) = begun();
        // 40 logged, then a read that counts 1,000 more, of which 20 are logged messages
        // still held by nflog: they arrive after the read.
        for _ in 0..40 {
            l.logged("lab", "policy");
        }
        assert_eq!(l.due(t0, false), vec!["lab".to_string()]);
        l.read("lab", counts(1_100), t0);
        l.settle(t0 + Duration::from_millis(50), false);
        assert_eq!(l.take("lab", "policy"), 0, "not settled before SETTLE");
        for _ in 0..20 {
            l.logged("lab", "policy");
        }
        l.settle(t0 + SETTLE, false);
        // 1,000 counted = 60 logged + 940 unlogged; said once.
        assert_eq!(l.take("lab", "policy"), 940);
        assert_eq!(l.take("lab", "policy"), 0);
        // A later read with nothing new says nothing more.
        let t1 = t0 + crate::drops::WINDOW;
        assert_eq!(l.due(t1, false), vec!["lab".to_string()]);
        l.read("lab", counts(1_100), t1);
        l.settle(t1 + SETTLE, false);
        assert_eq!(l.take("lab", "policy"), 0);
    }

    #[test]
    fn what_a_read_said_short_is_made_up_by_the_next() {
        let (mut l, t0) = begun();
        l.logged("lab", "policy");
        l.read("lab", counts(200), t0);
        // Packets dropped after the read, logged before it settles: 99 unlogged said as 89.
        for _ in 0..10 {
            l.logged("lab", "policy");
        }
        l.settle(t0 + SETTLE, false);
        assert_eq!(l.take("lab", "policy"), 89);
        let t1 = t0 + crate::drops::WINDOW;
        l.read("lab", counts(210), t1);
        l.settle(t1 + SETTLE, false);
        // Counted 110 in all: 11 logged, 99 unlogged.
        assert_eq!(l.take("lab", "policy"), 10);
    }

    #[test]
    fn reads_are_a_window_apart_and_stop_when_nothing_is_logged() {
        let (mut l, t0) = begun();
        assert!(l.due(t0, false).is_empty(), "nothing logged: no read");
        l.logged("lab", "host");
        l.read("lab", counts(100), t0);
        assert!(l.due(t0 + SETTLE, false).is_empty(), "one read at a time");
        l.settle(t0 + SETTLE, false);
        assert!(
            l.due(t0 + SETTLE, false).is_empty(),
            "a window after the last"
        );
        // The settled read found nothing and nothing was logged since: quiet.
        assert!(l.due(t0 + crate::drops::WINDOW * 2, false).is_empty());
        // As following ends, every topology is read.
        assert_eq!(l.due(t0, true), vec!["lab".to_string()]);
        l.read("lab", counts(150), t0);
        l.settle(t0, true);
        assert_eq!(l.owing(), vec![("lab".to_string(), "policy".to_string())]);
        assert_eq!(l.take("lab", "policy"), 50);
        assert!(l.owing().is_empty());
    }

    #[test]
    fn a_topology_applied_later_is_counted_from_its_first_read() {
        let mut l = Ledger::default();
        let t0 = Instant::now();
        l.logged("new", "policy");
        assert_eq!(l.due(t0, false), vec!["new".to_string()]);
        l.read("new", counts(500), t0);
        l.settle(t0 + SETTLE, false);
        assert_eq!(l.take("new", "policy"), 0);
        let t1 = t0 + crate::drops::WINDOW;
        l.logged("new", "policy");
        l.read("new", counts(600), t1);
        l.settle(t1 + SETTLE, false);
        assert_eq!(l.take("new", "policy"), 99);
        // Its table flushed: no more reads.
        l.read("new", None, t1);
        assert!(l.due(t1 + crate::drops::WINDOW, false).is_empty());
    }
}
