//! `nsfw diff` and `nsfw apply --dry-run`: the plan apply would carry out, read from the
//! kernel's own state, under the shared lock (never while a change runs).

use std::path::PathBuf;

use crate::engine::{self, Target};
use crate::output;
use crate::plan::Plan;
use crate::state::{self, Access, Record};
use crate::topology::Topology;
use crate::{error, say, warning};
use nft::socket::NftSocket;

use super::print::{Printing, Tally};
use super::{ERR, Fail, OK, PENDING, read_error, report};

/// The plan for `t`, its warnings printed; its conflicts printed as errors (`Err` after
/// `json` printed the plan).
/// `early`: the lock and the ask, taken before the file was parsed (`super::early`).
fn read_plan(t: &Topology, wait: bool, cmd: &str, adopt: bool, early: Early) -> Result<Plan, Fail> {
    let (lock, tg) = match early {
        Some((lock, a)) => (lock, Target::asked(t, a)),
        None => (
            state::acquire(Access::Shared, wait).map_err(|e| report(&e))?,
            Target::asking(t),
        ),
    };
    let mut tg = Target { adopt, ..tg };
    let rec = Record::load(lock.dir());
    let p = NftSocket::open()
        .and_then(|mut nft| engine::observe(&tg, &rec, &mut nft))
        .and_then(|o| {
            let p = engine::plan(&tg, &o, &rec);
            crate::plumbing::threads::drop_aside(o);
            p
        })
        .map_err(|e| read_error(cmd, &e))?;
    drop(lock);
    crate::plumbing::threads::drop_aside(std::mem::take(&mut tg.desired));
    Ok(p)
}

/// Prints the plan's warnings and errors; `Err` when it has conflicts or namespaces nsfw
/// could not look into.
fn problems(p: &Plan) -> Result<(), Fail> {
    for w in &p.warnings {
        warning!("{w}");
    }
    // Objects apply would leave out: the host differs from the file in them.
    for s in &p.skipped {
        error!("{s}");
    }
    if !p.conflicts.is_empty() || !p.unreachable.is_empty() {
        for c in p.conflicts.iter().chain(&p.unreachable) {
            error!("{c}");
        }
        return Err(Fail(ERR));
    }
    Ok(())
}

/// Every line of the plan, for a summary.
fn tally(p: &Plan) -> Tally {
    let mut t = Tally::default();
    for s in &p.steps {
        t.add(&s.to_string());
    }
    for l in &p.nft.lines {
        t.add(&l.to_string());
    }
    t
}

type Early = Option<(state::Lock, crate::plumbing::memory::Asking)>;

pub fn diff(file: Option<PathBuf>, how: Printing, wait: bool, adopt: bool) -> Result<u8, Fail> {
    let (t, early) = super::early::load(file, Access::Shared)?;
    let p = read_plan(&t, wait, "diff", adopt, early)?;
    if how.json {
        output::data(format_args!(
            "{}\n",
            p.to_json(&t.name, &t.source.display().to_string())
        ));
    }
    problems(&p)?;
    if how.json {
        // Already printed.
    } else if p.in_sync() {
        say!(
            "in sync: the host matches {} ({})",
            t.name,
            t.source.display()
        );
    } else if p.is_empty() && p.skipped.is_empty() {
        say!(
            "not known to be in sync: firewalld could not be asked whether the interfaces are in its zone (above)"
        );
    } else if p.is_empty() {
        say!(
            "not in sync: {} object(s) in the way (above), which `nsfw apply` leaves as they are",
            p.skipped.len()
        );
    } else {
        if how.summary {
            for line in tally(&p).lines() {
                output::data(format_args!("{}\n", output::paint(&line)));
            }
        } else {
            for line in p.to_string().lines() {
                output::data(format_args!("{}\n", output::paint(line)));
            }
        }
        say!("{}", p.summary());
        say!(
            "{} change(s) pending: `nsfw apply` carries them out",
            p.len()
        );
    }
    Ok(if p.in_sync() { OK } else { PENDING })
}

/// `nsfw apply --dry-run`: diff's plan, printed as apply prints what it carries out; nothing
/// changes, and the exit status is apply's (0 unless an error).
pub fn dry_run(file: Option<PathBuf>, how: Printing, wait: bool, adopt: bool) -> Result<u8, Fail> {
    let (t, early) = super::early::load(file, Access::Shared)?;
    super::quiet_for_json(how.json);
    let p = read_plan(&t, wait, "apply --dry-run", adopt, early)?;
    if how.json {
        let mut v = p.to_json(&t.name, &t.source.display().to_string());
        v["command"] = "apply".into();
        v["applied"] = false.into();
        v["dry_run"] = true.into();
        output::data(format_args!("{v}\n"));
    }
    problems(&p)?;
    if p.is_empty() {
        say!(
            "nothing to do: the host already matches {} ({})",
            t.name,
            t.source.display()
        );
        return Ok(OK);
    }
    say!(
        "would apply {} ({}), changing nothing (--dry-run):",
        t.name,
        t.source.display()
    );
    if how.summary {
        for l in tally(&p).lines() {
            say!("  {}", output::paint(&l));
        }
    } else {
        for s in &p.steps {
            say!("  {}", output::paint(&s.to_string()));
        }
        for l in &p.nft.lines {
            say!("  {}", output::paint(&l.to_string()));
        }
    }
    say!("would make {} change(s)", p.len());
    say!("{}", p.summary());
    Ok(OK)
}
