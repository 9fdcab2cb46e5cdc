//! The LAN behind a port a bridge took the addresses of (`take_addresses`): not the
//! topology's own, so nsfw does not firewall it. What was forwarded to it before the take
//! (the world, a VPN, another of the host's networks reaching a LAN server) still is: new
//! connections to the LAN's networks out of the bridge are accepted, as they were out of the
//! port. Only the networks `plan::with_lan` found to be the LAN (`Bridge::lan`): never the
//! namespaces' subnets.
//!
//! ```nft
//! set lan4 { type ifname . ipv4_addr; flags interval; elements = { "br0" . 192.0.2.0/24 } }
//! set lan6 { type ifname . ipv6_addr; flags interval; }
//! chain judge { ...
//!     oifname . ip daddr @lan4 accept          # (before `oifname @bridges drop`)
//!     oifname . ip6 daddr @lan6 accept
//! ... }
//! ```

use nft::{Datatype, Element, Field, MetaKey, Rule, Set, Value, Verdict};

use super::build::{concat, field, lookup, meta, net_elem, rule, set};
use crate::topology::Topology;

/// Whether any bridge takes a port's addresses (the sets and rules exist only then).
pub(super) fn any(t: &Topology) -> bool {
    t.bridges.iter().any(|b| b.take_addresses)
}

/// `lan4` and `lan6`: each bridge's LAN networks.
pub(super) fn sets(t: &Topology) -> Vec<Set> {
    let of = |v6: bool| -> Vec<Element> {
        t.bridges
            .iter()
            .flat_map(|b| b.lan.iter().map(move |n| (b, n)))
            .filter(|(_, n)| n.is_ipv6() == v6)
            .map(|(b, n)| net_elem(vec![Value::Ifname(b.name.clone())], *n))
            .collect()
    };
    vec![
        set(
            "lan4",
            vec![Datatype::Ifname, Datatype::Ipv4Addr],
            None,
            true,
            of(false),
        ),
        set(
            "lan6",
            vec![Datatype::Ifname, Datatype::Ipv6Addr],
            None,
            true,
            of(true),
        ),
    ]
}

/// `oifname . ip daddr @lan4 accept`, `oifname . ip6 daddr @lan6 accept`.
pub(super) fn rules() -> Vec<Rule> {
    [(Field::IpDaddr, "lan4"), (Field::Ip6Daddr, "lan6")]
        .into_iter()
        .map(|(f, s)| {
            rule(
                vec![lookup(
                    concat(vec![meta(MetaKey::Oifname), field(f)]),
                    s,
                    true,
                )],
                Verdict::Accept,
            )
        })
        .collect()
}
