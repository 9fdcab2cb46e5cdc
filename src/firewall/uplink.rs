//! Anti-spoofing for namespaces on a host uplink (macvlan children): `table netdev nsfw_<name>`
//! with one chain per uplink on its egress hook. A child's frames never pass the host's IP
//! stack (nor the bridge hooks: the uplink is no bridge port), but every frame a child sends
//! to the LAN passes its uplink's egress in the host's namespace — out of reach of the child's
//! owner, and frames forged with a packet socket included. Each child may send there only
//! with its own source address (IPv4, ARP, IPv6 with its link-local address):
//!
//! ```nft
//! table netdev nsfw_office {
//!     set children_eth0 { type ether_addr; elements = { 02:b2:bf:89:a2:91 } }
//!     set known_eth0 { type ether_addr; elements = { UPLINK, FOREIGN-CHILD, … } }
//!     chain eth0 {
//!         type filter hook egress device "eth0" priority filter; policy accept;
//!         ether saddr != @children_eth0 ether saddr != @known_eth0 counter drop
//!         ether saddr 02:b2:bf:89:a2:91 ip saddr != 192.0.2.21 counter drop
//!         ether saddr 02:b2:bf:89:a2:91 arp saddr ip != 192.0.2.21 counter drop
//!         ether saddr 02:b2:bf:89:a2:91 ether type ip6 counter drop
//!     }
//! }
//! ```
//!
//! (Before those, `claims`' rules: frames are judged by their ethertype, and what each
//! allowed MAC may claim is bounded; `nsfw show` gives the whole chain.)
//!
//! A child that takes a new MAC is judged by the allow-list rule: only the MACs the file gives,
//! the uplink's own, and the other children the uplink held at apply time (its unicast list,
//! other topologies' tables) leave; see [`table_with`]. What it does not see: frames between
//! two children in bridge mode (the driver hands them over inside the host; `mode =
//! "private"` keeps children apart), and a child that takes the MAC of a sibling that is down
//! (the driver refuses only the MACs of up siblings and the uplink's).

use std::collections::BTreeMap;

use crate::owner;
use crate::topology::{Mac, Macvlan, MacvlanMode, Topology, shim};
use nft::dump::Dumped;
use nft::{
    Base, Chain, ChainType, Datatype, Device, Family, Field, Hook, Policy, Rule, Set, Stmt, Table,
    Value, Verdict, prio,
};

use super::build::{field, rule};
use super::{NftLine, NftPlan, NftState};

/// A rule that counts and drops.
fn drop(mut stmts: Vec<Stmt>) -> Rule {
    stmts.push(Stmt::Counter(nft::Counter::default()));
    rule(stmts, Verdict::Drop)
}

const ND_ROUTER_ADVERT: u8 = 134;
const ND_NEIGHBOR_ADVERT: u8 = 136;
const ND_REDIRECT: u8 = 137;

fn icmpv6(ty: u8) -> Stmt {
    Stmt::eq(field(Field::Icmpv6Type), Value::Icmpv6Type(ty))
}

/// `FIELD != { A, B, … }`
fn not_among(f: Field, vals: Vec<Value>) -> Stmt {
    Stmt::Match(nft::Match {
        left: field(f),
        op: nft::Op::Neq,
        right: nft::Rhs::Set(nft::SetRef::Anon(
            vals.into_iter()
                .map(|v| nft::Element::key(vec![v]))
                .collect(),
        )),
    })
}

/// One child's rules: what leaves with its MAC must be IPv4, ARP or IPv6 from its own
/// addresses, naming no one else's. A passthru child carries the uplink's own MAC, which the
/// host cannot use meanwhile (the child holds the uplink), so its rules judge every frame on
/// that uplink, whatever its MAC:
///
/// ```nft
/// ether saddr MAC ether type != { ip, arp, ip6 } counter drop
/// ether saddr MAC ip saddr != ADDR counter drop
/// ether saddr MAC arp saddr ip != ADDR counter drop
/// ether saddr MAC arp saddr ether != MAC counter drop
/// ether saddr MAC ip6 saddr != { ADDR6, LINK-LOCAL } counter drop   # or: ether type ip6 drop
/// ether saddr MAC icmpv6 type { nd-router-advert, nd-redirect } counter drop
/// ether saddr MAC icmpv6 type nd-neighbor-advert icmpv6 taddr != { ADDR6, LINK-LOCAL } counter drop
/// ```
fn child(m: &Macvlan) -> Vec<Rule> {
    let passthru = m.mode == MacvlanMode::Passthru;
    let head = || {
        if passthru {
            vec![]
        } else {
            vec![Stmt::eq(field(Field::EtherSaddr), Value::Ether(m.mac.0))]
        }
    };
    let with = |more: Vec<Stmt>| {
        let mut v = head();
        v.extend(more);
        drop(v)
    };
    let own = Value::Ipv4(m.address.ip());
    let mut out = vec![
        with(vec![not_among(
            Field::EtherType,
            [0x0800, 0x0806, 0x86dd].map(Value::EtherType).to_vec(),
        )]),
        with(vec![Stmt::neq(field(Field::IpSaddr), own.clone())]),
        with(vec![Stmt::neq(field(Field::ArpSaddrIp), own)]),
    ];
    if !passthru {
        // The ARP sender's MAC is the frame's: otherwise a reply points the LAN's entry for
        // the child's address at another station.
        out.push(with(vec![Stmt::neq(
            field(Field::ArpSaddrEther),
            Value::Ether(m.mac.0),
        )]));
    }
    match m.address6 {
        // One rule for both addresses, or each would drop the other.
        Some(a6) => {
            let keep = || vec![Value::Ipv6(a6.ip()), Value::Ipv6(m.mac.link_local().ip())];
            out.push(with(vec![not_among(Field::Ip6Saddr, keep())]));
            out.push(with(vec![icmpv6(ND_ROUTER_ADVERT)]));
            out.push(with(vec![icmpv6(ND_REDIRECT)]));
            out.push(with(vec![
                icmpv6(ND_NEIGHBOR_ADVERT),
                not_among(Field::Icmpv6Taddr, keep()),
            ]));
        }
        // No IPv6 on the child: none of it leaves with its MAC.
        None => out.push(with(vec![Stmt::eq(
            field(Field::EtherType),
            Value::EtherType(0x86dd),
        )])),
    }
    out
}

/// What the kernel said of one uplink when the run observed it (`engine`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Seen {
    /// The uplink's own MAC (None: no such link).
    pub mac: Option<Mac>,
    /// Its unicast address list: the MAC of every up, non-passthru macvlan/macvtap child on
    /// it, whoever owns it and in whatever namespace (`bridge fdb show dev UPLINK`'s `self
    /// permanent` entries).
    pub unicast: Vec<Mac>,
    /// MACs this topology's own macvlans carry now that the file does not give them: a child
    /// whose owner took a new MAC (the plumbing puts it back), or one the plan removes. Never
    /// let through.
    pub spoofed: Vec<Mac>,
    /// The MACs of the host's own macvlans on it (shims, whoever made them).
    pub host: Vec<Mac>,
    /// The host's addresses on the uplink.
    pub host4: Vec<std::net::Ipv4Addr>,
    pub host6: Vec<std::net::Ipv6Addr>,
}

/// The set of this topology's children (and shim) on uplink `u`.
fn children_set(u: &str) -> String {
    format!("children_{u}")
}

/// The set of every other MAC allowed out of uplink `u`.
fn known_set(u: &str) -> String {
    format!("known_{u}")
}

fn mac_set(name: String, macs: impl IntoIterator<Item = Mac>) -> Set {
    let mut macs: Vec<Mac> = macs.into_iter().collect();
    macs.sort();
    macs.dedup();
    Set {
        name,
        key: vec![Datatype::EtherAddr],
        elements: macs
            .into_iter()
            .map(|m| nft::Element::key(vec![Value::Ether(m.0)]))
            .collect(),
        ..Set::default()
    }
}

/// The MACs of a set read back (none when it is not there or cannot be read).
fn macs_of(d: &Dumped, set: &str) -> Vec<Mac> {
    let Some(Ok(s)) = d.set(set) else {
        return Vec::new();
    };
    s.elements
        .iter()
        .filter_map(|e| match e.key.as_slice() {
            [Value::Ether(m)] => Some(Mac(*m)),
            _ => None,
        })
        .collect()
}

/// The MACs of the topology's children on each uplink (passthru children aside: they carry
/// the uplink's own), and of its shim there.
fn children(t: &Topology) -> BTreeMap<&str, Vec<Mac>> {
    let mut out: BTreeMap<&str, Vec<Mac>> = BTreeMap::new();
    for m in t.namespaces.iter().flat_map(|n| &n.macvlans) {
        let macs = out.entry(&m.uplink).or_default();
        if m.mode != MacvlanMode::Passthru {
            macs.push(m.mac);
        }
        if m.host_shim {
            macs.push(shim(&t.name, &m.uplink).1);
        }
    }
    out
}

/// Every MAC but the topology's own children's that may leave uplink `u`, as the kernel shows
/// them now: the uplink's own, every other nsfw topology's children there (their tables say
/// which), and the foreign children in its unicast list — less what this topology's own
/// children carry that the file does not give them (the spoof).
fn known(t: &Topology, u: &str, own: &[Mac], s: &NftState) -> Vec<Mac> {
    let seen = s.uplinks.get(u).cloned().unwrap_or_default();
    let me = owner::table(&t.name);
    let others = nsfw_tables(s)
        .filter(|(name, _)| **name != me)
        .flat_map(|(_, d)| macs_of(d, &children_set(u)));
    seen.mac
        .into_iter()
        .chain(seen.unicast)
        .chain(others)
        // The uplink's own MAC stays: a passthru child the file turns into another mode
        // leaves it behind, and it is the host's again.
        .filter(|m| !own.contains(m) && (seen.mac == Some(*m) || !seen.spoofed.contains(m)))
        .collect()
}

/// The file's children (and shims) whose MAC another already holds on their uplink: the
/// uplink itself, or a child nsfw's topology does not own (`ours`: the MACs its own links
/// carry now). The kernel would refuse to bring such a child up half-way through the run, so
/// each is a conflict, refused before anything changes.
pub(crate) fn taken_macs(t: &Topology, s: &NftState, ours: &[Mac], file: &str) -> Vec<String> {
    let mut out = Vec::new();
    for n in &t.namespaces {
        for m in &n.macvlans {
            let Some(seen) = s.uplinks.get(&m.uplink) else {
                continue;
            };
            // A passthru child carries the uplink's MAC, not its own.
            let mut mine = Vec::new();
            if m.mode != MacvlanMode::Passthru {
                mine.push((format!("{}.mac", m.key), m.mac));
            }
            if m.host_shim {
                let key = format!("{}.host_shim", m.key);
                mine.push((key, shim(&t.name, &m.uplink).1));
            }
            for (key, mac) in mine {
                let who = if seen.mac == Some(mac) {
                    format!("the MAC of the uplink {} itself", m.uplink)
                } else if seen.unicast.contains(&mac) && !ours.contains(&mac) {
                    format!("the MAC of a child of {} that nsfw does not own", m.uplink)
                } else {
                    continue;
                };
                let line = format!(
                    "{file}: {key} = \"{mac}\": the child's MAC (given or derived from the names) is {who}; the kernel refuses a child a MAC in use: give another `mac`"
                );
                if !out.contains(&line) {
                    out.push(line);
                }
            }
        }
    }
    out
}

/// The topology's netdev table as `nsfw show` prints it (nothing observed: the set of other
/// MACs is empty until an apply fills it); None when it has no child of an uplink.
pub(crate) fn table(t: &Topology) -> Option<Table> {
    table_with(t, &|u, _| (Vec::new(), claims(t, u, &Seen::default())))
}

/// What the host says from uplink `u`: its MAC (unless a passthru child of the file holds
/// the uplink), its macvlans' there and the file's shim on it; and its addresses.
fn claims(t: &Topology, u: &str, seen: &Seen) -> super::claims::Claims {
    let on_u = || {
        t.namespaces
            .iter()
            .flat_map(|n| &n.macvlans)
            .filter(|m| m.uplink == u)
    };
    let passthru = on_u().any(|m| m.mode == MacvlanMode::Passthru);
    let mut host: Vec<Mac> = seen.host.clone();
    host.extend(seen.mac.filter(|_| !passthru));
    if on_u().any(|m| m.host_shim) {
        host.push(shim(&t.name, u).1);
    }
    host.sort();
    host.dedup();
    super::claims::Claims {
        host,
        host4: seen.host4.clone(),
        host6: seen.host6.clone(),
        passthru: seen.mac.filter(|_| passthru),
    }
}

/// The topology's netdev table, `known(uplink, its children)` giving the other MACs allowed
/// out of each uplink. Each chain starts by dropping a frame whose source MAC is none of
/// them, then judges each child by its own MAC:
///
/// ```nft
/// set children_eth0 { type ether_addr; elements = { CHILD, SHIM } }
/// set known_eth0 { type ether_addr; elements = { UPLINK, FOREIGN-CHILD, OTHER-TOPOLOGY'S } }
/// ether saddr != @children_eth0 ether saddr != @known_eth0 counter drop
/// ```
type Known<'a> = &'a dyn Fn(&str, &[Mac]) -> (Vec<Mac>, super::claims::Claims);

fn table_with(t: &Topology, known: Known) -> Option<Table> {
    let mut by_uplink: BTreeMap<&str, Vec<&Macvlan>> = BTreeMap::new();
    for m in t.namespaces.iter().flat_map(|n| &n.macvlans) {
        by_uplink.entry(&m.uplink).or_default().push(m);
    }
    if by_uplink.is_empty() {
        return None;
    }
    let own = children(t);
    let mut sets = Vec::new();
    let chains = by_uplink
        .into_iter()
        .filter_map(|(u, kids)| {
            let base = Base {
                ty: ChainType::Filter,
                hook: Hook::Egress(Device::new(u)?),
                priority: prio::FILTER,
                policy: Policy::Accept,
            };
            let mut mine = own.get(u).cloned().unwrap_or_default();
            let (others, claims) = known(u, &mine);
            // A passthru child sends with the uplink's MAC: it is the file's child's.
            mine.extend(claims.passthru);
            sets.push(mac_set(children_set(u), mine));
            sets.push(mac_set(known_set(u), others));
            sets.extend(super::claims::sets(t, u, &claims));
            let unknown = drop(vec![
                in_set(Field::EtherSaddr, children_set(u)),
                in_set(Field::EtherSaddr, known_set(u)),
            ]);
            let rules = super::claims::head()
                .into_iter()
                .chain(std::iter::once(unknown))
                .chain(super::claims::rules(u, children_set(u)))
                .chain(kids.into_iter().flat_map(child))
                .collect();
            Some(Chain::new(u, Some(base), rules))
        })
        .collect();
    Some(Table {
        comment: Some(owner::mark(&t.name)),
        sets,
        chains,
        ..Table::new(Family::Netdev, &owner::table(&t.name))
    })
}

/// `FIELD != @SET`
fn in_set(f: Field, set: String) -> Stmt {
    Stmt::Match(nft::Match {
        left: field(f),
        op: nft::Op::Neq,
        right: nft::Rhs::Set(nft::SetRef::Named(set)),
    })
}

/// Reads every `netdev nsfw_*` table whole, by name.
pub(crate) fn observe(
    sock: &mut nft::socket::NftSocket,
    s: &NftState,
) -> anyhow::Result<BTreeMap<String, Dumped>> {
    super::side::observe(sock, s, Family::Netdev)
}

/// Plans the topology's netdev table into `p` (`side::diff`), with what the kernel shows of
/// its uplinks; and lets its children through every other nsfw topology's chain on the same
/// uplink (a frame passes every table's chain): their sets of other MACs gain its children
/// (never lose any: theirs is the next apply's of that topology).
pub(crate) fn diff(p: &mut NftPlan, t: &Topology, s: &NftState) {
    let want = table_with(t, &|u, own| {
        let seen = s.uplinks.get(u).cloned().unwrap_or_default();
        (known(t, u, own, s), claims(t, u, &seen))
    });
    super::side::diff(p, t, s, Family::Netdev, want, &s.netdev);
    let me = owner::table(&t.name);
    for (u, mine) in children(t) {
        for (name, d) in nsfw_tables(s).filter(|(name, _)| **name != me) {
            let set = known_set(u);
            if d.set(&set).is_none() {
                continue;
            }
            let have = macs_of(d, &set);
            let theirs = macs_of(d, &children_set(u));
            let add: Vec<Mac> = mine
                .iter()
                .copied()
                .filter(|m| !have.contains(m) && !theirs.contains(m))
                .collect();
            elements(p, '+', name, mac_set(set, add));
        }
    }
}

/// The `netdev nsfw_*` tables whose comment marks them a topology's (`nsfw:<name>`): the only
/// ones whose sets are read as other topologies' children and edited as theirs. A table of
/// that name made by hand is no one's to trust or change.
fn nsfw_tables(s: &NftState) -> impl Iterator<Item = (&String, &Dumped)> {
    s.netdev.iter().filter(|(name, _)| {
        s.tables.iter().any(|t| {
            t.family == Family::Netdev
                && t.name == **name
                && t.comment.as_deref().and_then(owner::topology_of).is_some()
        })
    })
}

/// Adds (`+`) or deletes (`-`) the elements of `set` in another topology's table `table`.
fn elements(p: &mut NftPlan, mark: char, table: &str, set: Set) {
    if set.elements.is_empty() {
        return;
    }
    let shown: Vec<String> = set
        .elements
        .iter()
        .map(|e| match e.key.as_slice() {
            [Value::Ether(m)] => Mac(*m).to_string(),
            k => format!("{k:?}"),
        })
        .collect();
    p.lines.push(NftLine {
        set: Some(set.name.clone()),
        ..NftLine::new(
            mark,
            "elements",
            &format!("netdev {table}"),
            None,
            format!(
                "{} (another topology's children on the uplink)",
                shown.join(", ")
            ),
        )
    });
    let (family, table) = (Family::Netdev, table.to_string());
    p.ops.push(if mark == '+' {
        nft::batch::Op::AddElements { family, table, set }
    } else {
        nft::batch::Op::DeleteElements { family, table, set }
    });
}

/// The flush of the netdev tables of the topologies `owned` says; the tables that stay
/// forget the children of those that go (each only the elements it has).
pub(crate) fn flush(p: &mut NftPlan, s: &NftState, owned: &dyn Fn(Option<&str>) -> bool) {
    super::side::flush(p, s, owned, Family::Netdev);
    let comment = |name: &str| {
        s.tables
            .iter()
            .find(|t| t.family == Family::Netdev && t.name == name)
            .and_then(|t| t.comment.as_deref())
    };
    let (going, staying): (Vec<_>, Vec<_>) =
        nsfw_tables(s).partition(|(name, _)| owned(comment(name)));
    for (name, d) in staying {
        for set in d.structure().set_names() {
            let Some(u) = set.strip_prefix("known_") else {
                continue;
            };
            let have = macs_of(d, set);
            let gone: Vec<Mac> = going
                .iter()
                .flat_map(|(_, g)| macs_of(g, &children_set(u)))
                .filter(|m| have.contains(m))
                .collect();
            elements(p, '-', name, mac_set(set.to_string(), gone));
        }
    }
}

#[cfg(test)]
#[path = "uplink_tests.rs"]
mod tests;
