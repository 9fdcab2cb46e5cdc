//! The links of a namespace a run only needs to know by its links (one not in the file: whose
//! it is, by the mark on its `lo`, and which veths go into it), read from the host by the id
//! the host knows it by (RTM_GETLINK with IFLA_TARGET_NETNSID), not by entering it. A netlink
//! socket opened inside a namespace keeps it alive until an RCU grace period after its close:
//! a namespace deleted in the same run (removed from the file) then outlived its name by
//! 8-25 ms, which the delete waited for (the veths go with the namespace). Read from the host,
//! nothing of the run's is left in it, and it dies as its name goes.
//!
//! What the read leaves: the kernel names the namespace each link's peer is in by the asking
//! namespace's id for it, and makes one where there is none. For a namespace's end of a veth
//! into the host, that is an id the host gives itself (`ip netns list-id` in the host shows
//! it, with no name); for a veth into a third namespace, an id the host gives that one. As
//! `ip link` in the host gives one to every namespace a veth of its leads into: the kernel's
//! bookkeeping, made once and gone with the namespace it names (an `ip netns set NAME ID`
//! asking for an id so taken is refused).

use std::os::fd::{AsRawFd, OwnedFd};

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};

use super::netns::{self, NsId};
use super::objects::{Link, NodeObs, NsObs, owner_of};
use super::rtnl::Conn;

/// How many namespaces a run reads from the host at most; with more, it enters them all as
/// before. A link dump asked for from the host costs the kernel a walk of every host link
/// (it sizes the dump's buffer from the largest, rtnl_calcit) and one of the host's namespace
/// ids: 0.26 ms per namespace at 1,000 veths on the host, where entering costs a few hundredths
/// of that (no-op apply of a small topology beside 1,000 namespaces of another: 260 ms read
/// from the host, 35 ms entered). Worth it for the few namespaces a run may delete (one removed
/// from the file); not for a host full of another topology's, nor for a flush of them all
/// (which does not wait for them to die).
const MOST: usize = 16;

/// `names` split into those read from the host, with what was read of each (those `deep`
/// does not want read whole, given the owner their `lo` names), and the others, to be entered
/// as before: the ones `deep` wants (those it wants whatever their owner are not read here),
/// the ones the host has no id for (a namespace with no link into the host's, made by `ip
/// netns add` alone), any whose read failed (entering says why, or finds the name gone), and
/// every one when more than [`MOST`] are to be read.
pub(crate) fn shallow(
    deep: &(dyn Fn(&str, Option<&str>) -> bool + Sync),
    names: Vec<String>,
) -> (Vec<(String, NsObs)>, Vec<String>) {
    let (wanted, candidates): (Vec<String>, Vec<String>) =
        names.into_iter().partition(|n| deep(n, None));
    let (mut kept, mut enter) = (Vec::new(), wanted);
    let host = (candidates.len() <= MOST && may_enter())
        .then(|| Conn::open("host").ok())
        .flatten();
    let Some(mut c) = host else {
        enter.extend(candidates);
        return (kept, enter);
    };
    for name in candidates {
        match read(&mut c, &name) {
            Some((links, id)) => {
                let owner = owner_of(&links);
                if deep(&name, owner.as_deref()) {
                    enter.push(name);
                } else {
                    let node = NodeObs {
                        links,
                        ..Default::default()
                    };
                    kept.push((
                        name,
                        NsObs {
                            owner,
                            node,
                            id: Some(id),
                        },
                    ));
                }
            }
            None => enter.push(name),
        }
    }
    if !kept.is_empty() {
        crate::detail!(
            "namespaces: {} read from the host by their ids, {} entered",
            kept.len(),
            enter.len()
        );
    }
    (kept, enter)
}

/// Whether this process holds CAP_SYS_ADMIN, which entering a namespace (and deleting one)
/// takes. Without it nothing is read from the host either: each namespace is then one the run
/// cannot reach and says so, as before, rather than one it plans to delete and then cannot.
fn may_enter() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

/// The links of the namespace named `name` and its identity, read over the host's `c`; None
/// when the host has no id for it or anything fails. The namespace's file stays open for the
/// whole read: the id names that namespace until the file is closed.
fn read(c: &mut Conn, name: &str) -> Option<(Vec<Link>, NsId)> {
    let fd = netns::open_ns(name).ok()??;
    let st = nix::sys::stat::fstat(&fd).ok()?;
    let nsid = id_of(c, &fd)?;
    let links = super::links::links_of(c, nsid).ok()?;
    Some((links, (st.st_dev, st.st_ino)))
}

/// The id the host knows the namespace open as `fd` by (RTM_GETNSID with NETNSA_FD), which
/// the kernel gives without making one; None when it has none.
fn id_of(c: &mut Conn, fd: &OwnedFd) -> Option<i32> {
    let mut m = NsidMessage::default();
    m.attributes
        .push(NsidAttribute::Fd(u32::try_from(fd.as_raw_fd()).ok()?));
    let answer = c
        .get(RouteNetlinkMessage::GetNsId(m), "a namespace's id", &[])
        .ok()??;
    let RouteNetlinkMessage::NewNsId(a) = answer else {
        return None;
    };
    a.attributes.iter().find_map(|x| match x {
        NsidAttribute::Id(i) if *i >= 0 => Some(*i),
        _ => None,
    })
}
