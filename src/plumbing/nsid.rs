//! Links whose other end is in a namespace the kernel is tearing down. Removing a namespace's
//! name (as `ip netns del` and nsfw's flush do) drops its last reference; the kernel frees it
//! later (cleanup_net, on one worker, a batch of namespaces at a time), and the host end of each
//! veth pair into it stays in the host's link dump until then: tens to hundreds of
//! milliseconds after a few hundred namespaces are deleted. Such a link is as good as gone:
//! nothing can reach its peer, nothing can take its namespace back, and the kernel deletes it
//! without being asked. Two signs tell it, at any stage of the teardown:
//! - once cleanup_net has taken the namespace's id from its peers (RTM_DELNSID), the dump
//!   reports IFLA_LINK_NETNSID -1 (peernet2id_alloc gives no id to a namespace with no
//!   reference left);
//! - before that, the id is still there, but asking for the namespace by it (RTM_GETNSID with
//!   NETNSA_NSID) fails with ENOENT: get_net_ns_by_id takes no reference on a namespace that
//!   has none. A live namespace, named or held by a process, always answers.

use std::collections::{BTreeMap, BTreeSet};

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};

use super::objects::{Link, NsObs};
use super::rtnl::{Conn, Req};

/// The indexes of the veths among `links` (the dump of the namespace `c` is bound to) whose
/// peer's namespace is being torn down. A probe that gets no clear answer counts the link as
/// alive: it is then seen, as before, rather than hidden.
pub(crate) fn dying(c: &mut Conn, links: &[Link]) -> BTreeSet<u32> {
    let veths = || links.iter().filter(|l| l.kind.as_deref() == Some("veth"));
    let mut out: BTreeSet<u32> = veths()
        .filter(|l| l.link_netnsid == Some(-1))
        .map(|l| l.index)
        .collect();
    let ids: BTreeSet<i32> = veths()
        .filter_map(|l| l.link_netnsid)
        .filter(|i| *i >= 0)
        .collect();
    if ids.is_empty() {
        return out;
    }
    let reqs: Vec<Req> = ids.iter().map(|i| probe(*i)).collect();
    let alive: BTreeMap<i32, bool> = ids
        .iter()
        .zip(c.run_coded(&reqs))
        .map(|(i, r)| (*i, !matches!(r, Err((libc::ENOENT, _)))))
        .collect();
    out.extend(
        veths()
            .filter(|l| {
                l.link_netnsid
                    .is_some_and(|i| alive.get(&i).is_some_and(|a| !a))
            })
            .map(|l| l.index),
    );
    out
}

/// RTM_GETNSID for the namespace this one knows by `id`.
fn probe(id: i32) -> Req {
    let mut m = NsidMessage::default();
    m.attributes.push(NsidAttribute::Id(id));
    Req::new(
        RouteNetlinkMessage::GetNsId(m),
        0,
        format!("namespace id {id}"),
    )
}

/// `links` without the veths whose peer's namespace is being torn down, and their names.
pub(crate) fn without_dying(c: &mut Conn, links: Vec<Link>) -> (Vec<Link>, Vec<String>) {
    let gone = dying(c, &links);
    if gone.is_empty() {
        return (links, Vec::new());
    }
    let (out, keep): (Vec<Link>, Vec<Link>) =
        links.into_iter().partition(|l| gone.contains(&l.index));
    (keep, out.into_iter().map(|l| l.name).collect())
}

/// The host veth ends whose peer is a link of one of `namespaces`: each names the other as
/// its peer (IFLA_LINK both ways).
pub(crate) fn paired<'a>(
    host: &[Link],
    namespaces: impl Iterator<Item = &'a NsObs>,
) -> BTreeSet<u32> {
    let by_index: BTreeMap<u32, &Link> = host.iter().map(|l| (l.index, l)).collect();
    let mut out = BTreeSet::new();
    for ns in namespaces {
        for l in ns
            .node
            .links
            .iter()
            .filter(|l| l.kind.as_deref() == Some("veth"))
        {
            if let Some(h) = l.peer_index.and_then(|p| by_index.get(&p))
                && h.kind.as_deref() == Some("veth")
                && h.peer_index == Some(l.index)
            {
                out.insert(h.index);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn veth(index: u32, peer: u32) -> Link {
        let mut l = Link::bare(index, true, false);
        l.kind = Some("veth".into());
        l.peer_index = Some(peer);
        l
    }

    /// A host end is known alive only when a namespace's veth and it name each other.
    #[test]
    fn only_ends_named_both_ways_are_paired() {
        let host = vec![veth(10, 2), veth(11, 2), veth(12, 3)];
        let ns = NsObs {
            node: super::super::objects::NodeObs {
                links: vec![veth(2, 10), veth(3, 99)],
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(paired(&host, [&ns].into_iter()), BTreeSet::from([10]));
    }
}
