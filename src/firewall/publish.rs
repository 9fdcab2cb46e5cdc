//! Published ports: a map from the host's port (and address, for a restricted publish) to a
//! namespace's address and port, and one `dnat` statement per map reading it — so a packet
//! costs one lookup however many ports are published.
//!
//! ```nft
//! map publish4 { type inet_proto . inet_service : ipv4_addr . inet_service
//!                elements = { tcp . 8080 : 10.10.0.2 . 80 } }
//! map publish4_at { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service
//!                   elements = { 127.0.0.1 . tcp . 8443 : 10.10.0.2 . 443 } }
//! chain prerouting { type nat hook prerouting priority dstnat; policy accept;
//!     fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @publish4_at
//!     fib daddr type local dnat ip to meta l4proto . th dport map @publish4 }
//! ```
//! The same two rules in an `output` chain reach the namespace from the host itself. Ports
//! published over IPv6 get `publish6`/`publish6_at` and the same rules with `dnat ip6`
//! (in `output` after `ip6 daddr != ::1`: see [`not_loopback6`]).

use crate::topology::{Publish, Topology};
use nft::{
    Base, Chain, ChainType, Datatype, ElemData, Element, Expr, Fib, FibResult, Field, Hook, Match,
    MetaKey, Nat, NatFamily, NatKind, NatTo, Op, Policy, Rhs, SetRef, Stmt, Value, fib, prio,
};

use super::build::{concat, field, ip_value, meta, set};

pub(crate) const ANY: &str = "publish4";
pub(crate) const AT: &str = "publish4_at";
pub(crate) const ANY6: &str = "publish6";
pub(crate) const AT6: &str = "publish6_at";

/// Whether the topology publishes anything.
pub(crate) fn any(t: &Topology) -> bool {
    t.namespaces.iter().any(|n| !n.publish.is_empty())
}

/// Whether it publishes anything over IPv6.
pub(crate) fn any6(t: &Topology) -> bool {
    t.namespaces.iter().any(|n| n.publish.iter().any(|p| p.v6))
}

/// The maps of one family, with an element per published port: `publish4`/`publish4_at`, or
/// `publish6`/`publish6_at`.
fn maps_of(t: &Topology, v6: bool) -> Vec<nft::Set> {
    // Sized up front (at most this many: a namespace without an address of the family gives
    // none): 10,000 elements grown one doubling at a time were a tenth of making the maps.
    let room = |at: bool| -> usize {
        let of_family = |p: &&Publish| if v6 { p.v6 } else { p.v4 };
        let ps = t.namespaces.iter().flat_map(|n| &n.publish);
        ps.filter(of_family)
            .filter(|p| p.host_addr.is_some() == at)
            .map(|p| p.pairs().size_hint().0)
            .sum()
    };
    let (mut any, mut at) = (
        Vec::with_capacity(room(false)),
        Vec::with_capacity(room(true)),
    );
    for n in &t.namespaces {
        let Some(i) = n.primary() else { continue };
        let target = if v6 {
            match i.address6 {
                Some(a) => Value::Ipv6(a.ip()),
                None => continue,
            }
        } else {
            Value::Ipv4(i.address.ip())
        };
        for p in n.publish.iter().filter(|p| if v6 { p.v6 } else { p.v4 }) {
            for (h, q) in p.pairs() {
                let proto = Value::Proto(p.proto.number());
                let to = ElemData::Values(vec![target.clone(), Value::Port(q)]);
                match p.host_addr {
                    None => any.push(Element::map(vec![proto, Value::Port(h)], to)),
                    Some(a) => at.push(Element::map(vec![ip_value(a), proto, Value::Port(h)], to)),
                }
            }
        }
    }
    let addr = if v6 {
        Datatype::Ipv6Addr
    } else {
        Datatype::Ipv4Addr
    };
    let to = Some(vec![addr, Datatype::InetService]);
    let (name_any, name_at) = if v6 { (ANY6, AT6) } else { (ANY, AT) };
    let mut maps = vec![
        set(
            name_any,
            vec![Datatype::InetProto, Datatype::InetService],
            to.clone(),
            false,
            any,
        ),
        set(
            name_at,
            vec![addr, Datatype::InetProto, Datatype::InetService],
            to,
            false,
            at,
        ),
    ];
    // Each element counts the connections its dnat translated (nat chains see a
    // connection's first packet only): a published port's hits, for `nsfw status`.
    for m in &mut maps {
        m.flags.counter = true;
    }
    maps
}

/// The maps: IPv4's always (when anything is published), IPv6's when something is published
/// over IPv6.
pub(crate) fn maps(t: &Topology) -> Vec<nft::Set> {
    let mut v = maps_of(t, false);
    if any6(t) {
        v.extend(maps_of(t, true));
    }
    v
}

/// `fib daddr type local`: addressed to the host itself.
fn to_host() -> Stmt {
    Stmt::Match(Match {
        left: Expr::Fib(Fib {
            flags: fib::DADDR,
            result: FibResult::Type,
            present: false,
        }),
        op: Op::Eq,
        right: Rhs::Value(Value::FibAddr(2)),
    })
}

fn dnat(key: Vec<Expr>, map: &str, v6: bool) -> Stmt {
    Stmt::Nat(Nat {
        kind: NatKind::Dnat,
        family: Some(if v6 { NatFamily::Ip6 } else { NatFamily::Ip }),
        to: NatTo::Map(concat(key), SetRef::Named(map.to_string())),
        flags: 0,
    })
}

/// The DNAT rules of a family: the restricted map first (it names the address), then the
/// plain one.
fn rules_of(v6: bool) -> Vec<nft::Rule> {
    let port = || vec![meta(MetaKey::L4proto), field(Field::ThDport)];
    let (daddr, any, at) = if v6 {
        (Field::Ip6Daddr, ANY6, AT6)
    } else {
        (Field::IpDaddr, ANY, AT)
    };
    let mut key = vec![field(daddr)];
    key.extend(port());
    vec![
        nft::Rule::new(vec![to_host(), dnat(key, at, v6)]),
        nft::Rule::new(vec![to_host(), dnat(port(), any, v6)]),
    ]
}

fn rules(v6: bool) -> Vec<nft::Rule> {
    let mut v = rules_of(false);
    if v6 {
        v.extend(rules_of(true));
    }
    v
}

/// `ip6 daddr != ::1`: Linux never sends a packet from ::1 out of an interface (there is no
/// route_localnet for IPv6), translated or masqueraded or not; a connection to [::1]:PORT
/// translated towards a namespace would hang. Left alone, it is refused at once (nothing
/// listens there) and a client trying `localhost` moves on to 127.0.0.1, which answers.
fn not_loopback6() -> Stmt {
    Stmt::Match(Match {
        left: field(Field::Ip6Daddr),
        op: Op::Neq,
        right: Rhs::Value(Value::Ipv6(std::net::Ipv6Addr::LOCALHOST)),
    })
}

/// The host's own rules: the DNAT rules, none for [::1].
fn output_rules(v6: bool) -> Vec<nft::Rule> {
    let mut v = rules(v6);
    for r in v.iter_mut().skip(2) {
        r.stmts.insert(0, not_loopback6());
    }
    v
}

/// `prerouting` (from the world and the namespaces) and `output` (from the host itself).
pub(crate) fn chains(t: &Topology) -> Vec<Chain> {
    chains_for(any6(t))
}

/// The two chains, with IPv6's rules too when `v6`.
pub(crate) fn chains_for(v6: bool) -> Vec<Chain> {
    let base = |hook| Base {
        ty: ChainType::Nat,
        hook,
        priority: prio::DSTNAT,
        policy: Policy::Accept,
    };
    vec![
        Chain::new("prerouting", Some(base(Hook::Prerouting)), rules(v6)),
        Chain::new("output", Some(base(Hook::Output)), output_rules(v6)),
    ]
}

/// Warnings for published ports a process on the host already listens on: once the DNAT is
/// in place, connections from outside (and from the host to the published address) reach
/// the namespace instead of that process.
pub(crate) fn shadowed_listeners(
    t: &Topology,
    listeners: &[crate::plumbing::listeners::Listener],
) -> Vec<String> {
    let mut out = Vec::new();
    for n in &t.namespaces {
        for p in &n.publish {
            // Every listener the entry shadows, not only the first: a range can hide several.
            let hits: Vec<String> = listeners
                .iter()
                .filter(|(proto, addr, port)| {
                    *proto == p.proto.number()
                        && (p.host.0..=p.host.1).contains(port)
                        && if addr.is_ipv6() { p.v6 } else { p.v4 }
                        && match p.host_addr {
                            None => true,
                            Some(a) => addr.is_unspecified() || *addr == a,
                        }
                })
                .map(|(_, addr, port)| match addr {
                    std::net::IpAddr::V6(a) => format!("[{a}]:{port}/{}", p.proto),
                    std::net::IpAddr::V4(a) => format!("{a}:{port}/{}", p.proto),
                })
                .collect();
            if !hits.is_empty() {
                out.push(format!(
                    "{}: namespaces.{}.publish: \"{}\": a process on the host already listens on {}; connections to the published port will reach namespace {} instead",
                    t.source.display(),
                    n.name,
                    p.entry,
                    hits.join(", "),
                    n.name
                ));
            }
        }
    }
    out
}

/// Warnings for publishes restricted to an address the host does not have (`host`: its
/// addresses now and those the plan gives it): nothing is ever addressed to it, so the entry
/// is dead until the host gains the address — a warning, not an error, since it may. An
/// address of one of the topology's namespaces is named as such.
pub(crate) fn foreign_addresses(t: &Topology, host: &[std::net::IpAddr]) -> Vec<String> {
    let mut out = Vec::new();
    for n in &t.namespaces {
        for p in &n.publish {
            let Some(a) = p.host_addr else { continue };
            // 127.0.0.0/8 is the host's whole (lo answers for all of it).
            if a.is_loopback() || host.contains(&a) {
                continue;
            }
            let owner = t.namespaces.iter().find(|m| {
                m.ifaces.iter().any(|i| {
                    std::net::IpAddr::V4(i.address.ip()) == a
                        || i.address6
                            .is_some_and(|x| std::net::IpAddr::V6(x.ip()) == a)
                })
            });
            let what = match owner {
                Some(m) => format!("it is namespace {}'s address, not the host's", m.name),
                None => "the host has no such address".to_string(),
            };
            out.push(format!(
                "{}: namespaces.{}.publish: \"{}\": {what}; nothing reaches this entry until the host has {a}",
                t.source.display(),
                n.name,
                p.entry
            ));
        }
    }
    out
}
