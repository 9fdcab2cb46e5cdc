//! What the firewall's plan needs beside the host's ruleset, read once the plumbing is: nsfw's
//! tables inside the namespaces that forward and those of macvlan children (their guards), and what the topology's macvlan uplinks hold
//! (their MAC, their unicast address list, the MACs its children carry that the file does not
//! give them).

use anyhow::Result;

use super::{Kernel, Target};
use crate::firewall::{self, uplink};
use crate::plumbing;

/// Fills `s` in from the plumbing `o` observed.
pub(super) fn observe(
    k: &mut dyn Kernel,
    tg: &Target,
    o: &plumbing::Observed,
    s: &mut firewall::NftState,
) -> Result<()> {
    observe_ns_tables(k, tg, o, s)?;
    if let Some(t) = tg.topology {
        s.uplinks = uplinks(k, t, o)?;
    }
    Ok(())
}

/// nsfw's tables inside the namespaces that forward and those with macvlan children, which
/// the plumbing says.
fn observe_ns_tables(
    k: &mut dyn Kernel,
    tg: &Target,
    o: &plumbing::Observed,
    s: &mut firewall::NftState,
) -> Result<()> {
    if let Some(t) = tg.topology {
        let forwarding = |ns: &str| {
            o.namespaces.get(ns).is_some_and(|n| {
                n.node
                    .sysctls
                    .get(crate::compile::IP_FORWARD)
                    .cloned()
                    .flatten()
                    .as_deref()
                    == Some("1")
            })
        };
        let names: Vec<String> = firewall::ns_to_observe(t, &forwarding)
            .into_iter()
            .filter(|n| o.namespaces.contains_key(n))
            .collect();
        s.ns_tables = k.observe_ns_tables(&t.name, &names, nft::Family::Inet)?;
        // Macvlan children's guards: where the file puts children, and where a child is now.
        let has_child = |ns: &str| {
            o.namespaces.get(ns).is_some_and(|n| {
                n.node
                    .links
                    .iter()
                    .any(|l| matches!(l.kind.as_deref(), Some("macvlan" | "macvtap")))
            })
        };
        let guarded: Vec<String> = firewall::guard::to_observe(t, &has_child)
            .into_iter()
            .filter(|n| o.namespaces.contains_key(n))
            .collect();
        s.ns_guards = k.observe_ns_tables(&t.name, &guarded, nft::Family::Netdev)?;
    }
    Ok(())
}

/// Each uplink of the topology's children as the kernel shows it now.
fn uplinks(
    k: &mut dyn Kernel,
    t: &crate::topology::Topology,
    o: &plumbing::Observed,
) -> Result<std::collections::BTreeMap<String, uplink::Seen>> {
    let mut out: std::collections::BTreeMap<String, uplink::Seen> = Default::default();
    // Where each child (and shim) of the file is, and the MAC it is given (None: a passthru
    // child whose uplink is missing).
    let mut given = std::collections::BTreeMap::new();
    for n in &t.namespaces {
        for m in &n.macvlans {
            out.entry(m.uplink.clone()).or_default();
            let mac = (m.mode != crate::topology::MacvlanMode::Passthru).then_some(m.mac);
            // A passthru child carries the uplink's MAC: any other it has now is leaving.
            let mac = mac.or_else(|| o.host.link(&m.uplink).and_then(|l| l.mac));
            given.insert((Some(n.name.as_str()), m.ifname.clone()), mac);
            if m.host_shim {
                let (name, mac) = crate::topology::shim(&t.name, &m.uplink);
                given.insert((None, name), Some(mac));
            }
        }
    }
    // Every macvlan this topology marked, wherever it is, that carries a MAC the file does not
    // give it: a child whose owner took a new MAC, or one the plan removes. None is let out.
    let mark = crate::owner::mark(&t.name);
    let places = std::iter::once((None, &o.host)).chain(
        o.namespaces
            .iter()
            .map(|(n, ns)| (Some(n.as_str()), &ns.node)),
    );
    let mut leaving = Vec::new();
    for (place, node) in places {
        for l in &node.links {
            let macvlan = matches!(l.kind.as_deref(), Some("macvlan" | "macvtap"));
            if !macvlan || l.alias.as_deref() != Some(mark.as_str()) {
                continue;
            }
            let want = given.get(&(place, l.name.clone()));
            if let Some(mac) = l.mac
                && want.is_none_or(|w| w.is_some_and(|w| w != mac))
            {
                leaving.push(mac);
            }
        }
    }
    for seen in out.values_mut() {
        seen.spoofed.clone_from(&leaving);
    }
    let mut indexes = Vec::new();
    for (name, seen) in &mut out {
        if let Some(l) = o.host.link(name) {
            seen.mac = l.mac;
            indexes.push(l.index);
        }
    }
    if indexes.is_empty() {
        return Ok(out);
    }
    let mut lists = k.unicast(&indexes)?;
    for (name, seen) in &mut out {
        let Some(l) = o.host.link(name) else {
            continue;
        };
        seen.unicast = lists.remove(&l.index).unwrap_or_default();
        // The host's addresses on the LAN: the uplink's (what the apply adds elsewhere, a
        // bridge's, is not on the LAN, and would make the first apply differ from the next).
        for a in o.host.addrs.iter().filter(|a| a.index == l.index) {
            match a.net.ip() {
                std::net::IpAddr::V4(v) => seen.host4.push(v),
                std::net::IpAddr::V6(v) => seen.host6.push(v),
            }
        }
        // The host's own macvlans on the uplink (its shims): what they send is the host's.
        // nsfw's shims aside: each topology counts its own (`uplink::claims`), so that no
        // table holds another's, which would go stale when that one is flushed.
        seen.host = o
            .host
            .links
            .iter()
            .filter(|l| matches!(l.kind.as_deref(), Some("macvlan" | "macvtap")))
            .filter(|l| !crate::owner::owned(l.alias.as_deref(), |_| true))
            .filter_map(|l| l.mac)
            .filter(|m| seen.unicast.contains(m))
            .collect();
    }
    Ok(out)
}

/// The file's children whose MAC the uplink or a foreign child holds (`uplink::taken_macs`),
/// told apart from this topology's own links (wherever they are) by their mark — and, inside
/// the file's namespaces, by being the child the file puts there: a run killed between making
/// a child and marking it (two messages) leaves it unmarked, and the next run keeps it.
pub(super) fn taken_macs(
    t: &crate::topology::Topology,
    o: &super::Observed,
    file: &str,
) -> Vec<String> {
    let mark = crate::owner::mark(&t.name);
    let mut ours: Vec<crate::topology::Mac> = std::iter::once(&o.net.host)
        .chain(o.net.namespaces.values().map(|n| &n.node))
        .flat_map(|n| &n.links)
        .filter(|l| l.alias.as_deref() == Some(mark.as_str()))
        .filter_map(|l| l.mac)
        .collect();
    for n in &t.namespaces {
        let Some(ns) = o.net.namespaces.get(&n.name) else {
            continue;
        };
        for m in &n.macvlans {
            let child = ns.node.links.iter().find(|l| {
                l.name == m.ifname && l.kind.as_deref() == Some(m.kind()) && l.mac == Some(m.mac)
            });
            ours.extend(child.and_then(|l| l.mac));
        }
    }
    uplink::taken_macs(t, &o.nft, &ours, file)
}

/// Whether `conflicts` are all taken MACs (`taken_macs`) held only by children in no named
/// namespace (nor the host's): after `nsfw flush`, the file's own children outlive their
/// namespace's name until the kernel tears it down (cleanup_net), and their MACs stay on the
/// uplink's list meanwhile. The run waits a while for them to leave (as `flush_linger` does
/// for veths) before refusing: a child a process holds in an unnamed namespace is still
/// refused, later.
pub(super) fn only_lingering_macs(
    t: &crate::topology::Topology,
    o: &super::Observed,
    conflicts: &[String],
    file: &str,
) -> bool {
    let taken = taken_macs(t, o, file);
    if conflicts.is_empty() || conflicts.iter().any(|c| !taken.contains(c)) {
        return false;
    }
    // The MACs a named namespace's (or the host's) link carries, this topology's aside.
    let mark = crate::owner::mark(&t.name);
    let named: Vec<crate::topology::Mac> = std::iter::once(&o.net.host)
        .chain(o.net.namespaces.values().map(|n| &n.node))
        .flat_map(|n| &n.links)
        .filter(|l| l.alias.as_deref() != Some(mark.as_str()))
        .filter_map(|l| l.mac)
        .collect();
    t.namespaces
        .iter()
        .flat_map(|n| &n.macvlans)
        .filter(|m| m.mode != crate::topology::MacvlanMode::Passthru)
        .all(|m| {
            let Some(seen) = o.nft.uplinks.get(&m.uplink) else {
                return true;
            };
            seen.mac != Some(m.mac) && !(seen.unicast.contains(&m.mac) && named.contains(&m.mac))
        })
}
