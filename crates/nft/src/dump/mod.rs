//! Reading the ruleset back: tables, chains, sets with their elements and rules, parsed by
//! libnftnl's structural getters (never its debug text, see `parse`) and decoded into the IR.
//! The elements of a whole table's named sets stay in the kernel's bytes, in canonical form
//! (`canon`): the diff compares them as they are and decodes only those it shows.

mod elemmsg;
#[cfg(debug_assertions)]
mod elemref;
mod parse;

use std::collections::BTreeMap;
use std::ffi::CString;

use anyhow::{Result, anyhow};

use super::canon::{canonical, decode, decode_all};
use super::elems::{KElem, to_kernel};
use super::ffi;
use super::ir::*;
use super::raise::{RaiseCtx, is_anonymous, raise_rule, xt_comment};
use super::socket::NftSocket;
use elemmsg::CountedElem;
pub(crate) use parse::RawRule;
pub use parse::{ChainInfo, ObjInfo, TableInfo};
use parse::{
    ListedSet, parse_chain, parse_elems, parse_gen, parse_obj, parse_rule, parse_set, parse_table,
};

/// A decoded rule of some chain, with its handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KRule {
    pub chain: String,
    pub handle: u64,
    pub rule: Rule,
}

/// The sets of a table: (set with its elements, anonymous?), and those nsfw cannot read.
#[derive(Clone, Debug, Default)]
pub struct TableSets {
    pub sets: Vec<(Set, bool)>,
    pub unreadable: Vec<String>,
}

/// A whole table read back. The elements of its named sets stay in canonical kernel form
/// (`canon`) until asked for: decoding 10,000 elements into the IR costs more than reading
/// them, and the diff compares bytes. So there is no `Table` to read here that looks whole
/// and is not: [`structure`](Dumped::structure) is the table without any set's elements (and
/// says so in its type), [`decoded`](Dumped::decoded) the whole table, [`set`](Dumped::set)
/// one set with its elements.
#[derive(Clone, Debug, Default)]
pub struct Dumped {
    /// The table, its named sets without their elements: those are in `elements`.
    table: Table,
    /// The elements of each named set, by name, in canonical kernel form.
    elements: BTreeMap<String, Vec<KElem>>,
    /// The handle of every rule, by chain, in rule order.
    pub handles: BTreeMap<String, Vec<u64>>,
    /// What the table holds that the IR cannot: sets of unknown types, chains on unknown
    /// hooks. Such a table never equals a desired one.
    pub unreadable: Vec<String>,
    /// Named stateful objects in the table (`counter X`, `quota Y`, ...): nsfw declares none,
    /// so each is someone else's addition, shown by the diff and removed with the table.
    pub objects: Vec<ObjInfo>,
    /// The counter of each element of the sets declared with `counter`, by set: the element
    /// as the kernel listed it (before `canon`) and its count. The diff never looks at them.
    counters: BTreeMap<String, Vec<(KElem, Counter)>>,
}

/// A table read back, without the elements of its named sets: its name, flags, comment,
/// chains and rules, and its sets' names. Not a [`Table`], so that no reader takes a set
/// with its elements still in kernel form for an empty one: [`Dumped::decoded`] and
/// [`Dumped::set`] give sets with their elements.
#[derive(Clone, Copy, Debug)]
pub struct Structure<'a>(&'a Table);

impl<'a> Structure<'a> {
    pub fn family(self) -> Family {
        self.0.family
    }
    pub fn name(self) -> &'a str {
        &self.0.name
    }
    /// "inet nsfw_lab"
    pub fn label(self) -> String {
        self.0.label()
    }
    pub fn dormant(self) -> bool {
        self.0.dormant
    }
    pub fn comment(self) -> Option<&'a str> {
        self.0.comment.as_deref()
    }
    /// The chains with their rules (anonymous sets in rules are whole).
    pub fn chains(self) -> &'a [Chain] {
        &self.0.chains
    }
    pub fn chain(self, name: &str) -> Option<&'a Chain> {
        self.0.chain(name)
    }
    /// The names of the named sets, in the kernel's order.
    pub fn set_names(self) -> impl Iterator<Item = &'a str> {
        self.0.sets.iter().map(|s| s.name.as_str())
    }
    /// A [`Table`] of this structure whose named sets are all empty: for a reader that must
    /// have a table and can do without the sets' contents (say, when they do not decode).
    pub fn without_elements(self) -> Table {
        self.0.clone()
    }
}

impl Dumped {
    /// `table` as if it had been read back (its elements encoded as nsfw loads them; the
    /// elements of a set declared `counter` each with a counter that has counted nothing, as
    /// the kernel gives them when they are added).
    pub fn of(mut table: Table) -> Result<Dumped, String> {
        let mut elements = BTreeMap::new();
        let mut counters = BTreeMap::new();
        for s in &mut table.sets {
            let els = std::mem::take(&mut s.elements);
            let k = to_kernel(s, &els, true)
                .and_then(|k| canonical(s, k))
                .map_err(|e| format!("set {}: {e}", s.name))?;
            if s.flags.counter {
                let zero = k.iter().map(|k| (k.clone(), Counter::default()));
                counters.insert(s.name.clone(), zero.collect());
            }
            elements.insert(s.name.clone(), k);
        }
        Ok(Dumped {
            table,
            elements,
            counters,
            ..Default::default()
        })
    }

    /// The table without its named sets' elements.
    pub fn structure(&self) -> Structure<'_> {
        Structure(&self.table)
    }

    /// The elements of set `name` (declared with `counter`) decoded, each with its count.
    pub fn element_counters(&self, name: &str) -> Result<Vec<(Element, Counter)>, String> {
        let (Some(set), Some(ks)) = (self.table.set(name), self.counters.get(name)) else {
            return Ok(Vec::new());
        };
        ks.iter().map(|(k, c)| Ok((decode(set, k)?, *c))).collect()
    }

    /// The whole table, the elements of its sets decoded.
    pub fn decoded(&self) -> Result<Table, String> {
        let mut t = self.table.clone();
        for s in &mut t.sets {
            if let Some(k) = self.elements.get(&s.name) {
                s.elements = decode_all(s, k).map_err(|e| format!("set {}: {e}", s.name))?;
            }
        }
        Ok(t)
    }

    /// The named set `name` with its elements decoded; None when the table has no such set.
    pub fn set(&self, name: &str) -> Option<Result<Set, String>> {
        let decl = self.table.set(name)?;
        let k = self.canonical(name);
        Some(
            decode_all(decl, k)
                .map(|elements| Set {
                    elements,
                    ..decl.without_elements()
                })
                .map_err(|e| format!("set {name}: {e}")),
        )
    }

    /// The table with its named sets' declarations, none of their elements: for the diff,
    /// which compares the elements in [`canonical`](Dumped::canonical) form.
    pub(crate) fn declared(&self) -> &Table {
        &self.table
    }

    /// The elements of named set `set` in canonical kernel form (none for a set not there).
    pub(crate) fn canonical(&self, set: &str) -> &[KElem] {
        self.elements.get(set).map_or(&[], Vec::as_slice)
    }
}

/// A set read back: its declaration (no elements), whether it is anonymous, and its elements
/// in canonical form.
struct ReadSet {
    set: Set,
    anonymous: bool,
    kelems: Vec<KElem>,
    /// Each element's counter, when the set has `counter`.
    counters: Vec<(KElem, Counter)>,
}

fn unreadable_set(name: &str, why: &str) -> String {
    format!("set {name} ({why}: nsfw cannot read it)")
}

fn cname(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| anyhow!("{what} name {s:?}"))
}

/// The generation a successful commit of one batch after `g` gives (the kernel skips zero).
pub fn next_generation(g: u32) -> u32 {
    match g.wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

impl NftSocket {
    /// The ruleset's generation (NFT_MSG_GETGEN): the kernel adds one at every commit of a
    /// batch, whoever sends it, so two equal readings mean nothing was committed between them.
    pub fn generation(&mut self) -> Result<u32> {
        self.get(
            libc::NFT_MSG_GETGEN,
            libc::NFPROTO_UNSPEC as u16,
            &parse_gen,
            "the ruleset generation",
        )?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("the kernel did not say the ruleset generation"))
    }

    /// Every table of every family nsfw knows.
    pub fn tables(&mut self) -> Result<Vec<TableInfo>> {
        self.dump(
            libc::NFT_MSG_GETTABLE,
            libc::NFPROTO_UNSPEC as u16,
            None,
            &parse_table,
            "nftables tables",
        )
    }

    /// The chains of one table. The kernel dumps every chain of the family whatever the
    /// request names, so the table is filtered here.
    pub fn chains(&mut self, family: Family, table: &str) -> Result<Vec<ChainInfo>> {
        let t = cname(table, "table")?;
        let mut o = ffi::Chain::new()?;
        o.set_str(ffi::NFTNL_CHAIN_TABLE, &t);
        let all = self.dump(
            libc::NFT_MSG_GETCHAIN,
            u16::from(family.nfproto()),
            Some(&o),
            &parse_chain,
            &format!("the chains of table {} {table}", family.as_str()),
        )?;
        Ok(all.into_iter().filter(|c| c.table == table).collect())
    }

    /// The rules of one table (of one chain of it, when `chain` is given), in chain order.
    pub(crate) fn raw_rules(
        &mut self,
        family: Family,
        table: &str,
        chain: Option<&str>,
    ) -> Result<Vec<RawRule>> {
        let t = cname(table, "table")?;
        let c = chain.map(|c| cname(c, "chain")).transpose()?;
        let what = match chain {
            Some(ch) => format!(
                "the rules of chain {ch} in table {} {table}",
                family.as_str()
            ),
            None => format!("the rules of table {} {table}", family.as_str()),
        };
        let mut o = ffi::Rule::new()?;
        o.set_str(ffi::NFTNL_RULE_TABLE, &t);
        if let Some(c) = &c {
            o.set_str(ffi::NFTNL_RULE_CHAIN, c);
        }
        let all = self.dump(
            libc::NFT_MSG_GETRULE,
            u16::from(family.nfproto()),
            Some(&o),
            &parse_rule,
            &what,
        )?;
        Ok(all
            .into_iter()
            .filter(|r| r.table == table && chain.is_none_or(|c| r.chain == c))
            .collect())
    }

    /// Every set of a table with its elements (anonymous ones flagged), and the sets nsfw
    /// cannot read, described.
    pub fn sets(&mut self, family: Family, table: &str) -> Result<TableSets> {
        let (read, mut unreadable) = self.read_sets(family, table)?;
        let mut sets = Vec::new();
        for r in read {
            match decode_all(&r.set, &r.kelems) {
                Ok(els) => sets.push((
                    Set {
                        elements: els,
                        ..r.set
                    },
                    r.anonymous,
                )),
                Err(why) => unreadable.push(unreadable_set(&r.set.name, &why)),
            }
        }
        Ok(TableSets { sets, unreadable })
    }

    /// Every set of a table, its elements in canonical kernel form, and the sets nsfw cannot
    /// read, described.
    fn read_sets(&mut self, family: Family, table: &str) -> Result<(Vec<ReadSet>, Vec<String>)> {
        let t = cname(table, "table")?;
        let mut o = ffi::Set::new()?;
        o.set_str(ffi::NFTNL_SET_TABLE, &t);
        let listed: Vec<ListedSet> = self.dump(
            libc::NFT_MSG_GETSET,
            u16::from(family.nfproto()),
            Some(&o),
            &parse_set,
            &format!("the sets of table {} {table}", family.as_str()),
        )?;
        let mut out = Vec::new();
        let mut unreadable = Vec::new();
        for l in listed.into_iter().filter(|l| l.table == table) {
            let read = l.decl.and_then(|set| {
                let chunks = self
                    .elements(family, table, &set.name)
                    .map_err(|e| format!("{e:#}"))?;
                // Sized once, each element moved once: a flattened collect grows (and
                // copies) 10,000 elements a dozen times.
                let mut listed: Vec<KElem> = Vec::with_capacity(chunks.iter().map(Vec::len).sum());
                let mut counters = Vec::new();
                for (k, c) in chunks.into_iter().flatten() {
                    if let (true, Some(c)) = (set.flags.counter, c) {
                        counters.push((k.clone(), c));
                    }
                    listed.push(k);
                }
                let kelems = canonical(&set, listed)?;
                Ok(ReadSet {
                    set,
                    anonymous: l.anonymous,
                    kelems,
                    counters,
                })
            });
            match read {
                Ok(r) => out.push(r),
                Err(why) => unreadable.push(unreadable_set(&l.name, &why)),
            }
        }
        Ok((out, unreadable))
    }

    fn elements(
        &mut self,
        family: Family,
        table: &str,
        set: &str,
    ) -> Result<Vec<Vec<CountedElem>>> {
        let t = cname(table, "table")?;
        let s = cname(set, "set")?;
        let mut o = ffi::Set::new()?;
        o.set_str(ffi::NFTNL_SET_TABLE, &t);
        o.set_str(ffi::NFTNL_SET_NAME, &s);
        self.dump(
            libc::NFT_MSG_GETSETELEM,
            u16::from(family.nfproto()),
            Some(&o.elems_payload()),
            &parse_elems,
            &format!(
                "the elements of set {set} in table {} {table}",
                family.as_str()
            ),
        )
    }

    /// A whole table decoded into the IR; None when there is no such table.
    pub fn table(&mut self, family: Family, name: &str) -> Result<Option<Dumped>> {
        let Some(info) = self
            .tables()?
            .into_iter()
            .find(|t| t.family == family && t.name == name)
        else {
            return Ok(None);
        };
        self.read_table(&info).map(Some)
    }

    /// The whole table a listing named, decoded into the IR.
    pub fn read_table(&mut self, info: &TableInfo) -> Result<Dumped> {
        let (family, name) = (info.family, info.name.as_str());
        let (all_sets, mut unreadable) = self.read_sets(family, name)?;
        // Rules need the declarations, and the elements of anonymous sets (their contents are
        // part of the rule); named sets' elements stay in kernel form.
        let mut every = Vec::with_capacity(all_sets.len());
        let mut sets = Vec::new();
        let mut elements = BTreeMap::new();
        let mut counters = BTreeMap::new();
        for r in all_sets {
            if r.anonymous || is_anonymous(&r.set.name) {
                match decode_all(&r.set, &r.kelems) {
                    Ok(els) => every.push(Set {
                        elements: els,
                        ..r.set
                    }),
                    Err(why) => unreadable.push(unreadable_set(&r.set.name, &why)),
                }
            } else {
                every.push(r.set.clone());
                if r.set.flags.counter {
                    counters.insert(r.set.name.clone(), r.counters);
                }
                elements.insert(r.set.name.clone(), r.kelems);
                sets.push(r.set);
            }
        }
        let cx = RaiseCtx {
            family,
            sets: &every,
        };
        let raw = self.raw_rules(family, name, None)?;
        let mut table = Table {
            family,
            name: name.to_string(),
            dormant: info.dormant,
            comment: info.comment.clone(),
            sets,
            chains: Vec::new(),
        };
        let mut handles = BTreeMap::new();
        for c in self.chains(family, name)? {
            if let Some(odd) = &c.odd_base {
                unreadable.push(format!("chain {}: {odd}", c.name));
            }
            let mut rules = Vec::new();
            let mut hs = Vec::new();
            for r in raw.iter().filter(|r| r.chain == c.name) {
                let (exprs, xt) = xt_comment(&r.exprs);
                rules.push(Rule {
                    stmts: raise_rule(&exprs, &cx),
                    comment: r.comment.clone().or(xt),
                });
                hs.push(r.handle);
            }
            handles.insert(c.name.clone(), hs);
            table.chains.push(Chain {
                name: c.name,
                base: c.base,
                comment: c.comment,
                rules,
            });
        }
        Ok(Dumped {
            table,
            elements,
            handles,
            unreadable,
            objects: self.objects(family, name)?,
            counters,
        })
    }

    /// The named stateful objects of one table (NFT_MSG_GETOBJ). The kernel filters the dump
    /// by the table named; filtered here too, as for chains.
    pub(crate) fn objects(&mut self, family: Family, table: &str) -> Result<Vec<ObjInfo>> {
        let t = cname(table, "table")?;
        let mut o = ffi::NamedObj::new()?;
        o.set_str(ffi::NFTNL_OBJ_TABLE, &t);
        let all = self.dump(
            libc::NFT_MSG_GETOBJ,
            u16::from(family.nfproto()),
            Some(&o),
            &parse_obj,
            &format!("the named objects of table {} {table}", family.as_str()),
        )?;
        Ok(all.into_iter().filter(|o| o.table == table).collect())
    }

    /// The rules of one chain of another owner's table (iptables-nft's `ip filter FORWARD`),
    /// decoded.
    pub fn chain_rules(&mut self, family: Family, table: &str, chain: &str) -> Result<Vec<KRule>> {
        let sets: Vec<Set> = self
            .sets(family, table)?
            .sets
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        let cx = RaiseCtx {
            family,
            sets: &sets,
        };
        Ok(self
            .raw_rules(family, table, Some(chain))?
            .into_iter()
            .map(|r| {
                let (exprs, xt) = xt_comment(&r.exprs);
                KRule {
                    chain: r.chain,
                    handle: r.handle,
                    rule: Rule {
                        stmts: raise_rule(&exprs, &cx),
                        comment: r.comment.or(xt),
                    },
                }
            })
            .collect())
    }
}
