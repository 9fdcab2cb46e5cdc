//! What can drop the probe where nsfw's trace cannot see: base chains of other tables that run
//! before the trace chains on the hooks a packet first meets (they are in the ruleset, so they
//! are named), and iptables-legacy's tables (outside nf_tables: read through x_tables).

use anyhow::Result;
use nft::socket::NftSocket;
use nft::{Family, Hook};

use crate::plumbing::xtables;

/// The base chains of tables not `ours` that run before the trace chains: on the hooks the
/// trace chains sit on, at a lower priority. (Netdev tables, whose ingress comes before
/// prerouting, are not read by nsfw's dump: the fate line says the trace saw nothing.)
fn early_chains(ours: &str, bridges: &[String]) -> Result<(Vec<String>, Vec<String>)> {
    let mut sock = NftSocket::open()?;
    let (mut out, mut fixes) = (Vec::new(), Vec::new());
    for info in sock.tables()? {
        let d = sock.read_table(&info)?;
        let s = d.structure();
        if s.name() == ours {
            continue;
        }
        for c in s.chains() {
            let Some(b) = &c.base else { continue };
            let early = match (s.family(), b.hook) {
                (Family::Bridge, Hook::Prerouting) => b.priority < super::kernel::TRACE_PRIORITY,
                (Family::Ip | Family::Ip6 | Family::Inet, Hook::Prerouting | Hook::Output) => {
                    b.priority < super::kernel::TRACE_PRIORITY
                }
                _ => false,
            };
            if early {
                let (fam, tb) = (s.family().as_str(), s.name());
                // The interface a packet is known by on this hook: prerouting knows only
                // where it came in, output only where it goes.
                match (s.family(), b.hook) {
                    (Family::Bridge, _) => fixes.push(format!(
                        "remove or narrow the drops of `nft list chain {fam} {tb} {}`",
                        c.name
                    )),
                    (_, Hook::Output) => fixes.extend(bridges.iter().map(|b| {
                        format!(
                            "nft insert rule {fam} {tb} {} oifname \"{b}\" accept",
                            c.name
                        )
                    })),
                    _ => fixes.extend(bridges.iter().map(|b| {
                        format!(
                            "nft insert rule {fam} {tb} {} iifname \"{b}\" accept",
                            c.name
                        )
                    })),
                }
                out.push(format!(
                    "table {} {} chain {} ({} priority {}, policy {})",
                    s.family().as_str(),
                    s.name(),
                    c.name,
                    b.hook.as_str(),
                    b.priority,
                    if b.policy == nft::Policy::Drop {
                        "drop"
                    } else {
                        "accept"
                    }
                ));
            }
        }
    }
    Ok((out, fixes))
}

/// iptables-legacy's drops of one family: each built-in chain whose policy drops, and each
/// rule that drops or rejects, as `iptables-legacy -t filter: FORWARD policy DROP`; and the
/// commands that let `bridges` through them.
fn legacy(v6: bool, bridges: &[String]) -> (Vec<String>, Vec<String>) {
    let f = if v6 {
        xtables::Family::V6
    } else {
        xtables::Family::V4
    };
    let cmd = f.command();
    let (mut found, mut fixes) = (Vec::new(), Vec::new());
    let names = match xtables::tables(f) {
        Ok(n) => n,
        Err(e) => {
            found.push(format!("{cmd}'s tables cannot be listed: {e}"));
            Vec::new()
        }
    };
    for name in names {
        let Ok((rules, policies)) = xtables::read(f, &name).and_then(|t| t.rules()) else {
            found.push(format!("{cmd} table {name} (unreadable)"));
            continue;
        };
        let mut chains: Vec<&str> = Vec::new();
        for (chain, p) in &policies {
            if p == "drop" {
                found.push(format!("{cmd} -t {name}: {chain} policy DROP"));
                chains.push(chain);
            }
        }
        for r in rules
            .iter()
            .filter(|r| r.text.contains("drop") || r.text.contains("reject"))
        {
            found.push(format!(
                "{cmd} -t {name}: {} rule {}: {}",
                r.chain, r.pos, r.text
            ));
            if !chains.contains(&r.chain.as_str()) {
                chains.push(&r.chain);
            }
        }
        for chain in chains {
            for b in bridges {
                for dir in ["-i", "-o"] {
                    if (chain == "PREROUTING" || chain == "INPUT") && dir == "-o"
                        || (chain == "OUTPUT" || chain == "POSTROUTING") && dir == "-i"
                    {
                        continue;
                    }
                    fixes.push(format!("{cmd} -t {name} -I {chain} {dir} {b} -j ACCEPT"));
                }
            }
        }
    }
    (found, fixes)
}

/// The lines that say what the trace could not see: where the probe may have been dropped,
/// and the fixes that would let it through. `at` is each namespace traced (None: the host).
pub(super) fn explain(
    at: &[Option<String>],
    ours: &str,
    v6: bool,
    bridges: &[String],
) -> Vec<String> {
    let mut out = Vec::new();
    let mut fixes = Vec::new();
    for ns in at {
        let name = ns.clone().unwrap_or_else(|| "host".into());
        let b = bridges.to_vec();
        let ours = ours.to_string();
        type Got = ((Vec<String>, Vec<String>), (Vec<String>, Vec<String>));
        let read = move || -> Result<Got> { Ok((early_chains(&ours, &b)?, legacy(v6, &b))) };
        let got = match ns {
            Some(n) => crate::plumbing::netns::run_in(n, read),
            None => read(),
        };
        match got {
            Ok(((early, efx), (lg, fx))) => {
                fixes.extend(efx);
                for c in early {
                    out.push(format!(
                        "{name}: {c} runs before nsfw's trace chain (priority {}), so what it drops is never traced",
                        super::kernel::TRACE_PRIORITY
                    ));
                }
                for l in lg {
                    out.push(format!(
                        "{name}: {l} (iptables-legacy runs outside nf_tables: no trace sees it)"
                    ));
                }
                fixes.extend(fx);
            }
            Err(e) => out.push(format!("{name}: cannot read its tables: {e:#}")),
        }
    }
    if !fixes.is_empty() {
        out.push(format!("fix: {}", fixes.join("; ")));
    }
    out
}
