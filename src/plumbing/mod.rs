//! The kernel layer for everything that is not nftables: namespaces, links, addresses, routes,
//! sysctls and resolv.conf files, over blocking rtnetlink connections (`rtnl`) opened where
//! the work is and closed after it.

mod addrmsg;
pub(crate) mod announce;
pub(crate) mod answer;
pub(crate) mod arp;
pub(crate) mod fdb;
pub(crate) mod files;
#[cfg(debug_assertions)]
mod held;
pub(crate) mod host_table;
mod linkmsg;
pub(crate) mod links;
pub(crate) mod listeners;
pub(crate) mod memory;
pub(crate) mod msgs;
pub(crate) mod neigh;
mod netconf;
pub(crate) mod netns;
pub(crate) mod nsid;
mod objects;
pub(crate) mod observe;
mod peek;
pub mod qdisc;
pub(crate) mod rtax;
pub(crate) mod rtnl;
pub(crate) mod sysctl;
mod tbf;
pub(crate) mod threads;
pub(crate) mod xtables;

pub(crate) use files::resolv_path;
#[cfg(test)]
pub(crate) use objects::{Addr, Route};
pub(crate) use objects::{Fdb, FileObs, Link, NodeObs, NsObs, Via, VxlanObs};
pub(crate) use observe::{HostLinks, Observed, Query, observe, observe_some};
pub use rtnl::{Conn, Req};

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Raises the soft limit on open files to the hard limit: a run opens a handful of
/// descriptors per worker thread, and other code (libraries, the nft socket) should never be
/// the one to hit a low soft limit such as 256 or 1024.
pub fn raise_fd_limit() {
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// The soft limit on open files; None when the kernel does not say.
pub fn fd_limit() -> Option<u64> {
    getrlimit(Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}
