//! After a plan is carried out, the plumbing is read again to check it: only where the plan
//! could have changed anything. The namespaces a plan does not touch were read at the start
//! of this same run, found as the file wants them (else the plan would touch them), and
//! nobody else changes them while the lock is held that nsfw would not find at its next run;
//! reading them again would look for others' changes, not check this run's (as nftables is
//! not read back when its generation says the batch was the only commit). At 1,000
//! namespaces, adding one read all 1,000 twice; now once, and the new one.

use std::collections::BTreeSet;

use anyhow::Result;

use super::Target;
use super::kernel::Kernel;
use crate::kinds::{Adoptee, Step};
use crate::plan::Plan;
use crate::plumbing::{HostLinks, Link, Observed};
use crate::resources::Place;
use crate::state::Record;

/// `f` of the plumbing after `p` was carried out: read again where `p` could have changed
/// it, the rest as `before` (this run's first observation) saw it, with nftables' tables as
/// `before` says (the engine checks the ruleset by its generation). `recs`: the records before
/// and after the run; the query is the later one's. The namespaces not read again are lent
/// to `f` out of `before` and given back, not copied: at 1,000 namespaces the copy and its
/// drop took 3 ms, more than reading the one added.
pub(super) fn with_reread<R>(
    k: &mut dyn Kernel,
    tg: &Target,
    p: &Plan,
    before: &mut Observed,
    recs: &[&Record; 2],
    f: impl FnOnce(&Observed) -> R,
) -> Result<R> {
    let Some(only) = touched(p, recs) else {
        let mut fresh = super::observe_plumbing(k, tg, recs[1])?;
        fresh.tables_of.clone_from(&before.tables_of);
        return Ok(f(&fresh));
    };
    let again = host_touched(p, &before.host.links);
    let host = match &again {
        Some(again) => HostLinks::Again {
            before: &before.host.links,
            again,
        },
        None => HostLinks::Dump,
    };
    let mut fresh = super::with_query(tg, recs[1], &mut |q| k.observe_some(q, &only, &host))?;
    fresh.tables_of.clone_from(&before.tables_of);
    let lent = lend(before, &mut fresh, &only);
    let out = f(&fresh);
    give_back(before, fresh, lent);
    Ok(out)
}

/// The host links the plan could have changed, to be asked for again by name (the others
/// are as this run's observation saw them, for the reason above): those its steps name, the
/// host ends of the pairs it makes or takes away, and every link that is not a veth's host
/// end (bridges, whose MTU and address can follow their ports; uplinks; a handful). None:
/// the host's links are read whole (a veth deleted, from either end).
fn host_touched(p: &Plan, before: &[Link]) -> Option<BTreeSet<String>> {
    let mut out: BTreeSet<String> = before
        .iter()
        .filter(|l| l.kind.as_deref() != Some("veth"))
        .map(|l| l.name.clone())
        .collect();
    let on_host = |place: &Place, name: &str| (*place == Place::Host).then(|| name.to_string());
    for s in &p.steps {
        let named = match s {
            Step::DeleteLink(_) => return None,
            Step::DeleteNamespace(d) => {
                out.extend(d.takes.iter().cloned());
                None
            }
            Step::CreateVeth(v) => Some(v.host.clone()),
            Step::CreateBridge(b) => Some(b.name.clone()),
            Step::CreateVxlan(v) => Some(v.name.clone()),
            Step::SetLink(l) => on_host(&l.place, &l.name),
            Step::CreateMacvlan(m) => on_host(&m.place, &m.name),
            Step::SetNetem(n) => on_host(&n.place, &n.ifname),
            Step::Adopt(a) => match &a.what {
                Adoptee::Link(l) => Some(l.clone()),
                Adoptee::Namespace(_) => None,
            },
            // A link's own sysctls (`net.ipv4.conf.NAME.KEY`) are read from its link message;
            // any other (`net.ipv4.ip_forward`, `conf.all.*`) can change every link's.
            Step::SetSysctl(k) if k.place == Place::Host => {
                let dev = crate::plumbing::sysctl::per_interface(&k.key).map(|(_, d, _)| d);
                let own: Vec<String> = before
                    .iter()
                    .filter(|l| dev.is_some_and(|d| crate::plumbing::sysctl::is_dev(d, &l.name)))
                    .map(|l| l.name.clone())
                    .collect();
                if own.is_empty() {
                    return None;
                }
                out.extend(own);
                None
            }
            _ => None,
        };
        out.extend(named);
    }
    Some(out)
}

/// The namespaces `p`'s steps work in, make, delete or make a link in, with those the records
/// name as pending (a leftover is read whole); None when a step can change a namespace from
/// outside it (a host link deleted: a veth's end inside goes with it).
fn touched(p: &Plan, recs: &[&Record]) -> Option<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for s in &p.steps {
        match s {
            Step::DeleteLink(d) if d.place == Place::Host => return None,
            Step::CreateNamespace(n) => {
                out.insert(n.name.clone());
            }
            Step::DeleteNamespace(n) => {
                out.insert(n.name.clone());
            }
            _ => {}
        }
        out.extend(s.inside().map(str::to_string));
        out.extend(s.born_in().map(str::to_string));
    }
    for r in recs {
        for p in r.pending.values() {
            out.extend(p.namespaces.iter().cloned());
        }
    }
    Some(out)
}

/// Moves the namespaces of `before` that `only` leaves out into `fresh` (the host, the files
/// and the namespaces in `only`, read after the run), and copies the unreachable ones (a
/// handful of messages): the names moved.
fn lend(before: &mut Observed, fresh: &mut Observed, only: &BTreeSet<String>) -> Vec<String> {
    let lent: Vec<String> = before
        .namespaces
        .keys()
        .filter(|n| !only.contains(*n))
        .cloned()
        .collect();
    for name in &lent {
        if let Some(ns) = before.namespaces.remove(name) {
            fresh.namespaces.insert(name.clone(), ns);
        }
    }
    for (name, why) in &before.unreachable {
        if !only.contains(name) {
            fresh.unreachable.insert(name.clone(), why.clone());
        }
    }
    lent
}

/// Puts the namespaces [`lend`] moved back into `before`.
fn give_back(before: &mut Observed, mut fresh: Observed, lent: Vec<String>) {
    for name in lent {
        if let Some(ns) = fresh.namespaces.remove(&name) {
            before.namespaces.insert(name, ns);
        }
    }
    crate::plumbing::threads::drop_aside(fresh);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::{CreateVeth, DeleteLink, DeleteNamespace, SetSysctl};

    fn link(index: u32, name: &str, kind: &str) -> Link {
        let mut l = Link::bare(index, true, false);
        l.name = name.into();
        l.kind = Some(kind.into());
        l
    }

    fn host() -> Vec<Link> {
        vec![
            link(1, "lo", "loopback"),
            link(2, "br0", "bridge"),
            link(3, "veth-a", "veth"),
            link(4, "veth-b", "veth"),
        ]
    }

    fn plan(steps: Vec<Step>) -> Plan {
        Plan {
            steps,
            ..Default::default()
        }
    }

    fn names(s: Option<BTreeSet<String>>) -> Option<Vec<String>> {
        s.map(|s| s.into_iter().collect())
    }

    #[test]
    fn a_namespace_added_asks_again_for_its_host_end_and_the_links_that_are_no_veth() {
        let v = CreateVeth {
            ns: "c".into(),
            host: "veth-c".into(),
            peer: "eth0".into(),
            bridge: "br0".into(),
            mtu: 1500,
            mac: None,
            host_mac: None,
            no_link_local: true,
            hairpin: false,
            isolated: false,
        };
        let got = names(host_touched(&plan(vec![v.into()]), &host()));
        assert_eq!(got, Some(vec!["br0".into(), "lo".into(), "veth-c".into()]));
        // A bridge made in this run was in no earlier read.
        let mut p = plan(Vec::new());
        p.steps.push(Step::CreateBridge(crate::kinds::CreateBridge {
            name: "br1".into(),
            mtu: 1500,
            mac: crate::topology::Mac([2, 0, 0, 0, 0, 1]),
            nf_call: false,
        }));
        let got = names(host_touched(&p, &host()));
        assert_eq!(got, Some(vec!["br0".into(), "br1".into(), "lo".into()]));
    }

    #[test]
    fn a_namespace_removed_asks_again_for_the_ends_it_takes() {
        let d = DeleteNamespace {
            name: "b".into(),
            takes: vec!["veth-b".into()],
            why: "no longer in the file",
        };
        let got = names(host_touched(&plan(vec![d.into()]), &host()));
        assert_eq!(got, Some(vec!["br0".into(), "lo".into(), "veth-b".into()]));
    }

    #[test]
    fn a_link_sysctl_asks_again_for_its_link_a_global_one_and_a_deleted_link_for_a_dump() {
        let k = SetSysctl {
            place: Place::Host,
            key: "net.ipv4.conf.veth-a.proxy_arp".into(),
            old: None,
            new: "1".into(),
            restore: false,
        };
        let got = names(host_touched(&plan(vec![k.clone().into()]), &host()));
        assert_eq!(got, Some(vec!["br0".into(), "lo".into(), "veth-a".into()]));
        let all = SetSysctl {
            key: "net.ipv4.ip_forward".into(),
            ..k
        };
        assert_eq!(host_touched(&plan(vec![all.into()]), &host()), None);
        let gone = DeleteLink::of(Place::Ns("a".into()), &link(7, "eth0", "veth"), "gone");
        assert_eq!(host_touched(&plan(vec![gone.into()]), &host()), None);
    }
}
