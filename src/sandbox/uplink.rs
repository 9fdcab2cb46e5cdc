//! Stand-in uplinks for `nsfw try`: each host interface the file's macvlan children sit on
//! becomes, in the sandbox, a veth of that name whose other end (`eth0`) sits in a simulated
//! LAN namespace `lan-UPLINK` with a host on it — at the children's gateway when one is on
//! the LAN's subnet, else at the highest free address of the first child's subnet — and the
//! stand-in gets an address of its own there, as a host on that LAN has. The checks:
//! every child reaches the LAN host; children in `bridge` mode reach each other, `private`
//! ones do not; the host does not reach children without `host_shim`.

use std::net::IpAddr;

use anyhow::{Result, anyhow};
use ipnetwork::{IpNetwork, Ipv4Network};

use crate::plumbing::rtnl::Conn;
use crate::plumbing::{msgs, netns};
use crate::probe::{Check, Origin, Probe};
use crate::topology::{Macvlan, MacvlanMode, Topology};

/// Inside the sandbox: the stand-in uplinks and their LANs, and their checks.
pub(crate) fn build(t: &Topology) -> Result<Vec<Check>> {
    let mut uplinks: Vec<&str> = Vec::new();
    for m in t.namespaces.iter().flat_map(|n| &n.macvlans) {
        if !uplinks.contains(&m.uplink.as_str()) {
            uplinks.push(&m.uplink);
        }
    }
    let mut checks = Vec::new();
    for u in uplinks {
        checks.extend(one(t, u)?);
    }
    Ok(checks)
}

/// The children of `uplink`, with their namespaces.
fn children<'a>(t: &'a Topology, uplink: &'a str) -> impl Iterator<Item = (&'a str, &'a Macvlan)> {
    t.namespaces.iter().flat_map(move |n| {
        let on = n.macvlans.iter().filter(move |m| m.uplink == uplink);
        on.map(move |m| (n.name.as_str(), m))
    })
}

/// The LAN host's address (a child's gateway on its subnet, or the highest free one) and the
/// host's own on the LAN (the next free one: a host with children on a LAN is on it).
fn lan_addrs(t: &Topology, uplink: &str) -> Option<(Ipv4Network, Ipv4Network)> {
    let (_, first) = children(t, uplink).next()?;
    let subnet = first.address;
    let gateway = t
        .namespaces
        .iter()
        .filter(|n| n.macvlans.iter().any(|m| m.uplink == uplink))
        .filter_map(|n| n.gateway)
        .find(|g| subnet.contains(*g));
    let mut taken: Vec<_> = children(t, uplink).map(|(_, m)| m.address.ip()).collect();
    taken.extend(gateway);
    let top = u32::from(subnet.broadcast());
    let mut free = (1..64u32)
        .map(|k| std::net::Ipv4Addr::from(top.saturating_sub(k)))
        .filter(|a| subnet.contains(*a) && *a != subnet.network() && !taken.contains(a));
    let lan = match gateway {
        Some(g) => g,
        None => free.next()?,
    };
    let own = free.next()?;
    let net = |ip| Ipv4Network::new(ip, subnet.prefix()).ok();
    Some((net(lan)?, net(own)?))
}

fn one(t: &Topology, uplink: &str) -> Result<Vec<Check>> {
    let ns = super::lan::lan_ns(uplink);
    if t.namespaces.iter().any(|n| n.name == ns) {
        return Err(anyhow!(
            "{}: namespaces.{ns}: `try` keeps this name for the LAN behind uplink {uplink}; rename the namespace",
            t.source.display()
        ));
    }
    let (host, own) = lan_addrs(t, uplink)
        .ok_or_else(|| anyhow!("uplink {uplink}: no address left for the simulated LAN"))?;
    let each = |_: &str, c: &mut Conn| c.run_all(&[msgs::mark_lo("sandbox:lan")]);
    for r in netns::create_many(std::slice::from_ref(&ns), &each) {
        r?;
    }
    let fd = netns::open_ns(&ns)?.ok_or_else(|| anyhow!("namespace {ns} vanished"))?;
    let mut c = Conn::open("host")?;
    c.run_all(&[
        msgs::create_veth(uplink, None, 1500, None, "eth0", &fd, None),
        msgs::up(uplink),
    ])?;
    drop(fd);
    let ix = super::index(&mut c, uplink)?;
    c.run_all(&[msgs::add_addr(uplink, ix, IpNetwork::V4(own))])?;
    netns::visit(std::slice::from_ref(&ns), &|_, c| {
        let e = super::index(c, "eth0")?;
        c.run_all(&[
            msgs::up("eth0"),
            msgs::add_addr("eth0", e, IpNetwork::V4(host)),
        ])
    })
    .into_iter()
    .next()
    .unwrap_or_else(|| Ok(None))?;
    Ok(checks(t, uplink, &ns, IpAddr::V4(host.ip())))
}

fn checks(t: &Topology, uplink: &str, lan: &str, host: IpAddr) -> Vec<Check> {
    let ping = |from: Origin, label: String, to: IpAddr, expect: bool| Check {
        from,
        to_label: label,
        to,
        probe: Probe::Ping,
        expect,
    };
    let check = |from: &str, label: String, to: IpAddr, expect: bool| {
        ping(Origin::Ns(from.to_string()), label, to, expect)
    };
    let kids: Vec<(&str, &Macvlan)> = children(t, uplink).collect();
    let mut out = Vec::new();
    for (n, m) in &kids {
        // Not the host's reach through the shim: the host answers from the first address
        // the kernel picks, and in the sandbox that is its simulated upstream's, which the
        // child routes to the LAN (see docs/topology.md, `host_shim`).
        if !m.host_shim {
            let to = IpAddr::V4(m.address.ip());
            out.push(ping(Origin::Host, n.to_string(), to, false));
        }
        out.push(check(n, lan.to_string(), host, true));
        for (o, x) in kids.iter().filter(|(o, _)| o != n) {
            let meet = m.mode == MacvlanMode::Bridge && x.mode == MacvlanMode::Bridge;
            out.push(check(n, o.to_string(), IpAddr::V4(x.address.ip()), meet));
        }
    }
    out
}
