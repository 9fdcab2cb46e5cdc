//! Physical ports (`ports = ["eth1"]` on a bridge): interfaces nsfw does not own, enslaved to
//! one of its bridges. A port with addresses or routes is refused (they would stop working)
//! unless the bridge says `take_addresses = true`: then they move to the bridge, the way
//! people do it by hand, and the write-ahead record keeps what was taken — every address with
//! its flags and lifetimes, every route through the port of every table with its protocol,
//! metric, scope and source (`kinds::port` reads them) — before anything changes, so that
//! letting the port go (it leaves the file, or flush, even after a crash) gives it back as it
//! was. The kernel drops a port's IPv4 routes with its last address, so the record is the
//! only copy. The kernel lets a bridge's ports go when the bridge is deleted; everything else
//! here is steps like any other.

use std::collections::BTreeMap;

use super::cx::Cx;
use crate::kinds::port::{addrs_of, has_addr, has_route, put_addr, put_route, routes_of};
use crate::kinds::{DelAddr, LinkAttr, SetLink, bridge};
use crate::plumbing::Link;
use crate::resources::{LinkKind, Node, Place};
use crate::state::{KeptAddr, KeptRoute, Record, Taken};

/// The ports the file wants: their bridge and `take_addresses`.
type Wanted = BTreeMap<String, (String, bool)>;

impl<'a> Cx<'a> {
    /// The ports the file wants, with their bridge and `take_addresses`.
    fn wanted_ports(&self) -> Wanted {
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
        let wanted = self.wanted_ports();
        let mut taken_now: BTreeMap<String, Taken> = BTreeMap::new();
        for (port, (br, take)) in &wanted {
            if let Some(t) = self.port(port, br, *take, rec) {
                taken_now.insert(port.clone(), t);
            }
        }
        let given_back = self.give_back(rec, &wanted);
        let (during, after) = (&mut self.plan.record_during, &mut self.plan.record_after);
        for (p, t) in taken_now {
            during.taken.insert(p.clone(), t.clone());
            after.taken.insert(p, t);
        }
        for p in given_back {
            after.taken.remove(&p);
        }
    }

    /// One wanted port of bridge `br`: enslaved (what it carries taken when `take`), kept as
    /// it is, or a conflict. What this run takes from it.
    fn port(&mut self, port: &str, br: &str, take: bool, rec: &Record) -> Option<Taken> {
        let o = self.o;
        let key = format!("{}: bridges.{br}.ports", self.file());
        let l = self.takeable(&key, port)?;
        let ours = o
            .host
            .link(br)
            .filter(|b| b.alias.as_deref() == Some(self.d.mark.as_str()))
            .map(|b| b.index);
        if l.master.is_some() && l.master == ours {
            if !l.up {
                self.push(SetLink {
                    place: Place::Host,
                    name: port.to_string(),
                    attrs: vec![LinkAttr::Up],
                });
            }
            if let (Some(t), Some(bi)) = (rec.taken.get(port), ours) {
                self.keep_taken(port, br, l.index, bi, t);
            }
            return None;
        }
        if let Some(m) = l.master {
            let other = o.host.name_of(m).unwrap_or("another bridge");
            self.conflict(format!(
                "{key}: {port} is already a port of {other}; release it first"
            ));
            return None;
        }
        let addrs = addrs_of(&o.host, l.index);
        let routes = routes_of(&o.host, l.index);
        if (!addrs.is_empty() || !routes.is_empty()) && !take {
            self.refuse(&key, port, br, &addrs, &routes);
            return None;
        }
        let mut attrs = vec![LinkAttr::Master {
            old: None,
            new: Some(br.to_string()),
        }];
        if !l.up {
            attrs.push(LinkAttr::Up);
        }
        self.push(SetLink {
            place: Place::Host,
            name: port.to_string(),
            attrs,
        });
        if addrs.is_empty() && routes.is_empty() {
            return None;
        }
        self.take(port, br, &addrs, &routes);
        Some(Taken {
            topology: self.d.topology.clone(),
            bridge: br.to_string(),
            addrs,
            routes,
        })
    }

    /// The host's interface `port`, if it may be a port at all: there, no bridge and none of
    /// nsfw's own (a conflict otherwise).
    fn takeable(&mut self, key: &str, port: &str) -> Option<&'a Link> {
        let Some(l) = self.o.host.link(port) else {
            self.conflict(format!("{key}: there is no interface {port} on the host"));
            return None;
        };
        if l.alias
            .as_deref()
            .and_then(crate::owner::topology_of)
            .is_some()
            || bridge::is(l)
        {
            self.conflict(format!(
                "{key}: {port} is a bridge or one of nsfw's own interfaces, not a port to take"
            ));
            return None;
        }
        Some(l)
    }

    /// A port that carries addresses or routes, and no `take_addresses`: a conflict naming
    /// them.
    fn refuse(
        &mut self,
        key: &str,
        port: &str,
        br: &str,
        addrs: &[KeptAddr],
        routes: &[KeptRoute],
    ) {
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
    }

    /// What `port` carries moves to bridge `br`: each address added to the bridge in the
    /// host build and removed from the port in the host finish, before the routes go to the
    /// bridge.
    fn take(&mut self, port: &str, br: &str, addrs: &[KeptAddr], routes: &[KeptRoute]) {
        for a in addrs {
            self.push(put_addr(br, a));
            self.push(DelAddr {
                place: Place::Host,
                ifname: port.to_string(),
                net: a.net,
            });
        }
        for r in routes {
            self.push(put_route(r, br));
        }
    }

    /// Given back: ports this owner took from that the file no longer holds on that bridge,
    /// what is missing of what was taken put back. The ports given back.
    fn give_back(&mut self, rec: &Record, wanted: &Wanted) -> Vec<String> {
        let o = self.o;
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
                if !has_addr(&o.host, l.index, a.net) {
                    self.push(put_addr(port, a));
                }
            }
            for r in &t.routes {
                if !has_route(&o.host, l.index, r) {
                    self.push(put_route(r, port));
                }
            }
        }
        given_back
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
            if has_addr(&o.host, port_ix, a.net) {
                self.push(DelAddr {
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
