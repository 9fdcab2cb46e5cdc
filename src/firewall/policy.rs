//! The policy as sets: every `[[allow]]` and `[[deny]]` becomes elements of
//! `saddr . daddr . l4proto . dport` interval sets (and `saddr . l4proto . dport` for the host),
//! or, for entries without ports, of `saddr . daddr . l4proto` sets (a packet too short to
//! carry a port must not slip past a deny because `th dport` cannot be loaded),
//! looked up by a fixed handful of rules — a packet costs the same whether the file has 10
//! entries or 10,000, and nothing depends on their order.
//!
//! ```nft
//! set deny4 { type ipv4_addr . ipv4_addr . inet_proto . inet_service; flags interval;
//!             elements = { 10.10.0.4 . 10.10.0.2 . tcp . 22 } }
//! set deny_proto4 { type ipv4_addr . ipv4_addr . inet_proto; flags interval;
//!                   elements = { 10.10.0.4 . 10.10.0.3 . 0-255 } }
//! chain judge { ...
//!     ip saddr . ip daddr . meta l4proto . th dport @deny4 drop
//!     ip saddr . ip daddr . meta l4proto @deny_proto4 drop
//!     ip saddr . ip daddr . meta l4proto . th dport @allow4 accept
//!     ... }
//! ```

use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::IpNetwork;

use crate::topology::{Action, Endpoint, ICMP, ICMPV6, PortSpec, Topology};
use nft::{
    Base, Chain, ChainType, Datatype, Element, Field, Hook, Match, MetaKey, Op, Policy, Rhs, Set,
    SetRef, Stmt, Value, Verdict, ct_state, prio,
};

use super::build::{concat, field, lookup, meta, rule, set};
use rustc_hash::FxHashMap as FastMap;

/// An inclusive address range of one family.
type Range = (IpAddr, IpAddr);

fn net_range(n: IpNetwork) -> Range {
    super::build::bounds(n)
}

/// The topology's own networks of one family: its segments and what is routed through them.
fn subnets(t: &Topology, v6: bool) -> Vec<IpNetwork> {
    let mut out: Vec<IpNetwork> = Vec::new();
    for b in &t.bridges {
        for n in t.sources_via(&b.name, v6) {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// The address ranges an endpoint stands for, in one family (none for the host, which the
/// forward sets never see as an address).
fn ranges(t: &Topology, e: &Endpoint, v6: bool) -> Vec<Range> {
    // Its addresses on bridges and on uplinks (a macvlan child is reached through the
    // host's shim, and reaches the bridges through it: the forward chain judges both).
    let of_ns =
        |n: &crate::topology::Namespace| -> Vec<Range> { n.addrs(v6).map(|a| (a, a)).collect() };
    match e {
        Endpoint::Ns(n) => t
            .namespaces
            .iter()
            .filter(|x| &x.name == n)
            .flat_map(of_ns)
            .collect(),
        Endpoint::Bridge(b) => t
            .bridges
            .iter()
            .filter(|x| &x.name == b)
            .filter_map(|x| t.segment_subnet(&x.name, v6))
            .map(net_range)
            .collect(),
        Endpoint::Cidr(c) if c.is_ipv6() == v6 => vec![net_range(*c)],
        Endpoint::Cidr(_) | Endpoint::Host => Vec::new(),
        Endpoint::World => {
            let as_u = |a: IpAddr| match a {
                IpAddr::V4(a) => u128::from(u32::from(a)),
                IpAddr::V6(a) => u128::from(a),
            };
            // Namespaces on an uplink's LAN are the topology's own, not the world.
            let children = t.namespaces.iter().flat_map(|n| n.macvlans.iter());
            let children = children.filter_map(|m| match v6 {
                false => Some(IpAddr::V4(m.address.ip())),
                true => m.address6.map(|a| IpAddr::V6(a.ip())),
            });
            let taken: Vec<(u128, u128)> = subnets(t, v6)
                .into_iter()
                .map(net_range)
                .chain(children.map(|a| (a, a)))
                .map(|(lo, hi)| (as_u(lo), as_u(hi)))
                .collect();
            let max = if v6 { u128::MAX } else { u128::from(u32::MAX) };
            super::build::complement(taken, max)
                .into_iter()
                .map(|(lo, hi)| {
                    if v6 {
                        (IpAddr::V6(lo.into()), IpAddr::V6(hi.into()))
                    } else {
                        let v4 = |x: u128| {
                            IpAddr::V4(Ipv4Addr::from(u32::try_from(x).unwrap_or(u32::MAX)))
                        };
                        (v4(lo), v4(hi))
                    }
                })
                .collect()
        }
    }
}

/// (protocol range, port range) of a port spec in one family.
fn proto_ports(p: &PortSpec, v6: bool) -> ((u8, u8), (u16, u16)) {
    let proto = match p.proto {
        None => (0, 255),
        Some(ICMP) if v6 => (ICMPV6, ICMPV6),
        Some(x) => (x, x),
    };
    (proto, p.ports)
}

fn addr(a: IpAddr) -> Value {
    super::build::ip_value(a)
}

/// Whether a port spec names ports: only then does its element need `th dport`, which a
/// packet with less than 4 bytes of transport header cannot load (it would miss the set).
fn names_ports(p: &PortSpec) -> bool {
    p.ports != PortSpec::ALL.ports
}

/// The key of one element: the addresses, the protocol range, and the port range when `ports`.
fn element(lo: &[Value], hi: &[Value], p: &PortSpec, v6: bool, ports: bool) -> Element {
    let ((plo, phi), (pl, ph)) = proto_ports(p, v6);
    // Made once per entry of 10,000: room for the protocol and port from the start.
    let n = lo.len() + 2;
    let (mut key, mut end) = (Vec::with_capacity(n), Vec::with_capacity(n));
    key.extend_from_slice(lo);
    end.extend_from_slice(hi);
    key.push(Value::Proto(plo));
    end.push(Value::Proto(phi));
    if ports {
        key.push(Value::Port(pl));
        end.push(Value::Port(ph));
    }
    Element {
        key,
        key_end: Some(end),
        ..Default::default()
    }
}

/// The elements of the rules with `action` whose ends are both addresses (not the host): of
/// the specs that name ports (`ports`), or of those that do not.
/// `first`: stop at the first element (whether there is any is all that is asked).
fn forward_elements(
    t: &Topology,
    action: Action,
    v6: bool,
    ports: bool,
    first: bool,
) -> Vec<Element> {
    let mut out = Vec::new();
    // Thousands of entries name the same few endpoints: each one's ranges are made once.
    let mut memo: FastMap<&Endpoint, Vec<Range>> = Default::default();
    for r in t.policy.iter().filter(|r| r.action == action) {
        if matches!(r.from, Endpoint::Host) || matches!(r.to, Endpoint::Host) {
            continue;
        }
        // Entries that can give nothing here skip the endpoints' lookup (each set is made
        // from a pass over all 10,000 entries): no spec of this kind, or an address of the
        // other family (whose ranges would be empty).
        let other_family = |e: &Endpoint| matches!(e, Endpoint::Cidr(c) if c.is_ipv6() != v6);
        if !r.ports.iter().any(|p| names_ports(p) == ports)
            || other_family(&r.from)
            || other_family(&r.to)
        {
            continue;
        }
        for e in [&r.from, &r.to] {
            if !memo.contains_key(e) {
                memo.insert(e, ranges(t, e, v6));
            }
        }
        let (from, to) = (&memo[&r.from], &memo[&r.to]);
        for s in from {
            for d in to {
                for p in r.ports.iter().filter(|p| names_ports(p) == ports) {
                    out.push(element(
                        &[addr(s.0), addr(d.0)],
                        &[addr(s.1), addr(d.1)],
                        p,
                        v6,
                        ports,
                    ));
                    if first {
                        return out;
                    }
                }
            }
        }
    }
    dedup(out)
}

/// The elements of rules to the host (`to_host`) or from it (`!to_host`): one address side.
fn host_elements(
    t: &Topology,
    action: Action,
    v6: bool,
    to_host: bool,
    ports: bool,
    first: bool,
) -> Vec<Element> {
    let mut out = Vec::new();
    let mut memo: FastMap<&Endpoint, Vec<Range>> = Default::default();
    for r in t.policy.iter().filter(|r| r.action == action) {
        let other = match (to_host, &r.from, &r.to) {
            (true, f, Endpoint::Host) => f,
            (false, Endpoint::Host, d) => d,
            _ => continue,
        };
        if !r.ports.iter().any(|p| names_ports(p) == ports) {
            continue;
        }
        for s in memo
            .entry(other)
            .or_insert_with(|| ranges(t, other, v6))
            .iter()
        {
            for p in r.ports.iter().filter(|p| names_ports(p) == ports) {
                out.push(element(&[addr(s.0)], &[addr(s.1)], p, v6, ports));
                if first {
                    return out;
                }
            }
        }
    }
    dedup(out)
}

fn dedup(mut v: Vec<Element>) -> Vec<Element> {
    // Equal elements are identical, so the unstable sort gives the same vector, without the
    // stable sort's buffer the size of 10,000 elements.
    v.sort_unstable();
    v.dedup();
    v
}

fn addr_type(v6: bool) -> Datatype {
    if v6 {
        Datatype::Ipv6Addr
    } else {
        Datatype::Ipv4Addr
    }
}

/// Whether the topology says anything about who may talk to whom.
pub(super) fn any(t: &Topology) -> bool {
    !t.policy.is_empty() || t.bridges.iter().any(|b| b.isolate || b.egress_deny) || t.host.protect
}

/// The policy's sets that hold anything (the rules read only these).
/// A group's two halves come together (the rules read both) when either holds anything.
pub(super) fn sets(t: &Topology) -> Vec<Set> {
    let mut v: Vec<Set> = all_sets(t)
        .into_iter()
        .filter(|(x, r)| !x.elements.is_empty() || !r.elements.is_empty())
        .flat_map(|(x, r)| [x, r])
        .collect();
    v.extend(gateways(t));
    v
}

/// Whether the policy set `name` holds anything. Only its first element is made: the rules
/// ask this of each set, and making every set for every question cost seconds with 10,000
/// entries (making each whole, tens of milliseconds).
pub(super) fn has(t: &Topology, name: &str) -> bool {
    for v6 in [false, true] {
        for ports in [true, false] {
            for (group, elements) in groups(t, v6, ports) {
                if set_name(group, v6, ports) == name || exact_name(group, v6, ports) == name {
                    return !elements(true).is_empty();
                }
            }
        }
    }
    false
}

/// The element makers of each group of one family, with or without ports; given `true`, a
/// maker stops at its first element.
type Maker<'a> = Box<dyn Fn(bool) -> Vec<Element> + 'a>;

fn groups(t: &Topology, v6: bool, ports: bool) -> [(&'static str, Maker<'_>); 5] {
    [
        (
            "deny",
            Box::new(move |first| forward_elements(t, Action::Deny, v6, ports, first)),
        ),
        (
            "allow",
            Box::new(move |first| forward_elements(t, Action::Allow, v6, ports, first)),
        ),
        (
            "host_deny",
            Box::new(move |first| host_elements(t, Action::Deny, v6, true, ports, first)),
        ),
        (
            "host_allow",
            Box::new(move |first| host_elements(t, Action::Allow, v6, true, ports, first)),
        ),
        (
            "from_host_deny",
            Box::new(move |first| host_elements(t, Action::Deny, v6, false, ports, first)),
        ),
    ]
}

/// Each bridge's own address, where a namespace may always ping its gateway.
fn gateways(t: &Topology) -> Vec<Set> {
    if !t.host.protect {
        return Vec::new();
    }
    let mut v = Vec::new();
    for v6 in [false, true] {
        let elements: Vec<Element> = t
            .bridges
            .iter()
            .filter_map(|b| {
                b.gateway_addr(v6)
                    .map(|a| Element::key(vec![Value::Ifname(b.name.clone()), addr(a)]))
            })
            .collect();
        if !elements.is_empty() {
            let name = if v6 { "gateways6" } else { "gateways4" };
            v.push(set(
                name,
                vec![Datatype::Ifname, addr_type(v6)],
                None,
                false,
                elements,
            ));
        }
    }
    v
}

/// The policy's sets. Each group comes twice: `NAME4` keyed with `th dport` for the entries
/// that name ports, and `NAME_proto4` without it for those that do not (no `ports`, `icmp`,
/// `tcp`), so that those match every packet of the protocol however short its header. Each
/// of those is a pair: `NAME_exact4`, a hash set of the single keys, and `NAME4`, the
/// interval set of the ranges (see `nft::disjoint::split_points`: 100,000 single keys in the
/// interval set took ~9 s to load, in the hash set a fraction of a second).
fn all_sets(t: &Topology) -> Vec<(Set, Set)> {
    let mut v = Vec::new();
    for v6 in [false, true] {
        let a = addr_type(v6);
        for ports in [true, false] {
            let key = |addrs: usize| {
                let mut k = vec![a; addrs];
                k.push(Datatype::InetProto);
                if ports {
                    k.push(Datatype::InetService);
                }
                k
            };
            for (group, elements) in groups(t, v6, ports) {
                let addrs = if group == "deny" || group == "allow" {
                    2
                } else {
                    1
                };
                let (points, boxes) = nft::disjoint::split_points(elements(false));
                v.push((
                    set(
                        &exact_name(group, v6, ports),
                        key(addrs),
                        None,
                        false,
                        points,
                    ),
                    set(&set_name(group, v6, ports), key(addrs), None, true, boxes),
                ));
            }
        }
    }
    v
}

/// `deny4`, `deny_proto6`, ...
pub(super) fn set_name(group: &str, v6: bool, ports: bool) -> String {
    format!(
        "{group}{}{}",
        if ports { "" } else { "_proto" },
        if v6 { "6" } else { "4" }
    )
}

/// `deny_exact4`, `deny_exact_proto6`, ...: the hash set of the single keys beside `NAME4`.
pub(super) fn exact_name(group: &str, v6: bool, ports: bool) -> String {
    set_name(&format!("{group}_exact"), v6, ports)
}

/// The lookup of a policy set: `addrs` (saddr, daddr, or both) `. meta l4proto`, then
/// `. th dport` for a set of entries that name ports.
fn key_lookup(name: &str, addrs: Vec<Field>, ports: bool) -> Stmt {
    let mut k: Vec<_> = addrs.into_iter().map(field).collect();
    k.push(meta(MetaKey::L4proto));
    if ports {
        k.push(field(Field::ThDport));
    }
    lookup(concat(k), name, true)
}

/// The forward rules of the policy, deny before allow, for the sets that hold anything:
///
/// ```nft
/// ip saddr . ip daddr . meta l4proto . th dport @deny4 drop
/// ip saddr . ip daddr . meta l4proto @deny_proto4 drop
/// ip saddr . ip daddr . meta l4proto . th dport @allow4 accept
/// ip saddr . ip daddr . meta l4proto @allow_proto4 accept
/// ```
/// (and the same over `ip6 saddr . ip6 daddr` with the `…6` sets).
pub(super) fn forward_rules(t: &Topology) -> Vec<nft::Rule> {
    let mut out = Vec::new();
    for (group, verdict) in [("deny", Verdict::Drop), ("allow", Verdict::Accept)] {
        for v6 in [false, true] {
            let (s, d) = if v6 {
                (Field::Ip6Saddr, Field::Ip6Daddr)
            } else {
                (Field::IpSaddr, Field::IpDaddr)
            };
            for ports in [true, false] {
                if has(t, &set_name(group, v6, ports)) {
                    for name in [exact_name(group, v6, ports), set_name(group, v6, ports)] {
                        out.push(rule(
                            vec![key_lookup(&name, vec![s, d], ports)],
                            verdict.clone(),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// Whether set `name` is one of those [`forward_rules`] read.
pub(super) fn is_forward_set(name: &str) -> bool {
    ["deny", "allow"].iter().any(|g| {
        [false, true].iter().any(|v6| {
            [false, true]
                .iter()
                .any(|p| set_name(g, *v6, *p) == name || exact_name(g, *v6, *p) == name)
        })
    })
}

/// `ip saddr . meta l4proto [. th dport] @NAME` (`daddr` with `dst`) for both sets of a host
/// group that hold anything, each with `pre` before it and `verdict` after.
fn host_rules(
    t: &Topology,
    group: &str,
    v6: bool,
    dst: bool,
    pre: &[Stmt],
    verdict: Verdict,
) -> Vec<nft::Rule> {
    let a = match (v6, dst) {
        (false, false) => Field::IpSaddr,
        (false, true) => Field::IpDaddr,
        (true, false) => Field::Ip6Saddr,
        (true, true) => Field::Ip6Daddr,
    };
    let mut out = Vec::new();
    for ports in [true, false] {
        if has(t, &set_name(group, v6, ports)) {
            for name in [exact_name(group, v6, ports), set_name(group, v6, ports)] {
                let mut stmts = pre.to_vec();
                stmts.push(key_lookup(&name, vec![a], ports));
                out.push(rule(stmts, verdict.clone()));
            }
        }
    }
    out
}

/// `icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert }`
pub(super) fn nd() -> Stmt {
    Stmt::Match(Match {
        left: field(Field::Icmpv6Type),
        op: Op::Eq,
        right: Rhs::Set(SetRef::Anon(
            (133u8..=136)
                .map(|t| Element::key(vec![Value::Icmpv6Type(t)]))
                .collect(),
        )),
    })
}

/// `icmp type echo-request` / `icmpv6 type echo-request`
fn echo(v6: bool) -> Stmt {
    if v6 {
        Stmt::eq(field(Field::Icmpv6Type), Value::Icmpv6Type(128))
    } else {
        Stmt::eq(field(Field::IcmpType), Value::IcmpType(8))
    }
}

/// The chains that judge what the namespaces open to the host itself (input) and what the
/// host opens to them (output), when the policy says anything about the host.
///
/// ```nft
/// chain input { type filter hook input priority filter; policy accept;
///     iifname @bridges goto to_host }
/// chain to_host {
///     ct state established,related accept
///     icmpv6 type { nd-router-solicit, ... } accept
///     ip saddr . meta l4proto . th dport @host_deny4 drop
///     ip saddr . meta l4proto @host_deny_proto4 drop
///     ip saddr . meta l4proto . th dport @host_allow4 accept    # [host] protect:
///     ip saddr . meta l4proto @host_allow_proto4 accept
///     iifname . ip daddr @gateways4 icmp type echo-request accept
///     drop }
/// ```
pub(super) fn host_chains(t: &Topology) -> Vec<Chain> {
    let mut out = Vec::new();
    let mut to_host = Vec::new();
    for v6 in [false, true] {
        to_host.extend(host_rules(t, "host_deny", v6, false, &[], Verdict::Drop));
    }
    if t.host.protect {
        for v6 in [false, true] {
            to_host.extend(host_rules(t, "host_allow", v6, false, &[], Verdict::Accept));
        }
        for g in gateways(t) {
            let v6 = g.name.ends_with('6');
            let daddr = if v6 { Field::Ip6Daddr } else { Field::IpDaddr };
            to_host.push(rule(
                vec![
                    lookup(
                        concat(vec![meta(MetaKey::Iifname), field(daddr)]),
                        &g.name,
                        true,
                    ),
                    echo(v6),
                ],
                Verdict::Accept,
            ));
        }
        to_host.push(rule(vec![], Verdict::Drop));
    }
    if !to_host.is_empty() {
        let mut rules = vec![
            rule(
                vec![Stmt::ct_state(ct_state::ESTABLISHED | ct_state::RELATED)],
                Verdict::Accept,
            ),
            rule(vec![nd()], Verdict::Accept),
        ];
        rules.extend(to_host);
        out.push(Chain::new(
            "input",
            Some(base(Hook::Input)),
            vec![rule(
                vec![lookup(meta(MetaKey::Iifname), "bridges", true)],
                Verdict::Goto("to_host".into()),
            )],
        ));
        out.push(Chain::new("to_host", None, rules));
    }
    let mut from_host = Vec::new();
    for v6 in [false, true] {
        let new = [Stmt::ct_state(ct_state::NEW)];
        from_host.extend(host_rules(
            t,
            "from_host_deny",
            v6,
            true,
            &new,
            Verdict::Drop,
        ));
    }
    if !from_host.is_empty() {
        out.push(Chain::new("from_host", Some(base(Hook::Output)), from_host));
    }
    out
}

fn base(hook: Hook) -> Base {
    Base {
        ty: ChainType::Filter,
        hook,
        priority: prio::FILTER,
        policy: Policy::Accept,
    }
}
