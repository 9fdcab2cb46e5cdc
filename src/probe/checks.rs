//! Which checks a topology implies: every namespace reaches its gateway and its peers, and
//! every published port is reachable the ways it is published — from the world, from other
//! namespaces through the host (hairpin), from the host itself — and seen with the source
//! address the file implies.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};

use anyhow::Result;

use super::{Check, Origin, Probe, net};
use crate::topology::{Namespace, Proto, Publish, Topology};

/// Above this many namespaces on one bridge, each one probes its next neighbour only, rather
/// than every peer: the full mesh grows with the square of the count.
const FULL_MESH_MAX: usize = 8;

/// The simulated upstream of `try`: a namespace standing for the world, its address, and the
/// host's address it sees.
pub struct World {
    pub ns: String,
    pub addr: Ipv4Addr,
    pub host_addr: Ipv4Addr,
}

/// Each namespace reaches its gateway and its peers on the same bridge.
pub fn checks(t: &Topology) -> Vec<Check> {
    let mut out = Vec::new();
    for b in &t.bridges {
        let members: Vec<_> = t.ports_of(&b.name).collect();
        for (i, (n, _)) in members.iter().enumerate() {
            out.push(Check {
                from: Origin::Ns(n.name.clone()),
                to_label: format!("gateway {}", b.name),
                to: b.address.ip(),
                probe: Probe::Ping,
                expect: true,
            });
            let peers: Vec<_> = if members.len() <= FULL_MESH_MAX {
                members.iter().filter(|(m, _)| m.name != n.name).collect()
            } else {
                members
                    .iter()
                    .skip(i + 1)
                    .chain(members.iter())
                    .take(1)
                    .collect()
            };
            for (m, mi) in peers {
                out.push(Check {
                    from: Origin::Ns(n.name.clone()),
                    to_label: m.name.clone(),
                    to: mi.address.ip(),
                    probe: Probe::Ping,
                    expect: true,
                });
            }
        }
    }
    out
}

/// The ports of an entry that are checked: the first and, for a range, the last.
fn sampled(p: &Publish) -> Vec<(u16, u16)> {
    let mut v: Vec<(u16, u16)> = p.pairs().take(1).collect();
    if p.host.1 > p.host.0 {
        v.push((p.host.1, p.ns.1));
    }
    v
}

/// Starts a source-echo server (TCP or UDP) on every sampled published port of every
/// namespace. Returns the (namespace, protocol, port) that now have one; a port already in use
/// (the user's own service, on a live host) is left to its owner.
pub fn publish_servers(t: &Topology) -> Result<BTreeSet<(String, Proto, u16)>> {
    let mut up = BTreeSet::new();
    for n in &t.namespaces {
        for p in &n.publish {
            for (_, port) in sampled(p) {
                let key = (n.name.clone(), p.proto, port);
                if up.contains(&key) {
                    continue;
                }
                let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
                let r = match p.proto {
                    Proto::Tcp => net::serve_source_echo(&n.name, addr),
                    Proto::Udp => net::serve_udp_echo(&n.name, addr),
                };
                match r {
                    Ok(()) => {
                        up.insert(key);
                    }
                    Err(e) if format!("{e:#}").contains("in use") => {}
                    Err(e) => return Err(e),
                }
            }
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
        let Some(iface) = n.primary() else { continue };
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
                if let Some(w) = world {
                    let expect = p.host_addr.is_none_or(|a| a == w.host_addr);
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
                    && let Some(mi) = m.primary()
                    && let Some(mbr) = t.bridge(&mi.bridge)
                {
                    // Hairpin: from a neighbour to the host's address on its own bridge.
                    // On the same bridge the reply would bypass the host: masqueraded, so the
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
                        expect: true,
                    });
                }
                if p.on_localhost() {
                    out.push(Check {
                        from: Origin::Host,
                        to_label: label.clone(),
                        to: p.host_addr.unwrap_or(Ipv4Addr::LOCALHOST),
                        probe: seen(gw),
                        expect: true,
                    });
                }
                if p.host_addr.is_none() {
                    out.push(Check {
                        from: Origin::Host,
                        to_label: label.clone(),
                        to: gw,
                        probe: seen(gw),
                        expect: true,
                    });
                }
            }
        }
    }
    out
}
