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
