//! The firewall nsfw builds for a topology, as nft IR: one `inet nsfw_<name>` table with NAT and
//! a conntrack-stateful FORWARD filter that judges only nsfw's bridges, plus scoped accepts in
//! iptables-nft's `filter` table when its FORWARD policy would drop nsfw's traffic (Docker).
//! Also what the kernel holds of all that ([`observe`]) and the nft part of a plan ([`diff`]).

use std::collections::BTreeMap;

use anyhow::{Result, anyhow};

use crate::nft::decode;
use crate::nft::encode::{Op, rule_exprs};
use crate::nft::netlink::{KChain, KRule, KTable, NftSocket};
use crate::nft::{Base, Chain, ChainType, Family, Hook, Match, Rule, Table, Verdict, ct};
use crate::topology::{BrNetfilter, Topology, owner_mark};

/// iptables-nft's table and the chains nsfw may write into.
pub const IPT_TABLE: &str = "filter";
pub const IPT_FORWARD: &str = "FORWARD";
pub const DOCKER_USER: &str = "DOCKER-USER";
pub const BRNF_SYSCTL: &str = "net.bridge.bridge-nf-call-iptables";

pub fn table_name(topology: &str) -> String {
    format!("nsfw_{topology}")
}

/// The topology's own table, in the layout of DESIGN.md.
pub fn table(t: &Topology) -> Table {
    let mut forward = Vec::new();
    let mut chains = Vec::new();
    for b in &t.bridges {
        let from = format!("from_{}", b.name);
        let to = format!("to_{}", b.name);
        let iif = |eq| Match::IifName {
            name: b.name.clone(),
            eq,
        };
        let oif = |eq| Match::OifName {
            name: b.name.clone(),
            eq,
        };
        // iifname "br0" jump from_br0 / oifname "br0" jump to_br0
        forward.push(Rule::new(vec![iif(true)], Verdict::Jump(from.clone())));
        forward.push(Rule::new(vec![oif(true)], Verdict::Jump(to.clone())));
        chains.push(Chain {
            name: from,
            base: None,
            rules: vec![
                // Invalid packets (no conntrack entry can explain them) go nowhere.
                Rule::new(vec![Match::CtState(ct::INVALID)], Verdict::Drop),
                // Between namespaces on one bridge (seen here when br_netfilter is on).
                Rule::new(vec![oif(true)], Verdict::Accept),
                // Egress: anything the namespaces open.
                Rule::new(vec![], Verdict::Accept),
            ],
        });
        chains.push(Chain {
            name: to,
            base: None,
            rules: vec![
                // Replies to what the namespaces opened come back...
                Rule::new(
                    vec![Match::CtState(ct::ESTABLISHED | ct::RELATED)],
                    Verdict::Accept,
                ),
                // ...and nothing unsolicited gets in.
                Rule::new(vec![], Verdict::Drop),
            ],
        });
    }
    let mut all = vec![Chain {
        name: "forward".into(),
        base: Some(Base {
            ty: ChainType::Filter,
            hook: Hook::Forward,
            priority: 0,
            policy_accept: true,
        }),
        rules: forward,
    }];
    all.extend(chains);
    let masq: Vec<Rule> = t
        .bridges
        .iter()
        .filter(|b| b.masquerade)
        .map(|b| {
            let out = match &b.uplink {
                // ip saddr 10.10.0.0/24 oifname "eth0" masquerade
                Some(u) => Match::OifName {
                    name: u.clone(),
                    eq: true,
                },
                // ip saddr 10.10.0.0/24 oifname != "br0" masquerade
                None => Match::OifName {
                    name: b.name.clone(),
                    eq: false,
                },
            };
            Rule::new(vec![Match::Saddr(b.subnet()), out], Verdict::Masquerade)
        })
        .collect();
    if !masq.is_empty() {
        all.push(Chain {
            name: "postrouting".into(),
            base: Some(Base {
                ty: ChainType::Nat,
                hook: Hook::Postrouting,
                priority: 100,
                policy_accept: true,
            }),
            rules: masq,
        });
    }
    Table {
        family: Family::Inet,
        name: table_name(&t.name),
        comment: Some(t.owner_mark()),
        chains: all,
    }
}

/// The accepts nsfw puts into iptables-nft's chain so its FORWARD drop policy lets the
/// bridges' traffic through; nsfw's own table still does the stateful judging.
pub fn ipt_accepts(t: &Topology) -> Vec<Rule> {
    let mark = t.owner_mark();
    let mut v = Vec::new();
    for b in &t.bridges {
        for m in [
            Match::IifName {
                name: b.name.clone(),
                eq: true,
            },
            Match::OifName {
                name: b.name.clone(),
                eq: true,
            },
        ] {
            v.push(Rule {
                matches: vec![m],
                verdict: Verdict::Accept,
                comment: Some(mark.clone()),
            });
        }
    }
    v
}

/// One table's chains and rules as the kernel holds them.
#[derive(Clone, Debug, Default)]
pub struct KContents {
    pub chains: Vec<KChain>,
    pub rules: Vec<KRule>,
}

/// What the kernel holds of nsfw's firewall.
#[derive(Clone, Debug, Default)]
pub struct NftState {
    pub tables: Vec<KTable>,
    /// Contents of every `inet nsfw_*` table, by name.
    pub own: BTreeMap<String, KContents>,
    /// iptables-nft's `ip filter` FORWARD chain, if there is one.
    pub ipt_forward: Option<KChain>,
    pub docker_user: bool,
    /// Rules with an `nsfw:` comment in `ip filter` FORWARD or DOCKER-USER.
    pub placed: Vec<KRule>,
    /// Tables of iptables-legacy in this namespace (/proc/net/ip_tables_names).
    pub legacy_tables: Vec<String>,
    /// `net.bridge.bridge-nf-call-iptables`, when br_netfilter is loaded.
    pub br_nf: Option<bool>,
}

/// Reads nsfw's tables, iptables-nft's FORWARD and DOCKER-USER chains, and the sysctls.
pub fn observe(sock: &mut NftSocket) -> Result<NftState> {
    let mut s = NftState {
        tables: sock.tables()?,
        ..Default::default()
    };
    for t in s.tables.clone() {
        if t.family == Family::Inet && t.name.starts_with("nsfw_") {
            let c = KContents {
                chains: sock.chains(Family::Inet, &t.name)?,
                rules: sock.rules(Family::Inet, &t.name, None)?,
            };
            s.own.insert(t.name.clone(), c);
        }
        if t.family == Family::Ip && t.name == IPT_TABLE {
            let chains = sock.chains(Family::Ip, IPT_TABLE)?;
            s.ipt_forward = chains.iter().find(|c| c.name == IPT_FORWARD).cloned();
            s.docker_user = chains.iter().any(|c| c.name == DOCKER_USER);
            for ch in [IPT_FORWARD, DOCKER_USER] {
                if chains.iter().any(|c| c.name == ch) {
                    s.placed.extend(
                        sock.rules(Family::Ip, IPT_TABLE, Some(ch))?
                            .into_iter()
                            .filter(|r| {
                                r.comment.as_deref().is_some_and(|c| c.starts_with("nsfw:"))
                            }),
                    );
                }
            }
        }
    }
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

/// One nft change, for people (text) and machines (JSON).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftLine {
    /// `+` create, `-` delete, `~` modify.
    pub mark: char,
    /// "table", "chain" or "rule".
    pub kind: &'static str,
    /// "inet nsfw_lab", "ip filter".
    pub table: String,
    pub chain: Option<String>,
    /// The rule in `nft` syntax, or the old → new of a chain; empty for tables.
    pub detail: String,
}

impl NftLine {
    fn new(
        mark: char,
        kind: &'static str,
        table: &str,
        chain: Option<&str>,
        detail: String,
    ) -> NftLine {
        NftLine {
            mark,
            kind,
            table: table.to_string(),
            chain: chain.map(str::to_string),
            detail,
        }
    }

    /// What the change concerns, for grouping: the table, or a chain of another owner.
    pub fn object(&self) -> String {
        if self.table.starts_with("inet nsfw_") {
            format!("nft table {}", self.table)
        } else {
            format!(
                "nft chain {} {}",
                self.table,
                self.chain.as_deref().unwrap_or("")
            )
        }
    }
}

impl std::fmt::Display for NftLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} nft {} {}", self.mark, self.kind, self.table)?;
        if let Some(c) = &self.chain {
            write!(f, " {c}")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// The nft half of a plan: the ops of the one batch, and lines saying what they change.
#[derive(Clone, Debug, Default)]
pub struct NftPlan {
    pub ops: Vec<Op>,
    pub lines: Vec<NftLine>,
    pub conflicts: Vec<String>,
    pub warnings: Vec<String>,
    /// `Some((old, new))`: set bridge-nf-call-iptables.
    pub br_nf: Option<(Option<bool>, bool)>,
}

fn hook_num(h: Hook) -> u32 {
    match h {
        Hook::Forward => libc::NF_INET_FORWARD as u32,
        Hook::Postrouting => libc::NF_INET_POST_ROUTING as u32,
    }
}

fn same_base(want: &Option<Base>, have: &Option<(u32, i32, String, bool)>) -> bool {
    match (want, have) {
        (None, None) => true,
        (Some(w), Some((hook, prio, ty, accept))) => {
            let wty = match w.ty {
                ChainType::Filter => "filter",
                ChainType::Nat => "nat",
            };
            hook_num(w.hook) == *hook
                && w.priority == *prio
                && wty == ty
                && w.policy_accept == *accept
        }
        _ => false,
    }
}

fn describe_base(b: &Option<(u32, i32, String, bool)>) -> String {
    // In the words nft uses, when nsfw knows the hook and type.
    if let Some((hook, prio, ty, accept)) = b {
        let hook = match *hook as i32 {
            libc::NF_INET_FORWARD => Some(Hook::Forward),
            libc::NF_INET_POST_ROUTING => Some(Hook::Postrouting),
            _ => None,
        };
        let ty = match ty.as_str() {
            "filter" => Some(ChainType::Filter),
            "nat" => Some(ChainType::Nat),
            _ => None,
        };
        if let (Some(hook), Some(ty)) = (hook, ty) {
            return Base {
                ty,
                hook,
                priority: *prio,
                policy_accept: *accept,
            }
            .header();
        }
    }
    match b {
        Some((hook, prio, ty, accept)) => {
            let hook = match *hook as i32 {
                libc::NF_INET_FORWARD => "forward".to_string(),
                libc::NF_INET_POST_ROUTING => "postrouting".to_string(),
                h => format!("#{h}"),
            };
            format!(
                "type {ty} hook {hook} priority {prio}; policy {};",
                if *accept { "accept" } else { "drop" }
            )
        }
        None => "a regular chain".into(),
    }
}

/// A dumped rule as a diff shows it: in `nft` syntax when nsfw can read it back.
fn show_rule(k: &KRule) -> String {
    format!(
        "{} (handle {})",
        decode::show(&k.exprs, k.comment.as_deref()),
        k.handle
    )
}

/// Compares the desired table with the kernel's, rule by rule.
fn table_diff(want: &Table, have: Option<&KContents>) -> Result<Vec<NftLine>> {
    let label = format!("{} {}", want.family.as_str(), want.name);
    let Some(have) = have else {
        let mut lines = vec![NftLine::new('+', "table", &label, None, String::new())];
        for c in &want.chains {
            for r in &c.rules {
                lines.push(NftLine::new(
                    '+',
                    "rule",
                    &label,
                    Some(&c.name),
                    r.to_string(),
                ));
            }
        }
        return Ok(lines);
    };
    let mut lines = Vec::new();
    for c in &want.chains {
        match have.chains.iter().find(|k| k.name == c.name) {
            None => lines.push(NftLine::new(
                '+',
                "chain",
                &label,
                Some(&c.name),
                String::new(),
            )),
            Some(k) if !same_base(&c.base, &k.base) => {
                let now = c
                    .base
                    .as_ref()
                    .map(|b| b.header())
                    .unwrap_or_else(|| "a regular chain".into());
                let was = describe_base(&k.base);
                lines.push(NftLine::new(
                    '~',
                    "chain",
                    &label,
                    Some(&c.name),
                    format!("{was} → {now}"),
                ));
            }
            Some(_) => {}
        }
        let kernel: Vec<&KRule> = have.rules.iter().filter(|r| r.chain == c.name).collect();
        let mut wanted = Vec::new();
        for r in &c.rules {
            wanted.push((rule_exprs(want.family, &want.name, &c.name, r)?, r));
        }
        let same = kernel.len() == wanted.len()
            && kernel
                .iter()
                .zip(&wanted)
                .all(|(k, (e, r))| &k.exprs == e && k.comment == r.comment);
        if !same {
            let before = lines.len();
            for k in &kernel {
                if !wanted.iter().any(|(e, _)| e == &k.exprs) {
                    lines.push(NftLine::new(
                        '-',
                        "rule",
                        &label,
                        Some(&c.name),
                        show_rule(k),
                    ));
                }
            }
            for (e, r) in &wanted {
                if !kernel.iter().any(|k| &k.exprs == e) {
                    lines.push(NftLine::new(
                        '+',
                        "rule",
                        &label,
                        Some(&c.name),
                        r.to_string(),
                    ));
                }
            }
            if lines.len() == before {
                lines.push(NftLine::new(
                    '~',
                    "chain",
                    &label,
                    Some(&c.name),
                    "rules out of order".into(),
                ));
            }
        }
    }
    for k in &have.chains {
        if !want.chains.iter().any(|c| c.name == k.name) {
            lines.push(NftLine::new(
                '-',
                "chain",
                &label,
                Some(&k.name),
                String::new(),
            ));
        }
    }
    Ok(lines)
}

/// The nft part of the plan for topology `t`.
pub fn diff(t: &Topology, s: &NftState) -> Result<NftPlan> {
    let mut p = NftPlan::default();
    let mark = t.owner_mark();
    let want = if t.bridges.is_empty() {
        None
    } else {
        Some(table(t))
    };
    let name = table_name(&t.name);
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
    match want {
        Some(want) => {
            let lines = table_diff(&want, existing.and(s.own.get(&name)))?;
            if !lines.is_empty() {
                p.lines.extend(lines);
                p.ops.push(Op::ReplaceTable(want));
            }
        }
        None if existing.is_some() => {
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

    // Docker & co: a FORWARD policy of drop in iptables-nft's table drops nsfw's traffic
    // whatever nsfw's own table says (every base chain on the hook must accept).
    let drop_policy = s
        .ipt_forward
        .as_ref()
        .and_then(|c| c.base.as_ref())
        .is_some_and(|(_, _, _, accept)| !accept);
    let target = if s.docker_user {
        DOCKER_USER
    } else {
        IPT_FORWARD
    };
    let wanted: Vec<(String, Rule)> = if drop_policy {
        ipt_accepts(t)
            .into_iter()
            .map(|r| Ok((rule_exprs(Family::Ip, IPT_TABLE, target, &r)?, r)))
            .collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    let ours: Vec<&KRule> = s
        .placed
        .iter()
        .filter(|r| r.comment.as_deref() == Some(mark.as_str()))
        .collect();
    let in_place = ours.len() == wanted.len()
        && wanted
            .iter()
            .all(|(e, _)| ours.iter().any(|k| k.chain == target && &k.exprs == e));
    let ipt = format!("ip {IPT_TABLE}");
    if !in_place {
        for k in &ours {
            delete_placed(&mut p, k);
        }
        for (_, r) in wanted {
            p.lines
                .push(NftLine::new('+', "rule", &ipt, Some(target), r.to_string()));
            p.ops.push(Op::InsertRule {
                family: Family::Ip,
                table: IPT_TABLE.into(),
                chain: target.into(),
                rule: r,
            });
        }
    }
    if !s.legacy_tables.is_empty() {
        p.warnings.push(format!(
            "iptables-legacy tables are loaded ({}): their rules may drop nsfw's traffic, and nsfw can neither see nor fix them; check `iptables-legacy -S FORWARD`",
            s.legacy_tables.join(", ")
        ));
    }

    // br_netfilter.
    match t.host.br_netfilter {
        BrNetfilter::Auto => {}
        BrNetfilter::Off => {
            if s.br_nf == Some(true) {
                p.br_nf = Some((s.br_nf, false));
            }
        }
        BrNetfilter::On => match s.br_nf {
            None => p.conflicts.push(format!(
                "{}: host.br_netfilter = \"on\": the br_netfilter module is not loaded (no /proc/sys/net/bridge); load it first, nsfw does not load modules",
                t.source.display()
            )),
            Some(false) => p.br_nf = Some((s.br_nf, true)),
            Some(true) => {}
        },
    }
    Ok(p)
}

/// Plans the deletion of a rule nsfw placed in iptables-nft's table.
fn delete_placed(p: &mut NftPlan, k: &KRule) {
    let ipt = format!("ip {IPT_TABLE}");
    p.lines.push(NftLine::new(
        '-',
        "rule",
        &ipt,
        Some(&k.chain),
        show_rule(k),
    ));
    p.ops.push(Op::DeleteRule {
        family: Family::Ip,
        table: IPT_TABLE.into(),
        chain: k.chain.clone(),
        handle: k.handle,
        what: k.comment.clone().unwrap_or_default(),
    });
}

/// The nft part of a flush: nsfw's tables and the rules it placed elsewhere, for the topologies
/// in `owners` (all of them when None).
pub fn flush(owners: Option<&[String]>, s: &NftState) -> NftPlan {
    let owned = |comment: Option<&str>| match (comment, owners) {
        (Some(c), None) => c.starts_with("nsfw:"),
        (Some(c), Some(names)) => names.iter().any(|n| owner_mark(n) == c),
        (None, _) => false,
    };
    let mut p = NftPlan::default();
    for t in &s.tables {
        if t.family == Family::Inet && t.name.starts_with("nsfw_") && owned(t.comment.as_deref()) {
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
        }
    }
    for r in &s.placed {
        if owned(r.comment.as_deref()) {
            delete_placed(&mut p, r);
        }
    }
    p
}

/// Sends the ops as one batch.
pub fn execute(sock: &mut NftSocket, ops: &[Op]) -> Result<()> {
    if ops.is_empty() {
        return Ok(());
    }
    let enc = crate::nft::encode::batch(ops)
        .map_err(|e| anyhow!("encoding the nftables batch: {e:#}"))?;
    sock.send(&enc)
}

/// What `[host] br_netfilter = "auto"` reports.
pub fn br_nf_report(s: &NftState) -> String {
    match s.br_nf {
        None => "br_netfilter: not loaded; bridged traffic bypasses the forward hook".into(),
        Some(true) => "br_netfilter: bridge-nf-call-iptables = 1; traffic between namespaces on a bridge passes nsfw's forward chain, which accepts it".into(),
        Some(false) => "br_netfilter: bridge-nf-call-iptables = 0; bridged traffic bypasses the forward hook".into(),
    }
}
