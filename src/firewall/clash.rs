//! A host port published by two topologies (or a topology and a CNI network): each table's
//! `dnat` takes it in its own prerouting chain, and which one wins depends on the order the
//! kernel registered the hooks in — so the second file would silently take (or not take)
//! the port, and a plain publish of one would beat an address-restricted one of the other,
//! since "restricted first" holds only within a table. The in-file check
//! (`topology::publish::check_clashes`) refuses this within one file; here the other
//! `nsfw_*` tables' publish maps, as observed, are held against the file, with the same rule:
//! two claims of one (family, protocol, port) clash unless both name different addresses.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::owner::Mark;
use crate::topology::Topology;
use nft::dump::Dumped;
use nft::{ElemData, Element, Value};

use super::publish::{ANY, ANY6, AT, AT6};

/// Another table's claim of a host port: its address (None: any), where it leads, its owner.
struct Claim {
    addr: Option<IpAddr>,
    to: String,
    owner: String,
}

/// The owner a table's comment names: `topology alpha` or `CNI network labnet`.
fn owner_of(d: &Dumped) -> Option<String> {
    Some(match Mark::parse(d.structure().comment()?)? {
        Mark::Topology(n) => format!("topology {n}"),
        Mark::Network(n) | Mark::Container { network: n, .. } => format!("CNI network {n}"),
    })
}

/// One element of a publish map: (IPv6?, host address or any, protocol, host port) → the
/// namespace's address and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub v6: bool,
    pub addr: Option<IpAddr>,
    pub proto: u8,
    pub port: u16,
    pub to: Option<(IpAddr, u16)>,
}

/// The entries of publish map `name`'s elements.
fn entries(name: &str, elements: &[Element]) -> Vec<Entry> {
    let v6 = name == ANY6 || name == AT6;
    let mut out = Vec::new();
    for e in elements {
        let (mut addr, mut proto, mut port) = (None, None, None);
        for k in &e.key {
            match k {
                Value::Ipv4(a) => addr = Some(IpAddr::V4(*a)),
                Value::Ipv6(a) => addr = Some(IpAddr::V6(*a)),
                Value::Proto(p) => proto = Some(*p),
                Value::Port(p) => port = Some(*p),
                _ => {}
            }
        }
        let to = match &e.data {
            Some(ElemData::Values(v)) => {
                let a = v.iter().find_map(|x| match x {
                    Value::Ipv4(a) => Some(IpAddr::V4(*a)),
                    Value::Ipv6(a) => Some(IpAddr::V6(*a)),
                    _ => None,
                });
                let p = v.iter().find_map(|x| match x {
                    Value::Port(p) => Some(*p),
                    _ => None,
                });
                a.zip(p)
            }
            _ => None,
        };
        if let (Some(proto), Some(port)) = (proto, port) {
            out.push(Entry {
                v6,
                addr,
                proto,
                port,
                to,
            });
        }
    }
    out
}

/// The entries of a table's publish maps as the kernel holds them (a map nsfw cannot read is
/// left out: that table's own diff says so).
pub(crate) fn observed(d: &Dumped) -> Vec<Entry> {
    let mut out = Vec::new();
    for name in [ANY, AT, ANY6, AT6] {
        if let Some(Ok(set)) = d.set(name) {
            out.extend(entries(name, &set.elements));
        }
    }
    out
}

/// The entries of the publish maps of table `t`.
pub(crate) fn of_table(t: &nft::Table) -> Vec<Entry> {
    t.sets
        .iter()
        .filter(|s| [ANY, AT, ANY6, AT6].contains(&s.name.as_str()))
        .flat_map(|s| entries(&s.name, &s.elements))
        .collect()
}

/// The entries of the publish maps among `sets` (by name, with their elements): what a
/// table diff says goes or comes.
pub(crate) fn of_sets(sets: &[(String, Vec<Element>)]) -> Vec<Entry> {
    sets.iter()
        .filter(|(name, _)| [ANY, AT, ANY6, AT6].contains(&name.as_str()))
        .flat_map(|(name, elements)| entries(name, elements))
        .collect()
}

/// The host ports other nsfw tables publish, keyed by (IPv6?, protocol, host port).
#[derive(Default)]
pub(crate) struct Taken(HashMap<(bool, u8, u16), Vec<Claim>>);

impl Taken {
    /// What the publish maps of `tables` claim.
    pub(crate) fn of<'a>(tables: impl Iterator<Item = &'a Dumped>) -> Taken {
        let mut out = Taken::default();
        for d in tables {
            let Some(owner) = owner_of(d) else { continue };
            for e in observed(d) {
                // Where it leads: `address:port` of the namespace.
                let to = match e.to {
                    Some((IpAddr::V6(a), p)) => format!("[{a}]:{p}"),
                    Some((a, p)) => format!("{a}:{p}"),
                    None => String::new(),
                };
                out.0
                    .entry((e.v6, e.proto, e.port))
                    .or_default()
                    .push(Claim {
                        addr: e.addr,
                        to,
                        owner: owner.clone(),
                    });
            }
        }
        out
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Who holds host port `port` (at `addr`; None: every address) already, as
    /// `owner (its table's map: ADDR:PORT/PROTO → TO)`: two claims of one port clash unless
    /// both name different addresses.
    pub(crate) fn holder(
        &self,
        v6: bool,
        proto: u8,
        port: u16,
        addr: Option<IpAddr>,
    ) -> Option<String> {
        let c = self
            .0
            .get(&(v6, proto, port))?
            .iter()
            .find(|c| c.addr.is_none() || addr.is_none() || c.addr == addr)?;
        let at = match c.addr {
            Some(IpAddr::V6(a)) => format!("[{a}]:{port}"),
            Some(IpAddr::V4(a)) => format!("{a}:{port}"),
            None => format!("{port}"),
        };
        let name = nft::proto_name(proto).unwrap_or_else(|| proto.to_string());
        Some(format!(
            "{} (its table's map: {at}/{name} → {})",
            c.owner, c.to
        ))
    }
}

/// Conflicts: every publish entry of `t` that takes a host port another nsfw table (`own`,
/// by name; `t`'s own table, `mine`, is skipped) already publishes — one per entry, at its
/// first clashing port.
pub(crate) fn across_tables(
    t: &Topology,
    mine: &str,
    own: &std::collections::BTreeMap<String, Dumped>,
) -> Vec<String> {
    let taken = Taken::of(own.iter().filter(|(n, _)| *n != mine).map(|(_, d)| d));
    let mut out = Vec::new();
    if taken.is_empty() {
        return out;
    }
    for n in &t.namespaces {
        'entry: for p in &n.publish {
            for port in p.host.0..=p.host.1 {
                for v6 in [false, true]
                    .into_iter()
                    .filter(|&v6| if v6 { p.v6 } else { p.v4 })
                {
                    if let Some(who) = taken.holder(v6, p.proto.number(), port, p.host_addr) {
                        out.push(format!(
                            "{}: namespaces.{}.publish = {:?}: host port {port}/{} is already published by {who}; a host port leads to one place: drop one of the two",
                            t.source.display(),
                            n.name,
                            p.entry,
                            p.proto,
                        ));
                        continue 'entry;
                    }
                }
            }
        }
    }
    out
}
