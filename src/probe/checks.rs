//! Which checks a topology implies, and what each should find — asked of `crate::policy`, the
//! same semantics the firewall is compiled from: every namespace and its gateway, pairs on a
//! bridge and across bridges, the world both ways (with the source address it sees), the host,
//! every `[[allow]]`/`[[deny]]` entry at its own ports, and every published port the ways it is
//! published. With many namespaces the pairs are sampled (each to its neighbour), so every rule
//! and default is still tried at least once and the run stays within seconds.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

use anyhow::Result;

use super::{Check, Origin, Probe, net};
use crate::policy::{Flow, Party, decide};
use crate::topology::{Endpoint, ICMP, Namespace, Proto, Publish, Topology};

/// Above this many namespaces on one bridge, each one probes its next neighbour only, rather
/// than every peer: the full mesh grows with the square of the count.
const FULL_MESH_MAX: usize = 8;
/// The port probed where any port will do: a refused connection counts as reached.
pub const PROBE_PORT: u16 = 9000;

/// The simulated upstream of `try`.
pub struct World {
    /// The namespace standing for the world, and its address.
    pub ns: String,
    pub addr: Ipv4Addr,
    /// The host's address as the world sees it (the uplink), and the uplink's name.
    pub host_addr: Ipv4Addr,
    pub uplink: String,
    /// A server out there that answers with the source address it saw.
    pub server: Ipv4Addr,
    pub echo_port: u16,
}

fn v4(n: &Namespace) -> Option<Ipv4Addr> {
    n.primary().map(|i| i.address.ip())
}

fn party(n: &Namespace) -> Option<Party> {
    v4(n).map(|a| Party::Ns(n.name.clone(), IpAddr::V4(a)))
}

fn flow(from: Party, to: Party, proto: u8, port: u16) -> Flow {
    Flow {
        from,
        to,
        proto,
        port,
        published: false,
        ping_gateway: false,
    }
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
        Party::Ns(_, IpAddr::V4(a)) | Party::Host(IpAddr::V4(a)) | Party::World(IpAddr::V4(a)) => {
            *a
        }
        _ => return,
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

/// The namespaces reached from `n` in the pair checks: every peer of a small bridge, the
/// next one on a large bridge.
fn peers<'a>(members: &[&'a Namespace], i: usize) -> Vec<&'a Namespace> {
    let n = members[i];
    if members.len() <= FULL_MESH_MAX {
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

/// Every check the file implies, except published ports (see [`publish_checks`]).
pub fn checks(t: &Topology, world: Option<&World>) -> Vec<Check> {
    let mut out = Vec::new();
    let ns = |n: &Namespace| party(n).map(|p| (Origin::Ns(n.name.clone()), p));
    for b in &t.bridges {
        let members: Vec<&Namespace> = t.ports_of(&b.name).map(|(n, _)| n).collect();
        let gw = Party::Host(IpAddr::V4(b.address.ip()));
        for (i, n) in members.iter().enumerate() {
            let Some(from) = ns(n) else { continue };
            // Its gateway answers ping (even under [host] protect).
            let mut f = flow(from.1.clone(), gw.clone(), ICMP, 0);
            f.ping_gateway = true;
            out.push(Check {
                from: from.0.clone(),
                to_label: format!("gateway {}", b.name),
                to: b.address.ip(),
                probe: Probe::Ping,
                expect: decide(t, &f),
            });
            // The host itself, at a port nothing listens on (a refusal is an answer).
            push(&mut out, t, from.clone(), ("host", gw.clone()), 6, 22);
            for m in peers(&members, i) {
                if let Some(p) = party(m) {
                    push(&mut out, t, from.clone(), (&m.name, p), ICMP, 0);
                }
            }
        }
    }
    // Across bridges, both ways: the first namespace of each.
    let firsts: Vec<&Namespace> = t
        .bridges
        .iter()
        .filter_map(|b| t.ports_of(&b.name).map(|(n, _)| n).next())
        .collect();
    for a in &firsts {
        for b in &firsts {
            if a.name != b.name
                && let (Some(from), Some(to)) = (ns(a), party(b))
            {
                push(&mut out, t, from, (&b.name, to), 6, PROBE_PORT);
            }
        }
    }
    if let Some(w) = world {
        world_checks(&mut out, t, w);
    }
    rule_checks(&mut out, t, world);
    out
}

/// The world both ways: each namespace to the server out there (seen as the uplink when its
/// bridge masquerades out of it), and the world to each namespace.
fn world_checks(out: &mut Vec<Check>, t: &Topology, w: &World) {
    // The sandbox starts with forwarding off: the namespaces reach out only if the file turns
    // it on (explicitly, or by masquerading).
    let forwarding = t.host.ip_forward == Some(true);
    let server = Party::World(IpAddr::V4(w.server));
    for n in &t.namespaces {
        let (Some(i), Some(p)) = (n.primary(), party(n)) else {
            continue;
        };
        let Some(b) = t.bridge(&i.bridge) else {
            continue;
        };
        let natted = b.masquerade && b.uplink.as_deref().is_none_or(|u| u == w.uplink);
        let want = if natted { w.host_addr } else { i.address.ip() };
        out.push(Check {
            from: Origin::Ns(n.name.clone()),
            to_label: "internet".into(),
            to: w.server,
            probe: Probe::Seen {
                proto: Proto::Tcp,
                port: w.echo_port,
                want: Some(want),
            },
            expect: forwarding && decide(t, &flow(p.clone(), server.clone(), 6, w.echo_port)),
        });
        if b.egress_deny || !t.policy.is_empty() {
            // Another port out there: what egress rules let through is exact.
            let from = (Origin::Ns(n.name.clone()), p.clone());
            push(out, t, from, ("internet", server.clone()), 6, PROBE_PORT);
        }
        let wan = (Origin::Ns(w.ns.clone()), Party::World(IpAddr::V4(w.addr)));
        push(out, t, wan, (&n.name, p), 6, PROBE_PORT);
    }
}

/// A namespace an endpoint stands for (its first, for a bridge or a network).
fn member<'a>(t: &'a Topology, e: &Endpoint) -> Option<&'a Namespace> {
    match e {
        Endpoint::Ns(n) => t.namespaces.iter().find(|x| &x.name == n),
        Endpoint::Bridge(b) => t
            .namespaces
            .iter()
            .find(|n| n.ifaces.iter().any(|i| &i.bridge == b)),
        Endpoint::Cidr(c) => t
            .namespaces
            .iter()
            .find(|n| v4(n).is_some_and(|a| c.contains(IpAddr::V4(a)))),
        _ => None,
    }
}

/// One probe per `[[allow]]`/`[[deny]]` entry and port, between parties it names (where the
/// sandbox has them: the world only under `try`).
fn rule_checks(out: &mut Vec<Check>, t: &Topology, world: Option<&World>) {
    let world_party = |w: &World| (Origin::Ns(w.ns.clone()), Party::World(IpAddr::V4(w.addr)));
    for r in &t.policy {
        let from = match &r.from {
            Endpoint::World => world.map(world_party),
            Endpoint::Cidr(c) if member(t, &r.from).is_none() => world
                .filter(|w| c.contains(IpAddr::V4(w.addr)))
                .map(world_party),
            Endpoint::Host => party_host(t).map(|p| (Origin::Host, p)),
            e => member(t, e).and_then(|n| party(n).map(|p| (Origin::Ns(n.name.clone()), p))),
        };
        let to = match &r.to {
            Endpoint::World => {
                world.map(|w| ("world".to_string(), Party::World(IpAddr::V4(w.server))))
            }
            Endpoint::Cidr(c) if member(t, &r.to).is_none() => world
                .filter(|w| c.contains(IpAddr::V4(w.server)))
                .map(|w| (c.to_string(), Party::World(IpAddr::V4(w.server)))),
            Endpoint::Host => from
                .as_ref()
                .and_then(|(_, p)| gateway_of(t, p))
                .map(|g| ("host".to_string(), g)),
            e => member(t, e).and_then(|n| party(n).map(|p| (n.name.clone(), p))),
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

/// The host as a party: its address on the first bridge.
fn party_host(t: &Topology) -> Option<Party> {
    t.bridges
        .first()
        .map(|b| Party::Host(IpAddr::V4(b.address.ip())))
}

/// A namespace's gateway (the host on its bridge).
fn gateway_of(t: &Topology, p: &Party) -> Option<Party> {
    let Party::Ns(n, _) = p else {
        return party_host(t);
    };
    let br = t
        .namespaces
        .iter()
        .find(|x| &x.name == n)?
        .primary()?
        .bridge
        .clone();
    t.bridge(&br)
        .map(|b| Party::Host(IpAddr::V4(b.address.ip())))
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
pub fn publish_servers(t: &Topology) -> Result<BTreeSet<(String, Proto, u16)>> {
    let mut want: Vec<(String, Proto, u16)> = Vec::new();
    for n in &t.namespaces {
        for p in &n.publish {
            for (_, port) in sampled(p) {
                want.push((n.name.clone(), p.proto, port));
            }
        }
    }
    for r in &t.policy {
        if let Some(n) = member(t, &r.to) {
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
        let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, key.2);
        let r = match key.1 {
            Proto::Tcp => net::serve_source_echo(&key.0, addr),
            Proto::Udp => net::serve_udp_echo(&key.0, addr),
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
/// else one on another bridge.
fn neighbour<'a>(t: &'a Topology, n: &Namespace) -> Option<&'a Namespace> {
    let br = &n.primary()?.bridge;
    let others = || {
        t.namespaces
            .iter()
            .filter(|m| m.name != n.name && m.primary().is_some())
    };
    others()
        .find(|m| m.primary().is_some_and(|i| &i.bridge == br))
        .or_else(|| others().next())
}

/// The checks of every published port; `servers` says where an echo server answers (the
/// source address is checked only there), `world` is the simulated upstream when there is one.
pub fn publish_checks(
    t: &Topology,
    servers: &BTreeSet<(String, Proto, u16)>,
    world: Option<&World>,
) -> Vec<Check> {
    let mut out = Vec::new();
    for n in &t.namespaces {
        let (Some(iface), Some(me)) = (n.primary(), party(n)) else {
            continue;
        };
        let Some(br) = t.bridge(&iface.bridge) else {
            continue;
        };
        let gw = br.address.ip();
        for p in &n.publish {
            for (h, q) in sampled(p) {
                let ours = servers.contains(&(n.name.clone(), p.proto, q));
                if !ours && p.proto == Proto::Udp {
                    continue; // nothing to answer a datagram
                }
                let label = format!("{}:{q} at host", n.name);
                let seen = |want: Ipv4Addr| Probe::Seen {
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
                if let Some(w) = world {
                    let expect = p.host_addr.is_none_or(|a| a == w.host_addr)
                        && allowed(Party::World(IpAddr::V4(w.addr)));
                    out.push(Check {
                        from: Origin::Ns(w.ns.clone()),
                        to_label: label.clone(),
                        to: w.host_addr,
                        // The namespace sees the client's own address: no SNAT on the way in.
                        probe: seen(w.addr),
                        expect,
                    });
                }
                if p.host_addr.is_none()
                    && let Some(m) = neighbour(t, n)
                    && let (Some(mi), Some(mp)) = (m.primary(), party(m))
                    && let Some(mbr) = t.bridge(&mi.bridge)
                {
                    // Hairpin: from a neighbour to the host's address on its own bridge. On
                    // the same bridge the reply would bypass the host: masqueraded, so the
                    // namespace sees the bridge's address.
                    let want = if mi.bridge == iface.bridge {
                        gw
                    } else {
                        mi.address.ip()
                    };
                    out.push(Check {
                        from: Origin::Ns(m.name.clone()),
                        to_label: label.clone(),
                        to: mbr.address.ip(),
                        probe: seen(want),
                        expect: allowed(mp),
                    });
                }
                let host = Party::Host(IpAddr::V4(gw));
                if p.on_localhost() {
                    out.push(Check {
                        from: Origin::Host,
                        to_label: label.clone(),
                        to: p.host_addr.unwrap_or(Ipv4Addr::LOCALHOST),
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
    }
    out
}
