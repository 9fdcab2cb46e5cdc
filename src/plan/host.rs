//! The host-wide part of the diff: subnets against the host's routes, the sysctls whose value
//! from before nsfw is kept in the record, and the resolv.conf files.

use ipnetwork::IpNetwork;
use std::collections::BTreeSet;

use super::cx::Cx;
use crate::kinds::{RemoveResolv, SetSysctl, Step, WriteResolv};
use crate::owner::{resolv_marked, resolv_owner, topology_of};
use crate::plumbing::FileObs;
use crate::resources::Place;
use crate::state::{Pending, Record};

impl Cx<'_> {
    /// The host's IPv4 routes to macvlan children through a shim leave from the uplink's own
    /// address on the child's subnet, where it has one. The shim has no IPv4 address, so the
    /// kernel would pick the host's first global address — on a host with another interface
    /// before the uplink, one off the LAN, and the child's replies would go to its gateway.
    /// (IPv6 ones leave from the shim's link-local address: compile.) Without such an address,
    /// the kernel's choice, as before.
    pub(super) fn shim_sources(&self, host: &mut crate::resources::Node) {
        use crate::resources::LinkKind;
        let links = &host.links;
        for r in host.routes.values_mut() {
            if r.src.is_some() || !r.dst.is_ipv4() || r.orig.is_some() {
                continue;
            }
            let Some(LinkKind::Macvlan { uplink, .. }) = links.get(&r.dev).map(|l| &l.kind) else {
                continue;
            };
            let Some(up) = self.host_link(uplink) else {
                continue;
            };
            let mut on_subnet: Vec<std::net::IpAddr> = (self.o.host.addrs.iter())
                .filter(|a| a.index == up.index && a.net.is_ipv4() && a.net.contains(r.dst.ip()))
                .map(|a| a.net.ip())
                .collect();
            on_subnet.sort();
            r.src = on_subnet.first().copied();
        }
    }

    /// A bridge's subnet that overlaps a route the host already has (another interface's
    /// subnet, another topology's bridge, a static route) is a conflict, unless the file says
    /// `overlap = "allow"`.
    pub(super) fn overlaps(&mut self) {
        let o = self.o;
        for (link, net) in &self.d.host.addrs {
            // Link-local (fe80::/64) is on every IPv6 link by design.
            let link_local = matches!(net, IpNetwork::V6(n) if n.ip().is_unicast_link_local());
            if self.d.overlap_ok.contains(link) || link_local {
                continue;
            }
            let subnet = crate::topology::subnet_of(net);
            for r in &o.host.routes {
                let dst = r.dst;
                if dst.prefix() == 0 || !crate::topology::overlaps(subnet, dst) {
                    continue;
                }
                let dev = r.oif.and_then(|i| o.host.by_index(i));
                if dev.is_some_and(|d| d.alias.as_deref() == Some(self.d.mark.as_str())) {
                    continue; // our own bridge's route
                }
                let whose = match dev.and_then(|d| {
                    d.alias
                        .as_deref()
                        .and_then(topology_of)
                        .map(|t| (t, &d.name))
                }) {
                    Some((t, dev)) => format!("subnet {dst} of nsfw topology {t:?} (on {dev})"),
                    None => format!(
                        "the host's route {dst}{}",
                        dev.map(|d| format!(" dev {}", d.name)).unwrap_or_default()
                    ),
                };
                self.conflict(format!(
                    "{}: bridges.{link}.{} = \"{net}\": subnet {subnet} overlaps {whose}; traffic to it would be misrouted. Choose another subnet, or set overlap = \"allow\" on the bridge if that is meant",
                    self.file(),
                    if net.is_ipv6() { "address6" } else { "address" }
                ));
                break;
            }
        }
    }

    /// Host sysctls with a value from before nsfw: recorded before nsfw changes them, put
    /// back when no topology needs nsfw's value any more.
    pub(super) fn host_sysctl_record(&mut self, rec: &Record) {
        let mut during = rec.clone();
        let wanted: Vec<(&String, &crate::resources::SysctlSpec)> = self
            .d
            .host
            .sysctls
            .iter()
            .filter(|(_, s)| s.restore)
            .collect();
        let topology = self.d.topology.clone();
        for (k, _) in &wanted {
            if let Some(Some(now)) = self.o.host.sysctls.get(*k) {
                let e = during
                    .sysctls
                    .entry((*k).clone())
                    .or_insert_with(|| crate::state::Saved {
                        original: now.clone(),
                        users: BTreeSet::new(),
                    });
                e.users.insert(topology.clone());
            }
        }
        let mut after = during.clone();
        for (k, saved) in after.sysctls.iter_mut() {
            let still = wanted.iter().any(|(w, _)| *w == k);
            saved.users.retain(|t| {
                still && *t == topology || !self.who.owns_topology(t) && self.still_there(rec, t)
            });
        }
        let done: Vec<String> = after
            .sysctls
            .iter()
            .filter(|(_, s)| s.users.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        for k in done {
            if let Some(saved) = after.sysctls.remove(&k) {
                let now = self.o.host.sysctls.get(&k).cloned().flatten();
                if now.as_deref() != Some(saved.original.as_str()) && now.is_some() {
                    self.push(SetSysctl {
                        place: Place::Host,
                        key: k,
                        old: now,
                        new: saved.original,
                        restore: true,
                    });
                }
            }
        }
        for p in after
            .pending
            .iter_mut()
            .filter(|(t, _)| self.who.owns_topology(t))
        {
            *p.1 = Pending::default();
        }
        self.plan.record_during = during;
        self.plan.record_after = after;
    }

    /// Whether `user` of a recorded sysctl still has anything in this network namespace: a
    /// table, link or namespace marked as its own, or objects the record says a run was making. A
    /// topology that vanished without a flush (its namespaces deleted by hand) would otherwise
    /// keep every later flush from putting the sysctl back. A CNI network (`cni:NET`) is left
    /// to its own DEL, and nobody is dropped while a namespace cannot be looked into.
    fn still_there(&self, rec: &Record, user: &str) -> bool {
        if user.contains(':') || !self.o.unreachable.is_empty() {
            return true;
        }
        let mark = crate::owner::mark(user);
        let marked = |m: &Option<String>| m.as_deref() == Some(mark.as_str());
        rec.pending.get(user).is_some_and(|p| !p.is_empty())
            || rec.adopting.get(user).is_some_and(|p| !p.is_empty())
            || self.o.tables_of.contains(user)
            || self.o.host.links.iter().any(|l| marked(&l.alias))
            || self.o.namespaces.values().any(|n| marked(&n.owner))
    }

    /// The resolv.conf files: written when wanted and different, removed when nsfw's and no
    /// longer wanted; anything else under /etc/netns is reported and left alone.
    pub(super) fn files(&mut self) {
        let o = self.o;
        for (ns, content) in &self.d.resolv {
            match o.resolv.get(ns) {
                None => self.push(WriteResolv { ns: ns.clone(), content: content.clone() }),
                Some(FileObs::Text(have)) if have == content => {}
                Some(FileObs::Text(have)) if resolv_owner(have) == Some(self.d.topology.as_str()) => {
                    self.push(WriteResolv { ns: ns.clone(), content: content.clone() })
                }
                // Another topology's file is never taken, forced or not; one nsfw wrote for
                // this topology and a hand edited since is.
                Some(FileObs::Text(have))
                    if self.d.resolv_replace.contains(ns)
                        && resolv_owner(have).is_none()
                        && resolv_marked(have).is_none_or(|t| t == self.d.topology) =>
                {
                    self.push(WriteResolv { ns: ns.clone(), content: content.clone() })
                }
                Some(FileObs::Text(have)) if resolv_owner(have).is_some() => self.skip(format!(
                    "{}: namespaces.{ns}.dns: {} was written by nsfw for topology {:?}; left as it is",
                    self.file(),
                    crate::plumbing::resolv_path(ns).display(),
                    resolv_owner(have).unwrap_or_default()
                )),
                Some(FileObs::Text(have)) if resolv_marked(have).is_some() => self.skip(format!(
                    "{}: namespaces.{ns}.dns: {} was written by nsfw for topology {:?} and edited by hand since (its text no longer matches the digest on its first line); left as it is. `nsfw apply --force` (or dns_policy = \"replace\") writes nsfw's over it; or remove it, or drop `dns`",
                    self.file(),
                    crate::plumbing::resolv_path(ns).display(),
                    resolv_marked(have).unwrap_or_default()
                )),
                Some(FileObs::Text(_)) => self.skip(format!(
                    "{}: namespaces.{ns}.dns: {} exists and was not written by nsfw (edited by hand?); left as it is. `nsfw apply --force` (or dns_policy = \"replace\") writes nsfw's over it; or remove it, or drop `dns`",
                    self.file(),
                    crate::plumbing::resolv_path(ns).display()
                )),
                Some(FileObs::Other(kind)) => self.skip(format!(
                    "{}: namespaces.{ns}.dns: {} is {kind}; nsfw neither reads nor replaces it: remove it or drop `dns`",
                    self.file(),
                    crate::plumbing::resolv_path(ns).display()
                )),
            }
        }
        for (ns, f) in &o.resolv {
            if self.d.resolv.contains_key(ns) {
                continue;
            }
            match f {
                FileObs::Text(have)
                    if resolv_owner(have).is_some_and(|t| self.who.owns_topology(t)) =>
                {
                    self.push(RemoveResolv { ns: ns.clone() })
                }
                FileObs::Other(kind) => self.plan.warnings.push(format!(
                    "{} is {kind}: not nsfw's, left alone",
                    crate::plumbing::resolv_path(ns).display()
                )),
                // The resolv.conf of a namespace this run removes (a flush) or keeps without
                // `dns`, which nsfw did not write: named, never removed.
                FileObs::Text(have)
                    if resolv_owner(have).is_none()
                        && o
                            .namespaces
                            .get(ns)
                            .is_some_and(|n| self.who.owns(n.owner.as_deref())) =>
                {
                    self.plan.warnings.push(format!(
                        "{} was not written by nsfw{}: left as it is (namespace {ns} is nsfw's; remove the file by hand if it is no longer wanted)",
                        crate::plumbing::resolv_path(ns).display(),
                        if resolv_marked(have).is_some() { " (or edited by hand since)" } else { "" }
                    ))
                }
                _ => {}
            }
        }
        self.leftover_dirs();
    }

    /// The directories under /etc/netns: removed when an interrupted run of this topology
    /// made one that holds nothing of anyone else's, named when they hold more.
    fn leftover_dirs(&mut self) {
        let o = self.o;
        // A directory an interrupted run of this topology made, with nothing of anyone else's
        // in it.
        for ns in &self.leftovers.files.clone() {
            let theirs = matches!(o.resolv.get(ns), Some(FileObs::Other(_)))
                || matches!(o.resolv.get(ns), Some(FileObs::Text(t)) if resolv_owner(t).is_none_or(|t| !self.who.owns_topology(t)));
            let planned = self.plan.steps.iter().any(|s| matches!(s, Step::RemoveResolv(RemoveResolv { ns: n }) | Step::WriteResolv(WriteResolv { ns: n, .. }) if n == ns));
            if o.etc_dirs.contains(ns) && !theirs && !planned && !self.d.resolv.contains_key(ns) {
                self.push(RemoveResolv { ns: ns.clone() });
            }
        }
        // A directory that holds more than nsfw's file (`hosts`, say) stays: named once its
        // resolv.conf is gone or going, never taken for something left to remove.
        for (ns, what) in &o.etc_busy {
            let removing = self
                .plan
                .steps
                .iter()
                .any(|s| matches!(s, Step::RemoveResolv(RemoveResolv { ns: n }) if n == ns));
            if removing || self.leftovers.files.contains(ns) {
                self.plan.warnings.push(format!(
                    "{}/{ns} holds {} besides nsfw's resolv.conf: the directory is left as it is",
                    crate::plumbing::netns::ETC_DIR,
                    what.join(", ")
                ));
            }
        }
        for p in &o.etc_problems {
            self.plan.warnings.push(p.clone());
        }
    }
}
