//! Telling a segment that an address moved to another interface (another MAC): a
//! gratuitous ARP request (sender and target address both the address, broadcast) for IPv4,
//! an unsolicited neighbour advertisement with the override flag (to all nodes) for IPv6,
//! with the router flag when the interface forwards IPv6 (else the LAN's hosts that learned
//! it as a router clear IsRouter and drop the default route through it, RFC 4861 7.2.5).
//! The LAN's neighbour entries otherwise keep the old MAC until they go stale and are probed
//! again — about ten seconds in which nothing reaches the host. Linux takes a gratuitous ARP
//! request over an entry regardless of its lock time, and an NA with override at once.
//! Sent as raw frames on an AF_PACKET socket bound to nothing (the interface is named in the
//! destination address): closing one waits for an RCU grace period (`packet_release` calls
//! `synchronize_net`, ~20 ms), so the common case, an address arriving on a namespace's own
//! interface, is left to the kernel instead (`by_kernel`).

use std::collections::BTreeSet;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context, Result, anyhow};
use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, route::RouteType};
use socket2::{Domain, SockAddr, SockAddrStorage, Socket, Type};

use netlink_packet_route::link::{
    BridgePortState, InfoBridgePort, InfoPortData, LinkAttribute, LinkInfo, LinkMessage,
};

use super::{Conn, Req};

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;

/// The frame that announces `addr` at `mac`, and its ethertype.
fn frame(addr: IpAddr, mac: [u8; 6], router: bool) -> (Vec<u8>, u16) {
    match addr {
        IpAddr::V4(a) => (garp(a, mac), ETH_P_ARP),
        IpAddr::V6(a) => (unsolicited_na(a, mac, router), ETH_P_IPV6),
    }
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(86);
    f.extend(dst);
    f.extend(src);
    f.extend(ethertype.to_be_bytes());
    f
}

/// `arp who-has A tell A` from `mac`, to everyone.
pub(super) fn garp(a: Ipv4Addr, mac: [u8; 6]) -> Vec<u8> {
    let mut f = ethernet([0xff; 6], mac, ETH_P_ARP);
    // Ethernet, IPv4, 6-byte and 4-byte addresses, a request.
    f.extend([0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend(mac);
    f.extend(a.octets());
    f.extend([0; 6]);
    f.extend(a.octets());
    f
}

/// An unsolicited neighbour advertisement of `a` at `mac` from `a` to ff02::1, override set
/// (and router, from a router), with the target link-layer address option (RFC 4861 7.2.6).
fn unsolicited_na(a: Ipv6Addr, mac: [u8; 6], router: bool) -> Vec<u8> {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let flags = if router { 0xa0 } else { 0x20 };
    let mut icmp = vec![136, 0, 0, 0, flags, 0, 0, 0];
    icmp.extend(a.octets());
    icmp.extend([2, 1]);
    icmp.extend(mac);
    let sum = checksum(a, all_nodes, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut f = ethernet([0x33, 0x33, 0, 0, 0, 1], mac, ETH_P_IPV6);
    f.extend([0x60, 0, 0, 0]);
    f.extend(u16::try_from(icmp.len()).unwrap_or(32).to_be_bytes());
    f.extend([58, 255]); // ICMPv6, hop limit 255 (the receiver checks it)
    f.extend(a.octets());
    f.extend(all_nodes.octets());
    f.extend(icmp);
    f
}

/// ICMPv6's checksum: over the pseudo-header (addresses, length, next header) and the message.
fn checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut data = Vec::with_capacity(40 + msg.len());
    data.extend(src.octets());
    data.extend(dst.octets());
    data.extend((msg.len() as u32).to_be_bytes());
    data.extend([0, 0, 0, 58]);
    data.extend(msg);
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The link-layer destination of a frame on interface `ifindex`.
#[allow(unsafe_code)]
pub(super) fn link_addr(ifindex: u32, ethertype: u16, dst: &[u8]) -> Result<SockAddr> {
    let mut sll_addr = [0u8; 8];
    sll_addr[..6].copy_from_slice(&dst[..6]);
    let ll = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: ethertype.to_be(),
        sll_ifindex: i32::try_from(ifindex)?,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr,
    };
    let mut st = SockAddrStorage::zeroed();
    // SAFETY: socket2 has no constructor for a link-layer address. sockaddr_storage is large
    // and aligned enough for any address, sockaddr_ll included; the whole struct is written at
    // its start and the length given is exactly its size.
    let addr = unsafe {
        *st.view_as::<libc::sockaddr_ll>() = ll;
        SockAddr::new(st, size_of::<libc::sockaddr_ll>() as libc::socklen_t)
    };
    Ok(addr)
}

/// Whether `ifname` forwards IPv6 (`net.ipv6.conf.IFNAME.forwarding`): the host is a router
/// on it. Unreadable: not.
fn forwards_v6(ifname: &str) -> bool {
    std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{ifname}/forwarding"))
        .is_ok_and(|s| s.trim() == "1")
}

/// Announces `addr` on interface `ifname` (of the caller's namespace) at `mac`: the frame sent
/// twice, as hosts do, in case the first is lost.
pub(crate) fn announce(ifname: &str, addr: IpAddr, mac: [u8; 6]) -> Result<()> {
    announce_all(&[(ifname, addr, mac)]).pop().unwrap_or(Ok(()))
}

/// Each of `what` (interface, address, MAC) announced as `announce` does, over one packet
/// socket (its close is the ~20 ms): one result each, in order.
pub(crate) fn announce_all(what: &[(&str, IpAddr, [u8; 6])]) -> Vec<Result<()>> {
    // Nothing to send: no socket, whose close would cost the grace period for nothing.
    if what.is_empty() {
        return Vec::new();
    }
    let sock = match Socket::new(Domain::PACKET, Type::RAW, None) {
        Ok(s) => s,
        Err(e) => {
            return what
                .iter()
                .map(|(i, a, _)| {
                    Err(anyhow!(
                        "cannot open a packet socket to announce {a} on {i}: {e}"
                    ))
                })
                .collect();
        }
    };
    what.iter()
        .map(|(ifname, addr, mac)| send_twice(&sock, ifname, *addr, *mac))
        .collect()
}

fn send_twice(sock: &Socket, ifname: &str, addr: IpAddr, mac: [u8; 6]) -> Result<()> {
    let ifindex =
        nix::net::if_::if_nametoindex(ifname).with_context(|| format!("no interface {ifname}"))?;
    let (f, ethertype) = frame(addr, mac, forwards_v6(ifname));
    let to = link_addr(ifindex, ethertype, &f[..6])?;
    for _ in 0..2 {
        sock.send_to(&f, &to)
            .map_err(|e| anyhow!("cannot announce {addr} on {ifname}: {e}"))?;
    }
    Ok(())
}

/// The request that makes the kernel announce IPv4 address `a` of interface `index` (the
/// caller's namespace's) itself: a neighbour entry for the interface's own address, asked to
/// resolve (`NTF_USE`, as `ip neigh replace A dev D use`), is solicited from that address —
/// `who-has A tell A` from the interface's MAC, a gratuitous ARP (`arp_solicit` picks the
/// interface's address as the sender). Every port of the segment hears it, and Linux takes a
/// gratuitous ARP over an entry for A regardless of its lock time. No packet socket to close,
/// one request on a connection the run has open. The entry is left to the kernel (not
/// permanent: it is collected): it asks twice more, a second apart (`mcast_probes`), as
/// hosts announce twice. Sent once the interface's bridge port forwards (`await_forwarding`).
pub(crate) fn by_kernel(ifname: &str, index: u32, a: Ipv4Addr) -> Req {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.ifindex = index;
    m.header.state = NeighbourState::None;
    m.header.flags = NeighbourFlags::Use;
    m.header.kind = RouteType::Unspec;
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(a)));
    Req::new(
        RouteNetlinkMessage::NewNeighbour(m),
        NLM_F_CREATE | NLM_F_REPLACE,
        format!("cannot announce {a} on {ifname}"),
    )
}

/// Waits (at most `patience`, one deadline for all) until each of host links `ports` forwards
/// as a bridge port: a port whose other end just came up is enabled by the kernel's link
/// watch, a moment later, and drops what arrives until then (a gratuitous ARP sent then would
/// be lost). A port that is not there, or no bridge port, is not waited for. The ports are
/// polled together, so K ports that never forward (STP on the bridge: listening, then
/// learning, for seconds) cost one `patience`, not K. Returns those still not forwarding.
pub(crate) fn await_forwarding(
    c: &mut Conn,
    ports: &[&str],
    patience: std::time::Duration,
) -> BTreeSet<String> {
    let deadline = std::time::Instant::now() + patience;
    let mut waiting: Vec<&str> = ports.to_vec();
    loop {
        waiting.retain(|p| port_state(c, p).is_some_and(|s| s != BridgePortState::Forwarding));
        if waiting.is_empty() || std::time::Instant::now() >= deadline {
            return waiting.into_iter().map(str::to_string).collect();
        }
        std::thread::sleep(std::time::Duration::from_micros(500));
    }
}

/// The bridge port state of host link `name`; None: no such link, or no bridge port.
fn port_state(c: &mut Conn, name: &str) -> Option<BridgePortState> {
    let mut req = LinkMessage::default();
    req.attributes.push(LinkAttribute::IfName(name.to_string()));
    let what = format!("interface {name}");
    let Ok(Some(RouteNetlinkMessage::NewLink(l))) =
        c.get(RouteNetlinkMessage::GetLink(req), &what, &[libc::ENODEV])
    else {
        return None;
    };
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::PortData(InfoPortData::BridgePort(v)) => v.iter().find_map(|x| match x {
                InfoBridgePort::State(s) => Some(*s),
                _ => None,
            }),
            _ => None,
        }),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gratuitous_arp_names_the_address_twice_and_the_mac_once() {
        let f = garp(Ipv4Addr::new(192, 0, 2, 2), [2, 0, 0, 0, 0, 9]);
        assert_eq!(f.len(), 42);
        assert_eq!(&f[..6], &[0xff; 6]);
        assert_eq!(&f[12..14], &[8, 6]);
        assert_eq!(&f[28..32], &[192, 0, 2, 2]);
        assert_eq!(&f[38..42], &[192, 0, 2, 2]);
        assert_eq!(&f[22..28], &[2, 0, 0, 0, 0, 9]);
    }

    #[test]
    fn an_unsolicited_na_checks_out() {
        let a: Ipv6Addr = "2001:db8::1".parse().expect("addr");
        let f = unsolicited_na(a, [2, 0, 0, 0, 0, 9], false);
        assert_eq!(f.len(), 14 + 40 + 32);
        // The checksum over pseudo-header and message, the checksum included, sums to 0.
        let all = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        assert_eq!(checksum(a, all, &f[54..]), 0);
        assert_eq!(f[54], 136);
        assert_eq!(f[58], 0x20);
        // From a router: router and override.
        let f = unsolicited_na(a, [2, 0, 0, 0, 0, 9], true);
        assert_eq!(checksum(a, all, &f[54..]), 0);
        assert_eq!(f[58], 0xa0);
    }
}
