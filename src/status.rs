//! `nsfw status`: what nsfw owns on this host, per topology, found by its marks alone (no
//! file needed): namespaces by the alias of their `lo`, bridges by their alias, the table by
//! its comment. For each: namespaces and their interfaces with addresses, bridges, the ports
//! published (read from the table's publish maps), and the table's counters per chain.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde_json::{Value as J, json};

use crate::firewall::publish::{ANY, ANY6, AT, AT6};
use crate::owner::{self, topology_of};
use crate::plumbing::NodeObs;
use crate::plumbing::Observed;
use nft::dump::Dumped;
use nft::{ElemData, Rule, Stmt, Value, Verdict};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Iface {
    pub name: String,
    pub up: bool,
    pub addresses: Vec<IpNetwork>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Bridge {
    pub iface: Iface,
    pub ports: usize,
}

/// A port published on the host.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Published {
    pub proto: u8,
    pub host_addr: Option<IpAddr>,
    /// Inclusive range of host ports, and the namespace port the first one goes to.
    pub host_ports: (u16, u16),
    pub address: IpAddr,
    pub port: u16,
    pub namespace: Option<String>,
    /// Connections translated to it (its map elements' counters; 0 in a table without them).
    pub connections: u64,
}

/// Packets and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Count {
    pub packets: u64,
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, p: u64, b: u64) {
        self.packets += p;
        self.bytes += b;
    }
    fn json(&self) -> J {
        json!({"packets": self.packets, "bytes": self.bytes})
    }
}

/// The counters of one chain, by what its counted rules do.
#[derive(Clone, Debug, Default)]
pub(crate) struct Chain {
    pub name: String,
    pub accepted: Count,
    pub dropped: Count,
    /// Masqueraded (first packets of the connections).
    pub translated: Count,
    /// Each counted rule: its text without the counter, what it does, its count.
    pub rules: Vec<(String, &'static str, Count)>,
}

/// Packets the table dropped that came from or were for one namespace (the counted sets of
/// `firewall::account`), summed over its addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NsDrops {
    pub namespace: String,
    pub from: Count,
    pub to: Count,
}

/// One topology as the host holds it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Topology {
    pub name: String,
    /// `inet nsfw_<name>` when the table is there.
    pub table: Option<String>,
    pub bridges: Vec<Bridge>,
    pub namespaces: Vec<(String, Vec<Iface>)>,
    pub published: Vec<Published>,
    pub chains: Vec<Chain>,
    /// Drops per namespace (namespaces with none are listed too, with zeros).
    pub namespace_drops: Vec<NsDrops>,
    /// With FILE: whether the host matches it (None: not compared).
    pub in_sync: Option<bool>,
}

fn ifaces(node: &NodeObs, keep: &dyn Fn(&crate::plumbing::Link) -> bool) -> Vec<Iface> {
    node.links
        .iter()
        .filter(|l| keep(l))
        .map(|l| Iface {
            name: l.name.clone(),
            up: l.up,
            addresses: node
                .addrs
                .iter()
                .filter(|a| a.index == l.index)
                .map(|a| a.net)
                .collect(),
        })
        .collect()
}

/// What a counted rule does.
fn action(r: &Rule) -> &'static str {
    match r.stmts.last() {
        Some(Stmt::Verdict(Verdict::Accept)) => "accept",
        Some(Stmt::Verdict(Verdict::Drop)) | Some(Stmt::Reject(_)) => "drop",
        // A drop counted per namespace on its way (firewall::account).
        Some(Stmt::Verdict(Verdict::Goto(c)))
            if c == crate::firewall::account::DROPPED
                || c.starts_with(crate::firewall::droplog::CHAIN_PREFIX) =>
        {
            "drop"
        }
        Some(Stmt::Masquerade(_) | Stmt::Nat(_) | Stmt::Redirect(_)) => "translate",
        _ => "count",
    }
}

fn counters(d: &Dumped) -> Vec<Chain> {
    let mut out = Vec::new();
    for c in d.structure().chains() {
        let mut ch = Chain {
            name: c.name.clone(),
            ..Default::default()
        };
        for r in &c.rules {
            let Some((p, b)) = r.stmts.iter().find_map(|s| match s {
                Stmt::Counter(k) => Some((k.packets, k.bytes)),
                _ => None,
            }) else {
                continue;
            };
            let what = action(r);
            match what {
                "accept" => ch.accepted.add(p, b),
                "drop" => ch.dropped.add(p, b),
                "translate" => ch.translated.add(p, b),
                _ => {}
            }
            ch.rules.push((
                crate::doctor::judge::shown(r),
                what,
                Count {
                    packets: p,
                    bytes: b,
                },
            ));
        }
        if !ch.rules.is_empty() {
            out.push(ch);
        }
    }
    out
}

/// The published ports of a table's maps, consecutive ports folded into ranges.
fn published(d: &Dumped, owner: &dyn Fn(IpAddr) -> Option<String>) -> Vec<Published> {
    let mut v = Vec::new();
    // The maps' elements, which a dump keeps as kernel bytes until asked.
    let Ok(table) = d.decoded() else {
        return v;
    };
    for name in [ANY, AT, ANY6, AT6] {
        let Some(set) = table.set(name) else {
            continue;
        };
        let counts = d.element_counters(name).unwrap_or_default();
        let count_of = |e: &nft::Element| {
            counts
                .iter()
                .find(|(k, _)| k.key == e.key)
                .map_or(0, |(_, c)| c.packets)
        };
        for e in &set.elements {
            let (mut host_addr, mut proto, mut port) = (None, None, None);
            for k in &e.key {
                match k {
                    Value::Ipv4(a) => host_addr = Some(IpAddr::V4(*a)),
                    Value::Ipv6(a) => host_addr = Some(IpAddr::V6(*a)),
                    Value::Proto(p) => proto = Some(*p),
                    Value::Port(p) => port = Some(*p),
                    _ => {}
                }
            }
            let Some(ElemData::Values(data)) = &e.data else {
                continue;
            };
            let to = data.iter().find_map(|x| match x {
                Value::Ipv4(a) => Some(IpAddr::V4(*a)),
                Value::Ipv6(a) => Some(IpAddr::V6(*a)),
                _ => None,
            });
            let to_port = data.iter().find_map(|x| match x {
                Value::Port(p) => Some(*p),
                _ => None,
            });
            if let (Some(proto), Some(port), Some(to), Some(to_port)) = (proto, port, to, to_port) {
                v.push(Published {
                    proto,
                    host_addr,
                    host_ports: (port, port),
                    address: to,
                    port: to_port,
                    namespace: owner(to),
                    connections: count_of(e),
                });
            }
        }
    }
    v.sort();
    let mut out: Vec<Published> = Vec::new();
    for p in v {
        if let Some(last) = out.last_mut() {
            let next = u32::from(last.host_ports.1) + 1;
            let offset = u32::from(last.host_ports.1 - last.host_ports.0) + 1;
            if last.proto == p.proto
                && last.host_addr == p.host_addr
                && last.address == p.address
                && u32::from(p.host_ports.0) == next
                && u32::from(p.port) == u32::from(last.port) + offset
            {
                last.host_ports.1 = p.host_ports.0;
                last.connections += p.connections;
                continue;
            }
        }
        out.push(p);
    }
    out
}

/// The drops of each namespace, from the counted sets (addresses to namespaces by `owner`).
fn namespace_drops(d: &Dumped, owner: &dyn Fn(IpAddr) -> Option<String>) -> Vec<NsDrops> {
    use crate::firewall::account::{FROM4, FROM6, TO4, TO6};
    let mut by: BTreeMap<String, NsDrops> = BTreeMap::new();
    for (set, from) in [(FROM4, true), (TO4, false), (FROM6, true), (TO6, false)] {
        for (e, c) in d.element_counters(set).unwrap_or_default() {
            let Some(ns) = e.key.first().and_then(|v| match v {
                Value::Ipv4(a) => owner(IpAddr::V4(*a)),
                Value::Ipv6(a) => owner(IpAddr::V6(*a)),
                _ => None,
            }) else {
                continue;
            };
            let n = by.entry(ns.clone()).or_insert_with(|| NsDrops {
                namespace: ns,
                ..Default::default()
            });
            let k = if from { &mut n.from } else { &mut n.to };
            k.add(c.packets, c.bytes);
        }
    }
    by.into_values().collect()
}

/// Every topology the host holds marks of.
pub(crate) fn gather(o: &Observed, nft: &crate::firewall::NftState) -> Vec<Topology> {
    let mut names: BTreeSet<String> = BTreeSet::new();
    let owner = |m: Option<&str>| m.and_then(topology_of).map(str::to_string);
    names.extend(
        o.namespaces
            .values()
            .filter_map(|n| owner(n.owner.as_deref())),
    );
    names.extend(
        o.host
            .links
            .iter()
            .filter_map(|l| owner(l.alias.as_deref())),
    );
    names.extend(
        nft.tables
            .iter()
            .filter(|t| owner::is_table(&t.name))
            .filter_map(|t| owner(t.comment.as_deref())),
    );
    // Which namespace holds an address, for the published ports.
    let mut holder: BTreeMap<IpAddr, String> = BTreeMap::new();
    for (n, ns) in &o.namespaces {
        for a in &ns.node.addrs {
            holder.insert(a.net.ip(), n.clone());
        }
    }
    let mut out = Vec::new();
    for name in names {
        let mark = owner::mark(&name);
        let mut t = Topology {
            name: name.clone(),
            ..Default::default()
        };
        let ours = |l: &crate::plumbing::Link| l.alias.as_deref() == Some(&mark);
        for b in ifaces(&o.host, &|l| ours(l) && l.kind.as_deref() == Some("bridge")) {
            let index = o.host.link(&b.name).map(|l| l.index);
            let ports = o
                .host
                .links
                .iter()
                .filter(|l| l.master.is_some() && l.master == index)
                .count();
            t.bridges.push(Bridge { iface: b, ports });
        }
        for (n, ns) in &o.namespaces {
            if ns.owner.as_deref() == Some(&mark) {
                t.namespaces
                    .push((n.clone(), ifaces(&ns.node, &|l| l.name != "lo")));
            }
        }
        let table = owner::table(&name);
        if let Some(d) = nft.own.get(&table)
            && d.structure().comment() == Some(mark.as_str())
        {
            t.table = Some(format!("inet {table}"));
            t.chains = counters(d);
            t.published = published(d, &|a| holder.get(&a).cloned());
            t.namespace_drops = namespace_drops(d, &|a| holder.get(&a).cloned());
        }
        // Port security's counters (its `identity` chain), with the rest.
        if let Some(d) = nft.bridge.get(&table)
            && d.structure().comment() == Some(mark.as_str())
        {
            t.chains.extend(counters(d));
        }
        out.push(t);
    }
    out
}

fn proto_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        n => n.to_string(),
    }
}

fn host_side(p: &Published) -> String {
    let ports = if p.host_ports.0 == p.host_ports.1 {
        p.host_ports.0.to_string()
    } else {
        format!("{}-{}", p.host_ports.0, p.host_ports.1)
    };
    match p.host_addr {
        Some(IpAddr::V6(a)) => format!("[{a}]:{ports}"),
        Some(a) => format!("{a}:{ports}"),
        None => ports,
    }
}

fn addrs(i: &Iface) -> String {
    let v: Vec<String> = i.addresses.iter().map(|a| a.to_string()).collect();
    if v.is_empty() {
        "(no address)".into()
    } else {
        v.join(" ")
    }
}

/// One line per object of a topology, `KIND NAME` (`nsfw list`).
pub(crate) fn names(t: &Topology) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(table) = &t.table {
        out.push(format!("table {table}"));
    }
    out.extend(t.bridges.iter().map(|b| format!("bridge {}", b.iface.name)));
    out.extend(t.namespaces.iter().map(|(n, _)| format!("namespace {n}")));
    for p in &t.published {
        let ports = match p.host_ports {
            (a, b) if a == b => a.to_string(),
            (a, b) => format!("{a}-{b}"),
        };
        let at = match p.host_addr {
            Some(IpAddr::V6(a)) => format!("[{a}]:"),
            Some(a) => format!("{a}:"),
            None => String::new(),
        };
        out.push(format!("port {}/{at}{ports}", proto_name(p.proto)));
    }
    out
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sync = match self.in_sync {
            Some(true) => " (in sync with the file)",
            Some(false) => " (differs from the file: `nsfw diff` shows how)",
            None => "",
        };
        writeln!(f, "topology {}{sync}", self.name)?;
        for b in &self.bridges {
            let state = if b.iface.up { "" } else { ", down" };
            writeln!(
                f,
                "  bridge {}: {} ({} port(s){state})",
                b.iface.name,
                addrs(&b.iface),
                b.ports
            )?;
        }
        for (n, ifs) in &self.namespaces {
            let mut s = String::new();
            for i in ifs {
                let _ = write!(s, " {} {};", i.name, addrs(i));
            }
            writeln!(f, "  namespace {n}:{}", s.trim_end_matches(';'))?;
        }
        for p in &self.published {
            let to = match (p.address, &p.namespace) {
                (IpAddr::V6(a), Some(n)) => format!("{n} [{a}]:{}", p.port),
                (a, Some(n)) => format!("{n} {a}:{}", p.port),
                (IpAddr::V6(a), None) => format!("[{a}]:{}", p.port),
                (a, None) => format!("{a}:{}", p.port),
            };
            writeln!(
                f,
                "  published {}/{} → {to} ({} connection(s))",
                host_side(p),
                proto_name(p.proto),
                p.connections
            )?;
        }
        for d in self
            .namespace_drops
            .iter()
            .filter(|d| d.from.packets + d.to.packets > 0)
        {
            writeln!(
                f,
                "  dropped {}: {} packets from it, {} packets to it",
                d.namespace, d.from.packets, d.to.packets
            )?;
        }
        match &self.table {
            None => writeln!(f, "  no nftables table (`nsfw apply` makes it)")?,
            Some(t) => {
                writeln!(f, "  counters of table {t}:")?;
                for c in &self.chains {
                    let mut parts = Vec::new();
                    for (word, k) in [
                        ("accepted", c.accepted),
                        ("dropped", c.dropped),
                        ("masqueraded", c.translated),
                    ] {
                        if c.rules.iter().any(|r| match word {
                            "accepted" => r.1 == "accept",
                            "dropped" => r.1 == "drop",
                            _ => r.1 == "translate",
                        }) {
                            parts.push(format!("{word} {} packets ({} bytes)", k.packets, k.bytes));
                        }
                    }
                    writeln!(f, "    {:<12} {}", c.name, parts.join(", "))?;
                }
            }
        }
        Ok(())
    }
}

/// The topologies as JSON (docs/json.md).
pub(crate) fn to_json(ts: &[Topology]) -> J {
    let iface = |i: &Iface| {
        json!({
            "name": i.name,
            "up": i.up,
            "addresses": i.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        })
    };
    let items: Vec<J> = ts
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "table": t.table,
                "in_sync": t.in_sync,
                "bridges": t.bridges.iter().map(|b| {
                    let mut j = iface(&b.iface);
                    j["ports"] = b.ports.into();
                    j
                }).collect::<Vec<_>>(),
                "namespaces": t.namespaces.iter().map(|(n, ifs)| json!({
                    "name": n,
                    "interfaces": ifs.iter().map(iface).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "published": t.published.iter().map(|p| json!({
                    "protocol": proto_name(p.proto),
                    "host_address": p.host_addr.map(|a| a.to_string()),
                    "host_ports": [p.host_ports.0, p.host_ports.1],
                    "namespace": p.namespace,
                    "address": p.address.to_string(),
                    "port": p.port,
                    "connections": p.connections,
                })).collect::<Vec<_>>(),
                "namespace_drops": t.namespace_drops.iter().map(|d| json!({
                    "namespace": d.namespace,
                    "from": d.from.json(),
                    "to": d.to.json(),
                })).collect::<Vec<_>>(),
                "chains": t.chains.iter().map(|c| json!({
                    "name": c.name,
                    "accepted": c.accepted.json(),
                    "dropped": c.dropped.json(),
                    "translated": c.translated.json(),
                    "rules": c.rules.iter().map(|(r, what, k)| json!({
                        "rule": r,
                        "action": what,
                        "packets": k.packets,
                        "bytes": k.bytes,
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"schema": 1, "topologies": items})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::{PUBLISH, read_back, topology};

    /// A table as the (fake) kernel gives it back right after it was loaded: every
    /// namespace's drop count is there and zero, every published port has counted nothing.
    #[test]
    fn a_table_just_loaded_counts_nothing_for_each_namespace_and_port() {
        let d = read_back(&crate::firewall::table(&topology("pub", PUBLISH))).expect("reads back");
        let owner = |a: IpAddr| {
            let ns = match a.to_string().as_str() {
                "10.10.0.2" | "fd00:10::2" => "web",
                "10.10.0.3" | "fd00:10::3" => "dns",
                _ => return None,
            };
            Some(ns.to_string())
        };
        let drops = namespace_drops(&d, &owner);
        let names: Vec<&str> = drops.iter().map(|n| n.namespace.as_str()).collect();
        assert_eq!(names, ["dns", "web"]);
        assert!(
            drops
                .iter()
                .all(|n| n.from == Count::default() && n.to == Count::default())
        );
        let p = published(&d, &owner);
        assert!(
            p.iter()
                .any(|p| p.port == 80 && p.namespace.as_deref() == Some("web"))
        );
        assert!(p.iter().all(|p| p.connections == 0), "{p:?}");
    }
}
