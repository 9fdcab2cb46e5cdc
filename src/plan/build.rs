//! The executor's host build: bridges made, host links set, veth pairs made with their peers
//! born in their namespaces, host sysctls, the host's new addresses — in that order, since a
//! pair names its bridge by index and an address its link.

use std::time::Instant;

use anyhow::anyhow;

use super::run::{Errors, Tally, indexes, pick, run_steps, send};
use crate::kinds::{At, CreateVeth, Indexes, Step, index_of};
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
    let bridges = pick(these, |s| matches!(s, Step::CreateBridge(_)));
    send(
        host,
        &bridges,
        &At {
            mark,
            ix: &Indexes::new(),
        },
        ok,
        errs,
    );
    tally.add("create bridge", bridges.len(), t);
    let ix = match indexes(host) {
        Ok(ix) => ix,
        Err(e) => return errs.add(e),
    };
    let t = Instant::now();
    let links = pick(these, |s| matches!(s, Step::SetLink(_)));
    send(host, &links, &At { mark, ix: &ix }, ok, errs);
    tally.add("set link", links.len(), t);
    let made = veths(host, mark, these, &ix, ok, errs, tally);
    let t = Instant::now();
    let mut n = 0;
    for s in these {
        if let Step::SetSysctl(k) = s {
            n += 1;
            match k.apply() {
                Ok(()) => ok.push((*s).clone()),
                Err(e) => errs.add(e),
            }
        }
    }
    tally.add("set sysctl", n, t);
    let ix = if made { indexes(host) } else { Ok(ix) };
    match ix {
        Ok(ix) => host_addr_routes(host, mark, these, &ix, ok, errs, tally),
        Err(e) => errs.add(e),
    }
}

/// Veth pairs made from the host, each peer born in its namespace (opened for the request):
/// a few hundred namespace handles open at a time at most, and never more than half of what
/// the file limit leaves. Whether any was made.
fn veths(
    host: &mut Conn,
    mark: &str,
    these: &[&Step],
    ix: &Indexes,
    ok: &mut Vec<Step>,
    errs: &mut Errors,
    tally: &mut Tally,
) -> bool {
    let t = Instant::now();
    let veths: Vec<(&Step, &CreateVeth)> = these
        .iter()
        .filter_map(|s| match s {
            Step::CreateVeth(v) => Some((*s, v)),
            _ => None,
        })
        .collect();
    for chunk in veths.chunks(fd_budget()) {
        let mut items = Vec::new();
        let mut fds = Vec::new();
        for (s, v) in chunk {
            let made = index_of(ix, &v.bridge).and_then(|m| {
                let fd = netns::open_ns(&v.ns)?
                    .ok_or_else(|| anyhow!("namespace {} does not exist", v.ns))?;
                let reqs = v.requests(m, &fd, mark);
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
    !veths.is_empty()
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
            Step::AddAddr(_) | Step::DelAddr(_) | Step::SetRoute(_) | Step::DelRoute(_)
        )
    });
    send(host, &items, &At { mark, ix }, ok, errs);
    tally.add("host address or route", items.len(), t);
}
