//! The rtnetlink requests nsfw sends, one builder per kind of change, each carrying what it
//! concerns for the error it may come back with.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use ipnetwork::IpNetwork;
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressMessage, AddressScope, CacheInfo,
};
use rtnetlink::packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoBridge, InfoBridgePort, InfoData, InfoKind,
    InfoPortData, InfoPortKind, InfoVeth, LinkAttribute, LinkMessage,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope, RouteType,
};

use crate::resources::{AddrOrig, ROUTE_PROTO, RouteSpec};
use rtnetlink::{
    AddressMessageBuilder, LinkBridge, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder,
};

use super::rtnl::Req;
use crate::topology::Mac;

/// `addrgenmode none`: no IPv6 link-local address on the link. Without it every new
/// interface sends duplicate-address detection, router solicitations and MLD reports that the
/// bridge floods to every other port, so bringing up N namespaces costs N² packet deliveries
/// (and kernel work under RTNL): apply of 4 × 250 namespaces cost 3.7 ms per namespace against
/// 1.95 at 100; with addrgenmode none the cost per namespace stays flat. The kernel refuses it
/// in a creation message and applies it after IFF_UP in a setlink, so it is sent on its own
/// while the link is still down.
pub fn no_link_local(name: &str) -> Req {
    let m = LinkUnspec::new_with_name(name)
        .append_extra_attribute(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
            vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
        )]))
        .build();
    Req::new(
        RouteNetlinkMessage::SetLink(m),
        0,
        format!("cannot switch IPv6 link-local addressing off on {name}"),
    )
}

fn set(m: LinkMessage, what: String) -> Req {
    Req::new(RouteNetlinkMessage::SetLink(m), 0, what)
}

/// The alias that marks a link (or, on a namespace's `lo`, the namespace) as nsfw's.
pub fn mark(name: &str, alias: &str) -> Req {
    set(
        LinkUnspec::new_with_name(name).alias(alias).build(),
        format!("cannot mark interface {name} as nsfw's"),
    )
}

/// `lo` up with nsfw's alias: a namespace's mark.
pub fn mark_lo(alias: &str) -> Req {
    set(
        LinkUnspec::new_with_name("lo").up().alias(alias).build(),
        "cannot bring lo up".to_string(),
    )
}

pub fn up(name: &str) -> Req {
    set(
        LinkUnspec::new_with_name(name).up().build(),
        format!("cannot bring {name} up"),
    )
}

/// Changes of one link's attributes, in one message.
pub fn set_link(
    name: &str,
    mtu: Option<u32>,
    mac: Option<Mac>,
    up: bool,
    master: Option<Option<u32>>,
    arp: bool,
) -> Req {
    let mut b: LinkMessageBuilder<LinkUnspec> = LinkUnspec::new_with_name(name);
    if let Some(m) = mtu {
        b = b.mtu(m);
    }
    if let Some(m) = mac {
        b = b.address(m.0.to_vec());
    }
    match master {
        Some(Some(i)) => b = b.controller(i),
        Some(None) => b = b.nocontroller(),
        None => {}
    }
    if up {
        b = b.up();
    }
    if arp {
        b = b.arp(true);
    }
    set(b.build(), format!("cannot change interface {name}"))
}

/// A bridge, up, with its MTU and MAC (a MAC set by hand keeps the bridge from taking its
/// smallest port's).
pub fn create_bridge(name: &str, mtu: u32, mac: Mac, nf_call: bool) -> Req {
    let mut b = LinkBridge::new(name).mtu(mtu).address(mac.0.to_vec()).up();
    if nf_call {
        b = b.set_info_data(InfoData::Bridge(nf_call_opts(true)));
    }
    let m = b.build();
    Req::new(
        RouteNetlinkMessage::NewLink(m),
        NLM_F_CREATE | NLM_F_EXCL,
        format!("cannot create bridge {name}"),
    )
}

/// A veth pair, both ends down: `host` here, a port of bridge `master` if given; `peer` born inside
/// the namespace `peer_ns` (IFLA_NET_NS_FD) with its MAC. Neither end can be created up: the
/// kernel opens the peer before its other end exists (ENOTCONN).
pub fn create_veth(
    host: &str,
    master: Option<u32>,
    mtu: u32,
    host_mac: Option<Mac>,
    peer: &str,
    peer_ns: &OwnedFd,
    peer_mac: Option<Mac>,
) -> Req {
    let mut p = LinkMessageBuilder::<LinkUnspec>::new()
        .name(peer.to_string())
        .mtu(mtu)
        .setns_by_fd(peer_ns.as_raw_fd());
    if let Some(m) = peer_mac {
        p = p.address(m.0.to_vec());
    }
    let mut b = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
        .name(host.to_string())
        .mtu(mtu);
    if let Some(m) = master {
        b = b.controller(m);
    }
    if let Some(m) = host_mac {
        b = b.address(m.0.to_vec());
    }
    let m = b
        .set_info_data(InfoData::Veth(InfoVeth::Peer(p.build())))
        .build();
    Req::new(
        RouteNetlinkMessage::NewLink(m),
        NLM_F_CREATE | NLM_F_EXCL,
        format!("cannot create veth {host} (peer {peer})"),
    )
}

fn nf_call_opts(on: bool) -> Vec<InfoBridge> {
    vec![
        InfoBridge::NfCallIpTables(on),
        InfoBridge::NfCallIp6Tables(on),
    ]
}

/// A bridge's own nf_call_iptables/ip6tables: its bridged traffic passes the IP hooks (where
/// nsfw's policy judges it) whatever the host-wide bridge-nf-call sysctls say. A change of
/// bridge options is a NEWLINK on the existing bridge.
pub fn bridge_nf_call(name: &str, on: bool) -> Req {
    let m = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Bridge)
        .name(name.to_string())
        .set_info_data(InfoData::Bridge(nf_call_opts(on)))
        .build();
    Req::new(
        RouteNetlinkMessage::NewLink(m),
        0,
        format!("cannot change bridge {name}'s nf_call_iptables"),
    )
}

/// Hairpin mode of a bridge port (`ip link set NAME type bridge_slave hairpin on`): a NEWLINK
/// with the port's own data, which the bridge applies (its `slave_changelink`).
pub fn hairpin(name: &str, on: bool) -> Req {
    let m = LinkUnspec::new_with_name(name)
        .set_port_kind(InfoPortKind::Bridge)
        .set_port_data(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
            on,
        )]))
        .build();
    Req::new(
        RouteNetlinkMessage::NewLink(m),
        0,
        format!("cannot change bridge port {name}'s hairpin mode"),
    )
}

pub fn del_link(name: &str, index: u32) -> Req {
    let mut m = LinkMessage::default();
    m.header.index = index;
    Req::new(
        RouteNetlinkMessage::DelLink(m),
        0,
        format!("cannot delete interface {name}"),
    )
    // Already gone (a veth goes with its peer): the goal is reached.
    .ok_if(&[libc::ENODEV])
}

fn addr_msg(index: u32, net: IpNetwork) -> AddressMessage {
    match net.ip() {
        IpAddr::V4(ip) => AddressMessageBuilder::<std::net::Ipv4Addr>::new()
            .index(index)
            .address(ip, net.prefix())
            .build(),
        IpAddr::V6(ip) => {
            let mut m = AddressMessageBuilder::<std::net::Ipv6Addr>::new()
                .index(index)
                .address(ip, net.prefix())
                .build();
            // No duplicate-address detection: the file's addresses are unique (validation
            // checks), and a tentative address could not be used for a second or two after
            // apply returns.
            m.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
            m
        }
    }
}

/// An address as someone else had it (a physical port's, `plan::ports`): its flags, scope
/// and lifetimes too. IPv6 ones still skip duplicate-address detection: the address only
/// moves between the port and the bridge it is a port of.
pub fn add_addr_as(ifname: &str, index: u32, net: IpNetwork, o: &AddrOrig) -> Req {
    let mut m = addr_msg(index, net);
    m.header.scope = AddressScope::from(o.scope);
    let nodad = if net.is_ipv6() { IFA_F_NODAD } else { 0 };
    // Only what an address can be given: not secondary, tentative, deprecated, permanent
    // (which follows the lifetime).
    let flags = (o.flags & SETTABLE_ADDR_FLAGS) | nodad;
    m.attributes
        .retain(|a| !matches!(a, AddressAttribute::Flags(_)));
    m.attributes
        .push(AddressAttribute::Flags(AddressFlags::from_bits_retain(
            flags,
        )));
    if o.valid != u32::MAX || o.preferred != u32::MAX {
        let mut c = CacheInfo::default();
        c.ifa_preferred = o.preferred.min(o.valid);
        c.ifa_valid = o.valid;
        m.attributes.push(AddressAttribute::CacheInfo(c));
    }
    Req::new(
        RouteNetlinkMessage::NewAddress(m),
        NLM_F_CREATE | NLM_F_REPLACE,
        format!("cannot add address {net} to {ifname}"),
    )
}

/// IFA_F_NODAD, IFA_F_HOMEADDRESS, IFA_F_MANAGETEMPADDR, IFA_F_NOPREFIXROUTE,
/// IFA_F_MCAUTOJOIN: the flags a new address can be given.
const SETTABLE_ADDR_FLAGS: u32 = 0x02 | 0x10 | 0x100 | 0x200 | 0x400;
const IFA_F_NODAD: u32 = 0x02;

pub fn add_addr(ifname: &str, index: u32, net: IpNetwork) -> Req {
    Req::new(
        RouteNetlinkMessage::NewAddress(addr_msg(index, net)),
        NLM_F_CREATE | NLM_F_REPLACE,
        format!("cannot add address {net} to {ifname}"),
    )
}

pub fn del_addr(ifname: &str, index: u32, net: IpNetwork) -> Req {
    Req::new(
        RouteNetlinkMessage::DelAddress(addr_msg(index, net)),
        0,
        format!("cannot remove address {net} from {ifname}"),
    )
    .ok_if(&[libc::EADDRNOTAVAIL])
}

fn route_msg(r: &RouteSpec, oif: Option<u32>) -> RouteMessage {
    let (dst, via) = (r.dst, r.via);
    let mut m = match (dst, via) {
        (IpNetwork::V4(d), v) => {
            let mut b = RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .destination_prefix(d.network(), d.prefix());
            if let Some(i) = oif {
                b = b.output_interface(i);
            }
            if let Some(IpAddr::V4(g)) = v {
                b = b.gateway(g);
            }
            b.build()
        }
        (IpNetwork::V6(d), v) => {
            let mut b = RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .destination_prefix(d.network(), d.prefix());
            if let Some(i) = oif {
                b = b.output_interface(i);
            }
            if let Some(IpAddr::V6(g)) = v {
                b = b.gateway(g);
            }
            b.build()
        }
    };
    m.header.protocol = RouteProtocol::from(ROUTE_PROTO);
    m.header.scope = if via.is_some() || r.kind != crate::resources::RTN_UNICAST {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    m.header.kind = RouteType::from(r.kind);
    if r.metric != 0 {
        m.attributes.push(RouteAttribute::Priority(r.metric));
    }
    // A route of somebody else's, put back as it was.
    if let Some(o) = &r.orig {
        m.header.protocol = RouteProtocol::from(o.proto);
        m.header.scope = RouteScope::from(o.scope);
        m.header.flags = RouteFlags::from_bits_retain(o.flags & RTNH_F_ONLINK);
        match o.prefsrc {
            Some(IpAddr::V4(a)) => m
                .attributes
                .push(RouteAttribute::PrefSource(RouteAddress::Inet(a))),
            Some(IpAddr::V6(a)) => m
                .attributes
                .push(RouteAttribute::PrefSource(RouteAddress::Inet6(a))),
            None => {}
        }
        match u8::try_from(o.table) {
            Ok(t) => m.header.table = t,
            Err(_) => {
                m.header.table = 252; // RT_TABLE_COMPAT: the real one is in RTA_TABLE
                m.attributes.push(RouteAttribute::Table(o.table));
            }
        }
    }
    m
}

/// The one route flag a new route can be given (`onlink`).
const RTNH_F_ONLINK: u32 = 4;

/// Adds the route, or replaces the one to the same destination and metric: no moment
/// without one.
pub fn replace_route(r: &RouteSpec, oif: u32) -> Req {
    Req::new(
        RouteNetlinkMessage::NewRoute(route_msg(r, Some(oif))),
        NLM_F_CREATE | NLM_F_REPLACE,
        format!("cannot add route {r}"),
    )
}

/// Deletes the route (any output interface when `oif` is None: a blackhole has none).
pub fn del_route(r: &RouteSpec, oif: Option<u32>) -> Req {
    let what = r.to_string();
    let mut m = route_msg(r, oif);
    // Any protocol: a route someone else added is deleted too (it is drift).
    m.header.protocol = RouteProtocol::Unspec;
    m.header.scope = RouteScope::NoWhere;
    m.header.flags = RouteFlags::empty();
    Req::new(
        RouteNetlinkMessage::DelRoute(m),
        0,
        format!("cannot delete route {what}"),
    )
    .ok_if(&[libc::ESRCH])
}
