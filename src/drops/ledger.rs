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
//! - the counters are read at most once every [`READ_EVERY`] per topology (a dump of the
//!   table's rules also reads its sets, which a large policy makes costly), and only while
//!   something of the topology was logged since (drops go unlogged only past the log's rate,
//!   so only while packets are logged), until a settled read finds nothing more.
//!
//! Pure bookkeeping over instants given by the caller: unit-tested without a kernel.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How often at most a topology's counters are read.
pub(super) const READ_EVERY: Duration = Duration::from_secs(2);

/// How long after a counter read it is settled: nflog passes a message on within 100 ms
/// (`firewall::droplog`'s group settings), and the follower reads it at once.
pub(super) const SETTLE: Duration = Duration::from_millis(300);

/// One rule's counter: the reason whose chain it goes to, the rule (its table's handle and
/// its own: a table made again has another, so a counter started again is never taken for
/// the old one), and the packets it counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Counted {
    pub reason: String,
    pub rule: (u64, u64),
    pub packets: u64,
}

/// One topology's reason, since following began.
#[derive(Debug, Default)]
struct Account {
    /// Packets its rules counted.
    counted: u64,
    /// Packets logged.
    logged: u64,
    /// Unlogged drops worked out (said, or owed).
    settled: u64,
    /// Of those, not said yet.
    owed: u64,
}

/// One topology's counter reads.
#[derive(Debug, Default)]
struct Reads {
    last: Option<Instant>,
    /// A read not settled yet: when it was taken and what it counted.
    pending: Option<(Instant, Vec<Counted>)>,
    /// Each rule's counter at the last settled read (or as following began); a rule not
    /// here was made since, and counted from 0.
    rules: HashMap<(u64, u64), u64>,
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
    /// Following begins with `counts`, `topology`'s counters (none: it has no table yet).
    pub(super) fn begin(&mut self, topology: &str, counts: &[Counted]) {
        let r = self.reads.entry(topology.to_string()).or_default();
        r.rules = counts.iter().map(|c| (c.rule, c.packets)).collect();
    }

    /// A packet of `topology` logged for `reason` (the counter's reason) was received.
    pub(super) fn logged(&mut self, topology: &str, reason: &str) {
        self.accounts
            .entry((topology.to_string(), reason.to_string()))
            .or_default()
            .logged += 1;
        // A topology applied after following began: every rule of it counts from 0.
        let r = self.reads.entry(topology.to_string()).or_default();
        r.dirty = true;
        r.since_read = true;
    }

    /// The topologies whose counters are to be read at `now`: with `all` (the last reads, as
    /// following ends), every one that may have dropped unlogged since its last settled read
    /// (one whose packets were not logged for a while dropped none unlogged: the kernel logs
    /// at 20/s with a burst of 40, so it drops unlogged only while it logs).
    pub(super) fn due(&self, now: Instant, all: bool) -> Vec<String> {
        let mut due: Vec<String> = self
            .reads
            .iter()
            .filter(|(_, r)| {
                r.dirty
                    && (all
                        || (r.pending.is_none()
                            && r.last.is_none_or(|l| now.duration_since(l) >= READ_EVERY)))
            })
            .map(|(t, _)| t.clone())
            .collect();
        due.sort();
        due
    }

    /// `topology`'s counters, read at `at` (None: it has no table now).
    pub(super) fn read(&mut self, topology: &str, counts: Option<Vec<Counted>>, at: Instant) {
        let r = self.reads.entry(topology.to_string()).or_default();
        r.last = Some(at);
        r.since_read = false;
        match counts {
            Some(counts) => r.pending = Some((at, counts)),
            // Its table is gone (flushed): nothing more of it is counted until it is back
            // (with other handles). What its rules counted since the last settled read is
            // gone with them: at most a window of unlogged drops, said short.
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
            for c in &counts {
                let delta = match r.rules.get(&c.rule) {
                    Some(&before) if c.packets >= before => c.packets - before,
                    // Reset in place (`nft reset counters`), or made since: from 0.
                    _ => c.packets,
                };
                self.accounts
                    .entry((t.clone(), c.reason.clone()))
                    .or_default()
                    .counted += delta;
            }
            r.rules = counts.iter().map(|c| (c.rule, c.packets)).collect();
            let mut more = 0;
            for ((topology, _), a) in &mut self.accounts {
                if topology != t {
                    continue;
                }
                let new = a.counted.saturating_sub(a.logged + a.settled);
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

    /// lab's counters: policy's two rules and host's one, of table `table`.
    fn counts(table: u64, policy: [u64; 2], host: u64) -> Option<Vec<Counted>> {
        let c = |reason: &str, rule: u64, packets: u64| Counted {
            reason: reason.to_string(),
            rule: (table, rule),
            packets,
        };
        Some(vec![
            c("policy", 7, policy[0]),
            c("policy", 9, policy[1]),
            c("host", 12, host),
        ])
    }

    /// A ledger begun with lab's policy rules at 60 and 40.
    fn begun() -> (Ledger, Instant) {
        let mut l = Ledger::default();
        l.begin("lab", &counts(1, [60, 40], 0).unwrap_or_default());
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
        l.read("lab", counts(1, [560, 540], 0), t0);
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
        let t1 = t0 + READ_EVERY;
        assert_eq!(l.due(t1, false), vec!["lab".to_string()]);
        l.read("lab", counts(1, [560, 540], 0), t1);
        l.settle(t1 + SETTLE, false);
        assert_eq!(l.take("lab", "policy"), 0);
    }

    #[test]
    fn what_a_read_said_short_is_made_up_by_the_next() {
        let (mut l, t0) = begun();
        l.logged("lab", "policy");
        l.read("lab", counts(1, [160, 40], 0), t0);
        // Packets dropped after the read, logged before it settles: 99 unlogged said as 89.
        for _ in 0..10 {
            l.logged("lab", "policy");
        }
        l.settle(t0 + SETTLE, false);
        assert_eq!(l.take("lab", "policy"), 89);
        let t1 = t0 + READ_EVERY;
        l.read("lab", counts(1, [170, 40], 0), t1);
        l.settle(t1 + SETTLE, false);
        // Counted 110 in all: 11 logged, 99 unlogged.
        assert_eq!(l.take("lab", "policy"), 10);
    }

    #[test]
    fn reads_are_a_window_apart_and_stop_when_nothing_is_logged() {
        let (mut l, t0) = begun();
        assert!(l.due(t0, false).is_empty(), "nothing logged: no read");
        l.logged("lab", "host");
        l.read("lab", counts(1, [60, 40], 1), t0);
        assert!(l.due(t0 + SETTLE, false).is_empty(), "one read at a time");
        l.settle(t0 + SETTLE, false);
        // The settled read found nothing and nothing was logged since: quiet.
        assert!(l.due(t0 + READ_EVERY * 2, false).is_empty());
        // As following ends, a quiet topology is not read again; one that logged is.
        assert!(l.due(t0, true).is_empty());
        l.logged("lab", "policy");
        assert_eq!(l.due(t0, true), vec!["lab".to_string()]);
        l.read("lab", counts(1, [111, 40], 1), t0);
        l.settle(t0, true);
        assert_eq!(l.owing(), vec![("lab".to_string(), "policy".to_string())]);
        assert_eq!(l.take("lab", "policy"), 50);
        assert!(l.owing().is_empty());
    }

    #[test]
    fn a_topology_applied_later_is_counted_from_zero() {
        let mut l = Ledger::default();
        let t0 = Instant::now();
        l.logged("new", "policy");
        assert_eq!(l.due(t0, false), vec!["new".to_string()]);
        l.read("new", counts(5, [500, 0], 0), t0);
        l.settle(t0 + SETTLE, false);
        assert_eq!(l.take("new", "policy"), 499);
        // Its table flushed: no more reads.
        l.read("new", None, t0);
        assert!(l.due(t0 + READ_EVERY, false).is_empty());
    }

    #[test]
    fn a_table_made_again_is_counted_from_zero_however_high_it_counts() {
        let (mut l, t0) = begun();
        l.logged("lab", "policy");
        l.read("lab", counts(1, [110, 40], 0), t0);
        l.settle(t0 + SETTLE, false);
        assert_eq!(l.take("lab", "policy"), 49);
        // The table made again (another handle), its counters past the old ones already:
        // 5 logged since, 2,000 counted by the new rules.
        for _ in 0..5 {
            l.logged("lab", "policy");
        }
        let t1 = t0 + READ_EVERY;
        l.read("lab", counts(2, [1_500, 500], 0), t1);
        l.settle(t1 + SETTLE, false);
        assert_eq!(l.take("lab", "policy"), 1_995);
        // One rule replaced (a policy edited and applied): the other keeps counting on.
        let t2 = t1 + READ_EVERY;
        l.logged("lab", "policy");
        let mut c = counts(2, [1_510, 0], 0).unwrap_or_default();
        c[1].rule = (2, 30);
        c[1].packets = 7;
        l.read("lab", Some(c), t2);
        l.settle(t2 + SETTLE, false);
        assert_eq!(l.take("lab", "policy"), 16);
    }
}
