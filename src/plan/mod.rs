//! The plan: what must change for the kernel to match the desired resources, computed from
//! `Desired` and `Observed` alone (a diff per kind of resource, [`diff`], each kind compared
//! as `kinds` says), ordered so that carrying it out a stage at a time is valid. `apply`
//! executes it ([`execute`]: each step sent as the requests its kind lowers it into), `diff`
//! prints it, `flush` is the plan towards nothing.

mod announcing;
mod build;
mod cx;
mod diff;
mod execute;
mod host;
#[cfg(test)]
mod host_tests;
mod hostix;
mod inside;
mod links;
mod neighbours;
mod node;
mod ports;
#[cfg(test)]
mod ports_tests;
mod run;
#[cfg(test)]
mod tests;
mod vxlan;

use std::fmt;

use serde_json::{Value, json};

#[cfg(test)]
pub(crate) use crate::kinds::Stage;
pub(crate) use crate::kinds::Step;
pub(crate) use crate::owner::Owner;
pub(crate) use diff::plan;
pub(crate) use execute::execute;
pub(crate) use ports::with_lan;
pub(crate) use run::Hints;

use crate::firewall::NftPlan;
use crate::state::{Pending, Record};

/// The ordered steps, plus what forbids or qualifies carrying them out.
#[derive(Clone, Debug, Default)]
pub(crate) struct Plan {
    /// Plumbing changes, in the order they run.
    pub steps: Vec<Step>,
    /// The nftables changes: one batch, after the plumbing.
    pub nft: NftPlan,
    /// Objects in the way that nsfw does not own: any of these makes apply refuse to start.
    pub conflicts: Vec<String>,
    /// Objects in the way that nsfw does not own and that nothing else depends on (a
    /// resolv.conf someone else wrote): their own step is left out, the rest of the plan is
    /// carried out, and apply ends "partially applied" (exit 4) naming each.
    pub skipped: Vec<String>,
    /// Things worth saying that change nothing.
    pub warnings: Vec<String>,
    /// Objects nsfw could not look into and may own: the run ends with an error.
    pub unreachable: Vec<String>,
    /// What the run creates (and the namespaces it deletes, which are two steps in the
    /// kernel), for the write-ahead record.
    pub creates: Pending,
    /// The record once the run has succeeded (sysctl users and originals updated).
    pub record_after: Record,
    /// The record while the run is under way: the originals it is about to change added.
    pub record_during: Record,
    /// `--adopt`: steps left out on purpose (`adopt::guard`); not "still differs" after.
    pub left_out: Vec<Step>,
    /// Interfaces bound to or unbound from firewalld's zone (`crate::firewalld`).
    pub firewalld: Vec<crate::firewalld::Change>,
    /// firewalld could not be asked whether those interfaces are in its zone (warned).
    pub firewalld_unchecked: bool,
    /// `--adopt`: hand-written rules of iptables-legacy removed right after the batch.
    pub legacy: Vec<crate::plumbing::xtables::Removal>,
}

impl Plan {
    pub(crate) fn is_empty(&self) -> bool {
        self.steps.is_empty()
            && self.nft.ops.is_empty()
            && self.nft.ns_ops.is_empty()
            && self.firewalld.is_empty()
            && self.legacy.is_empty()
    }

    /// The number of changes, plumbing and nft.
    /// Nothing to change, nothing in the way, and nothing that could not be checked.
    pub(crate) fn in_sync(&self) -> bool {
        self.is_empty() && self.skipped.is_empty() && !self.firewalld_unchecked
    }

    pub(crate) fn len(&self) -> usize {
        self.steps.len() + self.nft.lines.len() + self.firewalld.len()
    }

    /// (to add, to change, to remove).
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        let marks = self
            .steps
            .iter()
            .map(|s| s.mark())
            .chain(self.nft.lines.iter().map(|l| l.mark))
            .chain(self.firewalld.iter().map(|c| c.mark()));
        let mut c = (0, 0, 0);
        for m in marks {
            match m {
                '+' => c.0 += 1,
                '-' => c.2 += 1,
                _ => c.1 += 1,
            }
        }
        c
    }

    /// `plan: 12 to add, 3 to change, 1 to remove`.
    pub(crate) fn summary(&self) -> String {
        let (a, c, r) = self.counts();
        format!("plan: {a} to add, {c} to change, {r} to remove")
    }

    /// The plan in the stable JSON schema of docs/json.md.
    pub(crate) fn to_json(&self, topology: &str, file: &str) -> Value {
        let mut changes: Vec<Value> = self.steps.iter().map(Step::json).collect();
        changes.extend(self.nft.lines.iter().map(|l| {
            let mut c = json!({
                "op": crate::kinds::op_name(l.mark),
                "object": l.object(),
                "kind": format!("nft-{}", l.kind),
                "table": l.table,
                "chain": l.chain,
                "rule": if l.kind == "rule" { Some(&l.detail) } else { None },
                "detail": if l.kind != "rule" && !l.detail.is_empty() { Some(&l.detail) } else { None },
                "text": l.to_string(),
            });
            // Set and element changes name their set (fields are only ever added).
            if let (Some(set), Some(obj)) = (&l.set, c.as_object_mut()) {
                obj.insert("set".into(), set.clone().into());
            }
            c
        }));
        changes.extend(self.firewalld.iter().map(crate::firewalld::Change::json));
        let (a, c, r) = self.counts();
        json!({
            "schema": 1,
            "topology": topology,
            "file": file,
            "in_sync": self.in_sync(),
            "summary": {"add": a, "change": c, "remove": r},
            "changes": changes,
            "conflicts": self.conflicts,
            "skipped": self.skipped,
            "warnings": self.warnings,
            "unreachable": self.unreachable,
        })
    }
}

impl fmt::Display for Plan {
    /// The plan grouped by the object each change concerns, objects in the order the plan
    /// first touches them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        let items = self
            .steps
            .iter()
            .map(|c| (c.object(), c.to_string()))
            .chain(self.nft.lines.iter().map(|l| (l.object(), l.to_string())))
            .chain(self.firewalld.iter().map(|c| (c.object(), c.to_string())));
        for (obj, line) in items {
            match groups.iter_mut().find(|(o, _)| *o == obj) {
                Some((_, v)) => v.push(line),
                None => groups.push((obj, vec![line])),
            }
        }
        for (obj, lines) in groups {
            writeln!(f, "{obj}")?;
            for l in lines {
                writeln!(f, "  {l}")?;
            }
        }
        Ok(())
    }
}
