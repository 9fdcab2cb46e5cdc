//! The executor's host build: bridges made, host links set, links born in namespaces (veth
//! pairs, their peers inside), host sysctls, the host's new addresses — in that order, since a
//! pair names its bridge by index and an address its link.

use std::time::Instant;

use anyhow::anyhow;

use super::hostix::HostIx;
use super::run::{Errors, Tally, call_each, pick, run_steps, send};
use crate::kinds::{At, Indexes, Step};
use crate::plumbing::{Conn, Link, netns};

/// Returns the host ends of the veth pairs made (their IFLA_LINK is the peer's index).
pub(super) fn host_build(
    host: &mut Conn,
    hix: &mut HostIx,
    mark: &str,
    these: &[&Step],
    ok: &mut Vec<Step>,
    errs: &mut Errors,
    tally: &mut Tally,
) -> Vec<Link> {
    let t = Instant::now();
    // Links that stand alone on the host (VXLAN links join their bridge as links set).
    let bridges = pick(these, |s| {
        matches!(s, Step::CreateBridge(_) | Step::CreateVxlan(_))
    });
    send(host, &bridges, &At::new(mark, &Indexes::new()), ok, errs);
    tally.add("create bridge", bridges.len(), t);
    let made = bridges.iter().filter_map(|s| match s {
        Step::CreateBridge(b) => Some(b.name.as_str()),
        Step::CreateVxlan(v) => Some(v.name.as_str()),
        _ => None,
    });
    if let Err(e) = hix.learn(host, made) {
        errs.add(e);
        return Vec::new();
    }
    let ix = hix.get().clone();
    let t = Instant::now();
    // Links set, and links made here on one that exists (a macvlan shim on its uplink).
    let links = pick(these, |s| {
        matches!(s, Step::SetLink(_) | Step::CreateMacvlan(_)) && s.born_in().is_none()
    });
    send(host, &links, &At::new(mark, &ix), ok, errs);
    tally.add("set link", links.len(), t);
    // A macvlan shim made on the host, by name.
    let shims = links.iter().filter_map(|s| match s {
        Step::CreateMacvlan(m) if m.place.ns().is_none() => Some(m.name.as_str()),
        _ => None,
    });
    if let Err(e) = hix.learn(host, shims) {
        errs.add(e);
        return Vec::new();
    }
    // VXLAN peers, by the index of their link (made above).
    let peers = pick(these, |s| matches!(s, Step::AddFdb(_)));
    send(host, &peers, &At::new(mark, &ix), ok, errs);
    born_in_namespaces(host, mark, these, &ix, ok, errs, tally);
    // The host ends of the pairs made, by name.
    let ends = these.iter().filter_map(|s| match s {
        Step::CreateVeth(v) => Some(v.host.as_str()),
        _ => None,
    });
    let ends = match hix.learn(host, ends) {
        Ok(l) => l,
        Err(e) => {
            errs.add(e);
            return Vec::new();
        }
    };
    let t = Instant::now();
    let sysctl = |s: &Step| match s {
        Step::SetSysctl(k) => Some(k.apply()),
        _ => None,
    };
    let n = call_each(these, sysctl, ok, errs);
    tally.add("set sysctl", n, t);
    host_addr_routes(host, mark, these, hix.get(), ok, errs, tally);
    ends
}

/// Links made from the host and born in a namespace (veth pairs, their peers inside), that
/// namespace opened for the request: a few hundred namespace handles open at a time at most,
/// and never more than half of what the file limit leaves.
fn born_in_namespaces(
    host: &mut Conn,
    mark: &str,
    these: &[&Step],
    ix: &Indexes,
    ok: &mut Vec<Step>,
    errs: &mut Errors,
    tally: &mut Tally,
) {
    let t = Instant::now();
    let born = pick(these, |s| s.born_in().is_some());
    for chunk in born.chunks(fd_budget()) {
        let mut items = Vec::new();
        let mut fds = Vec::new();
        for s in chunk {
            let ns = s.born_in().unwrap_or_default();
            let made = netns::open_ns(ns).and_then(|fd| {
                let fd = fd.ok_or_else(|| anyhow!("namespace {ns} does not exist"))?;
                let at = At {
                    ns: Some(&fd),
                    ..At::new(mark, ix)
                };
                let reqs = s.requests(&at).unwrap_or(Ok(Vec::new()));
                fds.push(fd);
                reqs
            });
            match made {
                Ok(reqs) => items.push((*s, reqs)),
                Err(e) => errs.add(e.context(format!("while carrying out: {s}"))),
            }
        }
        run_steps(host, items, ok, errs);
        drop(fds);
    }
    tally.add("create veth", born.len(), t);
}

/// How many namespace handles may be open at once: half the open-file limit (less what the
/// rest of the run holds), between 4 and 256.
fn fd_budget() -> usize {
    let soft = crate::plumbing::fd_limit().map_or(64, |n| usize::try_from(n).unwrap_or(usize::MAX));
    (soft.saturating_sub(48) / 2).clamp(4, 256)
}

/// The host's addresses and routes (in the host build, the addresses added; in the host
/// finish, the ones removed and the routes), against its link indexes `ix`.
pub(super) fn host_addr_routes(
    host: &mut Conn,
    mark: &str,
    these: &[&Step],
    ix: &Indexes,
    ok: &mut Vec<Step>,
    errs: &mut Errors,
    tally: &mut Tally,
) {
    let t = Instant::now();
    let items = pick(these, |s| {
        matches!(
            s,
            Step::AddAddr(_)
                | Step::DelAddr(_)
                | Step::SetRoute(_)
                | Step::DelRoute(_)
                | Step::SetNetem(_)
        )
    });
    send(host, &items, &At::new(mark, ix), ok, errs);
    tally.add("host address, route or qdisc", items.len(), t);
}
