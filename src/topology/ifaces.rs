//! A namespace's interfaces — `[namespaces.X.interfaces.IFNAME]`, or the one-interface
//! shorthand on the namespace itself — and their addresses. Each bridge is a segment with one
//! subnet per family: the host's (its `address`), or on an L2-only bridge the one its ports'
//! explicit addresses share. Explicit addresses are checked against it and reserved first;
//! the others are handed out from it afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use toml::{Table, Value};

use super::addr::{Family, V4, V6, check_host_address, next_free, parse_cidr, subnet_of};
use super::names::{derived_mac, host_ifname_salted};
use super::syntax::{Ctx, join};
use super::{Bridge, Iface};
use crate::netem::{Netem, parse_duration, parse_percent};
use crate::rate::{Rate, parse_bps, parse_size};

/// The keys of one interface (in the shorthand, also `ifname`).
pub(super) const IFACE_KEYS: [&str; 13] = [
    "bridge",
    "address",
    "address6",
    "mac",
    "host_mac",
    "mtu",
    "host_ifname",
    "latency",
    "jitter",
    "loss",
    "rate",
    "burst",
    "ceil",
];

/// `latency`, `jitter`, `loss` of one interface (`rate` is a tbf's: `rate_limit`).
fn netem(cx: &mut Ctx, t: &Table, prefix: &str) -> Netem {
    let mut n = Netem::default();
    let report = |cx: &mut Ctx, key: &str, why: String| {
        cx.err(&join(prefix, key), t.get(key), why);
    };
    if let Some(s) = cx.string(t, prefix, "latency") {
        match parse_duration(&s) {
            Ok(v) => n.latency_us = Some(v),
            Err(why) => report(cx, "latency", why),
        }
    }
    if let Some(s) = cx.string(t, prefix, "jitter") {
        match parse_duration(&s) {
            Ok(v) => n.jitter_us = Some(v),
            Err(why) => report(cx, "jitter", why),
        }
        if !t.contains_key("latency") {
            report(
                cx,
                "jitter",
                "jitter varies the latency: give `latency` too".to_string(),
            );
        }
    }
    if let Some(s) = cx.string(t, prefix, "loss") {
        match parse_percent(&s) {
            Ok(v) => n.loss_ppm = Some(v),
            Err(why) => report(cx, "loss", why),
        }
    }
    if let Err(why) = n.validate() {
        cx.err(prefix, None, why);
    }
    n.normalized()
}

/// `rate`, `burst`, `ceil` of one interface on a segment of MTU `mtu`: its rate limit.
fn rate_limit(cx: &mut Ctx, t: &Table, prefix: &str, mtu: u32) -> Option<Rate> {
    let report = |cx: &mut Ctx, key: &str, why: String| {
        cx.err(&join(prefix, key), t.get(key), why);
    };
    let bps = |cx: &mut Ctx, key: &str| {
        let s = cx.string(t, prefix, key)?;
        parse_bps(&s).map_err(|why| report(cx, key, why)).ok()
    };
    let rate = bps(cx, "rate");
    let ceil = bps(cx, "ceil");
    let burst = match t.get("burst") {
        None => None,
        Some(Value::Integer(i)) => u32::try_from(*i).ok().filter(|&b| b > 0).or_else(|| {
            report(cx, "burst", "bytes: more than 0 and under 4 GiB".into());
            None
        }),
        Some(Value::String(s)) => parse_size(s).map_err(|why| report(cx, "burst", why)).ok(),
        Some(_) => {
            report(cx, "burst", "a size: \"15kb\", or a number of bytes".into());
            None
        }
    };
    if rate.is_none() {
        for key in ["burst", "ceil"].into_iter().filter(|k| t.contains_key(*k)) {
            if !t.contains_key("rate") {
                report(cx, key, "a rate limit's: give `rate` too".to_string());
            }
        }
        return None;
    }
    if (t.contains_key("burst") && burst.is_none()) || (t.contains_key("ceil") && ceil.is_none()) {
        return None; // reported
    }
    let r = Rate::new(rate?, burst, ceil, mtu);
    match r.validate(burst.is_some()) {
        Ok(()) => Some(r),
        Err((key, why)) => {
            report(cx, key, why);
            None
        }
    }
}

/// One interface as first read, before addresses are handed out.
pub(super) struct RawIface<'a> {
    pub ns: String,
    pub ifname: String,
    /// Where its keys are: `namespaces.ns1` or `namespaces.r.interfaces.eth1`.
    pub prefix: String,
    pub table: &'a Table,
    pub bridge: Option<&'a Bridge>,
    pub address: Option<IpNetwork>,
    pub address6: Option<IpNetwork>,
    /// What derived names and MACs come from: the namespace's name for the shorthand and for
    /// an interface called eth0 (so that writing the shorthand out in full changes nothing),
    /// `ns.ifname` for the others.
    pub seed: String,
}

impl RawIface<'_> {
    /// How messages name the owner of an address: `namespace a's address` (on eth1).
    pub(super) fn owner(&self) -> String {
        if self.prefix.contains(".interfaces.") {
            format!("namespace {}'s address on {}", self.ns, self.ifname)
        } else {
            format!("namespace {}'s address", self.ns)
        }
    }
}

/// One segment's subnet per family.
pub(super) type Segments = BTreeMap<(String, bool), IpNetwork>;

fn fam(v6: bool) -> Family {
    if v6 { V6 } else { V4 }
}

/// The bridge's gateway of one family, if the host has one on it.
fn gateway(br: &Bridge, v6: bool) -> Option<IpNetwork> {
    if v6 {
        br.address6.map(IpNetwork::V6)
    } else {
        br.address.map(IpNetwork::V4)
    }
}

/// The `bridge` key: a bridge of the file.
pub(super) fn iface_bridge<'a>(
    cx: &mut Ctx,
    root: &Table,
    t: &Table,
    prefix: &str,
    bridges: &'a [Bridge],
) -> Option<&'a Bridge> {
    let Some(b) = cx.string(t, prefix, "bridge") else {
        if !t.contains_key("bridge") {
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
            t.get("bridge"),
            if known.is_empty() {
                "no such bridge: the file defines no [bridges.*]".to_string()
            } else {
                format!("no such bridge (defined: {})", known.join(", "))
            },
        );
    }
    None
}

/// The interface's address of one family as written: syntax, and a usable host address. On
/// a bridge with a gateway of that family the prefix may be left out.
pub(super) fn iface_address(
    cx: &mut Ctx,
    t: &Table,
    prefix: &str,
    br: Option<&Bridge>,
    v6: bool,
) -> Option<IpNetwork> {
    let f = fam(v6);
    let s = cx.string(t, prefix, f.key)?;
    let key = join(prefix, f.key);
    let default_prefix = br.and_then(|b| gateway(b, v6)).map(|g| g.prefix());
    let a = match parse_cidr(&s, default_prefix, f) {
        Ok(a) => a,
        Err(why) => {
            cx.err(&key, t.get(f.key), why);
            return None;
        }
    };
    if let Err(why) = check_host_address(&a) {
        cx.err(&key, t.get(f.key), why);
        return None;
    }
    Some(a)
}

/// Each bridge's subnet per family, with every explicit address checked against it: the
/// gateway's subnet, or on an L2-only bridge the subnet of the first explicit address on it.
pub(super) fn segments(cx: &mut Ctx, bridges: &[Bridge], raw: &[RawIface]) -> Segments {
    let mut seg = Segments::new();
    for b in bridges {
        for v6 in [false, true] {
            if let Some(g) = gateway(b, v6) {
                seg.insert((b.name.clone(), v6), g);
            }
        }
    }
    for r in raw {
        let Some(br) = r.bridge else { continue };
        for (given, v6) in [(r.address, false), (r.address6, true)] {
            let Some(a) = given else { continue };
            let f = fam(v6);
            let key = join(&r.prefix, f.key);
            let shown = r.table.get(f.key);
            if !br.l2_only() && gateway(br, v6).is_none() {
                cx.err(
                    &key,
                    shown,
                    format!(
                        "bridge {} has no {}: give it one ({} = \"...\" on [bridges.{}]) for its ports to have one",
                        br.name, f.key, f.key, br.name
                    ),
                );
                continue;
            }
            let net = *seg.entry((br.name.clone(), v6)).or_insert(a);
            let subnet = subnet_of(&net);
            let why = if !subnet.contains(a.ip()) {
                Some(format!("outside bridge {}'s subnet {subnet}", br.name))
            } else if a.prefix() != net.prefix() {
                Some(format!(
                    "prefix /{} differs from bridge {}'s subnet {subnet}",
                    a.prefix(),
                    br.name
                ))
            } else {
                None
            };
            if let Some(why) = why {
                cx.err(&key, shown, why);
            }
        }
    }
    seg
}

/// The interface's address of one family: as written, or the lowest free one of its
/// segment's subnet. None when the segment has no subnet of that family (reported for IPv4,
/// which every interface needs).
fn address_or_next(
    cx: &mut Ctx,
    r: &RawIface,
    seg: &Segments,
    v6: bool,
    used: &mut BTreeMap<IpAddr, String>,
) -> Option<IpNetwork> {
    let f = fam(v6);
    let given = if v6 { r.address6 } else { r.address };
    if given.is_some() || r.table.contains_key(f.key) {
        return given; // an error was reported if it is None
    }
    let br = r.bridge?;
    let key = join(&r.prefix, f.key);
    let Some(net) = seg.get(&(br.name.clone(), v6)) else {
        if !v6 {
            cx.err(
                &key,
                None,
                format!(
                    "bridge {} is L2-only (no address) and no port of it names an address: give this interface's, with its prefix (like 10.20.0.2/24)",
                    br.name
                ),
            );
        }
        return None;
    };
    let subnet = subnet_of(net);
    match next_free(subnet, &|ip| used.contains_key(&ip)) {
        Some(a) => {
            used.insert(a.ip(), r.owner());
            Some(a)
        }
        None => {
            cx.err(
                &key,
                None,
                format!(
                    "no free address left in bridge {}'s subnet {subnet}: more interfaces than addresses",
                    br.name
                ),
            );
            None
        }
    }
}

/// Names already taken on the host (bridges, host ends given or derived), for derived names
/// to step aside from.
pub(super) struct HostNames {
    pub taken: BTreeMap<String, String>,
    pub explicit: BTreeSet<String>,
}

/// The interface with every default resolved: its host end's name, MAC, MTU, addresses.
/// A namespace interface's derived MAC. On a VXLAN segment the other hosts' files often
/// share the topology's and the namespace's names: the tunnel's local address keeps their
/// MACs apart (as the bridge's, `vxlan::link_settings`).
fn ns_mac(topology: &str, br: &Bridge, seed: &str) -> super::Mac {
    match &br.vxlan {
        Some(vx) => derived_mac(topology, "namespace", &format!("{seed}/{}", vx.local)),
        None => derived_mac(topology, "namespace", seed),
    }
}

pub(super) fn resolve(
    cx: &mut Ctx,
    topology: &str,
    r: &RawIface,
    seg: &Segments,
    used: &mut BTreeMap<IpAddr, String>,
    names: &mut HostNames,
) -> Option<Iface> {
    let prefix = &r.prefix;
    let host_ifname = if r.table.contains_key("host_ifname") {
        cx.ifname(r.table, prefix, "host_ifname")
    } else {
        // The derived name, salted until it meets no other.
        (0..64u32)
            .map(|salt| host_ifname_salted(&r.seed, salt))
            .find(|n| !names.taken.contains_key(n) && !names.explicit.contains(n))
    };
    if let Some(h) = &host_ifname {
        if let Some(other) = names.taken.get(h) {
            let v = Value::String(h.clone());
            cx.err(
                &join(prefix, "host_ifname"),
                Some(&v),
                format!("the host already has this interface name from {other}"),
            );
        } else {
            names.taken.insert(h.clone(), prefix.clone());
        }
    }
    let mac = cx.mac(r.table, prefix);
    let host_mac = cx.mac_at(r.table, prefix, "host_mac");
    let mtu = cx.mtu(r.table, prefix);
    let netem = netem(cx, r.table, prefix);
    let br = r.bridge?;
    let rate = rate_limit(cx, r.table, prefix, br.mtu);
    if let Some(m) = mtu
        && m > br.mtu
        && let Some(vx) = br.vxlan.as_ref().filter(|_| !br.mtu_set)
    {
        // The segment's MTU was lowered for the encapsulation, not chosen: say so and go on.
        cx.warnings.push(format!(
            "{}: {} = {m}: bridge {} is a VXLAN segment, whose MTU is {} (a 1500-byte underlay less {} bytes of encapsulation); the interface gets {}",
            cx.file,
            join(prefix, "mtu"),
            br.name,
            br.mtu,
            vx.overhead(),
            br.mtu
        ));
    } else if let Some(m) = mtu
        && m != br.mtu
    {
        cx.err(
            &join(prefix, "mtu"),
            r.table.get("mtu"),
            format!(
                "one MTU per L2 segment: bridge {} has MTU {}, and a port with another MTU silently loses the larger frames; set `mtu = {m}` on [bridges.{}] instead (every port of a bridge takes its MTU)",
                br.name, br.mtu, br.name
            ),
        );
    }
    let address = address_or_next(cx, r, seg, false, used);
    let address6 = address_or_next(cx, r, seg, true, used);
    let v4: Option<Ipv4Network> = match address? {
        IpNetwork::V4(a) => Some(a),
        IpNetwork::V6(_) => None,
    };
    let v6: Option<Ipv6Network> = match address6 {
        Some(IpNetwork::V6(a)) => Some(a),
        _ => None,
    };
    if seg.contains_key(&(br.name.clone(), true)) && v6.is_none() {
        return None; // reported
    }
    Some(Iface {
        key: prefix.clone(),
        ifname: r.ifname.clone(),
        bridge: br.name.clone(),
        address: v4?,
        address6: v6,
        host_ifname: host_ifname?,
        mac: mac.unwrap_or_else(|| ns_mac(topology, br, &r.seed)),
        host_mac,
        mtu: br.mtu,
        netem,
        rate,
    })
}
