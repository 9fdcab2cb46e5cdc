//! The generic diff: for each kind of resource, what is wanted against what is there, keyed
//! by (namespace, kind, identity). What nsfw owns and the file no longer names goes; what is in
//! the way and not nsfw's is a conflict; what an interrupted run left unmarked (the record
//! names it) is removed and made again.

use std::collections::BTreeMap;

use super::Plan;
use super::cx::Cx;
use super::node::diff_node;
use super::step::{LinkAttr, Step};
use crate::owner::{Owner, topology_of};
use crate::plumbing::{Link, Observed};
use crate::resources::{Desired, LinkKind, LinkSpec, Place};
use crate::state::Record;

/// Whether a namespace could not be entered for want of privilege (rather than not being a
/// namespace at all).
fn denied(why: &str) -> bool {
    why.contains("EPERM") || why.contains("EACCES") || why.contains("CAP_SYS_ADMIN")
}

fn describe_owner(alias: Option<&str>) -> String {
    match alias {
        Some(a) => match topology_of(a) {
            Some(t) => format!("it belongs to nsfw topology {t:?}"),
            None => format!("its alias is {a:?}, not nsfw's"),
        },
        None => "it carries no nsfw mark".to_string(),
    }
}

/// The plan that makes the kernel hold `d`, removing what `who` owns that `d` does not name.
pub(crate) fn plan(d: &Desired, o: &Observed, rec: &Record, who: Owner) -> Plan {
    let mut cx = Cx::new(d, o, rec, who);
    cx.namespaces();
    cx.host_links();
    cx.overlaps();
    for (name, node) in &d.namespaces {
        if cx.o.unreachable.contains_key(name) && !cx.new_ns.contains(name) {
            continue;
        }
        let place = Place::Ns(name.clone());
        let have = cx.o.namespaces.get(name).map(|n| &n.node);
        if have.is_none() && !cx.new_ns.contains(name) {
            continue; // a conflict, reported
        }
        diff_node(&mut cx, &place, node, have);
    }
    let host = cx.with_taken(rec);
    diff_node(&mut cx, &Place::Host, &host, Some(&o.host));
    cx.forget_neighbours();
    cx.host_sysctl_record(rec);
    cx.ports(rec);
    cx.files();
    let mut p = cx.plan;
    for n in &cx.new_ns {
        p.creates.namespaces.insert(n.clone());
    }
    // A namespace being deleted is a mount and then a file: a run killed between the two
    // leaves a file that is no namespace. Recorded, the next run knows it for a leftover.
    // Likewise a resolv.conf: a directory, a temporary file, a rename.
    for s in &p.steps {
        match s {
            Step::DeleteNamespace { name, .. } => {
                p.creates.namespaces.insert(name.clone());
            }
            Step::WriteResolv { ns, .. } | Step::RemoveResolv { ns } => {
                p.creates.files.insert(ns.clone());
            }
            _ => {}
        }
    }
    p.creates.links = cx.new_links;
    // A stable sort: steps keep their planned order within a stage.
    p.steps.sort_by_key(Step::stage);
    p
}

impl Cx<'_> {
    /// Namespaces: made, kept, removed; leftovers of an interrupted run removed first.
    fn namespaces(&mut self) {
        let o = self.o;
        let mark = self.d.mark.clone();
        let mut doomed: Vec<(String, &'static str)> = Vec::new();
        for name in self.d.namespaces.keys() {
            let key = format!("{}: namespaces.{name}", self.file());
            if let Some(why) = o.unreachable.get(name) {
                if self.is_leftover_ns(name) {
                    doomed.push((name.clone(), "left half-made by an interrupted run"));
                    self.new_ns.insert(name.clone());
                } else {
                    self.conflict(format!("{key}: {why}"));
                }
                continue;
            }
            match o.namespaces.get(name) {
                None => {
                    self.new_ns.insert(name.clone());
                }
                Some(ns) if ns.owner.as_deref() == Some(mark.as_str()) => {
                    if !ns.node.link("lo").is_some_and(|l| l.up) {
                        self.push(Step::MarkNamespace { name: name.clone() });
                    }
                }
                Some(ns) => self.conflict(format!(
                    "{key}: namespace {name} already exists and nsfw does not own it ({}); remove it (ip netns del {name}) or rename it in the file",
                    describe_owner(ns.owner.as_deref())
                )),
            }
        }
        for (name, ns) in &o.namespaces {
            if self.d.namespaces.contains_key(name) {
                continue;
            }
            if self.who.owns(ns.owner.as_deref()) {
                doomed.push((name.clone(), "no longer in the file"));
            }
        }
        for (name, why) in &o.unreachable {
            if self.d.namespaces.contains_key(name) {
                continue;
            }
            if self.is_leftover_ns(name) {
                doomed.push((name.clone(), "left half-made by an interrupted run"));
            } else if denied(why) {
                // It may be nsfw's: nothing can be said of it.
                self.plan.unreachable.push(format!(
                    "{why}; it stays as it is: run nsfw again with CAP_SYS_ADMIN"
                ));
            } else {
                self.plan
                    .warnings
                    .push(format!("{why}; not nsfw's, left alone"));
            }
        }
        let takes = self.veths_into(&doomed);
        for (name, why) in doomed {
            self.push(Step::DeleteNamespace {
                takes: takes.get(&name).cloned().unwrap_or_default(),
                name,
                why,
            });
        }
        for name in self.new_ns.clone() {
            self.push(Step::CreateNamespace { name });
        }
    }

    /// The host ends of veth pairs whose other end lives in one of the `doomed` namespaces:
    /// they go with it.
    fn veths_into(&self, doomed: &[(String, &'static str)]) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (ns, _) in doomed {
            let Some(obs) = self.o.namespaces.get(ns) else {
                continue;
            };
            for l in obs
                .node
                .links
                .iter()
                .filter(|l| l.kind.as_deref() == Some("veth"))
            {
                let host = self.o.host.links.iter().find(|h| {
                    h.kind.as_deref() == Some("veth")
                        && h.peer_index == Some(l.index)
                        && l.peer_index == Some(h.index)
                });
                if let Some(h) = host {
                    out.entry(ns.clone()).or_default().push(h.name.clone());
                }
            }
        }
        out
    }

    fn taken_with_namespace(&self, link: &str) -> bool {
        self.plan.steps.iter().any(
            |s| matches!(s, Step::DeleteNamespace { takes, .. } if takes.iter().any(|t| t == link)),
        )
    }

    fn delete_host_link(&mut self, l: &Link, why: &'static str) {
        if self.taken_with_namespace(&l.name) {
            return;
        }
        self.push(Step::DeleteLink {
            place: Place::Host,
            name: l.name.clone(),
            index: l.index,
            kind: l.kind.clone(),
            why,
        });
    }

    /// Host links: bridges and the host ends of veth pairs.
    fn host_links(&mut self) {
        let o = self.o;
        let mark = self.d.mark.clone();
        let mut deletes: Vec<(&Link, &'static str)> = Vec::new();
        for spec in self.d.host.links.values() {
            if matches!(spec.kind, LinkKind::Port { .. }) {
                continue; // another owner's interface: see `ports`
            }
            let have = o.host.link(&spec.name);
            let ours = have.filter(|l| l.alias.as_deref() == Some(mark.as_str()));
            if let Some(l) = have
                && ours.is_none()
            {
                if self.is_leftover_link(l) {
                    deletes.push((l, "left unmarked by an interrupted run"));
                } else {
                    self.conflict(format!(
                        "{}: {}: interface {} already exists on the host and nsfw does not own it ({}); remove or rename it, or rename it in the file",
                        self.file(),
                        spec.origin,
                        spec.name,
                        describe_owner(l.alias.as_deref())
                    ));
                    continue;
                }
            }
            match &spec.kind {
                LinkKind::Bridge => self.bridge(spec, ours, &mut deletes),
                LinkKind::Veth { peer_ns, peer } => {
                    self.veth(spec, ours, peer_ns, peer, &mut deletes)
                }
                LinkKind::Peer { .. } | LinkKind::Port { .. } => {}
            }
        }
        // Ours, but no longer in the file; leftovers of an interrupted run.
        for l in &o.host.links {
            if self.d.host.links.contains_key(&l.name) {
                continue;
            }
            if self.who.owns(l.alias.as_deref()) {
                deletes.push((l, "no longer in the file"));
            } else if self.is_leftover_link(l) {
                deletes.push((l, "left unmarked by an interrupted run"));
            }
        }
        // Veths before bridges, so no bridge goes with ports on it.
        deletes.sort_by_key(|(l, _)| l.kind.as_deref() == Some("bridge"));
        for (l, why) in deletes {
            self.delete_host_link(l, why);
        }
        self.foreign_ports();
    }

    fn bridge<'o>(
        &mut self,
        spec: &LinkSpec,
        ours: Option<&'o Link>,
        deletes: &mut Vec<(&'o Link, &'static str)>,
    ) {
        let have = match ours {
            Some(l) if l.kind.as_deref() != Some("bridge") => {
                deletes.push((l, "not a bridge"));
                None
            }
            other => other,
        };
        let Some(l) = have else {
            let mac = spec.mac.unwrap_or(crate::topology::Mac([2, 0, 0, 0, 0, 1]));
            self.new_links.insert(spec.name.clone(), mac.to_string());
            self.push(Step::CreateBridge {
                name: spec.name.clone(),
                mtu: spec.mtu,
                mac,
                nf_call: spec.nf_call,
            });
            return;
        };
        let mut attrs = Vec::new();
        if l.nf_call != spec.nf_call {
            attrs.push(LinkAttr::NfCall { new: spec.nf_call });
        }
        if l.mtu != spec.mtu {
            attrs.push(LinkAttr::Mtu {
                old: l.mtu,
                new: spec.mtu,
            });
        }
        if let Some(mac) = spec.mac
            && l.mac != Some(mac)
        {
            attrs.push(LinkAttr::Mac {
                old: l.mac,
                new: mac,
            });
        }
        if l.noarp {
            attrs.push(LinkAttr::Arp);
        }
        if !l.up {
            attrs.push(LinkAttr::Up);
        }
        if !attrs.is_empty() {
            self.push(Step::SetLink {
                place: Place::Host,
                name: spec.name.clone(),
                attrs,
            });
        }
    }

    fn veth<'o>(
        &mut self,
        spec: &LinkSpec,
        ours: Option<&'o Link>,
        peer_ns: &str,
        peer: &str,
        deletes: &mut Vec<(&'o Link, &'static str)>,
    ) {
        if self.o.unreachable.contains_key(peer_ns) && !self.new_ns.contains(peer_ns) {
            return; // a conflict, reported
        }
        let ns = if self.new_ns.contains(peer_ns) {
            None
        } else {
            match self.o.namespaces.get(peer_ns) {
                Some(n) if n.owner.as_deref() == Some(self.d.mark.as_str()) => Some(&n.node),
                Some(_) => return, // a conflict, reported
                None => None,
            }
        };
        let peer_link = ns.and_then(|n| n.link(peer));
        let whole = match (ours, peer_link) {
            (Some(h), Some(p)) => {
                h.kind.as_deref() == Some("veth")
                    && p.kind.as_deref() == Some("veth")
                    && h.peer_index == Some(p.index)
                    && p.peer_index == Some(h.index)
            }
            _ => false,
        };
        let bridge = spec.master.clone().unwrap_or_default();
        if !whole {
            if let Some(h) = ours {
                deletes.push((h, "its peer is not in place"));
            }
            if let Some(p) = peer_link {
                self.push(Step::DeleteLink {
                    place: Place::Ns(peer_ns.to_string()),
                    name: p.name.clone(),
                    index: p.index,
                    kind: p.kind.clone(),
                    why: "its pair is made again",
                });
            }
            let peer_spec = self
                .d
                .namespaces
                .get(peer_ns)
                .and_then(|n| n.links.get(peer));
            let host_mac = spec.mac.map(|m| m.to_string()).unwrap_or_default();
            self.new_links.insert(spec.name.clone(), host_mac);
            self.new_pairs
                .insert((peer_ns.to_string(), peer.to_string()));
            self.push(Step::CreateVeth {
                ns: peer_ns.to_string(),
                host: spec.name.clone(),
                peer: peer.to_string(),
                bridge,
                mtu: spec.mtu,
                mac: peer_spec.and_then(|p| p.mac),
                host_mac: spec.mac,
                no_link_local: spec.no_link_local,
                hairpin: spec.hairpin,
            });
            return;
        }
        let Some(h) = ours else { return };
        let mut attrs = Vec::new();
        let master = h
            .master
            .and_then(|i| self.o.host.name_of(i))
            .map(str::to_string);
        let moves =
            master.as_deref() != spec.master.as_deref() || self.new_links.contains_key(&bridge);
        if moves {
            attrs.push(LinkAttr::Master {
                old: master,
                new: spec.master.clone(),
            });
        }
        // A port made anew (another master) starts without hairpin: set it again after.
        if h.hairpin != spec.hairpin || (moves && spec.hairpin) {
            attrs.push(LinkAttr::Hairpin { new: spec.hairpin });
        }
        if h.mtu != spec.mtu {
            attrs.push(LinkAttr::Mtu {
                old: h.mtu,
                new: spec.mtu,
            });
        }
        if h.noarp {
            attrs.push(LinkAttr::Arp);
        }
        if !h.up {
            attrs.push(LinkAttr::Up);
        }
        if !attrs.is_empty() {
            self.push(Step::SetLink {
                place: Place::Host,
                name: spec.name.clone(),
                attrs,
            });
        }
    }

    /// Where an address or MAC on a segment changes, the neighbour entries on the segment's
    /// other interfaces still name the old MAC (a renamed bridge, two namespaces trading
    /// addresses) and would for many seconds: they are forgotten in the same run.
    fn forget_neighbours(&mut self) {
        // The ports of each bridge: (namespace, interface).
        let mut ports: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
        for spec in self.d.host.links.values() {
            if let (LinkKind::Veth { peer_ns, peer }, Some(b)) = (&spec.kind, &spec.master) {
                ports
                    .entry(b)
                    .or_default()
                    .push((peer_ns.clone(), peer.clone()));
            }
        }
        let mut out = Vec::new();
        for (bridge, members) in &ports {
            let touched = self.plan.steps.iter().any(|s| match s {
                Step::CreateBridge { name, .. } => name == bridge,
                Step::SetLink {
                    place: Place::Host,
                    name,
                    attrs,
                } => name == bridge && attrs.iter().any(|a| matches!(a, LinkAttr::Mac { .. })),
                Step::AddAddr { place, ifname, .. } | Step::DelAddr { place, ifname, .. } => {
                    match place {
                        Place::Host => ifname == bridge,
                        Place::Ns(ns) => members.iter().any(|(n, i)| n == ns && i == ifname),
                    }
                }
                _ => false,
            });
            if !touched {
                continue;
            }
            if !self.new_links.contains_key(*bridge) && self.o.host.link(bridge).is_some() {
                out.push(Step::ForgetNeighbours {
                    place: Place::Host,
                    ifname: bridge.to_string(),
                });
            }
            for (ns, i) in members {
                let fresh =
                    self.new_ns.contains(ns) || self.new_pairs.contains(&(ns.clone(), i.clone()));
                if !fresh && self.o.namespaces.contains_key(ns) {
                    out.push(Step::ForgetNeighbours {
                        place: Place::Ns(ns.clone()),
                        ifname: i.clone(),
                    });
                }
            }
        }
        self.plan.steps.extend(out);
    }

    /// Interfaces someone enslaved to one of nsfw's bridges: let go (the file says which
    /// ports a bridge has).
    fn foreign_ports(&mut self) {
        let o = self.o;
        let ours: BTreeMap<u32, &str> = o
            .host
            .links
            .iter()
            .filter(|l| {
                l.alias.as_deref() == Some(self.d.mark.as_str())
                    && self
                        .d
                        .host
                        .links
                        .get(&l.name)
                        .is_some_and(|s| s.kind == LinkKind::Bridge)
            })
            .map(|l| (l.index, l.name.as_str()))
            .collect();
        for l in &o.host.links {
            let Some(br) = l.master.and_then(|m| ours.get(&m)) else {
                continue;
            };
            let wanted = self
                .d
                .host
                .links
                .get(&l.name)
                .is_some_and(|s| s.master.as_deref() == Some(*br));
            if wanted || self.who.owns(l.alias.as_deref()) {
                continue;
            }
            self.push(Step::SetLink {
                place: Place::Host,
                name: l.name.clone(),
                attrs: vec![LinkAttr::Master {
                    old: Some(br.to_string()),
                    new: None,
                }],
            });
        }
    }
}
