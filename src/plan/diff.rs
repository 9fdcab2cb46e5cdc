//! The generic diff: for each kind of resource, what is wanted against what is there, keyed
//! by (namespace, kind, identity). What nsfw owns and the file no longer names goes; what is in
//! the way and not nsfw's is a conflict; what an interrupted run left unmarked (the record
//! names it) is removed and made again.

use std::collections::BTreeMap;

use super::Plan;
use super::cx::{Cx, describe_owner};
use super::node::diff_node;
use crate::kinds::{
    CreateNamespace, DeleteNamespace, MarkNamespace, RemoveResolv, Step, WriteResolv, veth,
};
use crate::owner::Owner;
use crate::plumbing::Observed;
use crate::plumbing::netns::NsId;
use crate::resources::{Desired, Place};
use crate::state::Record;

/// Whether a namespace could not be entered for want of privilege (rather than not being a
/// namespace at all).
fn denied(why: &str) -> bool {
    why.contains("EPERM") || why.contains("EACCES") || why.contains("CAP_SYS_ADMIN")
}

/// The plan that makes the kernel hold `d`, removing what `who` owns that `d` does not name.
pub(crate) fn plan(d: &Desired, o: &Observed, rec: &Record, who: Owner) -> Plan {
    let mut cx = Cx::new(d, o, rec, who);
    cx.namespaces();
    cx.host_links();
    cx.fdb();
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
    let mut host = cx.with_taken(rec);
    cx.shim_sources(&mut host);
    diff_node(&mut cx, &Place::Host, &host, Some(&o.host));
    cx.forget_neighbours();
    cx.announcements_in_flight();
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
            Step::DeleteNamespace(d) => {
                p.creates.namespaces.insert(d.name.clone());
            }
            Step::WriteResolv(WriteResolv { ns, .. }) | Step::RemoveResolv(RemoveResolv { ns }) => {
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
    /// Two names of /run/netns that hold one namespace (someone mounted namespace A over
    /// /run/netns/B): the file's settings for both would be made in that one, each undoing the
    /// other's, and removing B would take A's links. A conflict for each such name that is the
    /// file's or nsfw's, naming the other; nothing changes until the mount is gone.
    fn aliases(&mut self) {
        let o = self.o;
        let mut first: BTreeMap<NsId, &String> = BTreeMap::new();
        for (name, ns) in &o.namespaces {
            let Some(id) = ns.id else { continue };
            let Some(other) = first.get(&id) else {
                first.insert(id, name);
                continue;
            };
            let ours = |n: &String| {
                self.d.namespaces.contains_key(n)
                    || o.namespaces
                        .get(n)
                        .is_some_and(|x| self.who.owns(x.owner.as_deref()))
            };
            if ours(name) || ours(other) {
                let (a, b) = (other.as_str(), name.as_str());
                let at = match self.file() {
                    "" => format!("namespace {b}"),
                    f => format!("{f}: namespaces.{b}"),
                };
                self.conflict(format!(
                    "{at}: /run/netns/{a} and /run/netns/{b} hold one namespace (a mount of one over the other?): nsfw would configure it as both; remove the extra mount (`umount /run/netns/NAME` of the name that should not hold it) and run again"
                ));
            }
        }
    }

    fn namespaces(&mut self) {
        let o = self.o;
        let mark = self.d.mark.clone();
        self.aliases();
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
                        self.push(MarkNamespace { name: name.clone() });
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
            self.push(DeleteNamespace {
                takes: takes.get(&name).cloned().unwrap_or_default(),
                name,
                why,
            });
        }
        for name in self.new_ns.clone() {
            self.push(CreateNamespace { name });
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
            for l in &obs.node.links {
                let host = self.o.host.links.iter().find(|h| veth::whole(h, l));
                if let Some(h) = host {
                    out.entry(ns.clone()).or_default().push(h.name.clone());
                }
            }
        }
        out
    }
}
