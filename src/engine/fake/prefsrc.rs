//! The kernel's rules for a route's preferred source (RTA_PREFSRC, `src`), in the in-memory
//! kernel: a route is refused a source that is not a usable address there, and an address
//! that goes takes itself out of the routes that named it (IPv6), or them with it (IPv4).

use std::net::IpAddr;

use anyhow::{Result, bail};
use ipnetwork::IpNetwork;

use crate::plumbing::{NodeObs, Route};

/// IFA_F_TENTATIVE: an address still in duplicate-address detection.
const IFA_F_TENTATIVE: u32 = 0x40;

/// The kernel's refusal of `route`'s source: not an address of the namespace (a link-local
/// one: not of the route's own link), or one still tentative (EINVAL, "Invalid source
/// address").
pub(super) fn refuse(node: &NodeObs, route: &Route) -> Result<()> {
    let Some(src) = route.prefsrc else {
        return Ok(());
    };
    let scoped = matches!(src, IpAddr::V6(a) if a.is_unicast_link_local());
    let usable = node.addrs.iter().any(|a| {
        a.net.ip() == src
            && a.flags & IFA_F_TENTATIVE == 0
            && (!scoped || Some(a.index) == route.oif)
    });
    if !usable {
        bail!("route {}: src {src}: Invalid source address", route.dst);
    }
    Ok(())
}

/// Address `net` of link `index` gone. IPv6: a route through that link that named it keeps
/// going without a source. IPv4: once no link of the namespace holds that address any more,
/// every route that named it goes, through any link (`fib_sync_down_addr`).
pub(super) fn forget(node: &mut NodeObs, index: u32, net: IpNetwork) {
    if net.is_ipv4() {
        if !node.addrs.iter().any(|a| a.net.ip() == net.ip()) {
            node.routes
                .retain(|r| r.kernel || r.prefsrc != Some(net.ip()));
        }
        return;
    }
    for r in node.routes.iter_mut() {
        if r.prefsrc == Some(net.ip()) && r.oif == Some(index) && !r.kernel {
            r.prefsrc = None;
        }
    }
}
