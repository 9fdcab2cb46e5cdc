//! VXLAN links and their peers (FDB entries): the link made when missing or of another VNI,
//! local address or port, else its MTU and bridge kept; every peer of the file an entry,
//! every other all-zeros entry of the link gone. The tunnel's source must be an address of
//! this host: the file cannot know, the observation does.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::cx::Cx;
use super::links::Deletes;
use crate::kinds::link::Seen;
use crate::kinds::{AddFdb, CreateVxlan, DelFdb, LinkAttr, vxlan};
use crate::plumbing::{Fdb, Link};
use crate::resources::{LinkKind, LinkSpec, Place};

impl<'a> Cx<'a> {
    /// A VXLAN link, by its spec: made (again) or its attributes set.
    pub(super) fn vxlan(
        &mut self,
        spec: &LinkSpec,
        ours: Option<&'a Link>,
        deletes: &mut Deletes<'a>,
    ) {
        if self.refused(spec) {
            return;
        }
        let have = match ours.map(|l| (l, vxlan::drift(spec, l))) {
            Some((l, Some(why))) => {
                deletes.push((l, why));
                None
            }
            other => other.map(|(l, _)| l),
        };
        let bridge = spec.master.as_deref().unwrap_or_default();
        match have {
            Some(l) => {
                let seen = Seen {
                    link: l,
                    master: l.master.and_then(|i| self.host_name_of(i)),
                    master_new: self.new_links.contains_key(bridge),
                };
                self.set_link(Place::Host, &spec.name, vxlan::attrs(spec, &seen));
            }
            None => {
                let Some(make) = CreateVxlan::of(spec) else {
                    return;
                };
                self.new_links
                    .insert(spec.name.clone(), make.mac.to_string());
                self.push(make);
                // It joins its bridge once the bridges exist (by index).
                let mut join = vec![LinkAttr::Master {
                    old: None,
                    new: spec.master.clone(),
                }];
                if spec.isolated {
                    join.push(LinkAttr::Isolated { new: true });
                }
                self.set_link(Place::Host, &spec.name, join);
            }
        }
    }

    /// Whether the tunnel is one the kernel would refuse, or that could not work, said as a
    /// conflict (so nothing is made): `local` not this host's, its VNI and port taken.
    fn refused(&mut self, spec: &LinkSpec) -> bool {
        let LinkKind::Vxlan { id, local, port } = spec.kind else {
            return true;
        };
        let Some(mine) = self.o.host.addrs.iter().find(|a| a.net.ip() == local) else {
            self.conflict(format!(
                "{}: {}.local = \"{local}\": not an address of this host (the tunnel's source must be one of its addresses; each host applies its own file)",
                self.file(),
                spec.origin
            ));
            return true;
        };
        // The kernel refuses a second VXLAN link of one VNI, port and family in a
        // namespace (whatever its local address): refused here, before anything is made,
        // rather than part-way.
        let taken = self.o.host.links.iter().find(|l| {
            l.name != spec.name
                && l.vxlan.as_ref().is_some_and(|v| {
                    v.id == id
                        && v.port == port
                        && v.local.is_none_or(|a| a.is_ipv6() == local.is_ipv6())
                })
        });
        if let Some(l) = taken {
            self.conflict(format!(
                "{}: {}.id = {id}: VXLAN link {} already carries VNI {id} on port {port} on this host (the kernel takes one link per VNI and port); give this segment another `id` or `port`, or remove {}",
                self.file(),
                spec.origin,
                l.name,
                l.name
            ));
            return true;
        }
        // A peer that is the network's or the broadcast address of `local`'s subnet is
        // no host: the tunnel would send to nobody or to everyone.
        if let ipnetwork::IpNetwork::V4(n) = mine.net
            && n.prefix() < 31
        {
            let bad = self.d.host.fdb.iter().find(|(l, p)| {
                *l == spec.name
                    && (*p == IpAddr::V4(n.network()) || *p == IpAddr::V4(n.broadcast()))
            });
            if let Some((_, p)) = bad {
                self.conflict(format!(
                    "{}: {}.peers = \"{p}\": the network's or broadcast address of {}/{}, the subnet of `local`: not a host",
                    self.file(),
                    spec.origin,
                    n.network(),
                    n.prefix()
                ));
                return true;
            }
        }
        false
    }

    /// The peers of every VXLAN link of the file: added where missing, and the all-zeros
    /// entries of a link kept that the file no longer names deleted.
    pub(super) fn fdb(&mut self) {
        let d = self.d;
        for spec in d.host.links.values() {
            if !matches!(spec.kind, LinkKind::Vxlan { .. }) {
                continue;
            }
            let want: BTreeSet<IpAddr> = d
                .host
                .fdb
                .iter()
                .filter(|(l, _)| *l == spec.name)
                .map(|(_, ip)| *ip)
                .collect();
            let made = self.new_links.contains_key(&spec.name);
            let kept = self
                .o
                .host
                .link(&spec.name)
                .filter(|l| !made && l.alias.as_deref() == Some(d.mark.as_str()));
            let have: Vec<&Fdb> = match kept {
                Some(l) => self
                    .o
                    .host
                    .fdb
                    .iter()
                    .filter(|f| f.index == l.index)
                    .collect(),
                None if made => Vec::new(),
                None => continue, // not ours: a conflict, reported
            };
            // A peer's entry is right only with the link's own port, VNI and device: one to
            // the right address that says another port or VNI sends the peer's frames where
            // nobody listens, so it is replaced, not kept.
            let right: BTreeSet<IpAddr> = have
                .iter()
                .filter(|f| f.via.is_own())
                .map(|f| f.dst)
                .collect();
            for dst in want.difference(&right) {
                self.push(AddFdb {
                    link: spec.name.clone(),
                    dst: *dst,
                });
            }
            for f in have {
                let why = match (want.contains(&f.dst), f.via.is_own()) {
                    (true, true) => continue,
                    (true, false) => "the peer with another port, VNI or device than the tunnel's",
                    (false, _) => "not a peer in the file",
                };
                self.push(DelFdb {
                    link: spec.name.clone(),
                    index: f.index,
                    dst: f.dst,
                    via: f.via,
                    why,
                });
            }
        }
    }
}
