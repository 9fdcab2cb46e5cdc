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
//! ```nft
//! table netdev nsfw_office {
//!     comment "nsfw:office"
//!     set src4_eth0 { type ipv4_addr; flags interval; elements = { 192.0.2.21 } }  # + spoof_ok
//!     set src6_eth0 { type ipv6_addr; flags interval; elements = { ::, ADDR6, LINK-LOCAL } }
//!     chain eth0 {
//!         type filter hook egress device "eth0" priority filter; policy accept;
//!         ether type ip meta protocol != ip counter drop      # judged as on the wire
//!         ether type arp meta protocol != arp counter drop
//!         ether type ip6 meta protocol != ip6 counter drop
//!         ether saddr != MAC counter drop                      # its own MAC only
//!         ether type != { ip, arp, ip6 } counter drop          # no VLAN tag, no other type
//!         arp saddr ether != MAC counter drop
//!         arp saddr ip != @src4_eth0 counter drop
//!         ip saddr != @src4_eth0 counter drop
//!         ip6 saddr != @src6_eth0 counter drop                 # or, without address6:
//!                                                              # ether type ip6 counter drop
//!         ip6 saddr :: meta l4proto != ipv6-icmp counter drop  # :: for DAD and MLD only
//!         ip6 saddr :: icmpv6 type != { 131, 135, 143 } counter drop
//!         icmpv6 type nd-router-advert counter drop
//!         icmpv6 type nd-redirect counter drop
//!         icmpv6 type nd-neighbor-advert icmpv6 taddr != @src6_eth0 counter drop
//!     }
//! }
//! ```
//!
//! A `passthru` child carries the uplink's MAC, which the file does not know: its chain has
//! no MAC rules (its address rules hold). DHCP is out of scope (nsfw gives every child its
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
const ND_NEIGHBOR_ADVERT: u8 = 136;
const ND_REDIRECT: u8 = 137;
/// What may come from `::`: MLD reports and DAD's neighbour solicitation (RFC 3810 §5.2.13,
/// RFC 4862 §5.4.2).
const FROM_UNSPECIFIED: [u8; 3] = [131, 135, 143];
const IPPROTO_ICMPV6: u8 = 58;

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
            policy: Policy::Accept,
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
        let mut v6: Vec<Element> = [a6.ip(), m.mac.link_local().ip(), Ipv6Addr::UNSPECIFIED]
            .into_iter()
            .map(|a| net(IpNetwork::V6(ipnetwork::Ipv6Network::from(a))))
            .collect();
        v6.extend(ok(true));
        out.push(set(&src6(m), vec![Datatype::Ipv6Addr], None, true, v6));
    }
    out
}

/// A rule that counts and drops.
fn drop(mut stmts: Vec<Stmt>) -> Rule {
    stmts.push(Stmt::Counter(nft::Counter::default()));
    rule(stmts, Verdict::Drop)
}

/// `FIELD != { A, B, … }`
fn not_among(f: Field, vals: impl IntoIterator<Item = Value>) -> Stmt {
    Stmt::Match(nft::Match {
        left: field(f),
        op: nft::Op::Neq,
        right: nft::Rhs::Set(nft::SetRef::Anon(
            vals.into_iter().map(|v| Element::key(vec![v])).collect(),
        )),
    })
}

fn icmpv6(ty: u8) -> Stmt {
    Stmt::eq(field(Field::Icmpv6Type), Value::Icmpv6Type(ty))
}

/// The chain's rules (the module's comment gives them in `nft` syntax).
fn rules(m: &Macvlan) -> Vec<Rule> {
    let mac = Value::Ether(m.mac.0);
    let mut out = super::claims::head();
    if m.mode != MacvlanMode::Passthru {
        // ether saddr != MAC counter drop
        out.push(drop(vec![Stmt::neq(field(Field::EtherSaddr), mac.clone())]));
    }
    // ether type != { ip, arp, ip6 } counter drop
    out.push(drop(vec![not_among(
        Field::EtherType,
        [0x0800, 0x0806, 0x86dd].map(Value::EtherType),
    )]));
    if m.mode != MacvlanMode::Passthru {
        // arp saddr ether != MAC counter drop
        out.push(drop(vec![Stmt::neq(field(Field::ArpSaddrEther), mac)]));
    }
    // arp saddr ip != @src4_IF counter drop; ip saddr != @src4_IF counter drop
    out.push(drop(vec![lookup(
        field(Field::ArpSaddrIp),
        &src4(m),
        false,
    )]));
    out.push(drop(vec![lookup(field(Field::IpSaddr), &src4(m), false)]));
    if m.address6.is_none() {
        // No IPv6 on the child: none of it leaves (as on the uplink).
        // ether type ip6 counter drop
        out.push(drop(vec![Stmt::eq(
            field(Field::EtherType),
            Value::EtherType(0x86dd),
        )]));
        return out;
    }
    let unspecified = || Stmt::eq(field(Field::Ip6Saddr), Value::Ipv6(Ipv6Addr::UNSPECIFIED));
    out.extend([
        // ip6 saddr != @src6_IF counter drop
        drop(vec![lookup(field(Field::Ip6Saddr), &src6(m), false)]),
        // ip6 saddr :: meta l4proto != ipv6-icmp counter drop
        drop(vec![
            unspecified(),
            Stmt::neq(meta(MetaKey::L4proto), Value::Proto(IPPROTO_ICMPV6)),
        ]),
        // ip6 saddr :: icmpv6 type != { 131, 135, 143 } counter drop
        drop(vec![
            unspecified(),
            not_among(Field::Icmpv6Type, FROM_UNSPECIFIED.map(Value::Icmpv6Type)),
        ]),
        // icmpv6 type nd-router-advert counter drop; … nd-redirect …
        drop(vec![icmpv6(ND_ROUTER_ADVERT)]),
        drop(vec![icmpv6(ND_REDIRECT)]),
        // icmpv6 type nd-neighbor-advert icmpv6 taddr != @src6_IF counter drop
        drop(vec![
            icmpv6(ND_NEIGHBOR_ADVERT),
            lookup(field(Field::Icmpv6Taddr), &src6(m), false),
        ]),
    ]);
    out
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
        assert!(g.contains("ether saddr != "), "{g}");
        assert!(g.contains("icmpv6 taddr != @src6_eth0"), "{g}");
        let p = table(&t, ns("m2")).expect("a guard").to_string();
        assert!(!p.contains("ether saddr"), "passthru has no MAC rule: {p}");
        assert!(p.contains("ether type ip6 counter"), "{p}");
    }
}
