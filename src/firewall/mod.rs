//! The firewall nsfw builds for a topology, as nft IR: one `inet nsfw_<name>` table with NAT and
//! a conntrack-stateful FORWARD filter that judges only nsfw's bridges, plus scoped accepts in
//! iptables-nft's `filter` table when its FORWARD policy would drop nsfw's traffic (Docker).
//! Also what the kernel holds of all that ([`observe`]) and the nft part of a plan ([`diff`]).

pub(crate) mod account;
pub(crate) mod build;
mod claims;
pub(crate) mod clash;
pub(crate) mod conntrack;
pub(crate) mod droplog;
mod egress;
pub(crate) mod guard;
pub(crate) mod identity;
mod lan;
mod policy;
pub(crate) mod publish;
mod router;
mod side;
mod table;
#[cfg(test)]
mod tests;
pub(crate) mod uplink;
mod vxlan;

pub(crate) use egress::{default_left_out, missing_ways_out};
pub(crate) use table::{needs_localnet, table};

/// Whether a set of nsfw's table holds the policy (`[[allow]]`, `[[deny]]`, egress, host
/// protection) rather than the topology's plumbing or its published ports.
pub(crate) fn policy_set(name: &str) -> bool {
    [
        "deny",
        "allow",
        "host_",
        "from_host_",
        "egress_deny",
        "egress_via",
        "egress_confined",
        "gateways",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// Whether the topology's policy judges traffic between namespaces on one bridge (isolation,
/// or any allow/deny entry): then its bridges hand their bridged traffic to the IP hooks.
pub(crate) fn judges_within_bridges(t: &Topology) -> bool {
    !t.policy.is_empty() || t.bridges.iter().any(|b| b.isolate)
}

use std::collections::BTreeMap;

use anyhow::{Result, anyhow};

use crate::owner::{self, Mark};
use crate::topology::Topology;
use nft::batch::{self, Op};
pub(crate) use nft::diff::NftLine;
use nft::diff::{canonical_rule, normal_rule, table_diff, table_diff_owned};
use nft::dump::{ChainInfo, Dumped, KRule, TableInfo};
use nft::socket::NftSocket;
use nft::{Family, Policy, Rule, Stmt, Verdict};

/// iptables-nft's table and the chains nsfw may write into.
pub(crate) const IPT_TABLE: &str = "filter";
pub(crate) const IPT_FORWARD: &str = "FORWARD";
pub(crate) const DOCKER_USER: &str = "DOCKER-USER";
pub(crate) const BRNF_SYSCTL: &str = "net.bridge.bridge-nf-call-iptables";

/// The rules nsfw puts at the top of iptables-nft's chain (DOCKER-USER, or FORWARD) so that
/// its FORWARD drop policy lets the bridges' traffic through; nsfw's own table still does the
/// stateful judging. In order:
///
/// ```nft
/// oifname "br0" accept comment "nsfw:lab"                      # into the namespaces
/// iifname "br0" oifname "docker0" return comment "nsfw:lab"    # to containers: Docker decides,
/// iifname "br0" accept comment "nsfw:lab"                      # as for any outside host
/// ```
///
/// for any owner `mark` and its bridges (a topology's, or a CNI network's).
pub(crate) fn accepts_for(mark: &str, bridges: &[String], docker_bridges: &[String]) -> Vec<Rule> {
    let mark = mark.to_string();
    let mut v = Vec::new();
    let with = |stmts: Vec<Stmt>, verdict| Rule {
        stmts: {
            let mut s = stmts;
            s.push(Stmt::Verdict(verdict));
            s
        },
        comment: Some(mark.clone()),
    };
    for b in bridges {
        v.push(with(vec![Stmt::oifname(b, true)], Verdict::Accept));
        for d in docker_bridges {
            v.push(with(
                vec![Stmt::iifname(b, true), Stmt::oifname(d, true)],
                Verdict::Return,
            ));
        }
        v.push(with(vec![Stmt::iifname(b, true)], Verdict::Accept));
    }
    v
}

/// Docker's bridges: the interfaces iptables' FORWARD sends to its DOCKER chain
/// (`-o docker0 -j DOCKER`).
fn docker_bridges(forward: &[KRule]) -> Vec<String> {
    let mut out = Vec::new();
    for k in forward {
        let jumps = k
            .rule
            .stmts
            .iter()
            .any(|s| matches!(s, Stmt::Verdict(Verdict::Jump(c)) if c == "DOCKER"));
        if !jumps {
            continue;
        }
        for s in &k.rule.stmts {
            if let Stmt::Match(m) = s
                && m.left == nft::Expr::Meta(nft::MetaKey::Oifname)
                && m.op == nft::Op::Eq
                && let nft::Rhs::Value(nft::Value::Ifname(n)) = &m.right
                && !out.contains(n)
            {
                out.push(n.clone());
            }
        }
    }
    out
}

/// What the kernel holds of nsfw's firewall.
#[derive(Clone, Debug, Default)]
pub(crate) struct NftState {
    pub tables: Vec<TableInfo>,
    /// Every `inet nsfw_*` table, read back whole, by name.
    pub own: BTreeMap<String, Dumped>,
    /// Every `bridge nsfw_*` table (port security, see `identity`), by name.
    pub bridge: BTreeMap<String, Dumped>,
    /// Every `netdev nsfw_*` table (macvlan children's anti-spoofing, see `uplink`), by name.
    pub netdev: BTreeMap<String, Dumped>,
    /// What the topology's macvlan uplinks hold, by name (read beside the plumbing).
    pub uplinks: BTreeMap<String, uplink::Seen>,
    /// iptables-nft's `ip filter` FORWARD chain, if there is one.
    pub ipt_forward: Option<ChainInfo>,
    pub docker_user: bool,
    /// Rules with an `nsfw:` (a topology's) or `nsfw-cni:` (a CNI network's) comment in `ip filter`
    /// FORWARD or DOCKER-USER, in chain order.
    pub placed: Vec<KRule>,
    /// Docker's bridges, from its FORWARD rules.
    pub docker_bridges: Vec<String>,
    /// Tables of iptables-legacy in this namespace (/proc/net/ip_tables_names).
    pub legacy_tables: Vec<String>,
    /// `net.bridge.bridge-nf-call-iptables`, when br_netfilter is loaded.
    pub br_nf: Option<bool>,
    /// The host's listening sockets, read only when the topology publishes ports.
    pub listeners: Vec<crate::plumbing::listeners::Listener>,
    /// nsfw's table inside routing namespaces, by namespace (None: it has none), for the
    /// namespaces that were looked into.
    pub ns_tables: BTreeMap<String, Option<Dumped>>,
    /// nsfw's `netdev` table inside the namespaces with children of an uplink (`guard`), by
    /// namespace (None: it has none), for the namespaces that were looked into.
    pub ns_guards: BTreeMap<String, Option<Dumped>>,
    /// The ruleset generation all of the above was read at; None when a batch was committed
    /// while it was being read (the readings may then mix two rulesets).
    pub generation: Option<u32>,
}

/// Reads nsfw's tables, iptables-nft's FORWARD and DOCKER-USER chains, and the sysctls.
pub(crate) fn observe(sock: &mut NftSocket) -> Result<NftState> {
    // A kernel that cannot say its generation only costs the cheap verification.
    let before = sock.generation().ok();
    let mut s = NftState {
        tables: sock.tables()?,
        ..Default::default()
    };
    for t in s.tables.clone() {
        if t.family == Family::Inet && owner::is_table(&t.name) {
            s.own.insert(t.name.clone(), sock.read_table(&t)?);
        }
    }
    s.bridge = identity::observe(sock, &s)?;
    s.netdev = uplink::observe(sock, &s)?;
    observe_ipt(sock, &mut s)?;
    s.generation = before.filter(|g| sock.generation().ok() == Some(*g));
    s.legacy_tables = match std::fs::read_to_string("/proc/net/ip_tables_names") {
        Ok(text) => text
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect(),
        Err(_) => Vec::new(),
    };
    s.br_nf = crate::plumbing::sysctl::read(BRNF_SYSCTL)?.map(|v| v == "1");
    Ok(s)
}

/// Reads iptables-nft's FORWARD and DOCKER-USER chains into `s` (whose `tables` are read):
/// their policy, Docker's bridges, and the rules nsfw placed there.
pub(crate) fn observe_ipt(sock: &mut NftSocket, s: &mut NftState) -> Result<()> {
    for t in s.tables.clone() {
        if t.family == Family::Ip && t.name == IPT_TABLE {
            let chains = sock.chains(Family::Ip, IPT_TABLE)?;
            s.ipt_forward = chains.iter().find(|c| c.name == IPT_FORWARD).cloned();
            s.docker_user = chains.iter().any(|c| c.name == DOCKER_USER);
            for ch in [IPT_FORWARD, DOCKER_USER] {
                if chains.iter().any(|c| c.name == ch) {
                    let rules = sock.chain_rules(Family::Ip, IPT_TABLE, ch)?;
                    if ch == IPT_FORWARD {
                        s.docker_bridges = docker_bridges(&rules);
                    }
                    s.placed.extend(
                        rules
                            .into_iter()
                            .filter(|r| owner::owned(r.rule.comment.as_deref(), |_| true)),
                    );
                }
            }
        }
    }
    Ok(())
}

/// Reads nsfw's `family` table of topology `name` inside each of `namespaces`.
pub(crate) fn observe_ns(
    name: &str,
    namespaces: &[String],
    family: Family,
) -> Result<BTreeMap<String, Option<Dumped>>> {
    let mut out = BTreeMap::new();
    for ns in namespaces {
        let want = owner::table(name);
        let got = crate::plumbing::netns::run_in(ns, move || {
            let mut sock = NftSocket::open()?;
            let found = sock
                .tables()?
                .into_iter()
                .find(|t| t.family == family && t.name == want);
            match found {
                Some(t) => Ok(Some(sock.read_table(&t)?)),
                None => Ok(None),
            }
        })
        .map_err(|e| anyhow!("namespace {ns}: cannot read its nftables table: {e:#}"))?;
        out.insert(ns.clone(), got);
    }
    Ok(out)
}

/// The namespaces whose table must be read: those that want one, and those that forward now
/// (they may hold one the file no longer wants).
pub(crate) fn ns_to_observe(t: &Topology, forwarding: &dyn Fn(&str) -> bool) -> Vec<String> {
    t.namespaces
        .iter()
        .filter(|n| router::table(t, n).is_some() || forwarding(&n.name))
        .map(|n| n.name.clone())
        .collect()
}

/// The plan for the tables inside namespaces: a routing namespace's inet table and a macvlan
/// child's guard (`guard`), one batch per namespace.
fn ns_diff(p: &mut NftPlan, t: &Topology, s: &NftState) {
    for n in &t.namespaces {
        let mut ops = Vec::new();
        let tables = [
            (router::table(t, n), &s.ns_tables, Family::Inet),
            (guard::table(t, n), &s.ns_guards, Family::Netdev),
        ];
        for (want, seen, family) in tables {
            let have = seen.get(&n.name).and_then(Option::as_ref);
            let d = match (&want, have) {
                (None, None) => continue,
                (Some(w), h) => table_diff(w, h),
                (None, Some(h)) => delete_table(family, h.structure().name()),
            };
            for mut l in d.lines {
                l.table = format!("{}:{}", n.name, l.table);
                p.lines.push(l);
            }
            ops.extend(d.ops);
        }
        if !ops.is_empty() {
            p.ns_ops.push((n.name.clone(), ops));
        }
    }
}

/// The change that removes table `family name` whole.
fn delete_table(family: Family, name: &str) -> nft::diff::TableDiff {
    nft::diff::TableDiff {
        lines: vec![NftLine::new(
            '-',
            "table",
            &format!("{} {name}", family.as_str()),
            None,
            String::new(),
        )],
        ops: vec![Op::DeleteTable {
            family,
            name: name.to_string(),
        }],
        gone: Vec::new(),
        added: Vec::new(),
    }
}

/// The nft half of a plan: the ops of the one batch, and lines saying what they change.
#[derive(Clone, Debug, Default)]
pub(crate) struct NftPlan {
    pub ops: Vec<Op>,
    pub lines: Vec<NftLine>,
    pub conflicts: Vec<String>,
    pub warnings: Vec<String>,
    /// The batches for nsfw's tables inside routing namespaces, one per namespace (a batch
    /// cannot span network namespaces). Their lines are in `lines`.
    pub ns_ops: Vec<(String, Vec<Op>)>,
    /// Published UDP ports that move, go away or come: the conntrack entries they make stale
    /// are deleted once the batch is in (see `conntrack`).
    pub forget: conntrack::Forget,
}

/// A placed rule as a diff shows it: in `nft` syntax, with its handle.
fn show_rule(k: &KRule) -> String {
    format!("{} (handle {})", k.rule, k.handle)
}

/// A line about a rule in iptables-nft's chain.
fn ipt_line(mark: char, chain: &str, detail: String) -> NftLine {
    NftLine {
        foreign: true,
        ..NftLine::new(
            mark,
            "rule",
            &format!("ip {IPT_TABLE}"),
            Some(chain),
            detail,
        )
    }
}

/// The table topology `t` wants on the host (None: it has no bridge, so none), with its
/// elements in kernel form: the half of the diff that needs no kernel.
pub(crate) struct Prepared {
    pub table: Option<nft::Table>,
    pub canon: nft::diff::Canon,
}

pub(crate) fn prepare(t: &Topology) -> Prepared {
    let table = (!t.bridges.is_empty()).then(|| table(t));
    let canon = table
        .as_ref()
        .map(nft::diff::canon_elements)
        .unwrap_or_default();
    Prepared { table, canon }
}

/// The nft part of the plan for topology `t`, whose desired table `prep` holds.
pub(crate) fn diff(t: &Topology, s: &NftState, prep: Prepared) -> Result<NftPlan> {
    let mut p = NftPlan::default();
    let mark = owner::mark(&t.name);
    let want = prep.table;
    let name = owner::table(&t.name);
    let existing = s
        .tables
        .iter()
        .find(|k| k.family == Family::Inet && k.name == name);
    if let Some(k) = existing.filter(|k| k.comment.as_deref() != Some(mark.as_str())) {
        p.conflicts.push(format!(
            "{}: name = {:?}: nftables table inet {name} exists and nsfw does not own it (its comment is {:?}, not {mark:?}); delete it or rename the topology",
            t.source.display(),
            t.name,
            k.comment.as_deref().unwrap_or("")
        ));
        return Ok(p);
    }
    // A host port another nsfw table publishes: a conflict, so nothing changes.
    p.conflicts.extend(clash::across_tables(t, &name, &s.own));
    match want {
        Some(want) => {
            // What the maps lose and gain is what conntrack must forget; a table created
            // gains all of its elements.
            let created = existing.is_none().then(|| clash::of_table(&want));
            let d = table_diff_owned(want, &prep.canon, existing.and(s.own.get(&name)));
            let added = created.unwrap_or_else(|| clash::of_sets(&d.added));
            p.forget = conntrack::Forget::of(clash::of_sets(&d.gone), added);
            p.lines.extend(d.lines);
            p.ops.extend(d.ops);
        }
        None if existing.is_some() => {
            if let Some(d) = s.own.get(&name) {
                p.forget = conntrack::Forget::of(clash::observed(d), Vec::new());
            }
            p.lines.push(NftLine::new(
                '-',
                "table",
                &format!("inet {name}"),
                None,
                String::new(),
            ));
            p.ops.push(Op::DeleteTable {
                family: Family::Inet,
                name,
            });
        }
        None => {}
    }

    identity::diff(&mut p, t, s);
    uplink::diff(&mut p, t, s);
    let bridges: Vec<String> = t.bridges.iter().map(|b| b.name.clone()).collect();
    place_accepts(&mut p, Mark::Topology(&t.name), &bridges, s);
    if !s.legacy_tables.is_empty() {
        p.warnings.push(format!(
            "iptables-legacy tables are loaded ({}): their rules may drop nsfw's traffic, and nsfw changes them only to remove, under `apply --adopt`, the hand-written lines its file replaces; check `iptables-legacy -S FORWARD`",
            s.legacy_tables.join(", ")
        ));
    }
    p.warnings
        .extend(publish::shadowed_listeners(t, &s.listeners));
    br_netfilter(&mut p, t, s);
    ns_diff(&mut p, t, s);
    Ok(p)
}

/// Docker & co: a FORWARD policy of drop in iptables-nft's table drops nsfw's traffic
/// whatever nsfw's own table says (every base chain on the hook must accept). Plans the
/// accepts of `mark`'s `bridges` (none when `bridges` is empty or the policy accepts), and the
/// removal of those of `mark` that are not so, in order.
pub(crate) fn place_accepts(p: &mut NftPlan, owner: Mark, bridges: &[String], s: &NftState) {
    let drop_policy = s
        .ipt_forward
        .as_ref()
        .and_then(|c| c.base.as_ref())
        .is_some_and(|b| b.policy == Policy::Drop);
    let target = if s.docker_user {
        DOCKER_USER
    } else {
        IPT_FORWARD
    };
    let wanted: Vec<(Rule, Rule)> = if drop_policy {
        accepts_for(&owner.to_string(), bridges, &s.docker_bridges)
            .into_iter()
            .map(|r| (canonical_rule(&r, Family::Ip, &[]), r))
            .collect()
    } else {
        Vec::new()
    };
    let ours: Vec<&KRule> = s
        .placed
        .iter()
        .filter(|r| owner::owned(r.rule.comment.as_deref(), |m| m == owner))
        .collect();
    // In order: a return before an accept matters.
    let in_place = ours.len() == wanted.len()
        && ours
            .iter()
            .zip(&wanted)
            .all(|(k, (c, _))| k.chain == target && &normal_rule(&k.rule) == c);
    if !in_place {
        for k in &ours {
            delete_placed(p, k);
        }
        for (_, r) in &wanted {
            p.lines.push(ipt_line('+', target, r.to_string()));
        }
        // Each goes in first: the last inserted ends on top.
        for (_, r) in wanted.into_iter().rev() {
            p.ops.push(Op::AddRule {
                family: Family::Ip,
                table: IPT_TABLE.into(),
                chain: target.into(),
                rule: r,
                first: true,
            });
        }
    }
}

/// What an intra-bridge policy needs of the br_netfilter module. (What `[host] br_netfilter`
/// asks of bridge-nf-call-iptables is a host sysctl of the plumbing's plan, refused there when
/// the module is missing.)
fn br_netfilter(p: &mut NftPlan, t: &Topology, s: &NftState) {
    if judges_within_bridges(t) && s.br_nf.is_none() {
        p.conflicts.push(format!(
            "{}: the policy judges traffic between namespaces on one bridge, which needs the br_netfilter module (it hands bridged traffic to nftables); it is not loaded (no /proc/sys/net/bridge): load it first (modprobe br_netfilter), nsfw does not load modules",
            t.source.display()
        ));
    }
}

/// Plans the deletion of a rule nsfw placed in iptables-nft's table.
fn delete_placed(p: &mut NftPlan, k: &KRule) {
    p.lines.push(ipt_line('-', &k.chain, show_rule(k)));
    p.ops.push(Op::DeleteRule {
        family: Family::Ip,
        table: IPT_TABLE.into(),
        chain: k.chain.clone(),
        handle: k.handle,
        what: k.rule.comment.clone().unwrap_or_default(),
    });
}

/// The nft part of a flush: nsfw's tables and the rules it placed elsewhere, for the topologies
/// in `owners` (all of them when None).
pub(crate) fn flush(owners: Option<&[String]>, s: &NftState) -> NftPlan {
    let owned = |comment: Option<&str>| {
        owner::owned(comment, |m| match (m, owners) {
            (Mark::Topology(t), Some(names)) => names.iter().any(|n| n == t),
            (Mark::Topology(_), None) => true,
            _ => false,
        })
    };
    let mut p = NftPlan::default();
    for t in &s.tables {
        if t.family == Family::Inet && owner::is_table(&t.name) && owned(t.comment.as_deref()) {
            p.lines.push(NftLine::new(
                '-',
                "table",
                &format!("inet {}", t.name),
                None,
                String::new(),
            ));
            p.ops.push(Op::DeleteTable {
                family: Family::Inet,
                name: t.name.clone(),
            });
            if let Some(d) = s.own.get(&t.name) {
                p.forget
                    .moved
                    .extend(conntrack::Forget::of(clash::observed(d), Vec::new()).moved);
            }
        }
    }
    identity::flush(&mut p, s, &owned);
    uplink::flush(&mut p, s, &owned);
    for r in &s.placed {
        if owned(r.rule.comment.as_deref()) {
            delete_placed(&mut p, r);
        }
    }
    p
}

/// Sends the ops as one batch.
pub(crate) fn execute(sock: &mut NftSocket, ops: &[Op]) -> Result<()> {
    if ops.is_empty() {
        return Ok(());
    }
    let t = std::time::Instant::now();
    let enc = batch::encode(ops).map_err(|e| anyhow!("encoding the nftables batch: {e:#}"))?;
    sock.send(&enc)?;
    crate::detail!(
        "timing: nft batch of {} messages ({} bytes): {:?}",
        enc.len(),
        enc.buf.len(),
        t.elapsed()
    );
    Ok(())
}

/// What `[host] br_netfilter = "auto"` reports.
pub(crate) fn br_nf_report(t: &Topology, s: &NftState) -> String {
    if judges_within_bridges(t) && s.br_nf.is_some() {
        return "br_netfilter: this topology's bridges hand their own traffic to nftables (bridge option nf_call_iptables), so the policy between namespaces on one bridge holds whatever bridge-nf-call-iptables says".into();
    }
    match s.br_nf {
        None => "br_netfilter: not loaded; bridged traffic bypasses the forward hook".into(),
        Some(true) => "br_netfilter: bridge-nf-call-iptables = 1; traffic between namespaces on a bridge passes nsfw's forward chain, which accepts it".into(),
        Some(false) => "br_netfilter: bridge-nf-call-iptables = 0; bridged traffic bypasses the forward hook".into(),
    }
}
