//! What every stage of the executor shares, on the host and inside a namespace: the timing
//! tally, the errors gathered, link indexes, and the requests built from steps and sent many
//! to a `sendmsg`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

use super::step::{LinkAttr, Step};
use crate::plumbing::{Conn, Req, msgs, observe};

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
pub(super) fn indexes(c: &mut Conn) -> Result<BTreeMap<String, u32>> {
    Ok(observe::links(c)?
        .into_iter()
        .map(|l| (l.name, l.index))
        .collect())
}

/// Indexes of links inside namespaces, by (namespace, interface): from the observation, and
/// for pairs made in this run from their host ends (a veth's IFLA_LINK is its peer's index).
pub(super) type Hints = BTreeMap<(String, String), u32>;

pub(super) fn index_of(ix: &BTreeMap<String, u32>, name: &str) -> Result<u32> {
    ix.get(name)
        .copied()
        .ok_or_else(|| anyhow!("no interface {name}"))
}

/// The request for a SetLink step.
pub(super) fn set_link_req(
    name: &str,
    attrs: &[LinkAttr],
    ix: &BTreeMap<String, u32>,
) -> Result<Vec<Req>> {
    let (mut mtu, mut mac, mut up, mut master, mut arp) = (None, None, false, None, false);
    let mut out = Vec::new();
    for a in attrs {
        match a {
            LinkAttr::NfCall { new } => out.push(msgs::bridge_nf_call(name, *new)),
            LinkAttr::Hairpin { new } => out.push(msgs::hairpin(name, *new)),
            LinkAttr::Mtu { new, .. } => mtu = Some(*new),
            LinkAttr::Mac { new, .. } => mac = Some(*new),
            LinkAttr::Up => up = true,
            LinkAttr::Arp => arp = true,
            LinkAttr::Master { new, .. } => {
                master = Some(match new {
                    Some(b) => Some(index_of(ix, b)?),
                    None => None,
                })
            }
        }
    }
    out.insert(0, msgs::set_link(name, mtu, mac, up, master, arp));
    Ok(out)
}

/// Address and route requests of one place, against its link indexes.
pub(super) fn addr_route_req(s: &Step, ix: &BTreeMap<String, u32>) -> Result<Option<Req>> {
    Ok(Some(match s {
        Step::AddAddr {
            ifname, net, orig, ..
        } => match orig {
            Some(o) => msgs::add_addr_as(ifname, index_of(ix, ifname)?, *net, o),
            None => msgs::add_addr(ifname, index_of(ix, ifname)?, *net),
        },
        Step::DelAddr { ifname, net, .. } => msgs::del_addr(ifname, index_of(ix, ifname)?, *net),
        Step::SetRoute { route, .. } => msgs::replace_route(route, index_of(ix, &route.dev)?),
        // A route through an interface that is gone, or of a type with none, goes by
        // destination and metric alone.
        Step::DelRoute { route, .. } => msgs::del_route(route, ix.get(&route.dev).copied()),
        _ => return Ok(None),
    }))
}

/// Runs requests built from steps; `done` gets the steps whose requests all succeeded.
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
