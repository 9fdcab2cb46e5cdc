//! Links: for each link of the file, its kind's comparison (`kinds`) against the kernel's —
//! kept and its attributes set, or made (again); what nsfw owns and the file no longer names
//! deleted; interfaces someone enslaved to nsfw's bridges let go. The host's links are
//! compared here whole; inside a namespace, where the link is made from the host (a veth
//! peer), only its attributes are.

use std::collections::{BTreeMap, BTreeSet};

use super::cx::{Cx, describe_owner};
use crate::kinds::link::Seen;
use crate::kinds::{
    CreateBridge, CreateMacvlan, CreateVeth, DeleteLink, LinkAttr, SetLink, Step, bridge, macvlan,
    veth,
};
use crate::plumbing::{Link, NodeObs};
use crate::resources::{LinkKind, LinkSpec, Node, Place};

/// Links observed that are to go, with why.
pub(super) type Deletes<'o> = Vec<(&'o Link, &'static str)>;

impl<'a> Cx<'a> {
    /// Host links: bridges and the host ends of veth pairs (ports are `ports`'s).
    pub(super) fn host_links(&mut self) {
        let o = self.o;
        let mut deletes: Deletes<'a> = Vec::new();
        for spec in self.d.host.links.values() {
            if matches!(spec.kind, LinkKind::Port { .. }) {
                continue; // another owner's interface: see `ports`
            }
            let Some(ours) = self.ours_on_host(spec, &mut deletes) else {
                continue; // a conflict, reported
            };
            match &spec.kind {
                LinkKind::Bridge => self.bridge(spec, ours, &mut deletes),
                LinkKind::Veth { peer_ns, peer, .. } => {
                    self.veth(spec, ours, peer_ns, peer, &mut deletes)
                }
                LinkKind::Macvlan { uplink, .. } => self.shim(spec, ours, uplink, &mut deletes),
                LinkKind::Vxlan { .. } => self.vxlan(spec, ours, &mut deletes),
                LinkKind::Peer { .. } | LinkKind::Port { .. } => {}
            }
        }
        self.macvlan_children();
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
        deletes.sort_by_key(|(l, _)| bridge::is(l));
        for (l, why) in deletes {
            self.delete_host_link(l, why);
        }
        self.foreign_ports();
    }

    /// The host's link named as `spec`, when it is nsfw's (Some(None): there is none). A link
    /// of that name an interrupted run left unmarked goes; anyone else's is a conflict (None).
    fn ours_on_host(
        &mut self,
        spec: &LinkSpec,
        deletes: &mut Deletes<'a>,
    ) -> Option<Option<&'a Link>> {
        let have = self.host_link(&spec.name);
        let ours = have.filter(|l| l.alias.as_deref() == Some(self.d.mark.as_str()));
        if let Some(l) = have
            && ours.is_none()
        {
            if !self.is_leftover_link(l) {
                self.conflict(format!(
                    "{}: {}: interface {} already exists on the host and nsfw does not own it ({}); remove or rename it, or rename it in the file",
                    self.file(),
                    spec.origin,
                    spec.name,
                    describe_owner(l.alias.as_deref())
                ));
                return None;
            }
            deletes.push((l, "left unmarked by an interrupted run"));
        }
        Some(ours)
    }

    fn taken_with_namespace(&self, link: &str) -> bool {
        self.plan
            .steps
            .iter()
            .any(|s| matches!(s, Step::DeleteNamespace(d) if d.takes.iter().any(|t| t == link)))
    }

    fn delete_host_link(&mut self, l: &Link, why: &'static str) {
        if self.taken_with_namespace(&l.name) {
            return;
        }
        self.push(DeleteLink::of(Place::Host, l, why));
    }

    /// `attrs` of link `name` in `place` set, if any differ.
    pub(super) fn set_link(&mut self, place: Place, name: &str, attrs: Vec<LinkAttr>) {
        if !attrs.is_empty() {
            self.push(SetLink {
                place,
                name: name.to_string(),
                attrs,
            });
        }
    }

    /// A bridge: made when missing (or when the link of its name is no bridge), else its
    /// attributes set.
    fn bridge(&mut self, spec: &LinkSpec, ours: Option<&'a Link>, deletes: &mut Deletes<'a>) {
        let have = match ours {
            Some(l) if !bridge::is(l) => {
                deletes.push((l, "not a bridge"));
                None
            }
            other => other,
        };
        match have {
            Some(l) => self.set_link(Place::Host, &spec.name, bridge::attrs(spec, l)),
            None => {
                let make = CreateBridge::of(spec);
                self.new_links
                    .insert(spec.name.clone(), make.mac.to_string());
                self.push(make);
            }
        }
    }

    /// A veth pair, by its host end: made again unless both ends are there and each other's
    /// peer, else the host end's attributes set (the namespace end's are `ns_links`').
    fn veth(
        &mut self,
        spec: &LinkSpec,
        ours: Option<&'a Link>,
        peer_ns: &str,
        peer: &str,
        deletes: &mut Deletes<'a>,
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
        match (ours, peer_link) {
            (Some(h), Some(p)) if veth::whole(h, p) => {
                let bridge = spec.master.as_deref().unwrap_or_default();
                let seen = Seen {
                    link: h,
                    master: h.master.and_then(|i| self.host_name_of(i)),
                    master_new: self.new_links.contains_key(bridge),
                };
                self.set_link(Place::Host, &spec.name, veth::host_end_attrs(spec, &seen));
            }
            _ => self.remake_pair(spec, (ours, peer_link), peer_ns, peer, deletes),
        }
    }

    /// The host's shim on an uplink: made when missing, made again when it is not the
    /// macvlan the file says (see `macvlan::mismatch`), else its attributes set.
    fn shim(
        &mut self,
        spec: &LinkSpec,
        ours: Option<&'a Link>,
        uplink: &str,
        deletes: &mut Deletes<'a>,
    ) {
        let Some(ix) = self.host_link(uplink).map(|l| l.index) else {
            return; // the children's conflict names the missing uplink
        };
        if let Some(l) = ours {
            match macvlan::mismatch(spec, l, Some(ix)) {
                None => {
                    let up = self.host_link(uplink).map(|u| u.mtu);
                    return self.set_link(Place::Host, &spec.name, macvlan::attrs(spec, l, up));
                }
                Some(why) => deletes.push((l, why)),
            }
        }
        let mac = spec.mac.map(|m| m.to_string()).unwrap_or_default();
        self.new_links.insert(spec.name.clone(), mac);
        if let Some(make) = CreateMacvlan::of(Place::Host, spec, &self.d.mark) {
            self.push(make);
        }
    }

    /// The namespaces' children of host uplinks: made from the host when missing or not what
    /// the file says (another kind, mode or uplink: deleted first); their attributes are
    /// `ns_links`'. An uplink the host lacks is a conflict.
    fn macvlan_children(&mut self) {
        let d = self.d;
        for (ns, node) in &d.namespaces {
            for spec in node.links.values() {
                let LinkKind::Macvlan { uplink, .. } = &spec.kind else {
                    continue;
                };
                let new_ns = self.new_ns.contains(ns);
                if self.o.unreachable.contains_key(ns) && !new_ns {
                    continue; // a conflict, reported
                }
                let Some(up) = self.host_link(uplink) else {
                    self.conflict(format!(
                        "{}: {}: the host has no interface {uplink} to be the uplink of namespace {ns}'s {}",
                        self.file(),
                        spec.origin,
                        spec.name
                    ));
                    continue;
                };
                let mine = node
                    .addrs
                    .iter()
                    .filter(|(i, _)| *i == spec.name)
                    .map(|(_, a)| a);
                // Any of the host's addresses, not only the uplink's: Linux answers ARP on
                // the uplink for an address on `lo` too, and the host's own address always
                // wins over its route to the child.
                let hosts: Vec<_> = (self.o.host.addrs.iter())
                    .map(|h| (h.net.ip(), self.host_name_of(h.index).unwrap_or("?")))
                    .collect();
                if let Some(why) = macvlan::unfit_uplink(spec, up, &hosts, mine) {
                    self.conflict(format!(
                        "{}: {}: uplink {uplink} of namespace {ns}'s {}: {why}",
                        self.file(),
                        spec.origin,
                        spec.name
                    ));
                    continue;
                }
                let ix = up.index;
                let have = match self.o.namespaces.get(ns) {
                    _ if new_ns => None,
                    Some(n) if n.owner.as_deref() == Some(d.mark.as_str()) => {
                        n.node.link(&spec.name)
                    }
                    Some(_) => continue, // a conflict, reported
                    None => None,
                };
                if let Some(l) = have {
                    let Some(why) = macvlan::mismatch(spec, l, Some(ix)) else {
                        continue;
                    };
                    self.push(DeleteLink::of(Place::Ns(ns.clone()), l, why));
                }
                self.new_pairs.insert((ns.clone(), spec.name.clone()));
                if let Some(make) = CreateMacvlan::of(Place::Ns(ns.clone()), spec, &d.mark) {
                    self.push(make);
                }
            }
        }
    }

    /// A pair made (again): whatever is left of it goes first.
    fn remake_pair(
        &mut self,
        spec: &LinkSpec,
        (host_end, peer_end): (Option<&'a Link>, Option<&Link>),
        peer_ns: &str,
        peer: &str,
        deletes: &mut Deletes<'a>,
    ) {
        if let Some(h) = host_end {
            deletes.push((h, "its peer is not in place"));
        }
        if let Some(p) = peer_end {
            let place = Place::Ns(peer_ns.to_string());
            self.push(DeleteLink::of(place, p, "its pair is made again"));
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
        let make = CreateVeth::of(spec, peer_ns, peer, peer_spec);
        self.push(make);
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
            let attrs = vec![LinkAttr::Master {
                old: Some(br.to_string()),
                new: None,
            }];
            self.set_link(Place::Host, &l.name, attrs);
        }
    }
}

/// The links inside a namespace: the attributes of those its kind compares there (the
/// namespace ends of veth pairs), and anything else in it but `lo`, which goes. `brought_up`
/// learns the links set up, whose routes are put in place again.
pub(super) fn ns_links(
    cx: &mut Cx,
    ns: &str,
    want: &Node,
    have: &NodeObs,
    fresh: &BTreeSet<&str>,
    brought_up: &mut BTreeSet<String>,
) {
    let place = || Place::Ns(ns.to_string());
    for (name, spec) in &want.links {
        if fresh.contains(name.as_str()) {
            continue;
        }
        let Some(l) = have.link(name) else { continue };
        let attrs = match spec.kind {
            LinkKind::Peer { .. } => veth::peer_attrs(spec, l),
            LinkKind::Macvlan { ref uplink, .. } => {
                macvlan::attrs(spec, l, cx.host_link(uplink).map(|u| u.mtu))
            }
            LinkKind::Bridge
            | LinkKind::Veth { .. }
            | LinkKind::Port { .. }
            | LinkKind::Vxlan { .. } => continue,
        };
        if attrs.contains(&LinkAttr::Up) {
            brought_up.insert(name.clone());
        }
        if !attrs.is_empty() {
            cx.set_link(place(), name, attrs);
        }
    }
    let extra: Vec<&Link> = have
        .links
        .iter()
        .filter(|l| l.name != "lo" && !want.links.contains_key(&l.name))
        .collect();
    if extra.is_empty() {
        // The usual case, and the plan's steps are not scanned for each of 1,000 namespaces
        // (at a cold apply, thousands of them).
        return;
    }
    let place = place();
    let deleted: BTreeSet<&str> = cx
        .plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::DeleteLink(d) if d.place == place => Some(d.name.as_str()),
            _ => None,
        })
        .collect();
    let gone: Vec<DeleteLink> = extra
        .into_iter()
        .filter(|l| !deleted.contains(l.name.as_str()))
        .map(|l| DeleteLink::of(place.clone(), l, "not in the file"))
        .collect();
    for g in gone {
        cx.push(g);
    }
}
