//! A segment that spans hosts (`vxlan`), checked end to end by `nsfw verify`: from every
//! namespace on it, an echo to each address the file lists on the other hosts (`remote`),
//! and one that fills the segment's MTU unfragmentable (the encapsulation must fit the
//! underlay); then ARP from the host for every address of the segment it knows of — two
//! MACs answering for one address (or anyone answering for the host's own) is two machines
//! claiming it, which no host's file can see alone. IPv4 only: IPv6 duplicates are left to
//! the kernel's DAD.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::Result;

use super::{Check, Origin, Probe};
use crate::topology::Topology;

/// The checks of the namespaces on the other hosts.
pub(crate) fn remote_checks(t: &Topology) -> Vec<Check> {
    let mut out = Vec::new();
    for b in &t.bridges {
        let Some(vx) = &b.vxlan else { continue };
        for (i, (n, _)) in t.ports_of(&b.name).enumerate() {
            for r in &vx.remote {
                let label = format!("remote {r} (vxlan {})", vx.id);
                out.push(Check {
                    from: Origin::Ns(n.name.clone()),
                    to_label: label.clone(),
                    to: *r,
                    probe: Probe::Ping,
                    expect: !b.isolate,
                });
                if i == 0 && r.is_ipv4() && !b.isolate {
                    out.push(Check {
                        from: Origin::Ns(n.name.clone()),
                        to_label: format!("{label} (full size)"),
                        to: *r,
                        probe: Probe::Full(b.mtu),
                        expect: true,
                    });
                }
            }
        }
    }
    out
}

/// The addresses two machines answer for on each stretched segment, said as findings.
pub(crate) fn duplicates(t: &Topology) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for b in &t.bridges {
        let Some(vx) = &b.vxlan else { continue };
        let v4 = |ip: &IpAddr| match ip {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        };
        let gw = b.address.map(|a| a.ip());
        let mut targets: Vec<Ipv4Addr> = t
            .ports_of(&b.name)
            .map(|(_, i)| i.address.ip())
            .chain(vx.remote.iter().filter_map(v4))
            .chain(gw)
            .collect();
        targets.sort();
        targets.dedup();
        // Asked as RFC 5227 probes do, from 0.0.0.0: a host that has our gateway's
        // address takes a request from that address as a martian and stays silent, while
        // a probe is answered by whoever holds the target, the gateway included.
        let heard = crate::plumbing::arp::who_has(
            &b.name,
            b.mac.0,
            Ipv4Addr::UNSPECIFIED,
            &targets,
            Duration::from_millis(500),
        )?;
        for (ip, macs) in heard {
            let list: Vec<String> = macs.iter().map(|m| m.to_string()).collect();
            if Some(ip) == gw {
                out.push(format!(
                    "bridge {}: {ip} is this host's address on the segment, and {} answers for it too: another host of VXLAN {} has the same address on its bridge",
                    b.name,
                    list.join(", "),
                    vx.id
                ));
            } else if macs.len() > 1 {
                out.push(format!(
                    "bridge {}: {ip} is answered by {}: two machines of VXLAN segment {} share the address (a namespace here and one on another host, or two on other hosts)",
                    b.name,
                    list.join(" and "),
                    vx.id
                ));
            }
        }
    }
    Ok(out)
}
