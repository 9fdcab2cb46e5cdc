//! A link message read straight from its bytes, for the few attributes nsfw needs. A no-op
//! apply reads every link of the host and of every namespace; the general parser builds
//! every attribute of each (hundreds of configuration values, each its own allocation), and
//! that was most of the CPU an apply of 100 namespaces spends outside the kernel. Debug builds
//! (the tests') parse every link both ways and compare.

use std::collections::BTreeMap;

use super::objects::Link;
use crate::netlink::{attrs, string_of, u32_of};
use crate::topology::Mac;

const RTM_NEWLINK: u16 = 16;
const IFF_UP: u32 = 1;
const IFF_NOARP: u32 = 0x80;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_QDISC: u16 = 6;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_IFALIAS: u16 = 20;
const IFLA_AF_SPEC: u16 = 26;
const IFLA_LINK_NETNSID: u16 = 37;
const IFLA_MIN_MTU: u16 = 50;
const IFLA_MAX_MTU: u16 = 51;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_INFO_SLAVE_KIND: u16 = 4;
const IFLA_INFO_SLAVE_DATA: u16 = 5;
const IFLA_BR_NF_CALL_IPTABLES: u16 = 36;
const IFLA_MACVLAN_MODE: u16 = 1;
const IFLA_BRPORT_MODE: u16 = 4;
const IFLA_BRPORT_ISOLATED: u16 = 33;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IFLA_INET_CONF: u16 = 1;
const IFLA_INET6_CONF: u16 = 2;
const IFLA_INET6_ADDR_GEN_MODE: u16 = 8;
/// Indexes into IFLA_INET_CONF (IPV4_DEVCONF_* − 1) and IFLA_INET6_CONF (DEVCONF_*).
const V4_FORWARDING: usize = 0;
const V4_PROMOTE_SECONDARIES: usize = 19;
const V4_ROUTE_LOCALNET: usize = 25;
const V6_FORWARDING: usize = 0;
const V6_ACCEPT_RA: usize = 3;
const V6_DISABLE_IPV6: usize = 26;
/// The shortest arrays the general parser accepts (its fixed structs), so that both readers
/// take or leave the same values.
const V4_CONF_MIN: usize = 33;
const V6_CONF_MIN: usize = 60;

/// The `i`-th 32-bit value of a configuration array.
fn conf_at(b: &[u8], i: usize) -> Option<i32> {
    let w = b.get(i * 4..i * 4 + 4)?;
    Some(i32::from_ne_bytes(w.try_into().ok()?))
}

/// The link a whole RTM_NEWLINK message (`nlmsghdr` included) describes; None for another
/// message or one too short to be a link.
pub(super) fn parse(msg: &[u8]) -> Option<Link> {
    if u16::from_ne_bytes([*msg.get(4)?, *msg.get(5)?]) != RTM_NEWLINK {
        return None;
    }
    let head = msg.get(16..32)?;
    let flags = u32_of(&head[8..12])?;
    let mut l = Link::bare(
        u32_of(&head[4..8])?,
        flags & IFF_UP != 0,
        flags & IFF_NOARP != 0,
    );
    for a in attrs(&msg[32..]) {
        let v = a.value;
        match a.ty {
            IFLA_IFNAME => l.name = string_of(v),
            IFLA_MTU => l.mtu = u32_of(v)?,
            IFLA_MIN_MTU => l.mtu_range.0 = u32_of(v),
            IFLA_MAX_MTU => l.mtu_range.1 = u32_of(v),
            IFLA_ADDRESS => l.mac = <[u8; 6]>::try_from(v).ok().map(Mac),
            IFLA_MASTER => l.master = u32_of(v),
            IFLA_IFALIAS => l.alias = Some(string_of(v)),
            IFLA_QDISC => l.qdisc = Some(string_of(v)),
            IFLA_LINK => l.peer_index = u32_of(v),
            IFLA_LINK_NETNSID => l.link_netnsid = u32_of(v).map(|x| x as i32),
            IFLA_AF_SPEC => conf(v, &mut l.conf),
            IFLA_LINKINFO => info(v, &mut l),
            _ => {}
        }
    }
    Some(l)
}

/// IFLA_LINKINFO: the kind, and a bridge's nf_call_iptables, a bridge port's hairpin mode and
/// isolation, or a macvlan's mode.
fn info(v: &[u8], l: &mut Link) {
    let mut kind = None;
    let mut port_kind = None;
    for a in attrs(v) {
        match a.ty {
            IFLA_INFO_KIND => kind = Some(string_of(a.value)),
            IFLA_INFO_SLAVE_KIND => port_kind = Some(string_of(a.value)),
            _ => {}
        }
    }
    for a in attrs(v) {
        let on = |ty| attrs(a.value).any(|x| x.ty == ty && x.value.first() == Some(&1));
        match a.ty {
            IFLA_INFO_DATA if kind.as_deref() == Some("bridge") => {
                l.nf_call = on(IFLA_BR_NF_CALL_IPTABLES);
            }
            IFLA_INFO_DATA if matches!(kind.as_deref(), Some("macvlan" | "macvtap")) => {
                l.macvlan_mode = attrs(a.value)
                    .find(|x| x.ty == IFLA_MACVLAN_MODE)
                    .and_then(|x| u32_of(x.value));
            }
            IFLA_INFO_DATA if kind.as_deref() == Some("vxlan") => {
                l.vxlan = Some(vxlan(a.value));
            }
            IFLA_INFO_SLAVE_DATA if port_kind.as_deref() == Some("bridge") => {
                l.hairpin = on(IFLA_BRPORT_MODE);
                l.isolated = on(IFLA_BRPORT_ISOLATED);
            }
            _ => {}
        }
    }
    l.kind = kind;
}

/// A VXLAN link's IFLA_INFO_DATA: VNI, local address (either family), port (big-endian).
fn vxlan(v: &[u8]) -> super::objects::VxlanObs {
    const ID: u16 = 1;
    const LOCAL: u16 = 4;
    const TTL: u16 = 5;
    const LEARNING: u16 = 7;
    const PORT: u16 = 15;
    const LOCAL6: u16 = 17;
    let mut x = super::objects::VxlanObs::new(0, None, 0);
    for a in attrs(v) {
        match a.ty {
            ID => x.id = u32_of(a.value).unwrap_or(0),
            TTL => x.ttl = a.value.first().copied().unwrap_or(0),
            LEARNING => x.learning = a.value.first() != Some(&0),
            LOCAL => {
                x.local = <[u8; 4]>::try_from(a.value)
                    .ok()
                    .map(std::net::IpAddr::from)
            }
            LOCAL6 => {
                x.local = <[u8; 16]>::try_from(a.value)
                    .ok()
                    .map(std::net::IpAddr::from)
            }
            PORT => {
                x.port = <[u8; 2]>::try_from(a.value)
                    .map(u16::from_be_bytes)
                    .unwrap_or(0)
            }
            ty => x.note(ty, a.value),
        }
    }
    x
}

/// IFLA_AF_SPEC: the IPv4 and IPv6 settings nsfw manages.
fn conf(v: &[u8], conf: &mut BTreeMap<&'static str, String>) {
    for f in attrs(v) {
        for a in attrs(f.value) {
            let arr = a.value;
            match (f.ty, a.ty) {
                (AF_INET, IFLA_INET_CONF) if arr.len() >= V4_CONF_MIN * 4 => {
                    for (key, i) in [
                        ("ipv4.promote_secondaries", V4_PROMOTE_SECONDARIES),
                        ("ipv4.route_localnet", V4_ROUTE_LOCALNET),
                        ("ipv4.forwarding", V4_FORWARDING),
                    ] {
                        if let Some(x) = conf_at(arr, i) {
                            conf.insert(key, x.to_string());
                        }
                    }
                }
                (AF_INET6, IFLA_INET6_ADDR_GEN_MODE) => {
                    if let Some(m) = arr.first() {
                        conf.insert("ipv6.addr_gen_mode", m.to_string());
                    }
                }
                (AF_INET6, IFLA_INET6_CONF) if arr.len() >= V6_CONF_MIN * 4 => {
                    for (key, i) in [
                        ("ipv6.accept_ra", V6_ACCEPT_RA),
                        ("ipv6.disable_ipv6", V6_DISABLE_IPV6),
                        ("ipv6.forwarding", V6_FORWARDING),
                    ] {
                        if let Some(x) = conf_at(arr, i) {
                            conf.insert(key, x.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
    }
}
