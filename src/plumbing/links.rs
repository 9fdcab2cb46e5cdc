//! Reading links: every link of a namespace (the one a connection is bound to, or another by
//! the id the host knows it by), or one by name or index. Dumps go through `linkmsg`'s fast
//! reader; single gets, and in debug builds (the tests') every dumped link again, through
//! netlink-packet-route's general parser, which the fast one is held to.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::Result;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    AfSpecInet, AfSpecInet6, AfSpecUnspec, InfoBridge, InfoBridgePort, InfoData, InfoPortData,
    LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo, LinkMessage,
};

use super::objects::Link;
use super::rtnl::Conn;
use crate::topology::Mac;

/// Every link of the namespace `c` is bound to.
pub(crate) fn links(c: &mut Conn) -> Result<Vec<Link>> {
    dump(c, None, "interfaces")
}

/// Every link of the namespace the one `c` is bound to knows by `nsid` (RTM_GETLINK with
/// IFLA_TARGET_NETNSID), read without entering it. Their IFLA_LINK_NETNSID values are the
/// ids `c`'s namespace gives, where a read inside gives that namespace's own.
pub(crate) fn links_of(c: &mut Conn, nsid: i32) -> Result<Vec<Link>> {
    dump(c, Some(nsid), "a namespace's interfaces")
}

/// One dump of links, of the namespace known by `target` when given.
fn dump(c: &mut Conn, target: Option<i32>, what: &str) -> Result<Vec<Link>> {
    let mut req = LinkMessage::default();
    // Statistics are the bulk of a link message and nsfw reads none of them.
    req.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    req.attributes.extend(target.map(LinkAttribute::IfNetnsId));
    let mut out = Vec::new();
    c.dump_raw(RouteNetlinkMessage::GetLink(req), what, &mut |msg| {
        let fast = super::linkmsg::parse(msg);
        // Debug builds (the tests') hold the fast reader to the general one on every link.
        #[cfg(debug_assertions)]
        {
            use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
            let general =
                match NetlinkMessage::<RouteNetlinkMessage>::deserialize(msg).map(|m| m.payload) {
                    Ok(NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l))) => {
                        Some(parse_link(&l))
                    }
                    _ => None,
                };
            if general.is_some() {
                debug_assert_eq!(fast, general);
            }
        }
        out.extend(fast);
        Ok(())
    })?;
    Ok(out)
}

/// The link named `name` in the namespace `c` is bound to (None: there is none): one
/// RTM_GETLINK with IFLA_IFNAME, a lookup in the kernel's name hash, where a dump visits every
/// link (and at N veth pairs, for each host end, a walk of the N namespace ids).
pub(crate) fn link_by_name(c: &mut Conn, name: &str) -> Result<Option<Link>> {
    let mut req = LinkMessage::default();
    req.attributes.push(LinkAttribute::IfName(name.to_string()));
    get_link(c, req, &format!("interface {name}"))
}

/// The link with index `index` in the namespace `c` is bound to (None: there is none).
pub(crate) fn link_by_index(c: &mut Conn, index: u32) -> Result<Option<Link>> {
    let mut req = LinkMessage::default();
    req.header.index = index;
    get_link(c, req, &format!("interface {index}"))
}

/// One RTM_GETLINK for `req` (statistics skipped): the link, or None when there is none.
fn get_link(c: &mut Conn, mut req: LinkMessage, what: &str) -> Result<Option<Link>> {
    req.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    Ok(
        match c.get(RouteNetlinkMessage::GetLink(req), what, &[libc::ENODEV])? {
            Some(RouteNetlinkMessage::NewLink(l)) => Some(parse_link(&l)),
            _ => None,
        },
    )
}

fn to_mac(b: &[u8]) -> Option<Mac> {
    <[u8; 6]>::try_from(b).ok().map(Mac)
}

pub(crate) fn parse_link(m: &LinkMessage) -> Link {
    let mut l = Link::bare(
        m.header.index,
        m.header.flags.contains(LinkFlags::Up),
        m.header.flags.contains(LinkFlags::Noarp),
    );
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Mtu(v) => l.mtu = *v,
            LinkAttribute::MinMtu(v) => l.mtu_range.0 = Some(*v),
            LinkAttribute::MaxMtu(v) => l.mtu_range.1 = Some(*v),
            LinkAttribute::Address(b) => l.mac = to_mac(b),
            LinkAttribute::Controller(i) => l.master = Some(*i),
            LinkAttribute::IfAlias(s) => l.alias = Some(s.clone()),
            LinkAttribute::Qdisc(q) => l.qdisc = Some(q.clone()),
            LinkAttribute::Link(i) => l.peer_index = Some(*i),
            LinkAttribute::LinkNetNsId(i) => l.link_netnsid = Some(*i),
            LinkAttribute::AfSpecUnspec(specs) => read_conf(specs, &mut l.conf),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => l.kind = Some(k.to_string()),
                        LinkInfo::PortData(InfoPortData::BridgePort(opts)) => {
                            l.hairpin = opts
                                .iter()
                                .any(|o| matches!(o, InfoBridgePort::HairpinMode(true)));
                            l.isolated = opts
                                .iter()
                                .any(|o| matches!(o, InfoBridgePort::Isolated(true)));
                        }
                        LinkInfo::Data(InfoData::Vxlan(opts)) => l.vxlan = Some(vxlan(opts)),
                        LinkInfo::Data(InfoData::Bridge(opts)) => {
                            l.nf_call = opts
                                .iter()
                                .any(|o| matches!(o, InfoBridge::NfCallIpTables(true)));
                        }
                        LinkInfo::Data(InfoData::MacVlan(opts)) => {
                            l.macvlan_mode = opts.iter().find_map(|o| match o {
                                netlink_packet_route::link::InfoMacVlan::Mode(m) => {
                                    Some(u32::from(*m))
                                }
                                _ => None,
                            });
                        }
                        LinkInfo::Data(InfoData::MacVtap(opts)) => {
                            l.macvlan_mode = opts.iter().find_map(|o| match o {
                                netlink_packet_route::link::InfoMacVtap::Mode(m) => {
                                    Some(u32::from(*m))
                                }
                                _ => None,
                            });
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    l
}

/// A VXLAN link's VNI, local address, port, TTL and learning, as the general parser reads
/// them.
fn vxlan(opts: &[netlink_packet_route::link::InfoVxlan]) -> super::objects::VxlanObs {
    use netlink_packet_route::link::InfoVxlan as V;
    let mut x = super::objects::VxlanObs::new(0, None, 0);
    for o in opts {
        match o {
            V::Id(i) => x.id = *i,
            V::Ttl(t) => x.ttl = *t,
            V::Learning(b) => x.learning = *b,
            V::Local(a) => x.local = Some(IpAddr::V4(*a)),
            V::Local6(a) => x.local = Some(IpAddr::V6(*a)),
            V::Port(p) => x.port = *p,
            // The rest by kind and raw value, read as the raw parser reads them.
            o => {
                use netlink_packet_core::Nla;
                let mut v = vec![0; o.value_len()];
                o.emit_value(&mut v);
                x.note(o.kind(), &v);
            }
        }
    }
    x
}

/// The per-interface settings nsfw manages, from a link's AF_SPEC.
fn read_conf(specs: &[AfSpecUnspec], conf: &mut BTreeMap<&'static str, String>) {
    for s in specs {
        match s {
            AfSpecUnspec::Inet(v) => {
                for a in v {
                    if let AfSpecInet::DevConf(c) = a {
                        conf.insert(
                            "ipv4.promote_secondaries",
                            c.promote_secondaries.to_string(),
                        );
                        conf.insert("ipv4.route_localnet", c.route_localnet.to_string());
                        conf.insert("ipv4.forwarding", c.forwarding.to_string());
                    }
                }
            }
            AfSpecUnspec::Inet6(v) => {
                for a in v {
                    match a {
                        AfSpecInet6::DevConf(c) => {
                            conf.insert("ipv6.accept_ra", c.accept_ra.to_string());
                            conf.insert("ipv6.disable_ipv6", c.disable_ipv6.to_string());
                            conf.insert("ipv6.forwarding", c.forwarding.to_string());
                        }
                        AfSpecInet6::AddrGenMode(m) => {
                            conf.insert("ipv6.addr_gen_mode", u8::from(m).to_string());
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}
