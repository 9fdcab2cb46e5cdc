//! Validation of a topology file into a [`Topology`]. Every check records its error and goes
//! on, so one run reports everything wrong with a file. Whatever the kernel would refuse
//! part-way through an apply is refused here, before anything changes.

use std::collections::BTreeSet;
use std::path::Path;

use ipnetwork::IpNetwork;
use toml::{Table, Value};

use super::addr::{V4, V6, check_gateway, overlaps, parse_cidr, subnet_of};
use super::names::{check_ifname, check_topology_name};
use super::syntax::{Ctx, join, line_col};
use super::{BrNetfilter, Bridge, Errors, Host, MAX_BRIDGE_PORTS, Mac, Namespace, Topology};

const BRIDGE_KEYS: [&str; 15] = [
    "vxlan",
    "egress_via",
    "ports",
    "take_addresses",
    "isolate",
    "egress",
    "address",
    "address6",
    "masquerade",
    "masquerade6",
    "uplink",
    "mtu",
    "mac",
    "overlap",
    "overlap6",
];

pub(super) fn parse(text: &str, source: &Path) -> Result<Topology, Errors> {
    let file = source.display().to_string();
    if text.trim().is_empty() {
        return Err(Errors(vec![format!(
            "{file}: the file is empty (it needs at least `name = \"...\"`)"
        )]));
    }
    let (root, origins) = match super::tree::read(text, &file) {
        Ok(t) => t,
        Err(e) => {
            let msg = e.message().trim().to_string();
            // An error without a place (the reader's nesting limit) names the file alone.
            let at = match e.span().map(|s| line_col(text, s.start)) {
                Some((line, col)) => format!("{file}:{line}:{col}"),
                None => file,
            };
            let msg = if msg.contains("recursion limit") {
                "tables or arrays nested too deeply (a topology needs a handful of levels)"
                    .to_string()
            } else {
                msg
            };
            return Err(Errors(vec![format!("{at}: not valid TOML: {msg}")]));
        }
    };
    let mut cx = Ctx::new(file);
    cx.unknown_keys(
        &root,
        "",
        &[
            "name",
            "host",
            "bridges",
            "namespaces",
            "allow",
            "deny",
            "verify",
        ],
    );
    let name = topology_name(&mut cx, &root);
    let bridges = bridges(&mut cx, &root, &name);
    let host = host(&mut cx, &root, &bridges);
    let namespaces = super::namespaces::namespaces(&mut cx, &root, &name, &bridges);
    super::egress::check_veths(&mut cx, &bridges, &namespaces);
    check_macs(&mut cx, &bridges, &namespaces);
    super::publish::check_clashes(&mut cx, &namespaces);
    check_port_counts(&mut cx, &bridges, &namespaces);
    super::vxlan::check(&mut cx, &bridges, &namespaces);
    let policy = super::policy::read(&mut cx, &root, &bridges, &namespaces);
    let mut warnings = super::policy::lint(&cx.file, &bridges, &namespaces, &policy);
    warnings.extend(super::routes::lint(&cx.file, &host.routes, &namespaces));
    warnings.extend(super::names::mac_lint(&cx.file, &bridges, &namespaces));
    warnings.extend(super::macvlan::lint(&cx.file, &namespaces, &policy));
    let verify = super::verify::read(&mut cx, &root);
    warnings.append(&mut cx.warnings);
    if cx.errors.is_empty() {
        Ok(Topology {
            name,
            source: source.to_path_buf(),
            host,
            bridges,
            namespaces,
            policy,
            warnings,
            verify,
            origins,
        })
    } else {
        Err(Errors(cx.errors))
    }
}

fn topology_name(cx: &mut Ctx, root: &Table) -> String {
    match cx.string(root, "", "name") {
        Some(n) => {
            if let Err(why) = check_topology_name(&n) {
                cx.err("name", root.get("name"), why);
            }
            n
        }
        None => {
            if !root.contains_key("name") {
                cx.err(
                    "name",
                    None,
                    "missing: every topology needs a name (1-16 of [a-z0-9_])",
                );
            }
            String::new()
        }
    }
}

/// A bridge's gateway address of one family (`address`, `address6`), checked.
fn gateway_key(cx: &mut Ctx, b: &Table, prefix: &str, f: super::addr::Family) -> Option<IpNetwork> {
    let s = cx.string(b, prefix, f.key)?;
    match parse_cidr(&s, None, f).and_then(|n| check_gateway(&n).map(|()| n)) {
        Ok(n) => Some(n),
        Err(why) => {
            cx.err(&join(prefix, f.key), b.get(f.key), why);
            None
        }
    }
}

/// `[bridges.*]`, then the ports and subnets against each other.
fn bridges(cx: &mut Ctx, root: &Table, topology: &str) -> Vec<Bridge> {
    let mut out: Vec<Bridge> = Vec::new();
    let Some(bt) = cx.table(root, "", "bridges") else {
        return out;
    };
    for (bname, bv) in bt {
        out.extend(bridge(cx, bname, bv, topology));
    }
    check_ports(cx, &out);
    super::egress::check(cx, &out);
    check_overlaps(cx, &out);
    out
}

/// One `[bridges.NAME]`; None when it is too broken to go on with (its errors recorded).
fn bridge(cx: &mut Ctx, bname: &str, bv: &Value, topology: &str) -> Option<Bridge> {
    let prefix = join("bridges", bname);
    let Some(b) = bv.as_table() else {
        cx.err(&prefix, Some(bv), "must be a table ([bridges.NAME])");
        return None;
    };
    let name_ok = match check_ifname(bname) {
        Ok(()) => true,
        Err(why) => {
            cx.err(&prefix, None, format!("bridge name {bname:?}: {why}"));
            false
        }
    };
    cx.unknown_keys(b, &prefix, &BRIDGE_KEYS);
    let address = gateway_key(cx, b, &prefix, V4);
    let address6 = gateway_key(cx, b, &prefix, V6);
    if b.contains_key("address6") && !b.contains_key("address") {
        cx.err(
            &join(&prefix, "address6"),
            b.get("address6"),
            "the host needs an IPv4 address on a segment it has an IPv6 one on (give `address` too, or neither for an L2-only segment)",
        );
    }
    let (ports, take_addresses) = ports(cx, b, &prefix);
    let masquerade = cx.boolean(b, &prefix, "masquerade").unwrap_or(false);
    let masquerade6 = cx.boolean(b, &prefix, "masquerade6").unwrap_or(false);
    if masquerade6 && address6.is_none() && !b.contains_key("address6") {
        cx.err(
            &join(&prefix, "masquerade6"),
            b.get("masquerade6"),
            "the bridge has no address6 to masquerade",
        );
    }
    let uplink = cx.ifname(b, &prefix, "uplink");
    let (vxlan, mtu, mac) = super::vxlan::link_settings(cx, b, (&prefix, bname), topology);
    if address6.is_some() && mtu < 1280 {
        cx.err(
            &join(&prefix, "mtu"),
            b.get("mtu"),
            "IPv6 needs an MTU of at least 1280 (the kernel drops IPv6 from a smaller link)",
        );
    }
    let overlap = cx.choice(b, &prefix, "overlap", &["deny", "allow"]);
    let overlap6 = cx.choice(b, &prefix, "overlap6", &["deny", "allow"]);
    let isolate = cx.boolean(b, &prefix, "isolate").unwrap_or(false);
    let egress = cx.choice(b, &prefix, "egress", &["allow", "deny"]);
    let egress_via = super::egress::read(cx, b, &prefix);
    let failed = |k: &str| b.contains_key(k) && !matches!(address, Some(IpNetwork::V4(_)));
    if !name_ok || failed("address") {
        return None;
    }
    for (a, key) in [
        (masquerade, "masquerade"),
        (b.contains_key("uplink"), "uplink"),
    ] {
        if a && address.is_none() {
            cx.err(
                &join(&prefix, key),
                b.get(key),
                "an L2-only bridge (no address) routes nothing through the host: masquerade in the router namespace (`masquerade = \"IFNAME\"` on it) instead",
            );
        }
    }
    Some(Bridge {
        name: bname.to_string(),
        address: match address {
            Some(IpNetwork::V4(a)) => Some(a),
            _ => None,
        },
        address6: match address6 {
            Some(IpNetwork::V6(a)) => Some(a),
            _ => None,
        },
        masquerade,
        masquerade6,
        uplink,
        mtu,
        mtu_set: b.contains_key("mtu"),
        mac,
        overlap_allowed: overlap.as_deref() == Some("allow")
            || overlap6.as_deref() == Some("allow"),
        isolate,
        egress_deny: egress.as_deref() == Some("deny"),
        egress_via,
        ports,
        take_addresses,
        lan: Vec::new(),
        vxlan,
    })
}

/// A bridge's physical `ports`, and `take_addresses`.
fn ports(cx: &mut Ctx, b: &Table, prefix: &str) -> (Vec<String>, bool) {
    let ports: Vec<String> = cx
        .strings(b, prefix, "ports")
        .into_iter()
        .filter_map(|(p, v)| match check_ifname(&p) {
            Ok(()) => Some(p),
            Err(why) => {
                cx.err(&join(prefix, "ports"), Some(v), why);
                None
            }
        })
        .collect();
    let take_addresses = cx.boolean(b, prefix, "take_addresses").unwrap_or(false);
    if take_addresses && ports.is_empty() {
        cx.err(
            &join(prefix, "take_addresses"),
            b.get("take_addresses"),
            "the bridge has no `ports` to take addresses from",
        );
    }
    (ports, take_addresses)
}

/// A physical port belongs to one bridge, and is not one of the file's bridges.
fn check_ports(cx: &mut Ctx, out: &[Bridge]) {
    let mut claimed: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    for b in out {
        for p in &b.ports {
            if let Some(other) = claimed.insert(p, &b.name) {
                let v = Value::String(p.clone());
                cx.err(
                    &join(&join("bridges", &b.name), "ports"),
                    Some(&v),
                    format!("already a port of bridge {other}"),
                );
            } else if out.iter().any(|x| &x.name == p) {
                let v = Value::String(p.clone());
                cx.err(
                    &join(&join("bridges", &b.name), "ports"),
                    Some(&v),
                    "that is a bridge of this file",
                );
            }
        }
    }
}

/// Overlapping subnets make routing ambiguous: every pair is refused, in each family.
fn check_overlaps(cx: &mut Ctx, out: &[Bridge]) {
    for i in 0..out.len() {
        for j in (i + 1)..out.len() {
            let (bi, bj) = (&out[i], &out[j]);
            let pairs = [
                (
                    bi.address.map(IpNetwork::V4),
                    bj.address.map(IpNetwork::V4),
                    "address",
                ),
                (
                    bi.address6.map(IpNetwork::V6),
                    bj.address6.map(IpNetwork::V6),
                    "address6",
                ),
            ];
            for (a, b, key) in pairs {
                let (Some(a), Some(b)) = (a, b) else { continue };
                let (sa, sb) = (subnet_of(&a), subnet_of(&b));
                if overlaps(sa, sb) {
                    let v = Value::String(b.to_string());
                    cx.err(
                        &join(&join("bridges", &bj.name), key),
                        Some(&v),
                        format!("subnet {sb} overlaps {sa} of bridge {}", bi.name),
                    );
                }
            }
        }
    }
}

fn host(cx: &mut Ctx, root: &Table, bridges: &[Bridge]) -> Host {
    let any_masq = bridges.iter().any(|b| b.masquerade);
    let mut host = Host {
        ip_forward: if any_masq { Some(true) } else { None },
        br_netfilter: BrNetfilter::Auto,
        protect: false,
        routes: Vec::new(),
    };
    if let Some(h) = cx.table(root, "", "host") {
        cx.unknown_keys(
            h,
            "host",
            &["ip_forward", "br_netfilter", "protect", "routes"],
        );
        host.protect = cx.boolean(h, "host", "protect").unwrap_or(false);
        for (r, v) in super::routes::read(cx, h, "host") {
            // The next hop is on a segment the host has an address on.
            let on = bridges.iter().any(|b| {
                [b.address.map(IpNetwork::V4), b.address6.map(IpNetwork::V6)]
                    .into_iter()
                    .flatten()
                    .any(|a| a.contains(r.via) && a.ip() != r.via)
            });
            if on {
                host.routes.push(r);
            } else {
                cx.err(
                    "host.routes",
                    Some(v),
                    format!(
                        "via {} is on none of the subnets the host has an address on (a bridge's `address`): a next hop must be directly connected",
                        r.via
                    ),
                );
            }
        }
        if !host.routes.is_empty() && host.ip_forward.is_none() {
            host.ip_forward = Some(true);
        }
        if let Some(f) = cx.boolean(h, "host", "ip_forward") {
            host.ip_forward = Some(f);
        }
        if let Some(s) = cx.choice(h, "host", "br_netfilter", &["auto", "off", "on"]) {
            host.br_netfilter = match s.as_str() {
                "off" => BrNetfilter::Off,
                "on" => BrNetfilter::On,
                _ => BrNetfilter::Auto,
            };
        }
    }
    host
}

/// MACs must be unique on a bridge's segment; checked across the whole file.
fn check_macs(cx: &mut Ctx, bridges: &[Bridge], namespaces: &[Namespace]) {
    let mut macs: BTreeSet<Mac> = BTreeSet::new();
    let all = bridges
        .iter()
        .map(|b| (join(&join("bridges", &b.name), "mac"), b.mac))
        .chain(
            namespaces
                .iter()
                .flat_map(|n| n.ifaces.iter().map(|i| (join(&i.key, "mac"), i.mac))),
        );
    for (key, mac) in all {
        if !macs.insert(mac) {
            let v = Value::String(mac.to_string());
            cx.err(&key, Some(&v), "this MAC is used twice in the file");
        }
    }
}

/// A bridge takes at most 1023 ports; the 1024th fails with EXFULL after the others are made.
fn check_port_counts(cx: &mut Ctx, bridges: &[Bridge], namespaces: &[Namespace]) {
    for b in bridges {
        let n = namespaces
            .iter()
            .flat_map(|n| &n.ifaces)
            .filter(|i| i.bridge == b.name)
            .count()
            + b.ports.len();
        if n > MAX_BRIDGE_PORTS {
            cx.err(
                &join("bridges", &b.name),
                None,
                format!(
                    "{n} namespaces on one bridge: a Linux bridge takes at most {MAX_BRIDGE_PORTS} ports; spread them over several bridges"
                ),
            );
        }
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
