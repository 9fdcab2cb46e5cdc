//! Addresses and routes as rtnetlink's messages say them, in nsfw's terms.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType,
};

use super::objects::{Addr, Route};

pub(super) fn parse_addr(m: &AddressMessage) -> Option<Addr> {
    let ip = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    // IPv6 addresses carry only IFA_ADDRESS.
    let ip = ip.or_else(|| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })?;
    // IFA_FLAGS holds all 32 bits; the header's byte only the low 8.
    let flags = m
        .attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Flags(f) => Some(f.bits()),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.flags.bits()));
    let (valid, preferred) = m
        .attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::CacheInfo(c) => Some((c.ifa_valid, c.ifa_preferred)),
            _ => None,
        })
        .unwrap_or((u32::MAX, u32::MAX));
    let brd = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Broadcast(b) => Some(*b),
        _ => None,
    });
    let metric = m
        .attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::RoutePriority(p) => Some(*p),
            _ => None,
        })
        .unwrap_or(0);
    Some(Addr {
        index: m.header.index,
        net: IpNetwork::new(ip, m.header.prefix_len).ok()?,
        flags,
        scope: u8::from(m.header.scope),
        valid,
        preferred,
        brd,
        metric,
    })
}

pub(super) fn parse_route(m: &RouteMessage) -> Option<Route> {
    let kind: u8 = match m.header.kind {
        RouteType::Unicast => 1,
        RouteType::BlackHole => 6,
        RouteType::Unreachable => 7,
        RouteType::Prohibit => 8,
        _ => return None,
    };
    let v6 = match m.header.address_family {
        AddressFamily::Inet => false,
        AddressFamily::Inet6 => true,
        _ => return None,
    };
    let mut table = u32::from(m.header.table);
    let mut dst: IpAddr = if v6 {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    };
    let mut gateway = None;
    let mut oif = None;
    let mut metric = 0;
    let mut prefsrc = None;
    let mut metrics = [0; 18];
    for a in &m.attributes {
        match a {
            RouteAttribute::Metrics(x) => metrics = super::rtax::read(x),
            RouteAttribute::PrefSource(RouteAddress::Inet(ip)) => prefsrc = Some((*ip).into()),
            RouteAttribute::PrefSource(RouteAddress::Inet6(ip)) => prefsrc = Some((*ip).into()),
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = (*ip).into(),
            RouteAttribute::Destination(RouteAddress::Inet6(ip)) => dst = (*ip).into(),
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some((*ip).into()),
            RouteAttribute::Gateway(RouteAddress::Inet6(ip)) => gateway = Some((*ip).into()),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    Some(Route {
        dst: IpNetwork::new(dst, m.header.destination_prefix_length).ok()?,
        gateway,
        oif,
        kernel: m.header.protocol == RouteProtocol::Kernel,
        ours: u8::from(m.header.protocol) == crate::resources::ROUTE_PROTO,
        metric,
        kind,
        table,
        proto: u8::from(m.header.protocol),
        scope: u8::from(m.header.scope),
        flags: m.header.flags.bits(),
        prefsrc,
        metrics,
    })
}
