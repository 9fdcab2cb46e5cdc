//! Physical ports (`ports = ["eth1"]` on a bridge): interfaces nsfw does not own, enslaved to
//! one of its bridges. A port with addresses or a default route is refused (they would stop
//! working) unless the bridge says `take_addresses = true`: then they move to the bridge, the
//! way people do it by hand, and the write-ahead record keeps what was taken so that letting
//! the port go (it leaves the file, or flush) gives it back. The kernel lets a bridge's ports
//! go when the bridge is deleted; everything else here is steps like any other.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::diff::Cx;
use super::step::{LinkAttr, Step};
use crate::resources::{LinkKind, Node, Place, RouteSpec};
use crate::state::{Record, Taken};

fn link_local(n: &IpNetwork) -> bool {
    matches!(n, IpNetwork::V6(a) if a.ip().is_unicast_link_local())
}

fn default4() -> IpNetwork {
    crate::compile::default_route()
}

impl Cx<'_> {
    /// The ports the file wants, with their bridge and `take_addresses`.
    fn wanted_ports(&self) -> BTreeMap<String, (String, bool)> {
        self.d
            .host
            .links
            .values()
            .filter_map(|s| match (&s.kind, &s.master) {
                (LinkKind::Port { take_addresses }, Some(br)) => {
                    Some((s.name.clone(), (br.clone(), *take_addresses)))
                }
                _ => None,
            })
            .collect()
    }

    /// The host as the file wants it, plus what bridges hold for the ports they took from
    /// (so that the diff keeps those addresses and that default route on the bridge).
    pub(super) fn with_taken(&self, rec: &Record) -> Node {
        let mut host = self.d.host.clone();
        let wanted = self.wanted_ports();
        for (port, t) in &rec.taken {
            if t.topology != self.d.topology || wanted.get(port).map(|(b, _)| b) != Some(&t.bridge)
            {
                continue;
            }
            for a in &t.addrs {
                host.addrs.insert((t.bridge.clone(), *a));
            }
            if let Some(g) = t.gateway {
                host.routes.insert(
                    default4(),
                    RouteSpec::unicast(default4(), Some(g), &t.bridge),
                );
            }
        }
        host
    }

    /// Enslaves the wanted ports (taking their addresses where allowed), and lets go of the
    /// ports this run's owner took from and no longer wants, giving back what was taken.
    pub(super) fn ports(&mut self, rec: &Record) {
        let o = self.o;
        let wanted = self.wanted_ports();
        let mut taken_now: BTreeMap<String, Taken> = BTreeMap::new();
        for (port, (br, take)) in &wanted {
            let key = format!("{}: bridges.{br}.ports", self.file());
            let Some(l) = o.host.link(port) else {
                self.conflict(format!("{key}: there is no interface {port} on the host"));
                continue;
            };
            if l.alias.as_deref().is_some_and(|a| a.starts_with("nsfw:"))
                || l.kind.as_deref() == Some("bridge")
            {
                self.conflict(format!(
                    "{key}: {port} is a bridge or one of nsfw's own interfaces, not a port to take"
                ));
                continue;
            }
            let ours = o
                .host
                .link(br)
                .filter(|b| b.alias.as_deref() == Some(self.d.mark.as_str()))
                .map(|b| b.index);
            if l.master.is_some() && l.master == ours {
                if !l.up {
                    self.push(Step::SetLink {
                        place: Place::Host,
                        name: port.clone(),
                        attrs: vec![LinkAttr::Up],
                    });
                }
                continue;
            }
            if let Some(m) = l.master {
                let other = o.host.name_of(m).unwrap_or("another bridge");
                self.conflict(format!(
                    "{key}: {port} is already a port of {other}; release it first"
                ));
                continue;
            }
            let addrs: Vec<IpNetwork> = o
                .host
                .addrs
                .iter()
                .filter(|a| a.index == l.index && !link_local(&a.net))
                .map(|a| a.net)
                .collect();
            let gateway: Option<IpAddr> = o
                .host
                .routes
                .iter()
                .find(|r| r.oif == Some(l.index) && r.dst.prefix() == 0 && r.dst.is_ipv4())
                .and_then(|r| r.gateway);
            if (!addrs.is_empty() || gateway.is_some()) && !take {
                let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                let route = gateway
                    .map(|g| format!(" and the default route via {g}"))
                    .unwrap_or_default();
                self.conflict(format!(
                    "{key}: {port} carries {}{route}: as a bridge port they would stop working. Remove them, or set take_addresses = true on [bridges.{br}] to move them to the bridge while it holds the port",
                    if list.is_empty() { "no address".to_string() } else { list.join(", ") }
                ));
                continue;
            }
            let mut attrs = vec![LinkAttr::Master {
                old: None,
                new: Some(br.clone()),
            }];
            if !l.up {
                attrs.push(LinkAttr::Up);
            }
            self.push(Step::SetLink {
                place: Place::Host,
                name: port.clone(),
                attrs,
            });
            if addrs.is_empty() && gateway.is_none() {
                continue;
            }
            for a in &addrs {
                self.push(Step::AddAddr {
                    place: Place::Host,
                    ifname: br.clone(),
                    net: *a,
                });
                self.push(Step::DelAddr {
                    place: Place::Host,
                    ifname: port.clone(),
                    net: *a,
                });
            }
            if let Some(g) = gateway {
                self.push(Step::SetRoute {
                    place: Place::Host,
                    route: RouteSpec::unicast(default4(), Some(g), br),
                    old: None,
                    again: false,
                });
            }
            taken_now.insert(
                port.clone(),
                Taken {
                    topology: self.d.topology.clone(),
                    bridge: br.clone(),
                    addrs,
                    gateway,
                },
            );
        }
        // Given back: ports this owner took from that the file no longer holds on that bridge.
        let mut given_back = Vec::new();
        for (port, t) in &rec.taken {
            if !self.who.owns_topology(&t.topology)
                || wanted.get(port).map(|(b, _)| b) == Some(&t.bridge)
            {
                continue;
            }
            given_back.push(port.clone());
            let Some(l) = o.host.link(port) else {
                continue; // gone: nothing to give back to
            };
            for a in &t.addrs {
                if o.host
                    .addrs
                    .iter()
                    .any(|x| x.index == l.index && x.net == *a)
                {
                    continue;
                }
                self.push(Step::AddAddr {
                    place: Place::Host,
                    ifname: port.clone(),
                    net: *a,
                });
            }
            let routed = |g: IpAddr| {
                o.host
                    .routes
                    .iter()
                    .any(|r| r.dst.prefix() == 0 && r.oif == Some(l.index) && r.gateway == Some(g))
            };
            if let Some(g) = t.gateway.filter(|g| !routed(*g)) {
                self.push(Step::SetRoute {
                    place: Place::Host,
                    route: RouteSpec::unicast(default4(), Some(g), port),
                    old: None,
                    again: false,
                });
            }
        }
        let (during, after) = (&mut self.plan.record_during, &mut self.plan.record_after);
        for (p, t) in taken_now {
            during.taken.insert(p.clone(), t.clone());
            after.taken.insert(p, t);
        }
        for p in given_back {
            after.taken.remove(&p);
        }
    }
}
