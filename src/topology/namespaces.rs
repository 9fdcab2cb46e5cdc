//! `[namespaces.*]`: a first pass reads every key and every interface; addresses are handed
//! out in a second pass, per segment and family, so that explicit addresses are reserved
//! before any is handed out; then each namespace's gateways and routes are checked against
//! the subnets its interfaces are on.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use toml::{Table, Value};

use super::addr::check_unicast;
use super::ifaces::{
    HostNames, IFACE_KEYS, RawIface, iface_address, iface_bridge, resolve, segments,
};
use super::macvlan::{Macvlan, UPLINK_KEYS, on_uplink};
use super::names::{check_ifname, check_ns_name};
use super::publish::Publish;
use super::syntax::{Ctx, join};
use super::{Bridge, Iface, Namespace, StaticRoute, publish, routes};

/// The keys of a namespace beside its interface's (the shorthand) or `interfaces`.
const NS_KEYS: [&str; 11] = [
    "dns",
    "dns_policy",
    "spoof_ok",
    "publish",
    "gateway",
    "gateway6",
    "routes",
    "forward",
    "masquerade",
    "interfaces",
    "ifname",
];

/// One namespace as first read.
struct RawNs<'a> {
    name: String,
    table: &'a Table,
    /// Indexes into the interface list.
    ifaces: Vec<usize>,
    /// Its interfaces on an uplink (read whole: nothing is handed out to them).
    macvlans: Vec<Macvlan>,
}

/// The subnets a namespace's interfaces are on: (IPv4, IPv6), bridge ports and uplink
/// children alike, for its next hops.
type Subnets = Vec<(ipnetwork::Ipv4Network, Option<ipnetwork::Ipv6Network>)>;

fn subnets(ifaces: &[Iface], macvlans: &[Macvlan]) -> Subnets {
    let ports = ifaces.iter().map(|i| (i.address, i.address6));
    ports
        .chain(macvlans.iter().map(|m| (m.address, m.address6)))
        .collect()
}

/// Reads the namespace's interfaces: the `interfaces` tables, or the shorthand.
fn raw_ifaces<'a>(
    cx: &mut Ctx,
    (root, topology): (&Table, &str),
    name: &str,
    n: &'a Table,
    bridges: &'a [Bridge],
    (out, macvlans): (&mut Vec<RawIface<'a>>, &mut Vec<Macvlan>),
) -> Vec<usize> {
    let prefix = join("namespaces", name);
    let mut idx = Vec::new();
    let mut push = |cx: &mut Ctx, ifname: String, p: String, t: &'a Table, seed: String| {
        if on_uplink(t) {
            let m = super::macvlan::read(cx, topology, t, &p, (&ifname, &seed), bridges);
            macvlans.extend(m);
            return;
        }
        let bridge = iface_bridge(cx, root, t, &p, bridges);
        let address = iface_address(cx, t, &p, bridge, false);
        let address6 = iface_address(cx, t, &p, bridge, true);
        idx.push(out.len());
        out.push(RawIface {
            ns: name.to_string(),
            ifname,
            prefix: p,
            table: t,
            bridge,
            address,
            address6,
            seed,
        });
    };
    let Some(v) = n.get("interfaces") else {
        let ifname = cx
            .ifname(n, &prefix, "ifname")
            .unwrap_or_else(|| "eth0".to_string());
        push(cx, ifname, prefix.clone(), n, name.to_string());
        return idx;
    };
    let ikey = join(&prefix, "interfaces");
    let Some(it) = v.as_table() else {
        cx.err(
            &ikey,
            Some(v),
            "must be a table ([namespaces.NAME.interfaces.IFNAME])",
        );
        return idx;
    };
    // The shorthand's keys beside `interfaces` would be ambiguous.
    let uplink_only = UPLINK_KEYS.iter().filter(|k| !IFACE_KEYS.contains(k));
    for k in IFACE_KEYS.iter().chain(uplink_only).chain(&["ifname"]) {
        if let Some(v) = n.get(*k) {
            cx.err(
                &join(&prefix, k),
                Some(v),
                "with [namespaces.NAME.interfaces.*], interface keys go in the interface's table",
            );
        }
    }
    for (ifname, iv) in it {
        let p = join(&ikey, ifname);
        let Some(t) = iv.as_table() else {
            cx.err(&p, Some(iv), "must be a table");
            continue;
        };
        if let Err(why) = check_ifname(ifname) {
            cx.err(&p, None, format!("interface name {ifname:?}: {why}"));
            continue;
        }
        let keys: &[&str] = if on_uplink(t) {
            &UPLINK_KEYS
        } else {
            &IFACE_KEYS
        };
        cx.unknown_keys(t, &p, keys);
        let seed = if ifname == "eth0" {
            name.to_string()
        } else {
            format!("{name}.{ifname}")
        };
        push(cx, ifname.clone(), p, t, seed);
    }
    idx
}

pub(super) fn namespaces(
    cx: &mut Ctx,
    root: &Table,
    topology: &str,
    bridges: &[Bridge],
) -> Vec<Namespace> {
    let mut raw: Vec<RawNs> = Vec::new();
    let mut ifaces: Vec<RawIface> = Vec::new();
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
            let known: Vec<&str> = if n.contains_key("interfaces") {
                NS_KEYS.to_vec()
            } else if on_uplink(n) {
                NS_KEYS.iter().chain(&UPLINK_KEYS).copied().collect()
            } else {
                NS_KEYS.iter().chain(&IFACE_KEYS).copied().collect()
            };
            cx.unknown_keys(n, &prefix, &known);
            let mut macvlans = Vec::new();
            let out = (&mut ifaces, &mut macvlans);
            let idx = raw_ifaces(cx, (root, topology), nname, n, bridges, out);
            raw.push(RawNs {
                name: nname.clone(),
                table: n,
                ifaces: idx,
                macvlans,
            });
        }
    }
    let seg = segments(cx, bridges, &ifaces);
    let mut used = used_addresses(cx, bridges, &ifaces);
    uplink_addresses(cx, &raw, &mut used);
    let mut names = host_names(bridges, &ifaces);
    let mut out = Vec::new();
    for r in &raw {
        let mut resolved = Vec::new();
        let mut ok = true;
        for &i in &r.ifaces {
            match resolve(cx, topology, &ifaces[i], &seg, &mut used, &mut names) {
                Some(x) => resolved.push(x),
                None => ok = false,
            }
        }
        if let Some(ns) = assemble(cx, r, resolved, bridges).filter(|_| ok) {
            out.push(ns);
        }
    }
    out
}

/// The addresses of interfaces on uplinks, added to those in use (a duplicate is an error);
/// and the checks across uplinks.
fn uplink_addresses(cx: &mut Ctx, raw: &[RawNs], used: &mut BTreeMap<IpAddr, String>) {
    let all: Vec<(&str, &Macvlan)> = raw
        .iter()
        .flat_map(|r| r.macvlans.iter().map(move |m| (r.name.as_str(), m)))
        .collect();
    for (ns, m) in &all {
        let addrs = [
            (Some(IpAddr::V4(m.address.ip())), "address"),
            (m.address6.map(|a| IpAddr::V6(a.ip())), "address6"),
        ];
        for (a, key) in addrs {
            let Some(a) = a else { continue };
            if let Some(other) = used.get(&a) {
                let v = toml::Value::String(a.to_string());
                cx.err(
                    &join(&m.key, key),
                    Some(&v),
                    format!("{a} is already {other}"),
                );
            } else {
                used.insert(a, format!("namespace {ns}'s address on {}", m.ifname));
            }
        }
    }
    super::macvlan::check_uplinks(cx, &all);
}

/// Every address in use, the gateways included, by what uses it; a duplicate is an error.
fn used_addresses(
    cx: &mut Ctx,
    bridges: &[Bridge],
    ifaces: &[RawIface],
) -> BTreeMap<IpAddr, String> {
    let mut used: BTreeMap<IpAddr, String> = BTreeMap::new();
    for b in bridges {
        for v6 in [false, true] {
            if let Some(a) = b.gateway_addr(v6) {
                used.insert(a, format!("bridge {}'s gateway", b.name));
            }
        }
    }
    for r in ifaces {
        for (a, key) in [(r.address, "address"), (r.address6, "address6")] {
            let Some(a) = a else { continue };
            if let Some(other) = used.get(&a.ip()) {
                let v = r.table.get(key).cloned();
                cx.err(
                    &join(&r.prefix, key),
                    v.as_ref(),
                    format!("{} is already {other}", a.ip()),
                );
            } else {
                used.insert(a.ip(), r.owner());
            }
        }
    }
    used
}

/// The host's interface names already taken (bridges, their ports), and those the file gives.
fn host_names(bridges: &[Bridge], ifaces: &[RawIface]) -> HostNames {
    let mut names = HostNames {
        taken: bridges
            .iter()
            .map(|b| (b.name.clone(), format!("bridges.{}", b.name)))
            .collect(),
        // Names given in the file come first: a derived name steps aside for them.
        explicit: ifaces
            .iter()
            .filter_map(|r| r.table.get("host_ifname").and_then(Value::as_str))
            .map(str::to_string)
            .collect(),
    };
    for b in bridges {
        for p in &b.ports {
            names
                .taken
                .insert(p.clone(), format!("bridges.{}.ports", b.name));
        }
    }
    names
}

/// Whether `ip` is on a subnet of one of `ifaces` (and not one of their own addresses).
fn connected(ifaces: &Subnets, ip: IpAddr) -> Result<(), String> {
    let own = ifaces
        .iter()
        .any(|(a4, a6)| IpAddr::V4(a4.ip()) == ip || a6.is_some_and(|a| IpAddr::V6(a.ip()) == ip));
    if own {
        return Err(format!("{ip} is the namespace's own address"));
    }
    let on = ifaces.iter().any(|(a4, a6)| match ip {
        IpAddr::V4(_) => ipnetwork::IpNetwork::V4(*a4).contains(ip),
        IpAddr::V6(_) => a6.is_some_and(|a| ipnetwork::IpNetwork::V6(a).contains(ip)),
    });
    if on {
        return Ok(());
    }
    let subnets: Vec<String> = ifaces
        .iter()
        .flat_map(|(a4, a6)| {
            let mut v = vec![super::subnet_of4(a4).to_string()];
            if let Some(a) = *a6 {
                v.push(super::subnet_of(&ipnetwork::IpNetwork::V6(a)).to_string());
            }
            v
        })
        .collect();
    Err(format!(
        "{ip} is on none of the namespace's subnets ({}): a next hop must be directly connected",
        subnets.join(", ")
    ))
}

/// A gateway key (`gateway`, `gateway6`), checked against the interfaces.
fn gateway_key(cx: &mut Ctx, r: &RawNs, ifaces: &Subnets, key: &str, v6: bool) -> Option<IpAddr> {
    let prefix = join("namespaces", &r.name);
    let s = cx.string(r.table, &prefix, key)?;
    let shown = r.table.get(key);
    let ip = match s.parse::<IpAddr>() {
        Ok(ip) if ip.is_ipv6() == v6 => ip,
        _ => {
            let fam = if v6 { "IPv6" } else { "IPv4" };
            cx.err(&join(&prefix, key), shown, format!("not an {fam} address"));
            return None;
        }
    };
    if let Err(why) = check_unicast(ip).and_then(|()| connected(ifaces, ip)) {
        cx.err(&join(&prefix, key), shown, why);
        return None;
    }
    Some(ip)
}

/// The namespace-wide keys: DNS, published ports, gateways, routes, forwarding.
fn assemble(cx: &mut Ctx, r: &RawNs, ifaces: Vec<Iface>, bridges: &[Bridge]) -> Option<Namespace> {
    let prefix = join("namespaces", &r.name);
    let dns = dns(cx, r.table, &prefix);
    let dns_replace = dns_policy(cx, r.table, &prefix);
    let mut publish = publish::read(cx, r.table, &prefix);
    let bridge = |i: &Iface| bridges.iter().find(|b| b.name == i.bridge);
    let nets = subnets(&ifaces, &r.macvlans);
    let given4 = gateway_key(cx, r, &nets, "gateway", false);
    let given6 = gateway_key(cx, r, &nets, "gateway6", true);
    let routes = ns_routes(cx, r, &nets, [given4.is_some(), given6.is_some()]);
    // A default route in `routes` stands for the gateway; both would be two defaults.
    let routed_default = |v6: bool| {
        routes
            .iter()
            .any(|x| x.is_default() && x.to.is_ipv6() == v6)
    };
    // By default, the host's address on the first interface's segment that has one.
    let gateway: Option<Ipv4Addr> = match given4 {
        Some(IpAddr::V4(a)) => Some(a),
        _ if routed_default(false) => None,
        _ => ifaces
            .iter()
            .find_map(|i| bridge(i).and_then(|b| b.address))
            .map(|a| a.ip()),
    };
    let gateway6: Option<Ipv6Addr> = match given6 {
        Some(IpAddr::V6(a)) => Some(a),
        _ if routed_default(true) => None,
        _ => ifaces
            .iter()
            .filter(|i| i.address6.is_some())
            .find_map(|i| bridge(i).and_then(|b| b.address6))
            .map(|a| a.ip()),
    };
    let (masquerade, forward) = routing(cx, r, &ifaces);
    check_publish(cx, r, &mut publish, &ifaces, bridges);
    let spoof_ok = super::identity::spoof_ok(cx, r.table, &prefix, &ifaces);
    let mut seen = BTreeSet::new();
    for i in &ifaces {
        if !seen.insert(&i.bridge) {
            cx.err(
                &join(&prefix, "interfaces"),
                None,
                format!(
                    "two interfaces on bridge {}: one namespace, one port per segment",
                    i.bridge
                ),
            );
        }
    }
    Some(Namespace {
        name: r.name.clone(),
        ifaces,
        macvlans: r.macvlans.clone(),
        gateway,
        gateway6,
        routes,
        forward,
        masquerade,
        dns,
        dns_replace,
        publish,
        spoof_ok,
    })
}

/// `routes`, each through a connected next hop; `given`: whether `gateway` and `gateway6` are
/// set, which a default route in `routes` would say twice.
fn ns_routes(cx: &mut Ctx, r: &RawNs, ifaces: &Subnets, given: [bool; 2]) -> Vec<StaticRoute> {
    let prefix = join("namespaces", &r.name);
    let routes: Vec<StaticRoute> = routes::read(cx, r.table, &prefix)
        .into_iter()
        .filter_map(|(rt, v)| match connected(ifaces, rt.via) {
            Ok(()) => Some(rt),
            Err(why) => {
                cx.err(&join(&prefix, "routes"), Some(v), format!("via {why}"));
                None
            }
        })
        .collect();
    for (given, v6, key) in [(given[0], false, "gateway"), (given[1], true, "gateway6")] {
        if given
            && routes
                .iter()
                .any(|x| x.is_default() && x.to.is_ipv6() == v6)
        {
            cx.err(
                &join(&prefix, key),
                r.table.get(key),
                "`routes` has a default route too: say it once",
            );
        }
    }
    routes
}

/// `masquerade` (one of the namespace's interfaces) and `forward` (on when it masquerades).
fn routing(cx: &mut Ctx, r: &RawNs, ifaces: &[Iface]) -> (Option<String>, bool) {
    let prefix = join("namespaces", &r.name);
    let masquerade = cx.ifname(r.table, &prefix, "masquerade");
    if let Some(m) = &masquerade
        && !ifaces.iter().any(|i| &i.ifname == m)
    {
        let names: Vec<&str> = ifaces.iter().map(|i| i.ifname.as_str()).collect();
        cx.err(
            &join(&prefix, "masquerade"),
            r.table.get("masquerade"),
            format!(
                "not an interface of the namespace (it has: {})",
                names.join(", ")
            ),
        );
    }
    let forward = match cx.boolean(r.table, &prefix, "forward") {
        Some(false) if masquerade.is_some() => {
            cx.err(
                &join(&prefix, "forward"),
                r.table.get("forward"),
                "a namespace that masquerades forwards: leave `forward` out or set it true",
            );
            false
        }
        Some(f) => f,
        None => masquerade.is_some(),
    };
    (masquerade, forward)
}

/// Published ports: on the families the namespace has (a plain entry publishes on those), and
/// through a first interface on a bridge the host has an address on.
fn check_publish(
    cx: &mut Ctx,
    r: &RawNs,
    publish: &mut [Publish],
    ifaces: &[Iface],
    bridges: &[Bridge],
) {
    let prefix = join("namespaces", &r.name);
    let has6 = ifaces.first().is_some_and(|i| i.address6.is_some());
    for p in publish.iter_mut().filter(|p| p.v6 && !has6) {
        if !p.v4 {
            cx.err(
                &join(&prefix, "publish"),
                Some(&Value::String(p.entry.clone())),
                "published over IPv6, but the namespace's first interface has no IPv6 address (its bridge has no address6)",
            );
        }
        p.v6 = false;
    }
    if !publish.is_empty()
        && ifaces
            .first()
            .and_then(|i| bridges.iter().find(|b| b.name == i.bridge))
            .is_none_or(|b| b.address.is_none())
    {
        cx.err(
            &join(&prefix, "publish"),
            r.table.get("publish"),
            "published ports reach the namespace through the host: its first interface must be on a bridge the host has an address on",
        );
    }
}

/// `dns_policy`: "keep" (the default: a resolv.conf nsfw did not write is left alone, and
/// only that step of the apply fails) or "replace" (nsfw writes its own over it).
fn dns_policy(cx: &mut Ctx, t: &Table, prefix: &str) -> bool {
    match t.get("dns_policy") {
        None => false,
        Some(v) => match v.as_str() {
            Some("keep") => false,
            Some("replace") => true,
            _ => {
                cx.err(
                    &join(prefix, "dns_policy"),
                    Some(v),
                    "must be \"keep\" or \"replace\"",
                );
                false
            }
        },
    }
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
