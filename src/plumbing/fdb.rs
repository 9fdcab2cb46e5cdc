//! The forwarding entries of VXLAN links that name their peers: `bridge fdb append
//! 00:00:00:00:00:00 dev vx100 dst 192.0.2.11` — frames for every MAC the link has not
//! learnt (broadcast, ARP, unknown unicast) go to each such peer (head-end replication).
//! Read back from an AF_BRIDGE neighbour dump, added and deleted by RTM_NEWNEIGH/DELNEIGH.

use std::net::IpAddr;

use anyhow::Result;
use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::objects::{Fdb, Link, Via};
use super::rtnl::{Conn, Req};

const ZEROS: [u8; 6] = [0; 6];

/// The all-zeros entries of the VXLAN links among `links`.
pub(crate) fn dump(c: &mut Conn, links: &[Link]) -> Result<Vec<Fdb>> {
    let mut req = NeighbourMessage::default();
    req.header.family = AddressFamily::Bridge;
    let mut out = Vec::new();
    for m in c.dump(RouteNetlinkMessage::GetNeighbour(req), "forwarding entries")? {
        let RouteNetlinkMessage::NewNeighbour(n) = m else {
            continue;
        };
        if !links
            .iter()
            .any(|l| l.index == n.header.ifindex && l.vxlan.is_some())
        {
            continue;
        }
        let mut zeros = false;
        let mut dst = None;
        let mut via = Via::default();
        for a in &n.attributes {
            match a {
                NeighbourAttribute::Port(p) => via.port = Some(*p),
                NeighbourAttribute::Vni(v) => via.vni = Some(*v),
                NeighbourAttribute::IfIndex(i) => via.dev = Some(*i),
                NeighbourAttribute::LinkLayerAddress(m) => zeros = m.as_slice() == ZEROS,
                NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                    dst = Some(IpAddr::V4(*a))
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                    dst = Some(IpAddr::V6(*a))
                }
                // An AF_BRIDGE message's destination is read as bytes: the family is the
                // bridge's, not the address's.
                NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                    dst = match b.len() {
                        4 => <[u8; 4]>::try_from(b.as_slice()).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(b.as_slice()).ok().map(IpAddr::from),
                        _ => None,
                    }
                }
                _ => {}
            }
        }
        if let (true, Some(dst)) = (zeros, dst) {
            out.push(Fdb {
                index: n.header.ifindex,
                dst,
                via,
            });
        }
    }
    out.sort();
    Ok(out)
}

fn msg(index: u32, dst: IpAddr, via: Via) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Bridge;
    m.header.ifindex = index;
    m.header.state = NeighbourState::Permanent;
    // NTF_SELF: the entry is the VXLAN device's own, not its bridge's.
    m.header.flags = NeighbourFlags::Own;
    m.attributes = vec![
        NeighbourAttribute::LinkLayerAddress(ZEROS.to_vec()),
        NeighbourAttribute::Destination(match dst {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        }),
    ];
    // The kernel finds the entry to delete by all four (absent: the link's own).
    m.attributes.extend(via.port.map(NeighbourAttribute::Port));
    m.attributes.extend(via.vni.map(NeighbourAttribute::Vni));
    m.attributes
        .extend(via.dev.map(NeighbourAttribute::IfIndex));
    m
}

/// `bridge fdb append 00:00:00:00:00:00 dev NAME dst DST` (already there: fine).
pub(crate) fn add(name: &str, index: u32, dst: IpAddr) -> Req {
    Req::new(
        RouteNetlinkMessage::NewNeighbour(msg(index, dst, Via::default())),
        NLM_F_CREATE | NLM_F_APPEND,
        format!("cannot add peer {dst} to {name}"),
    )
    .ok_if(&[libc::EEXIST])
}

/// `bridge fdb del 00:00:00:00:00:00 dev NAME dst DST [port P] [vni V] [via DEV]` (already
/// gone: fine).
pub(crate) fn del(name: &str, index: u32, dst: IpAddr, via: Via) -> Req {
    Req::new(
        RouteNetlinkMessage::DelNeighbour(msg(index, dst, via)),
        0,
        format!("cannot remove peer {dst}{via} from {name}"),
    )
    .ok_if(&[libc::ENOENT])
}

/// The unicast address list of each link of `indexes`: its `self permanent` entries with a
/// unicast MAC (`bridge fdb show dev UPLINK`), where the kernel lists the MAC of every up,
/// non-passthru macvlan/macvtap child of the link, in any namespace.
pub(crate) fn unicast(
    c: &mut Conn,
    indexes: &[u32],
) -> Result<std::collections::BTreeMap<u32, Vec<crate::topology::Mac>>> {
    let mut req = NeighbourMessage::default();
    req.header.family = AddressFamily::Bridge;
    let mut out = std::collections::BTreeMap::new();
    for m in c.dump(RouteNetlinkMessage::GetNeighbour(req), "unicast addresses")? {
        let RouteNetlinkMessage::NewNeighbour(n) = m else {
            continue;
        };
        if !indexes.contains(&n.header.ifindex)
            || !n.header.flags.contains(NeighbourFlags::Own)
            || n.header.state != NeighbourState::Permanent
        {
            continue;
        }
        for a in &n.attributes {
            if let NeighbourAttribute::LinkLayerAddress(b) = a
                && let Ok(mac) = <[u8; 6]>::try_from(b.as_slice())
                // The multicast list is dumped with it (the group bit).
                && mac[0] & 1 == 0
            {
                out.entry(n.header.ifindex)
                    .or_insert_with(Vec::new)
                    .push(crate::topology::Mac(mac));
            }
        }
    }
    Ok(out)
}
