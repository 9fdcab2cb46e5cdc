//! Validation of a topology file into a [`Topology`]. Every check records its error and goes
//! on, so one run reports everything wrong with a file. Whatever the kernel would refuse
//! part-way through an apply is refused here, before anything changes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use ipnetwork::Ipv4Network;
use toml::{Table, Value};

use super::addr::{check_gateway, check_host_address, overlaps, parse_cidr};
use super::names::{
    check_ifname, check_ns_name, check_topology_name, derived_mac, host_ifname_for,
};
use super::syntax::{Ctx, join, line_col};
use super::{BrNetfilter, Bridge, Errors, Host, Iface, MAX_BRIDGE_PORTS, Mac, Namespace, Topology};

const DEFAULT_MTU: u32 = 1500;
const NS_KEYS: [&str; 7] = [
    "bridge",
    "address",
    "ifname",
    "host_ifname",
    "mac",
    "mtu",
    "dns",
];

pub fn parse(text: &str, source: &Path) -> Result<Topology, Errors> {
    let file = source.display().to_string();
    if text.trim().is_empty() {
        return Err(Errors(vec![format!(
            "{file}: the file is empty (it needs at least `name = \"...\"`)"
        )]));
    }
    let root: Table = match text.parse::<Table>() {
        Ok(t) => t,
        Err(e) => {
            let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            let msg = e.message().trim().to_string();
            return Err(Errors(vec![format!(
                "{file}:{line}:{col}: not valid TOML: {msg}"
            )]));
        }
    };
    let mut cx = Ctx::new(file);
    cx.unknown_keys(&root, "", &["name", "host", "bridges", "namespaces"]);
    let name = topology_name(&mut cx, &root);
    let bridges = bridges(&mut cx, &root, &name);
    let host = host(&mut cx, &root, &bridges);
    let namespaces = namespaces(&mut cx, &root, &name, &bridges);
    check_macs(&mut cx, &bridges, &namespaces);
    check_publish_clashes(&mut cx, &namespaces);
    check_port_counts(&mut cx, &bridges, &namespaces);
    if cx.errors.is_empty() {
        Ok(Topology {
            name,
            source: source.to_path_buf(),
            host,
            bridges,
            namespaces,
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

/// `[bridges.*]`, then the subnets against each other.
fn bridges(cx: &mut Ctx, root: &Table, topology: &str) -> Vec<Bridge> {
    let mut out: Vec<Bridge> = Vec::new();
    let Some(bt) = cx.table(root, "", "bridges") else {
        return out;
    };
    for (bname, bv) in bt {
        let prefix = join("bridges", bname);
        let Some(b) = bv.as_table() else {
            cx.err(&prefix, Some(bv), "must be a table ([bridges.NAME])");
            continue;
        };
        let name_ok = match check_ifname(bname) {
            Ok(()) => true,
            Err(why) => {
                cx.err(&prefix, None, format!("bridge name {bname:?}: {why}"));
                false
            }
        };
        cx.unknown_keys(
            b,
            &prefix,
            &["address", "masquerade", "uplink", "mtu", "mac", "overlap"],
        );
        let address = match cx.string(b, &prefix, "address") {
            Some(s) => match parse_cidr(&s, None).and_then(|n| check_gateway(&n).map(|()| n)) {
                Ok(n) => Some(n),
                Err(why) => {
                    cx.err(&join(&prefix, "address"), b.get("address"), why);
                    None
                }
            },
            None => {
                if !b.contains_key("address") {
                    cx.err(
                        &join(&prefix, "address"),
                        None,
                        "missing: the bridge's gateway address, like 10.10.0.1/24",
                    );
                }
                None
            }
        };
        let masquerade = cx.boolean(b, &prefix, "masquerade").unwrap_or(false);
        let uplink = cx.ifname(b, &prefix, "uplink");
        let mtu = cx.mtu(b, &prefix).unwrap_or(DEFAULT_MTU);
        let mac = cx.mac(b, &prefix);
        let overlap = cx.choice(b, &prefix, "overlap", &["deny", "allow"]);
        if let (Some(address), true) = (address, name_ok) {
            out.push(Bridge {
                name: bname.clone(),
                address,
                masquerade,
                uplink,
                mtu,
                mac: mac.unwrap_or_else(|| derived_mac(topology, "bridge", bname)),
                overlap_allowed: overlap.as_deref() == Some("allow"),
            });
        }
    }
    // Overlapping subnets make routing ambiguous: reject every pair.
    for i in 0..out.len() {
        for j in (i + 1)..out.len() {
            let (a, b) = (out[i].subnet(), out[j].subnet());
            if overlaps(a, b) {
                let key = join(&join("bridges", &out[j].name), "address");
                let v = Value::String(out[j].address.to_string());
                cx.err(
                    &key,
                    Some(&v),
                    format!("subnet {b} overlaps {a} of bridge {}", out[i].name),
                );
            }
        }
    }
    out
}

fn host(cx: &mut Ctx, root: &Table, bridges: &[Bridge]) -> Host {
    let any_masq = bridges.iter().any(|b| b.masquerade);
    let mut host = Host {
        ip_forward: if any_masq { Some(true) } else { None },
        br_netfilter: BrNetfilter::Auto,
    };
    if let Some(h) = cx.table(root, "", "host") {
        cx.unknown_keys(h, "host", &["ip_forward", "br_netfilter"]);
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

/// One namespace as first read: its keys, before addresses are handed out.
struct RawNs<'a> {
    name: String,
    table: &'a Table,
    bridge: Option<&'a Bridge>,
    address: Option<Ipv4Network>,
}

/// `[namespaces.*]`: a first pass reads every key; addresses are assigned in a second pass so
/// that explicit addresses are reserved before any is handed out.
fn namespaces(cx: &mut Ctx, root: &Table, topology: &str, bridges: &[Bridge]) -> Vec<Namespace> {
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
            cx.unknown_keys(n, &prefix, &NS_KEYS);
            let bridge = ns_bridge(cx, root, n, &prefix, bridges);
            let address = ns_address(cx, n, &prefix, bridge);
            raw.push(RawNs {
                name: nname.clone(),
                table: n,
                bridge,
                address,
            });
        }
    }

    // Duplicate addresses, the gateways included.
    let mut used: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    for b in bridges {
        used.insert(b.address.ip(), format!("bridge {}'s gateway", b.name));
    }
    for r in &raw {
        if let Some(a) = r.address {
            let key = join(&join("namespaces", &r.name), "address");
            if let Some(other) = used.get(&a.ip()) {
                let v = r.table.get("address").cloned();
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
    let mut out = Vec::new();
    for r in &raw {
        if let Some(ns) = resolve_ns(cx, topology, r, &mut used, &mut host_names) {
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

fn ns_address(cx: &mut Ctx, n: &Table, prefix: &str, br: Option<&Bridge>) -> Option<Ipv4Network> {
    let s = cx.string(n, prefix, "address")?;
    let key = join(prefix, "address");
    let Some(br) = br else {
        // Still checked for syntax, so the user sees every error at once.
        if let Err(why) = parse_cidr(&s, Some(24)) {
            cx.err(&key, n.get("address"), why);
        }
        return None;
    };
    let a = match parse_cidr(&s, Some(br.address.prefix())) {
        Ok(a) => a,
        Err(why) => {
            cx.err(&key, n.get("address"), why);
            return None;
        }
    };
    let subnet = br.subnet();
    let why = if !subnet.contains(a.ip()) {
        Some(format!("outside bridge {}'s subnet {subnet}", br.name))
    } else if a.prefix() != br.address.prefix() {
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
            cx.err(&key, n.get("address"), why);
            None
        }
        None => Some(a),
    }
}

/// The namespace with every default resolved: names, MAC, MTU, DNS, the next free address.
fn resolve_ns(
    cx: &mut Ctx,
    topology: &str,
    r: &RawNs,
    used: &mut BTreeMap<Ipv4Addr, String>,
    host_names: &mut BTreeMap<String, String>,
) -> Option<Namespace> {
    let prefix = join("namespaces", &r.name);
    // The keys that do not depend on the bridge are checked even when it is unknown.
    let ifname = cx
        .ifname(r.table, &prefix, "ifname")
        .unwrap_or_else(|| "eth0".to_string());
    let host_ifname = if r.table.contains_key("host_ifname") {
        cx.ifname(r.table, &prefix, "host_ifname")
    } else {
        Some(host_ifname_for(&r.name))
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
    let publish = publish(cx, r.table, &prefix);
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
    let address = match r.address {
        Some(a) => Some(a),
        None if r.table.contains_key("address") => None, // already reported
        None => next_free(cx, &prefix, &r.name, br, used),
    };
    Some(Namespace {
        name: r.name.clone(),
        ifaces: vec![Iface {
            ifname,
            bridge: br.name.clone(),
            address: address?,
            host_ifname: host_ifname?,
            mac: mac.unwrap_or_else(|| derived_mac(topology, "namespace", &r.name)),
            mtu: br.mtu,
        }],
        gateway: Some(br.address.ip()),
        dns,
        publish,
    })
}

/// The lowest free host address of the bridge's subnet.
fn next_free(
    cx: &mut Ctx,
    prefix: &str,
    ns: &str,
    br: &Bridge,
    used: &mut BTreeMap<Ipv4Addr, String>,
) -> Option<Ipv4Network> {
    let subnet = br.subnet();
    let free = subnet.iter().find(|ip| {
        Ipv4Network::new(*ip, subnet.prefix())
            .map(|n| check_host_address(&n).is_ok())
            .unwrap_or(false)
            && !used.contains_key(ip)
    });
    match free {
        Some(ip) => {
            used.insert(ip, format!("namespace {ns}'s address"));
            Ipv4Network::new(ip, subnet.prefix()).ok()
        }
        None => {
            cx.err(
                &join(prefix, "address"),
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

fn publish(cx: &mut Ctx, t: &Table, prefix: &str) -> Vec<super::Publish> {
    let key = join(prefix, "publish");
    let mut out = Vec::new();
    for (s, v) in cx.strings(t, prefix, "publish") {
        match super::publish::parse(&s) {
            Ok(p) => out.push(p),
            Err(why) => cx.err(&key, Some(v), why),
        }
    }
    out
}

/// A host port (per protocol, per address) leads to one place only. Linear in the number of
/// ports published: a file may publish thousands.
fn check_publish_clashes(cx: &mut Ctx, namespaces: &[Namespace]) {
    type Claim<'a> = (Option<std::net::Ipv4Addr>, &'a str, &'a str);
    let mut taken: BTreeMap<(super::Proto, u16), Vec<Claim>> = BTreeMap::new();
    for n in namespaces {
        for p in &n.publish {
            for port in p.host.0..=p.host.1 {
                let claims = taken.entry((p.proto, port)).or_default();
                let hit = claims.iter().find(|(addr, _, _)| {
                    addr.is_none() || p.host_addr.is_none() || *addr == p.host_addr
                });
                if let Some((_, other_ns, other)) = hit {
                    let v = Value::String(p.entry.clone());
                    cx.err(
                        &join(&join("namespaces", &n.name), "publish"),
                        Some(&v),
                        format!(
                            "host port {port}/{} is already published by namespaces.{other_ns}.publish = {other:?}",
                            p.proto
                        ),
                    );
                    break;
                }
                claims.push((p.host_addr, &n.name, &p.entry));
            }
        }
    }
}

/// MACs must be unique on a bridge's segment; checked across the whole file.
fn check_macs(cx: &mut Ctx, bridges: &[Bridge], namespaces: &[Namespace]) {
    let mut macs: BTreeSet<Mac> = BTreeSet::new();
    let all = bridges
        .iter()
        .map(|b| (join(&join("bridges", &b.name), "mac"), b.mac))
        .chain(namespaces.iter().flat_map(|n| {
            n.ifaces
                .iter()
                .map(|i| (join(&join("namespaces", &n.name), "mac"), i.mac))
        }));
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
            .count();
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
mod tests {
    use super::*;

    fn errs(text: &str) -> Vec<String> {
        match parse(text, Path::new("t.toml")) {
            Ok(_) => vec![],
            Err(e) => e.0,
        }
    }

    const LAB: &str = r#"
name = "lab"
[bridges.br0]
address = "10.10.0.1/24"
masquerade = true
[namespaces.ns1]
bridge = "br0"
address = "10.10.0.2/24"
[namespaces.ns2]
bridge = "br0"
"#;

    #[test]
    fn lab_resolves() {
        let t = parse(LAB, Path::new("t.toml")).expect("valid");
        let i = |n: usize| &t.namespaces[n].ifaces[0];
        assert_eq!(i(1).address.to_string(), "10.10.0.3/24");
        assert_eq!(i(0).host_ifname, "veth-ns1");
        assert_eq!(t.host.ip_forward, Some(true));
        assert_eq!(i(0).mtu, 1500);
        assert_eq!(t.namespaces[0].gateway, Some(Ipv4Addr::new(10, 10, 0, 1)));
    }

    #[test]
    fn auto_addresses_skip_explicit_ones() {
        let t = parse(
            "name='x'\n[bridges.b]\naddress='10.0.0.1/29'\n[namespaces.a]\nbridge='b'\n[namespaces.c]\nbridge='b'\naddress='10.0.0.2'\n",
            Path::new("t"),
        )
        .expect("valid");
        assert_eq!(
            t.namespaces[0].ifaces[0].address.ip().to_string(),
            "10.0.0.3"
        );
        assert_eq!(
            t.namespaces[1].ifaces[0].address.ip().to_string(),
            "10.0.0.2"
        );
    }

    #[test]
    fn all_errors_at_once() {
        let e = errs(
            "name='Lab'\nbogus=1\n[bridges.br0]\naddress='10.10.0.0/24'\nmtu=9\n[namespaces.ns1]\nbridge='nope'\nmac='01:00:00:00:00:01'\n",
        );
        assert!(e.iter().any(|m| m.contains("name = \"Lab\"")), "{e:?}");
        assert!(
            e.iter().any(|m| m.contains("bogus = 1: unknown key")),
            "{e:?}"
        );
        assert!(e.iter().any(|m| m.contains("network address")), "{e:?}");
        assert!(e.iter().any(|m| m.contains("bridges.br0.mtu = 9")), "{e:?}");
        assert!(
            e.iter()
                .any(|m| m.contains("namespaces.ns1.bridge = \"nope\"")),
            "{e:?}"
        );
        assert!(e.iter().any(|m| m.contains("multicast")), "{e:?}");
    }

    #[test]
    fn a_port_mtu_other_than_its_bridges_is_an_error() {
        let e = errs(
            "name='x'\n[bridges.b]\naddress='10.0.0.1/24'\n[namespaces.a]\nbridge='b'\nmtu=1450\n",
        );
        assert!(
            e.iter()
                .any(|m| m.contains("namespaces.a.mtu = 1450")
                    && m.contains("one MTU per L2 segment")),
            "{e:?}"
        );
        assert!(errs("name='x'\n[bridges.b]\naddress='10.0.0.1/24'\nmtu=1450\n[namespaces.a]\nbridge='b'\nmtu=1450\n").is_empty());
    }

    #[test]
    fn too_many_ports_on_one_bridge() {
        let mut s = String::from("name='x'\n[bridges.b]\naddress='10.0.0.1/16'\n");
        for i in 0..1024 {
            s.push_str(&format!("[namespaces.n{i}]\nbridge='b'\n"));
        }
        let e = errs(&s);
        assert!(e.iter().any(|m| m.contains("at most 1023 ports")), "{e:?}");
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let e = errs("name = \"x\"\n[bridges\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("t.toml:2:"), "{e:?}");
    }
}
