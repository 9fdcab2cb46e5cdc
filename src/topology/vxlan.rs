//! `[bridges.NAME] vxlan = { id, local, peers, port, remote }`: the bridge's segment stretched
//! to other hosts over VXLAN (RFC 7348), with static unicast peers. Each host applies its own
//! file: `local` is this host's underlay address, `peers` the other hosts', `remote` the
//! addresses of the namespaces on the peers' halves of the segment (what `nsfw verify`
//! checks end to end; the file cannot see the other hosts). Whether `local` is an address of
//! this host is the plan's to say (it reads the host); the rest is checked here.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use toml::{Table, Value};

use super::syntax::{Ctx, join};

/// IANA's VXLAN port.
pub(crate) const DEFAULT_PORT: u16 = 4789;
/// The largest VNI: 24 bits.
pub(crate) const MAX_ID: u32 = 16_777_215;
/// The underlay MTU the segment's default is computed from (the usual Ethernet).
pub(crate) const UNDERLAY_MTU: u32 = 1500;
/// A bridge's MTU when the file says nothing (and it has no tunnel).
const DEFAULT_BRIDGE_MTU: u32 = 1500;

/// One bridge's VXLAN tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Vxlan {
    /// The VNI.
    pub id: u32,
    /// This host's underlay address: the tunnel's source.
    pub local: IpAddr,
    /// The other hosts' underlay addresses: an all-zeros FDB entry each (head-end
    /// replication of broadcast, unknown unicast and multicast).
    pub peers: Vec<IpAddr>,
    /// The UDP port, on both ends.
    pub port: u16,
    /// The addresses of the namespaces behind the peers, for `verify`.
    pub remote: Vec<IpAddr>,
}

impl Vxlan {
    /// What the encapsulation costs each frame: outer Ethernet 14, IP 20 or 40, UDP 8,
    /// VXLAN 8 (the inner frame's Ethernet header rides inside the outer payload).
    pub(crate) fn overhead(&self) -> u32 {
        if self.local.is_ipv6() { 70 } else { 50 }
    }

    /// The interface that carries it on the host: `vx` and the VNI (at most 10 characters).
    pub(crate) fn ifname(&self) -> String {
        format!("vx{}", self.id)
    }
}

const KEYS: [&str; 5] = ["id", "local", "peers", "port", "remote"];

/// Why `ip` cannot be a tunnel's end (None: it can). The kernel refuses some part-way
/// (a link-local IPv6 `local` without a device); the others would make a tunnel that never
/// leaves the host or sends to everyone.
fn unusable(ip: IpAddr) -> Option<&'static str> {
    let (unicast, loopback, link_local) = match ip {
        IpAddr::V4(a) => (
            !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
            a.is_loopback(),
            false,
        ),
        IpAddr::V6(a) => (
            !(a.is_unspecified() || a.is_multicast()),
            a.is_loopback(),
            a.is_unicast_link_local(),
        ),
    };
    if !unicast {
        Some("not a unicast address")
    } else if loopback {
        Some("a loopback address: a tunnel's ends are the hosts' underlay addresses")
    } else if link_local {
        Some(
            "an IPv6 link-local address: the kernel takes one only with a device; use a global address of the underlay",
        )
    } else {
        None
    }
}

fn address(cx: &mut Ctx, key: &str, v: &Value) -> Option<IpAddr> {
    let Some(s) = v.as_str() else {
        cx.err(key, Some(v), "must be a string (an IP address)");
        return None;
    };
    match s.parse::<IpAddr>() {
        Ok(ip) => match unusable(ip) {
            Some(why) => {
                cx.err(key, Some(v), why);
                None
            }
            None => Some(ip),
        },
        Err(_) => {
            cx.err(key, Some(v), "not an IP address (no prefix length)");
            None
        }
    }
}

fn integer(cx: &mut Ctx, t: &Table, key: &str, prefix: &str, range: (i64, i64)) -> Option<i64> {
    let v = t.get(key)?;
    match v.as_integer() {
        Some(n) if (range.0..=range.1).contains(&n) => Some(n),
        Some(_) => {
            let why = format!("must be within {}-{}", range.0, range.1);
            cx.err(&join(prefix, key), Some(v), why);
            None
        }
        None => {
            cx.err(&join(prefix, key), Some(v), "must be an integer");
            None
        }
    }
}

/// `vxlan` of bridge table `b` (None: absent, or broken with its errors recorded).
pub(super) fn read(cx: &mut Ctx, b: &Table, bridge_prefix: &str) -> Option<Vxlan> {
    let v = b.get("vxlan")?;
    let prefix = join(bridge_prefix, "vxlan");
    let Some(t) = v.as_table() else {
        cx.err(&prefix, Some(v), "must be a table: vxlan = { id = 100, local = \"192.0.2.10\", peers = [\"192.0.2.11\"] }");
        return None;
    };
    cx.unknown_keys(t, &prefix, &KEYS);
    for k in ["id", "local", "peers"] {
        if !t.contains_key(k) {
            cx.err(
                &join(&prefix, k),
                None,
                "missing (vxlan needs id, local and peers)",
            );
        }
    }
    let id = integer(cx, t, "id", &prefix, (1, i64::from(MAX_ID)));
    let port = match t.get("port") {
        Some(_) => integer(cx, t, "port", &prefix, (1, 65535)),
        None => Some(i64::from(DEFAULT_PORT)),
    };
    let local = t
        .get("local")
        .and_then(|l| address(cx, &join(&prefix, "local"), l));
    let peers = peers(cx, t, &prefix, local);
    let mut remote = Vec::new();
    for (s, item) in cx.strings(t, &prefix, "remote") {
        let key = join(&prefix, "remote");
        match s.parse::<IpAddr>() {
            Ok(ip) if remote.contains(&ip) => cx.err(&key, Some(item), "named twice"),
            Ok(ip) if unusable(ip).is_none() => remote.push(ip),
            _ => cx.err(&key, Some(item), "not a unicast IP address"),
        }
    }
    Some(Vxlan {
        id: u32::try_from(id?).ok()?,
        local: local?,
        peers: peers?,
        port: u16::try_from(port?).ok()?,
        remote,
    })
}

/// `peers`: at least one, none twice, none `local`, all of `local`'s family.
fn peers(cx: &mut Ctx, t: &Table, prefix: &str, local: Option<IpAddr>) -> Option<Vec<IpAddr>> {
    let key = join(prefix, "peers");
    let items = cx.strings(t, prefix, "peers");
    let mut out = Vec::new();
    let mut ok = true;
    for (_, item) in &items {
        let Some(ip) = address(cx, &key, item) else {
            ok = false;
            continue;
        };
        let why = if out.contains(&ip) {
            "named twice"
        } else if Some(ip) == local {
            "is `local`, this host's own address (peers are the other hosts)"
        } else if local.is_some_and(|l| l.is_ipv6() != ip.is_ipv6()) {
            "not of `local`'s address family"
        } else {
            out.push(ip);
            continue;
        };
        cx.err(&key, Some(item), why);
        ok = false;
    }
    if items.is_empty() && t.contains_key("peers") {
        cx.err(&key, t.get("peers"), "needs at least one peer");
        ok = false;
    }
    ok.then_some(out)
}

/// The segment's MTU: the file's `mtu`, else the underlay's less the encapsulation; a
/// warning when the file asks for more than a 1,500-byte underlay carries.
pub(super) fn mtu(cx: &mut Ctx, prefix: &str, vx: &Vxlan, set: Option<u32>) -> u32 {
    let fits = UNDERLAY_MTU - vx.overhead();
    match set {
        Some(m) if m > fits => {
            cx.warnings.push(format!(
                "{}: {} = {m}: VXLAN costs {} bytes a frame, so a 1500-byte underlay carries at most {fits}; larger frames are dropped unless every underlay link between the hosts takes {} bytes",
                cx.file,
                join(prefix, "mtu"),
                vx.overhead(),
                m + vx.overhead()
            ));
            m
        }
        Some(m) => m,
        None => fits,
    }
}

/// What a tunnel changes of bridge table `b` (`prefix`, named `bridge`): its `vxlan`, its
/// MTU (lowered by the encapsulation unless the file sets it) and its MAC (given, or derived:
/// two hosts' halves of one segment often share the topology's and bridge's names, so a
/// tunnel's local address goes into the derivation and keeps their bridges' MACs apart).
pub(super) fn link_settings(
    cx: &mut Ctx,
    b: &Table,
    (prefix, bridge): (&str, &str),
    topology: &str,
) -> (Option<Vxlan>, u32, super::Mac) {
    let vx = read(cx, b, prefix);
    let set = cx.mtu(b, prefix);
    let given = cx.mac(b, prefix);
    let (mtu, seed) = match &vx {
        Some(vx) => (mtu(cx, prefix, vx, set), format!("{bridge}/{}", vx.local)),
        None => (set.unwrap_or(DEFAULT_BRIDGE_MTU), bridge.to_string()),
    };
    let mac = given.unwrap_or_else(|| super::derived_mac(topology, "bridge", &seed));
    (vx, mtu, mac)
}

/// The tunnel's ends are underlay addresses: one on the bridge's own subnet would route the
/// tunnel into the segment it carries (`local` the bridge's address once the bridge exists).
fn off_the_segment(cx: &mut Ctx, b: &super::Bridge, vx: &Vxlan, prefix: &str) {
    let subnets = [b.address.map(IpNetwork::V4), b.address6.map(IpNetwork::V6)];
    let ends = std::iter::once(("local", vx.local)).chain(vx.peers.iter().map(|p| ("peers", *p)));
    for (key, ip) in ends {
        if let Some(n) = subnets.iter().flatten().find(|n| n.contains(ip)) {
            let v = Value::String(ip.to_string());
            cx.err(
                &join(prefix, key),
                Some(&v),
                format!(
                    "on bridge {}'s own subnet {}/{}: the tunnel's ends are the hosts' underlay addresses, outside the segment it carries",
                    b.name,
                    n.network(),
                    n.prefix()
                ),
            );
        }
    }
}

/// Across the file: one bridge per VNI, and `remote` addresses that are not this host's
/// namespaces and are on their bridge's subnet.
pub(super) fn check(cx: &mut Ctx, bridges: &[super::Bridge], namespaces: &[super::Namespace]) {
    let mut ids = std::collections::BTreeMap::new();
    for b in bridges {
        let Some(vx) = &b.vxlan else { continue };
        let prefix = join(&join("bridges", &b.name), "vxlan");
        off_the_segment(cx, b, vx, &prefix);
        if let Some(other) = ids.insert(vx.id, &b.name) {
            let v = Value::Integer(i64::from(vx.id));
            cx.err(
                &join(&prefix, "id"),
                Some(&v),
                format!("bridge {other} has this VNI too"),
            );
        }
        for r in &vx.remote {
            let v = Value::String(r.to_string());
            let key = join(&prefix, "remote");
            let subnet = match r {
                IpAddr::V4(_) => b.address.map(IpNetwork::V4),
                IpAddr::V6(_) => b.address6.map(IpNetwork::V6),
            };
            if let Some(n) = subnet.filter(|n| !n.contains(*r)) {
                cx.err(
                    &key,
                    Some(&v),
                    format!(
                        "not on bridge {}'s subnet {}/{}",
                        b.name,
                        n.network(),
                        n.prefix()
                    ),
                );
            } else if let Some(n) = subnet.filter(|n| {
                n.prefix() < 31
                    && matches!(n, IpNetwork::V4(_))
                    && (n.network() == *r || n.broadcast() == *r)
            }) {
                let what = if n.network() == *r {
                    "network"
                } else {
                    "broadcast"
                };
                cx.err(
                    &key,
                    Some(&v),
                    format!("is bridge {}'s {what} address", b.name),
                );
            } else if b.gateway_addr(r.is_ipv6()) == Some(*r) {
                cx.err(&key, Some(&v), "is this host's own address on the bridge");
            } else if let Some(n) = namespaces
                .iter()
                .find(|n| n.addrs(r.is_ipv6()).any(|a| a == *r))
            {
                cx.err(
                    &key,
                    Some(&v),
                    format!(
                        "is namespace {}'s address on this host: one address, two hosts",
                        n.name
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const HEAD: &str = "name='x'\n[bridges.br0]\naddress='10.0.0.1/24'\n";

    fn parse(extra: &str) -> Result<crate::topology::Topology, Vec<String>> {
        crate::topology::parse(&format!("{HEAD}{extra}"), Path::new("t.toml")).map_err(|e| e.0)
    }

    #[test]
    fn defaults_port_4789_and_lowers_the_segments_mtu_by_the_encapsulation() {
        let t = parse("vxlan = { id = 7, local = '192.0.2.10', peers = ['192.0.2.11'] }\n[namespaces.a]\nbridge='br0'\n")
            .expect("valid");
        let b = &t.bridges[0];
        let vx = b.vxlan.as_ref().expect("vxlan");
        assert_eq!((vx.port, vx.overhead(), b.mtu), (4789, 50, 1450));
        assert_eq!(t.namespaces[0].ifaces[0].mtu, 1450);
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
        let six = parse("vxlan = { id = 7, local = '2001:db8::1', peers = ['2001:db8::2'] }\n")
            .expect("valid");
        assert_eq!(six.bridges[0].mtu, 1430);
    }

    /// Two hosts' files that share the topology's and namespace's names (host B's is A's
    /// with `local` and `peers` swapped) give their namespaces and bridges different MACs on
    /// the one segment; off a segment, a namespace's MAC does not depend on anything else.
    #[test]
    fn derived_macs_on_a_segment_differ_between_hosts() {
        let host = |local: &str, peer: &str| {
            let t = parse(&format!(
                "vxlan = {{ id = 7, local = '{local}', peers = ['{peer}'] }}\n[namespaces.n1]\nbridge='br0'\n"
            ))
            .expect("valid");
            (t.namespaces[0].ifaces[0].mac, t.bridges[0].mac)
        };
        let (a, b) = (
            host("192.0.2.10", "192.0.2.11"),
            host("192.0.2.11", "192.0.2.10"),
        );
        assert!(a.0 != b.0 && a.1 != b.1, "{a:?} {b:?}");
        let plain = |n: &str| {
            parse(&format!("[namespaces.{n}]\nbridge='br0'\n"))
                .expect("valid")
                .namespaces[0]
                .ifaces[0]
                .mac
        };
        assert_eq!(
            plain("n1"),
            crate::topology::derived_mac("x", "namespace", "n1")
        );
    }

    #[test]
    fn an_mtu_above_what_the_underlay_carries_is_a_warning() {
        let t =
            parse("mtu = 1500\nvxlan = { id = 7, local = '192.0.2.10', peers = ['192.0.2.11'] }\n")
                .expect("valid");
        assert_eq!(t.bridges[0].mtu, 1500);
        assert!(
            t.warnings
                .iter()
                .any(|w| w.contains("t.toml: bridges.br0.mtu = 1500: VXLAN costs 50 bytes")),
            "{:?}",
            t.warnings
        );
        // A namespace asking for the underlay's MTU gets the segment's, with a warning.
        let t = parse("vxlan = { id = 7, local = '192.0.2.10', peers = ['192.0.2.11'] }\n[namespaces.a]\nbridge='br0'\nmtu=1500\n")
            .expect("valid");
        assert_eq!(t.namespaces[0].ifaces[0].mtu, 1450);
        assert!(
            t.warnings.iter().any(|w| w.contains(
                "namespaces.a.mtu = 1500: bridge br0 is a VXLAN segment, whose MTU is 1450"
            )),
            "{:?}",
            t.warnings
        );
    }

    #[test]
    fn bad_keys_are_named_with_their_values() {
        let e = parse(
            "vxlan = { id = 0, local = '224.0.0.1', peers = [], port = 70000, group = 'x' }\n",
        )
        .expect_err("invalid");
        for want in [
            "t.toml: bridges.br0.vxlan.id = 0: must be within 1-16777215",
            "t.toml: bridges.br0.vxlan.local = \"224.0.0.1\": not a unicast address",
            "t.toml: bridges.br0.vxlan.peers = []: needs at least one peer",
            "t.toml: bridges.br0.vxlan.port = 70000: must be within 1-65535",
            "t.toml: bridges.br0.vxlan.group = \"x\": unknown key",
        ] {
            assert!(e.iter().any(|m| m.contains(want)), "{want}: {e:?}");
        }
        let e = parse("vxlan = { id = 7, local = '192.0.2.10', peers = ['2001:db8::2'] }\n")
            .expect_err("invalid");
        assert!(
            e.iter()
                .any(|m| m.contains("peers = \"2001:db8::2\": not of `local`'s address family")),
            "{e:?}"
        );
        let e = parse("vxlan = { id = 7, local = '192.0.2.10', peers = ['192.0.2.11'], remote = ['10.9.0.5', '10.0.0.1'] }\n")
            .expect_err("invalid");
        for want in [
            "remote = \"10.9.0.5\": not on bridge br0's subnet 10.0.0.0/24",
            "remote = \"10.0.0.1\": is this host's own address on the bridge",
        ] {
            assert!(e.iter().any(|m| m.contains(want)), "{want}: {e:?}");
        }
        // Ends the kernel would refuse part-way, or that never leave the host; a remote
        // that is the bridge's broadcast; ends on the segment's own subnet.
        let e =
            parse("vxlan = { id = 7, local = 'fe80::1', peers = ['::1'] }\n").expect_err("invalid");
        for want in [
            "local = \"fe80::1\": an IPv6 link-local address",
            "peers = \"::1\": a loopback address",
        ] {
            assert!(e.iter().any(|m| m.contains(want)), "{want}: {e:?}");
        }
        let e = parse("vxlan = { id = 7, local = '10.0.0.1', peers = ['10.0.0.7'], remote = ['10.0.0.255'] }\n")
            .expect_err("invalid");
        for want in [
            "local = \"10.0.0.1\": on bridge br0's own subnet 10.0.0.0/24",
            "peers = \"10.0.0.7\": on bridge br0's own subnet",
            "remote = \"10.0.0.255\": is bridge br0's broadcast address",
        ] {
            assert!(e.iter().any(|m| m.contains(want)), "{want}: {e:?}");
        }
        let e = parse("vxlan = { id = 7, local = '192.0.2.10', peers = ['192.0.2.11'] }\n[bridges.br1]\nvxlan = { id = 7, local = '192.0.2.10', peers = ['192.0.2.11'] }\n")
            .expect_err("invalid");
        assert!(
            e.iter()
                .any(|m| m.contains("bridges.br1.vxlan.id = 7: bridge br0 has this VNI too")),
            "{e:?}"
        );
    }
}
