//! The rtnetlink requests nsfw sends, one builder per kind of change, each carrying what it
//! concerns for the error it may come back with.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use ipnetwork::IpNetwork;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressMessage, AddressScope, CacheInfo,
};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoBridge, InfoBridgePort, InfoData, InfoKind,
    InfoPortData, InfoPortKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::resources::{AddrOrig, ROUTE_PROTO, RouteSpec};

use super::rtnl::Req;
use crate::topology::Mac;

/// A link message with these attributes, the link named by the first (IFLA_IFNAME), and
/// IFLA_LINKINFO last when `info` holds anything.
fn link_msg(attrs: Vec<LinkAttribute>, info: Vec<LinkInfo>) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.attributes = attrs;
    if !info.is_empty() {
        m.attributes.push(LinkAttribute::LinkInfo(info));
    }
    m
}

/// `ip link set NAME up`: IFF_UP, and the change mask that says only it changes.
fn set_up(m: &mut LinkMessage) {
    m.header.flags |= LinkFlags::Up;
    m.header.change_mask |= LinkFlags::Up;
}

fn name(n: &str) -> LinkAttribute {
    LinkAttribute::IfName(n.to_string())
}

/// `addrgenmode none`: no IPv6 link-local address on the link. Without it every new
/// interface sends duplicate-address detection, router solicitations and MLD reports that the
/// bridge floods to every other port, so bringing up N namespaces costs N² packet deliveries
/// (and kernel work under RTNL): apply of 4 × 250 namespaces cost 3.7 ms per namespace against
/// 1.95 at 100; with addrgenmode none the cost per namespace stays flat. The kernel refuses it
/// in a creation message and applies it after IFF_UP in a setlink, so it is sent on its own
/// while the link is still down.
pub(crate) fn no_link_local(name: &str) -> Req {
    let off = AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)]);
    let m = link_msg(
        vec![self::name(name), LinkAttribute::AfSpecUnspec(vec![off])],
        Vec::new(),
    );
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
pub(crate) fn mark(name: &str, alias: &str) -> Req {
    set(
        link_msg(
            vec![self::name(name), LinkAttribute::IfAlias(alias.to_string())],
            Vec::new(),
        ),
        format!("cannot mark interface {name} as nsfw's"),
    )
}

/// `lo` up with nsfw's alias: a namespace's mark.
pub(crate) fn mark_lo(alias: &str) -> Req {
    let mut m = link_msg(
        vec![name("lo"), LinkAttribute::IfAlias(alias.to_string())],
        Vec::new(),
    );
    set_up(&mut m);
    set(m, "cannot bring lo up".to_string())
}

pub(crate) fn up(name: &str) -> Req {
    let mut m = link_msg(vec![self::name(name)], Vec::new());
    set_up(&mut m);
    set(m, format!("cannot bring {name} up"))
}

/// `ip link set NAME down`: IFF_UP cleared, and said to change.
pub(crate) fn set_down(name: &str) -> Req {
    let mut m = link_msg(vec![self::name(name)], Vec::new());
    m.header.change_mask |= LinkFlags::Up;
    set(m, format!("cannot set {name} down"))
}

/// Changes of one link's attributes, in one message.
pub(crate) fn set_link(
    name: &str,
    mtu: Option<u32>,
    mac: Option<Mac>,
    up: bool,
    master: Option<Option<u32>>,
    arp: bool,
) -> Req {
    let mut attrs = vec![self::name(name)];
    if let Some(m) = mtu {
        attrs.push(LinkAttribute::Mtu(m));
    }
    if let Some(m) = mac {
        attrs.push(LinkAttribute::Address(m.0.to_vec()));
    }
    match master {
        Some(Some(i)) => attrs.push(LinkAttribute::Controller(i)),
        // Controller 0: no master (`ip link set NAME nomaster`).
        Some(None) => attrs.push(LinkAttribute::Controller(0)),
        None => {}
    }
    let mut m = link_msg(attrs, Vec::new());
    if up {
        set_up(&mut m);
    }
    if arp {
        // ARP on: IFF_NOARP cleared, and said to change.
        m.header.flags.remove(LinkFlags::Noarp);
        m.header.change_mask |= LinkFlags::Noarp;
    }
    set(m, format!("cannot change interface {name}"))
}

/// A bridge, up, with its MTU and MAC (a MAC set by hand keeps the bridge from taking its
/// smallest port's).
pub(crate) fn create_bridge(name: &str, mtu: u32, mac: Mac, nf_call: bool) -> Req {
    let mut info = vec![LinkInfo::Kind(InfoKind::Bridge)];
    if nf_call {
        info.push(LinkInfo::Data(InfoData::Bridge(nf_call_opts(true))));
    }
    let mut m = link_msg(
        vec![
            self::name(name),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::Address(mac.0.to_vec()),
        ],
        info,
    );
    set_up(&mut m);
    Req::new(
        RouteNetlinkMessage::NewLink(m),
        NLM_F_CREATE | NLM_F_EXCL,
        format!("cannot create bridge {name}"),
    )
}

/// A veth pair, both ends down: `host` here, a port of bridge `master` if given; `peer` born inside
/// the namespace `peer_ns` (IFLA_NET_NS_FD) with its MAC. Neither end can be created up: the
/// kernel opens the peer before its other end exists (ENOTCONN).
pub(crate) fn create_veth(
    host: &str,
    master: Option<u32>,
    mtu: u32,
    host_mac: Option<Mac>,
    peer: &str,
    peer_ns: &OwnedFd,
    peer_mac: Option<Mac>,
) -> Req {
    let mut p = vec![
        name(peer),
        LinkAttribute::Mtu(mtu),
        LinkAttribute::NetNsFd(peer_ns.as_raw_fd()),
    ];
    if let Some(m) = peer_mac {
        p.push(LinkAttribute::Address(m.0.to_vec()));
    }
    let mut h = vec![name(host), LinkAttribute::Mtu(mtu)];
    if let Some(m) = master {
        h.push(LinkAttribute::Controller(m));
    }
    if let Some(m) = host_mac {
        h.push(LinkAttribute::Address(m.0.to_vec()));
    }
    let peer_msg = link_msg(p, Vec::new());
    let m = link_msg(
        h,
        vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ],
    );
    Req::new(
        RouteNetlinkMessage::NewLink(m),
        NLM_F_CREATE | NLM_F_EXCL,
        format!("cannot create veth {host} (peer {peer})"),
    )
}

/// A macvlan (or macvtap) child of `uplink` (its index, in the namespace the request is sent
/// from), down, with its mode and MAC; born in `ns` when given (IFLA_NET_NS_FD), else here.
/// `mtu` 0: the uplink's.
pub(crate) fn create_macvlan(
    name: &str,
    (uplink, index): (&str, u32),
    (mode, tap): (crate::topology::MacvlanMode, bool),
    mtu: u32,
    mac: Option<Mac>,
    ns: Option<&OwnedFd>,
) -> Req {
    use netlink_packet_route::link::{InfoMacVlan, InfoMacVtap, MacVlanMode};
    let mut a = vec![self::name(name), LinkAttribute::Link(index)];
    if mtu != 0 {
        a.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(m) = mac {
        a.push(LinkAttribute::Address(m.0.to_vec()));
    }
    if let Some(fd) = ns {
        a.push(LinkAttribute::NetNsFd(fd.as_raw_fd()));
    }
    let m = MacVlanMode::from(mode.number());
    let (kind, data) = if tap {
        (
            InfoKind::MacVtap,
            InfoData::MacVtap(vec![InfoMacVtap::Mode(m)]),
        )
    } else {
        (
            InfoKind::MacVlan,
            InfoData::MacVlan(vec![InfoMacVlan::Mode(m)]),
        )
    };
    Req::new(
        RouteNetlinkMessage::NewLink(link_msg(
            a,
            vec![LinkInfo::Kind(kind), LinkInfo::Data(data)],
        )),
        NLM_F_CREATE | NLM_F_EXCL,
        format!(
            "cannot create {} {name} on {}",
            if tap { "macvtap" } else { "macvlan" },
            uplink
        ),
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
pub(crate) fn bridge_nf_call(name: &str, on: bool) -> Req {
    let m = link_msg(
        vec![self::name(name)],
        vec![
            LinkInfo::Kind(InfoKind::Bridge),
            LinkInfo::Data(InfoData::Bridge(nf_call_opts(on))),
        ],
    );
    Req::new(
        RouteNetlinkMessage::NewLink(m),
        0,
        format!("cannot change bridge {name}'s nf_call_iptables"),
    )
}

/// Hairpin mode of a bridge port (`ip link set NAME type bridge_slave hairpin on`): a NEWLINK
/// with the port's own data, which the bridge applies (its `slave_changelink`).
pub(crate) fn hairpin(name: &str, on: bool) -> Req {
    let m = link_msg(
        vec![self::name(name)],
        vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                on,
            )])),
        ],
    );
    Req::new(
        RouteNetlinkMessage::NewLink(m),
        0,
        format!("cannot change bridge port {name}'s hairpin mode"),
    )
}

/// Isolation of a bridge port (`ip link set NAME type bridge_slave isolated on`): an
/// isolated port exchanges no frame with another isolated port of its bridge, whatever its
/// ethertype; the bridge itself and the ports that are not isolated still reach it.
pub(crate) fn isolated(name: &str, on: bool) -> Req {
    let m = link_msg(
        vec![self::name(name)],
        vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::Isolated(on)])),
        ],
    );
    Req::new(
        RouteNetlinkMessage::NewLink(m),
        0,
        format!("cannot change bridge port {name}'s isolation"),
    )
}

pub(crate) fn del_link(name: &str, index: u32) -> Req {
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

/// `ip address add NET dev INDEX` as `ip` sends it: IFA_ADDRESS and IFA_LOCAL, whatever the
/// address (a multicast one too), and an IPv4 subnet's broadcast address. The same message
/// removes an address: the kernel removes the first of the link's addresses that the
/// attributes given match, so a removal naming no address (as this message once was for an
/// IPv4 multicast one) took nsfw's own address instead of someone's 239.1.1.1/32.
fn addr_msg(index: u32, net: IpNetwork) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.index = index;
    m.header.prefix_len = net.prefix();
    let a = &mut m.attributes;
    a.push(AddressAttribute::Address(net.ip()));
    a.push(AddressAttribute::Local(net.ip()));
    match net.ip() {
        IpAddr::V4(ip) => {
            m.header.family = AddressFamily::Inet;
            if !ip.is_multicast() && net.prefix() < 31 {
                let brd = u32::MAX >> u32::from(net.prefix()) | u32::from(ip);
                a.push(AddressAttribute::Broadcast(brd.into()));
            }
        }
        IpAddr::V6(_) => {
            m.header.family = AddressFamily::Inet6;
            // No duplicate-address detection: the file's addresses are unique (validation
            // checks), and a tentative address could not be used for a second or two after
            // apply returns.
            a.push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
    }
    m
}

/// An address as someone else had it (a physical port's, `plan::ports`): its flags, scope
/// and lifetimes too. IPv6 ones still skip duplicate-address detection: the address only
/// moves between the port and the bridge it is a port of.
pub(crate) fn add_addr_as(ifname: &str, index: u32, net: IpNetwork, o: &AddrOrig) -> Req {
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
    // Its broadcast address as it was, or none if it had none (not the subnet's by default),
    // and the metric of its subnet's route.
    m.attributes
        .retain(|a| !matches!(a, AddressAttribute::Broadcast(_)));
    if let (Some(b), true) = (o.brd, net.is_ipv4()) {
        m.attributes.push(AddressAttribute::Broadcast(b));
    }
    if o.metric != 0 {
        m.attributes.push(AddressAttribute::RoutePriority(o.metric));
    }
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

pub(crate) fn add_addr(ifname: &str, index: u32, net: IpNetwork) -> Req {
    Req::new(
        RouteNetlinkMessage::NewAddress(addr_msg(index, net)),
        NLM_F_CREATE | NLM_F_REPLACE,
        format!("cannot add address {net} to {ifname}"),
    )
}

/// An address already gone is removed. So is an IPv6 one on a link that lost IPv6 since the
/// plan was made (ENXIO, "IPv6 is disabled on this device"): the kernel takes its addresses
/// with it, as when the same run lowers the link's MTU below 1,280 first.
pub(crate) fn del_addr(ifname: &str, index: u32, net: IpNetwork) -> Req {
    let gone: &'static [i32] = if net.is_ipv6() {
        &[libc::EADDRNOTAVAIL, libc::ENXIO]
    } else {
        &[libc::EADDRNOTAVAIL]
    };
    Req::new(
        RouteNetlinkMessage::DelAddress(addr_msg(index, net)),
        0,
        format!("cannot remove address {net} from {ifname}"),
    )
    .ok_if(gone)
}

fn route_msg(r: &RouteSpec, oif: Option<u32>) -> RouteMessage {
    let (dst, via) = (r.dst, r.via);
    let mut m = RouteMessage::default();
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    m.header.destination_prefix_length = dst.prefix();
    let (family, dst, gateway) = match (dst, via) {
        (IpNetwork::V4(d), v) => (
            AddressFamily::Inet,
            RouteAddress::Inet(d.network()),
            match v {
                Some(IpAddr::V4(g)) => Some(RouteAddress::Inet(g)),
                _ => None,
            },
        ),
        (IpNetwork::V6(d), v) => (
            AddressFamily::Inet6,
            RouteAddress::Inet6(d.network()),
            match v {
                Some(IpAddr::V6(g)) => Some(RouteAddress::Inet6(g)),
                _ => None,
            },
        ),
    };
    m.header.address_family = family;
    m.attributes.push(RouteAttribute::Destination(dst));
    if let Some(i) = oif {
        m.attributes.push(RouteAttribute::Oif(i));
    }
    if let Some(g) = gateway {
        m.attributes.push(RouteAttribute::Gateway(g));
    }
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
    // Its preferred source (`src`): one of nsfw's own here, a port's with the rest below.
    if let (Some(a), None) = (r.src, &r.orig) {
        m.attributes.push(prefsrc(a));
    }
    // A route of somebody else's, put back as it was.
    if let Some(o) = &r.orig {
        let metrics = super::rtax::write(&o.metrics);
        if !metrics.is_empty() {
            m.attributes.push(RouteAttribute::Metrics(metrics));
        }
        m.header.protocol = RouteProtocol::from(o.proto);
        m.header.scope = RouteScope::from(o.scope);
        m.header.flags = RouteFlags::from_bits_retain(o.flags & RTNH_F_ONLINK);
        if let Some(a) = o.prefsrc {
            m.attributes.push(prefsrc(a));
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

fn prefsrc(a: IpAddr) -> RouteAttribute {
    match a {
        IpAddr::V4(a) => RouteAttribute::PrefSource(RouteAddress::Inet(a)),
        IpAddr::V6(a) => RouteAttribute::PrefSource(RouteAddress::Inet6(a)),
    }
}

/// The one route flag a new route can be given (`onlink`).
const RTNH_F_ONLINK: u32 = 4;

/// Adds the route, or replaces the one to the same destination and metric: no moment
/// without one.
pub(crate) fn replace_route(r: &RouteSpec, oif: u32) -> Req {
    Req::new(
        RouteNetlinkMessage::NewRoute(route_msg(r, Some(oif))),
        NLM_F_CREATE | NLM_F_REPLACE,
        format!("cannot add route {r}"),
    )
}

/// Deletes the route (any output interface when `oif` is None: a blackhole has none).
pub(crate) fn del_route(r: &RouteSpec, oif: Option<u32>) -> Req {
    let what = r.to_string();
    let mut m = route_msg(r, oif);
    // Any protocol: a route someone else added is deleted too (it is drift).
    m.header.protocol = RouteProtocol::Unspec;
    m.header.scope = RouteScope::NoWhere;
    m.header.flags = RouteFlags::empty();
    // Whatever its source: IPv4 would match only a route with the same one, and one of
    // nsfw's whose source changed by hand is still to go.
    if r.orig.is_none() {
        m.attributes
            .retain(|a| !matches!(a, RouteAttribute::PrefSource(_)));
    }
    Req::new(
        RouteNetlinkMessage::DelRoute(m),
        0,
        format!("cannot delete route {what}"),
    )
    .ok_if(&[libc::ESRCH])
}

/// A VXLAN link, down, of VNI `id` from `local` over UDP `port`, learning the MACs behind
/// its peers (the all-zeros FDB entries say where the rest goes). Its MAC is derived, as
/// every link nsfw makes, so that a run killed before marking it knows it again.
pub(crate) fn create_vxlan(
    name: &str,
    (mtu, mac): (u32, Mac),
    id: u32,
    local: IpAddr,
    port: u16,
) -> Req {
    use netlink_packet_route::link::InfoVxlan;
    let mut data = vec![InfoVxlan::Id(id), InfoVxlan::Port(port)];
    data.push(match local {
        IpAddr::V4(a) => InfoVxlan::Local(a),
        IpAddr::V6(a) => InfoVxlan::Local6(a),
    });
    let m = link_msg(
        vec![
            self::name(name),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::Address(mac.0.to_vec()),
        ],
        vec![
            LinkInfo::Kind(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(data)),
        ],
    );
    Req::new(
        RouteNetlinkMessage::NewLink(m),
        NLM_F_CREATE | NLM_F_EXCL,
        format!("cannot create VXLAN link {name} (VNI {id}, local {local}, port {port})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_message_names_its_address_whatever_the_address() {
        for net in ["239.1.1.1/32", "10.0.0.2/24", "ff05::1/128", "fd00::2/64"] {
            let net: IpNetwork = net.parse().unwrap();
            let m = addr_msg(7, net);
            for want in [
                AddressAttribute::Local(net.ip()),
                AddressAttribute::Address(net.ip()),
            ] {
                assert!(m.attributes.contains(&want), "{net}: {want:?} missing");
            }
        }
    }
}
