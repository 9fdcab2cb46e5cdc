//! What the diff works from (the desired resources, the observation, whose objects it may
//! touch, what an interrupted run left) and what it collects (the plan, what this run makes):
//! shared by the per-resource diffs (`diff`, `links`, `node`, `host`, `ports`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::Plan;
use crate::kinds::Step;
use crate::owner::{Owner, topology_of};
use crate::plumbing::{Link, Observed};
use crate::resources::Desired;
use crate::state::{Pending, Record};

/// What the diff works from and collects into.
pub(super) struct Cx<'a> {
    pub d: &'a Desired,
    pub o: &'a Observed,
    pub who: Owner<'a>,
    pub leftovers: Pending,
    pub plan: Plan,
    /// Namespaces made in this run: nothing in them is there yet.
    pub new_ns: BTreeSet<String>,
    /// (namespace, interface) of veth pairs made in this run.
    pub new_pairs: BTreeSet<(String, String)>,
    /// Host links made (or made again) in this run, with the MAC they are made with.
    pub new_links: BTreeMap<String, String>,
    /// The host's links by name and by index: looked up once per link the file names, which
    /// at 1,000 namespaces made a scan of the host's 1,000 links each the plan's largest cost.
    host_by_name: HashMap<&'a str, &'a Link>,
    host_by_index: HashMap<u32, &'a Link>,
}

impl<'a> Cx<'a> {
    pub(super) fn new(d: &'a Desired, o: &'a Observed, rec: &Record, who: Owner<'a>) -> Cx<'a> {
        Cx {
            d,
            o,
            who,
            leftovers: rec.pending_of(&|t| who.owns_topology(t)),
            plan: Plan::default(),
            new_ns: BTreeSet::new(),
            new_pairs: BTreeSet::new(),
            new_links: BTreeMap::new(),
            host_by_name: o.host.links.iter().map(|l| (l.name.as_str(), l)).collect(),
            host_by_index: o.host.links.iter().map(|l| (l.index, l)).collect(),
        }
    }

    /// The host's link `name` (as `NodeObs::link`, without the scan).
    pub(super) fn host_link(&self, name: &str) -> Option<&'a Link> {
        self.host_by_name.get(name).copied()
    }

    /// The name of the host's link with `index` (as `NodeObs::name_of`, without the scan).
    pub(super) fn host_name_of(&self, index: u32) -> Option<&'a str> {
        self.host_by_index.get(&index).map(|l| l.name.as_str())
    }

    pub(super) fn file(&self) -> &str {
        &self.d.source
    }

    pub(super) fn conflict(&mut self, s: String) {
        self.plan.conflicts.push(s);
    }

    /// An object in the way whose step alone is left out (see [`Plan::skipped`]).
    pub(super) fn skip(&mut self, s: String) {
        self.plan.skipped.push(s);
    }

    pub(super) fn push(&mut self, s: impl Into<Step>) {
        self.plan.steps.push(s.into());
    }

    /// A name in /run/netns that is no namespace, left by an interrupted run of this
    /// topology (a namespace is marked before it is published there, so a live one without
    /// the mark is never nsfw's).
    pub(super) fn is_leftover_ns(&self, name: &str) -> bool {
        self.leftovers.namespaces.contains(name)
    }

    /// An unmarked link an interrupted run of this topology made: the record names it, with
    /// the MAC it was made with.
    pub(super) fn is_leftover_link(&self, l: &Link) -> bool {
        l.alias.is_none()
            && l.mac
                .is_some_and(|m| self.leftovers.links.get(&l.name) == Some(&m.to_string()))
    }
}

/// Whose a link or namespace is, for a conflict: its mark's topology, or none.
pub(super) fn describe_owner(alias: Option<&str>) -> String {
    match alias {
        Some(a) => match topology_of(a) {
            Some(t) => format!("it belongs to nsfw topology {t:?}"),
            None => format!("its alias is {a:?}, not nsfw's"),
        },
        None => "it carries no nsfw mark".to_string(),
    }
}
