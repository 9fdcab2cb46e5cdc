//! A macvlan child's identity guarded at its own egress: `table netdev nsfw_<name>` inside
//! each namespace that has children of an uplink, one chain per child on the child's egress
//! hook. The uplink's chain (`uplink`, in the host's namespace) cannot tell which child sent a
//! frame, so a child could still put a sibling's, the host's or a foreign child's MAC on a raw
//! frame. Here the device is the sender: everything the child sends (its stack's frames, and
//! frames a packet socket forges, also with PACKET_QDISC_BYPASS) passes its own egress hook,
//! and only its own identity leaves.
//!
//! Who it stops: any sender in the namespace without CAP_NET_ADMIN there (a program with file
//! capabilities such as CAP_NET_RAW, a container process given NET_RAW): it cannot touch the
//! namespace's ruleset. Root in the namespace can delete the table (until the next apply puts
//! it back); full root (CAP_SYS_ADMIN in the initial user namespace) is the host's root. The
//! uplink's chain stays: it still bounds what it bounds today when this table is gone.
//!
//! The chain is an allow-list (policy drop): each shape the child may send is spelled
//! positively, its link-layer header included, so a frame whose headers the hook cannot read
//! (a packet socket past the qdisc bound to a protocol other than 0 leaves the link-layer
//! header unset, and every `ether` load then fails) matches no rule and is dropped.
//!
//! ```nft
//! table netdev nsfw_office {
//!     comment "nsfw:office"
//!     set src4_eth0 { type ipv4_addr; flags interval; elements = { 192.0.2.21 } }  # + spoof_ok
//!     set src6_eth0 { type ipv6_addr; flags interval; elements = { ADDR6, LINK-LOCAL } }
//!     chain eth0 {
//!         type filter hook egress device "eth0" priority filter; policy drop;
//!         ether type ip meta protocol != ip counter drop      # judged as on the wire
//!         ether type arp meta protocol != arp counter drop
//!         ether type ip6 meta protocol != ip6 counter drop
//!         ether saddr MAC arp saddr ether MAC arp saddr ip @src4_eth0 ether type arp counter accept
//!         ether saddr MAC ip saddr @src4_eth0 ether type ip counter accept
//!         # with address6 (without it, no IPv6 leaves):
//!         ether saddr MAC ip6 saddr @src6_eth0 meta l4proto != ipv6-icmp ether type ip6 counter accept
//!         ether saddr MAC ip6 saddr @src6_eth0 ip6 nexthdr ipv6-icmp
//!             icmpv6 type != { nd-router-advert, nd-neighbor-advert, nd-redirect } ether type ip6 counter accept
//!         ether saddr MAC ip6 saddr @src6_eth0 ip6 nexthdr ipv6-icmp
//!             icmpv6 type nd-neighbor-advert icmpv6 taddr @src6_eth0 ether type ip6 counter accept
//!         ether saddr MAC ip6 saddr @src6_eth0 ip6 nexthdr hop-by-hop @nh,320,8 ipv6-icmp
//!             icmpv6 type { 130, 131, 132, 143 } ether type ip6 counter accept      # MLD
//!         ether saddr MAC ip6 saddr @src6_eth0 ip6 nexthdr ipv6-frag @nh,320,8 ipv6-icmp
//!             @nh,336,16 < 0x8 icmpv6 type { echo-request, echo-reply } ether type ip6 counter accept
//!         ether saddr MAC ip6 saddr @src6_eth0 ip6 nexthdr ipv6-frag @nh,336,16 >= 0x8
//!             ether type ip6 counter accept                                       # later fragments
//!         ether saddr MAC ip6 saddr :: ip6 nexthdr ipv6-icmp icmpv6 type nd-neighbor-solicit
//!             ether type ip6 counter accept                                       # DAD
//!         ether saddr MAC ip6 saddr :: ip6 nexthdr hop-by-hop @nh,320,8 ipv6-icmp
//!             icmpv6 type { 131, 143 } ether type ip6 counter accept              # MLD from ::
//!     }
//! }
//! ```
//!
//! Neighbour discovery passes only unfragmented (RFC 6980) with the ICMPv6 header right after
//! the IPv6 header, where the hook reads its type as the receiver will; a fragmented ICMPv6
//! message only as echo, with its header in the first fragment; later fragments pass (nothing
//! is reassembled without the first).
//!
//! A `passthru` child carries the uplink's MAC, which the file does not know: its chain has
//! no `ether saddr` and no `arp saddr ether` (its address rules hold). DHCP is out of scope (nsfw gives every child its
//! address): no frame leaves from 0.0.0.0.

use std::net::Ipv6Addr;

use ipnetwork::IpNetwork;

use crate::owner;
use crate::topology::{Macvlan, MacvlanMode, Namespace, Topology};
use nft::{
    Base, Chain, ChainType, Datatype, Device, Element, Family, Field, Hook, MetaKey, Policy, Rule,
    Set, Stmt, Table, Value, Verdict, prio,
};

use super::build::{field, lookup, meta, net_elem, rule, set};

const ND_ROUTER_ADVERT: u8 = 134;
const ND_NEIGHBOR_SOLICIT: u8 = 135;
const ND_NEIGHBOR_ADVERT: u8 = 136;
const ND_REDIRECT: u8 = 137;
/// MLD's query, reports and done; what may come from `::` is the reports (RFC 3810 §5.2.13)
/// and DAD's neighbour solicitation (RFC 4862 §5.4.2).
const MLD: [u8; 4] = [130, 131, 132, 143];
const MLD_REPORTS: [u8; 2] = [131, 143];
const ECHO: [u8; 2] = [128, 129];
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_ICMPV6: u8 = 58;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;

/// The guard namespace `n` holds: None when it has no child of an uplink.
pub(crate) fn table(t: &Topology, n: &Namespace) -> Option<Table> {
    if n.macvlans.is_empty() {
        return None;
    }
    let mut sets = Vec::new();
    let mut chains = Vec::new();
    for m in &n.macvlans {
        let Some(dev) = Device::new(&m.ifname) else {
            continue;
        };
        sets.extend(sources(n, m));
        let base = Base {
            ty: ChainType::Filter,
            hook: Hook::Egress(dev),
            priority: prio::FILTER,
            policy: Policy::Drop,
        };
        chains.push(Chain::new(&m.ifname, Some(base), rules(m)));
    }
    Some(Table {
        comment: Some(owner::mark(&t.name)),
        sets,
        chains,
        ..Table::new(Family::Netdev, &owner::table(&t.name))
    })
}

fn src4(m: &Macvlan) -> String {
    format!("src4_{}", m.ifname)
}

fn src6(m: &Macvlan) -> String {
    format!("src6_{}", m.ifname)
}

/// The sources child `m` may send from (and answer ARP and ND for): its address, its
/// `address6`, its link-local address and `::`, and the namespace's `spoof_ok` networks, as a
/// bridge port's (`identity`). Interval sets: `spoof_ok` holds networks.
fn sources(n: &Namespace, m: &Macvlan) -> Vec<Set> {
    let net = |n: IpNetwork| net_elem(Vec::new(), n);
    let ok = |v6: bool| {
        n.spoof_ok
            .iter()
            .filter(move |x| x.is_ipv6() == v6)
            .copied()
            .map(net)
    };
    let mut v4 = vec![net(IpNetwork::V4(ipnetwork::Ipv4Network::from(
        m.address.ip(),
    )))];
    v4.extend(ok(false));
    let mut out = vec![set(&src4(m), vec![Datatype::Ipv4Addr], None, true, v4)];
    if let Some(a6) = m.address6 {
        let mut v6: Vec<Element> = [a6.ip(), m.mac.link_local().ip()]
            .into_iter()
            .map(|a| net(IpNetwork::V6(ipnetwork::Ipv6Network::from(a))))
            .collect();
        v6.extend(ok(true));
        out.push(set(&src6(m), vec![Datatype::Ipv6Addr], None, true, v6));
    }
    out
}

/// `FIELD OP { A, B, … }`
fn among(f: Field, op: nft::Op, vals: impl IntoIterator<Item = Value>) -> Stmt {
    Stmt::Match(nft::Match {
        left: field(f),
        op,
        right: nft::Rhs::Set(nft::SetRef::Anon(
            vals.into_iter().map(|v| Element::key(vec![v])).collect(),
        )),
    })
}

fn icmpv6(ty: u8) -> Stmt {
    Stmt::eq(field(Field::Icmpv6Type), Value::Icmpv6Type(ty))
}

fn nexthdr(p: u8) -> Stmt {
    Stmt::eq(field(Field::Ip6Nexthdr), Value::Proto(p))
}

/// One shape the child may send: `[ether saddr MAC] STMTS ether type T accept`. Each rule
/// reads the link-layer header positively, so a frame whose header the hook cannot read (a
/// packet socket past the qdisc, bound to another protocol, leaves it unset) matches none
/// and meets the policy. The network fields' `meta protocol` dependency is implicit.
fn allow(m: &Macvlan, ty: u16, mut stmts: Vec<Stmt>) -> Rule {
    if m.mode != MacvlanMode::Passthru {
        stmts.insert(0, Stmt::eq(field(Field::EtherSaddr), Value::Ether(m.mac.0)));
    }
    stmts.push(Stmt::eq(field(Field::EtherType), Value::EtherType(ty)));
    stmts.push(Stmt::Counter(nft::Counter::default()));
    rule(stmts, Verdict::Accept)
}

/// The chain's rules (the module's comment gives them in `nft` syntax).
fn rules(m: &Macvlan) -> Vec<Rule> {
    let mut out = super::claims::head();
    let mut arp = vec![lookup(field(Field::ArpSaddrIp), &src4(m), true)];
    if m.mode != MacvlanMode::Passthru {
        arp.insert(
            0,
            Stmt::eq(field(Field::ArpSaddrEther), Value::Ether(m.mac.0)),
        );
    }
    out.push(allow(m, ETH_P_ARP, arp));
    out.push(allow(
        m,
        ETH_P_IP,
        vec![lookup(field(Field::IpSaddr), &src4(m), true)],
    ));
    if m.address6.is_some() {
        out.extend(rules6(m));
    }
    out
}

/// IPv6: ICMPv6's neighbour discovery only unfragmented (RFC 6980), so that its type is
/// read where the receiver reads it; a first fragment carrying ICMPv6 only as echo.
fn rules6(m: &Macvlan) -> Vec<Rule> {
    let own = || lookup(field(Field::Ip6Saddr), &src6(m), true);
    let unspecified = || Stmt::eq(field(Field::Ip6Saddr), Value::Ipv6(Ipv6Addr::UNSPECIFIED));
    let then_icmpv6 = || Stmt::eq(field(Field::Ip6Ext0Nexthdr), Value::Proto(IPPROTO_ICMPV6));
    let v6 = |stmts| allow(m, ETH_P_IPV6, stmts);
    let eq = nft::Op::Eq;
    vec![
        // ip6 saddr @src6 meta l4proto != ipv6-icmp
        v6(vec![
            own(),
            Stmt::neq(meta(MetaKey::L4proto), Value::Proto(IPPROTO_ICMPV6)),
        ]),
        // ip6 saddr @src6 ip6 nexthdr ipv6-icmp icmpv6 type != { 134, 136, 137 }
        v6(vec![
            own(),
            nexthdr(IPPROTO_ICMPV6),
            among(
                Field::Icmpv6Type,
                nft::Op::Neq,
                [ND_ROUTER_ADVERT, ND_NEIGHBOR_ADVERT, ND_REDIRECT].map(Value::Icmpv6Type),
            ),
        ]),
        // ip6 saddr @src6 ip6 nexthdr ipv6-icmp icmpv6 type nd-neighbor-advert
        //     icmpv6 taddr @src6
        v6(vec![
            own(),
            nexthdr(IPPROTO_ICMPV6),
            icmpv6(ND_NEIGHBOR_ADVERT),
            lookup(field(Field::Icmpv6Taddr), &src6(m), true),
        ]),
        // ip6 saddr @src6 ip6 nexthdr hop-by-hop @nh,320,8 ipv6-icmp icmpv6 type { MLD }
        v6(vec![
            own(),
            nexthdr(IPPROTO_HOPOPTS),
            then_icmpv6(),
            among(Field::Icmpv6Type, eq, MLD.map(Value::Icmpv6Type)),
        ]),
        // ip6 saddr @src6 ip6 nexthdr ipv6-frag @nh,320,8 ipv6-icmp @nh,336,16 < 8
        //     icmpv6 type { echo-request, echo-reply }
        v6(vec![
            own(),
            nexthdr(IPPROTO_FRAGMENT),
            then_icmpv6(),
            Stmt::Match(nft::Match {
                left: field(Field::Ip6FragOffFlags),
                op: nft::Op::Lt,
                right: nft::Rhs::Value(Value::Bits16(8)),
            }),
            among(Field::Icmpv6Type, eq, ECHO.map(Value::Icmpv6Type)),
        ]),
        // ip6 saddr @src6 ip6 nexthdr ipv6-frag @nh,336,16 >= 8: a later fragment
        v6(vec![
            own(),
            nexthdr(IPPROTO_FRAGMENT),
            Stmt::Match(nft::Match {
                left: field(Field::Ip6FragOffFlags),
                op: nft::Op::Gte,
                right: nft::Rhs::Value(Value::Bits16(8)),
            }),
        ]),
        // ip6 saddr :: ip6 nexthdr ipv6-icmp icmpv6 type nd-neighbor-solicit (DAD)
        v6(vec![
            unspecified(),
            nexthdr(IPPROTO_ICMPV6),
            icmpv6(ND_NEIGHBOR_SOLICIT),
        ]),
        // ip6 saddr :: ip6 nexthdr hop-by-hop @nh,320,8 ipv6-icmp icmpv6 type { 131, 143 }
        v6(vec![
            unspecified(),
            nexthdr(IPPROTO_HOPOPTS),
            then_icmpv6(),
            among(Field::Icmpv6Type, eq, MLD_REPORTS.map(Value::Icmpv6Type)),
        ]),
    ]
}

/// The namespaces whose guard must be read: those the file gives children of an uplink, and
/// those that hold such a child now (the file may have taken it away: the guard goes too).
pub(crate) fn to_observe(t: &Topology, has_child: &dyn Fn(&str) -> bool) -> Vec<String> {
    t.namespaces
        .iter()
        .filter(|n| !n.macvlans.is_empty() || has_child(&n.name))
        .map(|n| n.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_may_send_only_as_itself() {
        let t = crate::testdata::topology(
            "g",
            "name = 'g'\n[namespaces.m1]\nmacvlan = 'eth0'\naddress = '192.0.2.21/24'\naddress6 = '2001:db8::21/64'\nspoof_ok = ['198.51.100.0/24']\n[namespaces.m2]\nmacvlan = 'eth1'\naddress = '192.0.2.22/24'\nmode = 'passthru'\n",
        );
        let ns = |name: &str| t.namespaces.iter().find(|n| n.name == name).expect("ns");
        let g = table(&t, ns("m1")).expect("a guard").to_string();
        assert!(g.contains("hook egress device \"eth0\""), "{g}");
        assert!(g.contains("198.51.100.0/24"), "{g}");
        assert!(g.contains("policy drop"), "an allow-list: {g}");
        assert!(g.contains("ether saddr 02:"), "{g}");
        assert!(g.contains("icmpv6 taddr @src6_eth0"), "{g}");
        let p = table(&t, ns("m2")).expect("a guard").to_string();
        assert!(!p.contains("ether saddr"), "passthru has no MAC rule: {p}");
        assert!(
            !p.contains("ether type ip6 counter"),
            "no IPv6 without address6: {p}"
        );
    }
}
