//! What an ADD checks before it changes anything: the network's subnet and gateway as the
//! kernel and the host would take them. A subnet in a reserved range (or the whole address
//! space), a gateway that is the subnet's network or broadcast address or lies outside it, and
//! a subnet that overlaps a route or an address the host already has (the uplink's LAN: the
//! bridge would take it over and cut the host off) are refused here, as topology mode refuses
//! them, so that no ADD fails half-way on them.

use std::net::Ipv4Addr;

use ipnetwork::{IpNetwork, Ipv4Network};

use super::error::{CniError, CniResult};
use super::ipam::Lease;
use crate::plumbing::{Conn, Link, NodeObs};

/// Ranges no container network may overlap: "this network", loopback, link-local, multicast
/// and the reserved 240.0.0.0/4 (which holds the limited broadcast 255.255.255.255).
const RESERVED: [(&str, [u8; 4], u8); 5] = [
    ("\"this network\"", [0, 0, 0, 0], 8),
    ("loopback", [127, 0, 0, 0], 8),
    ("link-local", [169, 254, 0, 0], 16),
    ("multicast", [224, 0, 0, 0], 4),
    ("reserved", [240, 0, 0, 0], 4),
];

fn overlaps(a: Ipv4Network, b: Ipv4Network) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

/// The lease's subnet, gateway and address on their own (no kernel needed).
pub(super) fn lease(l: &Lease) -> CniResult<()> {
    let subnet = l.subnet();
    if subnet.prefix() == 0 {
        return Err(CniError::config(format!(
            "subnet {subnet} is the whole IPv4 address space: the bridge would take every route of the host"
        )));
    }
    if subnet.prefix() > 30 {
        return Err(CniError::config(format!(
            "subnet {subnet} is too small: at most /30 (a gateway and a container)"
        )));
    }
    for (what, a, p) in RESERVED {
        let r = Ipv4Network::new(Ipv4Addr::from(a), p).unwrap_or(subnet);
        if overlaps(subnet, r) {
            return Err(CniError::config(format!(
                "subnet {subnet} overlaps the {what} range {r}: no interface may hold its addresses"
            )));
        }
    }
    let gw = l.gateway;
    if !subnet.contains(gw) {
        return Err(CniError::config(format!(
            "gateway {gw} is not in subnet {subnet}"
        )));
    }
    for (what, a) in [
        ("network", subnet.network()),
        ("broadcast", subnet.broadcast()),
    ] {
        if gw == a {
            return Err(CniError::config(format!(
                "gateway {gw} is the {what} address of subnet {subnet}"
            )));
        }
        if l.addr.ip() == a {
            return Err(CniError::config(format!(
                "the container's address {} is the {what} address of subnet {subnet}",
                l.addr.ip()
            )));
        }
    }
    if l.addr.ip() == gw {
        return Err(CniError::config(format!(
            "the container's address {gw} is the gateway's"
        )));
    }
    // The container reaches nothing but its subnet directly: the kernel refuses a next hop
    // outside it (ENETUNREACH) half-way through the ADD.
    for (dst, via) in &l.routes {
        if let Some(v) = via
            && !subnet.contains(*v)
        {
            return Err(CniError::config(format!(
                "the route to {dst} goes via {v}, which is not in subnet {subnet}"
            )));
        }
    }
    Ok(())
}

/// The network in use as this ADD would have it: the gateway address (with the subnet's prefix)
/// and the MTU of the network's `bridge` as the earlier ADDs made it. A changed subnet, gateway
/// or mtu is refused, not applied to this one container: the bridge would hold two subnets (and
/// the kernel refuses the second's elements half-way), a mixed MTU drops large frames.
/// Returns whether the bridge has the gateway address already.
fn same_network(node: &NodeObs, want: Ipv4Network, mtu: u32, b: &Link) -> CniResult<bool> {
    let mut has = false;
    let keep = "a network in use keeps its subnet, gateway and mtu: DEL its containers first, or give the change another network name and bridge";
    for a in node.addrs.iter().filter(|a| a.index == b.index) {
        let IpNetwork::V4(n) = a.net else { continue };
        has = true;
        if n != want {
            return Err(CniError::config(format!(
                "gateway {want} (subnet {}): the network's bridge {} has {n}; {keep}",
                Ipv4Network::new(want.network(), want.prefix()).unwrap_or(want),
                b.name
            )));
        }
    }
    // A bridge with no port takes 1500 from the kernel whatever it was made with: only the
    // MTU of a bridge in use says what the segment carries.
    let ported = node.links.iter().any(|l| l.master == Some(b.index));
    if ported && b.mtu != mtu {
        return Err(CniError::config(format!(
            "mtu {mtu}: the network's bridge {} and its containers have mtu {}; {keep}",
            b.name, b.mtu
        )));
    }
    Ok(has)
}

/// The lease against the host: the network's own `bridge` as it is (`same_network`), then the
/// subnet against the host's routes (every table but local, default routes aside) and
/// addresses: anything on another interface than the network's own bridge is a conflict.
/// Returns whether the bridge exists with its gateway address (else the ADD adds it, and its
/// undo removes it again).
pub(super) fn host(conn: &mut Conn, l: &Lease, mtu: u32, bridge: Option<&Link>) -> CniResult<bool> {
    let node = crate::plumbing::observe::read_node(conn)?;
    let has_gateway = match bridge {
        Some(b) => same_network(&node, l.gateway_net(), mtu, b)?,
        None => false,
    };
    let subnet = l.subnet();
    let ours = |oif: Option<u32>| bridge.is_some_and(|b| oif == Some(b.index));
    let dev = |oif: Option<u32>| {
        oif.and_then(|i| node.by_index(i))
            .map(|l| format!(" dev {}", l.name))
            .unwrap_or_default()
    };
    for r in node.routes.iter().chain(&node.other_tables) {
        let IpNetwork::V4(dst) = r.dst else { continue };
        if dst.prefix() == 0 || ours(r.oif) || !overlaps(subnet, dst) {
            continue;
        }
        let table = if r.table == 254 {
            String::new()
        } else {
            format!(" table {}", r.table)
        };
        return Err(CniError::config(format!(
            "subnet {subnet} overlaps the host's route {dst}{}{table}: traffic to it would be misrouted; choose another subnet",
            dev(r.oif)
        )));
    }
    for a in &node.addrs {
        let IpNetwork::V4(n) = a.net else { continue };
        if !ours(Some(a.index)) && subnet.contains(n.ip()) {
            return Err(CniError::config(format!(
                "subnet {subnet} holds the host's address {n}{}; choose another subnet",
                dev(Some(a.index))
            )));
        }
    }
    Ok(has_gateway)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(addr: &str, gw: &str) -> Lease {
        Lease {
            addr: addr.parse().expect("net"),
            gateway: gw.parse().expect("ip"),
            routes: vec![(
                "10.1.0.0/16".parse().expect("net"),
                Some("10.90.0.9".parse().expect("ip")),
            )],
            dns: None,
        }
    }

    #[test]
    fn what_the_kernel_or_host_would_refuse_is_refused() {
        assert!(lease(&l("10.90.0.2/24", "10.90.0.1")).is_ok());
        let mut far = l("10.90.0.2/24", "10.90.0.1");
        far.routes[0].1 = Some("192.0.2.1".parse().expect("ip"));
        assert!(lease(&far).is_err(), "a next hop outside the subnet");
        for (a, g) in [
            ("0.0.0.2/0", "0.0.0.1"),
            ("0.0.0.2/8", "0.0.0.1"),
            ("224.0.0.2/24", "224.0.0.1"),
            ("127.0.0.2/8", "127.0.0.1"),
            ("169.254.0.2/16", "169.254.0.1"),
            ("255.255.255.2/24", "255.255.255.1"),
            ("10.90.0.2/24", "10.90.0.255"),
            ("10.90.0.2/24", "10.90.0.0"),
            ("10.90.0.2/24", "10.91.0.1"),
            ("10.90.0.0/24", "10.90.0.1"),
            ("10.90.0.1/24", "10.90.0.1"),
            ("10.90.0.2/31", "10.90.0.3"),
        ] {
            assert!(lease(&l(a, g)).is_err(), "{a} gw {g}");
        }
    }
}
