//! Namespaces on a host uplink (macvlan), checked by `nsfw verify` with echoes: each child
//! reaches its gateway when that is on the uplink's LAN; two children of one uplink reach
//! each other in bridge mode and do not when either is private (vepa depends on the LAN
//! switch's hairpin, so it is not judged); the host reaches a child through its shim (over
//! IPv6 too when the child has `address6`).

use std::net::IpAddr;

use super::{Check, Origin, Probe};
use crate::topology::{Macvlan, MacvlanMode, Topology};

/// Above this many children on one uplink, each one probes its next neighbour only.
const FULL_MESH_MAX: usize = 8;

/// The checks of the topology's macvlan children.
pub(crate) fn uplink_checks(t: &Topology) -> Vec<Check> {
    let mut out = Vec::new();
    let kids: Vec<(&str, &Macvlan)> = t
        .namespaces
        .iter()
        .flat_map(|n| n.macvlans.iter().map(move |m| (n.name.as_str(), m)))
        .collect();
    for n in &t.namespaces {
        let Some(gw) = n.gateway else { continue };
        if n.macvlans.iter().any(|m| m.address.contains(gw)) {
            out.push(ping(Origin::Ns(n.name.clone()), "gateway", gw.into(), true));
        }
    }
    for (i, (ns, a)) in kids.iter().enumerate() {
        if a.host_shim {
            let label = format!("{ns} (through the host's shim)");
            out.push(ping(Origin::Host, &label, a.address.ip().into(), true));
            // Over IPv6 too: the route's source, the shim's link-local, is what makes it work.
            if let Some(a6) = a.address6 {
                out.push(ping(Origin::Host, &label, a6.ip().into(), true));
            }
        }
        let peers: Vec<_> = kids
            .iter()
            .skip(i + 1)
            .filter(|(other, b)| other != ns && b.uplink == a.uplink)
            .collect();
        let many = kids.len() > FULL_MESH_MAX;
        for (other, b) in peers.into_iter().take(if many { 1 } else { usize::MAX }) {
            let expect = match (a.mode, b.mode) {
                (MacvlanMode::Bridge, MacvlanMode::Bridge) => true,
                (MacvlanMode::Private, _) | (_, MacvlanMode::Private) => false,
                _ => continue,
            };
            let label = format!("{other} (on {} too)", a.uplink);
            out.push(ping(
                Origin::Ns(ns.to_string()),
                &label,
                b.address.ip().into(),
                expect,
            ));
        }
    }
    out
}

fn ping(from: Origin, label: &str, to: IpAddr, expect: bool) -> Check {
    Check {
        from,
        to_label: label.to_string(),
        to,
        probe: Probe::Ping,
        expect,
    }
}
