//! The VXLAN tunnels' UDP port: only the file's peers may send to it. The kernel's VXLAN
//! socket takes a datagram from anyone who knows the VNI, and a frame decapsulated from it
//! lands on the bridge as if sent from the segment; so everything else to the port is
//! dropped where it enters the host. Only when a bridge has `vxlan`.
//!
//! ```nft
//! set vxlan_ports { type inet_service; elements = { 4789 } }
//! set vxlan_peers4 { type ipv4_addr . inet_service; elements = { 192.0.2.11 . 4789 } }
//! set vxlan_peers6 { type ipv6_addr . inet_service; }
//! chain vxlan { type filter hook input priority filter; policy accept;
//!     ip saddr . udp dport @vxlan_peers4 accept
//!     ip6 saddr . udp dport @vxlan_peers6 accept
//!     udp dport @vxlan_ports drop }
//! ```

use std::collections::BTreeSet;

use crate::topology::Topology;
use nft::{
    Base, Chain, ChainType, Datatype, Element, Field, Hook, Policy, Set, Value, Verdict, prio,
};

use super::build::{concat, field, ip_value, lookup, rule, set};

/// Whether the table needs the chain: a bridge has a tunnel.
pub(super) fn any(t: &Topology) -> bool {
    t.bridges.iter().any(|b| b.vxlan.is_some())
}

pub(super) fn sets(t: &Topology) -> Vec<Set> {
    let mut ports = BTreeSet::new();
    let mut peers: [Vec<Element>; 2] = [Vec::new(), Vec::new()];
    for vx in t.bridges.iter().filter_map(|b| b.vxlan.as_ref()) {
        ports.insert(vx.port);
        for p in &vx.peers {
            let e = Element::key(vec![ip_value(*p), Value::Port(vx.port)]);
            peers[usize::from(p.is_ipv6())].push(e);
        }
    }
    let [p4, p6] = peers;
    let ports = ports
        .into_iter()
        .map(|p| Element::key(vec![Value::Port(p)]))
        .collect();
    vec![
        set(
            "vxlan_ports",
            vec![Datatype::InetService],
            None,
            false,
            ports,
        ),
        set(
            "vxlan_peers4",
            vec![Datatype::Ipv4Addr, Datatype::InetService],
            None,
            false,
            p4,
        ),
        set(
            "vxlan_peers6",
            vec![Datatype::Ipv6Addr, Datatype::InetService],
            None,
            false,
            p6,
        ),
    ]
}

pub(super) fn chain() -> Chain {
    let from = |src: Field, set: &str| {
        rule(
            vec![lookup(
                concat(vec![field(src), field(Field::UdpDport)]),
                set,
                true,
            )],
            Verdict::Accept,
        )
    };
    Chain::new(
        "vxlan",
        Some(Base {
            ty: ChainType::Filter,
            hook: Hook::Input,
            priority: prio::FILTER,
            policy: Policy::Accept,
        }),
        vec![
            from(Field::IpSaddr, "vxlan_peers4"),
            from(Field::Ip6Saddr, "vxlan_peers6"),
            rule(
                vec![lookup(field(Field::UdpDport), "vxlan_ports", true)],
                Verdict::Drop,
            ),
        ],
    )
}
