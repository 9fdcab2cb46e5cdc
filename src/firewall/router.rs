//! nsfw's table inside a routing namespace: the same stateful forward judging and policy as
//! the host's, scoped to what the namespace routes, and NAT out of the interface it
//! masquerades through. Built when the namespace masquerades, or routes under a policy.
//!
//! ```nft
//! table inet nsfw_lab {
//!     chain forward { type filter hook forward priority filter; policy accept;
//!         ct state established,related accept
//!         ct state invalid drop
//!         ip saddr . ip daddr . meta l4proto . th dport @deny4 drop     # the policy's sets
//!         ip saddr . ip daddr . meta l4proto . th dport @allow4 accept
//!         iifname "eth0" drop }          # nothing new in through the masqueraded interface
//!     chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//!         meta nfproto ipv4 oifname "eth0" masquerade }
//! }
//! ```
//! IPv6 is routed, not translated, as on the host by default.

use crate::topology::{Namespace, Topology};
use nft::{
    Base, Chain, ChainType, Family, Hook, MetaKey, Policy, PortNat, Rule, Stmt, Table, Value,
    Verdict, ct_state, prio,
};

use super::build::{meta, rule};
use super::policy;

/// The table namespace `n` holds, if it needs one.
pub(super) fn table(t: &Topology, n: &Namespace) -> Option<Table> {
    if !n.forward && n.masquerade.is_none() {
        return None;
    }
    let base = |ty, hook, priority| Base {
        ty,
        hook,
        priority,
        policy: Policy::Accept,
    };
    let mut rules = vec![
        super::identity::reverse_path(),
        rule(
            vec![Stmt::ct_state(ct_state::ESTABLISHED | ct_state::RELATED)],
            Verdict::Accept,
        ),
        rule(vec![Stmt::ct_state(ct_state::INVALID)], Verdict::Drop),
    ];
    let mut sets = Vec::new();
    if policy::any(t) {
        rules.extend(policy::forward_rules(t));
        sets = policy::sets(t)
            .into_iter()
            .filter(|s| policy::is_forward_set(&s.name))
            .collect();
    }
    let mut chains = Vec::new();
    if let Some(out) = &n.masquerade {
        rules.push(rule(vec![Stmt::iifname(out, true)], Verdict::Drop));
        chains.push(Chain::new(
            "postrouting",
            Some(base(ChainType::Nat, Hook::Postrouting, prio::SRCNAT)),
            vec![Rule::new(vec![
                Stmt::eq(meta(MetaKey::Nfproto), Value::NfProto(2)),
                Stmt::oifname(out, true),
                Stmt::Masquerade(PortNat::default()),
            ])],
        ));
    }
    chains.insert(
        0,
        Chain::new(
            "forward",
            Some(base(ChainType::Filter, Hook::Forward, prio::FILTER)),
            rules,
        ),
    );
    Some(Table {
        comment: Some(crate::owner::mark(&t.name)),
        sets,
        chains,
        ..Table::new(Family::Inet, &crate::owner::table(&t.name))
    })
}
