//! What a namespace may say it is: `spoof_ok` (the source addresses a namespace may send
//! besides its own, like Neutron's allowed address pairs), and which bridge ports are
//! isolated at L2. The firewall's port security (`firewall::identity`) reads both.

use ipnetwork::IpNetwork;
use toml::Table;

use super::policy::{Action, Endpoint};
use super::syntax::{Ctx, join};
use super::{Iface, Mac, Namespace, Topology};

/// `spoof_ok = ["10.99.0.0/24", "2001:db8:99::/64"]`: networks, each of a family the
/// namespace has an address of, unicast, without host bits.
pub(super) fn spoof_ok(
    cx: &mut Ctx,
    table: &Table,
    prefix: &str,
    ifaces: &[Iface],
) -> Vec<IpNetwork> {
    let key = join(prefix, "spoof_ok");
    let has6 = ifaces.iter().any(|i| i.address6.is_some());
    let mut out = Vec::new();
    for (s, v) in cx.strings(table, prefix, "spoof_ok") {
        match check(&s, has6) {
            Ok(n) if !out.contains(&n) => out.push(n),
            Ok(_) => {}
            Err(why) => cx.err(&key, Some(v), why),
        }
    }
    out
}

fn check(s: &str, has6: bool) -> Result<IpNetwork, String> {
    let n: IpNetwork = s
        .parse()
        .map_err(|_| "not a CIDR (like 10.99.0.0/24 or 2001:db8:99::/64)".to_string())?;
    if n.network() != n.ip() {
        return Err(format!(
            "has host bits set: the network is {}/{}",
            n.network(),
            n.prefix()
        ));
    }
    if n.is_ipv6() && !has6 {
        return Err("an IPv6 network, but the namespace has no IPv6 address".into());
    }
    let special = match n.ip() {
        std::net::IpAddr::V4(a) => a.is_multicast() || a.is_loopback(),
        std::net::IpAddr::V6(a) => a.is_multicast() || a.is_loopback(),
    };
    if special && n.prefix() > 0 {
        return Err("multicast or loopback addresses are never a packet's source".into());
    }
    Ok(n)
}

impl Topology {
    /// Whether namespace `n`'s interface `i` is an isolated port of its bridge (BR_ISOLATED).
    /// On an `isolate = true` bridge every port is, but for a namespace that routes (the
    /// segment's gateway: its neighbours must reach it) and one an `[[allow]]` lets reach a
    /// neighbour on that bridge (the policy then judges their traffic at the IP hooks).
    pub(crate) fn isolated_port(&self, n: &Namespace, i: &Iface) -> bool {
        let Some(b) = self.bridge(&i.bridge) else {
            return false;
        };
        if !b.isolate || n.forward {
            return false;
        }
        let on_bridge = |e: &Endpoint| match e {
            Endpoint::Bridge(x) => *x == b.name,
            Endpoint::Ns(x) => self
                .namespaces
                .iter()
                .any(|m| m.name == *x && m.ifaces.iter().any(|j| j.bridge == b.name)),
            Endpoint::Cidr(c) => self.ports_of(&b.name).any(|(m, _)| {
                m.ifaces
                    .iter()
                    .any(|j| j.bridge == b.name && c.contains(j.address.ip().into()))
            }),
            Endpoint::Host | Endpoint::World => false,
        };
        let covers_n = |e: &Endpoint| match e {
            Endpoint::Bridge(x) => *x == b.name,
            Endpoint::Ns(x) => *x == n.name,
            Endpoint::Cidr(c) => c.contains(i.address.ip().into()),
            Endpoint::Host | Endpoint::World => false,
        };
        let reopened = self.policy.iter().any(|r| {
            r.action == Action::Allow
                && on_bridge(&r.from)
                && on_bridge(&r.to)
                && (covers_n(&r.from) || covers_n(&r.to))
        });
        !reopened
    }
}

impl Mac {
    /// The EUI-64 link-local address of the MAC, fe80::/64 — what the kernel would have made,
    /// given by nsfw without DAD so that it is usable at once.
    pub(crate) fn link_local(self) -> ipnetwork::Ipv6Network {
        let m = self.0;
        let ip = std::net::Ipv6Addr::from([
            0xfe,
            0x80,
            0,
            0,
            0,
            0,
            0,
            0,
            m[0] ^ 0x02,
            m[1],
            m[2],
            0xff,
            0xfe,
            m[3],
            m[4],
            m[5],
        ]);
        ipnetwork::Ipv6Network::new(ip, 64).unwrap_or_else(|_| ipnetwork::Ipv6Network::from(ip))
    }
}
