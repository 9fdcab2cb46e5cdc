//! Other tables' base chains on the hooks a topology's traffic crosses: an accept in nsfw's
//! table cannot override their drop, since a packet must be accepted by every base chain on
//! its hook. Every table but nsfw's own is read whole and decoded into the IR, and each of its
//! base chains is walked for each flow of the topology.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;

use super::flows::{Flow, Sel, family_sees};
use super::judge::{Blocker, judge};
use super::{Finding, Severity};
use crate::firewall::{self, DOCKER_USER, IPT_FORWARD, IPT_TABLE, NftState};
use crate::topology::Topology;
use nft::dump::Dumped;
use nft::socket::NftSocket;
use nft::{Family, Policy, Table};

/// Every table of the host, read back, with what nsfw's observation says. nsfw's own tables
/// are among them: a topology's table is left out only when its own flows are judged.
pub(crate) struct Ruleset {
    pub tables: Vec<Dumped>,
    pub state: NftState,
}

/// iptables-nft's tables: their chains are best changed with iptables.
fn is_iptables(t: &Table) -> bool {
    matches!(t.family, Family::Ip | Family::Ip6)
        && matches!(
            t.name.as_str(),
            "filter" | "nat" | "mangle" | "raw" | "security"
        )
}

impl Ruleset {
    pub(crate) fn read(sock: &mut NftSocket) -> Result<Ruleset> {
        let state = firewall::observe(sock)?;
        let mut tables = Vec::new();
        for info in &state.tables {
            tables.push(sock.read_table(info)?);
        }
        Ok(Ruleset { tables, state })
    }

    /// The table as apply leaves it for topology `t`: when iptables' FORWARD policy is drop,
    /// with nsfw's accepts in DOCKER-USER (or FORWARD) if they are not there yet. Returns the
    /// table and how many rules were put at the top of which chain.
    fn as_applied(&self, t: &Topology, d: &Dumped) -> (Table, Option<(String, usize)>) {
        // Set lookups need the elements, which a dump keeps as kernel bytes until asked.
        let mut table = d
            .decoded()
            .unwrap_or_else(|_| d.structure().without_elements());
        let ipt = table.family == Family::Ip && table.name == IPT_TABLE;
        let drop = table
            .chain(IPT_FORWARD)
            .and_then(|c| c.base)
            .is_some_and(|b| b.policy == Policy::Drop);
        if !ipt || !drop || t.bridges.is_empty() {
            return (table, None);
        }
        let mark = crate::owner::mark(&t.name);
        let target = if table.chain(DOCKER_USER).is_some() {
            DOCKER_USER
        } else {
            IPT_FORWARD
        };
        let Some(c) = table.chains.iter_mut().find(|c| c.name == target) else {
            return (table, None);
        };
        if c.rules.iter().any(|r| r.comment.as_deref() == Some(&mark)) {
            return (table, None);
        }
        let bridges: Vec<String> = t.bridges.iter().map(|b| b.name.clone()).collect();
        let accepts = firewall::accepts_for(&mark, &bridges, &self.state.docker_bridges);
        let n = accepts.len();
        c.rules.splice(0..0, accepts);
        (table, Some((target.to_string(), n)))
    }

    /// Where nsfw's accepts should be and are not, for an applied topology `t`: the chain.
    pub(crate) fn missing_accepts(&self, t: &Topology) -> Option<String> {
        let applied = self
            .state
            .tables
            .iter()
            .any(|k| k.family == Family::Inet && k.name == crate::owner::table(&t.name));
        if !applied {
            return None;
        }
        self.tables
            .iter()
            .find_map(|d| self.as_applied(t, d).1)
            .map(|(chain, _)| chain)
    }

    /// What every base chain of the other tables does to each flow: per table, the outcomes.
    /// Another topology's or CNI network's table (`inet nsfw_*`) counts by its chains' drop
    /// policies only: nsfw never gives one a drop policy, so one is somebody's edit that drops
    /// this topology's traffic; its rules are nsfw's and judge only its own bridges.
    pub(crate) fn judge_flows(&self, t: &Topology, flows: &[Flow]) -> Vec<(Table, Verdicts)> {
        let mut out = Vec::new();
        let own = crate::owner::table(&t.name);
        for d in &self.tables {
            // A dormant table's chains are not attached to their hooks.
            if d.structure().dormant() {
                continue;
            }
            let s = d.structure();
            let nsfw = s.family() == Family::Inet && crate::owner::is_table(s.name());
            let drops = |tb: &Table| {
                tb.chains
                    .iter()
                    .any(|c| c.base.is_some_and(|b| b.policy == Policy::Drop))
            };
            // (Checked before the elements are decoded: such a table may hold 100,000.)
            if nsfw && (s.name() == own || !drops(&s.without_elements())) {
                continue;
            }
            let (table, added) = self.as_applied(t, d);
            let handle = |chain: &str, i: usize| -> u64 {
                let i = match &added {
                    Some((c, n)) if c == chain => match i.checked_sub(*n) {
                        Some(i) => i,
                        None => return 0,
                    },
                    _ => i,
                };
                d.handles
                    .get(chain)
                    .and_then(|h| h.get(i))
                    .copied()
                    .unwrap_or(0)
            };
            let mut v = Verdicts::default();
            for c in table.chains.iter() {
                let Some(base) = c.base else { continue };
                for f in flows {
                    let bridge_table = table.family == Family::Bridge;
                    if f.hook != base.hook
                        || f.bridged != bridge_table
                        || !family_sees(table.family, f.v6)
                    {
                        continue;
                    }
                    if nsfw && base.policy != Policy::Drop {
                        continue;
                    }
                    let o = judge(&table, &c.name, f, &handle);
                    if nsfw {
                        if let Some((b, certain)) = o.blocked.filter(|(b, _)| b.rule.is_none()) {
                            let e = v.blocked.entry(b).or_default();
                            e.certain |= certain;
                            e.flows.push(f.clone());
                        }
                        continue;
                    }
                    if let Some((b, certain)) = o.blocked {
                        let e = v.blocked.entry(b).or_default();
                        e.certain |= certain;
                        e.flows.push(f.clone());
                    }
                    for b in o.partly {
                        v.partly.entry(b).or_default().flows.push(f.clone());
                    }
                }
            }
            out.push((table, v));
        }
        out
    }
}

/// What drops the flows of one table, by blocker.
#[derive(Default)]
pub(crate) struct Verdicts {
    pub blocked: BTreeMap<Blocker, Hits>,
    pub partly: BTreeMap<Blocker, Hits>,
}

#[derive(Default)]
pub(crate) struct Hits {
    pub certain: bool,
    pub flows: Vec<Flow>,
}

/// `rule `reject` (handle 7)` or `policy drop`.
pub(crate) fn blocker_text(b: &Blocker) -> String {
    match &b.rule {
        Some((text, h)) if *h > 0 => format!("rule `{text}` (handle {h})"),
        Some((text, _)) => format!("rule `{text}`"),
        None => "policy drop".into(),
    }
}

fn labels(flows: &[Flow]) -> String {
    let set: BTreeSet<&str> = flows.iter().map(|f| f.label.as_str()).collect();
    set.into_iter().collect::<Vec<_>>().join("; ")
}

/// The accepts that would let `flows` through `chain`, each once: by the topology's
/// interface where the hook knows it, else by its subnet.
fn accepts(table: &Table, chain: &str, flows: &[Flow]) -> Vec<String> {
    let ipt = is_iptables(table);
    let cmd = if table.family == Family::Ip6 {
        "ip6tables"
    } else {
        "iptables"
    };
    let mut out: Vec<String> = Vec::new();
    for f in flows {
        let sel = match &f.accept {
            Some(Sel::Iif(n)) => Some(("iifname", "-i", n.join(","))),
            Some(Sel::Oif(n)) => Some(("oifname", "-o", n.join(","))),
            Some(Sel::Daddr(net)) => Some(("daddr", "-d", net.to_string())),
            None => None,
        };
        let Some((what, flag, val)) = sel else {
            continue;
        };
        let line = if ipt {
            format!("{cmd} -t {} -I {chain} {flag} {val} -j ACCEPT", table.name)
                .replace(" -t filter", "")
        } else {
            let m = match what {
                "daddr" => {
                    format!("{} {what} {val}", if f.v6 { "ip6" } else { "ip" })
                }
                _ if val.contains(',') => format!("{what} {{ {} }}", quoted(&val)),
                _ => format!("{what} \"{val}\""),
            };
            format!(
                "nft insert rule {} {} {chain} {m} accept",
                table.family.as_str(),
                table.name
            )
        };
        if !out.contains(&line) {
            out.push(line);
        }
    }
    out
}

fn quoted(list: &str) -> String {
    list.split(',')
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How to take the blocker away instead.
fn removal(table: &Table, b: &Blocker) -> String {
    match &b.rule {
        None if is_iptables(table) => format!(
            "set its policy to accept ({} -P {} ACCEPT)",
            if table.family == Family::Ip6 {
                "ip6tables"
            } else {
                "iptables"
            },
            b.chain
        ),
        None => format!(
            "set its policy to accept (nft chain {} {} {} '{{ policy accept; }}')",
            table.family.as_str(),
            table.name,
            b.chain
        ),
        Some(_) if is_iptables(table) => format!(
            "remove the rule ({} -t {} -D {} {})",
            if table.family == Family::Ip6 {
                "ip6tables"
            } else {
                "iptables"
            },
            table.name,
            b.chain,
            b.position + 1
        )
        .replace(" -t filter", ""),
        Some((_, h)) => format!(
            "remove the rule (nft delete rule {} {} {} handle {h})",
            table.family.as_str(),
            table.name,
            b.chain
        ),
    }
}

/// On firewalld's own table, the firewalld way: the interfaces in its zone through its API
/// (what apply does), never a rule inside its table, which its next reload would remove.
fn firewalld_fix(table: &Table, flows: &[Flow]) -> Option<String> {
    if table.family != Family::Inet || table.name != crate::firewalld::TABLE {
        return None;
    }
    let mut ifaces: BTreeSet<&str> = BTreeSet::new();
    for f in flows {
        if let Some(Sel::Iif(n) | Sel::Oif(n)) = &f.accept {
            ifaces.extend(n.iter().map(String::as_str));
        }
    }
    let cmds: Vec<String> = ifaces
        .iter()
        .map(|i| crate::firewalld::command_for(i))
        .collect();
    Some(format!(
        "`nsfw apply` puts {} in firewalld's zone `{}` at runtime, over firewalld's D-Bus API (by hand: {}); if it did not, firewalld was not reachable on the system bus when it ran",
        ifaces.iter().copied().collect::<Vec<_>>().join(", "),
        crate::firewalld::ZONE,
        cmds.join("; ")
    ))
}

/// The findings of the other tables' base chains for topology `t`.
pub(crate) fn findings(t: &Topology, judged: &[(Table, Verdicts)]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (table, v) in judged {
        for (b, hits) in &v.blocked {
            let verb = if b.reject { "rejects" } else { "drops" };
            let unless = if hits.certain {
                ""
            } else {
                " (some of it may be accepted before, by a rule that looks at more than interfaces and addresses)"
            };
            let fix = accepts(table, &b.chain, &hits.flows);
            if let Some(f) = firewalld_fix(table, &hits.flows) {
                out.push(Finding {
                    severity: Severity::Problem,
                    object: format!("nft chain {} {}", table.label(), b.chain),
                    what: format!(
                        "{} {verb} {}'s traffic: {}{unless}: firewalld judges interfaces in no zone by its default zone",
                        blocker_text(b),
                        t.name,
                        labels(&hits.flows)
                    ),
                    fix: f,
                });
                continue;
            }
            let severity = if hits.flows.iter().all(|f| f.minor) {
                Severity::Warning
            } else {
                Severity::Problem
            };
            out.push(Finding {
                severity,
                object: format!("nft chain {} {}", table.label(), b.chain),
                what: format!(
                    "{} {verb} {}'s traffic: {}{unless}; an accept in nsfw's table cannot override it: a packet must be accepted by every base chain on its hook",
                    blocker_text(b),
                    t.name,
                    labels(&hits.flows)
                ),
                fix: if fix.is_empty() {
                    format!("{} in {}", removal(table, b), table.label())
                } else {
                    format!(
                        "accept {}'s traffic {} it: {} (nsfw's own table still judges that traffic); or {}",
                        t.name,
                        if b.rule.is_some() { "before" } else { "in" },
                        fix.join("; "),
                        removal(table, b)
                    )
                },
            });
        }
        for (b, hits) in &v.partly {
            out.push(Finding {
                severity: Severity::Warning,
                object: format!("nft chain {} {}", table.label(), b.chain),
                what: format!(
                    "{} {} part of {}'s traffic ({}): the part it matches beyond the interface or subnet",
                    blocker_text(b),
                    if b.reject { "rejects" } else { "drops" },
                    t.name,
                    labels(&hits.flows)
                ),
                fix: "if it is not meant for nsfw's namespaces, narrow it, or accept theirs before it; `nsfw verify` shows what gets through".into(),
            });
        }
    }
    out
}

/// One line per rule that drops a connection, for a failed check: "ip filter FORWARD rule
/// `reject` (handle 7) rejects it".
pub(crate) fn why(judged: &[(Table, Verdicts)]) -> Vec<String> {
    let mut out = Vec::new();
    for (table, v) in judged {
        for b in v.blocked.keys() {
            out.push(format!(
                "{} {} {} {} it",
                table.label(),
                b.chain,
                blocker_text(b),
                if b.reject { "rejects" } else { "drops" }
            ));
        }
        for b in v.partly.keys() {
            out.push(format!(
                "{} {} {} may {} it",
                table.label(),
                b.chain,
                blocker_text(b),
                if b.reject { "reject" } else { "drop" }
            ));
        }
    }
    out.dedup();
    out
}
