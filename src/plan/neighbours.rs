//! Neighbour entries to forget where an address or MAC on a segment changes, and the cheaper
//! announcement where an address simply arrives.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::cx::Cx;
use crate::kinds::{AddAddr, Announce, BridgePort, DelAddr, ForgetNeighbours, LinkAttr, Step};
use crate::resources::{LinkKind, Place};
use crate::state::Announcement;

impl Cx<'_> {
    /// Where an address or MAC on a segment changes, the neighbour entries on the segment's
    /// other interfaces still name the old MAC (a renamed bridge, two namespaces trading
    /// addresses) and would for many seconds: they are forgotten in the same run, a visit of
    /// every namespace on the segment. An IPv4 address that merely arrives (on an interface
    /// made in this run, and held by no interface nsfw can see) can be stale only in entries
    /// left by a holder removed in an earlier run: a gratuitous ARP from the new interface
    /// itself (which every port and the bridge hear, and Linux takes over an existing entry
    /// at once) covers that without visiting the other 999 namespaces, and without a request
    /// on the host. Sent by the kernel in the namespace's own visit (`kinds::announce`): a
    /// packet socket of nsfw's own would cost an RCU grace period (~20 ms) to close.
    pub(super) fn forget_neighbours(&mut self) {
        // The ports of each bridge: (namespace, interface), and the host end of each.
        let mut ports: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
        let mut ends: BTreeMap<(&str, &str), &str> = BTreeMap::new();
        for (name, spec) in &self.d.host.links {
            if let (LinkKind::Veth { peer_ns, peer, .. }, Some(b)) = (&spec.kind, &spec.master) {
                ports
                    .entry(b)
                    .or_default()
                    .push((peer_ns.clone(), peer.clone()));
                ends.insert((peer_ns, peer), name);
            }
        }
        let held = self.held_addresses();
        let mut out: Vec<Step> = Vec::new();
        for (bridge, members) in &ports {
            let mut arrived = Vec::new();
            let touched = self.plan.steps.iter().any(|s| match s {
                Step::CreateBridge(b) => b.name == *bridge,
                // A MAC changed on the bridge or on a namespace's interface on it: the
                // segment's other ends name the old one.
                Step::SetLink(l) if l.attrs.iter().any(|a| matches!(a, LinkAttr::Mac { .. })) => {
                    match &l.place {
                        Place::Host => l.name == *bridge,
                        Place::Ns(ns) => members.iter().any(|(n, i)| n == ns && *i == l.name),
                    }
                }
                Step::AddAddr(AddAddr {
                    place: Place::Ns(ns),
                    ifname,
                    net,
                    ..
                }) if net.is_ipv4()
                    && self.fresh(ns, ifname)
                    && !held.contains(&net.ip())
                    && members.iter().any(|(n, i)| n == ns && i == ifname) =>
                {
                    arrived.push((ns.clone(), ifname.clone(), *net));
                    false
                }
                Step::AddAddr(AddAddr { place, ifname, .. })
                | Step::DelAddr(DelAddr { place, ifname, .. }) => match place {
                    Place::Host => ifname == bridge,
                    Place::Ns(ns) => members.iter().any(|(n, i)| n == ns && i == ifname),
                },
                _ => false,
            });
            if !touched {
                // Each arriving address announced from its own interface, by the kernel (a
                // gratuitous ARP every port hears, the bridge included: Linux takes it over an
                // existing entry at once), in its namespace's visit.
                out.extend(arrived.into_iter().filter_map(|(ns, i, net)| {
                    let mac = self.d.namespaces.get(&ns)?.links.get(&i)?.mac?;
                    let port = ends.get(&(ns.as_str(), i.as_str())).map(|p| BridgePort {
                        name: p.to_string(),
                        bridge: bridge.to_string(),
                    });
                    Some(Step::from(Announce {
                        place: Place::Ns(ns),
                        ifname: i,
                        port,
                        net,
                        mac,
                    }))
                }));
                continue;
            }
            if !self.new_links.contains_key(*bridge) && self.host_link(bridge).is_some() {
                out.push(
                    ForgetNeighbours {
                        place: Place::Host,
                        ifname: bridge.to_string(),
                    }
                    .into(),
                );
            }
            for (ns, i) in members {
                if !self.fresh(ns, i) && self.o.namespaces.contains_key(ns) {
                    out.push(
                        ForgetNeighbours {
                            place: Place::Ns(ns.clone()),
                            ifname: i.clone(),
                        }
                        .into(),
                    );
                }
            }
        }
        self.plan.steps.extend(out);
    }

    /// Announcements noted in the record and never made (a run killed between an address
    /// and its announcement, `state::announced`): made now where the file still wants the
    /// address and it is on its interface; the others are dropped with the record's pending
    /// work. Every announcement of the plan is noted in turn, before its address is made.
    pub(super) fn announcements_in_flight(&mut self) {
        let noted = |s: &Step| match s {
            Step::Announce(a) => Some(Announcement {
                ns: a.place.ns().map(str::to_string),
                ifname: a.ifname.clone(),
                net: a.net,
            }),
            _ => None,
        };
        let planned: BTreeSet<Announcement> = self.plan.steps.iter().filter_map(noted).collect();
        let again: Vec<Step> = (self.leftovers.announce.iter())
            .filter(|a| !planned.contains(a))
            .filter_map(|a| self.still_to_announce(a))
            .collect();
        self.plan.creates.announce = planned;
        self.plan
            .creates
            .announce
            .extend(again.iter().filter_map(noted));
        self.plan.steps.extend(again);
    }

    /// The announcement of `a`, if the file still wants its address on its interface and
    /// the interface holds it (at the interface's MAC; inside a namespace, through its
    /// bridge port, which must forward first).
    fn still_to_announce(&self, a: &Announcement) -> Option<Step> {
        // Only IPv4 notes are made again: a namespace's arriving address is announced as
        // IPv4 only (an IPv6 one announces itself, DAD and unsolicited advertisements), and
        // the host's for an address taken from a port, of either family, is not the file's
        // (below). An IPv6 note is a hand-made one: dropped, not reported as made.
        if !a.net.is_ipv4() {
            return None;
        }
        let (place, want, have) = match &a.ns {
            Some(ns) => (
                Place::Ns(ns.clone()),
                self.d.namespaces.get(ns)?,
                &self.o.namespaces.get(ns)?.node,
            ),
            None => (Place::Host, &self.d.host, &self.o.host),
        };
        if !want.addrs.contains(&(a.ifname.clone(), a.net)) {
            return None;
        }
        let link = have.link(&a.ifname)?;
        if !have
            .addrs
            .iter()
            .any(|x| x.index == link.index && x.net == a.net)
        {
            return None;
        }
        let port = self.d.host.links.iter().find_map(|(name, spec)| {
            match (&spec.kind, &spec.master, &a.ns) {
                (LinkKind::Veth { peer_ns, peer, .. }, Some(b), Some(ns))
                    if peer_ns == ns && *peer == a.ifname =>
                {
                    Some(BridgePort {
                        name: name.clone(),
                        bridge: b.clone(),
                    })
                }
                _ => None,
            }
        });
        Some(Step::from(Announce {
            place,
            ifname: a.ifname.clone(),
            port,
            net: a.net,
            mac: link.mac?,
        }))
    }

    /// Whether interface `i` of namespace `ns` is made in this run.
    fn fresh(&self, ns: &str, i: &str) -> bool {
        self.new_ns.contains(ns) || self.new_pairs.contains(&(ns.to_string(), i.to_string()))
    }

    /// Every address the observation saw, on the host and in every namespace.
    fn held_addresses(&self) -> BTreeSet<IpAddr> {
        let mut out: BTreeSet<IpAddr> = self.o.host.addrs.iter().map(|a| a.net.ip()).collect();
        for ns in self.o.namespaces.values() {
            out.extend(ns.node.addrs.iter().map(|a| a.net.ip()));
        }
        out
    }
}
