//! A physical port (`ports = ["eth1"]` on a bridge): an interface nsfw does not own,
//! enslaved to one of its bridges and let go again, and what moves with it when the bridge
//! says `take_addresses`: every address (with its flags and lifetimes) and every route whose
//! output interface it is (of every table, with protocol, metric, scope and source), read
//! here from the observation, put on the bridge, and given back as they were. `plan::ports`
//! decides when.

use ipnetwork::IpNetwork;

use super::{AddAddr, SetRoute};
use crate::plumbing::NodeObs;
use crate::resources::{AddrOrig, Place, RouteOrig, RouteSpec};
use crate::state::{KeptAddr, KeptRoute};

fn link_local(n: &IpNetwork) -> bool {
    matches!(n, IpNetwork::V6(a) if a.ip().is_unicast_link_local())
}

/// The addresses of the link `index` that move with it (not its IPv6 link-local one: the
/// bridge has its own).
pub(crate) fn addrs_of(o: &NodeObs, index: u32) -> Vec<KeptAddr> {
    o.addrs
        .iter()
        .filter(|a| a.index == index && !link_local(&a.net))
        .map(|a| KeptAddr {
            net: a.net,
            flags: a.flags,
            scope: a.scope,
            valid: a.valid,
            preferred: a.preferred,
        })
        .collect()
}

/// Every route whose output interface is `index`, of every table but local, except the
/// kernel's own (they follow the addresses). Routes over several next hops (RTA_MULTIPATH)
/// name no single output interface and are not taken.
pub(crate) fn routes_of(o: &NodeObs, index: u32) -> Vec<KeptRoute> {
    let mut out: Vec<KeptRoute> = o
        .routes
        .iter()
        .chain(&o.other_tables)
        .filter(|r| r.oif == Some(index) && !r.kernel)
        .map(|r| KeptRoute {
            dst: r.dst,
            gateway: r.gateway,
            metric: r.metric,
            table: r.table,
            proto: r.proto,
            scope: r.scope,
            kind: r.kind,
            flags: r.flags,
            prefsrc: r.prefsrc,
        })
        .collect();
    // Routes to the link itself first: a next hop may be reachable only through one.
    out.sort_by_key(|r| (r.gateway.is_some(), r.table, r.dst, r.metric));
    out
}

/// The networks a LAN behind a port sends from: those of its addresses, and the
/// destinations of its routes (not default routes: the world is not the LAN).
pub(crate) fn networks(addrs: &[KeptAddr], routes: &[KeptRoute]) -> Vec<IpNetwork> {
    let of_addr = addrs
        .iter()
        .filter_map(|a| IpNetwork::new(a.net.network(), a.net.prefix()).ok());
    let of_route = routes.iter().map(|r| r.dst).filter(|d| d.prefix() > 0);
    of_addr
        .chain(of_route)
        .filter(|n| !link_local(n) && !n.ip().is_multicast())
        .collect()
}

/// Whether `o` has route `r` through link `index`.
pub(crate) fn has_route(o: &NodeObs, index: u32, r: &KeptRoute) -> bool {
    o.routes.iter().chain(&o.other_tables).any(|x| {
        x.oif == Some(index)
            && x.table == r.table
            && x.dst == r.dst
            && x.metric == r.metric
            && x.gateway == r.gateway
    })
}

/// Whether `o` has address `net` on link `index`.
pub(crate) fn has_addr(o: &NodeObs, index: u32, net: IpNetwork) -> bool {
    o.addrs.iter().any(|x| x.index == index && x.net == net)
}

fn spec(r: &KeptRoute, dev: &str) -> RouteSpec {
    RouteSpec {
        dst: r.dst,
        via: r.gateway,
        dev: dev.to_string(),
        metric: r.metric,
        kind: r.kind,
        orig: Some(RouteOrig {
            table: r.table,
            proto: r.proto,
            scope: r.scope,
            flags: r.flags,
            prefsrc: r.prefsrc,
        }),
    }
}

/// Puts address `a` on `ifname` of the host as it was.
pub(crate) fn put_addr(ifname: &str, a: &KeptAddr) -> AddAddr {
    AddAddr {
        place: Place::Host,
        ifname: ifname.to_string(),
        net: a.net,
        orig: Some(AddrOrig {
            flags: a.flags,
            scope: a.scope,
            valid: a.valid,
            preferred: a.preferred,
        }),
    }
}

/// Puts route `r` on `dev` as it was. Replacing: in IPv4 the kernel keys a route by table,
/// destination, TOS and metric, in IPv6 by table, destination and metric, so a copy of it
/// through the other link (the bridge's, when the port is let go while the bridge stays) is
/// replaced rather than doubled.
pub(crate) fn put_route(r: &KeptRoute, dev: &str) -> SetRoute {
    SetRoute {
        place: Place::Host,
        route: spec(r, dev),
        old: None,
        again: false,
    }
}
