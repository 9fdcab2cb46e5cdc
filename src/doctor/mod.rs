//! `nsfw doctor`: what on this host will break or weaken a topology, each with the object at
//! fault and the fix. Read only. The big one is another table's base chain on a hook the
//! topology's traffic crosses that drops or rejects it ([`chains`], walked with [`judge`] over
//! the [`flows`] of the topology); the rest are the host's settings ([`host`]).

pub(crate) mod chains;
pub(crate) mod flows;
pub(crate) mod host;
pub(crate) mod judge;
pub(crate) mod mtu;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;

use anyhow::Result;
use serde_json::{Value, json};

use crate::plumbing::observe::read_node;
use crate::plumbing::rtnl::Conn;
use crate::topology::Topology;
use nft::socket::NftSocket;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Severity {
    /// Breaks the topology (or part of it) as the file means it.
    Problem,
    /// Weakens it, or may break it where nsfw cannot see.
    Warning,
}

/// One thing found: what is at fault, what it does, how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Finding {
    pub severity: Severity,
    /// `nft chain ip filter FORWARD`, `sysctl net.ipv4.ip_forward`, ...
    pub object: String,
    pub what: String,
    pub fix: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self.severity {
            Severity::Problem => "problem",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{word}: {}: {}\n  fix: {}",
            self.object, self.what, self.fix
        )
    }
}

/// Everything doctor reads and finds.
pub(crate) fn examine(t: &Topology) -> Result<Vec<Finding>> {
    let mut sock = NftSocket::open()?;
    let rs = chains::Ruleset::read(&mut sock)?;
    let mut conn = Conn::open("host")?;
    let node = read_node(&mut conn)?;
    let up = host::uplinks(&node);
    let br_nf = rs.state.br_nf == Some(true);
    let mut flows = flows::ip_flows(t, &up, br_nf);
    flows.extend(flows::bridge_flows(t));
    let judged = rs.judge_flows(t, &flows);
    let mut out = chains::findings(t, &judged);
    if let Some(chain) = rs.missing_accepts(t) {
        out.push(Finding {
            severity: Severity::Problem,
            object: format!("nft chain ip filter {chain}"),
            what: format!(
                "iptables' FORWARD policy is drop (Docker sets it) and {}'s accepts are not in {chain}: its forwarded traffic is dropped",
                t.name
            ),
            fix: format!(
                "nsfw apply {} puts them back (nsfw watch does it by itself)",
                t.source.display()
            ),
        });
    }
    host::legacy(&mut out, &rs);
    host::sysctls(&mut out, t, &rs)?;
    host::neighbours(&mut out, t, &mut conn)?;
    host::forwarding_leak(&mut out, t, &node, &rs)?;
    host::routes(&mut out, t, &node);
    mtu::mixed(&mut out, t, &node);
    host::listeners(&mut out, t);
    out.sort_by_key(|a| a.severity);
    Ok(out)
}

/// Says why connections do not get through, from one reading of the host's ruleset.
pub(crate) struct Diagnosis {
    rs: chains::Ruleset,
    up: flows::Uplinks,
}

impl Diagnosis {
    pub(crate) fn read() -> Result<Diagnosis> {
        let mut sock = NftSocket::open()?;
        let rs = chains::Ruleset::read(&mut sock)?;
        let mut conn = Conn::open("host")?;
        let up = host::uplinks(&read_node(&mut conn)?);
        Ok(Diagnosis { rs, up })
    }

    /// Why a connection from a namespace on `bridge` (address `from`) to `to` (protocol,
    /// port) does not get through: the rules of other tables that drop it. Empty when none
    /// does.
    pub(crate) fn why(
        &self,
        t: &Topology,
        bridge: &str,
        from: IpAddr,
        to: IpAddr,
        l4: (u8, u16),
    ) -> Vec<String> {
        let flows = flows::connection(t, bridge, from, to, l4, &self.up);
        let mut why = chains::why(&self.rs.judge_flows(t, &flows));
        why.extend(host::legacy_cause(&self.rs, to.is_ipv6()));
        why
    }
}

/// The findings as JSON (docs/json.md).
pub(crate) fn to_json(t: &Topology, found: &[Finding]) -> Value {
    let items: Vec<Value> = found
        .iter()
        .map(|f| {
            json!({
                "severity": match f.severity {
                    Severity::Problem => "problem",
                    Severity::Warning => "warning",
                },
                "object": f.object,
                "what": f.what,
                "fix": f.fix,
            })
        })
        .collect();
    let problems = found
        .iter()
        .filter(|f| f.severity == Severity::Problem)
        .count();
    json!({
        "schema": 1,
        "topology": t.name,
        "file": t.source.display().to_string(),
        "problems": problems,
        "warnings": found.len() - problems,
        "findings": items,
    })
}
