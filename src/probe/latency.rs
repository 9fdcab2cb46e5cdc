//! The checks of impaired links: an interface with `latency` delays every packet it sends,
//! so an echo to it must take at least that long.

use std::net::IpAddr;

use super::{Check, Origin, Probe};
use crate::topology::Topology;

/// Each delayed interface (`latency`): an echo from the host's side of its segment (the host
/// when the bridge has an address, else another namespace on it) must take at least the
/// latency less the jitter, since every packet the interface sends waits that long. Loss may
/// eat an echo, which the three tries allow for.
pub(super) fn checks(out: &mut Vec<Check>, t: &Topology) {
    for n in &t.namespaces {
        for i in &n.ifaces {
            let Some(lat) = i.netem.latency_us else {
                continue;
            };
            let at_least = lat.saturating_sub(i.netem.jitter_us.unwrap_or(0));
            if at_least == 0 {
                continue;
            }
            let to = IpAddr::V4(i.address.ip());
            let from = match t.bridge(&i.bridge).and_then(|b| b.gateway_addr(false)) {
                Some(_) => Some(Origin::Host),
                None => t
                    .ports_of(&i.bridge)
                    .find(|(m, _)| m.name != n.name)
                    .map(|(m, _)| Origin::Ns(m.name.clone())),
            };
            let Some(from) = from else {
                continue;
            };
            out.push(Check {
                from,
                to_label: format!("{} ({})", n.name, i.ifname),
                to,
                probe: Probe::Slow(std::time::Duration::from_micros(u64::from(at_least))),
                expect: true,
            });
        }
    }
}
