//! What every stage of the executor shares, on the host and inside a namespace: the timing
//! tally, the errors gathered, link indexes, and steps lowered into their requests (each
//! kind's own, `kinds`) and sent many to a `sendmsg`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

use crate::kinds::{At, Indexes, Step};
use crate::plumbing::{Conn, Req, links};

/// Time per kind of step, printed with `-v` (or NSFW_TIMING).
#[derive(Default)]
pub(super) struct Tally(BTreeMap<&'static str, (usize, Duration)>);

impl Tally {
    pub(super) fn add(&mut self, what: &'static str, n: usize, since: Instant) {
        if n == 0 {
            return;
        }
        let e = self.0.entry(what).or_default();
        e.0 += n;
        e.1 += since.elapsed();
    }

    pub(super) fn report(&self) {
        for (k, (n, d)) in &self.0 {
            crate::detail!("timing: {n} × {k}: {d:?}");
        }
    }
}

/// Errors of one stage, gathered so that all of them are reported.
#[derive(Default)]
pub(super) struct Errors(pub(super) Vec<String>);

impl Errors {
    pub(super) fn add(&mut self, e: anyhow::Error) {
        let msg = format!("{e:#}");
        if !msg.is_empty() && !self.0.contains(&msg) {
            self.0.push(msg);
        }
    }

    pub(super) fn into_result(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(anyhow!("{}", self.0.join("\nerror: ")))
        }
    }
}

/// Link indexes by name, in the namespace `c` is bound to.
pub(super) fn indexes(c: &mut Conn) -> Result<Indexes> {
    Ok(links::links(c)?
        .into_iter()
        .map(|l| (l.name, l.index))
        .collect())
}

/// Link indexes the executor starts from, as the run's observation saw them: the host's by
/// name, and those inside namespaces by (namespace, interface). It learns those of the links
/// it makes as it makes them (a veth's IFLA_LINK is its peer's index).
#[derive(Clone, Debug, Default)]
pub(crate) struct Hints {
    pub host: Indexes,
    pub ns: BTreeMap<(String, String), u32>,
}

impl Hints {
    pub(crate) fn of(o: &crate::plumbing::Observed) -> Hints {
        Hints {
            host: o
                .host
                .links
                .iter()
                .map(|l| (l.name.clone(), l.index))
                .collect(),
            ns: o.ns_indexes(),
        }
    }
}

/// Carries out, one by one, the steps `call` does itself (a sysctl or a file written rather
/// than a netlink request: it returns None for the others); returns how many there were.
pub(super) fn call_each(
    steps: &[&Step],
    call: impl Fn(&Step) -> Option<Result<()>>,
    ok: &mut Vec<Step>,
    errs: &mut Errors,
) -> usize {
    let mut n = 0;
    for s in steps {
        if let Some(r) = call(s) {
            n += 1;
            match r {
                Ok(()) => ok.push((*s).clone()),
                Err(e) => errs.add(e),
            }
        }
    }
    n
}

/// The steps `pick` selects, in order.
pub(super) fn pick<'s>(steps: &[&'s Step], pick: fn(&Step) -> bool) -> Vec<&'s Step> {
    steps.iter().copied().filter(|s| pick(s)).collect()
}

/// Sends `steps`, each lowered into its requests against `at`, over `c`; the steps whose
/// requests all succeed go to `ok`. A step that cannot be lowered (a link it names is not
/// there) is an error of its own.
pub(super) fn send(c: &mut Conn, steps: &[&Step], at: &At, ok: &mut Vec<Step>, errs: &mut Errors) {
    let mut items = Vec::new();
    for s in steps {
        match s.requests(at) {
            Some(Ok(r)) => items.push((*s, r)),
            Some(Err(e)) => errs.add(e.context(format!("while carrying out: {s}"))),
            None => {}
        }
    }
    run_steps(c, items, ok, errs);
}

/// Runs requests built from steps; `ok` gets the steps whose requests all succeeded.
pub(super) fn run_steps(
    c: &mut Conn,
    items: Vec<(&Step, Vec<Req>)>,
    ok: &mut Vec<Step>,
    errs: &mut Errors,
) {
    let mut reqs = Vec::new();
    let mut owner = Vec::new();
    for (i, (_, rs)) in items.iter().enumerate() {
        owner.extend(std::iter::repeat_n(i, rs.len()));
    }
    let mut failed = vec![false; items.len()];
    for (_, rs) in items.iter() {
        reqs.extend(rs.iter().cloned());
    }
    // In chunks, so that the progress line moves on a host side of thousands of links; each
    // chunk still goes many requests to a send.
    const CHUNK: usize = 1024;
    let mut at = 0;
    while at < reqs.len() {
        let end = (at + CHUNK).min(reqs.len());
        for (k, r) in c.run(&reqs[at..end]).into_iter().enumerate() {
            if let Err(e) = r {
                failed[owner[at + k]] = true;
                errs.add(e);
            }
        }
        // Steps whose last request is in this chunk.
        let steps_done = if end == reqs.len() {
            items.len() - owner[at]
        } else {
            owner[end] - owner[at]
        };
        crate::output::progress(steps_done);
        at = end;
    }
    for (i, (s, _)) in items.into_iter().enumerate() {
        if !failed[i] {
            ok.push(s.clone());
        }
    }
}
