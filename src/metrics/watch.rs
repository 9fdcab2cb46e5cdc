//! The watcher's own metrics: how long each check and each repair took (histograms with
//! kube-proxy's buckets for its sync duration: 1 ms doubling to 16 s), repairs by outcome and
//! the objects they changed by kind, drift seen, fights, events heard. `nsfw watch` updates
//! them; its HTTP server reads them at each scrape.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use super::{Family, Sample, Type};
use crate::plan::{Plan, Step};

/// Upper bounds of the buckets, in seconds: kube-proxy's `ExponentialBuckets(0.001, 2, 15)`.
fn bounds() -> impl Iterator<Item = f64> {
    (0..15).map(|i| 0.001 * f64::from(1u32 << i))
}

#[derive(Clone, Debug, Default)]
struct Histogram {
    /// Observations per bucket (not cumulative), one more for +Inf.
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        if self.buckets.is_empty() {
            self.buckets = vec![0; 16];
        }
        let i = bounds().position(|b| s <= b).unwrap_or(15);
        self.buckets[i] += 1;
        self.sum += s;
        self.count += 1;
    }

    fn samples(&self, topology: &str) -> Vec<Sample> {
        let lb = |extra: Option<String>| {
            let mut v = vec![("topology", topology.to_string())];
            if let Some(le) = extra {
                v.push(("le", le));
            }
            v
        };
        let mut out = Vec::new();
        let mut acc = 0;
        for (i, b) in bounds().enumerate() {
            acc += self.buckets.get(i).copied().unwrap_or(0);
            out.push(Sample {
                suffix: "_bucket",
                labels: lb(Some(format!("{b}"))),
                value: acc as f64,
            });
        }
        out.push(Sample {
            suffix: "_bucket",
            labels: lb(Some("+Inf".into())),
            value: self.count as f64,
        });
        out.push(Sample {
            suffix: "_sum",
            labels: lb(None),
            value: self.sum,
        });
        out.push(Sample {
            suffix: "_count",
            labels: lb(None),
            value: self.count as f64,
        });
        out
    }
}

#[derive(Clone, Debug, Default)]
struct Inner {
    checks: Histogram,
    repairs: Histogram,
    repaired: u64,
    failed: u64,
    kinds: BTreeMap<&'static str, u64>,
    drift: u64,
    fights: u64,
    events: u64,
    fighting: bool,
    in_sync: bool,
}

/// What the watcher counts, shared with the HTTP server.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    topology: String,
    inner: Mutex<Inner>,
}

/// The kind of object a plan's change concerns.
fn kind(s: &Step) -> &'static str {
    match s {
        Step::DeleteNamespace { .. }
        | Step::CreateNamespace { .. }
        | Step::MarkNamespace { .. } => "namespace",
        Step::DeleteLink { .. }
        | Step::CreateBridge { .. }
        | Step::CreateVeth { .. }
        | Step::CreateMacvlan { .. }
        | Step::CreateVxlan { .. }
        | Step::SetLink { .. } => "link",
        Step::AddFdb { .. } | Step::DelFdb { .. } => "fdb",
        Step::AddAddr { .. } | Step::DelAddr { .. } => "address",
        Step::SetRoute { .. } | Step::DelRoute { .. } => "route",
        Step::SetSysctl { .. } => "sysctl",
        Step::WriteResolv { .. } | Step::RemoveResolv { .. } => "file",
        Step::ForgetNeighbours { .. } | Step::Announce { .. } => "neighbours",
        Step::SetNetem { .. } => "qdisc",
        Step::Adopt { .. } => "adopt",
    }
}

impl Stats {
    pub(crate) fn new(topology: &str) -> Stats {
        Stats {
            topology: topology.to_string(),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn with(&self, f: impl FnOnce(&mut Inner)) {
        // A panic elsewhere while holding it leaves the numbers as they were: still numbers.
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g);
    }

    /// A check took `d`; `differs`: it found the host differing from the file.
    pub(crate) fn checked(&self, d: Duration, differs: bool, in_sync: bool) {
        self.with(|i| {
            i.checks.observe(d);
            i.drift += u64::from(differs);
            i.in_sync = in_sync;
        });
    }

    /// A repair took `d`; `plan` is what it carried out (None: it failed).
    pub(crate) fn repaired(&self, d: Duration, plan: Option<&Plan>) {
        self.with(|i| {
            i.repairs.observe(d);
            match plan {
                Some(p) => {
                    i.repaired += 1;
                    i.in_sync = true;
                    for s in &p.steps {
                        *i.kinds.entry(kind(s)).or_default() += 1;
                    }
                    *i.kinds.entry("nft").or_default() += p.nft.lines.len() as u64;
                }
                None => i.failed += 1,
            }
        });
    }

    /// A put-back (watch's fast repair of a deletion it heard of) took `d` and put `objects`
    /// nft objects back: drift seen and repaired, without a check.
    pub(crate) fn put_back(&self, d: Duration, objects: usize) {
        self.with(|i| {
            i.repairs.observe(d);
            i.repaired += 1;
            i.drift += 1;
            i.in_sync = true;
            *i.kinds.entry("nft").or_default() += objects as u64;
        });
    }

    /// A fight with another manager begins (`on`) or ends.
    pub(crate) fn fighting(&self, on: bool) {
        self.with(|i| {
            i.fights += u64::from(on && !i.fighting);
            i.fighting = on;
        });
    }

    pub(crate) fn heard(&self, n: usize) {
        self.with(|i| i.events += n as u64);
    }

    /// The families, as they are now.
    pub(crate) fn families(&self) -> Vec<Family> {
        let i = self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let t = self.topology.as_str();
        let lb = |extra: &[(&'static str, &str)]| {
            let mut v = vec![("topology", t.to_string())];
            v.extend(extra.iter().map(|(k, x)| (*k, x.to_string())));
            v
        };
        let mut checks = Family::new(
            "nsfw_watch_check_duration_seconds",
            Type::Histogram,
            "How long each check of the host against the file took (observe and plan, as nsfw diff).",
        );
        checks.samples = i.checks.samples(t);
        let mut rep = Family::new(
            "nsfw_watch_repair_duration_seconds",
            Type::Histogram,
            "How long each repair took (the apply of the plan and the check after it), like kube-proxy's sync duration.",
        );
        rep.samples = i.repairs.samples(t);
        let mut repairs = Family::new(
            "nsfw_watch_repairs_total",
            Type::Counter,
            "Repairs, by result (repaired, failed).",
        );
        repairs.add(lb(&[("result", "repaired")]), i.repaired as f64);
        repairs.add(lb(&[("result", "failed")]), i.failed as f64);
        let mut kinds = Family::new(
            "nsfw_watch_repaired_objects_total",
            Type::Counter,
            "Changes repairs made, by the kind of object (namespace, link, address, route, sysctl, file, qdisc, neighbours, nft).",
        );
        for (k, n) in &i.kinds {
            kinds.add(lb(&[("kind", k)]), *n as f64);
        }
        let mut drift = Family::new(
            "nsfw_watch_drift_total",
            Type::Counter,
            "Checks that found the host differing from the file, and deletions watch put back at once.",
        );
        drift.add(lb(&[]), i.drift as f64);
        let mut back = Family::new(
            "nsfw_watch_fights_total",
            Type::Counter,
            "Fights begun: too many repairs in a minute, another manager keeps undoing nsfw's work.",
        );
        back.add(lb(&[]), i.fights as f64);
        let mut fighting = Family::new(
            "nsfw_watch_fighting",
            Type::Gauge,
            "1 while watch is in a fight (repairing each change at once, within its CPU budget).",
        );
        fighting.add(lb(&[]), f64::from(u8::from(i.fighting)));
        let mut sync = Family::new(
            "nsfw_watch_in_sync",
            Type::Gauge,
            "1 when the last check or repair left the host matching the file.",
        );
        sync.add(lb(&[]), f64::from(u8::from(i.in_sync)));
        let mut events = Family::new(
            "nsfw_watch_events_total",
            Type::Counter,
            "Kernel notifications that concerned the topology.",
        );
        events.add(lb(&[]), i.events as f64);
        vec![
            checks, rep, repairs, kinds, drift, back, fighting, sync, events,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_count_every_observation_in_cumulative_buckets() {
        let s = Stats::new("lab");
        s.checked(Duration::from_micros(500), false, true);
        s.checked(Duration::from_millis(3), true, false);
        s.checked(Duration::from_secs(60), false, true);
        let f = s.families();
        let text = super::super::render(&f);
        assert!(text.contains(
            "nsfw_watch_check_duration_seconds_bucket{topology=\"lab\",le=\"0.001\"} 1\n"
        ));
        assert!(text.contains(
            "nsfw_watch_check_duration_seconds_bucket{topology=\"lab\",le=\"0.004\"} 2\n"
        ));
        assert!(text.contains(
            "nsfw_watch_check_duration_seconds_bucket{topology=\"lab\",le=\"+Inf\"} 3\n"
        ));
        assert!(text.contains("nsfw_watch_check_duration_seconds_count{topology=\"lab\"} 3\n"));
        assert!(text.contains("nsfw_watch_drift_total{topology=\"lab\"} 1\n"));
    }
}
