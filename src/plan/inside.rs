//! The executor's visits inside namespaces: each namespace a stage touches is entered once,
//! by one of a few worker threads, and everything the stage does in it goes out over one
//! connection.

use std::collections::BTreeMap;
use std::time::Instant;

use super::run::{Errors, Hints, Tally, call_each, indexes, run_steps, send};
use crate::kinds::{At, Indexes, Step};
use crate::plumbing::{Conn, netns};

/// What one visit got done: the steps made and the errors.
pub(super) type Visited = (Vec<Step>, Vec<String>);

/// Everything inside the namespaces: for each, the links born there in this run finished (a
/// pair's peer: addrgenmode, up), link settings, sysctls, then addresses, routes and
/// impairments.
pub(super) fn ns_config(
    mark: &str,
    all: &[Step],
    these: &[&Step],
    hints: &Hints,
    ok: &mut Vec<Step>,
    errs: &mut Errors,
    tally: &mut Tally,
) {
    let t = Instant::now();
    // Links born in namespaces in this run, to finish there (a pair's peer brought up).
    let mut steps: Vec<&Step> = all.iter().filter(|s| s.born_in().is_some()).collect();
    steps.extend(these.iter().copied());
    visit_each(&steps, ok, errs, &|ns, c, steps| {
        let (mut ok, mut errs) = (Vec::new(), Errors::default());
        links(c, steps, &mut ok, &mut errs);
        sysctls(c, steps, &mut ok, &mut errs);
        addresses(ns, mark, c, steps, hints, &mut ok, &mut errs);
        (ok, errs.0)
    });
    tally.add("configure in namespace", these.len(), t);
}

/// The links born here in this run, finished, and link settings.
fn links(c: &mut Conn, steps: &[&Step], ok: &mut Vec<Step>, errs: &mut Errors) {
    let mut items = Vec::new();
    for s in steps {
        match s {
            Step::SetLink(l) => match l.requests(&Indexes::new()) {
                Ok(r) => items.push((*s, r)),
                Err(e) => errs.add(e),
            },
            born if born.born_in().is_some() => items.push((*s, born.finish_inside())),
            _ => {}
        }
    }
    let mut linked = Vec::new();
    run_steps(c, items, &mut linked, errs);
    // A link born here was reported with the host stage already: not pushed to `ok` again.
    ok.extend(linked.into_iter().filter(|s| s.born_in().is_none()));
}

fn sysctls(c: &mut Conn, steps: &[&Step], ok: &mut Vec<Step>, errs: &mut Errors) {
    let place = c.place().to_string();
    let sysctl = |s: &Step| match s {
        Step::SetSysctl(k) => Some(k.apply().map_err(|e| e.context(place.clone()))),
        _ => None,
    };
    call_each(steps, sysctl, ok, errs);
}

/// Addresses, routes and impairments, then neighbours forgotten: against the indexes the run
/// knows (`hints`), with a dump of the namespace only when one is missing.
fn addresses(
    ns: &str,
    mark: &str,
    c: &mut Conn,
    steps: &[&Step],
    hints: &Hints,
    ok: &mut Vec<Step>,
    errs: &mut Errors,
) {
    if !steps.iter().any(|s| index_needed(s).is_some()) {
        return;
    }
    let known: Indexes = hints
        .ns
        .range((ns.to_string(), String::new())..)
        .take_while(|((n, _), _)| n == ns)
        .map(|((_, l), i)| (l.clone(), *i))
        .collect();
    let complete = steps
        .iter()
        .all(|s| index_needed(s).is_none_or(|i| known.contains_key(i)));
    let ix = match if complete { Ok(known) } else { indexes(c) } {
        Ok(ix) => ix,
        Err(e) => return errs.add(e),
    };
    let sent: Vec<&Step> = steps
        .iter()
        .copied()
        .filter(|s| index_needed(s).is_some() && !matches!(s, Step::ForgetNeighbours(_)))
        .collect();
    send(c, &sent, &At::new(mark, &ix), ok, errs);
    forget(c, steps, &ix, ok, errs);
}

/// The interface whose index a step of the namespace's visit needs; None: no such step.
fn index_needed(s: &Step) -> Option<&String> {
    match s {
        Step::AddAddr(a) => Some(&a.ifname),
        Step::DelAddr(a) => Some(&a.ifname),
        Step::SetRoute(r) => Some(&r.route.dev),
        Step::DelRoute(r) => Some(&r.route.dev),
        Step::ForgetNeighbours(n) => Some(&n.ifname),
        Step::SetNetem(n) => Some(&n.ifname),
        _ => None,
    }
}

/// Visits each namespace the steps work inside, once, on worker threads; `f` gets the
/// namespace's steps in order and returns the ones made and the errors.
pub(super) fn visit_each(
    steps: &[&Step],
    ok: &mut Vec<Step>,
    errs: &mut Errors,
    f: &(dyn Fn(&str, &mut Conn, &[&Step]) -> Visited + Sync),
) {
    let mut by_ns: BTreeMap<String, Vec<&Step>> = BTreeMap::new();
    for s in steps {
        let ns = s.born_in().or_else(|| s.inside());
        if let Some(ns) = ns {
            by_ns.entry(ns.to_string()).or_default().push(*s);
        }
    }
    // Namespaces where only links born in this run would be finished still need the visit.
    let names: Vec<String> = by_ns.keys().cloned().collect();
    let results = netns::visit(&names, &|name, c| {
        let mine = by_ns.get(name).map(Vec::as_slice).unwrap_or(&[]);
        let r = f(name, c, mine);
        crate::output::progress(mine.len());
        Ok(r)
    });
    for (name, r) in names.iter().zip(results) {
        match r {
            Ok(Some((made, e))) => {
                ok.extend(made);
                errs.0.extend(e);
            }
            Ok(None) => errs.0.push(format!("namespace {name} does not exist")),
            Err(e) => errs.add(e),
        }
    }
}

/// The neighbour entries of the interfaces the steps name, forgotten (after the addresses and
/// routes of the same visit).
pub(super) fn forget(
    c: &mut Conn,
    steps: &[&Step],
    ix: &Indexes,
    ok: &mut Vec<Step>,
    errs: &mut Errors,
) {
    for s in steps {
        if let Step::ForgetNeighbours(n) = s {
            match n.apply(c, ix) {
                Ok(()) => ok.push((*s).clone()),
                Err(e) => errs.add(e),
            }
        }
    }
}
