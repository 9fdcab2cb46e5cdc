//! `nsfw import`: what a hand-built lab is, read from the live host (rtnetlink and /proc
//! through `plumbing`, the ruleset through the `nft` crate), as a topology file. `lab` reads
//! the plumbing, `rules` recognises the guide's firewall lines, `fold` puts their meaning into
//! the lab, `render` writes the file. `apply --adopt` reads the same rules to know which of
//! them the file replaces. Never spawns `ip`, `iptables` or `nft`.

mod fold;
pub(crate) mod lab;
mod render;
pub(crate) mod rules;
#[cfg(test)]
mod tests;
mod vxlan;

use anyhow::Result;
use ipnetwork::IpNetwork;
use serde_json::{Value, json};

use crate::plumbing::{self, Query};
use lab::Lab;
use rules::{At, Found};

/// What `nsfw import` reads.
pub(crate) struct Options {
    /// `--name`; None: `lab`, or the first `lab-N` no topology on the host holds.
    pub name: Option<String>,
    /// Only bridges with an address in one of these (all when empty).
    pub subnets: Vec<IpNetwork>,
}

/// The lab read back, the rules that concern it, and the file.
pub(crate) struct Imported {
    pub lab: Lab,
    /// The rules that concern the lab, and whether the file says what each does.
    pub rules: Vec<(Found, bool)>,
    pub toml: String,
}

impl Imported {
    /// `--json` (docs/json.md).
    pub(crate) fn to_json(&self) -> Value {
        let rule = |(f, used): &(Found, bool)| {
            json!({"family": f.at.family.as_str(), "table": f.at.table, "chain": f.at.chain,
                   "handle": f.at.handle, "rule": f.text, "translated": used,
                   "legacy": f.at.legacy.is_some()})
        };
        json!({
            "command": "import",
            "topology": self.lab.name,
            "file": self.toml,
            "bridges": self.lab.bridges.keys().collect::<Vec<_>>(),
            "namespaces": self.lab.namespaces.keys().collect::<Vec<_>>(),
            "rules": self.rules.iter().map(rule).collect::<Vec<_>>(),
            "not_translated": self.lab.notes,
            "remarks": self.lab.remarks,
        })
    }
}

/// Reads the whole host: every namespace whole, the host's forwarding.
fn observe_all() -> Result<plumbing::Observed> {
    let deep = |_: &str, _: Option<&str>| true;
    let none = |_: &str| Vec::new();
    plumbing::observe(&Query {
        deep: &deep,
        ns_sysctls: &none,
        host_sysctls: vec![crate::compile::IP_FORWARD.to_string()],
        known: None,
        asking: None,
        peek: false,
    })
}

/// Reads the live host into a topology file named `o.name`.
pub(crate) fn import(o: &Options) -> Result<Imported> {
    let seen = observe_all()?;
    let mut lab = lab::build("", &seen, &o.subnets);
    lab.name = choose_name(&lab, o.name.as_deref()).map_err(anyhow::Error::msg)?;
    let found = match read_rules(&lab) {
        Ok(f) => f,
        Err(e) => {
            lab.notes.push(format!(
                "the nftables ruleset cannot be read ({e:#}); no firewall line imported"
            ));
            Vec::new()
        }
    };
    let tc = tc_notes(&lab, &seen);
    lab.notes.extend(tc);
    let (names, subnets) = lab_names(&lab);
    let legacy = read_legacy_for(&names, &subnets);
    lab.notes.extend(legacy.notes);
    let mut found = found;
    found.extend(legacy.found);
    let used = fold::fold(&mut lab, &found);
    let toml = render::toml(&lab);
    Ok(Imported {
        lab,
        rules: found.into_iter().zip(used).collect(),
        toml,
    })
}

/// A note for each of `found` (by link index) on a link of `node` named in `names`.
fn tc_lines(
    place: &str,
    node: &plumbing::NodeObs,
    names: &[&str],
    found: Vec<(u32, String)>,
) -> Vec<String> {
    found
        .into_iter()
        .filter_map(|(index, what)| {
            let l = node
                .links
                .iter()
                .find(|l| l.index == index && names.contains(&l.name.as_str()))?;
            Some(format!(
                "{place}{}: {what} not translated (left as it is)",
                l.name
            ))
        })
        .collect()
}

/// The ingress and clsact qdiscs (and their filters) on the lab's links, on the host and in
/// its namespaces: what no file says, named. Unreadable places are named too.
fn tc_notes(lab: &Lab, seen: &plumbing::Observed) -> Vec<String> {
    let mut host: Vec<&str> = lab.bridges.keys().map(String::as_str).collect();
    host.extend(
        lab.bridges
            .values()
            .flat_map(|b| b.ports.iter().map(String::as_str)),
    );
    let mut notes = Vec::new();
    for ns in lab.namespaces.values() {
        host.extend(ns.ifaces.iter().map(|i| i.host_ifname.as_str()));
    }
    match plumbing::Conn::open("host").and_then(|mut c| plumbing::qdisc::ingress_hooks(&mut c)) {
        Ok(found) => notes.extend(tc_lines("", &seen.host, &host, found)),
        Err(e) => notes.push(format!("the host's tc qdiscs cannot be read ({e:#}): ingress filters on the lab's links are not named here")),
    }
    for (name, ns) in &lab.namespaces {
        let Some(node) = seen.namespaces.get(name).map(|n| &n.node) else {
            continue;
        };
        let names: Vec<&str> = ns.ifaces.iter().map(|i| i.ifname.as_str()).collect();
        let found = plumbing::netns::run_in(name, || {
            let mut c = plumbing::Conn::open("namespace")?;
            plumbing::qdisc::ingress_hooks(&mut c)
        });
        match found {
            Ok(found) => notes.extend(tc_lines(&format!("namespace {name}: "), node, &names, found)),
            Err(e) => notes.push(format!("namespace {name}: tc qdiscs cannot be read ({e:#}): ingress filters there are not named here")),
        }
    }
    notes
}

/// The topology's name. A file of the name of a topology nsfw already holds would, once
/// applied, remove that topology's objects (a file `import` writes after an adoption names
/// none of them): an asked name that clashes is refused, the default steps aside. A host with
/// nothing but nsfw's topologies has nothing to import: refused, naming them.
pub(crate) fn choose_name(lab: &Lab, asked: Option<&str>) -> Result<String, String> {
    let held = |t: &str| {
        lab.held.get(t).map(|v| {
            format!(
                "nsfw topology {t} already holds {} on this host",
                v.join(", ")
            )
        })
    };
    if lab.namespaces.is_empty() && lab.bridges.is_empty() && !lab.held.is_empty() {
        let all: Vec<String> = lab.held.keys().filter_map(|t| held(t)).collect();
        return Err(format!(
            "nothing to import: {}; it was applied or adopted already, and the file it was applied from describes it (a file written now would name none of it, and applying it would remove it)",
            all.join("; ")
        ));
    }
    if let Some(name) = asked {
        return match held(name) {
            Some(h) => Err(format!(
                "--name {name}: {h}; a file of that name would replace it: choose another name, or edit that topology's own file"
            )),
            None => Ok(name.to_string()),
        };
    }
    let free = std::iter::once("lab".to_string())
        .chain((2..).map(|i| format!("lab-{i}")))
        .find(|n| !lab.held.contains_key(n))
        .unwrap_or_else(|| "lab".to_string());
    Ok(free)
}

/// The names and subnets a rule must mention to concern the lab.
fn lab_names(lab: &Lab) -> (Vec<String>, Vec<IpNetwork>) {
    let names = lab.bridges.keys().cloned().collect();
    let subnets = lab
        .bridges
        .values()
        .flat_map(|b| [b.address, b.address6])
        .flatten()
        .map(|a| IpNetwork::new(a.network(), a.prefix()).unwrap_or(a))
        .collect();
    (names, subnets)
}

/// Every rule of another owner's table that names one of the lab's bridges or subnets,
/// recognised where it can be.
pub(crate) fn read_rules(lab: &Lab) -> Result<Vec<Found>> {
    let (names, subnets) = lab_names(lab);
    read_rules_for(&names, &subnets)
}

/// [`read_rules`] for the bridges `names` and `subnets`.
pub(crate) fn read_rules_for(names: &[String], subnets: &[IpNetwork]) -> Result<Vec<Found>> {
    let mut sock = nft::socket::NftSocket::open()?;
    let mut out = Vec::new();
    for t in sock.tables()? {
        if crate::owner::is_table(&t.name) || t.family == nft::Family::Bridge {
            continue;
        }
        for c in sock.chains(t.family, &t.name)? {
            for r in sock.chain_rules(t.family, &t.name, &c.name)? {
                if r.rule
                    .comment
                    .as_deref()
                    .and_then(crate::owner::Mark::parse)
                    .is_some()
                {
                    continue; // nsfw's own, placed in another's chain
                }
                let mut rule = r.rule.clone();
                rule.stmts.retain(|s| !matches!(s, nft::Stmt::Counter(_)));
                let text = rules::xt_as_nft(&rule.to_string());
                // iptables-nft's tables and chains, where the guide's lines are.
                let meaning = meaning_in(t.family, &t.name, &c.name, &text);
                if !concerns_lab(&meaning, &text, names, subnets) {
                    continue;
                }
                out.push(Found {
                    at: At {
                        family: t.family,
                        table: t.name.clone(),
                        chain: c.name.clone(),
                        handle: r.handle,
                        legacy: None,
                    },
                    text,
                    meaning,
                });
            }
        }
    }
    rules::pair_output_dnat(&mut out);
    Ok(out)
}

/// iptables-nft's `filter FORWARD` and `DOCKER-USER`, every rule in order (handle, text,
/// meaning), with the chain's rules for following jumps: what `adopt` needs to tell whether a
/// drop stays below an accept it would remove.
pub(crate) fn read_nft_forward() -> Result<NftForward> {
    let mut sock = nft::socket::NftSocket::open()?;
    let mut out = NftForward::default();
    if !sock
        .tables()?
        .iter()
        .any(|t| t.family == nft::Family::Ip && t.name == "filter")
    {
        return Ok(out);
    }
    for c in sock.chains(nft::Family::Ip, "filter")? {
        for r in sock.chain_rules(nft::Family::Ip, "filter", &c.name)? {
            let mut rule = r.rule.clone();
            rule.stmts.retain(|s| !matches!(s, nft::Stmt::Counter(_)));
            let text = rules::xt_as_nft(&rule.to_string());
            let mark = rule.comment.as_deref().and_then(crate::owner::Mark::parse);
            out.rules
                .push((c.name.clone(), r.handle, text, mark.is_some()));
        }
    }
    Ok(out)
}

/// iptables-nft's filter table, in order: (chain, handle, text, nsfw's own).
#[derive(Clone, Debug, Default)]
pub(crate) struct NftForward {
    pub rules: Vec<(String, u64, String, bool)>,
}

impl NftForward {
    /// Whether a rule below the one of handle `handle` in chain `chain` may drop, other than
    /// nsfw's own and those `removed` says go.
    pub(crate) fn drop_below(
        &self,
        chain: &str,
        handle: u64,
        removed: &dyn Fn(&str) -> bool,
    ) -> bool {
        let texts: Vec<(String, String)> = self
            .rules
            .iter()
            .map(|(c, _, t, _)| (c.clone(), t.clone()))
            .collect();
        let drops = |(_, _, t, ours): &&(String, u64, String, bool)| {
            !ours && !removed(t) && may_drop(t, &texts, 8)
        };
        // An accept in DOCKER-USER only ends that chain's part: whatever FORWARD does after
        // its jump counts too.
        (chain == "DOCKER-USER"
            && self
                .rules
                .iter()
                .filter(|(c, ..)| c == "FORWARD")
                .any(|r| drops(&r)))
            || self
                .rules
                .iter()
                .filter(|(c, ..)| c == chain)
                .skip_while(|(_, h, ..)| *h != handle)
                .skip(1)
                .any(|r| drops(&r))
    }
}

/// What a rule of iptables' tables and chains (iptables-nft's or iptables-legacy's) means,
/// where the guide's lines are.
fn meaning_in(family: nft::Family, table: &str, chain: &str, text: &str) -> Option<rules::Meaning> {
    match (family, table, chain) {
        (nft::Family::Ip, "nat", "POSTROUTING" | "PREROUTING" | "OUTPUT")
        | (nft::Family::Ip, "filter", "FORWARD" | "DOCKER-USER") => rules::classify(chain, text),
        _ => None,
    }
}

/// Whether a rule concerns the lab: it names a bridge or an address of it, NATs into it, or
/// is the stateful accept (which names no bridge, yet is the guide's).
fn concerns_lab(
    meaning: &Option<rules::Meaning>,
    text: &str,
    names: &[String],
    subnets: &[IpNetwork],
) -> bool {
    *meaning == Some(rules::Meaning::Stateful)
        || text.contains("xtables match conntrack")
        || rules::concerns(text, names, subnets)
        || rules::unread_nat_into(text, subnets)
}

/// The lab's rules in iptables-legacy's tables.
#[derive(Clone, Debug, Default)]
pub(crate) struct Legacy {
    pub found: Vec<Found>,
    /// iptables-legacy's `filter FORWARD` policy is drop: every forwarded packet it does not
    /// accept is dropped, whatever nsfw's table says.
    pub forward_drop: bool,
    /// The rules of iptables-legacy's `filter FORWARD` that drop or reject, or may (a jump
    /// to a chain that does, a target nsfw cannot read): an accept of the lab's traffic
    /// above one of them that stays is what lets the traffic past it, so it stays too.
    pub blockers: Vec<Found>,
    /// What could not be read, and policies worth saying.
    pub notes: Vec<String>,
}

/// Whether a rule of chain-by-chain `rules` may end a packet's path with a drop: `drop`, a
/// target nsfw cannot read but LOG/NFLOG (REJECT among them), or a jump or goto to a chain
/// where one does. `depth` bounds the chains followed (the kernel refuses loops).
/// `rules` are (chain, text) pairs of the whole table; the same reading serves nft's text.
pub(crate) fn may_drop(text: &str, rules: &[(String, String)], depth: u8) -> bool {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        [.., "accept" | "return" | "continue"] => false,
        [.., "drop"] => true,
        _ if words.contains(&"reject") => true,
        [.., "jump" | "goto", chain] => {
            depth == 0
                || rules
                    .iter()
                    .filter(|(c, _)| c == chain)
                    .any(|(_, t)| may_drop(t, rules, depth - 1))
        }
        // The target is the last thing written: LOG and NFLOG go on to the next rule.
        _ => !["(xtables target LOG)", "(xtables target NFLOG)"]
            .iter()
            .any(|t| text.contains(t)),
    }
}

/// Every rule of iptables-legacy's and ip6tables-legacy's loaded tables that concerns the
/// bridges `names` or `subnets`, recognised where it can be (read with `plumbing::xtables`).
pub(crate) fn read_legacy_for(names: &[String], subnets: &[IpNetwork]) -> Legacy {
    use crate::plumbing::xtables::{self, Family};
    let mut out = Legacy::default();
    for f in [Family::V4, Family::V6] {
        let names_of = match xtables::tables(f) {
            Ok(n) => n,
            Err(e) => {
                out.notes.push(format!(
                    "{} tables cannot be listed ({e}): what their rules do is not in this file (`{}-save` as root shows them)",
                    f.command(),
                    f.command()
                ));
                Vec::new()
            }
        };
        for name in names_of {
            let read = xtables::read(f, &name).and_then(|t| t.rules());
            let (rules, policies) = match read {
                Ok(r) => r,
                Err(e) => {
                    out.notes.push(format!(
                        "{} table {name} cannot be read ({e:#}): what its rules do is not in this file (`{}-save` shows them)",
                        f.command(),
                        f.command()
                    ));
                    continue;
                }
            };
            let family = match f {
                Family::V4 => nft::Family::Ip,
                Family::V6 => nft::Family::Ip6,
            };
            let drop = policies.iter().any(|(c, p)| c == "FORWARD" && p == "drop");
            if name == "filter" && drop {
                out.forward_drop |= f == Family::V4;
                out.notes.push(format!(
                    "{} filter FORWARD: policy drop (left as it is: it drops what {} does not accept, whatever nsfw's table says, so its lines that accept the lab's traffic stay too)",
                    f.command(),
                    f.command()
                ));
            }
            let texts: Vec<(String, String)> = rules
                .iter()
                .map(|r| (r.chain.clone(), r.text.clone()))
                .collect();
            for r in &rules {
                let meaning = meaning_in(family, &name, &r.chain, &r.text);
                let found = Found {
                    at: At {
                        family,
                        table: name.clone(),
                        chain: r.chain.clone(),
                        handle: r.pos as u64,
                        legacy: Some(r.key.clone()),
                    },
                    text: r.text.clone(),
                    meaning,
                };
                let concerns = concerns_lab(&found.meaning, &r.text, names, subnets);
                if name == "filter"
                    && matches!(r.chain.as_str(), "FORWARD" | "DOCKER-USER")
                    && may_drop(&r.text, &texts, 8)
                {
                    if !concerns {
                        out.notes.push(format!(
                            "{}: {} (rule {}) left as it is: it drops forwarded traffic that the lines above it do not accept, so those that accept the lab's traffic stay too",
                            found.at, found.text, r.pos
                        ));
                    }
                    out.blockers.push(found.clone());
                }
                if concerns {
                    out.found.push(found);
                }
            }
        }
    }
    rules::pair_output_dnat(&mut out.found);
    out
}
