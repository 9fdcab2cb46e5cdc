//! `[namespaces.*]`: a first pass reads every key; addresses are handed out in a second pass,
//! per family, so that explicit addresses are reserved before any is handed out.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use toml::{Table, Value};

use super::addr::{Family, V4, V6, check_host_address, next_free, parse_cidr, subnet_of};
use super::names::{check_ns_name, derived_mac, host_ifname_salted};
use super::syntax::{Ctx, join};
use super::{Bridge, Iface, Namespace, publish};

const KEYS: [&str; 9] = [
    "bridge",
    "address",
    "address6",
    "ifname",
    "host_ifname",
    "mac",
    "mtu",
    "dns",
    "publish",
];

/// One namespace as first read: its keys, before addresses are handed out.
struct RawNs<'a> {
    name: String,
    table: &'a Table,
    bridge: Option<&'a Bridge>,
    address: Option<IpNetwork>,
    address6: Option<IpNetwork>,
}

/// The bridge's gateway of family `f`, if it has one.
fn gateway(br: &Bridge, f: Family) -> Option<IpNetwork> {
    if f.v6 {
        br.address6.map(IpNetwork::V6)
    } else {
        Some(IpNetwork::V4(br.address))
    }
}

pub(super) fn namespaces(
    cx: &mut Ctx,
    root: &Table,
    topology: &str,
    bridges: &[Bridge],
) -> Vec<Namespace> {
    let mut raw: Vec<RawNs> = Vec::new();
    if let Some(nt) = cx.table(root, "", "namespaces") {
        for (nname, nv) in nt {
            let prefix = join("namespaces", nname);
            let Some(n) = nv.as_table() else {
                cx.err(&prefix, Some(nv), "must be a table ([namespaces.NAME])");
                continue;
            };
            if let Err(why) = check_ns_name(nname) {
                cx.err(&prefix, None, format!("namespace name {nname:?}: {why}"));
            }
            cx.unknown_keys(n, &prefix, &KEYS);
            let bridge = ns_bridge(cx, root, n, &prefix, bridges);
            let address = ns_address(cx, n, &prefix, bridge, V4);
            let address6 = ns_address(cx, n, &prefix, bridge, V6);
            raw.push(RawNs {
                name: nname.clone(),
                table: n,
                bridge,
                address,
                address6,
            });
        }
    }

    // Duplicate addresses, the gateways included.
    let mut used: BTreeMap<IpAddr, String> = BTreeMap::new();
    for b in bridges {
        used.insert(
            b.address.ip().into(),
            format!("bridge {}'s gateway", b.name),
        );
        if let Some(a6) = b.address6 {
            used.insert(a6.ip().into(), format!("bridge {}'s gateway", b.name));
        }
    }
    for r in &raw {
        for (a, f) in [(r.address, V4), (r.address6, V6)] {
            let Some(a) = a else { continue };
            let key = join(&join("namespaces", &r.name), f.key);
            if let Some(other) = used.get(&a.ip()) {
                let v = r.table.get(f.key).cloned();
                cx.err(&key, v.as_ref(), format!("{} is already {other}", a.ip()));
            } else {
                used.insert(a.ip(), format!("namespace {}'s address", r.name));
            }
        }
    }

    let mut host_names: BTreeMap<String, String> = BTreeMap::new();
    for b in bridges {
        host_names.insert(b.name.clone(), format!("bridges.{}", b.name));
    }
    // Names given in the file come first: a derived name steps aside for them.
    let explicit: std::collections::BTreeSet<String> = raw
        .iter()
        .filter_map(|r| {
            r.table
                .get("host_ifname")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        })
        .collect();
    let mut out = Vec::new();
    for r in &raw {
        if let Some(ns) = resolve(cx, topology, r, &mut used, &mut host_names, &explicit) {
            out.push(ns);
        }
    }
    out
}

fn ns_bridge<'a>(
    cx: &mut Ctx,
    root: &Table,
    n: &Table,
    prefix: &str,
    bridges: &'a [Bridge],
) -> Option<&'a Bridge> {
    let Some(b) = cx.string(n, prefix, "bridge") else {
        if !n.contains_key("bridge") {
            cx.err(
                &join(prefix, "bridge"),
                None,
                "missing: the bridge to attach to",
            );
        }
        return None;
    };
    if let Some(br) = bridges.iter().find(|x| x.name == b) {
        return Some(br);
    }
    // A bridge that failed its own checks was already reported.
    let defined = root
        .get("bridges")
        .and_then(|v| v.as_table())
        .is_some_and(|t| t.contains_key(&b));
    if !defined {
        let known: Vec<&str> = bridges.iter().map(|x| x.name.as_str()).collect();
        cx.err(
            &join(prefix, "bridge"),
            n.get("bridge"),
            if known.is_empty() {
                "no such bridge: the file defines no [bridges.*]".to_string()
            } else {
                format!("no such bridge (defined: {})", known.join(", "))
            },
        );
    }
    None
}

/// The namespace's address of family `f` as written, checked against its bridge's subnet.
fn ns_address(
    cx: &mut Ctx,
    n: &Table,
    prefix: &str,
    br: Option<&Bridge>,
    f: Family,
) -> Option<IpNetwork> {
    let s = cx.string(n, prefix, f.key)?;
    let key = join(prefix, f.key);
    let gw = br.and_then(|b| gateway(b, f));
    let Some(gw) = gw else {
        // Still checked for syntax, so the user sees every error at once.
        let why = match (br, parse_cidr(&s, Some(if f.v6 { 64 } else { 24 }), f)) {
            (_, Err(why)) => why,
            (Some(b), Ok(_)) => format!(
                "bridge {} has no {}: give it one ({} = \"...\" on [bridges.{}]) for its namespaces to have one",
                b.name, f.key, f.key, b.name
            ),
            (None, Ok(_)) => return None,
        };
        cx.err(&key, n.get(f.key), why);
        return None;
    };
    let br = br?;
    let a = match parse_cidr(&s, Some(gw.prefix()), f) {
        Ok(a) => a,
        Err(why) => {
            cx.err(&key, n.get(f.key), why);
            return None;
        }
    };
    let subnet = subnet_of(&gw);
    let why = if !subnet.contains(a.ip()) {
        Some(format!("outside bridge {}'s subnet {subnet}", br.name))
    } else if a.prefix() != gw.prefix() {
        Some(format!(
            "prefix /{} differs from bridge {}'s subnet {subnet}",
            a.prefix(),
            br.name
        ))
    } else {
        check_host_address(&a).err()
    };
    match why {
        Some(why) => {
            cx.err(&key, n.get(f.key), why);
            None
        }
        None => Some(a),
    }
}

/// The address of family `f`: as written, or the lowest free one of the bridge's subnet.
fn address_or_next(
    cx: &mut Ctx,
    r: &RawNs,
    br: &Bridge,
    f: Family,
    given: Option<IpNetwork>,
    used: &mut BTreeMap<IpAddr, String>,
) -> Option<IpNetwork> {
    let gw = gateway(br, f)?;
    if given.is_some() || r.table.contains_key(f.key) {
        return given; // an error was reported if it is None
    }
    let subnet = subnet_of(&gw);
    match next_free(subnet, &|ip| used.contains_key(&ip)) {
        Some(a) => {
            used.insert(a.ip(), format!("namespace {}'s address", r.name));
            Some(a)
        }
        None => {
            cx.err(
                &join(&join("namespaces", &r.name), f.key),
                None,
                format!(
                    "no free address left in bridge {}'s subnet {subnet} for this namespace: more namespaces than addresses",
                    br.name
                ),
            );
            None
        }
    }
}

/// The namespace with every default resolved: names, MAC, MTU, DNS, the next free addresses.
fn resolve(
    cx: &mut Ctx,
    topology: &str,
    r: &RawNs,
    used: &mut BTreeMap<IpAddr, String>,
    host_names: &mut BTreeMap<String, String>,
    explicit: &std::collections::BTreeSet<String>,
) -> Option<Namespace> {
    let prefix = join("namespaces", &r.name);
    // The keys that do not depend on the bridge are checked even when it is unknown.
    let ifname = cx
        .ifname(r.table, &prefix, "ifname")
        .unwrap_or_else(|| "eth0".to_string());
    let host_ifname = if r.table.contains_key("host_ifname") {
        cx.ifname(r.table, &prefix, "host_ifname")
    } else {
        // The derived name, salted until it meets no other.
        (0..64u32)
            .map(|salt| host_ifname_salted(&r.name, salt))
            .find(|n| !host_names.contains_key(n) && !explicit.contains(n))
    };
    if let Some(h) = &host_ifname {
        if let Some(other) = host_names.get(h) {
            let v = Value::String(h.clone());
            cx.err(
                &join(&prefix, "host_ifname"),
                Some(&v),
                format!("the host already has this interface name from {other}"),
            );
        } else {
            host_names.insert(h.clone(), prefix.clone());
        }
    }
    let mac = cx.mac(r.table, &prefix);
    let mtu = cx.mtu(r.table, &prefix);
    let dns = dns(cx, r.table, &prefix);
    let publish = publish::read(cx, r.table, &prefix);
    let br = r.bridge?;
    if let Some(m) = mtu
        && m != br.mtu
    {
        cx.err(
            &join(&prefix, "mtu"),
            r.table.get("mtu"),
            format!(
                "one MTU per L2 segment: bridge {} has MTU {}, and a port with another MTU silently loses the larger frames; set `mtu = {m}` on [bridges.{}] instead (every port of a bridge takes its MTU)",
                br.name, br.mtu, br.name
            ),
        );
    }
    let address = address_or_next(cx, r, br, V4, r.address, used);
    let address6 = address_or_next(cx, r, br, V6, r.address6, used);
    let v4: Option<Ipv4Network> = match address? {
        IpNetwork::V4(a) => Some(a),
        IpNetwork::V6(_) => None,
    };
    let v6: Option<Ipv6Network> = match address6 {
        Some(IpNetwork::V6(a)) => Some(a),
        _ => None,
    };
    if br.address6.is_some() && v6.is_none() {
        return None; // reported
    }
    let mut publish = publish;
    for p in publish.iter_mut().filter(|p| p.v6) {
        if v6.is_some() {
            continue;
        }
        if !p.v4 {
            cx.err(
                &join(&prefix, "publish"),
                Some(&toml::Value::String(p.entry.clone())),
                format!(
                    "published over IPv6, but the namespace has no IPv6 address (bridge {} has no address6)",
                    br.name
                ),
            );
        }
        // A plain entry publishes on the families the namespace has.
        p.v6 = false;
    }
    Some(Namespace {
        name: r.name.clone(),
        ifaces: vec![Iface {
            ifname,
            bridge: br.name.clone(),
            address: v4?,
            address6: v6,
            host_ifname: host_ifname?,
            mac: mac.unwrap_or_else(|| derived_mac(topology, "namespace", &r.name)),
            mtu: br.mtu,
        }],
        gateway: Some(br.address.ip()),
        gateway6: br.address6.map(|a| a.ip()),
        dns,
        publish,
    })
}

fn dns(cx: &mut Ctx, t: &Table, prefix: &str) -> Vec<IpAddr> {
    let mut dns = Vec::new();
    let Some(v) = t.get("dns") else {
        return dns;
    };
    let key = join(prefix, "dns");
    match v.as_array() {
        Some(items) => {
            for item in items {
                match item.as_str().map(|s| s.parse::<IpAddr>()) {
                    Some(Ok(ip)) => dns.push(ip),
                    _ => cx.err(&key, Some(item), "not an IP address"),
                }
            }
        }
        None => cx.err(&key, Some(v), "must be a list of IP addresses"),
    }
    dns
}
