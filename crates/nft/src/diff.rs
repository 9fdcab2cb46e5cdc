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
    let Some(have) = have else {
        return (creation(want), Some(Op::CreateTable));
    };
    let mut f = Found::new(want);
    f.table(have);
    for s in &want.sets {
        f.set(s, canon, have);
    }
    f.sets_gone(have);
    f.chains(have);
    f.finish()
}

/// The lines of a table that is not there: it, its sets and its rules, all new.
fn creation(want: &Table) -> TableDiff {
    let label = want.label();
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
    TableDiff {
        ops: Vec::new(),
        lines,
        gone: Vec::new(),
        added: Vec::new(),
    }
}

/// What the diff of a table that is there has found so far: the lines, whether anything but
/// elements differs, and the element changes (ops, and what goes and comes by set).
struct Found<'a> {
    want: &'a Table,
    label: String,
    lines: Vec<NftLine>,
    structural: bool,
    element_ops: Vec<Op>,
    gone: Vec<(String, Vec<Element>)>,
    added: Vec<(String, Vec<Element>)>,
}

impl<'a> Found<'a> {
    fn new(want: &'a Table) -> Found<'a> {
        Found {
            want,
            label: want.label(),
            lines: Vec::new(),
            structural: false,
            element_ops: Vec::new(),
            gone: Vec::new(),
            added: Vec::new(),
        }
    }

    /// A line about the table itself; anything said of it is structural.
    fn table_line(&mut self, mark: char, kind: &'static str, detail: String) {
        self.lines
            .push(NftLine::new(mark, kind, &self.label, None, detail));
        self.structural = true;
    }

    /// What the IR cannot hold, others' named objects, flags and comment.
    fn table(&mut self, have: &Dumped) {
        let k = have.declared();
        for u in &have.unreadable {
            self.table_line('~', "table", u.clone());
        }
        // Named objects someone added (nsfw declares none): removed with the table's
        // replacement, which deletes a table's objects with it, in the same batch.
        for o in &have.objects {
            self.table_line(
                '-',
                "object",
                format!("{} {} (someone else's)", o.kind, o.name),
            );
        }
        if self.want.dormant != k.dormant {
            let f = |d: bool| if d { "flags dormant" } else { "no flags" };
            let detail = format!("{} → {}", f(k.dormant), f(self.want.dormant));
            self.table_line('~', "table", detail);
        }
        if self.want.comment != k.comment {
            let detail = format!("{} → {}", comment(&k.comment), comment(&self.want.comment));
            self.table_line('~', "table", detail);
        }
    }

    /// One desired set against the kernel's of that name: its declaration, then its elements
    /// (element lines and ops only; a new set is structural, its elements come with it).
    fn set(&mut self, s: &Set, canon: &Canon, have: &Dumped) {
        let label = &self.label;
        let Some(ks) = have.declared().set(&s.name) else {
            self.lines
                .push(NftLine::set_line('+', "set", label, &s.name, decl(s)));
            self.structural = true;
            if !s.elements.is_empty() {
                self.added.push((s.name.clone(), s.elements.clone()));
            }
            return;
        };
        let (wd, kd) = (declaration(s), declaration(ks));
        if wd != kd {
            let detail = format!("{} → {}", decl(&kd), decl(&wd));
            self.lines
                .push(NftLine::set_line('~', "set", label, &s.name, detail));
            self.structural = true;
        }
        let held = have.canonical(&s.name);
        let none = Err(String::new());
        let wk = canon.get(&s.name).unwrap_or(&none);
        let (gone, new) = element_changes(s, wk, &kd, held);
        for (mark, els) in [('-', &gone), ('+', &new)] {
            for e in els {
                self.lines.push(NftLine::set_line(
                    mark,
                    "element",
                    label,
                    &s.name,
                    element(e),
                ));
            }
        }
        let (family, table) = (self.want.family, &self.want.name);
        let with = |els: Vec<Element>| Set {
            elements: els,
            ..wd.clone()
        };
        if !gone.is_empty() {
            self.gone.push((s.name.clone(), gone.clone()));
            self.element_ops.push(Op::DeleteElements {
                family,
                table: table.clone(),
                set: with(gone),
            });
        }
        if !new.is_empty() {
            self.added.push((s.name.clone(), new.clone()));
            self.element_ops.push(Op::AddElements {
                family,
                table: table.clone(),
                set: with(new),
            });
        }
    }

    /// The kernel's sets the desired table does not declare: they go, with their elements.
    fn sets_gone(&mut self, have: &Dumped) {
        for s in &have.declared().sets {
            if self.want.set(&s.name).is_none() {
                self.lines.push(NftLine::set_line(
                    '-',
                    "set",
                    &self.label,
                    &s.name,
                    String::new(),
                ));
                self.structural = true;
                // A set that goes takes its elements with it (a set nsfw cannot read has none
                // it knows of).
                let held = have.canonical(&s.name);
                self.gone
                    .push((s.name.clone(), decode_all(s, held).unwrap_or_default()));
            }
        }
    }

    /// The chains and their rules: any line about them is structural.
    fn chains(&mut self, have: &Dumped) {
        let before = self.lines.len();
        for c in &self.want.chains {
            chain_diff(self.want, c, have, &mut self.lines);
        }
        for c in &have.declared().chains {
            if self.want.chain(&c.name).is_none() {
                self.chain_gone(c, have);
            }
        }
        self.structural |= self.lines.len() > before;
    }

    /// A kernel chain the desired table does not have, and what goes with it, in nft syntax.
    fn chain_gone(&mut self, c: &Chain, have: &Dumped) {
        let label = &self.label;
        self.lines.push(NftLine::new(
            '-',
            "chain",
            label,
            Some(&c.name),
            String::new(),
        ));
        let handles = have.handles.get(&c.name);
        for (i, r) in c.rules.iter().enumerate() {
            let h = handles.and_then(|h| h.get(i)).copied().unwrap_or(0);
            self.lines.push(NftLine::new(
                '-',
                "rule",
                label,
                Some(&c.name),
                format!("{r} (handle {h})"),
            ));
        }
    }

    /// The diff: element ops alone when only elements differ, or the table whole.
    fn finish(self) -> (TableDiff, Option<Whole>) {
        let (ops, whole): (Vec<Op>, Option<Whole>) = if self.structural {
            (Vec::new(), Some(Op::ReplaceTable))
        } else {
            // Deletions first: a changed element is deleted and added again.
            let mut ops = self.element_ops;
            ops.sort_by_key(|o| !matches!(o, Op::DeleteElements { .. }));
            (ops, None)
        };
        let d = TableDiff {
            ops,
            lines: self.lines,
            gone: self.gone,
            added: self.added,
        };
        (d, whole)
    }
}

/// `comment "x"`, or `no comment`.
fn comment(c: &Option<String>) -> String {
    c.as_ref()
        .map_or("no comment".into(), |c| format!("comment \"{c}\""))
}

/// One desired chain against the kernel's of that name: all new, or its header and rules.
fn chain_diff(want: &Table, c: &Chain, have: &Dumped, lines: &mut Vec<NftLine>) {
    let label = want.label();
    let line = |mark, kind, detail| NftLine::new(mark, kind, &label, Some(&c.name), detail);
    let Some(kc) = have.declared().chain(&c.name) else {
        lines.push(line('+', "chain", String::new()));
        for r in &c.rules {
            lines.push(line('+', "rule", r.to_string()));
        }
        return;
    };
    if c.base != kc.base {
        let (was, is) = (header(&kc.base, want.family), header(&c.base, want.family));
        lines.push(line('~', "chain", format!("{was} → {is}")));
    }
    if c.comment != kc.comment {
        let detail = format!("{} → {}", comment(&kc.comment), comment(&c.comment));
        lines.push(line('~', "chain", detail));
    }
    rules_diff(want, c, kc, have, lines);
}

/// The rules of a chain both sides have, compared in canonical form: those only the kernel
/// has (with their handles), those only the desired chain has, or the same rules in another
/// order.
fn rules_diff(want: &Table, c: &Chain, kc: &Chain, have: &Dumped, lines: &mut Vec<NftLine>) {
    let label = want.label();
    let line = |mark, kind, detail| NftLine::new(mark, kind, &label, Some(&c.name), detail);
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
            lines.push(line('-', "rule", format!("{} (handle {h})", kc.rules[i])));
        }
    }
    for (i, wr) in wanted.iter().enumerate() {
        if !kernel.contains(wr) {
            lines.push(line('+', "rule", c.rules[i].to_string()));
        }
    }
    if lines.len() == before {
        lines.push(line('~', "chain", "rules out of order".into()));
    }
}
