//! The fake kernel's nftables: ops applied to tables held as a dump would give them back.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};
use nft::batch::Op;
use nft::diff::canonical_rule;
use nft::dump::{Dumped, KRule, TableInfo};
use nft::{Family, Table};

use crate::firewall::{IPT_TABLE, NftState};
use crate::testdata::read_back;

/// One op as a line of what was sent.
pub(crate) fn op_line(op: &Op) -> String {
    let elems = |verb: &str, table: &str, set: &nft::Set| {
        let n = set.elements.len();
        format!("{verb} {n} element(s) of set {table} {}", set.name)
    };
    match op {
        Op::ReplaceTable(t) => format!("replace table {}", t.label()),
        Op::AddTable(t) => format!("add table {}", t.label()),
        Op::CreateTable(t) => format!("create table {}", t.label()),
        Op::DeleteTable { family, name } => format!("delete table {} {name}", family.as_str()),
        Op::AddRule { chain, rule, .. } => format!("add rule {chain} {rule}"),
        Op::DeleteRule { chain, handle, .. } => format!("delete rule {chain} handle {handle}"),
        Op::AddElements { table, set, .. } => elems("add", table, set),
        Op::DeleteElements { table, set, .. } => elems("delete", table, set),
        other => format!("{other:?}"),
    }
}

/// The table an op of a table's contents concerns.
fn table_of(op: &Op) -> &str {
    match op {
        Op::AddChain { table, .. }
        | Op::DeleteChain { table, .. }
        | Op::FlushChain { table, .. }
        | Op::AddRule { table, .. }
        | Op::DeleteRule { table, .. }
        | Op::AddSet { table, .. }
        | Op::DeleteSet { table, .. }
        | Op::AddElements { table, .. }
        | Op::DeleteElements { table, .. } => table,
        Op::ReplaceTable(t) | Op::AddTable(t) | Op::CreateTable(t) => &t.name,
        Op::DeleteTable { name, .. } => name,
    }
}

/// The family of the table an op is on.
fn family_of(op: &Op) -> Family {
    match op {
        Op::AddChain { family, .. }
        | Op::DeleteChain { family, .. }
        | Op::FlushChain { family, .. }
        | Op::AddRule { family, .. }
        | Op::DeleteRule { family, .. }
        | Op::AddSet { family, .. }
        | Op::DeleteSet { family, .. }
        | Op::AddElements { family, .. }
        | Op::DeleteElements { family, .. }
        | Op::DeleteTable { family, .. } => *family,
        Op::ReplaceTable(t) | Op::AddTable(t) | Op::CreateTable(t) => t.family,
    }
}

/// Where nsfw's tables of `family` are held: its bridge tables (port security) and netdev
/// tables (macvlan children's) apart from its inet tables of the same name.
fn held(s: &mut NftState, family: Family) -> &mut BTreeMap<String, Dumped> {
    match family {
        Family::Bridge => &mut s.bridge,
        Family::Netdev => &mut s.netdev,
        _ => &mut s.own,
    }
}

/// An op on the contents of one table, applied to what a dump of it gives.
fn edit(d: &mut Dumped, op: &Op) -> Result<()> {
    let mut t = d.decoded().map_err(|e| anyhow!("{e}"))?;
    let set = |t: &mut Table, name: &str| -> Result<usize> {
        t.sets
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| anyhow!("set {name}: No such file or directory"))
    };
    match op {
        Op::AddChain { chain, .. } => t.chains.push(chain.clone()),
        Op::DeleteChain { name, .. } => t.chains.retain(|c| &c.name != name),
        Op::FlushChain { name, .. } => {
            for c in t.chains.iter_mut().filter(|c| &c.name == name) {
                c.rules.clear();
            }
        }
        Op::AddRule {
            chain, rule, first, ..
        } => {
            let c = t
                .chains
                .iter_mut()
                .find(|c| &c.name == chain)
                .ok_or_else(|| anyhow!("chain {chain}: No such file or directory"))?;
            let at = if *first { 0 } else { c.rules.len() };
            c.rules.insert(at, rule.clone());
        }
        Op::AddSet { set, .. } => t.sets.push(set.clone()),
        Op::DeleteSet { name, .. } => t.sets.retain(|s| &s.name != name),
        Op::AddElements { set: s, .. } => {
            let i = set(&mut t, &s.name)?;
            let have = &mut t.sets[i].elements;
            for e in &s.elements {
                if !have.contains(e) {
                    have.push(e.clone());
                }
            }
        }
        Op::DeleteElements { set: s, .. } => {
            let i = set(&mut t, &s.name)?;
            for e in &s.elements {
                let have = &mut t.sets[i].elements;
                let at = have.iter().position(|x| x == e).ok_or_else(|| {
                    anyhow!("element of set {}: No such file or directory", s.name)
                })?;
                have.remove(at);
            }
        }
        other => bail!("the fake kernel does not do {other:?} inside a table"),
    }
    *d = read_back(&t)?;
    Ok(())
}

/// An op on the host's ruleset.
pub(crate) fn host_op(s: &mut NftState, op: &Op, handle: &mut u64) -> Result<()> {
    let own = |family: Family, name: &str| {
        matches!(family, Family::Inet | Family::Bridge | Family::Netdev)
            && name.starts_with("nsfw_")
    };
    match op {
        Op::CreateTable(t) | Op::AddTable(t) | Op::ReplaceTable(t) => {
            let same = |k: &TableInfo| k.family == t.family && k.name == t.name;
            if matches!(op, Op::CreateTable(_)) && s.tables.iter().any(same) {
                bail!("table {}: File exists", t.label());
            }
            s.tables.retain(|k| !same(k));
            *handle += 1;
            s.tables.push(TableInfo {
                family: t.family,
                name: t.name.clone(),
                dormant: t.dormant,
                comment: t.comment.clone(),
                handle: *handle,
            });
            if own(t.family, &t.name) {
                held(s, t.family).insert(t.name.clone(), read_back(t)?);
            }
        }
        Op::DeleteTable { family, name } => {
            s.tables
                .retain(|k| !(k.family == *family && &k.name == name));
            held(s, *family).remove(name);
        }
        Op::AddRule {
            family: Family::Ip,
            table,
            chain,
            rule,
            first,
        } if table == IPT_TABLE => {
            *handle += 1;
            let k = KRule {
                chain: chain.clone(),
                handle: *handle,
                rule: canonical_rule(rule, Family::Ip, &[]),
            };
            let top = s.placed.iter().position(|r| &r.chain == chain);
            match (first, top) {
                (true, Some(at)) => s.placed.insert(at, k),
                _ => s.placed.push(k),
            }
        }
        Op::DeleteRule {
            family: Family::Ip,
            table,
            handle: h,
            ..
        } if table == IPT_TABLE => {
            let before = s.placed.len();
            s.placed.retain(|r| r.handle != *h);
            if s.placed.len() == before {
                bail!("rule handle {h}: No such file or directory");
            }
        }
        op => {
            let name = table_of(op);
            let d = held(s, family_of(op))
                .get_mut(name)
                .ok_or_else(|| anyhow!("table {name}: No such file or directory"))?;
            edit(d, op)?;
        }
    }
    Ok(())
}

/// An op on a namespace's ruleset (nsfw's tables only).
/// The key of table `family name` among a namespace's tables: its name for inet (the
/// routing namespaces' table), the family first for any other (a macvlan child's guard).
pub(crate) fn ns_key(family: Family, name: &str) -> String {
    match family {
        Family::Inet => name.to_string(),
        f => format!("{} {name}", f.as_str()),
    }
}

pub(crate) fn ns_op(tables: &mut BTreeMap<String, Dumped>, op: &Op) -> Result<()> {
    let key = ns_key(family_of(op), table_of(op));
    match op {
        Op::CreateTable(t) if tables.contains_key(&key) => {
            bail!("table {}: File exists", t.label())
        }
        Op::CreateTable(t) | Op::AddTable(t) | Op::ReplaceTable(t) => {
            tables.insert(key, read_back(t)?);
        }
        Op::DeleteTable { .. } => {
            tables.remove(&key);
        }
        op => {
            let name = table_of(op);
            let d = tables
                .get_mut(&key)
                .ok_or_else(|| anyhow!("table {name}: No such file or directory"))?;
            edit(d, op)?;
        }
    }
    Ok(())
}
