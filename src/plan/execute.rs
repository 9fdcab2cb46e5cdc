//! Carrying out a plan's plumbing steps, a stage at a time: removals, namespaces, the host's
//! links, one visit per namespace for everything inside it, then what finishes on the host.
//! Within a stage, the host's requests go out many to a send over one connection, and the
//! namespaces are visited by a few threads at once. Every error names its object; a stage with
//! errors ends the run (the next apply plans from what is there). Each step becomes requests
//! as its kind says (`kinds`); the executor decides only when and over which connection.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::announcing::announce_inside;
use super::build::{host_addr_routes, host_build};
use super::hostix::HostIx;
use super::inside::{forget, ns_config, visit_each};
use super::run::{Errors, Hints, Tally, call_each, pick, send};
use crate::kinds::{At, Indexes, Stage, Step, namespace};
use crate::plumbing::{Conn, Link, Req, links, msgs, netns, nsid};
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
    let mut hix = HostIx::new(std::mem::take(&mut hints.host));
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
        let these: Vec<&Step> = steps.iter().filter(|s| stage_of(s) == stage).collect();
        if these.is_empty() {
            continue;
        }
        let mut ok: Vec<Step> = Vec::new();
        let mut errs = Errors::default();
        // Counted in steps: each visit adds its namespace's, each batch of requests its own.
        let ticker = crate::output::Ticker::start(stage.doing(), these.len());
        let (o, e, t) = (&mut ok, &mut errs, &mut tally);
        match stage {
            Stage::Teardown => teardown(&mut host, &mut hix, mark, &these, o, e, t),
            Stage::Namespaces => namespaces(mark, &these, o, e, t),
            Stage::HostBuild => {
                if let Err(x) = await_names(&mut host, &these) {
                    e.add(x);
                }
                let ends = host_build(&mut host, &mut hix, mark, &these, o, e, t);
                learn_peers(&these, &ends, &mut hints);
            }
            Stage::NsConfig => ns_config(mark, steps, &these, &hints, o, e, t),
            Stage::HostFinish => host_finish(&mut host, hix.get(), mark, &these, o, e, t),
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

/// The stage a step is carried out in: its kind's, but a host sysctl put back to its value
/// from before nsfw goes first, with the teardown. Nothing left needs the value nsfw set, and
/// written after namespaces are deleted it would wait for the kernel to tear them down
/// (forwarding's handler takes the RTNL lock, which cleanup_net holds while it frees them).
fn stage_of(s: &Step) -> Stage {
    match s {
        Step::SetSysctl(k) if k.restore && s.inside().is_none() => Stage::Teardown,
        _ => s.stage(),
    }
}

/// The namespace-side indexes of the pairs made in this run, from their host ends `ends`
/// (and those of macvlan children made in this run forgotten).
fn learn_peers(these: &[&Step], ends: &[Link], hints: &mut Hints) {
    // A macvlan child's index inside is not told by the host: its visit dumps it.
    for s in these {
        if let Step::CreateMacvlan(m) = s
            && let Some(ns) = m.place.ns()
        {
            hints.ns.remove(&(ns.to_string(), m.name.clone()));
        }
    }
    let peer: BTreeMap<&str, u32> = ends
        .iter()
        .filter_map(|l| l.peer_index.map(|p| (l.name.as_str(), p)))
        .collect();
    for s in these {
        if let Step::CreateVeth(v) = s
            && let Some(p) = peer.get(v.host.as_str())
        {
            hints.ns.insert((v.ns.clone(), v.peer.clone()), *p);
        }
    }
}

/// Links deleted (and foreign ports let go) on the host and inside namespaces, namespaces
/// deleted, resolv.conf files removed.
fn teardown(
    host: &mut Conn,
    hix: &mut HostIx,
    mark: &str,
    these: &[&Step],
    ok: &mut Vec<Step>,
    errs: &mut Errors,
    tally: &mut Tally,
) {
    let t = Instant::now();
    let restore = |s: &Step| match s {
        Step::SetSysctl(k) => Some(k.apply()),
        _ => None,
    };
    let n = call_each(these, restore, ok, errs);
    tally.add("set sysctl", n, t);
    let none = Indexes::new();
    let at = At::new(mark, &none);
    let t = Instant::now();
    let on_host = pick(these, |s| {
        matches!(
            s,
            Step::DeleteLink(_) | Step::SetLink(_) | Step::Adopt(_) | Step::DelFdb(_)
        ) && s.inside().is_none()
    });
    send(host, &on_host, &at, ok, errs);
    tally.add("delete link", on_host.len(), t);
    hix.forget(on_host.iter().filter_map(|s| match s {
        Step::DeleteLink(d) => Some(d.name.as_str()),
        _ => None,
    }));
    let t = Instant::now();
    let inside = pick(these, |s| {
        matches!(s, Step::DeleteLink(_)) && s.inside().is_some()
    });
    visit_each(&inside, ok, errs, &|_, c, steps| {
        let (mut ok, mut errs) = (Vec::new(), Errors::default());
        send(c, steps, &At::new(mark, &none), &mut ok, &mut errs);
        (ok, errs.0)
    });
    tally.add("delete link in namespace", inside.len(), t);
    // A veth deleted from inside takes its host end, which the step does not name.
    if !inside.is_empty()
        && let Err(e) = hix.reload(host)
    {
        errs.add(e);
    }
    delete_namespaces(host, hix, these, ok, errs, tally);
    let remove = |s: &Step| match s {
        Step::RemoveResolv(r) => Some(r.apply()),
        _ => None,
    };
    call_each(these, remove, ok, errs);
}

/// Namespaces deleted. Their veth pairs go with them, in the kernel's own time, and nothing
/// waits for that (`ip netns del` does not either): until they go, every observation counts
/// their host ends as gone (`plumbing::nsid`), and a run that makes a link of the same name
/// waits for just that one (`await_names`). Those of a namespace something else keeps alive
/// after its name goes are deleted: at once where a process is in it, else once it has not
/// died within `SOCKETS_FREED` (a socket opened in it).
fn delete_namespaces(
    host: &mut Conn,
    hix: &mut HostIx,
    these: &[&Step],
    ok: &mut Vec<Step>,
    errs: &mut Errors,
    tally: &mut Tally,
) {
    let t = Instant::now();
    // The host ends of namespaces a process holds, and of the others.
    let (mut held, mut takes): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    let mut n = 0;
    let names: Vec<&str> = these
        .iter()
        .filter_map(|s| match s {
            Step::DeleteNamespace(d) => Some(d.name.as_str()),
            _ => None,
        })
        .collect();
    // A process still in a namespace keeps it alive after its name goes: said, as it may
    // surprise (a socket keeps it too, silently: see `remove_now`).
    let holding = netns::holders(&names);
    for s in these {
        if let Step::DeleteNamespace(d) = s {
            n += 1;
            let holders = holding.get(&d.name);
            match netns::delete(&d.name) {
                Ok(()) if holders.is_none() => {}
                Ok(()) => {
                    let who: Vec<String> = holders
                        .into_iter()
                        .flatten()
                        .map(|(p, c)| format!("{p} ({c})"))
                        .collect();
                    crate::warning!(
                        "namespace {} is still held by process {}: its name and links are removed now, the namespace itself when they exit",
                        d.name,
                        who.join(", ")
                    );
                }
                Err(e) => {
                    errs.add(e);
                    continue;
                }
            }
            let ends = d.takes.iter().map(String::as_str);
            if holders.is_some() {
                held.extend(ends);
            } else {
                takes.extend(ends);
            }
            ok.push((*s).clone());
        }
    }
    for (names, patience) in [(&held, Duration::ZERO), (&takes, SOCKETS_FREED)] {
        if let Err(e) = remove_now(host, names, patience) {
            errs.add(e);
        }
    }
    hix.forget(takes.iter().chain(&held).copied());
    tally.add("delete namespace", n, t);
}

/// How long a namespace no process holds may take to die once its name is gone. A netlink
/// socket opened in it (another program's; this run's own where the host has no id for it,
/// as the observation reads the others from the host: `plumbing::peek`) is freed an RCU grace
/// period after its close and holds the namespace until then; deleting the veth meanwhile
/// costs more than the wait (an unregister waits for every pending RCU callback, 10–20 ms on
/// a busy host) and gains nothing.
const SOCKETS_FREED: Duration = Duration::from_millis(30);

/// Deletes the host links `names` that are still there and not going with their namespace:
/// those of a namespace kept alive by a handle nsfw does not own (see `plumbing::nsid`), once
/// `patience` has passed without it dying. Each is asked for by name: a dump of the host's
/// links costs O(N²) at N veth pairs.
fn remove_now(host: &mut Conn, names: &[&str], patience: Duration) -> Result<()> {
    let deadline = Instant::now() + patience;
    let mut names: BTreeSet<&str> = names.iter().copied().collect();
    loop {
        let links = by_name(host, names.iter().copied())?;
        let dying = nsid::dying(host, &links);
        let alive: Vec<&Link> = links.iter().filter(|l| !dying.contains(&l.index)).collect();
        if alive.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let reqs: Vec<Req> = alive
                .iter()
                .map(|l| msgs::del_link(&l.name, l.index).ok_if(&[libc::ENODEV]))
                .collect();
            return host.run_all(&reqs);
        }
        names.retain(|n| alive.iter().any(|l| l.name == *n));
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The host links of `names` that are there, each asked for by name.
fn by_name<'n>(host: &mut Conn, names: impl IntoIterator<Item = &'n str>) -> Result<Vec<Link>> {
    let mut out = Vec::new();
    for n in names {
        out.extend(links::link_by_name(host, n)?);
    }
    Ok(out)
}

/// Waits until no host link the kernel is taking away with its namespace holds a name this
/// stage makes (an apply right after a flush; a namespace deleted and made again in one run).
/// Bounded: those still there after 5 s (a teardown queued behind thousands of others) are
/// deleted, as the kernel is about to. A live link in the way is left for its create to fail.
/// The names are asked for one by one, and a name stops being asked for once it is free or
/// held by a live link: only the dying ones are waited for.
fn await_names(host: &mut Conn, these: &[&Step]) -> Result<()> {
    let mut made: BTreeSet<&str> = these
        .iter()
        .filter_map(|s| match s {
            Step::CreateVeth(v) => Some(v.host.as_str()),
            Step::CreateBridge(b) => Some(b.name.as_str()),
            _ => None,
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let links = by_name(host, made.iter().copied())?;
        let dying = nsid::dying(host, &links);
        let left: Vec<(&str, u32)> = links
            .iter()
            .filter(|l| dying.contains(&l.index))
            .filter_map(|l| made.get(l.name.as_str()).map(|n| (*n, l.index)))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let reqs: Vec<Req> = left
                .iter()
                .map(|(n, i)| msgs::del_link(n, *i).ok_if(&[libc::ENODEV]))
                .collect();
            return host.run_all(&reqs);
        }
        made = left.iter().map(|(n, _)| *n).collect();
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Namespaces made (each marked from inside while it is made), and marked again.
fn namespaces(
    mark: &str,
    these: &[&Step],
    ok: &mut Vec<Step>,
    errs: &mut Errors,
    tally: &mut Tally,
) {
    let t = Instant::now();
    let creates = pick(these, |s| matches!(s, Step::CreateNamespace(_)));
    let names: Vec<String> = creates
        .iter()
        .filter_map(|s| match s {
            Step::CreateNamespace(c) => Some(c.name.clone()),
            _ => None,
        })
        .collect();
    let lo = namespace::mark_request(mark);
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
    let marks = pick(these, |s| {
        matches!(s, Step::MarkNamespace(_) | Step::Adopt(_)) && s.inside().is_some()
    });
    let none = Indexes::new();
    visit_each(&marks, ok, errs, &|_, c, steps| {
        let (mut ok, mut errs) = (Vec::new(), Errors::default());
        send(c, steps, &At::new(mark, &none), &mut ok, &mut errs);
        (ok, errs.0)
    });
}

/// The host's addresses that go and its routes, neighbours forgotten, resolv.conf files.
fn host_finish(
    host: &mut Conn,
    ix: &Indexes,
    mark: &str,
    these: &[&Step],
    ok: &mut Vec<Step>,
    errs: &mut Errors,
    tally: &mut Tally,
) {
    host_addr_routes(host, mark, these, ix, ok, errs, tally);
    forget(host, these, ix, ok, errs);
    announce_inside(host, ix, mark, these, ok, tally);
    let t = Instant::now();
    let write = |s: &Step| match s {
        Step::WriteResolv(w) => Some(w.apply()),
        Step::Announce(a) if a.place == Place::Host => Some(a.apply()),
        _ => None,
    };
    let n = call_each(these, write, ok, errs);
    tally.add("write resolv.conf", n, t);
}
