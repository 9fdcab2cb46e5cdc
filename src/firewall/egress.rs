//! `egress_via`: new connections from a bridge leave the host only through the interfaces
//! the file names (the guide's `-A FORWARD -i br0 -o eth0 -j ACCEPT` before a DROP). Judged
//! right after anti-spoofing, before the policy: an `[[allow]] to = "world"` (or a CIDR) does
//! not open another interface; naming it in `egress_via` does. Between nsfw's own bridges the
//! policy decides, as without it.
//!
//! ```nft
//! set egress_confined { type ifname; elements = { "br0" } }
//! set egress_via { type ifname . ifname; elements = { "br0" . "up0" } }
//! chain judge { ...
//!     iifname @egress_confined oifname != @bridges iifname . oifname != @egress_via drop
//!     ... }
//! ```

use crate::topology::Topology;
use nft::{Datatype, Element, MetaKey, Rule, Set, Value, Verdict};

use super::build::{concat, lookup, meta, rule, set};

/// Whether any bridge confines its egress.
pub(super) fn any(t: &Topology) -> bool {
    t.bridges.iter().any(|b| !b.egress_via.is_empty())
}

/// The bridges confined, and each one's ways out.
pub(super) fn sets(t: &Topology) -> Vec<Set> {
    let confined = t.bridges.iter().filter(|b| !b.egress_via.is_empty());
    let ifname = |s: &str| Value::Ifname(s.to_string());
    vec![
        set(
            "egress_confined",
            vec![Datatype::Ifname],
            None,
            false,
            confined
                .clone()
                .map(|b| Element::key(vec![ifname(&b.name)]))
                .collect(),
        ),
        set(
            "egress_via",
            vec![Datatype::Ifname, Datatype::Ifname],
            None,
            false,
            confined
                .flat_map(|b| {
                    b.egress_via
                        .iter()
                        .map(|v| Element::key(vec![ifname(&b.name), ifname(v)]))
                })
                .collect(),
        ),
    ]
}

/// The drop of what leaves a confined bridge through any other interface.
pub(super) fn judge_rule() -> Rule {
    rule(
        vec![
            lookup(meta(MetaKey::Iifname), "egress_confined", true),
            lookup(meta(MetaKey::Oifname), "bridges", false),
            lookup(
                concat(vec![meta(MetaKey::Iifname), meta(MetaKey::Oifname)]),
                "egress_via",
                false,
            ),
        ],
        Verdict::Drop,
    )
}

/// Warnings for `egress_via` interfaces the host does not have (`links`: its interfaces'
/// names): until one appears, nothing new leaves the bridge for the world — a typo would
/// otherwise cut it off without a word.
pub(crate) fn missing_ways_out<'a>(
    t: &Topology,
    links: impl Iterator<Item = &'a str> + Clone,
) -> Vec<String> {
    let mut out = Vec::new();
    for b in &t.bridges {
        for via in &b.egress_via {
            if !links.clone().any(|l| l == via) {
                out.push(format!(
                    "{}: bridges.{}.egress_via = \"{via}\": the host has no interface {via} (yet): until it appears, nothing new leaves {} for the world through it",
                    t.source.display(),
                    b.name,
                    b.name
                ));
            }
        }
    }
    out
}

/// Warnings for bridges whose `egress_via` leaves out `dev`, the interface of the host's
/// default route: their namespaces have no way to the world (only to what lies behind the
/// interfaces named), which a typo, a second NIC's default route or renamed NICs bring about
/// without a word.
pub(crate) fn default_left_out(t: &Topology, dev: &str) -> Vec<String> {
    t.bridges
        .iter()
        .filter(|b| !b.egress_via.is_empty() && !b.egress_via.iter().any(|v| v == dev))
        .map(|b| {
            format!(
                "{}: bridges.{}.egress_via = [{}] leaves out {dev}, the interface of the host's default route: {}'s namespaces have no way to the world (add {dev} if they should)",
                t.source.display(),
                b.name,
                b.egress_via
                    .iter()
                    .map(|v| format!("\"{v}\""))
                    .collect::<Vec<_>>()
                    .join(", "),
                b.name
            )
        })
        .collect()
}

#[cfg(test)]
mod default_tests {
    use super::*;

    #[test]
    fn egress_via_without_the_default_route_s_interface_is_warned_about() {
        let text = "name = \"t\"\n[bridges.br0]\naddress = \"10.10.0.1/24\"\negress_via = [\"lan0\"]\n[bridges.br1]\naddress = \"10.20.0.1/24\"\n";
        let t = crate::topology::parse(text, std::path::Path::new("t.toml")).expect("valid");
        let w = default_left_out(&t, "up0");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("bridges.br0.egress_via = [\"lan0\"] leaves out up0"),
            "{}",
            w[0]
        );
        assert!(default_left_out(&t, "lan0").is_empty());
    }
}
