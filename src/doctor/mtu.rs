//! One MTU per L2 segment: a bridge whose ports (its veths' host ends, its physical ports)
//! do not all have its MTU loses every frame larger than the smallest of them, silently —
//! nothing on the segment sends "fragmentation needed", it is a switch. Read from the links'
//! MTUs in the host.

use super::{Finding, Severity};
use crate::plumbing::NodeObs;
use crate::topology::Topology;

/// A finding for each bridge of `t` whose ports' MTUs are not all its own.
pub(crate) fn mixed(out: &mut Vec<Finding>, t: &Topology, host: &NodeObs) {
    for b in &t.bridges {
        let Some(br) = host.link(&b.name) else {
            continue;
        };
        let others: Vec<String> = host
            .links
            .iter()
            .filter(|l| l.master == Some(br.index) && l.mtu != br.mtu)
            .map(|l| format!("{} {}", l.name, l.mtu))
            .collect();
        if others.is_empty() {
            continue;
        }
        out.push(Finding {
            severity: Severity::Problem,
            object: format!("bridge {}", b.name),
            what: format!(
                "the segment is mixed: bridge {} has MTU {}, its port(s) {}; frames larger than the smallest MTU are lost without a word",
                b.name,
                br.mtu,
                others.join(", ")
            ),
            fix: format!(
                "nsfw apply {} sets every port to MTU {} (the file's); to run the segment at a port's MTU, set `mtu` on [bridges.{}]",
                t.source.display(),
                b.mtu,
                b.name
            ),
        });
    }
}
