//! The trace read into steps (each rule met, named as nft prints it, nsfw's mapped to the file
//! entry behind them), where the file and the kernel disagree, and the answer as text and JSON.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::Result;
use nft::Family;
use nft::dump::Dumped;
use nft::socket::NftSocket;
use nft::trace::{Event, Kind};
use serde_json::{Value, json};

use super::{Answer, FileAnswer, KernelAnswer, Question, Step, drops, first_packet};
use crate::oracle::Party;
use crate::topology::Entry;
use crate::topology::Topology;

/// Every table of namespace `at` (`host`: here), read back.
fn tables(at: &str) -> Result<Vec<Dumped>> {
    let read = || -> Result<Vec<Dumped>> {
        let mut sock = NftSocket::open()?;
        let infos = sock.tables()?;
        infos.iter().map(|i| sock.read_table(i)).collect()
    };
    if at == "host" {
        read()
    } else {
        crate::plumbing::netns::run_in(at, read)
    }
}

/// The rule of `table`'s `chain` with `handle`, as nft prints it (without counters).
fn rule_text(
    tables: &[Dumped],
    family: u8,
    table: &str,
    chain: &str,
    handle: u64,
) -> Option<String> {
    let d = tables.iter().find(|d| {
        let s = d.structure();
        s.name() == table && u32::from(s.family().nfproto()) == u32::from(family)
    })?;
    let i = d.handles.get(chain)?.iter().position(|h| *h == handle)?;
    let r = d.structure().chain(chain)?.rules.get(i)?;
    Some(crate::doctor::judge::shown(r))
}

/// The hook of the chain an event is in (None: not a base chain, or not found).
fn hook_of(tabs: &[Dumped], e: &Event) -> Option<nft::Hook> {
    let d = tabs.iter().find(|d| {
        let s = d.structure();
        s.name() == e.table && u32::from(s.family().nfproto()) == u32::from(e.family)
    })?;
    d.structure().chain(&e.chain)?.base.as_ref().map(|b| b.hook)
}

fn family_name(f: u8) -> &'static str {
    Family::from_nfproto(u32::from(f))
        .map(Family::as_str)
        .unwrap_or("?")
}

/// An event as the answer shows it: the rule (as nft prints it, with its handle) or policy, and
/// the verdict.
fn described(e: &Event, tabs: &[Dumped]) -> (String, String) {
    let what = match e.kind {
        Kind::Policy => format!(
            "policy {}",
            if e.policy == Some(0) {
                "drop"
            } else {
                "accept"
            }
        ),
        Kind::Return => "end of chain (return)".into(),
        Kind::Rule => e
            .handle
            .and_then(|h| {
                rule_text(tabs, e.family, &e.table, &e.chain, h)
                    .map(|r| format!("{r} (handle {h})"))
            })
            .unwrap_or_else(|| format!("rule handle {}", e.handle.unwrap_or(0))),
        Kind::Other(n) => format!("event type {n}"),
    };
    let verdict = match (&e.kind, &e.verdict) {
        (Kind::Policy, _) => {
            if e.policy == Some(0) {
                "drop".into()
            } else {
                "accept".into()
            }
        }
        (_, Some(v)) => v.to_string(),
        (_, None) => String::new(),
    };
    (what, verdict)
}

/// The trace events of each namespace read into the kernel's answer.
pub(super) fn read_trace(
    t: &Topology,
    events: &[(String, Vec<Event>)],
    f: &FileAnswer,
) -> Result<KernelAnswer> {
    let ours = crate::owner::table(&t.name);
    let mut k = KernelAnswer {
        passed: true,
        ..Default::default()
    };
    let mut read: BTreeMap<String, Vec<Dumped>> = BTreeMap::new();
    for (at, evs) in events {
        let evs = first_packet(evs);
        if evs.is_empty() {
            continue;
        }
        k.traced = true;
        if !read.contains_key(at) {
            read.insert(at.clone(), tables(at)?);
        }
        let tabs = read.get(at).map(Vec::as_slice).unwrap_or_default();
        for e in evs {
            let is_ours = e.table == ours;
            // The trace chains' own rule is no part of the answer; a rule event without a
            // rule is the packet entering a chain (its rules and policy say the rest).
            if is_ours && super::kernel::is_trace_chain(&e.chain)
                || e.kind == Kind::Rule && e.handle.is_none_or(|h| h == 0)
            {
                continue;
            }
            let (what, verdict) = described(e, tabs);
            let dropped = drops(e);
            // nsfw's filter verdicts come from the file's policy: the entry that decides this
            // flow is the one whose element its sets hold.
            // The file's entry goes with the step that carries out its verdict: the drop of a
            // blocked flow; for an allowed one, its last accept by nsfw's filter (below).
            let entry = (is_ours && !f.allowed && dropped).then(|| f.decided_by.clone());
            if dropped {
                k.passed = false;
                if !is_ours && k.foreign_drop.is_none() {
                    k.foreign_drop = Some(format!(
                        "table {} {} chain {} {what}",
                        family_name(e.family),
                        e.table,
                        e.chain
                    ));
                }
            }
            k.steps.push(Step {
                at: at.clone(),
                table: format!("{} {}", family_name(e.family), e.table),
                chain: e.chain.clone(),
                what,
                verdict,
                entry,
                ours: is_ours,
                drops: dropped,
                hook: hook_of(tabs, e),
            });
        }
    }
    if f.allowed {
        tag_allowed(&mut k.steps, f);
    }
    if !k.traced {
        // What the probe itself saw is all there is (the caller says).
        k.notes.push("no trace event: the packet met none of nsfw's trace chains: a chain before them dropped it, or it never reached a hook (a frame between two isolated ports of a bridge is dropped by the bridge itself, an unanswered ARP or neighbour solicitation keeps it from being sent)".into());
    }
    Ok(k)
}

/// An allowed flow's verdict is carried out by the last filter accept of nsfw's (not a NAT
/// rule's, nor a bridged hop's on the way): that step gets the file's entry.
fn tag_allowed(steps: &mut [Step], f: &FileAnswer) {
    // (NAT chains sit on prerouting and postrouting; the host's filter decides before a
    // router's, whose steps come after the host's.) A published port's DNAT carries it too.
    let filter_accept = |s: &Step| {
        s.ours
            && s.verdict == "accept"
            && !s.what.starts_with("policy")
            && !matches!(s.hook, Some(nft::Hook::Prerouting | nft::Hook::Postrouting))
    };
    {
        let at_host = steps.iter().any(|s| s.at == "host" && filter_accept(s));
        if let Some(st) = steps
            .iter_mut()
            .rev()
            .find(|s| filter_accept(s) && (s.at == "host" || !at_host))
        {
            st.entry = Some(f.decided_by.clone());
        }
        if matches!(f.entry, Some(Entry::Publish { .. })) {
            for st in steps
                .iter_mut()
                .filter(|s| s.ours && s.what.contains("dnat"))
            {
                st.entry = Some(f.decided_by.clone());
            }
        }
    }
}

/// Why the file and the kernel disagree, and what to do; empty when they agree.
pub(super) fn disagreement(
    t: &Topology,
    from: &Party,
    to: &Party,
    q: &Question,
    f: &FileAnswer,
    k: &KernelAnswer,
) -> Vec<String> {
    if f.allowed == k.passed {
        return Vec::new();
    }
    if f.allowed && !k.trace_dropped {
        return unanswered(t, q, f, k);
    }
    if !f.allowed {
        return vec![format!(
            "the file closes this flow ({}), but the kernel let the packet through: `nsfw diff` says whether nsfw's table is out of date",
            f.decided_by
        )];
    }
    let mut out = vec![match &k.foreign_drop {
        Some(by) => format!(
            "the file allows this flow ({}), but the kernel drops it: {by}",
            f.decided_by
        ),
        None => format!(
            "the file allows this flow ({}), but nsfw's own table drops it: `nsfw diff` says whether it is out of date, `nsfw apply` puts it right",
            f.decided_by
        ),
    }];
    if k.foreign_drop.is_some()
        && let Party::Ns(ns, from_ip) = from
        && let Some(i) = t
            .namespaces
            .iter()
            .find(|n| &n.name == ns)
            .and_then(|n| n.primary())
    {
        let l4 = (if q.proto == 1 && q.v6 { 58 } else { q.proto }, q.port);
        match crate::doctor::Diagnosis::read() {
            // doctor's guess at iptables-legacy is noise where an nft table visibly dropped it.
            Ok(d) => out.extend(
                d.why(t, &i.bridge, *from_ip, to.addr(), l4)
                    .into_iter()
                    .filter(|w| !w.contains("iptables-legacy"))
                    .map(|w| format!("fix: {w}")),
            ),
            Err(e) => out.push(format!("cannot read the other tables for the fix: {e:#}")),
        }
    }
    // Doctor reads the ruleset as apply leaves it: what apply would put right it does not
    // name, and a drop it cannot see (a rule on a hook its flows leave out) neither.
    let has_fix = out.iter().any(|l| {
        ["nft ", "iptables ", "nsfw apply", "firewall-cmd"]
            .iter()
            .any(|c| l.contains(c))
    });
    if !has_fix && let Some(st) = k.steps.iter().find(|s| s.drops && !s.ours) {
        out.push(format!(
            "fix: {}",
            own_fix(t, f, st, (from.addr(), to.addr()))
        ));
    }
    out
}

/// The file allows the flow, the probe got no answer, and no chain the trace saw dropped it:
/// say so first, then what can drop a packet where the trace cannot see.
fn unanswered(t: &Topology, q: &Question, f: &FileAnswer, k: &KernelAnswer) -> Vec<String> {
    let mut out = vec![format!(
        "the file allows this flow ({}), but the probe got no answer, and {}",
        f.decided_by,
        if k.traced {
            "no chain the trace saw dropped it"
        } else {
            "no trace event was seen at all"
        }
    )];
    let bridges = path_bridges(t, f);
    let ours = crate::owner::table(&t.name);
    let unseen = super::unseen::explain(&super::traced_nodes(t, f), &ours, q.v6, &bridges);
    if unseen.is_empty() {
        out.push("cause: no table nsfw can read drops it before its trace chains, and no iptables-legacy table drops: the far end did not answer (nothing there, no route, or its own firewall)".into());
    }
    out.extend(unseen.into_iter().map(|l| {
        if l.starts_with("fix: ") {
            l
        } else {
            format!("cause: {l}")
        }
    }));
    out
}

/// The bridges the flow crosses: those on its path, and the bridge of each namespace on it
/// (the host's flow to a namespace leaves by that namespace's bridge).
pub(super) fn path_bridges(t: &Topology, f: &FileAnswer) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in &f.path {
        let b = match t.namespaces.iter().find(|n| &n.name == p) {
            Some(n) => n.primary().map(|i| i.bridge.clone()),
            None => t.bridge(p).map(|_| p.clone()),
        };
        if let Some(b) = b.filter(|b| !out.contains(b)) {
            out.push(b);
        }
    }
    out
}

/// The fix for a foreign chain that dropped the packet: accepts for the bridges on its way at
/// the top of that chain, or the chain's policy; iptables' own way for iptables-nft's tables.
fn own_fix(t: &Topology, f: &FileAnswer, st: &Step, ends: (IpAddr, IpAddr)) -> String {
    let (family, table) = st
        .table
        .split_once(' ')
        .unwrap_or(("inet", st.table.as_str()));
    let bridges = path_bridges(t, f);
    let ipt = matches!(family, "ip" | "ip6")
        && matches!(table, "filter" | "nat" | "mangle" | "raw" | "security");
    let cmd = if family == "ip6" {
        "ip6tables"
    } else {
        "iptables"
    };
    // Only the interface the hook knows: prerouting and input know where a packet came in,
    // output and postrouting where it goes; a rule on the other would never match.
    let dirs: &[(&str, &str)] = match st.hook {
        Some(nft::Hook::Prerouting | nft::Hook::Input) => &[("iifname", "-i")],
        Some(nft::Hook::Output | nft::Hook::Postrouting) => &[("oifname", "-o")],
        _ => &[("iifname", "-i"), ("oifname", "-o")],
    };
    let mut accepts = Vec::new();
    // A bridge-family chain knows a frame by its ports, not by the bridge: the flow's
    // addresses match it there.
    if family == "bridge" {
        let ip = if ends.0.is_ipv6() { "ip6" } else { "ip" };
        accepts.push(format!(
            "nft insert rule bridge {table} {} {ip} saddr {} {ip} daddr {} accept",
            st.chain, ends.0, ends.1
        ));
    }
    for b in bridges.iter().filter(|_| family != "bridge") {
        for (nft_dir, ipt_dir) in dirs {
            accepts.push(if ipt {
                format!("{cmd} -t {table} -I {} {ipt_dir} {b} -j ACCEPT", st.chain)
                    .replace(" -t filter", "")
            } else {
                format!(
                    "nft insert rule {family} {table} {} {nft_dir} \"{b}\" accept",
                    st.chain
                )
            });
        }
    }
    let head = match (ipt, st.what.starts_with("policy")) {
        (true, true) if st.chain == crate::firewall::IPT_FORWARD => format!(
            "`nsfw apply` puts its accepts at the top of {} when it finds this policy (Docker sets it when it starts after nsfw): run it again; by hand",
            st.chain
        ),
        (_, true) => format!("let the topology's bridges through {table}'s {}", st.chain),
        (_, false) => format!(
            "remove or narrow the rule `{}`, or let the topology's bridges through before it",
            st.what
        ),
    };
    format!("{head}: {}", accepts.join("; "))
}

/// The answer as text: the disagreement first.
pub(crate) fn text(a: &Answer) -> String {
    let mut s = String::new();
    let mut line = |l: String| {
        s.push_str(&l);
        s.push('\n');
    };
    line(format!("why {}", a.question));
    for d in &a.disagreement {
        if let Some(fix) = d.strip_prefix("fix: ") {
            line(format!("  fix: {fix}"));
        } else if let Some(c) = d.strip_prefix("cause: ") {
            line(format!("  cause: {c}"));
        } else {
            line(format!("DISAGREE: {d}"));
        }
    }
    let f = &a.file;
    line(format!(
        "file:   {} by {}",
        if f.allowed { "allowed" } else { "blocked" },
        f.decided_by
    ));
    line(format!("  path: {}", f.path.join(" → ")));
    for n in &f.nat {
        line(format!("  nat:  {n}"));
    }
    let k = &a.kernel;
    let fate = match (k.traced, k.trace_dropped, k.passed) {
        (_, true, _) => "dropped",
        (_, false, true) => "passed",
        (true, false, false) => "no drop traced, yet not passed",
        (false, false, false) => "not traced, not passed",
    };
    line(format!(
        "kernel: {fate} ({})",
        if k.answered { "answered" } else { "no answer" }
    ));
    for st in &k.steps {
        let by = st
            .entry
            .as_ref()
            .map(|e| format!("  ← {e}"))
            .unwrap_or_default();
        line(format!(
            "  {} {} {}: {} → {}{by}",
            st.at, st.table, st.chain, st.what, st.verdict
        ));
    }
    for n in &k.notes {
        line(format!("  note: {n}"));
    }
    s
}

/// The answer as JSON (docs/json.md).
pub(crate) fn to_json(a: &Answer) -> Value {
    let f = &a.file;
    let k = &a.kernel;
    json!({
        "schema": 1,
        "question": a.question,
        "agree": a.disagreement.is_empty(),
        "disagreement": a.disagreement,
        "file": {
            "allowed": f.allowed,
            "decided_by": f.decided_by,
            "entry": f.entry.as_ref().map(|e| e.tag()),
            "path": f.path,
            "nat": f.nat,
        },
        "kernel": {
            "traced": k.traced,
            "passed": k.passed,
            "answered": k.answered,
            "foreign_drop": k.foreign_drop,
            "trace_dropped": k.trace_dropped,
            "steps": k.steps.iter().map(|s| json!({
                "at": s.at,
                "table": s.table,
                "chain": s.chain,
                "rule": s.what,
                "verdict": s.verdict,
                "nsfw": s.ours,
                "entry": s.entry,
                "drops": s.drops,
            })).collect::<Vec<_>>(),
            "notes": k.notes,
        },
    })
}
