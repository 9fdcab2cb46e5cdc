//! The rtnetlink side of an attachment, over the engine's blocking `Conn`: the network's
//! bridge (made when missing, marked), a container's veth pair (the peer born in `CNI_NETNS`
//! as `CNI_IFNAME`, the host end a marked port of the bridge), both made with the requests
//! apply makes them with (`kinds::bridge`, `kinds::veth`), the address and routes inside the
//! container, and finding all of it again from the aliases.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::OwnedFd;

use anyhow::{Context, Result, anyhow};
use ipnetwork::{IpNetwork, Ipv4Network};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkExtentMask, LinkMessage};

use super::config::NetConf;
use super::error::{CniError, CniResult, code};
use super::names;
use crate::kinds::veth;
use crate::owner;
use crate::plumbing::Link;
use crate::plumbing::links::parse_link;
use crate::plumbing::{Conn, msgs, netns, sysctl};
use crate::resources::RouteSpec;

/// One link by name; None when there is none.
pub(super) fn get_link(c: &mut Conn, name: &str) -> Result<Option<Link>> {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.to_string()));
    m.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    let got = c.get(
        RouteNetlinkMessage::GetLink(m),
        &format!("interface {name}"),
        &[libc::ENODEV],
    )?;
    Ok(match got {
        Some(RouteNetlinkMessage::NewLink(l)) => Some(parse_link(&l)),
        _ => None,
    })
}

/// Runs `f` with a connection inside the namespace `fd` (on a thread of its own: `setns`
/// moves only the calling thread).
pub(super) fn in_netns<T: Send>(
    path: &str,
    fd: &OwnedFd,
    f: impl FnOnce(&mut Conn) -> Result<T> + Send,
) -> Result<T> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("nsfw-netns".into())
            .spawn_scoped(s, || {
                netns::enter(path, fd)?;
                let mut c = Conn::open(format!("container namespace {path}"))?;
                f(&mut c)
            })
            .map_err(|e| anyhow!("namespace {path}: cannot start a thread: {e}"))?
            .join()
            .map_err(|_| anyhow!("the thread in {path} panicked"))?
    })
}

/// Whether the container already has an interface `ifname`.
pub(super) fn container_has(path: &str, fd: &OwnedFd, ifname: &str) -> Result<bool> {
    let name = ifname.to_string();
    in_netns(path, fd, move |c| Ok(get_link(c, &name)?.is_some()))
}

/// Whether a link can carry IPv6 at `mtu`: below 1280 the kernel gives it none, and refuses
/// IPv6 settings on it (`addrgenmode`: EAFNOSUPPORT) — nor does it make a link-local address
/// there, so there is nothing to turn off.
pub(super) fn has_ipv6(mtu: u32) -> bool {
    mtu >= 1280
}

/// The network's bridge as it is: Some when it is there and the network's, None when it is
/// missing. A link of that name that is not this network's bridge is a conflict (checked
/// before ADD changes anything; a killed ADD's unmarked bridge was swept before).
pub(super) fn bridge_state(c: &mut Conn, conf: &NetConf) -> CniResult<Option<Link>> {
    let mark = owner::network_mark(&conf.name);
    let br = &conf.bridge;
    match get_link(c, br)? {
        Some(l)
            if l.kind.as_deref() == Some("bridge") && l.alias.as_deref() == Some(mark.as_str()) =>
        {
            Ok(Some(l))
        }
        Some(l) => Err(CniError::new(
            code::CONFLICT,
            format!(
                "interface {br} exists and is not network {}'s bridge (kind {}, alias {:?}, not {mark:?}); remove it or set bridge to another name",
                conf.name,
                l.kind.as_deref().unwrap_or("none"),
                l.alias.as_deref().unwrap_or("")
            ),
        )),
        None => Ok(None),
    }
}

/// The MAC the network's bridge is made with.
pub(super) fn bridge_mac(conf: &NetConf) -> crate::topology::Mac {
    names::mac(&conf.name, "", "", "bridge")
}

/// The network's bridge: made (with nsfw's mark, its MTU and a stable MAC) when `have` is
/// None; in either case up, with `gateway` (the host's address on it, with the subnet's
/// prefix) and route_localnet (the host's 127.0.0.1 reaches published ports; the table's
/// guard chain covers it) — set each time, so a bridge an ADD killed half-way gets them.
pub(super) fn ensure_bridge(
    c: &mut Conn,
    conf: &NetConf,
    have: Option<Link>,
    gateway: Ipv4Network,
) -> CniResult<Link> {
    let br = &conf.bridge;
    let link = match have {
        Some(l) => l,
        None => {
            c.run_all(&[msgs::create_bridge(br, conf.mtu, bridge_mac(conf), false)])?;
            c.run_all(&[msgs::mark(br, &owner::network_mark(&conf.name))])?;
            if has_ipv6(conf.mtu) {
                c.run_all(&[msgs::no_link_local(br)])?;
            }
            get_link(c, br)?.ok_or_else(|| anyhow!("bridge {br} vanished after its creation"))?
        }
    };
    sysctl::write(&sysctl::key_for("net.ipv4.conf", br, "route_localnet"), "1")?;
    if !link.up {
        c.run_all(&[msgs::up(br)])?;
    }
    // Added or confirmed: NLM_F_REPLACE makes it a no-op when it is there.
    c.run_all(&[msgs::add_addr(br, link.index, IpNetwork::V4(gateway))])?;
    Ok(link)
}

/// What ADD made of a container's link.
pub(super) struct Attached {
    pub host: Link,
    pub peer_mac: crate::topology::Mac,
}

/// The veth pair of one attachment: the host end `host` a marked port of `bridge`, the peer
/// born in the container as `ifname`, up, with `addr` and `routes` (destination, gateway).
pub(super) struct Plug<'a> {
    pub conf: &'a NetConf,
    pub container: &'a str,
    pub ifname: &'a str,
    pub netns_path: &'a str,
    pub netns: &'a OwnedFd,
    pub addr: Ipv4Network,
    pub routes: &'a [(Ipv4Network, Option<Ipv4Addr>)],
}

/// Makes the pair and configures the container's end. On an error, whatever was made is
/// removed again (the peer goes with the host end).
pub(super) fn attach(c: &mut Conn, p: &Plug, bridge: &Link) -> CniResult<Attached> {
    let net = &p.conf.name;
    let host = names::host_veth(net, p.container, p.ifname);
    let alias = owner::veth_alias(net, p.container, p.ifname);
    let host_mac = names::mac(net, p.container, p.ifname, "host");
    let peer_mac = p
        .conf
        .mac
        .unwrap_or_else(|| names::mac(net, p.container, p.ifname, "peer"));
    c.run_all(&[veth::create(
        &host,
        Some(bridge.index),
        p.conf.mtu,
        Some(host_mac),
        p.ifname,
        p.netns,
        Some(peer_mac),
    )])?;
    let made = (|| -> Result<Attached> {
        // Marked first: from here on DEL and GC find it by its alias.
        // Hairpin where the container publishes a port: with bridge-nf-call-iptables = 1 the
        // DNAT of a container's connection to its own published port happens while the frame
        // is bridged, and the frame must go back out of the port it came in by.
        let hairpin = !p.conf.ports.is_empty();
        c.run_all(&veth::host_end(
            &host,
            &alias,
            has_ipv6(p.conf.mtu),
            hairpin,
        ))?;
        let h = get_link(c, &host)?.ok_or_else(|| anyhow!("veth {host} vanished"))?;
        let (ifname, addr) = (p.ifname.to_string(), p.addr);
        let routes = p.routes.to_vec();
        let v6 = has_ipv6(p.conf.mtu);
        in_netns(p.netns_path, p.netns, move |k| {
            let l = get_link(k, &ifname)?
                .ok_or_else(|| anyhow!("{ifname} did not appear in the container"))?;
            k.run_all(&veth::peer_end(&ifname, v6))?;
            k.run_all(&[msgs::add_addr(&ifname, l.index, IpNetwork::V4(addr))])?;
            let reqs: Vec<_> = routes
                .iter()
                .map(|(dst, gw)| {
                    let r = RouteSpec::unicast(IpNetwork::V4(*dst), gw.map(IpAddr::V4), &ifname);
                    msgs::replace_route(&r, l.index)
                })
                .collect();
            k.run_all(&reqs)
        })
        .context("configuring the container's interface")?;
        Ok(Attached { host: h, peer_mac })
    })();
    match made {
        Ok(a) => Ok(a),
        Err(e) => {
            if let Ok(Some(l)) = get_link(c, &host) {
                let _ = c.run_all(&[msgs::del_link(&host, l.index)]);
            }
            Err(CniError::internal(&e))
        }
    }
}

/// The host end of an attachment: by its derived name, else by its alias among every link.
/// A link of the derived name with no alias at all is an ADD's, interrupted between making
/// the pair and marking it (the name comes from this very attachment): it is returned too.
pub(super) fn find_host_end(
    c: &mut Conn,
    network: &str,
    container: &str,
    ifname: &str,
) -> Result<Option<Link>> {
    let alias = owner::veth_alias(network, container, ifname);
    let name = names::host_veth(network, container, ifname);
    if let Some(l) = get_link(c, &name)?
        && (l.alias.as_deref() == Some(alias.as_str())
            || (l.alias.is_none() && l.kind.as_deref() == Some("veth")))
    {
        return Ok(Some(l));
    }
    Ok(crate::plumbing::links::links(c)?
        .into_iter()
        .find(|l| l.alias.as_deref() == Some(alias.as_str())))
}

/// Every host end of `network`'s attachments, with (container, ifname).
pub(super) fn host_ends(c: &mut Conn, network: &str) -> Result<Vec<(Link, String, String)>> {
    Ok(crate::plumbing::links::links(c)?
        .into_iter()
        .filter_map(|l| {
            let (ct, ifn) = owner::parse_veth_alias(network, l.alias.as_deref()?)?;
            let (ct, ifn) = (ct.to_string(), ifn.to_string());
            Some((l, ct, ifn))
        })
        .collect())
}
