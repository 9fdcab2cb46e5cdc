//! The executor's host build: bridges made, host links set, links born in namespaces (veth
//! pairs, their peers inside), host sysctls, the host's new addresses — in that order, since a
//! pair names its bridge by index and an address its link.

use std::time::Instant;

use anyhow::anyhow;

use super::run::{Errors, Tally, call_each, indexes, pick, run_steps, send};
use crate::kinds::{At, Indexes, Step};
use crate::plumbing::{Conn, netns};

pub(super) fn host_build(
    host: &mut Conn,
    mark: &str,
    these: &[&Step],
    ok: &mut Vec<Step>,
    errs: &mut Errors,
    tally: &mut Tally,
) {
    let t = Instant::now();
    // Links that stand alone on the host (VXLAN links join their bridge as links set).
    let bridges = pick(these, |s| {
        matches!(s, Step::CreateBridge(_) | Step::CreateVxlan(_))
    });
    send(host, &bridges, &At::new(mark, &Indexes::new()), ok, errs);
    tally.add("create bridge", bridges.len(), t);
    let ix = match indexes(host) {
        Ok(ix) => ix,
        Err(e) => return errs.add(e),
    };
    let t = Instant::now();
    // Links set, and links made here on one that exists (a macvlan shim on its uplink).
    let links = pick(these, |s| {
        matches!(s, Step::SetLink(_) | Step::CreateMacvlan(_)) && s.born_in().is_none()
    });
    send(host, &links, &At::new(mark, &ix), ok, errs);
    tally.add("set link", links.len(), t);
    let made_here = links.iter().any(|s| matches!(s, Step::CreateMacvlan(_)));
    // VXLAN peers, by the index of their link (made above).
    let peers = pick(these, |s| matches!(s, Step::AddFdb(_)));
    send(host, &peers, &At::new(mark, &ix), ok, errs);
    let made = born_in_namespaces(host, mark, these, &ix, ok, errs, tally) || made_here;
    let t = Instant::now();
    let sysctl = |s: &Step| match s {
        Step::SetSysctl(k) => Some(k.apply()),
        _ => None,
    };
    let n = call_each(these, sysctl, ok, errs);
    tally.add("set sysctl", n, t);
    let ix = if made { indexes(host) } else { Ok(ix) };
    match ix {
        Ok(ix) => host_addr_routes(host, mark, these, &ix, ok, errs, tally),
        Err(e) => errs.add(e),
    }
}

/// Links made from the host and born in a namespace (veth pairs, their peers inside), that
/// namespace opened for the request: a few hundred namespace handles open at a time at most,
/// and never more than half of what the file limit leaves. Whether any was made.
fn born_in_namespaces(
    host: &mut Conn,
    mark: &str,
    these: &[&Step],
    ix: &Indexes,
    ok: &mut Vec<Step>,
    errs: &mut Errors,
    tally: &mut Tally,
) -> bool {
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
    !born.is_empty()
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
