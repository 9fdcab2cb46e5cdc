//! One MTU per segment, checked by `nsfw verify` with packets: from each namespace, an echo
//! request that fills its bridge's MTU exactly and may not be fragmented, to the gateway
//! (which every namespace may ping). A hop of a smaller MTU on the way (either end of its
//! veth pair, the bridge) drops it where a small ping passes; the bridge's other ports are
//! read by their MTU (`doctor`).

use std::net::IpAddr;

use super::{Check, Origin, Probe};
use crate::topology::Topology;

/// The full-size checks of every addressed segment (IPv4).
pub(crate) fn full_size_checks(t: &Topology) -> Vec<Check> {
    let mut out = Vec::new();
    for b in &t.bridges {
        let Some(gw) = b.address else { continue };
        for n in &t.namespaces {
            if n.ifaces.iter().any(|i| i.bridge == b.name) {
                out.push(Check {
                    from: Origin::Ns(n.name.clone()),
                    to_label: format!("gateway {} (full size)", b.name),
                    to: IpAddr::V4(gw.ip()),
                    probe: Probe::Full(b.mtu),
                    expect: true,
                });
            }
        }
    }
    out
}
