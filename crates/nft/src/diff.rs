//! The generic table diff: the desired [`Table`] against the one read back from the kernel.
//! Both sides are compared in canonical form (rules through lower and raise, so nft's and
//! nsfw's encodings of a rule compare equal; counters ignored; set elements as sets). When only
//! elements of sets differ, the ops add and delete exactly those elements; any other difference
//! replaces the table in one batch. The lines say what differs, in `nft` syntax.

use super::batch::Op;
pub use super::canon::canonical_set;
use super::canon::decode_all;
use super::dump::Dumped;
use super::elemdiff::element_changes;
pub use super::elemdiff::{Canon, canon_elements};
use super::expr::Raw;
use super::ir::*;
use super::lower::{LowerCtx, lower_rule};
use super::raise::{RaiseCtx, is_anonymous, raise_rule};
use super::render::element;

/// One nft change, for people (text) and machines (JSON).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftLine {
    /// `+` create, `-` delete, `~` modify.
    pub mark: char,
    /// "table", "chain", "rule", "set", "element" or "object".
    pub kind: &'static str,
    /// "inet nsfw_lab", "ip filter".
    pub table: String,
    pub chain: Option<String>,
    /// The set or map of a set or element line.
    pub set: Option<String>,
    /// The rule or element in `nft` syntax, or the old → new of a chain; empty for tables.
    pub detail: String,
    /// The change concerns a chain of another owner's table (iptables-nft's FORWARD).
    pub foreign: bool,
}

impl NftLine {
    pub fn new(
        mark: char,
        kind: &'static str,
        table: &str,
        chain: Option<&str>,
        detail: String,
    ) -> NftLine {
        NftLine {
            mark,
            kind,
            table: table.to_string(),
            chain: chain.map(str::to_string),
            set: None,
            detail,
            foreign: false,
        }
    }

    fn set_line(mark: char, kind: &'static str, table: &str, set: &str, detail: String) -> NftLine {
        NftLine {
            set: Some(set.to_string()),
            ..NftLine::new(mark, kind, table, None, detail)
        }
    }

    /// What the change concerns, for grouping: the table, or a chain of another owner.
    pub fn object(&self) -> String {
        if self.foreign {
            format!(
                "nft chain {} {}",
                self.table,
                self.chain.as_deref().unwrap_or("")
            )
        } else {
            format!("nft table {}", self.table)
        }
    }
}

impl std::fmt::Display for NftLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} nft {} {}", self.mark, self.kind, self.table)?;
        if let Some(c) = self.chain.as_ref().or(self.set.as_ref()) {
            write!(f, " {c}")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// The ops that make the kernel's table the desired one, and the lines that say why.
#[derive(Clone, Debug, Default)]
pub struct TableDiff {
    pub ops: Vec<Op>,
    pub lines: Vec<NftLine>,
    /// The elements the kernel's sets hold that the desired table's do not, by set: what a
    /// change takes away (conntrack entries of a moved published port are forgotten by it).
    pub gone: Vec<(String, Vec<Element>)>,
    /// The elements the desired table's sets hold that the kernel's do not, by set (empty when
    /// the table is created: all of its elements are new).
    pub added: Vec<(String, Vec<Element>)>,
}

/// Sorts the elements of anonymous sets, whose order means nothing.
fn sort_anon(rule: &mut Rule) {
    let fix = |s: &mut SetRef| {
        if let SetRef::Anon(els) = s {
            els.sort();
        }
    };
    for st in &mut rule.stmts {
        match st {
            Stmt::Match(Match {
                right: Rhs::Set(s), ..
            })
            | Stmt::Vmap(_, s)
            | Stmt::Nat(Nat {
                to: NatTo::Map(_, s),
                ..
            }) => fix(s),
            _ => {}
        }
    }
}

/// A rule as it reads back from the kernel: lowered the way nft writes it and raised again
/// (dependencies written out and swallowed, single-element sets folded, anonymous sets in
/// canonical order). A rule that cannot be lowered is kept as it is.
pub fn canonical_rule(rule: &Rule, family: Family, sets: &[Set]) -> Rule {
    let mut id = 1;
    let mut cx = LowerCtx {
        family,
        sets,
        next_set_id: &mut id,
    };
    let Ok(low) = lower_rule(rule, &mut cx) else {
        let mut r = rule.clone();
        sort_anon(&mut r);
        return r;
    };
    // Raising needs the declarations of named sets, never their elements (a table's may be
    // 10,000, and this runs for every rule).
    let mut all: Vec<Set> = sets
        .iter()
        .map(|s| {
            if is_anonymous(&s.name) {
                s.clone()
            } else {
                s.without_elements()
            }
        })
        .collect();
    for (s, id) in low.anon {
        let mut s = canonical_set(&s);
        s.name = format!("__set{id}");
        all.push(s);
    }
    let exprs: Vec<Raw> = low
        .exprs
        .into_iter()
        .map(|e| match e {
            Raw::Lookup(mut l) => {
                if let Some(id) = l.set_id {
                    l.set = Some(format!("__set{id}"));
                }
                Raw::Lookup(l)
            }
            e => e,
        })
        .collect();
    let mut r = Rule {
        stmts: raise_rule(&exprs, &RaiseCtx { family, sets: &all }),
        comment: rule.comment.clone(),
    };
    sort_anon(&mut r);
    r
}

/// A rule read from the kernel, ready to compare with canonical ones.
pub fn normal_rule(rule: &Rule) -> Rule {
    let mut r = rule.clone();
    sort_anon(&mut r);
    r
}

/// `type ipv4_addr . inet_service; flags interval; timeout 1h`
fn decl(s: &Set) -> String {
    let mut d = s.render();
    if let Some(i) = d.find("\t\telements") {
        d.truncate(i);
    }
    let lines: Vec<&str> = d
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "}")
        .collect();
    lines.join("; ")
}

fn header(b: &Option<Base>, family: Family) -> String {
    b.as_ref()
        .map(|b| b.header(family))
        .unwrap_or_else(|| "a regular chain".into())
}

/// A set's declaration as the kernel reads it back (a default timeout implies the flag), with
/// no elements.
fn declaration(s: &Set) -> Set {
    let mut d = s.without_elements();
    d.flags.timeout |= s.timeout.is_some();
    d
}

/// The diff of the desired table against the kernel's (None: the table is not there).
pub fn table_diff(want: &Table, have: Option<&Dumped>) -> TableDiff {
    table_diff_with(want, &canon_elements(want), have)
}

/// [`table_diff`] with the desired elements' kernel form `canon` made already.
fn table_diff_with(want: &Table, canon: &Canon, have: Option<&Dumped>) -> TableDiff {
    let (mut d, whole) = diff_of(want, canon, have);
    if let Some(op) = whole {
        d.ops = vec![op(want.clone())];
    }
    d
}

/// [`table_diff`] with the desired elements' kernel form `canon` made already, of a desired
/// table it may keep: a table created or replaced whole (10,000 elements, say) goes into the
/// batch as it is, not copied.
pub fn table_diff_owned(want: Table, canon: &Canon, have: Option<&Dumped>) -> TableDiff {
    let (mut d, whole) = diff_of(&want, canon, have);
    if let Some(op) = whole {
        d.ops = vec![op(want)];
    }
    d
}

/// How a table goes into the batch whole: created or replaced.
type Whole = fn(Table) -> Op;

/// The diff, and when the table goes into the batch whole, how: the ops are then left for
/// the caller to fill.
fn diff_of(want: &Table, canon: &Canon, have: Option<&Dumped>) -> (TableDiff, Option<Whole>) {
    let label = want.label();
    let Some(have) = have else {
        let mut lines = vec![NftLine::new('+', "table", &label, None, String::new())];
        for s in &want.sets {
            lines.push(NftLine::set_line(
                '+',
                "set",
                &label,
                &s.name,
                String::new(),
            ));
        }
        for c in &want.chains {
            for r in &c.rules {
                lines.push(NftLine::new(
                    '+',
                    "rule",
                    &label,
                    Some(&c.name),
                    r.to_string(),
                ));
            }
        }
        let d = TableDiff {
            ops: Vec::new(),
            lines,
            gone: Vec::new(),
            added: Vec::new(),
        };
        return (d, Some(Op::CreateTable));
    };
    let k = have.declared();
    let mut lines = Vec::new();
    let mut structural = !have.unreadable.is_empty() || !have.objects.is_empty();
    for u in &have.unreadable {
        lines.push(NftLine::new('~', "table", &label, None, u.clone()));
    }
    // Named objects someone added (nsfw declares none): removed with the table's replacement,
    // which deletes a table's objects with it, in the same batch.
    for o in &have.objects {
        lines.push(NftLine::new(
            '-',
            "object",
            &label,
            None,
            format!("{} {} (someone else's)", o.kind, o.name),
        ));
    }
    let mut element_ops = Vec::new();
    let mut gone_by_set = Vec::new();
    let mut added_by_set = Vec::new();
    if want.dormant != k.dormant {
        let f = |d: bool| if d { "flags dormant" } else { "no flags" };
        lines.push(NftLine::new(
            '~',
            "table",
            &label,
            None,
            format!("{} → {}", f(k.dormant), f(want.dormant)),
        ));
        structural = true;
    }
    if want.comment != k.comment {
        let f = |c: &Option<String>| {
            c.as_ref()
                .map_or("no comment".into(), |c| format!("comment \"{c}\""))
        };
        lines.push(NftLine::new(
            '~',
            "table",
            &label,
            None,
            format!("{} → {}", f(&k.comment), f(&want.comment)),
        ));
        structural = true;
    }

    for s in &want.sets {
        let Some(ks) = k.set(&s.name) else {
            lines.push(NftLine::set_line('+', "set", &label, &s.name, decl(s)));
            structural = true;
            if !s.elements.is_empty() {
                added_by_set.push((s.name.clone(), s.elements.clone()));
            }
            continue;
        };
        let (wd, kd) = (declaration(s), declaration(ks));
        if wd != kd {
            lines.push(NftLine::set_line(
                '~',
                "set",
                &label,
                &s.name,
                format!("{} → {}", decl(&kd), decl(&wd)),
            ));
            structural = true;
        }
        let held = have.canonical(&s.name);
        let none = Err(String::new());
        let wk = canon.get(&s.name).unwrap_or(&none);
        let (gone, new) = element_changes(s, wk, &kd, held);
        for e in &gone {
            lines.push(NftLine::set_line(
                '-',
                "element",
                &label,
                &s.name,
                element(e),
            ));
        }
        for e in &new {
            lines.push(NftLine::set_line(
                '+',
                "element",
                &label,
                &s.name,
                element(e),
            ));
        }
        let with = |els: Vec<Element>| Set {
            elements: els,
            ..wd.clone()
        };
        if !gone.is_empty() {
            gone_by_set.push((s.name.clone(), gone.clone()));
            element_ops.push(Op::DeleteElements {
                family: want.family,
                table: want.name.clone(),
                set: with(gone),
            });
        }
        if !new.is_empty() {
            added_by_set.push((s.name.clone(), new.clone()));
            element_ops.push(Op::AddElements {
                family: want.family,
                table: want.name.clone(),
                set: with(new),
            });
        }
    }
    for s in &k.sets {
        if want.set(&s.name).is_none() {
            lines.push(NftLine::set_line(
                '-',
                "set",
                &label,
                &s.name,
                String::new(),
            ));
            structural = true;
            // A set that goes takes its elements with it (a set nsfw cannot read has none
            // it knows of).
            let held = have.canonical(&s.name);
            gone_by_set.push((s.name.clone(), decode_all(s, held).unwrap_or_default()));
        }
    }

    let before = lines.len();
    for c in &want.chains {
        chain_diff(want, c, have, &mut lines);
    }
    for c in &k.chains {
        if want.chain(&c.name).is_none() {
            lines.push(NftLine::new(
                '-',
                "chain",
                &label,
                Some(&c.name),
                String::new(),
            ));
            // What goes with it, in nft syntax.
            let handles = have.handles.get(&c.name);
            for (i, r) in c.rules.iter().enumerate() {
                let h = handles.and_then(|h| h.get(i)).copied().unwrap_or(0);
                lines.push(NftLine::new(
                    '-',
                    "rule",
                    &label,
                    Some(&c.name),
                    format!("{r} (handle {h})"),
                ));
            }
        }
    }
    structural |= lines.len() > before;

    let (ops, whole): (Vec<Op>, Option<Whole>) = if structural {
        (Vec::new(), Some(Op::ReplaceTable))
    } else {
        // Deletions first: a changed element is deleted and added again.
        element_ops.sort_by_key(|o| !matches!(o, Op::DeleteElements { .. }));
        (element_ops, None)
    };
    let d = TableDiff {
        ops,
        lines,
        gone: gone_by_set,
        added: added_by_set,
    };
    (d, whole)
}

fn chain_diff(want: &Table, c: &Chain, have: &Dumped, lines: &mut Vec<NftLine>) {
    let label = want.label();
    let Some(kc) = have.declared().chain(&c.name) else {
        lines.push(NftLine::new(
            '+',
            "chain",
            &label,
            Some(&c.name),
            String::new(),
        ));
        for r in &c.rules {
            lines.push(NftLine::new(
                '+',
                "rule",
                &label,
                Some(&c.name),
                r.to_string(),
            ));
        }
        return;
    };
    if c.base != kc.base {
        lines.push(NftLine::new(
            '~',
            "chain",
            &label,
            Some(&c.name),
            format!(
                "{} → {}",
                header(&kc.base, want.family),
                header(&c.base, want.family)
            ),
        ));
    }
    if c.comment != kc.comment {
        let f = |c: &Option<String>| {
            c.as_ref()
                .map_or("no comment".into(), |c| format!("comment \"{c}\""))
        };
        lines.push(NftLine::new(
            '~',
            "chain",
            &label,
            Some(&c.name),
            format!("{} → {}", f(&kc.comment), f(&c.comment)),
        ));
    }
    let wanted: Vec<Rule> = c
        .rules
        .iter()
        .map(|r| canonical_rule(r, want.family, &want.sets))
        .collect();
    let kernel: Vec<Rule> = kc.rules.iter().map(normal_rule).collect();
    if wanted == kernel {
        return;
    }
    let handles = have.handles.get(&c.name);
    let before = lines.len();
    for (i, kr) in kernel.iter().enumerate() {
        if !wanted.contains(kr) {
            let h = handles.and_then(|h| h.get(i)).copied().unwrap_or(0);
            lines.push(NftLine::new(
                '-',
                "rule",
                &label,
                Some(&c.name),
                format!("{} (handle {h})", kc.rules[i]),
            ));
        }
    }
    for (i, wr) in wanted.iter().enumerate() {
        if !kernel.contains(wr) {
            lines.push(NftLine::new(
                '+',
                "rule",
                &label,
                Some(&c.name),
                c.rules[i].to_string(),
            ));
        }
    }
    if lines.len() == before {
        lines.push(NftLine::new(
            '~',
            "chain",
            &label,
            Some(&c.name),
            "rules out of order".into(),
        ));
    }
}
