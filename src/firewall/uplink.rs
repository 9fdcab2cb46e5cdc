//! Anti-spoofing for namespaces on a host uplink (macvlan children): `table netdev nsfw_<name>`
//! with one chain per uplink on its egress hook. A child's frames never pass the host's IP
//! stack (nor the bridge hooks: the uplink is no bridge port), but every frame a child sends
//! to the LAN passes its uplink's egress in the host's namespace — out of reach of the child's
//! owner, and frames forged with a packet socket included. Each child may send there only
//! with its own source address (IPv4, ARP, IPv6 with its link-local address):
//!
//! ```nft
//! table netdev nsfw_office {
//!     chain eth0 {
//!         type filter hook egress device "eth0" priority filter; policy accept;
//!         ether saddr 02:b2:bf:89:a2:91 ip saddr != 192.0.2.21 counter drop
//!         ether saddr 02:b2:bf:89:a2:91 arp saddr ip != 192.0.2.21 counter drop
//!         ether saddr 02:b2:bf:89:a2:91 ether type ip6 counter drop
//!     }
//! }
//! ```
//!
//! What it does not see: frames between two children in bridge mode (the driver hands them
//! over inside the host; `mode = "private"` keeps children apart), and a child that forges
//! its MAC as well (the uplink cannot tell whose frame it is; a LAN switch's port security
//! can).

use std::collections::BTreeMap;

use crate::owner;
use crate::topology::{Macvlan, MacvlanMode, Topology};
use nft::dump::Dumped;
use nft::{
    Base, Chain, ChainType, Device, Family, Field, Hook, Policy, Rule, Stmt, Table, Value, Verdict,
    prio,
};

use super::build::{field, rule};
use super::{NftPlan, NftState};

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

/// The topology's netdev table; None when it has no child of an uplink.
pub(crate) fn table(t: &Topology) -> Option<Table> {
    let mut by_uplink: BTreeMap<&str, Vec<&Macvlan>> = BTreeMap::new();
    for m in t.namespaces.iter().flat_map(|n| &n.macvlans) {
        by_uplink.entry(&m.uplink).or_default().push(m);
    }
    if by_uplink.is_empty() {
        return None;
    }
    let chains = by_uplink
        .into_iter()
        .filter_map(|(u, kids)| {
            let base = Base {
                ty: ChainType::Filter,
                hook: Hook::Egress(Device::new(u)?),
                priority: prio::FILTER,
                policy: Policy::Accept,
            };
            let rules = kids.into_iter().flat_map(child).collect();
            Some(Chain::new(u, Some(base), rules))
        })
        .collect();
    Some(Table {
        comment: Some(owner::mark(&t.name)),
        chains,
        ..Table::new(Family::Netdev, &owner::table(&t.name))
    })
}

/// Reads every `netdev nsfw_*` table whole, by name.
pub(crate) fn observe(
    sock: &mut nft::socket::NftSocket,
    s: &NftState,
) -> anyhow::Result<BTreeMap<String, Dumped>> {
    super::side::observe(sock, s, Family::Netdev)
}

/// Plans the topology's netdev table into `p` (`side::diff`).
pub(crate) fn diff(p: &mut NftPlan, t: &Topology, s: &NftState) {
    super::side::diff(p, t, s, Family::Netdev, table(t), &s.netdev);
}

/// The flush of the netdev tables of the topologies `owned` says.
pub(crate) fn flush(p: &mut NftPlan, s: &NftState, owned: &dyn Fn(Option<&str>) -> bool) {
    super::side::flush(p, s, owned, Family::Netdev);
}

#[cfg(test)]
mod tests {
    /// A passthru child carries the uplink's MAC, not its derived one: its rules judge every
    /// frame on the uplink by address, whatever the MAC; a bridge-mode child's key on its MAC.
    #[test]
    fn a_passthru_child_is_judged_whatever_its_mac() {
        for (mode, keyed) in [("passthru", false), ("bridge", true)] {
            let t = crate::testdata::topology(
                "pt",
                &format!(
                    "name = 'pt'\n[namespaces.p]\nmacvlan = 'up0'\nmode = '{mode}'\naddress = '192.0.2.31/24'\n"
                ),
            );
            let table = super::table(&t).expect("a table");
            let rules = format!("{:?}", table.chains[0].rules);
            assert_eq!(rules.contains("EtherSaddr"), keyed, "{mode}: {rules}");
            assert!(rules.contains("IpSaddr"), "{mode}: {rules}");
        }
    }
}
