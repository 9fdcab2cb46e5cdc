//! The kernel layer for everything that is not nftables: namespaces, links, addresses, routes,
//! sysctls and resolv.conf files, over blocking rtnetlink connections (`rtnl`) opened where
//! the work is and closed after it.

pub mod files;
mod linkmsg;
pub mod listeners;
pub mod msgs;
pub mod neigh;
pub mod netns;
pub mod observe;
pub mod qdisc;
pub mod rtnl;
pub mod sysctl;

pub use files::resolv_path;
pub use observe::{Addr, FileObs, Link, NodeObs, NsObs, Observed, Query, Route, observe};
pub use rtnl::{Conn, Req};

/// Raises the soft limit on open files to the hard limit: a run opens a handful of
/// descriptors per worker thread, and other code (libraries, the nft socket) should never be
/// the one to hit a low soft limit such as 256 or 1024.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
