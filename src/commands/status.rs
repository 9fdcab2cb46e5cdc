//! `nsfw status`: what nsfw owns on this host, per topology, under the shared lock; with FILE,
//! whether the host matches it (the exit status says so, as diff's does).

use std::path::PathBuf;

use crate::cli::StatusFormat;
use crate::engine::{self, Target};
use crate::firewall::conntrack::CtEntry;
use crate::plumbing::{self, Query};
use crate::state::{self, Access, Record};
use crate::{firewall, output, status};
use nft::socket::NftSocket;

use super::{Fail, OK, PENDING, load, quiet_for_json, read_error, report};

/// What status reads: every topology, whether the host matches FILE, and the conntrack
/// entries (asked for only by the metrics; None when ctnetlink cannot answer).
type Read = (Vec<status::Topology>, Option<bool>, Option<Vec<CtEntry>>);

/// Every topology on the host, and with `t` whether the host matches it; with `conntrack`,
/// the conntrack entries too.
fn gather(t: Option<&crate::topology::Topology>, cmd: &str, conntrack: bool) -> Result<Read, Fail> {
    let lock = state::acquire(Access::Shared, true).map_err(|e| report(&e))?;
    let read = || -> anyhow::Result<Read> {
        let mut nft = NftSocket::open()?;
        // Every namespace nsfw marked is read whole; the others only for their marks.
        let deep =
            |_: &str, owner: Option<&str>| owner.and_then(crate::owner::topology_of).is_some();
        let none = |_: &str| Vec::new();
        let q = Query {
            deep: &deep,
            ns_sysctls: &none,
            host_sysctls: Vec::new(),
            known: None,
            asking: None,
            peek: false,
        };
        let o = plumbing::observe(&q)?;
        let mut ts = status::gather(&o, &firewall::observe(&mut nft)?);
        let mut sync = None;
        if let Some(t) = t {
            let tg = Target::apply(t);
            let rec = Record::load(lock.dir());
            let o = engine::observe(&tg, &rec, &mut nft)?;
            let p = engine::plan(&tg, &o, &rec)?;
            let same = p.is_empty()
                && p.conflicts.is_empty()
                && p.unreachable.is_empty()
                && !p.firewalld_unchecked;
            sync = Some(same);
            match ts.iter_mut().find(|x| x.name == t.name) {
                Some(x) => x.in_sync = Some(same),
                None => ts.push(status::Topology {
                    name: t.name.clone(),
                    in_sync: Some(same),
                    ..Default::default()
                }),
            }
        }
        let entries = if conntrack {
            firewall::conntrack::entries(&mut nft).ok()
        } else {
            None
        };
        Ok((ts, sync, entries))
    };
    let r = read().map_err(|e| read_error(cmd, &e))?;
    drop(lock);
    Ok(r)
}

pub fn status(file: Option<PathBuf>, json: bool, format: Option<StatusFormat>) -> Result<u8, Fail> {
    let format = match (json, format) {
        (true, _) => StatusFormat::Json,
        (false, f) => f.unwrap_or(StatusFormat::Text),
    };
    let metrics = format == StatusFormat::Openmetrics;
    let json = format == StatusFormat::Json;
    // No default file: without one, status reports what is there and compares nothing.
    let t = match file {
        Some(f) => Some(load(Some(f))?),
        None => None,
    };
    quiet_for_json(json || metrics);
    let (ts, sync, entries) = gather(t.as_ref(), "status", metrics)?;
    if metrics {
        let f = crate::metrics::host::families(&ts, entries.as_deref());
        output::data(format_args!(
            "{}{}",
            crate::metrics::render(&f),
            crate::metrics::EOF
        ));
    } else if json {
        output::data(format_args!("{}\n", status::to_json(&ts)));
    } else if ts.is_empty() {
        crate::say!("no nsfw topology on this host");
    } else {
        for (i, x) in ts.iter().enumerate() {
            if i > 0 {
                output::data(format_args!("\n"));
            }
            output::data(format_args!("{x}"));
        }
    }
    Ok(if sync == Some(false) { PENDING } else { OK })
}

/// `nsfw list`: one line per object nsfw owns, `TOPOLOGY KIND NAME`.
pub fn list() -> Result<u8, Fail> {
    let (ts, _, _) = gather(None, "list", false)?;
    for t in &ts {
        for line in status::names(t) {
            output::data(format_args!("{} {line}\n", t.name));
        }
    }
    Ok(OK)
}
