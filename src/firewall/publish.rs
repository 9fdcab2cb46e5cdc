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
//! The same two rules in an `output` chain reach the namespace from the host itself.

use crate::nft::{
    Base, Chain, ChainType, Datatype, ElemData, Element, Expr, Fib, FibResult, Field, Hook, Match,
    MetaKey, Nat, NatFamily, NatKind, NatTo, Op, Policy, Rhs, SetRef, Stmt, Value, fib, prio,
};
use crate::topology::Topology;

use super::build::{concat, field, meta, set};

pub const ANY: &str = "publish4";
pub const AT: &str = "publish4_at";

/// Whether the topology publishes anything.
pub fn any(t: &Topology) -> bool {
    t.namespaces.iter().any(|n| !n.publish.is_empty())
}

/// The two maps, with an element per published port.
pub fn maps(t: &Topology) -> Vec<crate::nft::Set> {
    let (mut any, mut at) = (Vec::new(), Vec::new());
    for n in &t.namespaces {
        let Some(i) = n.primary() else { continue };
        for p in &n.publish {
            for (h, q) in p.pairs() {
                let proto = Value::Proto(p.proto.number());
                let to = ElemData::Values(vec![Value::Ipv4(i.address.ip()), Value::Port(q)]);
                match p.host_addr {
                    None => any.push(Element::map(vec![proto, Value::Port(h)], to)),
                    Some(a) => at.push(Element::map(
                        vec![Value::Ipv4(a), proto, Value::Port(h)],
                        to,
                    )),
                }
            }
        }
    }
    let to = Some(vec![Datatype::Ipv4Addr, Datatype::InetService]);
    vec![
        set(
            ANY,
            vec![Datatype::InetProto, Datatype::InetService],
            to.clone(),
            false,
            any,
        ),
        set(
            AT,
            vec![
                Datatype::Ipv4Addr,
                Datatype::InetProto,
                Datatype::InetService,
            ],
            to,
            false,
            at,
        ),
    ]
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

fn dnat(key: Vec<Expr>, map: &str) -> Stmt {
    Stmt::Nat(Nat {
        kind: NatKind::Dnat,
        family: Some(NatFamily::Ip),
        to: NatTo::Map(concat(key), SetRef::Named(map.to_string())),
        flags: 0,
    })
}

/// The DNAT rules: the restricted map first (it names the address), then the plain one.
fn rules() -> Vec<crate::nft::Rule> {
    let port = || vec![meta(MetaKey::L4proto), field(Field::ThDport)];
    let mut at = vec![field(Field::IpDaddr)];
    at.extend(port());
    vec![
        crate::nft::Rule::new(vec![to_host(), dnat(at, AT)]),
        crate::nft::Rule::new(vec![to_host(), dnat(port(), ANY)]),
    ]
}

/// `prerouting` (from the world and the namespaces) and `output` (from the host itself).
pub fn chains() -> Vec<Chain> {
    let base = |hook| Base {
        ty: ChainType::Nat,
        hook,
        priority: prio::DSTNAT,
        policy: Policy::Accept,
    };
    vec![
        Chain::new("prerouting", Some(base(Hook::Prerouting)), rules()),
        Chain::new("output", Some(base(Hook::Output)), rules()),
    ]
}

/// Warnings for published ports a process on the host already listens on: once the DNAT is
/// in place, connections from outside (and from the host to the published address) reach
/// the namespace instead of that process.
pub fn shadowed_listeners(
    t: &Topology,
    listeners: &[crate::plumbing::listeners::Listener],
) -> Vec<String> {
    let mut out = Vec::new();
    for n in &t.namespaces {
        for p in &n.publish {
            let hit = listeners.iter().find(|(proto, addr, port)| {
                *proto == p.proto.number()
                    && (p.host.0..=p.host.1).contains(port)
                    && match p.host_addr {
                        None => true,
                        Some(a) => addr.is_unspecified() || *addr == std::net::IpAddr::V4(a),
                    }
            });
            if let Some((_, addr, port)) = hit {
                let at = match addr {
                    std::net::IpAddr::V6(a) => format!("[{a}]:{port}"),
                    std::net::IpAddr::V4(a) => format!("{a}:{port}"),
                };
                out.push(format!(
                    "{}: namespaces.{}.publish: \"{}\": a process on the host already listens on {at}/{}; connections to the published port will reach namespace {} instead",
                    t.source.display(),
                    n.name,
                    p.entry,
                    p.proto.as_str(),
                    n.name
                ));
            }
        }
    }
    out
}
