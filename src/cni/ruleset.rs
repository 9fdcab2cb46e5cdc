//! The kernel side of a network's table: what it holds (read under the lock), and the ops of
//! the one batch an ADD, DEL or GC sends: whole table when the network has none yet, else set
//! and map elements only; the accepts in iptables-nft's FORWARD (Docker's drop policy) through
//! the engine's own planning of them.

use std::collections::BTreeMap;

use super::error::{CniError, CniResult, code};
use super::table::{self, Elem};
use crate::firewall::{self, NftPlan, NftState};
use crate::owner;
use ::nft::batch::Op;
use ::nft::socket::NftSocket;
use ::nft::{Element, Family, Set};

/// What the kernel holds of one network's firewall.
pub(super) struct Held {
    pub network: String,
    pub exists: bool,
    /// Its sets and maps with their elements, by name.
    pub sets: BTreeMap<String, Set>,
    /// iptables-nft's FORWARD side (policy, Docker's bridges, nsfw's accepts).
    pub ipt: NftState,
}

impl Held {
    /// Every element of the sets, with the set's name.
    pub(super) fn elements(&self) -> impl Iterator<Item = (&str, &Element)> {
        self.sets
            .iter()
            .flat_map(|(n, s)| s.elements.iter().map(move |e| (n.as_str(), e)))
    }

    /// The elements `owner` ("container:ifname") put there.
    pub(super) fn owned_by(&self, owner: &str) -> Vec<(String, Element)> {
        self.elements()
            .filter(|(_, e)| e.comment.as_deref() == Some(owner))
            .map(|(n, e)| (n.to_string(), e.clone()))
            .collect()
    }

    pub(super) fn has(&self, set: &str, e: &Element) -> bool {
        self.sets
            .get(set)
            .is_some_and(|s| s.elements.iter().any(|x| table::same_entry(x, e)))
    }

    /// Whether any container's elements remain.
    pub(super) fn has_containers(&self) -> bool {
        self.elements().any(|(_, e)| e.comment.is_some())
    }
}

/// Reads the network's table (its sets, when it exists) and iptables-nft's FORWARD side. A
/// table of that name without the network's mark is a conflict.
pub(super) fn read(sock: &mut NftSocket, network: &str) -> CniResult<Held> {
    let name = owner::cni_table(network);
    let mark = owner::network_mark(network);
    let mut ipt = NftState {
        tables: sock.tables()?,
        ..Default::default()
    };
    let info = ipt
        .tables
        .iter()
        .find(|t| t.family == Family::Inet && t.name == name)
        .cloned();
    if let Some(t) = &info
        && t.comment.as_deref() != Some(mark.as_str())
    {
        return Err(CniError::new(
            code::CONFLICT,
            format!(
                "nftables table inet {name} exists and is not network {network}'s (its comment is {:?}, not {mark:?})",
                t.comment.as_deref().unwrap_or("")
            ),
        ));
    }
    let mut sets = BTreeMap::new();
    if info.is_some() {
        for (s, anon) in sock.sets(Family::Inet, &name)?.sets {
            if !anon {
                sets.insert(s.name.clone(), s);
            }
        }
    }
    firewall::observe_ipt(sock, &mut ipt)?;
    Ok(Held {
        network: network.to_string(),
        exists: info.is_some(),
        sets,
        ipt,
    })
}

/// `elems` grouped into one op per set (`add` or delete).
fn element_ops(network: &str, elems: Vec<(String, Element)>, add: bool) -> Vec<Op> {
    let mut by: BTreeMap<String, Vec<Element>> = BTreeMap::new();
    for (s, e) in elems {
        by.entry(s).or_default().push(e);
    }
    by.into_iter()
        .filter_map(|(s, elements)| {
            let set = Set {
                elements,
                ..table::declaration(&s)?
            };
            let (family, table) = (Family::Inet, owner::cni_table(network));
            Some(if add {
                Op::AddElements { family, table, set }
            } else {
                Op::DeleteElements { family, table, set }
            })
        })
        .collect()
}

/// The accepts of the network's bridge in iptables-nft's FORWARD (`bridge` None: none).
fn accepts(h: &Held, bridge: Option<&str>) -> Vec<Op> {
    let mut p = NftPlan::default();
    let bridges: Vec<String> = bridge.map(str::to_string).into_iter().collect();
    firewall::place_accepts(&mut p, owner::Mark::Network(&h.network), &bridges, &h.ipt);
    p.ops
}

/// An ADD's batch: the table with `network` and `container` elements when there is none,
/// else the elements not there yet; and the FORWARD accepts when they are due.
pub(super) fn add_ops(
    h: &Held,
    conf: &super::config::NetConf,
    network: Vec<Elem>,
    container: Vec<Elem>,
) -> Vec<Op> {
    let mut ops = Vec::new();
    let all: Vec<(String, Element)> = network
        .into_iter()
        .chain(container)
        .map(|(s, e)| (s.to_string(), e))
        .collect();
    if h.exists {
        let missing = all.into_iter().filter(|(s, e)| !h.has(s, e)).collect();
        ops.extend(element_ops(&h.network, missing, true));
    } else {
        let mut t = table::table(conf);
        for (s, e) in all {
            if let Some(set) = t.sets.iter_mut().find(|x| x.name == s) {
                set.elements.push(e);
            }
        }
        ops.push(Op::AddTable(t));
    }
    ops.extend(accepts(h, Some(&conf.bridge)));
    ops
}

/// The deletion of `elems`.
pub(super) fn del_ops(h: &Held, elems: Vec<(String, Element)>) -> Vec<Op> {
    element_ops(&h.network, elems, false)
}

/// The removal of the whole table and of the FORWARD accepts: the network's last container
/// is gone.
pub(super) fn remove_ops(h: &Held) -> Vec<Op> {
    let mut ops = Vec::new();
    if h.exists {
        ops.push(Op::DeleteTable {
            family: Family::Inet,
            name: owner::cni_table(&h.network),
        });
    }
    ops.extend(accepts(h, None));
    ops
}

/// The FORWARD accepts as they should be for `bridge`: none pending is an empty list.
pub(super) fn accept_drift(h: &Held, bridge: &str) -> Vec<String> {
    let mut p = NftPlan::default();
    firewall::place_accepts(
        &mut p,
        owner::Mark::Network(&h.network),
        &[bridge.to_string()],
        &h.ipt,
    );
    p.lines.iter().map(|l| l.to_string()).collect()
}

pub(super) fn send(sock: &mut NftSocket, ops: &[Op]) -> CniResult<()> {
    firewall::execute(sock, ops).map_err(|e| CniError::internal(&e))
}
