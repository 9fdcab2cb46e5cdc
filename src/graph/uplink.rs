//! Host uplinks as segments of the picture: one per host interface the file's macvlan
//! children sit on (the LAN, reached without a bridge), linked to the host when a child asks
//! for the host's shim; and a child's lines in its namespace's box. Plain text here; `model`
//! makes the boxes.

use crate::topology::{Namespace, Topology};

/// An uplink of the file: its name, its box's (dim) lines, whether the host has a shim on it.
pub(super) type Uplink = (String, Vec<String>, bool);

/// Every uplink of the file, in file order.
pub(super) fn segments(t: &Topology) -> Vec<Uplink> {
    let mut out: Vec<Uplink> = Vec::new();
    for m in t.namespaces.iter().flat_map(|n| &n.macvlans) {
        match out.iter_mut().find(|(u, _, _)| *u == m.uplink) {
            Some(seg) => seg.2 |= m.host_shim,
            None => {
                let lines = vec!["host uplink: macvlan children, no bridge".to_string()];
                out.push((m.uplink.clone(), lines, m.host_shim));
            }
        }
    }
    for (u, lines, shim) in &mut out {
        if *shim {
            let (name, _) = crate::topology::shim(&t.name, u);
            lines.push(format!("the host's shim {name}"));
        }
    }
    out
}

/// A namespace's children of uplinks: (text, dim) lines, `eth0 192.0.2.21/24 @eth0` then
/// `macvlan bridge`.
pub(super) fn lines(n: &Namespace) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for m in &n.macvlans {
        out.push((format!("{} {} @{}", m.ifname, m.address, m.uplink), false));
        if let Some(a6) = m.address6 {
            out.push((format!("{:w$} {a6}", "", w = m.ifname.len()), false));
        }
        out.push((format!("{} {}", m.kind(), m.mode), true));
    }
    out
}
