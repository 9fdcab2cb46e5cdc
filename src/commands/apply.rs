//! `nsfw apply` and `nsfw flush`: change the host under the exclusive lock.

use std::path::PathBuf;

use crate::engine::{self, Target};
use crate::plan::{Owner, Plan};
use crate::state::{self, Access};
use crate::topology::{BrNetfilter, Topology};
use crate::{firewall, output, say, warning};

use super::print::{Printing, Tally};
use super::{Fail, OK, load, report, require_root};

fn lock(wait: bool) -> Result<state::Lock, Fail> {
    state::acquire(Access::Exclusive, wait).map_err(|e| report(&e))
}

/// What a run that did not finish says: a signal stopped it at a safe point, and the same
/// command run again finishes the work; in a throwaway sandbox (`again`: None) there is
/// nothing to finish, and the real host's `nsfw apply` would build what `try` promises never
/// to build there.
fn run_error(e: &anyhow::Error, again: Option<&str>) -> Fail {
    if crate::signals::stopping() {
        match again {
            Some(again) => crate::error!("{e:#}; `{again}` finishes the work"),
            None => crate::error!(
                "{e:#}; the sandbox goes with everything it made: nothing was left on the host"
            ),
        }
        return Fail(super::ERR);
    }
    report(e)
}

/// What `apply` may take that nsfw did not make.
#[derive(Clone, Copy, Debug, Default)]
pub struct Taking {
    /// `--adopt`: what FILE describes but was built by hand, in place.
    pub adopt: bool,
    /// `--force`: resolv.conf files nsfw did not write are replaced (as
    /// `dns_policy = "replace"`).
    pub force: bool,
}

pub fn apply(file: Option<PathBuf>, wait: bool, how: Printing, take: Taking) -> Result<u8, Fail> {
    let (t, early) = super::early::load(file, Access::Exclusive)?;
    require_root("apply")?;
    super::quiet_for_json(how.json);
    let (lock, asking) = match early {
        Some((l, a)) => (l, Some(a)),
        None => (lock(wait)?, None),
    };
    let (_, plan) = converge_taking(&t, &lock, how, take, false, asking)?;
    if how.json {
        let mut v = plan.to_json(&t.name, &t.source.display().to_string());
        v["command"] = "apply".into();
        v["applied"] = true.into();
        v["partial"] = (!plan.skipped.is_empty()).into();
        output::data(format_args!("{v}\n"));
    }
    let code = partial(&t, &plan);
    crate::plumbing::threads::drop_aside(t);
    Ok(code)
}

/// Exit 4, "partially applied", when objects in the way were left out (each named), else 0.
pub(super) fn partial(t: &Topology, plan: &Plan) -> u8 {
    if plan.skipped.is_empty() {
        return OK;
    }
    for s in &plan.skipped {
        crate::error!("{s}");
    }
    crate::error!(
        "partially applied: {} object(s) of {} left as they are (above); everything else is applied",
        plan.skipped.len(),
        t.name
    );
    super::PARTIAL
}

/// Prints plan lines as they are carried out: each one, or with `--summary` their tally at
/// the end.
struct Lines {
    summary: bool,
    tally: Tally,
}

impl Lines {
    fn new(how: Printing) -> Lines {
        Lines {
            summary: how.summary,
            tally: Tally::default(),
        }
    }

    fn line(&mut self, line: &str) {
        if self.summary {
            self.tally.add(line);
        } else {
            say!("  {}", output::paint(line));
        }
    }

    fn finish(&self) {
        for l in self.tally.lines() {
            say!("  {}", output::paint(&l));
        }
    }
}

/// Makes the sandbox's host match `t` (`try`, `why`: in a throwaway sandbox), printing the
/// plan as it is carried out. With `--json`, a plan with conflicts is printed as the JSON
/// object (`"applied": false`) before the error.
pub(super) fn converge(
    t: &Topology,
    lock: &state::Lock,
    how: Printing,
) -> Result<(usize, Plan), Fail> {
    converge_taking(t, lock, how, Taking::default(), true, None)
}

/// [`converge`], taking over what `t` describes but nobody marked (`adopt`), or a resolv.conf
/// someone else wrote (`force`); `sandboxed`: in `try`'s or `why`'s throwaway sandbox.
fn converge_taking(
    t: &Topology,
    lock: &state::Lock,
    how: Printing,
    take: Taking,
    sandboxed: bool,
    asking: Option<crate::plumbing::memory::Asking>,
) -> Result<(usize, Plan), Fail> {
    let mut tg = Target {
        adopt: take.adopt,
        ..match asking {
            Some(a) => Target::asked(t, a),
            None => Target::asking(t),
        }
    };
    if take.force {
        tg.desired.resolv_replace = tg.desired.resolv.keys().cloned().collect();
    }
    let mut started = false;
    // What was left out, named even when a step then really fails (exit 1, not 4).
    let mut skipped = Vec::new();
    let before = &mut |p: &Plan, o: &engine::Observed| {
        skipped.clone_from(&p.skipped);
        for w in &p.warnings {
            warning!("{w}");
        }
        if how.json && (!p.conflicts.is_empty() || !p.unreachable.is_empty()) {
            let mut v = p.to_json(&t.name, &t.source.display().to_string());
            v["command"] = "apply".into();
            v["applied"] = false.into();
            output::data(format_args!("{v}\n"));
        }
        if t.host.br_netfilter == BrNetfilter::Auto && p.conflicts.is_empty() {
            say!("{}", firewall::br_nf_report(t, &o.nft));
        }
        if p.is_empty() && p.conflicts.is_empty() && !p.skipped.is_empty() {
            // Not "matches": what was left out (named above) does not.
            say!(
                "nothing else to do: the rest of the host matches {} ({})",
                t.name,
                t.source.display()
            );
        } else if p.is_empty() && p.conflicts.is_empty() {
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
    let mut lines = Lines::new(how);
    let again = match (sandboxed, take.adopt) {
        (true, _) => None,
        (false, true) => Some("nsfw apply --adopt"),
        (false, false) => Some("nsfw apply"),
    };
    let out = engine::converge(&tg, lock, &mut |line| lines.line(&line), before).map_err(|e| {
        for s in &skipped {
            crate::error!("{s}");
        }
        run_error(&e, again)
    })?;
    if started {
        lines.finish();
        say!("done: {} change(s)", out.changes);
        say!("{}", out.plan.summary());
    }
    crate::plumbing::threads::drop_aside(std::mem::take(&mut tg.desired));
    Ok((out.changes, out.plan))
}

/// What `flush` removes.
pub enum FlushWhat {
    File(Option<PathBuf>),
    Name(String),
    All,
}

pub fn flush(what: FlushWhat, wait: bool, how: Printing) -> Result<u8, Fail> {
    let (name, file) = match what {
        FlushWhat::All => (None, None),
        FlushWhat::File(f) => {
            let t = load(f)?;
            (Some(t.name), Some(t.source.display().to_string()))
        }
        FlushWhat::Name(n) => {
            if let Err(why) = crate::topology::check_topology_name(&n) {
                crate::error!("--name {n:?}: a topology name {why}");
                return Err(Fail(super::ERR));
            }
            (Some(n), None)
        }
    };
    require_root("flush")?;
    super::quiet_for_json(how.json);
    let lock = lock(wait)?;
    let who = match &name {
        Some(n) => Owner::Topology(n),
        None => Owner::All,
    };
    let tg = Target::flush(who);
    let mut started = false;
    let before = &mut |p: &Plan, _: &engine::Observed| {
        for w in &p.warnings {
            warning!("{w}");
        }
        if p.is_empty() {
            say!("nothing to flush");
        } else if p.conflicts.is_empty() {
            say!("flushing:");
            started = true;
        }
    };
    let again = match &name {
        Some(n) => format!("nsfw flush --name {n}"),
        None => "nsfw flush --all".to_string(),
    };
    let mut lines = Lines::new(how);
    let out = engine::converge(&tg, &lock, &mut |line| lines.line(&line), before)
        .map_err(|e| run_error(&e, Some(&again)))?;
    if started {
        lines.finish();
        say!("done: {} change(s)", out.changes);
    }
    if how.json {
        let mut v = out.plan.to_json(
            name.as_deref().unwrap_or("*"),
            file.as_deref().unwrap_or(""),
        );
        v["command"] = "flush".into();
        v["applied"] = true.into();
        v["topology"] = name.map_or(serde_json::Value::Null, Into::into);
        v["file"] = file.map_or(serde_json::Value::Null, Into::into);
        output::data(format_args!("{v}\n"));
    }
    Ok(OK)
}
