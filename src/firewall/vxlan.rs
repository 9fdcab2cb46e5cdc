//! The VXLAN tunnels' UDP port: only the file's peers may send to this topology's segments.
//! The kernel's VXLAN socket takes a datagram from anyone who knows the VNI, and a frame
//! decapsulated from it lands on the bridge as if sent from the segment; so a datagram that
//! carries one of this topology's VNIs is dropped where it enters the host unless it comes
//! from a peer of that very VNI. The judgement is per VNI, read from the VXLAN header
//! (`@th,96,24`: after the 8-byte UDP header, 4 bytes of flags, then 24 bits of VNI): a peer
//! of VNI 100 cannot inject into VNI 200, and another topology's (or anyone's) VXLAN link
//! on the same port, with its own VNI, is none of this table's business. Only when a bridge
//! has `vxlan`.
//!
//! ```nft
//! set vxlan_vnis { type inet_service . integer; elements = { 4789 . 100 } }
//! set vxlan_peers4 { type ipv4_addr . inet_service . integer; elements = { 192.0.2.11 . 4789 . 100 } }
//! set vxlan_peers6 { type ipv6_addr . inet_service . integer; }
//! chain vxlan { type filter hook input priority filter; policy accept;
//!     ip saddr . udp dport . @th,96,24 @vxlan_peers4 accept
//!     ip6 saddr . udp dport . @th,96,24 @vxlan_peers6 accept
//!     udp dport . @th,96,24 @vxlan_vnis drop }
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
    let mut vnis = BTreeSet::new();
    let mut peers: [Vec<Element>; 2] = [Vec::new(), Vec::new()];
    for vx in t.bridges.iter().filter_map(|b| b.vxlan.as_ref()) {
        vnis.insert((vx.port, vx.id));
        for p in &vx.peers {
            let e = Element::key(vec![
                ip_value(*p),
                Value::Port(vx.port),
                Value::Bits24(vx.id),
            ]);
            peers[usize::from(p.is_ipv6())].push(e);
        }
    }
    let [p4, p6] = peers;
    let vnis = vnis
        .into_iter()
        .map(|(port, id)| Element::key(vec![Value::Port(port), Value::Bits24(id)]))
        .collect();
    let key = |addr| vec![addr, Datatype::InetService, Datatype::Bits24];
    vec![
        set(
            "vxlan_vnis",
            vec![Datatype::InetService, Datatype::Bits24],
            None,
            false,
            vnis,
        ),
        set("vxlan_peers4", key(Datatype::Ipv4Addr), None, false, p4),
        set("vxlan_peers6", key(Datatype::Ipv6Addr), None, false, p6),
    ]
}

pub(super) fn chain() -> Chain {
    let from = |src: Field, set: &str| {
        rule(
            vec![lookup(
                concat(vec![
                    field(src),
                    field(Field::UdpDport),
                    field(Field::VxlanVni),
                ]),
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
                vec![lookup(
                    concat(vec![field(Field::UdpDport), field(Field::VxlanVni)]),
                    "vxlan_vnis",
                    true,
                )],
                Verdict::Drop,
            ),
        ],
    )
}
