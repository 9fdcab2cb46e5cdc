//! The kernel's counts of nsfw's drops: every drop of a topology's filter chains goes to the
//! chain of its reason (`firewall::droplog`) through a rule with a counter; these are read
//! per rule (for `drops::ledger`) or summed per reason.

use std::collections::HashMap;

use anyhow::Result;
use nft::socket::NftSocket;
use nft::{Family, Stmt, Verdict};

use super::ledger::Counted;
use crate::firewall::droplog::CHAIN_PREFIX;
use crate::owner;

/// The reasons, in the order the tally lists them: the only ones nsfw's rules write
/// (`firewall::droplog`); a prefix with another is not nsfw's.
pub(super) const REASONS: [&str; 6] = ["policy", "closed", "egress", "host", "spoofed", "invalid"];

/// The chains whose drops go through a reason's chain (`firewall::droplog`).
const JUDGING: [&str; 3] = ["judge", "to_host", "from_host"];

/// The packets each reason dropped in topology `t`'s table: the counters of the rules that
/// go to its chain (None: no table).
pub(super) fn tally(sock: &mut NftSocket, topology: &str) -> Result<Option<Vec<(String, u64)>>> {
    let Some(rules) = counters(sock, topology)? else {
        return Ok(None);
    };
    let mut by: HashMap<&str, u64> = HashMap::new();
    for c in &rules {
        *by.entry(c.reason.as_str()).or_default() += c.packets;
    }
    Ok(Some(
        REASONS
            .iter()
            .filter_map(|r| by.get(*r).map(|n| (r.to_string(), *n)))
            .collect(),
    ))
}

/// The counter of each rule of topology `t`'s table that goes to a reason's chain (None: no
/// table).
pub(super) fn counters(sock: &mut NftSocket, topology: &str) -> Result<Option<Vec<Counted>>> {
    let table = owner::table(topology);
    let Some(handle) = sock
        .tables()?
        .into_iter()
        .find(|k| k.family == Family::Inet && k.name == table)
        .map(|k| k.handle)
    else {
        return Ok(None);
    };
    let chains = sock.chains(Family::Inet, &table)?;
    let mut out = Vec::new();
    for c in JUDGING {
        if !chains.iter().any(|k| k.name == c) {
            continue;
        }
        for k in sock.chain_rules(Family::Inet, &table, c)? {
            let to = match k.rule.stmts.last() {
                Some(Stmt::Verdict(Verdict::Goto(to))) => to.strip_prefix(CHAIN_PREFIX),
                _ => None,
            };
            let counted = k.rule.stmts.iter().find_map(|s| match s {
                Stmt::Counter(c) => Some(c.packets),
                _ => None,
            });
            if let (Some(why), Some(n)) = (to, counted)
                && REASONS.contains(&why)
            {
                out.push(Counted {
                    reason: why.to_string(),
                    rule: (handle, k.handle),
                    packets: n,
                });
            }
        }
    }
    Ok(Some(out))
}
