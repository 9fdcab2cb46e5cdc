//! What the picture shows, built from the topology alone: the world and the host, each bridge
//! as a segment, the namespaces and routers on them with their interfaces, addresses and
//! routes, the published ports, and the policy as labelled edges. Every renderer (SVG, dot,
//! mermaid) draws this; the live overlay (`live`) marks its objects and adds counters.

use std::net::IpAddr;

use crate::topology::{Action, Endpoint, Namespace, Publish, Topology};

/// How a line of a box reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tone {
    Plain,
    /// Secondary facts (flags, routes).
    Dim,
    /// What the kernel says is wrong (live).
    Bad,
    /// Counters (live).
    Count,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Line {
    pub text: String,
    pub tone: Tone,
}

impl Line {
    pub(crate) fn plain(text: impl Into<String>) -> Line {
        Line {
            text: text.into(),
            tone: Tone::Plain,
        }
    }
    pub(crate) fn dim(text: impl Into<String>) -> Line {
        Line {
            text: text.into(),
            tone: Tone::Dim,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    World,
    Host,
    Bridge,
    Namespace,
    Router,
    Published,
    /// A policy endpoint (a namespace, bridge, CIDR, host or world named by an entry).
    Endpoint,
}

impl Kind {
    pub(crate) fn class(self) -> &'static str {
        match self {
            Kind::World => "world",
            Kind::Host => "host",
            Kind::Bridge => "bridge",
            Kind::Namespace => "namespace",
            Kind::Router => "router",
            Kind::Published => "published",
            Kind::Endpoint => "endpoint",
        }
    }
}

/// A box: its name (the label), the lines under it, and whether the kernel disagrees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    pub kind: Kind,
    pub name: String,
    pub lines: Vec<Line>,
    pub drifted: bool,
}

impl Node {
    fn new(kind: Kind, name: impl Into<String>, lines: Vec<Line>) -> Node {
        Node {
            kind,
            name: name.into(),
            lines,
            drifted: false,
        }
    }
}

/// A bridge: its box, and the members on it (indices into `Model::members`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    pub node: Node,
    /// The host has an address on it (its gateway): a link to the host.
    pub attached: bool,
    pub members: Vec<usize>,
}

/// A namespace or router: its box and the segments it is on, its home (where it is drawn)
/// first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    pub node: Node,
    pub segments: Vec<usize>,
}

/// One `[[allow]]`/`[[deny]]` as an edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Edge {
    pub from: String,
    pub to: String,
    /// `allow tcp/80, icmp`.
    pub label: String,
    pub allow: bool,
}

/// The whole picture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Model {
    pub title: String,
    /// Lines above everything (live: what could not be looked at, conflicts).
    pub banner: Vec<Line>,
    pub world: Node,
    pub host: Node,
    /// The label of the host's link to the world: its NAT.
    pub uplink: Vec<String>,
    pub published: Vec<Node>,
    pub segments: Vec<Segment>,
    pub members: Vec<Member>,
    /// Isolation, egress and host protection, one line each.
    pub notes: Vec<Line>,
    pub policy: Vec<Edge>,
    /// Whether the policy view is drawn as drifted (live: a policy set differs).
    pub policy_drifted: bool,
}

/// `*:8080/tcp`, `127.0.0.1:8443/tcp`, `[::1]:9000-9010/udp`: a publish's host side.
pub(crate) fn host_side(p: &Publish) -> String {
    let ports = if p.host.0 == p.host.1 {
        p.host.0.to_string()
    } else {
        format!("{}-{}", p.host.0, p.host.1)
    };
    // Without an address an entry publishes on every family the namespace has: `*`.
    let addr = match p.host_addr {
        None if p.entry.starts_with("[::]:") => "[::]".to_string(),
        None if p.entry.starts_with("0.0.0.0:") => "0.0.0.0".to_string(),
        None => "*".to_string(),
        Some(IpAddr::V6(a)) => format!("[{a}]"),
        Some(a) => a.to_string(),
    };
    format!("{addr}:{ports}/{}", p.proto)
}

/// `web:80` (`web:9000-9010`): a publish's namespace side.
pub(crate) fn ns_side(ns: &str, p: &Publish) -> String {
    if p.ns.0 == p.ns.1 {
        format!("{ns}:{}", p.ns.0)
    } else {
        format!("{ns}:{}-{}", p.ns.0, p.ns.1)
    }
}

/// The label of a published port's box.
pub(crate) fn published_name(ns: &str, p: &Publish) -> String {
    format!("{} -> {}", host_side(p), ns_side(ns, p))
}

/// Bridges in drawing order: those the host is on, then those reached from them through
/// namespaces on several segments (routers), then the rest, each group in file order.
fn segment_order(t: &Topology) -> Vec<usize> {
    let mut order: Vec<usize> = (0..t.bridges.len())
        .filter(|&i| !t.bridges[i].l2_only())
        .collect();
    let mut i = 0;
    loop {
        while i < order.len() {
            let b = &t.bridges[order[i]].name;
            for n in t.namespaces.iter().filter(|n| n.ifaces.len() > 1) {
                if !n.ifaces.iter().any(|x| &x.bridge == b) {
                    continue;
                }
                for x in &n.ifaces {
                    if let Some(j) = t.bridges.iter().position(|y| y.name == x.bridge)
                        && !order.contains(&j)
                    {
                        order.push(j);
                    }
                }
            }
            i += 1;
        }
        match (0..t.bridges.len()).find(|j| !order.contains(j)) {
            Some(j) => order.push(j),
            None => return order,
        }
    }
}

fn bridge_node(t: &Topology, b: &crate::topology::Bridge) -> Node {
    let mut lines = Vec::new();
    for v6 in [false, true] {
        if let Some(s) = t.segment_subnet(&b.name, v6) {
            let gw = b
                .gateway_addr(v6)
                .map(|g| format!(" gw {g}"))
                .unwrap_or_default();
            lines.push(Line::plain(format!("{s}{gw}")));
        }
    }
    let mut flags = Vec::new();
    if b.l2_only() {
        flags.push("L2-only".to_string());
    }
    if b.masquerade || b.masquerade6 {
        let fam = match (b.masquerade, b.masquerade6) {
            (true, true) => "masquerade 4+6",
            (false, true) => "masquerade6",
            _ => "masquerade",
        };
        flags.push(match &b.uplink {
            Some(u) => format!("{fam} via {u}"),
            None => fam.to_string(),
        });
    }
    if b.isolate {
        flags.push("isolated".into());
    }
    if b.egress_deny {
        flags.push("egress deny".into());
    }
    if !b.egress_via.is_empty() {
        flags.push(format!("egress via {}", b.egress_via.join(", ")));
    }
    if b.mtu != 1500 {
        flags.push(format!("mtu {}", b.mtu));
    }
    if !flags.is_empty() {
        lines.push(Line::dim(flags.join(", ")));
    }
    for p in &b.ports {
        let take = if b.take_addresses {
            " (takes its addresses)"
        } else {
            ""
        };
        lines.push(Line::dim(format!("port {p}{take}")));
    }
    // A segment over several hosts: its tunnel, the other hosts, their namespaces.
    if let Some(vx) = &b.vxlan {
        let peers: Vec<String> = vx.peers.iter().map(|p| p.to_string()).collect();
        lines.push(Line::plain(format!(
            "vxlan {} {}:{} ⇄ {}",
            vx.id,
            vx.local,
            vx.port,
            peers.join(", ")
        )));
        if !vx.remote.is_empty() {
            let r: Vec<String> = vx.remote.iter().map(|a| a.to_string()).collect();
            lines.push(Line::dim(format!("remote {}", r.join(", "))));
        }
    }
    Node::new(Kind::Bridge, b.name.clone(), lines)
}

fn member_node(t: &Topology, n: &Namespace, several: bool) -> Node {
    let mut lines = Vec::new();
    for i in &n.ifaces {
        let on = if several {
            format!(" @{}", i.bridge)
        } else {
            String::new()
        };
        lines.push(Line::plain(format!("{} {}{on}", i.ifname, i.address)));
        if let Some(a6) = i.address6 {
            lines.push(Line::plain(format!("{:w$} {a6}", "", w = i.ifname.len())));
        }
        let shape = crate::rate::Shape {
            netem: i.netem,
            rate: i.rate,
        };
        if !shape.is_empty() {
            lines.push(Line::dim(format!("{}: {shape}", i.ifname)));
        }
    }
    let children = super::uplink::lines(n).into_iter();
    lines.extend(children.map(|(l, dim)| if dim { Line::dim(l) } else { Line::plain(l) }));
    // The default route, when it is not the usual one (the bridge's address): routers, and
    // namespaces behind them.
    let usual = |v6: bool| {
        n.primary()
            .and_then(|i| t.bridge(&i.bridge))
            .and_then(|b| b.gateway_addr(v6))
    };
    for (g, v6) in [
        (n.gateway.map(IpAddr::V4), false),
        (n.gateway6.map(IpAddr::V6), true),
    ] {
        if let Some(g) = g
            && Some(g) != usual(v6)
        {
            lines.push(Line::dim(format!("default via {g}")));
        }
    }
    for r in &n.routes {
        let to = if r.is_default() {
            "default".to_string()
        } else {
            r.to.to_string()
        };
        lines.push(Line::dim(format!("{to} via {}", r.via)));
    }
    if let Some(m) = &n.masquerade {
        lines.push(Line::dim(format!("NAT out of {m}")));
    }
    for p in &n.publish {
        lines.push(Line::dim(format!(
            "{} <- {}",
            ns_side("", p).trim_start_matches(':'),
            host_side(p)
        )));
    }
    let kind = if n.forward {
        Kind::Router
    } else {
        Kind::Namespace
    };
    Node::new(kind, n.name.clone(), lines)
}

fn host_node(t: &Topology) -> (Node, Vec<String>) {
    let mut lines = Vec::new();
    match t.host.ip_forward {
        Some(true) => lines.push(Line::dim("ip_forward on")),
        Some(false) => lines.push(Line::dim("ip_forward off")),
        None => {}
    }
    if t.host.protect {
        lines.push(Line::dim("protected: only what [[allow]] to host names"));
    }
    for r in &t.host.routes {
        lines.push(Line::dim(format!("route {} via {}", r.to, r.via)));
    }
    let mut nat = Vec::new();
    for b in &t.bridges {
        for (on, v6) in [(b.masquerade, false), (b.masquerade6, true)] {
            if !on {
                continue;
            }
            let out = b
                .uplink
                .as_deref()
                .map(|u| format!(" via {u}"))
                .unwrap_or_default();
            for s in t.sources_via(&b.name, v6) {
                nat.push(format!("masquerade {s}{out}"));
            }
        }
    }
    (Node::new(Kind::Host, "host", lines), nat)
}

fn ports_label(r: &crate::topology::PolicyRule) -> String {
    let verb = match r.action {
        Action::Allow => "allow",
        Action::Deny => "deny",
    };
    if r.ports.is_empty() {
        format!("{verb} all")
    } else {
        let p: Vec<String> = r.ports.iter().map(|p| p.to_string()).collect();
        format!("{verb} {}", p.join(", "))
    }
}

fn notes(t: &Topology) -> Vec<Line> {
    let mut v = Vec::new();
    for b in &t.bridges {
        if b.isolate {
            v.push(Line::plain(format!(
                "{}: isolated (its namespaces cannot open connections to each other)",
                b.name
            )));
        }
        if b.egress_deny {
            v.push(Line::plain(format!(
                "{}: egress deny (nothing new out but what an allow names)",
                b.name
            )));
        }
        if !b.egress_via.is_empty() {
            v.push(Line::plain(format!(
                "{}: egress only via {} (no new connection out of another interface)",
                b.name,
                b.egress_via.join(", ")
            )));
        }
    }
    if t.host.protect {
        v.push(Line::plain(
            "host: protected (namespaces reach it only where allowed, and ping their gateway)",
        ));
    }
    v
}

/// The picture of a topology as its file says it.
pub(crate) fn build(t: &Topology) -> Model {
    let order = segment_order(t);
    let mut segments: Vec<Segment> = order
        .iter()
        .map(|&i| {
            let b = &t.bridges[i];
            Segment {
                node: bridge_node(t, b),
                attached: !b.l2_only(),
                members: Vec::new(),
            }
        })
        .collect();
    let seg_of = |bridge: &str| order.iter().position(|&i| t.bridges[i].name == bridge);
    // Uplinks (macvlan children's LAN) after the bridges.
    let uplinks = super::uplink::segments(t);
    let uplink_of = |u: &str| {
        uplinks
            .iter()
            .position(|x| x.0 == u)
            .map(|p| order.len() + p)
    };
    for (u, lines, shim) in &uplinks {
        let lines = lines.iter().map(Line::dim).collect();
        let node = Node::new(Kind::Bridge, format!("{u} (LAN)"), lines);
        let (attached, members) = (*shim, Vec::new());
        segments.push(Segment {
            node,
            attached,
            members,
        });
    }
    let mut members = Vec::new();
    for n in &t.namespaces {
        let mut segs: Vec<usize> = n.ifaces.iter().filter_map(|i| seg_of(&i.bridge)).collect();
        segs.extend(n.macvlans.iter().filter_map(|m| uplink_of(&m.uplink)));
        segs.sort_unstable();
        segs.dedup();
        let Some(&home) = segs.first() else { continue };
        segments[home].members.push(members.len());
        members.push(Member {
            node: member_node(t, n, segs.len() > 1),
            segments: segs,
        });
    }
    let published = t
        .namespaces
        .iter()
        .flat_map(|n| n.publish.iter().map(move |p| (n, p)))
        .map(|(n, p)| Node::new(Kind::Published, published_name(&n.name, p), Vec::new()))
        .collect();
    let policy = t
        .policy
        .iter()
        .map(|r| Edge {
            from: endpoint(&r.from),
            to: endpoint(&r.to),
            label: ports_label(r),
            allow: r.action == Action::Allow,
        })
        .collect();
    let (host, uplink) = host_node(t);
    Model {
        title: format!("topology {} ({})", t.name, t.source.display()),
        banner: Vec::new(),
        world: Node::new(Kind::World, "world", vec![Line::dim("every other network")]),
        host,
        uplink,
        published,
        segments,
        members,
        notes: notes(t),
        policy,
        policy_drifted: false,
    }
}

fn endpoint(e: &Endpoint) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(text: &str) -> Topology {
        crate::topology::parse(text, std::path::Path::new("t.toml")).expect("valid")
    }

    #[test]
    fn routers_sit_on_their_first_segment_and_reach_the_next() {
        let t = topo(include_str!("../../rulesets/router.toml"));
        let m = build(&t);
        let names: Vec<&str> = m.segments.iter().map(|s| s.node.name.as_str()).collect();
        assert_eq!(names, ["br0", "br1"]);
        let r = m
            .members
            .iter()
            .find(|x| x.node.name == "router")
            .expect("router");
        assert_eq!(r.node.kind, Kind::Router);
        assert_eq!(r.segments, [0, 1]);
        assert!(
            m.segments[1]
                .node
                .lines
                .iter()
                .any(|l| l.text.contains("L2-only"))
        );
        assert!(!m.segments[1].attached);
    }

    #[test]
    fn published_ports_and_policy_edges_are_labelled() {
        let t = topo(
            "name = \"x\"\n[bridges.br0]\naddress = \"10.10.0.1/24\"\n\
             [namespaces.web]\nbridge = \"br0\"\npublish = [\"8080:80/tcp\", \"127.0.0.1:9000-9001:90-91/udp\"]\n\
             [namespaces.db]\nbridge = \"br0\"\n\
             [[allow]]\nfrom = \"web\"\nto = \"db\"\nports = [\"tcp/5432\", \"icmp\"]\n\
             [[deny]]\nfrom = \"br0\"\nto = \"203.0.113.0/24\"\n",
        );
        let m = build(&t);
        let p: Vec<&str> = m.published.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            p,
            [
                "*:8080/tcp -> web:80",
                "127.0.0.1:9000-9001/udp -> web:90-91"
            ]
        );
        assert_eq!(m.policy.len(), 2);
        assert_eq!(m.policy[0].label, "allow tcp/5432, icmp");
        assert_eq!(
            (m.policy[1].from.as_str(), m.policy[1].to.as_str()),
            ("br0", "203.0.113.0/24")
        );
        assert!(!m.policy[1].allow);
    }
}
