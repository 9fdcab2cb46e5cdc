//! Small builders for the statements and sets the firewall is made of, one per shape, so the
//! table layout reads as what it does.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use nft::{
    CtKey, Datatype, Element, Expr, Field, Match, MetaKey, Op, Rhs, Rule, Set, SetData, SetFlags,
    SetRef, Stmt, Value, Verdict, ct_status,
};

/// A rule of statements ending in a verdict.
pub(crate) fn rule(mut stmts: Vec<Stmt>, v: Verdict) -> Rule {
    stmts.push(Stmt::Verdict(v));
    Rule::new(stmts)
}

pub(crate) fn meta(k: MetaKey) -> Expr {
    Expr::Meta(k)
}

pub(crate) fn field(f: Field) -> Expr {
    Expr::Payload(f)
}

pub(crate) fn concat(v: Vec<Expr>) -> Expr {
    Expr::Concat(v)
}

/// `left @set` (or `left != @set`).
pub(crate) fn lookup(left: Expr, set: &str, eq: bool) -> Stmt {
    Stmt::Match(Match {
        left,
        op: if eq { Op::Eq } else { Op::Neq },
        right: Rhs::Set(SetRef::Named(set.to_string())),
    })
}

pub(crate) fn ip_value(ip: IpAddr) -> Value {
    match ip {
        IpAddr::V4(a) => Value::Ipv4(a),
        IpAddr::V6(a) => Value::Ipv6(a),
    }
}

/// `ip saddr 10.10.0.0/24` / `ip6 daddr fd00::/64`: `saddr` picks the field.
pub(crate) fn in_net(net: IpNetwork, saddr: bool) -> Stmt {
    let f = match (net.is_ipv6(), saddr) {
        (false, true) => Field::IpSaddr,
        (false, false) => Field::IpDaddr,
        (true, true) => Field::Ip6Saddr,
        (true, false) => Field::Ip6Daddr,
    };
    let bits = if net.is_ipv6() { 128 } else { 32 };
    if u32::from(net.prefix()) == bits {
        Stmt::eq(field(f), ip_value(net.ip()))
    } else {
        Stmt::prefix(field(f), ip_value(net.network()), u32::from(net.prefix()))
    }
}

/// `ct status dnat`: the connection was DNATed (a published port).
pub(crate) fn ct_dnat() -> Stmt {
    Stmt::Match(Match {
        left: Expr::Ct(CtKey::Status),
        op: Op::Flags,
        right: Rhs::Value(Value::CtStatus(ct_status::DNAT)),
    })
}

/// A set (or map, with `data`) and its elements.
pub(crate) fn set(
    name: &str,
    key: Vec<Datatype>,
    data: Option<Vec<Datatype>>,
    interval: bool,
    elements: Vec<Element>,
) -> Set {
    let data_free = data.is_none();
    Set {
        name: name.to_string(),
        key,
        data: data.map(SetData::Values),
        flags: SetFlags {
            interval,
            ..Default::default()
        },
        // The kernel refuses overlapping elements in an interval set; without data only
        // their union counts.
        elements: if interval && data_free {
            nft::disjoint::disjoint(elements)
        } else {
            elements
        },
        ..Default::default()
    }
}

/// The first and last address of a network.
pub(crate) fn bounds(net: IpNetwork) -> (std::net::IpAddr, std::net::IpAddr) {
    match net {
        IpNetwork::V4(n) => (n.network().into(), n.broadcast().into()),
        IpNetwork::V6(n) => {
            let lo = u128::from(n.network());
            let span = if n.prefix() == 0 {
                u128::MAX
            } else {
                (1u128 << (128 - u32::from(n.prefix()))) - 1
            };
            (
                n.network().into(),
                std::net::Ipv6Addr::from(lo | span).into(),
            )
        }
    }
}

/// An interval element: `key . net` with the network as a range.
pub(crate) fn net_elem(head: Vec<Value>, net: IpNetwork) -> Element {
    let value = |a: std::net::IpAddr| match a {
        std::net::IpAddr::V4(a) => Value::Ipv4(a),
        std::net::IpAddr::V6(a) => Value::Ipv6(a),
    };
    let (first, last) = bounds(net);
    let (first, last) = (value(first), value(last));
    let mut key = head.clone();
    key.push(first);
    let mut end = head;
    end.push(last);
    Element {
        key,
        key_end: Some(end),
        ..Default::default()
    }
}

/// Everything of one family but `taken` (sorted, disjoint after merging).
pub(super) fn complement(mut taken: Vec<(u128, u128)>, max: u128) -> Vec<(u128, u128)> {
    taken.sort();
    let mut out = Vec::new();
    let mut next = 0u128;
    for (lo, hi) in taken {
        if lo > next {
            out.push((next, lo - 1));
        }
        if hi == max {
            return out;
        }
        next = next.max(hi + 1);
    }
    out.push((next, max));
    out
}
