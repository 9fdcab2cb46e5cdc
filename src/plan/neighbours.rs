//! Neighbour entries to forget where an address or MAC on a segment changes, and the cheaper
//! announcement where an address simply arrives.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::cx::Cx;
use crate::kinds::{AddAddr, Announce, BridgePort, DelAddr, ForgetNeighbours, LinkAttr, Step};
use crate::resources::{LinkKind, Place};

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
