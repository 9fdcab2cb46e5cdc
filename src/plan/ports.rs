//! Physical ports (`ports = ["eth1"]` on a bridge): interfaces nsfw does not own, enslaved to
//! one of its bridges. A port with addresses or routes is refused (they would stop working)
//! unless the bridge says `take_addresses = true`: then they move to the bridge, the way
//! people do it by hand, and the write-ahead record keeps what was taken — every address with
//! its flags and lifetimes, every route through the port of every table with its protocol,
//! metric, scope and source — before anything changes, so that letting the port go (it
//! leaves the file, or flush, even after a crash) gives it back as it was. The kernel drops
//! a port's IPv4 routes with its last address, so the record is the only copy. The kernel
//! lets a bridge's ports go when the bridge is deleted; everything else here is steps like
//! any other.

use std::collections::BTreeMap;

use ipnetwork::IpNetwork;

use super::cx::Cx;
use super::step::{LinkAttr, Step};
use crate::plumbing::NodeObs;
use crate::resources::{AddrOrig, LinkKind, Node, Place, RouteOrig, RouteSpec};
use crate::state::{KeptAddr, KeptRoute, Record, Taken};

fn link_local(n: &IpNetwork) -> bool {
    matches!(n, IpNetwork::V6(a) if a.ip().is_unicast_link_local())
}

/// The addresses of the link `index` that move with it (not its IPv6 link-local one: the
/// bridge has its own).
fn addrs_of(o: &NodeObs, index: u32) -> Vec<KeptAddr> {
    o.addrs
        .iter()
        .filter(|a| a.index == index && !link_local(&a.net))
        .map(|a| KeptAddr {
            net: a.net,
            flags: a.flags,
            scope: a.scope,
            valid: a.valid,
            preferred: a.preferred,
        })
        .collect()
}

/// Every route whose output interface is `index`, of every table but local, except the
/// kernel's own (they follow the addresses). Routes over several next hops (RTA_MULTIPATH)
/// name no single output interface and are not taken.
fn routes_of(o: &NodeObs, index: u32) -> Vec<KeptRoute> {
    let mut out: Vec<KeptRoute> = o
        .routes
        .iter()
        .chain(&o.other_tables)
        .filter(|r| r.oif == Some(index) && !r.kernel)
        .map(|r| KeptRoute {
            dst: r.dst,
            gateway: r.gateway,
            metric: r.metric,
            table: r.table,
            proto: r.proto,
            scope: r.scope,
            kind: r.kind,
            flags: r.flags,
            prefsrc: r.prefsrc,
        })
        .collect();
    // Routes to the link itself first: a next hop may be reachable only through one.
    out.sort_by_key(|r| (r.gateway.is_some(), r.table, r.dst, r.metric));
    out
}

/// Whether `o` has route `r` through link `index`.
fn has_route(o: &NodeObs, index: u32, r: &KeptRoute) -> bool {
    o.routes.iter().chain(&o.other_tables).any(|x| {
        x.oif == Some(index)
            && x.table == r.table
            && x.dst == r.dst
            && x.metric == r.metric
            && x.gateway == r.gateway
    })
}

fn spec(r: &KeptRoute, dev: &str) -> RouteSpec {
    RouteSpec {
        dst: r.dst,
        via: r.gateway,
        dev: dev.to_string(),
        metric: r.metric,
        kind: r.kind,
        orig: Some(RouteOrig {
            table: r.table,
            proto: r.proto,
            scope: r.scope,
            flags: r.flags,
            prefsrc: r.prefsrc,
        }),
    }
}

fn add_addr(ifname: &str, a: &KeptAddr) -> Step {
    Step::AddAddr {
        place: Place::Host,
        ifname: ifname.to_string(),
        net: a.net,
        orig: Some(AddrOrig {
            flags: a.flags,
            scope: a.scope,
            valid: a.valid,
            preferred: a.preferred,
        }),
    }
}

/// Puts route `r` on `dev` as it was. Replacing: in IPv4 the kernel keys a route by table,
/// destination, TOS and metric, in IPv6 by table, destination and metric, so a copy of it
/// through the other link (the bridge's, when the port is let go while the bridge stays) is
/// replaced rather than doubled.
fn put_route(r: &KeptRoute, dev: &str) -> Step {
    Step::SetRoute {
        place: Place::Host,
        route: spec(r, dev),
        old: None,
        again: false,
    }
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

    /// The host as the file wants it, plus the addresses bridges hold for the ports they took
    /// from (so that the diff keeps them on the bridge). The routes they hold are not nsfw's
    /// (they keep their own protocol): `ports` checks them.
    pub(super) fn with_taken(&self, rec: &Record) -> Node {
        let mut host = self.d.host.clone();
        let wanted = self.wanted_ports();
        for (port, t) in &rec.taken {
            if t.topology != self.d.topology || wanted.get(port).map(|(b, _)| b) != Some(&t.bridge)
            {
                continue;
            }
            for a in &t.addrs {
                host.addrs.insert((t.bridge.clone(), a.net));
            }
        }
        host
    }

    /// Enslaves the wanted ports (taking their addresses and routes where allowed), and lets
    /// go of the ports this run's owner took from and no longer wants, giving back what was
    /// taken.
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
            if l.alias
                .as_deref()
                .and_then(crate::owner::topology_of)
                .is_some()
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
                if let (Some(t), Some(bi)) = (rec.taken.get(port), ours) {
                    self.keep_taken(port, br, l.index, bi, t);
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
            let addrs = addrs_of(&o.host, l.index);
            let routes = routes_of(&o.host, l.index);
            if (!addrs.is_empty() || !routes.is_empty()) && !take {
                let mut what: Vec<String> = addrs.iter().map(|a| a.net.to_string()).collect();
                if let Some(g) = routes
                    .iter()
                    .find(|r| r.dst.prefix() == 0)
                    .and_then(|r| r.gateway)
                {
                    what.push(format!("the default route via {g}"));
                }
                let others = routes.iter().filter(|r| r.dst.prefix() != 0).count();
                if others > 0 {
                    what.push(format!("{others} other route(s)"));
                }
                self.conflict(format!(
                    "{key}: {port} carries {}: as a bridge port they would stop working. Remove them, or set take_addresses = true on [bridges.{br}] to move them to the bridge while it holds the port",
                    what.join(", ")
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
            if addrs.is_empty() && routes.is_empty() {
                continue;
            }
            // Added to the bridge in the host build, removed from the port in the host
            // finish, before the routes go to the bridge.
            for a in &addrs {
                self.push(add_addr(br, a));
                self.push(Step::DelAddr {
                    place: Place::Host,
                    ifname: port.clone(),
                    net: a.net,
                });
            }
            for r in &routes {
                self.push(put_route(r, br));
            }
            taken_now.insert(
                port.clone(),
                Taken {
                    topology: self.d.topology.clone(),
                    bridge: br.clone(),
                    addrs,
                    routes,
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
                if !o
                    .host
                    .addrs
                    .iter()
                    .any(|x| x.index == l.index && x.net == a.net)
                {
                    self.push(add_addr(port, a));
                }
            }
            for r in &t.routes {
                if !has_route(&o.host, l.index, r) {
                    self.push(put_route(r, port));
                }
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

    /// A port the bridge holds: what was taken from it stays on the bridge. A run killed
    /// half-way may have left an address on the port too (the port's goes: the subnet is the
    /// bridge's now), or a route not yet on the bridge; someone may have deleted one since.
    fn keep_taken(&mut self, port: &str, br: &str, port_ix: u32, br_ix: u32, t: &Taken) {
        if t.topology != self.d.topology || t.bridge != br {
            return;
        }
        let o = self.o;
        for a in &t.addrs {
            if o.host
                .addrs
                .iter()
                .any(|x| x.index == port_ix && x.net == a.net)
            {
                self.push(Step::DelAddr {
                    place: Place::Host,
                    ifname: port.to_string(),
                    net: a.net,
                });
            }
        }
        for r in &t.routes {
            if !has_route(&o.host, br_ix, r) {
                self.push(put_route(r, br));
            }
        }
    }
}
