//! The host's metrics: what `nsfw status` reads (every topology by its marks, the counters of
//! its table, per namespace and per published port), and the conntrack entries of each
//! topology's subnets by zone, as metric families.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::{Family, Type};
use crate::firewall::conntrack::CtEntry;
use crate::status::{self, Topology};

/// Why a counted drop rule of nsfw's table drops, from its text (`nsfw status` shows it).
fn reason(chain: &str, rule: &str) -> &'static str {
    if chain == "identity" {
        // Port security (the bridge table): a forged IP source, or another's MAC, ARP or
        // neighbour discovery identity (or a frame of another ethertype).
        return if rule.contains(" saddr != @addr") && rule.contains("@routed") {
            "spoofed"
        } else {
            "impersonated"
        };
    }
    if rule.contains("ct state invalid") {
        "invalid"
    } else if rule.contains("!= @src4") || rule.contains("!= @src6") {
        "spoofed"
    } else if rule.contains("@egress_deny") || rule.contains("@egress_confined") {
        "egress_denied"
    } else if rule.contains("deny") {
        "denied"
    } else if chain == "to_host" {
        "host_protected"
    } else if chain == "guard" {
        "localhost_guard"
    } else if rule.contains("oifname @bridges") {
        "unsolicited"
    } else {
        "other"
    }
}

/// What a masquerade rule translates: a subnet, hairpin or localhost connections.
fn source(rule: &str) -> String {
    if rule.contains("ct status dnat") {
        if rule.contains("@src") {
            "hairpin".into()
        } else {
            "localhost".into()
        }
    } else {
        rule.split_whitespace()
            .skip_while(|w| *w != "saddr")
            .nth(1)
            .unwrap_or("other")
            .to_string()
    }
}

fn l(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

/// The families of the topologies' state and counters.
fn topologies(ts: &[Topology]) -> Vec<Family> {
    let mut info = Family::new(
        "nsfw_topology_info",
        Type::Gauge,
        "A topology nsfw has marked something of on this host (1), with its table when loaded.",
    );
    let mut sync = Family::new(
        "nsfw_topology_in_sync",
        Type::Gauge,
        "With FILE: 1 when the host matches the topology file, 0 when it differs.",
    );
    let mut nss = Family::new(
        "nsfw_topology_namespaces",
        Type::Gauge,
        "Namespaces of the topology on this host.",
    );
    let mut up = Family::new("nsfw_bridge_up", Type::Gauge, "1 when the bridge is up.");
    let mut ports = Family::new(
        "nsfw_bridge_ports",
        Type::Gauge,
        "Interfaces enslaved to the bridge.",
    );
    let mut ns_up = Family::new(
        "nsfw_namespace_interfaces_up",
        Type::Gauge,
        "Interfaces of the namespace that are up (lo left out).",
    );
    for t in ts {
        let name = t.name.as_str();
        info.add(
            l(&[
                ("topology", name),
                ("table", t.table.as_deref().unwrap_or("")),
            ]),
            1.0,
        );
        if let Some(s) = t.in_sync {
            sync.add(l(&[("topology", name)]), f64::from(u8::from(s)));
        }
        nss.add(l(&[("topology", name)]), t.namespaces.len() as f64);
        for b in &t.bridges {
            let lb = l(&[("topology", name), ("bridge", &b.iface.name)]);
            up.add(lb.clone(), f64::from(u8::from(b.iface.up)));
            ports.add(lb, b.ports as f64);
        }
        for (n, ifs) in &t.namespaces {
            let count = ifs.iter().filter(|i| i.up).count();
            ns_up.add(l(&[("topology", name), ("namespace", n)]), count as f64);
        }
    }
    vec![info, sync, nss, up, ports, ns_up]
}

/// The families of the tables' counters.
fn counters(ts: &[Topology]) -> Vec<Family> {
    let mut pk = Family::new(
        "nsfw_chain_packets_total",
        Type::Counter,
        "Packets the counted rules of a chain of nsfw's table let through (accept), dropped (drop) or masqueraded (masquerade: a connection's first packet).",
    );
    let mut by = Family::new(
        "nsfw_chain_bytes_total",
        Type::Counter,
        "Bytes of those packets.",
    );
    let mut drops = Family::new(
        "nsfw_dropped_packets_total",
        Type::Counter,
        "Packets nsfw's table dropped, by chain and reason (invalid, spoofed, impersonated, denied, egress_denied, unsolicited, host_protected, localhost_guard).",
    );
    let mut spoof = Family::new(
        "nsfw_antispoofing_dropped_packets_total",
        Type::Counter,
        "Packets dropped because their source address does not belong to the bridge they came from, or to the namespace port they came from.",
    );
    let mut masq = Family::new(
        "nsfw_masqueraded_connections_total",
        Type::Counter,
        "Connections masqueraded by nsfw's table, by the source it translates (a subnet, hairpin, localhost).",
    );
    for t in ts {
        let name = t.name.as_str();
        // Per family, over the chains that judge sources (the inet table's and port
        // security's): one sample each.
        let mut spoofed: BTreeMap<&str, u64> = BTreeMap::new();
        for c in &t.chains {
            for (verdict, k) in [
                ("accept", c.accepted),
                ("drop", c.dropped),
                ("masquerade", c.translated),
            ] {
                let action = if verdict == "masquerade" {
                    "translate"
                } else {
                    verdict
                };
                if !c.rules.iter().any(|r| r.1 == action) {
                    continue;
                }
                let lb = l(&[("topology", name), ("chain", &c.name), ("verdict", verdict)]);
                pk.add(lb.clone(), k.packets as f64);
                by.add(lb, k.bytes as f64);
            }
            let mut reasons: BTreeMap<&str, u64> = BTreeMap::new();
            let mut masqs: BTreeMap<String, u64> = BTreeMap::new();
            for (text, action, k) in &c.rules {
                match *action {
                    "drop" => {
                        let why = reason(&c.name, text);
                        *reasons.entry(why).or_default() += k.packets;
                        if why == "spoofed" {
                            let family = if text.contains("@src6") || text.contains("@addr6") {
                                "ipv6"
                            } else {
                                "ipv4"
                            };
                            *spoofed.entry(family).or_default() += k.packets;
                        }
                    }
                    "translate" => *masqs.entry(source(text)).or_default() += k.packets,
                    _ => {}
                }
            }
            for (why, n) in reasons {
                drops.add(
                    l(&[("topology", name), ("chain", &c.name), ("reason", why)]),
                    n as f64,
                );
            }
            for (src, n) in masqs {
                masq.add(l(&[("topology", name), ("source", &src)]), n as f64);
            }
        }
        for (family, n) in spoofed {
            spoof.add(l(&[("topology", name), ("family", family)]), n as f64);
        }
    }
    vec![pk, by, drops, spoof, masq]
}

/// Per namespace and per published port, from the sets whose elements count.
fn elements(ts: &[Topology]) -> Vec<Family> {
    let mut np = Family::new(
        "nsfw_namespace_dropped_packets_total",
        Type::Counter,
        "Packets nsfw's table dropped that came from the namespace (direction=from) or were for it (direction=to).",
    );
    let mut nb = Family::new(
        "nsfw_namespace_dropped_bytes_total",
        Type::Counter,
        "Bytes of those packets.",
    );
    let mut pub_ = Family::new(
        "nsfw_published_port_connections_total",
        Type::Counter,
        "Connections translated to a published port (host address empty: any of the host's).",
    );
    for t in ts {
        let name = t.name.as_str();
        for d in &t.namespace_drops {
            for (dir, k) in [("from", d.from), ("to", d.to)] {
                let lb = l(&[
                    ("topology", name),
                    ("namespace", &d.namespace),
                    ("direction", dir),
                ]);
                np.add(lb.clone(), k.packets as f64);
                nb.add(lb, k.bytes as f64);
            }
        }
        for p in &t.published {
            let ports = if p.host_ports.0 == p.host_ports.1 {
                p.host_ports.0.to_string()
            } else {
                format!("{}-{}", p.host_ports.0, p.host_ports.1)
            };
            let proto = match p.proto {
                6 => "tcp".to_string(),
                17 => "udp".to_string(),
                n => n.to_string(),
            };
            let host = p.host_addr.map(|a| a.to_string()).unwrap_or_default();
            let lb = l(&[
                ("topology", name),
                ("protocol", &proto),
                ("host_address", &host),
                ("host_port", &ports),
                ("namespace", p.namespace.as_deref().unwrap_or("")),
                ("port", &p.port.to_string()),
            ]);
            pub_.add(lb, p.connections as f64);
        }
    }
    vec![np, nb, pub_]
}

/// The subnets a topology's namespaces are on.
fn subnets(t: &Topology) -> Vec<IpNetwork> {
    let mut v: Vec<IpNetwork> = t
        .namespaces
        .iter()
        .flat_map(|(_, ifs)| ifs.iter().flat_map(|i| i.addresses.iter()))
        .filter(|a| !matches!(a.ip(), IpAddr::V6(x) if x.segments()[0] & 0xffc0 == 0xfe80))
        .filter_map(|a| IpNetwork::new(a.network(), a.prefix()).ok())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Conntrack entries from or to a topology's subnets, by zone (nsfw's own, 28275, holds what
/// is bridged over L2-only segments).
fn conntrack(ts: &[Topology], entries: &[CtEntry]) -> Family {
    let mut f = Family::new(
        "nsfw_conntrack_entries",
        Type::Gauge,
        "Conntrack entries of the host whose original source or destination is on one of the topology's subnets, by conntrack zone (28275: nsfw's zone for traffic bridged over L2-only segments).",
    );
    for t in ts {
        let nets = subnets(t);
        let mut by: BTreeMap<u16, u64> = BTreeMap::new();
        for (zone, s, d) in entries {
            if nets.iter().any(|n| n.contains(*s) || n.contains(*d)) {
                *by.entry(*zone).or_default() += 1;
            }
        }
        by.entry(0).or_default();
        for (zone, n) in by {
            f.add(
                l(&[("topology", &t.name), ("zone", &zone.to_string())]),
                n as f64,
            );
        }
    }
    f
}

/// Every host family; `entries` is None when conntrack could not be read.
pub(crate) fn families(ts: &[Topology], entries: Option<&[CtEntry]>) -> Vec<Family> {
    let mut v = topologies(ts);
    v.extend(counters(ts));
    v.extend(elements(ts));
    if let Some(e) = entries {
        v.push(conntrack(ts, e));
    }
    v
}

/// Reads the host as `nsfw status` does (no lock: counters need none), and conntrack.
pub(crate) fn scrape() -> anyhow::Result<Vec<Family>> {
    let (ts, entries) = read()?;
    Ok(families(&ts, entries.as_deref()))
}

/// The topologies on the host and the conntrack entries (None when ctnetlink cannot answer:
/// nf_conntrack not loaded).
pub(crate) fn read() -> anyhow::Result<(Vec<Topology>, Option<Vec<CtEntry>>)> {
    let mut nft = nft::socket::NftSocket::open()?;
    let deep = |_: &str, owner: Option<&str>| owner.and_then(crate::owner::topology_of).is_some();
    let none = |_: &str| Vec::new();
    let q = crate::plumbing::Query {
        deep: &deep,
        ns_sysctls: &none,
        host_sysctls: Vec::new(),
        known: None,
        asking: None,
        peek: false,
    };
    let o = crate::plumbing::observe(&q)?;
    let ts = status::gather(&o, &crate::firewall::observe(&mut nft)?);
    let entries = crate::firewall::conntrack::entries(&mut nft).ok();
    Ok((ts, entries))
}
