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
            brd: a.brd,
            metric: a.metric,
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
            metrics: r.metrics,
        })
        .collect();
    // Routes to the link itself first: a next hop may be reachable only through one.
    out.sort_by_key(|r| (r.gateway.is_some(), r.table, r.dst, r.metric));
    out
}

/// The broadest network trusted as a LAN behind a port: a /8 (IPv4) or a /32 (IPv6). A
/// broader one is not a LAN but a slice of the world (`0.0.0.0/1` + `128.0.0.0/1` of a VPN
/// would let anything in under the bridge's name).
const NARROWEST_V4: u8 = 8;
const NARROWEST_V6: u8 = 32;
/// The main routing table (RT_TABLE_MAIN), and a plain unicast route (RTN_UNICAST).
const MAIN: u32 = 254;
const UNICAST: u8 = 1;

fn too_broad(n: &IpNetwork) -> bool {
    n.prefix()
        < match n {
            IpNetwork::V4(_) => NARROWEST_V4,
            IpNetwork::V6(_) => NARROWEST_V6,
        }
}

/// The networks a LAN behind a port sends from, and what was left out with why: the
/// connected subnets of its addresses, and the destinations of main-table unicast routes via
/// a next hop on it — nothing broader than a /8 (/32), no link-local or multicast. Routes of
/// other tables (policy routing: where the host sends, not who is behind the port), routes
/// with no next hop and broad ones are not trusted as sources.
pub(crate) fn networks(addrs: &[KeptAddr], routes: &[KeptRoute]) -> (Vec<IpNetwork>, Vec<String>) {
    let (mut lan, mut left) = (Vec::new(), Vec::new());
    let of_addr = addrs
        .iter()
        .filter_map(|a| IpNetwork::new(a.net.network(), a.net.prefix()).ok())
        .map(|n| (n, None));
    let of_route = routes.iter().filter(|r| r.dst.prefix() > 0).map(|r| {
        let why = if r.table != MAIN {
            Some(format!("a route of table {}", r.table))
        } else if r.gateway.is_none() || r.kind != UNICAST {
            Some("a route with no next hop".to_string())
        } else {
            None
        };
        (r.dst, why)
    });
    for (n, why) in of_addr.chain(of_route) {
        if link_local(&n) || n.ip().is_multicast() {
            continue;
        }
        let why = why.or_else(|| too_broad(&n).then(|| "broader than a /8 (/32 for IPv6)".into()));
        match why {
            Some(w) => left.push(format!("{n} ({w})")),
            None => lan.push(n),
        }
    }
    (lan, left)
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
        src: None,
        orig: Some(RouteOrig {
            table: r.table,
            proto: r.proto,
            scope: r.scope,
            flags: r.flags,
            prefsrc: r.prefsrc,
            metrics: r.metrics,
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
            brd: a.brd,
            metric: a.metric,
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
