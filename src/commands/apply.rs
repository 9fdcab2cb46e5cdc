//! `nsfw apply` and `nsfw flush`: change the host under the exclusive lock.

use std::path::PathBuf;

use crate::engine::{self, Target};
use crate::plan::Owner;
use crate::state::{self, Access};
use crate::topology::{BrNetfilter, Topology};
use crate::{firewall, say, warning};

use super::{Fail, OK, load, report, require_root};

fn lock(wait: bool) -> Result<state::Lock, Fail> {
    state::acquire(Access::Exclusive, wait).map_err(|e| report(&e))
}

pub fn apply(file: Option<PathBuf>, wait: bool, json: bool) -> Result<u8, Fail> {
    let t = load(file)?;
    require_root("apply")?;
    super::quiet_for_json(json);
    let lock = lock(wait)?;
    let (_, plan) = converge(&t, &lock)?;
    if json {
        let mut v = plan.to_json(&t.name, &t.source.display().to_string());
        v["command"] = "apply".into();
        v["applied"] = true.into();
        crate::output::data(format_args!("{v}\n"));
    }
    Ok(OK)
}

/// Makes the host match `t`, printing the plan as it is carried out.
pub(super) fn converge(
    t: &Topology,
    lock: &state::Lock,
) -> Result<(usize, crate::plan::Plan), Fail> {
    let tg = Target::apply(t);
    let mut started = false;
    let before = &mut |p: &crate::plan::Plan, o: &engine::Observed| {
        for w in &p.warnings {
            warning!("{w}");
        }
        if t.host.br_netfilter == BrNetfilter::Auto && p.conflicts.is_empty() {
            say!("{}", firewall::br_nf_report(t, &o.nft));
        }
        if p.is_empty() {
            say!(
                "nothing to do: the host already matches {} ({})",
                t.name,
                t.source.display()
            );
        } else if p.conflicts.is_empty() {
            say!("applying {} ({}):", t.name, t.source.display());
            started = true;
        }
    };
    let out = engine::converge(
        &tg,
        lock,
        &mut |line| say!("  {}", crate::output::paint(&line)),
        before,
    )
    .map_err(|e| report(&e))?;
    if started {
        say!("done: {} change(s)", out.changes);
        say!("{}", out.plan.summary());
    }
    Ok((out.changes, out.plan))
}

/// What `flush` removes.
pub enum FlushWhat {
    File(Option<PathBuf>),
    Name(String),
    All,
}

pub fn flush(what: FlushWhat, wait: bool) -> Result<u8, Fail> {
    let name = match what {
        FlushWhat::All => None,
        FlushWhat::File(f) => Some(load(f)?.name),
        FlushWhat::Name(n) => {
            if let Err(why) = crate::topology::check_topology_name(&n) {
                crate::error!("--name {n:?}: a topology name {why}");
                return Err(Fail(super::ERR));
            }
            Some(n)
        }
    };
    require_root("flush")?;
    let lock = lock(wait)?;
    let who = match &name {
        Some(n) => Owner::Topology(n),
        None => Owner::All,
    };
    let tg = Target::flush(who);
    let mut started = false;
    let before = &mut |p: &crate::plan::Plan, _: &engine::Observed| {
        for w in &p.warnings {
            warning!("{w}");
        }
        if p.is_empty() {
            say!("nothing to flush");
        } else {
            say!("flushing:");
            started = true;
        }
    };
    let out = engine::converge(
        &tg,
        &lock,
        &mut |line| say!("  {}", crate::output::paint(&line)),
        before,
    )
    .map_err(|e| report(&e))?;
    if started {
        say!("done: {} change(s)", out.changes);
    }
    Ok(OK)
}
