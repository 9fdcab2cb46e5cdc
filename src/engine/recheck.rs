//! After a plan is carried out, the plumbing is read again to check it: only where the plan
//! could have changed anything. The namespaces a plan does not touch were read at the start
//! of this same run, found as the file wants them (else the plan would touch them), and
//! nobody else changes them while the lock is held that nsfw would not find at its next run;
//! reading them again would look for others' changes, not check this run's (as nftables is
//! not read back when its generation says the batch was the only commit). At 1,000
//! namespaces, adding one read all 1,000 twice; now once, and the new one.

use std::collections::BTreeSet;

use anyhow::Result;

use super::Target;
use super::kernel::Kernel;
use crate::kinds::Step;
use crate::plan::Plan;
use crate::plumbing::Observed;
use crate::resources::Place;
use crate::state::Record;

/// The plumbing after `p` was carried out: read again where `p` could have changed it, the
/// rest as `before` (this run's first observation) saw it. `recs`: the records before and
/// after the run; the query is the later one's.
pub(super) fn reread(
    k: &mut dyn Kernel,
    tg: &Target,
    p: &Plan,
    before: &Observed,
    recs: &[&Record; 2],
) -> Result<Observed> {
    let Some(only) = touched(p, recs) else {
        return super::observe_plumbing(k, tg, recs[1]);
    };
    let fresh = super::with_query(tg, recs[1], &mut |q| k.observe_some(q, &only))?;
    Ok(merge(before, fresh, &only))
}

/// The namespaces `p`'s steps work in, make, delete or make a link in, with those the records
/// name as pending (a leftover is read whole); None when a step can change a namespace from
/// outside it (a host link deleted: a veth's end inside goes with it).
fn touched(p: &Plan, recs: &[&Record]) -> Option<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for s in &p.steps {
        match s {
            Step::DeleteLink(d) if d.place == Place::Host => return None,
            Step::CreateNamespace(n) => {
                out.insert(n.name.clone());
            }
            Step::DeleteNamespace(n) => {
                out.insert(n.name.clone());
            }
            _ => {}
        }
        out.extend(s.inside().map(str::to_string));
        out.extend(s.born_in().map(str::to_string));
    }
    for r in recs {
        for p in r.pending.values() {
            out.extend(p.namespaces.iter().cloned());
        }
    }
    Some(out)
}

/// `fresh` (the host, the files and the namespaces in `only`, read after the run) with every
/// other namespace as `before` saw it.
fn merge(before: &Observed, mut fresh: Observed, only: &BTreeSet<String>) -> Observed {
    for (name, ns) in &before.namespaces {
        if !only.contains(name) {
            fresh.namespaces.insert(name.clone(), ns.clone());
        }
    }
    for (name, why) in &before.unreachable {
        if !only.contains(name) {
            fresh.unreachable.insert(name.clone(), why.clone());
        }
    }
    fresh
}
