//! Carrying out a plan's plumbing steps, a stage at a time: removals, namespaces, the host's
//! links, one visit per namespace for everything inside it, then what finishes on the host.
//! Within a stage, the host's requests go out many to a send over one connection, and the
//! namespaces are visited by a few threads at once. Every error names its object; a stage with
//! errors ends the run (the next apply plans from what is there).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

use super::inside::{ns_config, visit_each};
use super::run::{
    Errors, Hints, Tally, addr_route_req, index_of, indexes, run_steps, set_link_req,
};
use super::step::{Stage, Step};
use crate::plumbing::{Conn, Req, files, msgs, netns, observe, sysctl};
use crate::resources::Place;

/// What a run got done: the steps made, in plan order.
#[derive(Debug, Default)]
pub(crate) struct Executed {
    pub done: Vec<Step>,
}

/// Executes the steps (ordered by stage), reporting each one through `done` once made.
pub(crate) fn execute(
    steps: &[Step],
    mark: &str,
    hints: &Hints,
    done: &mut dyn FnMut(&Step),
    after_teardown: &mut dyn FnMut() -> Result<()>,
) -> Result<Executed> {
    let mut hints = hints.clone();
    let mut tally = Tally::default();
    let mut ex = Executed::default();
    let mut host = Conn::open("host")?;
    let mut result = Ok(());
    for stage in [
        Stage::Teardown,
        Stage::Namespaces,
        Stage::HostBuild,
        Stage::NsConfig,
        Stage::HostFinish,
    ] {
        crate::signals::check()?;
        if stage == Stage::Namespaces {
            after_teardown()?;
        }
        let these: Vec<&Step> = steps.iter().filter(|s| s.stage() == stage).collect();
        if these.is_empty() {
            continue;
        }
        let mut ok: Vec<Step> = Vec::new();
        let mut errs = Errors::default();
        // Counted in steps: each visit adds its namespace's, each batch of requests its own.
        let ticker = crate::output::Ticker::start(stage.doing(), these.len());
        match stage {
            Stage::Teardown => teardown(&mut host, &these, &mut ok, &mut errs, &mut tally),
            Stage::Namespaces => namespaces(mark, &these, &mut ok, &mut errs, &mut tally),
            Stage::HostBuild => {
                host_build(&mut host, mark, &these, &mut ok, &mut errs, &mut tally);
                learn_peers(&mut host, &these, &mut hints, &mut errs);
            }
            Stage::NsConfig => ns_config(steps, &these, &hints, &mut ok, &mut errs, &mut tally),
            Stage::HostFinish => host_finish(&mut host, &these, &mut ok, &mut errs, &mut tally),
        }
        if errs.0.is_empty() {
            // Steps done without a count of their own (sysctls, files) are done too.
            crate::output::progress(these.len());
        }
        // The progress line is cleared before the stage's plan lines are printed.
        ticker.finish();
        for s in &ok {
            done(s);
        }
        ex.done.extend(ok);
        result = errs.into_result();
        if result.is_err() {
            break;
        }
    }
    tally.report();
    result.map(|()| ex)
}

/// The namespace-side indexes of the pairs made in this run, from their host ends.
fn learn_peers(host: &mut Conn, these: &[&Step], hints: &mut Hints, errs: &mut Errors) {
    if !these.iter().any(|s| matches!(s, Step::CreateVeth { .. })) {
        return;
    }
    let links = match observe::links(host) {
        Ok(l) => l,
        Err(e) => return errs.add(e),
    };
    let peer: BTreeMap<&str, u32> = links
        .iter()
        .filter_map(|l| l.peer_index.map(|p| (l.name.as_str(), p)))
        .collect();
    for s in these {
        if let Step::CreateVeth {
            ns,
            host,
            peer: name,
            ..
        } = s
            && let Some(p) = peer.get(host.as_str())
        {
            hints.insert((ns.clone(), name.clone()), *p);
        }
    }
}

fn teardown(
    host: &mut Conn,
    these: &[&Step],
    ok: &mut Vec<Step>,
    errs: &mut Errors,
    tally: &mut Tally,
) {
    let t = Instant::now();
    let host_items: Vec<(&Step, Vec<Req>)> = these
        .iter()
        .filter_map(|s| match s {
            Step::DeleteLink {
                place: Place::Host,
                name,
                index,
                ..
            } => Some((*s, vec![msgs::del_link(name, *index)])),
            Step::SetLink {
                place: Place::Host,
                name,
                ..
            } => Some((
                *s,
                vec![msgs::set_link(name, None, None, false, Some(None), false)],
            )),
            _ => None,
        })
        .collect();
    let n = host_items.len();
    run_steps(host, host_items, ok, errs);
    tally.add("delete link", n, t);
    let t = Instant::now();
    let ns_deletes: Vec<&Step> = these
        .iter()
        .copied()
        .filter(|s| {
            matches!(
                s,
                Step::DeleteLink {
                    place: Place::Ns(_),
                    ..
                }
            )
        })
        .collect();
    visit_each(&ns_deletes, ok, errs, &|_, c, steps| {
        let items = steps
            .iter()
            .filter_map(|s| match s {
                Step::DeleteLink { name, index, .. } => {
                    Some((*s, vec![msgs::del_link(name, *index)]))
                }
                _ => None,
            })
            .collect();
        let (mut ok, mut errs) = (Vec::new(), Errors::default());
        run_steps(c, items, &mut ok, &mut errs);
        (ok, errs.0)
    });
    tally.add("delete link in namespace", ns_deletes.len(), t);
    let t = Instant::now();
    let mut takes: Vec<&str> = Vec::new();
    let mut n = 0;
    for s in these {
        if let Step::DeleteNamespace {
            name, takes: tk, ..
        } = s
        {
            n += 1;
            match netns::delete(name) {
                Ok(()) => {
                    takes.extend(tk.iter().map(String::as_str));
                    ok.push((*s).clone());
                }
                Err(e) => errs.add(e),
            }
        }
    }
    if let Err(e) = await_gone(host, &takes) {
        errs.add(e);
    }
    tally.add("delete namespace", n, t);
    for s in these {
        if let Step::RemoveResolv { ns } = s {
            match files::remove_resolv(ns) {
                Ok(()) => ok.push((*s).clone()),
                Err(e) => errs.add(e),
            }
        }
    }
}

/// Waits until the host links `names` are gone (the kernel tears a deleted namespace's veth
/// pairs down asynchronously, in one batch); deletes any still there after 5 s.
fn await_gone(host: &mut Conn, names: &[&str]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ix = indexes(host)?;
        let left: Vec<(&str, u32)> = names
            .iter()
            .filter_map(|n| ix.get(*n).map(|i| (*n, *i)))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let reqs: Vec<Req> = left.iter().map(|(n, i)| msgs::del_link(n, *i)).collect();
            return host.run_all(&reqs);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn namespaces(
    mark: &str,
    these: &[&Step],
    ok: &mut Vec<Step>,
    errs: &mut Errors,
    tally: &mut Tally,
) {
    let t = Instant::now();
    let creates: Vec<&Step> = these
        .iter()
        .copied()
        .filter(|s| matches!(s, Step::CreateNamespace { .. }))
        .collect();
    let names: Vec<String> = creates
        .iter()
        .filter_map(|s| match s {
            Step::CreateNamespace { name } => Some(name.clone()),
            _ => None,
        })
        .collect();
    let lo = msgs::mark_lo(mark);
    let each = |_: &str, c: &mut Conn| {
        let r = c.run_all(std::slice::from_ref(&lo));
        crate::output::progress(1);
        r
    };
    for (r, s) in netns::create_many(&names, &each).into_iter().zip(&creates) {
        match r {
            Ok(()) => ok.push((*s).clone()),
            Err(e) => errs.add(e),
        }
    }
    tally.add("create namespace", creates.len(), t);
    let marks: Vec<&Step> = these
        .iter()
        .copied()
        .filter(|s| matches!(s, Step::MarkNamespace { .. }))
        .collect();
    visit_each(
        &marks,
        ok,
        errs,
        &|_, c, steps| match c.run_all(&[msgs::mark_lo(mark)]) {
            Ok(()) => (steps.iter().map(|s| (*s).clone()).collect(), Vec::new()),
            Err(e) => (Vec::new(), vec![format!("{e:#}")]),
        },
    );
}

fn host_build(
    host: &mut Conn,
    mark: &str,
    these: &[&Step],
    ok: &mut Vec<Step>,
    errs: &mut Errors,
    tally: &mut Tally,
) {
    let t = Instant::now();
    let bridges: Vec<(&Step, Vec<Req>)> = these
        .iter()
        .filter_map(|s| match s {
            Step::CreateBridge {
                name,
                mtu,
                mac,
                nf_call,
            } => Some((
                *s,
                // No kernel-made link-local: it would sit tentative (unusable for neighbour
                // discovery of forwarded packets) for a second of DAD; an IPv6 segment gets
                // its link-local address from the plan, without DAD. Set before any port
                // gives the bridge a carrier, which is when the kernel would make one.
                vec![
                    msgs::create_bridge(name, *mtu, *mac, *nf_call),
                    msgs::no_link_local(name),
                    msgs::mark(name, mark),
                ],
            )),
            _ => None,
        })
        .collect();
    let n = bridges.len();
    run_steps(host, bridges, ok, errs);
    tally.add("create bridge", n, t);
    let ix = match indexes(host) {
        Ok(ix) => ix,
        Err(e) => return errs.add(e),
    };
    let t = Instant::now();
    let mut items = Vec::new();
    for s in these {
        if let Step::SetLink { name, attrs, .. } = s {
            match set_link_req(name, attrs, &ix) {
                Ok(r) => items.push((*s, r)),
                Err(e) => errs.add(e.context(format!("while carrying out: {s}"))),
            }
        }
    }
    let n = items.len();
    run_steps(host, items, ok, errs);
    tally.add("set link", n, t);
    let t = Instant::now();
    let veths: Vec<&Step> = these
        .iter()
        .copied()
        .filter(|s| matches!(s, Step::CreateVeth { .. }))
        .collect();
    // A few hundred namespace handles open at a time at most, and never more than half of
    // what the file limit leaves.
    for chunk in veths.chunks(fd_budget()) {
        let mut items = Vec::new();
        let mut fds = Vec::new();
        for s in chunk {
            let Step::CreateVeth {
                ns,
                host: h,
                peer,
                bridge,
                mtu,
                mac,
                host_mac,
                no_link_local,
                hairpin,
            } = s
            else {
                continue;
            };
            let made = index_of(&ix, bridge).and_then(|m| {
                let fd =
                    netns::open_ns(ns)?.ok_or_else(|| anyhow!("namespace {ns} does not exist"))?;
                let mut reqs = vec![
                    msgs::create_veth(h, Some(m), *mtu, *host_mac, peer, &fd, *mac),
                    msgs::mark(h, mark),
                ];
                if *no_link_local {
                    reqs.push(msgs::no_link_local(h));
                }
                reqs.push(msgs::up(h));
                if *hairpin {
                    // A port flag: set once the link is a port of its bridge.
                    reqs.push(msgs::hairpin(h, true));
                }
                fds.push(fd);
                Ok(reqs)
            });
            match made {
                Ok(reqs) => items.push((*s, reqs)),
                Err(e) => errs.add(e.context(format!("while carrying out: {s}"))),
            }
        }
        run_steps(host, items, ok, errs);
        drop(fds);
    }
    tally.add("create veth", veths.len(), t);
    let t = Instant::now();
    let mut n = 0;
    for s in these {
        if let Step::SetSysctl { key, new, .. } = s {
            n += 1;
            match sysctl::write(key, new) {
                Ok(()) => ok.push((*s).clone()),
                Err(e) => errs.add(e),
            }
        }
    }
    tally.add("set sysctl", n, t);
    let ix = if veths.is_empty() {
        Ok(ix)
    } else {
        indexes(host)
    };
    let ix = match ix {
        Ok(ix) => ix,
        Err(e) => return errs.add(e),
    };
    host_addr_routes(host, these, &ix, ok, errs, tally);
}

/// How many namespace handles may be open at once: half the open-file limit (less what the
/// rest of the run holds), between 4 and 256.
fn fd_budget() -> usize {
    let soft = crate::plumbing::fd_limit().map_or(64, |n| usize::try_from(n).unwrap_or(usize::MAX));
    (soft.saturating_sub(48) / 2).clamp(4, 256)
}

fn host_addr_routes(
    host: &mut Conn,
    these: &[&Step],
    ix: &BTreeMap<String, u32>,
    ok: &mut Vec<Step>,
    errs: &mut Errors,
    tally: &mut Tally,
) {
    let t = Instant::now();
    let mut items = Vec::new();
    for s in these {
        match addr_route_req(s, ix) {
            Ok(Some(r)) => items.push((*s, vec![r])),
            Ok(None) => {}
            Err(e) => errs.add(e.context(format!("while carrying out: {s}"))),
        }
    }
    let n = items.len();
    run_steps(host, items, ok, errs);
    tally.add("host address or route", n, t);
}

fn host_finish(
    host: &mut Conn,
    these: &[&Step],
    ok: &mut Vec<Step>,
    errs: &mut Errors,
    tally: &mut Tally,
) {
    match indexes(host) {
        Ok(ix) => {
            host_addr_routes(host, these, &ix, ok, errs, tally);
            super::inside::forget(host, these, &ix, ok, errs);
        }
        Err(e) => errs.add(e),
    }
    let t = Instant::now();
    let mut n = 0;
    for s in these {
        if let Step::WriteResolv { ns, content } = s {
            n += 1;
            match files::write_resolv(ns, content) {
                Ok(()) => ok.push((*s).clone()),
                Err(e) => errs.add(e),
            }
        }
    }
    tally.add("write resolv.conf", n, t);
}
