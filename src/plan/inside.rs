//! The executor's visits inside namespaces: each namespace a stage touches is entered once,
//! by one of a few worker threads, and everything the stage does in it goes out over one
//! connection.

use std::collections::BTreeMap;
use std::time::Instant;

use super::run::{Errors, Hints, Tally, addr_route_req, indexes, run_steps, set_link_req};
use super::step::Step;
use crate::plumbing::{Conn, msgs, netns, sysctl};

/// What one visit got done: the steps made and the errors.
pub(super) type Visited = (Vec<Step>, Vec<String>);

/// Everything inside the namespaces: for each, the namespace end of pairs made in this run
/// (addrgenmode, up), link settings, sysctls, then addresses and routes.
pub(super) fn ns_config(
    all: &[Step],
    these: &[&Step],
    hints: &Hints,
    ok: &mut Vec<Step>,
    errs: &mut Errors,
    tally: &mut Tally,
) {
    let t = Instant::now();
    // Pairs made in this run whose namespace end still needs bringing up.
    let made: Vec<&Step> = all
        .iter()
        .filter(|s| matches!(s, Step::CreateVeth { .. }))
        .collect();
    let mut steps: Vec<&Step> = made.clone();
    steps.extend(these.iter().copied());
    let n = these.len();
    visit_each(&steps, ok, errs, &|ns, c, steps| {
        let (mut ok, mut errs) = (Vec::new(), Errors::default());
        let mut links = Vec::new();
        for s in steps {
            match s {
                Step::CreateVeth {
                    peer,
                    no_link_local,
                    ..
                } => {
                    let mut r = Vec::new();
                    if *no_link_local {
                        r.push(msgs::no_link_local(peer));
                    }
                    r.push(msgs::up(peer));
                    // Reported with the host stage already: not pushed to `ok` again.
                    links.push((*s, r));
                }
                Step::SetLink { name, attrs, .. } => {
                    match set_link_req(name, attrs, &BTreeMap::new()) {
                        Ok(r) => links.push((*s, r)),
                        Err(e) => errs.add(e),
                    }
                }
                _ => {}
            }
        }
        let mut linked = Vec::new();
        run_steps(c, links, &mut linked, &mut errs);
        ok.extend(
            linked
                .into_iter()
                .filter(|s| !matches!(s, Step::CreateVeth { .. })),
        );
        for s in steps {
            if let Step::SetSysctl { key, new, .. } = s {
                match sysctl::write(key, new) {
                    Ok(()) => ok.push((*s).clone()),
                    Err(e) => errs.add(e.context(c.place().to_string())),
                }
            }
        }
        let needs_ix = steps.iter().any(|s| {
            matches!(
                s,
                Step::AddAddr { .. }
                    | Step::DelAddr { .. }
                    | Step::SetRoute { .. }
                    | Step::DelRoute { .. }
                    | Step::ForgetNeighbours { .. }
                    | Step::SetNetem { .. }
            )
        });
        if needs_ix {
            // The indexes the run knows; a dump of the namespace only when one is missing.
            let known: BTreeMap<String, u32> = hints
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|((_, l), i)| (l.clone(), *i))
                .collect();
            let complete = steps.iter().all(|s| match s {
                Step::AddAddr { ifname, .. } | Step::DelAddr { ifname, .. } => {
                    known.contains_key(ifname)
                }
                Step::SetRoute { route, .. } | Step::DelRoute { route, .. } => {
                    known.contains_key(&route.dev)
                }
                Step::ForgetNeighbours { ifname, .. } | Step::SetNetem { ifname, .. } => {
                    known.contains_key(ifname)
                }
                _ => true,
            });
            let ix = if complete { Ok(known) } else { indexes(c) };
            match ix {
                Ok(ix) => {
                    let mut items = Vec::new();
                    for s in steps {
                        if let Step::SetNetem { ifname, netem, .. } = s {
                            match ix.get(ifname) {
                                Some(i) => items.push((
                                    *s,
                                    vec![crate::plumbing::qdisc::converge(ifname, *i, netem)],
                                )),
                                None => errs
                                    .add(anyhow::anyhow!("{}: no interface {ifname}", c.place())),
                            }
                            continue;
                        }
                        match addr_route_req(s, &ix) {
                            Ok(Some(r)) => items.push((*s, vec![r])),
                            Ok(None) => {}
                            Err(e) => errs.add(e.context(format!("while carrying out: {s}"))),
                        }
                    }
                    run_steps(c, items, &mut ok, &mut errs);
                    forget(c, steps, &ix, &mut ok, &mut errs);
                }
                Err(e) => errs.add(e),
            }
        }
        (ok, errs.0)
    });
    tally.add("configure in namespace", n, t);
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
        let ns = match s {
            Step::CreateVeth { ns, .. } => Some(ns.as_str()),
            other => other.inside(),
        };
        if let Some(ns) = ns {
            by_ns.entry(ns.to_string()).or_default().push(*s);
        }
    }
    // Namespaces where only pairs of this run would be brought up still need the visit.
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
    ix: &BTreeMap<String, u32>,
    ok: &mut Vec<Step>,
    errs: &mut Errors,
) {
    for s in steps {
        if let Step::ForgetNeighbours { ifname, .. } = s {
            let r = ix
                .get(ifname)
                .ok_or_else(|| anyhow::anyhow!("no interface {ifname}"))
                .and_then(|i| crate::plumbing::neigh::forget(c, *i, ifname));
            match r {
                Ok(()) => ok.push((*s).clone()),
                Err(e) => errs.add(e),
            }
        }
    }
}
