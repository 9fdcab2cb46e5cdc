//! Every drop of the filter chains is logged to nflog (`nsfw drops` reads it), rate-limited in
//! the kernel, with a prefix that says the topology and why. A drop rule cannot carry its own
//! rate-limited log: `limit` is a match, and a drop rule over its rate would stop dropping.
//! So each drop goes to a small chain of its reason, where a log rule of its own (which may
//! stop at its `limit` without any verdict) comes before the `goto dropped` that still drops
//! every packet:
//!
//! ```nft
//! chain judge { ...
//!     ip saddr . ip daddr . meta l4proto . th dport @deny4 counter goto drop_policy
//!     oifname @bridges counter goto drop_closed }
//! chain drop_policy {
//!     limit rate 20/second burst 40 packets log prefix "nsfw:lab policy" group 28275
//!     goto dropped }
//! ```
//!
//! The counter before each `goto drop_…` (what `nsfw status` reports) is also each reason's
//! tally, which `nsfw drops` reads.
//!
//! Nothing is logged for accepted traffic, and a flood of drops costs userspace at most the
//! limit's rate per reason (the kernel builds no message when the limit is spent, nor when no
//! one listens to the group). The reasons: `invalid` (conntrack state invalid), `spoofed`
//! (a source address not of the bridge it came from), `egress` (`egress_deny`, `egress_via`),
//! `policy` (a `[[deny]]` entry), `closed` (nothing unsolicited in, no bridge to bridge, and
//! an isolated bridge's namespaces to each other), `host` (`[host] protect`).

use nft::{Chain, Expr, Limit, Log, Match, Rhs, Rule, SetRef, Stmt, Value, Verdict, ct_state};

use super::account::DROPPED;

/// The nflog group of nsfw's drops ("ns"), in the host's network namespace.
pub(crate) const GROUP: u16 = 28275;
/// Logged packets per second and reason, and the burst let through at once.
pub(crate) const RATE: u64 = 20;
pub(crate) const BURST: u32 = 40;
/// The chain of a reason: `drop_<reason>`.
pub(crate) const CHAIN_PREFIX: &str = "drop_";

/// Why a drop rule drops, from what it matches.
fn reason(chain: &str, r: &Rule) -> &'static str {
    let mut sets = r.stmts.iter().filter_map(|s| match s {
        Stmt::Match(Match {
            right: Rhs::Set(SetRef::Named(n)),
            ..
        }) => Some(n.as_str()),
        _ => None,
    });
    let invalid = r.stmts.iter().any(|s| {
        matches!(s, Stmt::Match(Match { left: Expr::Ct(nft::CtKey::State), right: Rhs::Value(Value::CtState(b)), .. }) if *b == ct_state::INVALID)
    });
    if invalid {
        return "invalid";
    }
    match sets.next() {
        Some(n) if n.starts_with("egress") => "egress",
        Some("bridges") if chain == "judge" => match sets.next() {
            Some("src4" | "src6") => "spoofed",
            _ => "closed",
        },
        Some(n)
            if ["deny", "host_deny", "from_host_deny"]
                .iter()
                .any(|p| n.starts_with(p)) =>
        {
            "policy"
        }
        None if chain == "to_host" => "host",
        _ => "other",
    }
}

/// Sends every `goto dropped` of `chains` through the chain of its reason, and adds those
/// chains (in the order their reasons first appear).
pub(super) fn route(chains: &mut Vec<Chain>, topology: &str) {
    let mut reasons: Vec<&'static str> = Vec::new();
    for c in chains.iter_mut() {
        let name = c.name.clone();
        for r in &mut c.rules {
            let why = reason(&name, r);
            if let Some(Stmt::Verdict(Verdict::Goto(to))) = r.stmts.last_mut()
                && to == DROPPED
            {
                *to = format!("{CHAIN_PREFIX}{why}");
                if !reasons.contains(&why) {
                    reasons.push(why);
                }
            }
        }
    }
    for why in reasons {
        chains.push(chain(topology, why));
    }
}

fn chain(topology: &str, why: &str) -> Chain {
    let log = Rule::new(vec![
        Stmt::Limit(Limit {
            rate: RATE,
            per: 1,
            burst: BURST,
            bytes: false,
            over: false,
        }),
        Stmt::Log(Log {
            prefix: Some(crate::owner::log_prefix(topology, why)),
            group: Some(GROUP),
            ..Default::default()
        }),
    ]);
    let drop = Rule::new(vec![Stmt::Verdict(Verdict::Goto(DROPPED.into()))]);
    Chain::new(&format!("{CHAIN_PREFIX}{why}"), None, vec![log, drop])
}

#[cfg(test)]
mod tests {
    fn table(text: &str) -> nft::Table {
        let t = crate::topology::parse(text, std::path::Path::new("t.toml")).expect("valid");
        super::super::table(&t)
    }

    #[test]
    fn every_drop_is_logged_by_its_reason_and_still_dropped() {
        let t = table(
            "name = \"a\"\n[host]\nprotect = true\n[bridges.br0]\naddress = \"10.10.0.1/24\"\negress = \"deny\"\nisolate = true\n\
             [namespaces.n1]\nbridge = \"br0\"\n[namespaces.n2]\nbridge = \"br0\"\n\
             [[deny]]\nfrom = \"n1\"\nto = \"n2\"\n",
        );
        let text = t.to_string();
        for why in ["invalid", "spoofed", "policy", "egress", "closed", "host"] {
            let c = t
                .chains
                .iter()
                .find(|c| c.name == format!("drop_{why}"))
                .unwrap_or_else(|| panic!("drop_{why} in\n{text}"));
            assert!(
                c.rules[0].to_string().contains(&format!(
                    "limit rate 20/second burst 40 packets log prefix \"nsfw:a {why}\" group 28275"
                )),
                "{}",
                c.rules[0]
            );
            // The log rule has no verdict: over its limit it stops, and the next rule drops.
            assert!(!matches!(
                c.rules[0].stmts.last(),
                Some(nft::Stmt::Verdict(_))
            ));
            assert_eq!(
                c.rules[1].stmts.last(),
                Some(&nft::Stmt::Verdict(nft::Verdict::Goto("dropped".into())))
            );
        }
        assert!(!text.contains("drop_other"), "{text}");
        // Nothing on an accepting path logs.
        for c in &t.chains {
            for r in &c.rules {
                let logs = r.stmts.iter().any(|s| matches!(s, nft::Stmt::Log(_)));
                assert!(!logs || c.name.starts_with("drop_"), "{}: {r}", c.name);
            }
        }
    }
}
