//! Forgetting what a namespace (or the host) has learnt of its neighbours on one interface:
//! after an address or MAC on the segment changes, an entry naming the old MAC would hold for
//! many seconds (a reachable entry is trusted until it times out).

use anyhow::Result;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::neighbour::{NeighbourMessage, NeighbourState};

use super::rtnl::{Conn, Req};

/// Deletes every learnt (not permanent, not NOARP) neighbour entry of interface `index`.
pub(crate) fn forget(c: &mut Conn, index: u32, ifname: &str) -> Result<()> {
    // Every neighbour of the namespace, filtered here: few, and a header filter is refused
    // under strict checking by some kernels.
    let req = NeighbourMessage::default();
    let mut dels = Vec::new();
    for m in c.dump(RouteNetlinkMessage::GetNeighbour(req), "neighbours")? {
        let RouteNetlinkMessage::NewNeighbour(n) = m else {
            continue;
        };
        if n.header.ifindex != index
            || matches!(
                n.header.state,
                NeighbourState::Permanent | NeighbourState::Noarp
            )
        {
            continue;
        }
        dels.push(
            Req::new(
                RouteNetlinkMessage::DelNeighbour(n),
                0,
                format!("cannot forget a neighbour of {ifname}"),
            )
            .ok_if(&[libc::ENOENT]),
        );
    }
    c.run_all(&dels)
}
