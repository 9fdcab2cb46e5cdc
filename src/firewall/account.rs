//! Which namespace the table's drops concern, counted per namespace without a rule per
//! namespace: every drop of the filter chains (`judge`, `to_host`, `from_host`) becomes a
//! `goto dropped`, and `dropped` looks the packet's addresses up in sets whose elements carry
//! a counter each (nft's `counter` in a set's declaration: a lookup that matches an element
//! increments its counter) before dropping it. The rules stay static; the namespaces are the
//! sets' elements, so adding one changes elements only. Dropped packets are few: the four
//! lookups cost nothing on the accepted path.
//!
//! ```nft
//! set dropped_from4 { type ipv4_addr; counter; elements = { 10.10.0.2, 10.10.0.3 } }
//! set dropped_to4 { type ipv4_addr; counter; elements = { 10.10.0.2, 10.10.0.3 } }
//! chain dropped {
//!     ip saddr @dropped_from4     # counts the namespace it came from
//!     ip daddr @dropped_to4       # counts the namespace it was for
//!     drop }
//! ```
//!
//! (`dropped_from6`/`dropped_to6` and their rules when a namespace has an IPv6 address.)

use std::net::IpAddr;

use crate::topology::Topology;
use nft::{Chain, Datatype, Element, Field, Rule, Set, Stmt, Verdict};

use super::build::{field, ip_value, lookup, rule, set};

/// The chain every drop of the filter chains goes to.
pub(crate) const DROPPED: &str = "dropped";
/// The sets of the namespaces' addresses, by where the dropped packet came from or went.
pub(crate) const FROM4: &str = "dropped_from4";
pub(crate) const TO4: &str = "dropped_to4";
pub(crate) const FROM6: &str = "dropped_from6";
pub(crate) const TO6: &str = "dropped_to6";

/// The chains whose drops are attributed.
const ATTRIBUTED: [&str; 3] = ["judge", "to_host", "from_host"];

fn v6(t: &Topology) -> bool {
    t.namespaces.iter().any(|n| n.addrs(true).next().is_some())
}

/// The counted sets: every address of every namespace, in each direction.
pub(super) fn sets(t: &Topology) -> Vec<Set> {
    let mut out = Vec::new();
    let families: &[bool] = if v6(t) { &[false, true] } else { &[false] };
    for &v6 in families {
        let mut addrs: Vec<IpAddr> = t.namespaces.iter().flat_map(|n| n.addrs(v6)).collect();
        addrs.sort();
        addrs.dedup();
        let (ty, from, to) = if v6 {
            (Datatype::Ipv6Addr, FROM6, TO6)
        } else {
            (Datatype::Ipv4Addr, FROM4, TO4)
        };
        for name in [from, to] {
            let els = addrs
                .iter()
                .map(|a| Element::key(vec![ip_value(*a)]))
                .collect();
            let mut s = set(name, vec![ty], None, false, els);
            s.flags.counter = true;
            out.push(s);
        }
    }
    out
}

/// The `dropped` chain.
pub(super) fn chain(t: &Topology) -> Chain {
    let mut rules = vec![
        Rule::new(vec![lookup(field(Field::IpSaddr), FROM4, true)]),
        Rule::new(vec![lookup(field(Field::IpDaddr), TO4, true)]),
    ];
    if v6(t) {
        rules.push(Rule::new(vec![lookup(field(Field::Ip6Saddr), FROM6, true)]));
        rules.push(Rule::new(vec![lookup(field(Field::Ip6Daddr), TO6, true)]));
    }
    rules.push(rule(vec![], Verdict::Drop));
    Chain::new(DROPPED, None, rules)
}

/// Sends the drops of the attributed chains through `dropped`; a chain holding any drop
/// gets it (the counter before each verdict stays where it was).
pub(super) fn attribute(chains: &mut [Chain]) -> bool {
    let mut any = false;
    for c in chains
        .iter_mut()
        .filter(|c| ATTRIBUTED.contains(&c.name.as_str()))
    {
        for r in &mut c.rules {
            if let Some(Stmt::Verdict(v)) = r.stmts.last_mut()
                && *v == Verdict::Drop
            {
                *v = Verdict::Goto(DROPPED.into());
                any = true;
            }
        }
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> nft::Table {
        let t = crate::topology::parse(text, std::path::Path::new("t.toml")).expect("valid");
        super::super::table(&t)
    }

    #[test]
    fn every_drop_of_the_filter_chains_is_counted_per_namespace() {
        let t = table(
            "name = \"a\"\n[host]\nprotect = true\n[bridges.br0]\naddress = \"10.10.0.1/24\"\naddress6 = \"fd00::1/64\"\n\
             [namespaces.n1]\nbridge = \"br0\"\n[namespaces.n2]\nbridge = \"br0\"\n\
             [[deny]]\nfrom = \"host\"\nto = \"n2\"\n",
        );
        for c in t
            .chains
            .iter()
            .filter(|c| ATTRIBUTED.contains(&c.name.as_str()))
        {
            for r in &c.rules {
                assert_ne!(
                    r.stmts.last(),
                    Some(&Stmt::Verdict(Verdict::Drop)),
                    "{}: {r}",
                    c.name
                );
            }
        }
        // Each through the chain of its reason (`droplog`), which goes on to `dropped`.
        let gotos = t
            .chains
            .iter()
            .filter(|c| ATTRIBUTED.contains(&c.name.as_str()))
            .flat_map(|c| &c.rules)
            .filter(|r| matches!(r.stmts.last(), Some(Stmt::Verdict(Verdict::Goto(to))) if to.starts_with("drop_")))
            .count();
        assert!(gotos >= 6, "{gotos}");
        let dropped = t
            .chains
            .iter()
            .find(|c| c.name == DROPPED)
            .expect("dropped");
        assert_eq!(dropped.rules.len(), 5);
        for name in [FROM4, TO4, FROM6, TO6] {
            let s = t.set(name).expect(name);
            assert!(s.flags.counter);
            assert_eq!(s.elements.len(), 2, "{name}");
        }
    }

    #[test]
    fn an_ipv4_topology_has_no_ipv6_accounting() {
        let t = table(
            "name = \"a\"\n[bridges.br0]\naddress = \"10.10.0.1/24\"\n[namespaces.n1]\nbridge = \"br0\"\n",
        );
        assert!(t.set(FROM6).is_none() && t.set(FROM4).is_some());
        assert_eq!(
            t.chains
                .iter()
                .find(|c| c.name == DROPPED)
                .expect("dropped")
                .rules
                .len(),
            3
        );
    }
}
