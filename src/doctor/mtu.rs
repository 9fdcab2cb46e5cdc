//! One MTU per L2 segment: a bridge whose ports (its veths' host ends, its physical ports)
//! do not all have its MTU loses every frame larger than the smallest of them, silently —
//! nothing on the segment sends "fragmentation needed", it is a switch. Read from the links'
//! MTUs in the host.

use super::{Finding, Severity};
use crate::plumbing::NodeObs;
use crate::topology::Topology;

/// [`mixed`], read from the host now (`nsfw verify`).
pub(crate) fn read(t: &Topology) -> anyhow::Result<Vec<Finding>> {
    let mut c = crate::plumbing::rtnl::Conn::open("host")?;
    let node = crate::plumbing::observe::read_node(&mut c)?;
    let mut out = Vec::new();
    mixed(&mut out, t, &node);
    Ok(out)
}

/// A finding for each bridge of `t` whose links (itself, its veths' host ends, its physical
/// ports) do not all have one MTU, naming those that differ from the file's.
pub(crate) fn mixed(out: &mut Vec<Finding>, t: &Topology, host: &NodeObs) {
    for b in &t.bridges {
        let Some(br) = host.link(&b.name) else {
            continue;
        };
        let members: Vec<_> = std::iter::once(br)
            .chain(host.links.iter().filter(|l| l.master == Some(br.index)))
            .collect();
        if members.iter().all(|l| l.mtu == br.mtu) {
            continue;
        }
        let off: Vec<String> = members
            .iter()
            .filter(|l| l.mtu != b.mtu)
            .map(|l| format!("{} {}", l.name, l.mtu))
            .collect();
        out.push(Finding {
            severity: Severity::Problem,
            object: format!("bridge {}", b.name),
            what: format!(
                "the segment is mixed: [bridges.{}] says MTU {}, and {} differ; frames larger than the smallest MTU are lost without a word",
                b.name,
                b.mtu,
                off.join(", ")
            ),
            fix: format!(
                "nsfw apply {} sets every link of the segment to MTU {}; to run it at a port's MTU, set `mtu` on [bridges.{}]",
                t.source.display(),
                b.mtu,
                b.name
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plumbing::Link;

    fn link(index: u32, name: &str, master: Option<u32>, mtu: u32) -> Link {
        Link {
            name: name.into(),
            master,
            mtu,
            ..Link::bare(index, true, false)
        }
    }

    #[test]
    fn a_segment_is_mixed_when_its_links_differ_and_names_those_off_the_files_mtu() {
        let t = crate::testdata::topology(
            "m",
            "name='m'\n[bridges.br0]\naddress='10.0.0.1/24'\nports=['eth1']\nmtu=1400\n[namespaces.a]\nbridge='br0'\n",
        );
        let mut host = NodeObs {
            links: vec![
                link(1, "br0", None, 1400),
                link(2, "veth-a", Some(1), 1400),
                link(3, "eth1", Some(1), 1400),
            ],
            ..NodeObs::default()
        };
        let mut out = Vec::new();
        mixed(&mut out, &t, &host);
        assert!(out.is_empty(), "{out:?}");
        host.links[2].mtu = 9000;
        mixed(&mut out, &t, &host);
        assert_eq!(out.len(), 1);
        assert!(
            out[0].what.contains("says MTU 1400, and eth1 9000 differ"),
            "{}",
            out[0].what
        );
    }
}
