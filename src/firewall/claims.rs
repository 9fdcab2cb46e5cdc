//! What the frames allowed out of a macvlan uplink may say (`uplink`'s chain, after its
//! allow-list of MACs). The egress hook cannot tell which child sent a frame: the macvlan
//! driver checks no source MAC, so root in a child (or a macvtap guest) may put any MAC it
//! likes on a raw frame. So each kind of allowed MAC is bounded by what nsfw knows:
//!
//! - every frame is judged by what it is on the wire, not by the socket that sent it: a
//!   packet socket bound to another protocol sends an IPv4 frame whose `meta protocol` (the
//!   skb's) is not ip, and nft's `ip saddr` (whose implicit dependency is `meta protocol ip`)
//!   would never look at it. Dropping the disagreeing frames keeps every later L3 match honest;
//!   matching `@nh` by `ether type` alone would have to be repeated in each rule.
//! - the host's MACs (the uplink's, unless a passthru child holds it, and the host's own
//!   macvlans on it: the shims): their ARP names one of the host's MACs and none of the
//!   addresses the file gives its children or their gateways, and (below) no frame of theirs
//!   claims a child's address. Their IP sources are not bound to the host's own addresses: a
//!   host that routes without NAT out of its uplink (IPv6, a routed container network, a
//!   bridge with `masquerade = false`) sends with sources not its own, and nsfw must not cut
//!   that off. So a child may still send blind with the host's MAC from an address that is
//!   nobody's the file knows;
//! - every other MAC (foreign children, other topologies' children) claims neither the host's
//!   addresses nor the file's children's (IP or MAC, in ARP) nor their gateways; a child's own
//!   MAC is bound to its own addresses by the per-child rules besides.
//!
//! ```nft
//! ether type ip meta protocol != ip counter drop
//! ether type arp meta protocol != arp counter drop
//! ether type ip6 meta protocol != ip6 counter drop
//! (the allow-list of MACs)
//! ether saddr @host_eth0 ip saddr @claimed4_eth0 fib saddr type != local counter drop
//! ether saddr @host_eth0 ip6 saddr @claimed6_eth0 fib saddr type != local counter drop
//! ether saddr @host_eth0 icmpv6 type 133-137 fib saddr type != local counter drop
//! ether saddr @host_eth0 arp saddr ip @claimed4_eth0 counter drop
//! ether saddr @host_eth0 arp saddr ether != @host_eth0 counter drop
//! ether saddr != @host_eth0 ether type ip fib saddr type local counter drop
//! ether saddr != @host_eth0 ether type ip6 fib saddr type local counter drop
//! ether saddr != @host_eth0 arp saddr ip @host4_eth0 counter drop
//! ether saddr != @children_eth0 ip saddr @claimed4_eth0 counter drop
//! ether saddr != @children_eth0 arp saddr ip @claimed4_eth0 counter drop
//! ether saddr != @children_eth0 ip6 saddr @claimed6_eth0 counter drop
//! ether saddr != @children_eth0 arp saddr ether @children_eth0 counter drop
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::topology::{Mac, Topology};
use nft::{
    Datatype, Expr, Fib, FibResult, Field, Match, MetaKey, Op, Rhs, Rule, Set, SetRef, Stmt, Value,
    Verdict, fib,
};

use super::build::{field, meta, rule};

/// What the run knows of an uplink beside its MACs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Claims {
    /// The host's MACs there: the uplink's own (unless a passthru child holds it) and the
    /// host's macvlans on it (shims).
    pub host: Vec<Mac>,
    /// The host's IPv4 addresses (ARP has no `fib`).
    pub host4: Vec<Ipv4Addr>,
    /// The host's IPv6 addresses: never counted among the claimed (a gateway may be the host).
    pub host6: Vec<Ipv6Addr>,
    /// The uplink's MAC when a passthru child of the file holds the uplink: that child's, so
    /// among the file's children (its own ARP and addresses must pass the children rules).
    pub passthru: Option<Mac>,
}

/// `ether type ip meta protocol != ip counter drop`, and the same for arp and ip6.
pub(super) fn head() -> Vec<Rule> {
    [0x0800u16, 0x0806, 0x86dd]
        .into_iter()
        .map(|p| {
            drop(vec![
                Stmt::eq(field(Field::EtherType), Value::EtherType(p)),
                Stmt::neq(meta(MetaKey::Protocol), Value::EtherType(p)),
            ])
        })
        .collect()
}

fn drop(mut stmts: Vec<Stmt>) -> Rule {
    stmts.push(Stmt::Counter(nft::Counter::default()));
    rule(stmts, Verdict::Drop)
}

fn host_set(u: &str) -> String {
    format!("host_{u}")
}
fn host4_set(u: &str) -> String {
    format!("host4_{u}")
}
fn claimed4_set(u: &str) -> String {
    format!("claimed4_{u}")
}
fn claimed6_set(u: &str) -> String {
    format!("claimed6_{u}")
}

/// `LEFT @SET` (`op` Eq) or `LEFT != @SET` (Neq).
fn lookup(left: Expr, op: Op, set: String) -> Stmt {
    Stmt::Match(Match {
        left,
        op,
        right: Rhs::Set(SetRef::Named(set)),
    })
}

/// `fib saddr type local` (`op` Eq) or `!= local`.
fn local(op: Op) -> Stmt {
    Stmt::Match(Match {
        left: Expr::Fib(Fib {
            flags: fib::SADDR,
            result: FibResult::Type,
            present: false,
        }),
        op,
        right: Rhs::Value(Value::FibAddr(2)),
    })
}

/// The addresses the file gives its children on the LAN (and their link-local ones) and the
/// gateways it names for them there: no one else's frame may claim them.
fn claimed(t: &Topology) -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>) {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for n in &t.namespaces {
        for m in &n.macvlans {
            v4.push(m.address.ip());
            if let Some(g) = n.gateway.filter(|g| m.address.contains(*g)) {
                v4.push(g);
            }
            if let Some(a6) = m.address6 {
                v6.push(a6.ip());
                v6.push(m.mac.link_local().ip());
                if let Some(g) = n.gateway6.filter(|g| a6.contains(*g)) {
                    v6.push(g);
                }
            }
        }
    }
    (v4, v6)
}

fn set(name: String, key: Datatype, mut vals: Vec<Value>) -> Set {
    vals.sort();
    vals.dedup();
    Set {
        name,
        key: vec![key],
        elements: vals
            .into_iter()
            .map(|v| nft::Element::key(vec![v]))
            .collect(),
        ..Set::default()
    }
}

/// The sets the rules of uplink `u` read.
pub(super) fn sets(t: &Topology, u: &str, c: &Claims) -> Vec<Set> {
    let (mut v4, mut v6) = claimed(t);
    v4.retain(|a| !c.host4.contains(a));
    v6.retain(|a| !c.host6.contains(a));
    vec![
        set(
            host_set(u),
            Datatype::EtherAddr,
            c.host.iter().map(|m| Value::Ether(m.0)).collect(),
        ),
        set(
            host4_set(u),
            Datatype::Ipv4Addr,
            c.host4.iter().copied().map(Value::Ipv4).collect(),
        ),
        set(
            claimed4_set(u),
            Datatype::Ipv4Addr,
            v4.into_iter().map(Value::Ipv4).collect(),
        ),
        set(
            claimed6_set(u),
            Datatype::Ipv6Addr,
            v6.into_iter().map(Value::Ipv6).collect(),
        ),
    ]
}

/// The rules after the allow-list of MACs (the module's comment gives them as `nft` says).
pub(super) fn rules(u: &str, children: String) -> Vec<Rule> {
    let host = |op| lookup(field(Field::EtherSaddr), op, host_set(u));
    let ether = |p| Stmt::eq(field(Field::EtherType), Value::EtherType(p));
    vec![
        // The host's MACs claim no child's address nor a gateway the file names, unless the
        // host itself has that address (it may be the LAN's gateway). The shim's MAC is among
        // the children's allowed MACs, so the rules on `children` below do not bound it.
        drop(vec![
            host(Op::Eq),
            lookup(field(Field::IpSaddr), Op::Eq, claimed4_set(u)),
            local(Op::Neq),
        ]),
        drop(vec![
            host(Op::Eq),
            lookup(field(Field::Ip6Saddr), Op::Eq, claimed6_set(u)),
            local(Op::Neq),
        ]),
        // Neighbour discovery (router solicitation to redirect, types 133-137) is never
        // routed: from the host's MACs it comes from the host's own addresses, or it is a
        // child pointing the LAN's neighbour entries at the host.
        drop(vec![
            host(Op::Eq),
            Stmt::Match(Match {
                left: field(Field::Icmpv6Type),
                op: Op::Eq,
                right: Rhs::Range(Value::Icmpv6Type(133), Value::Icmpv6Type(137)),
            }),
            local(Op::Neq),
        ]),
        drop(vec![
            host(Op::Eq),
            lookup(field(Field::ArpSaddrIp), Op::Eq, claimed4_set(u)),
        ]),
        // The host's ARP names one of its MACs: else it points the LAN's entry for the
        // host's address at whoever forged it.
        drop(vec![
            host(Op::Eq),
            lookup(field(Field::ArpSaddrEther), Op::Neq, host_set(u)),
        ]),
        drop(vec![host(Op::Neq), ether(0x0800), local(Op::Eq)]),
        drop(vec![host(Op::Neq), ether(0x86dd), local(Op::Eq)]),
        drop(vec![
            host(Op::Neq),
            lookup(field(Field::ArpSaddrIp), Op::Eq, host4_set(u)),
        ]),
        drop(vec![
            lookup(field(Field::EtherSaddr), Op::Neq, children.clone()),
            lookup(field(Field::IpSaddr), Op::Eq, claimed4_set(u)),
        ]),
        drop(vec![
            lookup(field(Field::EtherSaddr), Op::Neq, children.clone()),
            lookup(field(Field::ArpSaddrIp), Op::Eq, claimed4_set(u)),
        ]),
        drop(vec![
            lookup(field(Field::EtherSaddr), Op::Neq, children.clone()),
            lookup(field(Field::Ip6Saddr), Op::Eq, claimed6_set(u)),
        ]),
        drop(vec![
            lookup(field(Field::EtherSaddr), Op::Neq, children.clone()),
            lookup(field(Field::ArpSaddrEther), Op::Eq, children),
        ]),
    ]
}
