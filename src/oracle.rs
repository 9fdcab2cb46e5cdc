//! The policy oracle: what the file's policy decides for a connection — the semantics of
//! docs/topology.md ("Policy"), written once as a plain function. The firewall compiles the
//! same policy into sets (`firewall::policy`); the checks of `try` and `verify` ask this
//! function what to expect, so the file's intent is proven with packets, not restated.
//!
//! A new connection is judged; replies always pass. Most specific first, independent of the
//! order of anything in the file: a matching `[[deny]]` drops; a matching `[[allow]]` or a
//! published port accepts; then the defaults.

use std::net::IpAddr;

use crate::paths::{Node, Seg, walk};
use crate::topology::{Action, Endpoint, Entry, Namespace, PolicyRule, Topology};

/// One end of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Party {
    /// A namespace of the topology, by name, and the address it uses.
    Ns(String, IpAddr),
    /// The host itself, at one of its addresses.
    Host(IpAddr),
    /// Anything else.
    World(IpAddr),
}

impl Party {
    pub(crate) fn addr(&self) -> IpAddr {
        match self {
            Party::Ns(_, a) | Party::Host(a) | Party::World(a) => *a,
        }
    }
}

/// A new connection: from, to, protocol number, destination port (0 for ICMP).
#[derive(Clone, Debug)]
pub(crate) struct Flow {
    pub from: Party,
    pub to: Party,
    pub proto: u8,
    pub port: u16,
    /// It reaches `to` through a published port of the host (DNAT).
    pub published: bool,
    /// ICMP echo to the namespace's own gateway.
    pub ping_gateway: bool,
}

impl Flow {
    /// A new connection from `from` to `to` at `proto`/`port`, straight (not through a
    /// published port), not a ping of the gateway.
    pub(crate) fn new(from: Party, to: Party, proto: u8, port: u16) -> Flow {
        Flow {
            from,
            to,
            proto,
            port,
            published: false,
            ping_gateway: false,
        }
    }
}

fn bridge_of<'a>(t: &'a Topology, ns: &str) -> Option<&'a str> {
    t.namespaces
        .iter()
        .find(|n| n.name == ns)
        .and_then(Namespace::primary)
        .map(|i| i.bridge.as_str())
}

fn matches(t: &Topology, e: &Endpoint, p: &Party) -> bool {
    match (e, p) {
        (Endpoint::Ns(n), Party::Ns(m, _)) => n == m,
        (Endpoint::Bridge(b), Party::Ns(m, _)) => bridge_of(t, m) == Some(b.as_str()),
        (Endpoint::Host, Party::Host(_)) => true,
        (Endpoint::World, Party::World(_)) => true,
        (Endpoint::Cidr(c), p) => !matches!(p, Party::Host(_)) && c.contains(p.addr()),
        _ => false,
    }
}

fn applies(t: &Topology, r: &PolicyRule, f: &Flow) -> bool {
    matches(t, &r.from, &f.from)
        && matches(t, &r.to, &f.to)
        && r.ports.iter().any(|p| p.covers(f.proto, f.port))
}

/// The first `[[deny]]` of the file that drops the connection, if one does (`nsfw drops`
/// names it: the kernel's sets hold every entry's elements together).
pub(crate) fn denied_by<'a>(t: &'a Topology, f: &Flow) -> Option<&'a PolicyRule> {
    t.policy
        .iter()
        .find(|r| r.action == Action::Deny && applies(t, r, f))
}

/// Whether the connection is let through.
pub(crate) fn decide(t: &Topology, f: &Flow) -> bool {
    explain(t, f).0
}

/// What decides a connection: an entry of the file, or a default (and the entry that chose
/// it, when one did: an isolated bridge, a denied egress, `[host] protect`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// An `[[allow]]` or `[[deny]]`.
    Rule(Entry),
    /// A published port (DNAT) lets it in.
    Published,
    /// A default, in words, and the entry that set it when there is one.
    Default(String, Option<Entry>),
}

/// Whether the connection is let through, and why.
pub(crate) fn explain(t: &Topology, f: &Flow) -> (bool, Reason) {
    let hit = |a: Action| {
        t.policy
            .iter()
            .find(|r| r.action == a && applies(t, r, f))
            .and_then(|r| Entry::of_key(&r.key))
    };
    if let Some(e) = hit(Action::Deny) {
        return (false, Reason::Rule(e));
    }
    if let Some(e) = hit(Action::Allow) {
        return (true, Reason::Rule(e));
    }
    if f.published {
        return (true, Reason::Published);
    }
    match blocked_by(t, f) {
        Some((why, e)) => (false, Reason::Default(why, e)),
        None => (true, Reason::Default(open_default(t, f), None)),
    }
}

/// Why a connection no entry decides is open, in words.
fn open_default(t: &Topology, f: &Flow) -> String {
    match (&f.from, &f.to) {
        (Party::Ns(..), Party::World(_)) => "egress to the world is open".into(),
        (Party::Ns(..), Party::Host(_)) if t.host.protect => {
            "a namespace may ping its own gateway".into()
        }
        (Party::Ns(..), Party::Host(_)) => "the host is open to its namespaces".into(),
        (Party::Ns(..), Party::Ns(..)) => "nothing on the way closes it".into(),
        (Party::Host(_), _) => "the host's own connections are not judged".into(),
        _ => "nothing closes it".into(),
    }
}

fn node(p: &Party) -> Node {
    match p {
        Party::Ns(n, _) => Node::Ns(n.clone()),
        Party::Host(_) => Node::Host,
        Party::World(_) => Node::World,
    }
}

/// The defaults, judged at every node the connection's packets cross (see `crate::paths`):
/// bridged between two namespaces, open unless the bridge is isolated; through the host, one
/// bridge to itself open (unless isolated), to another bridge or in from the world closed,
/// out to the world open unless the bridge's egress is denied; through a router namespace
/// open, but nothing new in through the interface it masquerades out of; to the host open
/// unless `[host] protect` (a ping to its own gateway still passes).
/// The default that closes the connection, and the entry that set it; None: open.
fn blocked_by(t: &Topology, f: &Flow) -> Option<(String, Option<Entry>)> {
    let w = walk(t, &node(&f.from), f.from.addr(), f.to.addr(), &|_| None);
    let Ok(end) = &w.end else {
        return Some(("the file routes it nowhere".into(), None));
    };
    let isolated = |b: &str| t.bridge(b).is_some_and(|x| x.isolate);
    if let Some(b) = w.bridged.iter().find(|b| isolated(b)) {
        let why = format!("bridge {b} is isolated");
        return Some((why, Some(Entry::Isolate(b.to_string()))));
    }
    for h in &w.hops {
        let closed = match (&h.at, &h.from, &h.to) {
            (Node::Host, Seg::Bridge(a), Seg::Bridge(b)) if a == b && isolated(a) => Some((
                format!("bridge {a} is isolated"),
                Some(Entry::Isolate(a.clone())),
            )),
            (Node::Host, Seg::Bridge(a), Seg::Bridge(b)) if a != b => Some((
                format!("nothing allows new connections from bridge {a} to bridge {b}"),
                None,
            )),
            (Node::Host, Seg::Bridge(a), Seg::Uplink)
                if t.bridge(a).is_some_and(|x| x.egress_deny) =>
            {
                Some((
                    format!("bridge {a} denies egress"),
                    Some(Entry::Egress(a.clone())),
                ))
            }
            (Node::Host, Seg::Uplink, Seg::Bridge(_)) => Some((
                "nothing new comes in from the world unless allowed or published".into(),
                None,
            )),
            (Node::Ns(r), Seg::Bridge(inn), _) => {
                let router = t.namespaces.iter().find(|n| &n.name == r);
                let outside = router
                    .and_then(|n| n.masquerade.as_ref().map(|m| (n, m)))
                    .and_then(|(n, m)| n.ifaces.iter().find(|i| &i.ifname == m))
                    .map(|i| &i.bridge);
                (outside == Some(inn)).then(|| {
                    (
                        format!("router {r} lets nothing new in through the interface it masquerades out of"),
                        Some(Entry::Namespace(r.clone())),
                    )
                })
            }
            _ => None,
        };
        if closed.is_some() {
            return closed;
        }
    }
    if *end == Node::Host && matches!(f.from, Party::Ns(..)) && t.host.protect && !f.ping_gateway {
        return Some((
            "[host] protect closes the host".into(),
            Some(Entry::Protect),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn topo(extra: &str) -> Topology {
        let text = format!(
            "name='t'\n[host]\nip_forward=true\n[bridges.br0]\naddress='10.1.0.1/24'\n[bridges.br1]\naddress='10.2.0.1/24'\n[namespaces.a]\nbridge='br0'\n[namespaces.b]\nbridge='br0'\n[namespaces.c]\nbridge='br1'\n{extra}"
        );
        crate::topology::parse(&text, Path::new("t")).expect("valid")
    }

    fn ns(t: &Topology, n: &str) -> Party {
        let i = t
            .namespaces
            .iter()
            .find(|x| x.name == n)
            .and_then(Namespace::primary)
            .expect("ns");
        Party::Ns(n.into(), IpAddr::V4(i.address.ip()))
    }

    fn flow(from: Party, to: Party, proto: u8, port: u16) -> Flow {
        Flow::new(from, to, proto, port)
    }

    fn world() -> Party {
        Party::World("203.0.113.10".parse().expect("ip"))
    }

    #[test]
    fn defaults() {
        let t = topo("");
        assert!(
            decide(&t, &flow(ns(&t, "a"), ns(&t, "b"), 6, 80)),
            "same bridge"
        );
        assert!(
            !decide(&t, &flow(ns(&t, "a"), ns(&t, "c"), 6, 80)),
            "bridge to bridge"
        );
        assert!(
            !decide(&t, &flow(ns(&t, "c"), ns(&t, "a"), 6, 80)),
            "both ways"
        );
        assert!(decide(&t, &flow(ns(&t, "a"), world(), 6, 80)), "egress");
        assert!(!decide(&t, &flow(world(), ns(&t, "a"), 6, 80)), "inbound");
        let host = Party::Host("10.1.0.1".parse().expect("ip"));
        assert!(
            decide(&t, &flow(ns(&t, "a"), host.clone(), 6, 22)),
            "to the host"
        );
        let mut p = flow(world(), ns(&t, "a"), 6, 80);
        p.published = true;
        assert!(decide(&t, &p), "a published port");
    }

    #[test]
    fn deny_beats_allow_beats_defaults_in_any_order() {
        for order in [
            "[[allow]]\nfrom='br0'\nto='br1'\n[[deny]]\nfrom='a'\nto='c'\nports=['tcp/22']\n",
            "[[deny]]\nfrom='a'\nto='c'\nports=['tcp/22']\n[[allow]]\nfrom='br0'\nto='br1'\n",
        ] {
            let t = topo(order);
            assert!(
                decide(&t, &flow(ns(&t, "a"), ns(&t, "c"), 6, 80)),
                "allowed"
            );
            assert!(
                !decide(&t, &flow(ns(&t, "a"), ns(&t, "c"), 6, 22)),
                "denied wins"
            );
            assert!(
                !decide(&t, &flow(ns(&t, "c"), ns(&t, "a"), 6, 80)),
                "one way only"
            );
        }
    }

    #[test]
    fn isolate_egress_and_protect() {
        let t = topo("[[allow]]\nfrom='a'\nto='203.0.113.0/24'\nports=['tcp/8000']\n").with(|t| {
            t.bridges[0].isolate = true;
            t.bridges[0].egress_deny = true;
            t.host.protect = true;
        });
        assert!(
            !decide(&t, &flow(ns(&t, "a"), ns(&t, "b"), 1, 0)),
            "isolated"
        );
        assert!(
            decide(&t, &flow(ns(&t, "a"), world(), 6, 8000)),
            "allowed out"
        );
        assert!(
            !decide(&t, &flow(ns(&t, "a"), world(), 6, 8001)),
            "another port"
        );
        assert!(
            !decide(
                &t,
                &flow(
                    ns(&t, "a"),
                    Party::World("198.51.100.2".parse().expect("ip")),
                    6,
                    8000
                )
            ),
            "another address"
        );
        let host = Party::Host("10.1.0.1".parse().expect("ip"));
        assert!(
            !decide(&t, &flow(ns(&t, "a"), host.clone(), 6, 22)),
            "protected"
        );
        let mut ping = flow(ns(&t, "a"), host, 1, 0);
        ping.ping_gateway = true;
        assert!(decide(&t, &ping), "ping to the gateway");
    }

    trait With {
        fn with(self, f: impl FnOnce(&mut Self)) -> Self;
    }
    impl With for Topology {
        fn with(mut self, f: impl FnOnce(&mut Self)) -> Self {
            f(&mut self);
            self
        }
    }
}
