//! Validation of a topology file into a [`Topology`]. Every check records its error and goes
//! on, so one run reports everything wrong with a file.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use ipnetwork::Ipv4Network;
use toml::{Table, Value};

use super::{BrNetfilter, Bridge, Errors, Host, Mac, Namespace, Topology};

/// Linux interface names hold at most 15 bytes (IFNAMSIZ less the NUL).
pub const MAX_IFNAME: usize = 15;
const DEFAULT_MTU: u32 = 1500;

struct Ctx {
    file: String,
    errors: Vec<String>,
}

impl Ctx {
    fn err(&mut self, key: &str, value: Option<&Value>, why: impl AsRef<str>) {
        let why = why.as_ref();
        match value {
            Some(v) => self
                .errors
                .push(format!("{}: {key} = {}: {why}", self.file, show(v))),
            None => self.errors.push(format!("{}: {key}: {why}", self.file)),
        }
    }

    /// Reports every key of `table` not in `known`.
    fn unknown_keys(&mut self, table: &Table, prefix: &str, known: &[&str]) {
        for (k, v) in table {
            if !known.contains(&k.as_str()) {
                let key = join(prefix, k);
                self.err(
                    &key,
                    Some(v),
                    format!("unknown key (expected one of: {})", known.join(", ")),
                );
            }
        }
    }

    fn string(&mut self, table: &Table, prefix: &str, key: &str) -> Option<String> {
        let v = table.get(key)?;
        match v.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.err(&join(prefix, key), Some(v), "must be a string");
                None
            }
        }
    }

    fn boolean(&mut self, table: &Table, prefix: &str, key: &str) -> Option<bool> {
        let v = table.get(key)?;
        match v.as_bool() {
            Some(b) => Some(b),
            None => {
                self.err(&join(prefix, key), Some(v), "must be true or false");
                None
            }
        }
    }

    fn table<'a>(&mut self, table: &'a Table, prefix: &str, key: &str) -> Option<&'a Table> {
        let v = table.get(key)?;
        match v.as_table() {
            Some(t) => Some(t),
            None => {
                self.err(&join(prefix, key), Some(v), "must be a table");
                None
            }
        }
    }

    fn mtu(&mut self, table: &Table, prefix: &str) -> Option<u32> {
        let v = table.get("mtu")?;
        match v.as_integer() {
            Some(m) if (68..=65535).contains(&m) => Some(m as u32),
            Some(_) => {
                self.err(&join(prefix, "mtu"), Some(v), "MTU must be within 68-65535");
                None
            }
            None => {
                self.err(&join(prefix, "mtu"), Some(v), "must be an integer");
                None
            }
        }
    }

    fn mac(&mut self, table: &Table, prefix: &str) -> Option<Mac> {
        let s = self.string(table, prefix, "mac")?;
        let key = join(prefix, "mac");
        match parse_mac(&s) {
            Ok(m) => Some(m),
            Err(why) => {
                self.err(&key, table.get("mac"), why);
                None
            }
        }
    }

    fn ifname(&mut self, table: &Table, prefix: &str, key: &str) -> Option<String> {
        let s = self.string(table, prefix, key)?;
        if let Err(why) = check_ifname(&s) {
            self.err(&join(prefix, key), table.get(key), why);
            return None;
        }
        Some(s)
    }
}

fn join(prefix: &str, key: &str) -> String {
    let key = if key.is_empty()
        || key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Table(_) => "{...}".to_string(),
        other => other.to_string(),
    }
}

pub fn parse_mac(s: &str) -> Result<Mac, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = || "not a MAC address (expected six hex bytes like 02:00:00:00:00:01)".to_string();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut b = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return Err(bad());
        }
        b[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if b[0] & 1 == 1 {
        return Err("a multicast MAC cannot be an interface's address (the first byte must be even; 02:... is locally administered)".into());
    }
    if b == [0; 6] {
        return Err("the all-zero MAC is not a usable address".into());
    }
    Ok(Mac(b))
}

/// Checks a Linux interface name: 1-15 bytes, no `/`, `:` or white space, not `.` or `..`.
pub fn check_ifname(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("an interface name cannot be empty".into());
    }
    if s.len() > MAX_IFNAME {
        return Err(format!(
            "interface names hold at most {MAX_IFNAME} bytes; this one has {}",
            s.len()
        ));
    }
    if s == "." || s == ".." {
        return Err("`.` and `..` are not interface names".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "interface names cannot contain {c:?} (no `/`, `:` or white space)"
        ));
    }
    Ok(())
}

/// Checks a namespace name: it becomes a file name under /run/netns.
fn check_ns_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("a namespace name cannot be empty".into());
    }
    if s == "." || s == ".." {
        return Err("`.` and `..` cannot name a namespace (it is a file in /run/netns)".into());
    }
    if s.contains('/') || s.contains('\0') {
        return Err("a namespace name is a file name in /run/netns: no `/`".into());
    }
    if s.len() > 255 {
        return Err("a namespace name is a file name: at most 255 bytes".into());
    }
    Ok(())
}

/// The default host-side name of a namespace's veth: `veth-<ns>`, or when that is longer than
/// 15 bytes, `veth-` + the name's first 6 bytes + 4 hex digits of a hash of the whole name, so
/// long names that share a prefix still get different interfaces.
pub fn host_ifname_for(ns: &str) -> String {
    let plain = format!("veth-{ns}");
    if plain.len() <= MAX_IFNAME && check_ifname(&plain).is_ok() {
        return plain;
    }
    let mut prefix = String::new();
    for c in ns.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
            if prefix.len() + c.len_utf8() > 6 {
                break;
            }
            prefix.push(c);
        }
    }
    // FNV-1a, folded to 16 bits: stable across versions and platforms.
    let mut h: u32 = 0x811c_9dc5;
    for b in ns.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let h16 = (h >> 16) ^ (h & 0xffff);
    format!("veth-{prefix}{h16:04x}")
}

/// FNV-1a, 64 bits: stable across versions and platforms, unlike std's hasher.
fn fnv64(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// A locally administered unicast MAC (02:...) derived from the names, so it is the same on
/// every apply and survives the link's recreation.
fn derived_mac(topology: &str, kind: &str, name: &str) -> Mac {
    let h = fnv64(&["nsfw", topology, kind, name]).to_be_bytes();
    Mac([0x02, h[0], h[1], h[2], h[3], h[4]])
}

fn check_topology_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 16 {
        return Err("must be 1-16 characters of [a-z0-9_]".into());
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err("must be 1-16 characters of [a-z0-9_]".into());
    }
    Ok(())
}

/// Parses `a.b.c.d/len` (or `a.b.c.d` when `default_prefix` is given).
fn parse_cidr(s: &str, default_prefix: Option<u8>) -> Result<Ipv4Network, String> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => {
            let p: u8 = p
                .parse()
                .map_err(|_| format!("`{p}` is not a prefix length (0-32)"))?;
            (a, p)
        }
        None => match default_prefix {
            Some(p) => (s, p),
            None => {
                return Err("expected an IPv4 address with its prefix, like 10.10.0.1/24".into());
            }
        },
    };
    let ip: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an IPv4 address"))?;
    Ipv4Network::new(ip, prefix).map_err(|_| format!("/{prefix} is not a prefix length (0-32)"))
}

/// Rejects the network and broadcast addresses of subnets that have them.
fn check_host_address(net: &Ipv4Network) -> Result<(), String> {
    if net.prefix() > 30 {
        if net.prefix() == 32 {
            return Err("a /32 leaves no room for a subnet".into());
        }
        return Ok(()); // a /31 point-to-point link has no network or broadcast address
    }
    if net.ip() == net.network() {
        return Err(format!(
            "{} is the network address of {}",
            net.ip(),
            subnet_of(net)
        ));
    }
    if net.ip() == net.broadcast() {
        return Err(format!(
            "{} is the broadcast address of {}",
            net.ip(),
            subnet_of(net)
        ));
    }
    Ok(())
}

fn subnet_of(net: &Ipv4Network) -> Ipv4Network {
    Ipv4Network::new(net.network(), net.prefix()).unwrap_or(*net)
}

struct RawNs<'a> {
    name: String,
    table: &'a Table,
    bridge: Option<String>,
    address: Option<Ipv4Network>,
}

pub fn parse(text: &str, source: &Path) -> Result<Topology, Errors> {
    let file = source.display().to_string();
    let mut cx = Ctx {
        file: file.clone(),
        errors: Vec::new(),
    };
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

    cx.unknown_keys(&root, "", &["name", "host", "bridges", "namespaces"]);

    let name = match cx.string(&root, "", "name") {
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
    };

    // [bridges.*]
    let mut bridges: Vec<Bridge> = Vec::new();
    if let Some(bt) = cx.table(&root, "", "bridges") {
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
                &["address", "masquerade", "uplink", "mtu", "mac"],
            );
            let address = match cx.string(b, &prefix, "address") {
                Some(s) => match parse_cidr(&s, None).and_then(|n| {
                    check_host_address(&n)?;
                    Ok(n)
                }) {
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
            if let (Some(address), true) = (address, name_ok) {
                bridges.push(Bridge {
                    name: bname.clone(),
                    address,
                    masquerade,
                    uplink,
                    mtu,
                    mac: mac.unwrap_or_else(|| derived_mac(&name, "bridge", bname)),
                });
            }
        }
    }

    // Overlapping subnets make routing ambiguous: reject every pair.
    for i in 0..bridges.len() {
        for j in (i + 1)..bridges.len() {
            let (a, b) = (bridges[i].subnet(), bridges[j].subnet());
            if a.contains(b.network()) || b.contains(a.network()) {
                let key = join(&join("bridges", &bridges[j].name), "address");
                let v = Value::String(bridges[j].address.to_string());
                cx.err(
                    &key,
                    Some(&v),
                    format!("subnet {b} overlaps {a} of bridge {}", bridges[i].name),
                );
            }
        }
    }

    // [host]
    let any_masq = bridges.iter().any(|b| b.masquerade);
    let mut host = Host {
        ip_forward: if any_masq { Some(true) } else { None },
        br_netfilter: BrNetfilter::Auto,
    };
    if let Some(h) = cx.table(&root, "", "host") {
        cx.unknown_keys(h, "host", &["ip_forward", "br_netfilter"]);
        if let Some(f) = cx.boolean(h, "host", "ip_forward") {
            host.ip_forward = Some(f);
        }
        if let Some(s) = cx.string(h, "host", "br_netfilter") {
            host.br_netfilter = match s.as_str() {
                "auto" => BrNetfilter::Auto,
                "off" => BrNetfilter::Off,
                "on" => BrNetfilter::On,
                _ => {
                    cx.err(
                        "host.br_netfilter",
                        h.get("br_netfilter"),
                        "must be \"auto\", \"off\" or \"on\"",
                    );
                    BrNetfilter::Auto
                }
            };
        }
    }

    // [namespaces.*]: first pass reads every key; addresses are assigned in a second pass so
    // that explicit addresses are reserved before any is handed out.
    let mut raw: Vec<RawNs> = Vec::new();
    let mut namespaces: Vec<Namespace> = Vec::new();
    if let Some(nt) = cx.table(&root, "", "namespaces") {
        for (nname, nv) in nt {
            let prefix = join("namespaces", nname);
            let Some(n) = nv.as_table() else {
                cx.err(&prefix, Some(nv), "must be a table ([namespaces.NAME])");
                continue;
            };
            if let Err(why) = check_ns_name(nname) {
                cx.err(&prefix, None, format!("namespace name {nname:?}: {why}"));
            }
            cx.unknown_keys(
                n,
                &prefix,
                &[
                    "bridge",
                    "address",
                    "ifname",
                    "host_ifname",
                    "mac",
                    "mtu",
                    "dns",
                ],
            );
            let bridge = match cx.string(n, &prefix, "bridge") {
                Some(b) => {
                    if bridges.iter().any(|x| x.name == b) {
                        Some(b)
                    } else {
                        let known: Vec<&str> = bridges.iter().map(|x| x.name.as_str()).collect();
                        // A bridge that failed its own checks was already reported.
                        let defined = root
                            .get("bridges")
                            .and_then(|v| v.as_table())
                            .is_some_and(|t| t.contains_key(&b));
                        if !defined {
                            cx.err(
                                &join(&prefix, "bridge"),
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
                }
                None => {
                    if !n.contains_key("bridge") {
                        cx.err(
                            &join(&prefix, "bridge"),
                            None,
                            "missing: the bridge to attach to",
                        );
                    }
                    None
                }
            };
            let br = bridge
                .as_ref()
                .and_then(|b| bridges.iter().find(|x| &x.name == b));
            let address = match (cx.string(n, &prefix, "address"), br) {
                (Some(s), Some(br)) => {
                    let key = join(&prefix, "address");
                    match parse_cidr(&s, Some(br.address.prefix())) {
                        Err(why) => {
                            cx.err(&key, n.get("address"), why);
                            None
                        }
                        Ok(a) => {
                            let subnet = br.subnet();
                            if !subnet.contains(a.ip()) {
                                cx.err(
                                    &key,
                                    n.get("address"),
                                    format!("outside bridge {}'s subnet {subnet}", br.name),
                                );
                                None
                            } else if a.prefix() != br.address.prefix() {
                                cx.err(
                                    &key,
                                    n.get("address"),
                                    format!(
                                        "prefix /{} differs from bridge {}'s subnet {subnet}",
                                        a.prefix(),
                                        br.name
                                    ),
                                );
                                None
                            } else if let Err(why) = check_host_address(&a) {
                                cx.err(&key, n.get("address"), why);
                                None
                            } else {
                                Some(a)
                            }
                        }
                    }
                }
                (Some(s), None) => parse_cidr(&s, Some(24))
                    .map_err(|why| cx.err(&join(&prefix, "address"), n.get("address"), why))
                    .ok()
                    .and(None),
                (None, _) => None,
            };
            raw.push(RawNs {
                name: nname.clone(),
                table: n,
                bridge,
                address,
            });
        }
    }

    // Duplicate addresses, the gateway included.
    let mut used: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    for b in &bridges {
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

    // Assign the rest, in file order: the lowest free host address of each subnet.
    let mut host_names: BTreeMap<String, String> = BTreeMap::new();
    for b in &bridges {
        host_names.insert(b.name.clone(), format!("bridges.{}", b.name));
    }
    for r in &raw {
        let prefix = join("namespaces", &r.name);
        // The keys that do not depend on the bridge are checked even when it is unknown.
        let ifname = cx
            .ifname(r.table, &prefix, "ifname")
            .unwrap_or_else(|| "eth0".to_string());
        if ifname == "lo" {
            cx.err(
                &join(&prefix, "ifname"),
                r.table.get("ifname"),
                "`lo` is the namespace's loopback",
            );
        }
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
        let mut dns = Vec::new();
        if let Some(v) = r.table.get("dns") {
            let key = join(&prefix, "dns");
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
        }
        let Some(bname) = &r.bridge else { continue };
        let Some(br) = bridges.iter().find(|b| &b.name == bname) else {
            continue;
        };
        let address = match r.address {
            Some(a) => Some(a),
            None if r.table.contains_key("address") => None, // already reported
            None => {
                let subnet = br.subnet();
                let free = subnet.iter().find(|ip| {
                    Ipv4Network::new(*ip, subnet.prefix())
                        .map(|n| check_host_address(&n).is_ok())
                        .unwrap_or(false)
                        && !used.contains_key(ip)
                });
                match free {
                    Some(ip) => {
                        used.insert(ip, format!("namespace {}'s address", r.name));
                        Ipv4Network::new(ip, subnet.prefix()).ok()
                    }
                    None => {
                        cx.err(
                            &join(&prefix, "address"),
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
        };
        if let (Some(address), Some(host_ifname)) = (address, host_ifname) {
            namespaces.push(Namespace {
                name: r.name.clone(),
                bridge: bname.clone(),
                address,
                gateway: br.address.ip(),
                ifname,
                host_ifname,
                mac: mac.unwrap_or_else(|| derived_mac(&name, "namespace", &r.name)),
                mtu: mtu.unwrap_or(br.mtu),
                dns,
            });
        }
    }

    // MACs must be unique on a bridge's segment; check across the whole file.
    let mut macs: BTreeSet<Mac> = BTreeSet::new();
    for (key, mac) in bridges
        .iter()
        .map(|b| (join(&join("bridges", &b.name), "mac"), b.mac))
        .chain(
            namespaces
                .iter()
                .map(|n| (join(&join("namespaces", &n.name), "mac"), n.mac)),
        )
    {
        if !macs.insert(mac) {
            let v = Value::String(mac.to_string());
            cx.err(&key, Some(&v), "this MAC is used twice in the file");
        }
    }

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

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
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
        assert_eq!(t.namespaces[1].address.to_string(), "10.10.0.3/24");
        assert_eq!(t.namespaces[0].host_ifname, "veth-ns1");
        assert_eq!(t.host.ip_forward, Some(true));
        assert_eq!(t.namespaces[0].mtu, 1500);
    }

    #[test]
    fn auto_addresses_skip_explicit_ones() {
        let t = parse(
            "name='x'\n[bridges.b]\naddress='10.0.0.1/29'\n[namespaces.a]\nbridge='b'\n[namespaces.c]\nbridge='b'\naddress='10.0.0.2'\n",
            Path::new("t"),
        )
        .expect("valid");
        assert_eq!(t.namespaces[0].address.ip().to_string(), "10.0.0.3");
        assert_eq!(t.namespaces[1].address.ip().to_string(), "10.0.0.2");
    }

    #[test]
    fn long_names_shorten_distinctly() {
        let a = host_ifname_for("averyveryverylongname1");
        let b = host_ifname_for("averyveryverylongname2");
        assert!(a.len() <= 15 && b.len() <= 15);
        assert_ne!(a, b);
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
    fn syntax_error_has_line_and_column() {
        let e = errs("name = \"x\"\n[bridges\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("t.toml:2:"), "{e:?}");
    }
}
