//! Where a packet goes: a walk through the topology's routing as the file builds it — each
//! namespace's connected subnets, static routes and gateway, the host's bridges and
//! `[host] routes`, router namespaces — hop by hop, with the NAT on the way. The oracle
//! (`crate::oracle`) judges each forwarding hop of the walk with that hop's rules, so the
//! checks of `try` and `verify` follow routes the way packets do.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::topology::{Namespace, Topology};

/// Who holds an address, or where a packet is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Node {
    Host,
    Ns(String),
    /// Anything out of the host's uplink.
    World,
}

/// The segment a packet crosses between two nodes: a bridge, or the host's uplink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    Bridge(String),
    Uplink,
}

/// One forwarding node on the way (not the sender, not the receiver).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hop {
    pub at: Node,
    pub from: Seg,
    pub to: Seg,
}

/// The packet's journey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Walk {
    /// The nodes that forwarded it, in order.
    pub hops: Vec<Hop>,
    /// The segments it was bridged over between two namespaces (isolation applies there).
    pub bridged: Vec<String>,
    /// Where it ended up: the node holding the destination, or why it got nowhere.
    pub end: Result<Node, String>,
    /// Its source address when it arrived, after any masquerade on the way.
    pub src: IpAddr,
}

fn addr_of_iface(i: &crate::topology::Iface, v6: bool) -> Option<IpNetwork> {
    if v6 {
        i.address6.map(IpNetwork::V6)
    } else {
        Some(IpNetwork::V4(i.address))
    }
}

/// Who holds `ip`: a namespace, the host (one of its bridge addresses), or the world.
pub(crate) fn owner(t: &Topology, ip: IpAddr) -> Node {
    if let Some(n) = t
        .namespaces
        .iter()
        .find(|n| n.addrs(ip.is_ipv6()).any(|a| a == ip))
    {
        return Node::Ns(n.name.clone());
    }
    if t.bridges
        .iter()
        .any(|b| b.gateway_addr(ip.is_ipv6()) == Some(ip))
    {
        return Node::Host;
    }
    Node::World
}

/// The longest-prefix route of a namespace towards `dst`: (next hop, out interface).
fn ns_route(n: &Namespace, dst: IpAddr) -> Option<(IpAddr, &crate::topology::Iface)> {
    let v6 = dst.is_ipv6();
    if let Some(i) = n.iface_towards(dst) {
        return Some((dst, i));
    }
    let mut best: Option<(u8, IpAddr)> = None;
    for r in n.routes.iter().filter(|r| r.to.contains(dst)) {
        if best.is_none_or(|(p, _)| r.to.prefix() > p) {
            best = Some((r.to.prefix(), r.via));
        }
    }
    let gw = if v6 {
        n.gateway6.map(IpAddr::V6)
    } else {
        n.gateway.map(IpAddr::V4)
    };
    let via = best.map(|(_, v)| v).or(gw)?;
    n.iface_towards(via).map(|i| (via, i))
}

/// The host's route towards `dst`: out of a bridge (to the next hop on it), or the uplink.
fn host_route(t: &Topology, dst: IpAddr) -> (IpAddr, Seg) {
    let v6 = dst.is_ipv6();
    for b in &t.bridges {
        let net = if v6 {
            b.address6.map(IpNetwork::V6)
        } else {
            b.address.map(IpNetwork::V4)
        };
        if net.is_some_and(|n| n.contains(dst)) {
            return (dst, Seg::Bridge(b.name.clone()));
        }
    }
    let mut best: Option<(u8, IpAddr)> = None;
    for r in t.host.routes.iter().filter(|r| r.to.contains(dst)) {
        if best.is_none_or(|(p, _)| r.to.prefix() > p) {
            best = Some((r.to.prefix(), r.via));
        }
    }
    if let Some((_, via)) = best
        && let Some(b) = t.bridges.iter().find(|b| {
            let net = if v6 {
                b.address6.map(IpNetwork::V6)
            } else {
                b.address.map(IpNetwork::V4)
            };
            net.is_some_and(|n| n.contains(via))
        })
    {
        return (via, Seg::Bridge(b.name.clone()));
    }
    (dst, Seg::Uplink)
}

/// Who answers for `next` on segment `seg`: the namespace with that address on that bridge,
/// the host when it is the bridge's gateway.
fn on_segment(t: &Topology, seg: &str, next: IpAddr) -> Option<Node> {
    let v6 = next.is_ipv6();
    if t.bridge(seg).and_then(|b| b.gateway_addr(v6)) == Some(next) {
        return Some(Node::Host);
    }
    t.ports_of(seg)
        .find(|(_, i)| addr_of_iface(i, v6).is_some_and(|a| a.ip() == next))
        .map(|(n, _)| Node::Ns(n.name.clone()))
}

/// One step of a walk: on to a node (arriving by a segment), or the walk's end.
enum Next {
    Go(Node, Seg),
    End(Result<Node, String>),
}

/// Walks a packet from `from` (source `src`) to `dst`. `uplink` gives the host's address on
/// its uplink, for the masquerade there.
pub(crate) fn walk(
    t: &Topology,
    from: &Node,
    src: IpAddr,
    dst: IpAddr,
    uplink: &dyn Fn(bool) -> Option<IpAddr>,
) -> Walk {
    let mut w = Walk {
        hops: Vec::new(),
        bridged: Vec::new(),
        end: Err(String::new()),
        src,
    };
    let target = owner(t, dst);
    let mut cur = from.clone();
    let mut came: Option<Seg> = None;
    for _ in 0..16 {
        if cur == target {
            w.end = Ok(cur);
            return w;
        }
        let next = match &cur {
            // The world reaches the topology's addresses through the host's uplink.
            Node::World => Next::Go(Node::Host, Seg::Uplink),
            Node::Host => from_host(t, &mut w, came.as_ref(), &target, dst, uplink),
            Node::Ns(name) => from_ns(t, &mut w, name, came.as_ref(), dst),
        };
        match next {
            Next::Go(n, seg) => {
                cur = n;
                came = Some(seg);
            }
            Next::End(end) => {
                w.end = end;
                return w;
            }
        }
    }
    w.end = Err("a routing loop".into());
    w
}

/// The host's step: forwarded (when it forwards) by its routes, out of the uplink (with the
/// masquerade of a bridge whose sources these are) or onto a bridge.
fn from_host(
    t: &Topology,
    w: &mut Walk,
    came: Option<&Seg>,
    target: &Node,
    dst: IpAddr,
    uplink: &dyn Fn(bool) -> Option<IpAddr>,
) -> Next {
    let v6 = dst.is_ipv6();
    if came.is_some() && t.host.ip_forward != Some(true) {
        return Next::End(Err("the host does not forward (ip_forward is off)".into()));
    }
    let (next, seg) = host_route(t, dst);
    if let Some(inn) = came {
        w.hops.push(Hop {
            at: Node::Host,
            from: inn.clone(),
            to: seg.clone(),
        });
    }
    match &seg {
        Seg::Uplink => {
            if *target != Node::World {
                return Next::End(Err(format!("the host has no route to {dst}")));
            }
            // Masquerade out of the host: the sources of a masquerading bridge.
            let masq = t.bridges.iter().any(|b| {
                let on = if v6 { b.masquerade6 } else { b.masquerade };
                on && t.sources_via(&b.name, v6).iter().any(|n| n.contains(w.src))
            });
            if masq && let Some(a) = uplink(v6) {
                w.src = a;
            }
            Next::End(Ok(Node::World))
        }
        Seg::Bridge(b) => match on_segment(t, b, next) {
            Some(n) => Next::Go(n, seg.clone()),
            None => Next::End(Err(format!("nothing answers for {next} on {b}"))),
        },
    }
}

/// A namespace's step: forwarded (when it forwards) by its routes onto one of its bridges,
/// masqueraded when it masquerades out of that interface.
fn from_ns(t: &Topology, w: &mut Walk, name: &str, came: Option<&Seg>, dst: IpAddr) -> Next {
    let v6 = dst.is_ipv6();
    let Some(n) = t.namespaces.iter().find(|n| n.name == name) else {
        return Next::End(Err(format!("no namespace {name}")));
    };
    if came.is_some() && !n.forward {
        return Next::End(Err(format!("{name} does not forward")));
    }
    let Some((next, i)) = ns_route(n, dst) else {
        return Next::End(Err(format!("{name} has no route to {dst}")));
    };
    let out = Seg::Bridge(i.bridge.clone());
    if let Some(inn) = came {
        w.hops.push(Hop {
            at: Node::Ns(name.to_string()),
            from: inn.clone(),
            to: out.clone(),
        });
    }
    if n.masquerade.as_deref() == Some(i.ifname.as_str())
        && let Some(a) = addr_of_iface(i, v6)
    {
        w.src = a.ip();
    }
    let Some(nxt) = on_segment(t, &i.bridge, next) else {
        return Next::End(Err(format!("nothing answers for {next} on {}", i.bridge)));
    };
    if matches!(nxt, Node::Ns(_)) {
        w.bridged.push(i.bridge.clone());
    }
    Next::Go(nxt, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const ROUTED: &str = r#"
name = "r"
[bridges.br0]
address = "10.10.0.1/24"
masquerade = true
[bridges.br1]
[host]
routes = [{ to = "10.20.0.0/24", via = "10.10.0.254" }]
[namespaces.ns1]
bridge = "br0"
[namespaces.router]
forward = true
routes = [{ to = "0.0.0.0/0", via = "10.10.0.1" }]
[namespaces.router.interfaces.eth0]
bridge = "br0"
address = "10.10.0.254/24"
[namespaces.router.interfaces.eth1]
bridge = "br1"
address = "10.20.0.1/24"
[namespaces.ns3]
bridge = "br1"
address = "10.20.0.2/24"
gateway = "10.20.0.1"
"#;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn uplink(v6: bool) -> Option<IpAddr> {
        (!v6).then(|| ip("198.51.100.1"))
    }

    #[test]
    fn through_a_router_and_out_of_the_host() {
        let t = crate::topology::parse(ROUTED, Path::new("t")).expect("valid");
        let ns3 = Node::Ns("ns3".into());
        // ns3 → ns1: the router forwards it onto br0, where ns1 is.
        let w = walk(&t, &ns3, ip("10.20.0.2"), ip("10.10.0.2"), &uplink);
        assert_eq!(w.end, Ok(Node::Ns("ns1".into())));
        assert_eq!(w.hops.len(), 1);
        assert_eq!(w.hops[0].at, Node::Ns("router".into()));
        // ns3 → the world: router, then the host, which masquerades the routed subnet.
        let w = walk(&t, &ns3, ip("10.20.0.2"), ip("203.0.113.10"), &uplink);
        assert_eq!(w.end, Ok(Node::World));
        assert_eq!(w.src, ip("198.51.100.1"));
        assert_eq!(w.hops.len(), 2);
        // ns1 → ns3: the host (its gateway) routes it back out of br0 to the router.
        let w = walk(
            &t,
            &Node::Ns("ns1".into()),
            ip("10.10.0.2"),
            ip("10.20.0.2"),
            &uplink,
        );
        assert_eq!(w.end, Ok(ns3.clone()));
        assert_eq!(
            w.hops[0],
            Hop {
                at: Node::Host,
                from: Seg::Bridge("br0".into()),
                to: Seg::Bridge("br0".into())
            }
        );
        // The world → ns3: in through the uplink, the host routes it to the router.
        let w = walk(
            &t,
            &Node::World,
            ip("203.0.113.10"),
            ip("10.20.0.2"),
            &uplink,
        );
        assert_eq!(w.end, Ok(ns3));
        assert_eq!(w.hops[0].from, Seg::Uplink);
    }

    #[test]
    fn a_router_that_masquerades_hides_its_subnet() {
        let text = ROUTED.replace("forward = true", "masquerade = \"eth0\"");
        let t = crate::topology::parse(&text, Path::new("t")).expect("valid");
        let w = walk(
            &t,
            &Node::Ns("ns3".into()),
            ip("10.20.0.2"),
            ip("10.10.0.2"),
            &uplink,
        );
        assert_eq!(w.src, ip("10.10.0.254"));
    }

    #[test]
    fn no_route_is_nowhere() {
        let text = ROUTED.replace("gateway = \"10.20.0.1\"\n", "");
        let t = crate::topology::parse(&text, Path::new("t")).expect("valid");
        let w = walk(
            &t,
            &Node::Ns("ns3".into()),
            ip("10.20.0.2"),
            ip("203.0.113.10"),
            &uplink,
        );
        assert!(w.end.is_err(), "{w:?}");
    }
}
