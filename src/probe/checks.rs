//! Which checks a topology implies, and what each should find — asked of `crate::oracle`, the
//! same semantics the firewall is compiled from: every namespace and its gateway, pairs on a
//! bridge and across bridges, the world both ways (with the source address it sees), the host,
//! every `[[allow]]`/`[[deny]]` entry at its own ports, and every published port the ways it is
//! published. With many namespaces the pairs are sampled (each to its neighbour), so every rule
//! and default is still tried at least once and the run stays within seconds.

use std::collections::BTreeSet;
use std::net::IpAddr;

use anyhow::Result;

use super::{Check, Origin, PROBE_PORT, Probe, net};
use crate::oracle::{Flow, Party, decide};
use crate::paths::{Node, walk};
use crate::topology::{Bridge, Endpoint, ICMP, Namespace, Proto, Publish, Topology};

/// Above this many namespaces on one bridge, each one probes its next neighbour only, rather
/// than every peer: the full mesh grows with the square of the count.
const FULL_MESH_MAX: usize = 8;
/// The same on an L2-only segment, where the pairs are all there is to check (the host
/// routes nothing there): every pair up to this many namespaces.
const L2_MESH_MAX: usize = 64;

/// The simulated upstream of `try`.
pub(crate) struct World {
    /// The namespace standing for the world.
    pub ns: String,
    /// The host's interface towards it.
    pub uplink: String,
    /// The port of the server out there that answers with the source address it saw.
    pub echo_port: u16,
    pub v4: Side,
    /// The world's IPv6 side, when the sandbox has one.
    pub v6: Option<Side>,
}

/// The world's addresses in one family.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Side {
    /// The world namespace's own address.
    pub addr: IpAddr,
    /// The host's address as the world sees it (on the uplink).
    pub host_addr: IpAddr,
    /// A server out there.
    pub server: IpAddr,
}

impl World {
    fn side(&self, v6: bool) -> Option<Side> {
        if v6 { self.v6 } else { Some(self.v4) }
    }
}

/// A namespace's address in one family.
fn addr_of(n: &Namespace, v6: bool) -> Option<IpAddr> {
    let i = n.primary()?;
    if v6 {
        i.address6.map(|a| IpAddr::V6(a.ip()))
    } else {
        Some(IpAddr::V4(i.address.ip()))
    }
}

/// A bridge's gateway address in one family.
fn gw_of(b: &Bridge, v6: bool) -> Option<IpAddr> {
    b.gateway_addr(v6)
}

fn party(n: &Namespace, v6: bool) -> Option<Party> {
    addr_of(n, v6).map(|a| Party::Ns(n.name.clone(), a))
}

fn flow(from: Party, to: Party, proto: u8, port: u16) -> Flow {
    Flow::new(from, to, proto, port)
}

/// A probe and what the policy expects of it.
fn probe_for(proto: u8, port: u16) -> Probe {
    match proto {
        6 => Probe::Tcp(port),
        17 => Probe::Seen {
            proto: Proto::Udp,
            port,
            want: None,
        },
        _ => Probe::Ping,
    }
}

fn push(
    out: &mut Vec<Check>,
    t: &Topology,
    from: (Origin, Party),
    to: (&str, Party),
    proto: u8,
    port: u16,
) {
    let addr = match &to.1 {
        Party::Ns(_, a) | Party::Host(a) | Party::World(a) => *a,
    };
    let expect = decide(t, &flow(from.1, to.1, proto, port));
    out.push(Check {
        from: from.0,
        to_label: to.0.to_string(),
        to: addr,
        probe: probe_for(proto, port),
        expect,
    });
}

/// The namespaces reached from `n` in the pair checks: every peer of a small bridge (up to
/// `mesh` namespaces), the next one on a large bridge.
fn peers<'a>(members: &[&'a Namespace], i: usize, mesh: usize) -> Vec<&'a Namespace> {
    let n = members[i];
    if members.len() <= mesh {
        members
            .iter()
            .filter(|m| m.name != n.name)
            .copied()
            .collect()
    } else {
        members
            .iter()
            .skip(i + 1)
            .chain(members.iter())
            .take(1)
            .copied()
            .collect()
    }
}

/// Every check the file implies, except published ports (see [`publish_checks`]): for IPv4,
/// and for IPv6 where the file has it.
pub(crate) fn checks(t: &Topology, world: Option<&World>) -> Vec<Check> {
    let mut out = Vec::new();
    for v6 in [false, true] {
        family_checks(&mut out, t, v6);
        if let Some(w) = world {
            world_checks(&mut out, t, w, v6);
        }
        rule_checks(&mut out, t, world, v6);
    }
    super::latency::checks(&mut out, t);
    for why in super::rate::checks(&mut out, t) {
        crate::warning!("{why}");
    }
    out
}

/// A namespace's address on one bridge, in one family.
fn addr_on(n: &Namespace, bridge: &str, v6: bool) -> Option<IpAddr> {
    let i = n.ifaces.iter().find(|i| i.bridge == bridge)?;
    if v6 {
        i.address6.map(|a| IpAddr::V6(a.ip()))
    } else {
        Some(IpAddr::V4(i.address.ip()))
    }
}

/// The checks inside the topology, in one family: each namespace with its gateway, the host
/// and its peers on each of its segments; from one segment to every other, both ways (across
/// the host or a router namespace, as the routes go).
fn family_checks(out: &mut Vec<Check>, t: &Topology, v6: bool) {
    for b in &t.bridges {
        let members: Vec<&Namespace> = t.ports_of(&b.name).map(|(n, _)| n).collect();
        let gw_addr = gw_of(b, v6);
        for (i, n) in members.iter().enumerate() {
            let Some(me) = addr_on(n, &b.name, v6) else {
                continue;
            };
            let from = (Origin::Ns(n.name.clone()), Party::Ns(n.name.clone(), me));
            if let Some(gw_addr) = gw_addr {
                let gw = Party::Host(gw_addr);
                // Its gateway answers ping (even under [host] protect).
                let mut f = flow(from.1.clone(), gw.clone(), ICMP, 0);
                f.ping_gateway = true;
                out.push(Check {
                    from: from.0.clone(),
                    to_label: format!("gateway {}", b.name),
                    to: gw_addr,
                    probe: Probe::Ping,
                    expect: decide(t, &f),
                });
                // The host itself, at a port nothing listens on (a refusal is an answer).
                push(out, t, from.clone(), ("host", gw), 6, 22);
            }
            let mesh = if b.l2_only() {
                L2_MESH_MAX
            } else {
                FULL_MESH_MAX
            };
            for m in peers(&members, i, mesh) {
                if let Some(a) = addr_on(m, &b.name, v6) {
                    push(
                        out,
                        t,
                        from.clone(),
                        (&m.name, Party::Ns(m.name.clone(), a)),
                        ICMP,
                        0,
                    );
                }
            }
        }
    }
    // From one segment to another, both ways: the first namespace of each that does not
    // route (a router is on both), at its first address.
    let firsts: Vec<&Namespace> = t
        .bridges
        .iter()
        .filter_map(|b| {
            let mut on = t.ports_of(&b.name).map(|(n, _)| n);
            let all: Vec<&Namespace> = on.by_ref().collect();
            all.iter().find(|n| !n.forward).or(all.first()).copied()
        })
        .collect();
    for a in &firsts {
        for b in &firsts {
            if a.name != b.name
                && let (Some(pa), Some(pb)) = (party(a, v6), party(b, v6))
            {
                let from = (Origin::Ns(a.name.clone()), pa);
                push(out, t, from, (&b.name, pb), 6, PROBE_PORT);
            }
        }
    }
}

/// The world both ways, in one family: each namespace to the server out there (seen as the
/// uplink when its bridge masquerades out of it), and the world to each namespace. Over IPv6,
/// a namespace without IPv6 must not get out at all.
fn world_checks(out: &mut Vec<Check>, t: &Topology, w: &World, v6: bool) {
    let Some(side) = w.side(v6) else {
        return;
    };
    // The sandbox starts with forwarding off: the namespaces reach out only if the file turns
    // it on (explicitly, or by masquerading).
    let forwarding = t.host.ip_forward == Some(true);
    let server = Party::World(side.server);
    for n in &t.namespaces {
        let Some(i) = n.primary() else { continue };
        let Some(b) = t.bridge(&i.bridge) else {
            continue;
        };
        let Some(p) = party(n, v6) else {
            // No IPv6 on its segment: no IPv6 way out either.
            out.push(Check {
                from: Origin::Ns(n.name.clone()),
                to_label: "internet".into(),
                to: side.server,
                probe: Probe::Tcp(w.echo_port),
                expect: false,
            });
            continue;
        };
        // The source the world sees: the walk's, after any masquerade on the way (a bridge
        // masquerading out of another uplink leaves it alone here).
        let uplink = |fam6: bool| {
            let b_uplink = b.uplink.as_deref().is_none_or(|u| u == w.uplink);
            w.side(fam6).filter(|_| b_uplink).map(|s| s.host_addr)
        };
        let want = walk(t, &Node::Ns(n.name.clone()), p.addr(), side.server, &uplink).src;
        out.push(Check {
            from: Origin::Ns(n.name.clone()),
            to_label: "internet".into(),
            to: side.server,
            probe: Probe::Seen {
                proto: Proto::Tcp,
                port: w.echo_port,
                want: Some(want),
            },
            expect: forwarding
                && via_ok(b, &w.uplink)
                && decide(t, &flow(p.clone(), server.clone(), 6, w.echo_port)),
        });
        if b.egress_deny || !t.policy.is_empty() {
            // Another port out there: what egress rules let through is exact.
            let from = (Origin::Ns(n.name.clone()), p.clone());
            push(out, t, from, ("internet", server.clone()), 6, PROBE_PORT);
        }
        let wan = (Origin::Ns(w.ns.clone()), Party::World(side.addr));
        push(out, t, wan, (&n.name, p), 6, PROBE_PORT);
    }
}

/// Whether the bridge's `egress_via` lets its namespaces out through `uplink` (the world's).
fn via_ok(b: &crate::topology::Bridge, uplink: &str) -> bool {
    b.egress_via.is_empty() || b.egress_via.iter().any(|v| v == uplink)
}

/// A namespace an endpoint stands for (its first, for a bridge or a network) with an address
/// of the family.
fn member<'a>(t: &'a Topology, e: &Endpoint, v6: bool) -> Option<&'a Namespace> {
    let has = |n: &&Namespace| addr_of(n, v6).is_some();
    match e {
        Endpoint::Ns(n) => t.namespaces.iter().filter(has).find(|x| &x.name == n),
        Endpoint::Bridge(b) => t
            .namespaces
            .iter()
            .filter(has)
            .find(|n| n.ifaces.iter().any(|i| &i.bridge == b)),
        Endpoint::Cidr(c) => t
            .namespaces
            .iter()
            .find(|n| addr_of(n, v6).is_some_and(|a| c.contains(a))),
        _ => None,
    }
}

/// One probe per `[[allow]]`/`[[deny]]` entry and port, between parties it names (where the
/// sandbox has them: the world only under `try`), in one family.
fn rule_checks(out: &mut Vec<Check>, t: &Topology, world: Option<&World>, v6: bool) {
    let side = world.and_then(|w| w.side(v6));
    let world_party = |s: Side| world.map(|w| (Origin::Ns(w.ns.clone()), Party::World(s.addr)));
    for r in &t.policy {
        // A network of the other family names nothing here.
        let other = |e: &Endpoint| matches!(e, Endpoint::Cidr(c) if c.is_ipv6() != v6);
        if other(&r.from) || other(&r.to) {
            continue;
        }
        let from = match &r.from {
            Endpoint::World => side.and_then(world_party),
            Endpoint::Cidr(c) if member(t, &r.from, v6).is_none() => {
                side.filter(|s| c.contains(s.addr)).and_then(world_party)
            }
            Endpoint::Host => party_host(t, v6).map(|p| (Origin::Host, p)),
            e => {
                member(t, e, v6).and_then(|n| party(n, v6).map(|p| (Origin::Ns(n.name.clone()), p)))
            }
        };
        let to = match &r.to {
            Endpoint::World => side.map(|s| ("world".to_string(), Party::World(s.server))),
            Endpoint::Cidr(c) if member(t, &r.to, v6).is_none() => side
                .filter(|s| c.contains(s.server))
                .map(|s| (c.to_string(), Party::World(s.server))),
            Endpoint::Host => from
                .as_ref()
                .and_then(|(_, p)| gateway_of(t, p, v6))
                .map(|g| ("host".to_string(), g)),
            e => member(t, e, v6).and_then(|n| party(n, v6).map(|p| (n.name.clone(), p))),
        };
        let (Some(from), Some(to)) = (from, to) else {
            continue;
        };
        for p in &r.ports {
            let (proto, port) = match p.proto {
                None => (6, PROBE_PORT),
                Some(ICMP) => (ICMP, 0),
                Some(x) => (x, p.ports.0.max(1)),
            };
            push(out, t, from.clone(), (&to.0, to.1.clone()), proto, port);
        }
    }
}

/// The host as a party: its address on the first bridge with an address of the family.
fn party_host(t: &Topology, v6: bool) -> Option<Party> {
    t.bridges.iter().find_map(|b| gw_of(b, v6)).map(Party::Host)
}

/// A namespace's gateway (the host on its bridge).
fn gateway_of(t: &Topology, p: &Party, v6: bool) -> Option<Party> {
    let Party::Ns(n, _) = p else {
        return party_host(t, v6);
    };
    let br = t
        .namespaces
        .iter()
        .find(|x| &x.name == n)?
        .primary()?
        .bridge
        .clone();
    t.bridge(&br).and_then(|b| gw_of(b, v6)).map(Party::Host)
}

/// The ports of an entry that are checked: the first and, for a range, the last.
fn sampled(p: &Publish) -> Vec<(u16, u16)> {
    let mut v: Vec<(u16, u16)> = p.pairs().take(1).collect();
    if p.host.1 > p.host.0 {
        v.push((p.host.1, p.ns.1));
    }
    v
}

/// The servers the checks talk to: a source echo (TCP or UDP) on every sampled published port
/// of every namespace, and a UDP echo where an allow/deny entry names a UDP port. Returns the
/// (namespace, protocol, port) that now have one; a port already in use (the user's own
/// service, on a live host) is left to its owner.
pub(crate) fn publish_servers(t: &Topology) -> Result<BTreeSet<(String, Proto, u16)>> {
    let mut want: Vec<(String, Proto, u16)> = Vec::new();
    for n in &t.namespaces {
        for p in &n.publish {
            for (_, port) in sampled(p) {
                want.push((n.name.clone(), p.proto, port));
            }
        }
    }
    for r in &t.policy {
        if let Some(n) = member(t, &r.to, false).or_else(|| member(t, &r.to, true)) {
            for p in r.ports.iter().filter(|p| p.proto == Some(17)) {
                want.push((n.name.clone(), Proto::Udp, p.ports.0.max(1)));
            }
        }
    }
    let mut up = BTreeSet::new();
    for key in want {
        if up.contains(&key) {
            continue;
        }
        let r = match key.1 {
            Proto::Tcp => net::serve_source_echo(&key.0, key.2),
            Proto::Udp => net::serve_udp_echo(&key.0, key.2),
        };
        match r {
            Ok(()) => {
                up.insert(key);
            }
            Err(e) if format!("{e:#}").contains("in use") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(up)
}

/// A namespace that reaches `n` through the host: one on the same bridge if there is one,
/// else one on another bridge; with an address of the family.
fn neighbour<'a>(t: &'a Topology, n: &Namespace, v6: bool) -> Option<&'a Namespace> {
    let br = &n.primary()?.bridge;
    let others = || {
        t.namespaces
            .iter()
            .filter(|m| m.name != n.name && addr_of(m, v6).is_some())
    };
    others()
        .find(|m| m.primary().is_some_and(|i| &i.bridge == br))
        .or_else(|| others().next())
}

/// The checks of every published port; `servers` says where an echo server answers (the
/// source address is checked only there), `world` is the simulated upstream when there is one.
pub(crate) fn publish_checks(
    t: &Topology,
    servers: &BTreeSet<(String, Proto, u16)>,
    world: Option<&World>,
) -> Vec<Check> {
    let mut out = Vec::new();
    for v6 in [false, true] {
        for n in &t.namespaces {
            for p in n.publish.iter().filter(|p| if v6 { p.v6 } else { p.v4 }) {
                publish_family(&mut out, t, n, p, servers, world, v6);
            }
        }
    }
    out
}

/// The checks of one published entry in one family: from the world, hairpin from a
/// neighbour and from the namespace itself, from the host (its own address, and 127.0.0.1 where published there).
fn publish_family(
    out: &mut Vec<Check>,
    t: &Topology,
    n: &Namespace,
    p: &Publish,
    servers: &BTreeSet<(String, Proto, u16)>,
    world: Option<&World>,
    v6: bool,
) {
    let (Some(iface), Some(me)) = (n.primary(), party(n, v6)) else {
        return;
    };
    let Some(gw) = t.bridge(&iface.bridge).and_then(|b| gw_of(b, v6)) else {
        return;
    };
    for (h, q) in sampled(p) {
        let ours = servers.contains(&(n.name.clone(), p.proto, q));
        if !ours && p.proto == Proto::Udp {
            continue; // nothing to answer a datagram
        }
        let label = format!("{}:{q} at host", n.name);
        let seen = |want: IpAddr| Probe::Seen {
            proto: p.proto,
            port: h,
            want: ours.then_some(want),
        };
        // What reaches the namespace's port is judged like any connection to it, as
        // published (a deny still wins).
        let allowed = |from: Party| {
            let mut f = flow(from, me.clone(), p.proto.number(), q);
            f.published = true;
            decide(t, &f)
        };
        if let Some(side) = world.and_then(|w| w.side(v6))
            && let Some(w) = world
        {
            out.push(Check {
                from: Origin::Ns(w.ns.clone()),
                to_label: label.clone(),
                to: side.host_addr,
                // The namespace sees the client's own address: no SNAT on the way in.
                probe: seen(side.addr),
                expect: p.answers_at(side.host_addr) && allowed(Party::World(side.addr)),
            });
        }
        if p.host_addr.is_none()
            && let Some((m, mp, mgw, want)) = hairpin_neighbour(t, n, &iface.bridge, gw, v6)
        {
            out.push(Check {
                from: Origin::Ns(m.name.clone()),
                to_label: label.clone(),
                to: mgw,
                probe: seen(want),
                expect: allowed(mp),
            });
        }
        if p.host_addr.is_none() {
            // Self-hairpin: the namespace to its own published port through the host. With
            // br_netfilter on, the DNAT happens in the bridge and the frame must leave by the
            // port it came in (hairpin mode); masqueraded like a neighbour's.
            out.push(Check {
                from: Origin::Ns(n.name.clone()),
                to_label: label.clone(),
                to: gw,
                probe: seen(gw),
                expect: allowed(me.clone()),
            });
        }
        let host = Party::Host(gw);
        if !v6 && p.on_localhost() {
            out.push(Check {
                from: Origin::Host,
                to_label: label.clone(),
                to: p.host_addr.unwrap_or(IpAddr::from([127, 0, 0, 1])),
                probe: seen(gw),
                expect: allowed(host.clone()),
            });
        }
        if p.host_addr.is_none() {
            out.push(Check {
                from: Origin::Host,
                to_label: label.clone(),
                to: gw,
                probe: seen(gw),
                expect: allowed(host),
            });
        }
    }
}

/// Hairpin: a neighbour of `n` (on `bridge`, whose gateway is `gw`) calling the published port
/// at the host's address on its own bridge: the neighbour, as a party, that address, and the
/// source the namespace sees. On the same bridge the reply would bypass the host: masqueraded,
/// so the namespace sees the bridge's address.
fn hairpin_neighbour<'a>(
    t: &'a Topology,
    n: &Namespace,
    bridge: &str,
    gw: IpAddr,
    v6: bool,
) -> Option<(&'a Namespace, Party, IpAddr, IpAddr)> {
    let m = neighbour(t, n, v6)?;
    let (mi, mp) = (m.primary()?, party(m, v6)?);
    let mgw = t.bridge(&mi.bridge).and_then(|b| gw_of(b, v6))?;
    let want = if mi.bridge == bridge { gw } else { mp.addr() };
    Some((m, mp, mgw, want))
}

/// Above this many namespaces, the `[verify] targets` are tried from the first namespace of
/// each bridge only: egress is decided per bridge, unless the policy names namespaces.
const TARGETS_FROM_ALL_MAX: usize = 16;

/// A connection to each `[verify] targets` service from each namespace (or a sample), expected
/// to get through when the host forwards and the policy lets that namespace out to it.
pub(crate) fn target_checks(t: &Topology) -> Vec<Check> {
    let mut out = Vec::new();
    let all = t.namespaces.len() <= TARGETS_FROM_ALL_MAX || !t.policy.is_empty();
    let mut seen_bridges = BTreeSet::new();
    let forwarding = t.host.ip_forward == Some(true);
    for n in &t.namespaces {
        let Some(i) = n.primary() else { continue };
        if !all && !seen_bridges.insert(i.bridge.clone()) {
            continue;
        }
        for target in &t.verify.targets {
            let v6 = target.is_ipv6();
            let Some(p) = party(n, v6) else { continue };
            let to = Party::World(target.ip());
            out.push(Check {
                from: Origin::Ns(n.name.clone()),
                to_label: "target".into(),
                to: target.ip(),
                probe: Probe::Connect(target.port()),
                expect: forwarding && decide(t, &flow(p, to, 6, target.port())),
            });
        }
    }
    out
}
