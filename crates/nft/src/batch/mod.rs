//! Changes to the ruleset ([`Op`]) encoded into one nf_tables batch: BATCH_BEGIN, one message
//! per object (every one asking for an acknowledgement), BATCH_END. The kernel applies a batch
//! all or nothing. Each message is built by libnftnl from its object (`nftnl_table`,
//! `nftnl_chain`, `nftnl_set` with its elements, `nftnl_rule` with the expressions of
//! `lower`), and labelled with what it concerns so an error can name it.

mod sets;

use std::ffi::CString;

use anyhow::{Context, Result, anyhow};

use crate::elems::to_kernel;
use crate::ffi::{self, MsgBuf, Payload};
use crate::ir::*;
use crate::lower::{LowerCtx, lower_rule};
use crate::udata;

/// One change. A batch is a list of these, applied by the kernel all or nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Replaces (or creates) a whole table: add it (so the delete cannot fail), delete it, add
    /// it again with everything in it.
    ReplaceTable(Table),
    /// Adds a table with everything in it (an existing table of that name is updated: its
    /// flags set, the contents added to it).
    AddTable(Table),
    /// Creates a table that is not there, with everything in it: the batch fails (EEXIST,
    /// nothing changed) if someone made one of that name since it was observed missing.
    /// Unlike a replacement it deletes nothing, so closing the socket afterwards does not wait
    /// for the kernel to free what a deletion left (an RCU grace period, 10-30 ms).
    CreateTable(Table),
    /// Deletes a table if it is there (added first, so the delete cannot fail).
    DeleteTable { family: Family, name: String },
    /// Adds a chain (its rules are appended after it).
    AddChain {
        family: Family,
        table: String,
        chain: Chain,
    },
    DeleteChain {
        family: Family,
        table: String,
        name: String,
    },
    /// Deletes every rule of a chain.
    FlushChain {
        family: Family,
        table: String,
        name: String,
    },
    /// Adds a rule at the end of a chain, or at its top (`first`, as `iptables -I` does).
    AddRule {
        family: Family,
        table: String,
        chain: String,
        rule: Rule,
        first: bool,
    },
    /// Deletes one rule by handle; `what` says whose it is, for error messages.
    DeleteRule {
        family: Family,
        table: String,
        chain: String,
        handle: u64,
        what: String,
    },
    /// Adds a set or map with its elements.
    AddSet {
        family: Family,
        table: String,
        set: Set,
    },
    DeleteSet {
        family: Family,
        table: String,
        name: String,
    },
    /// Adds `set.elements` to the existing set `set` declares.
    AddElements {
        family: Family,
        table: String,
        set: Set,
    },
    /// Deletes `set.elements` from the existing set `set` declares.
    DeleteElements {
        family: Family,
        table: String,
        set: Set,
    },
}

/// A batch ready to send: its bytes, and for each message in it (batch begin and end aside)
/// its sequence number and what it concerns.
pub struct Encoded {
    pub buf: Vec<u8>,
    pub seqs: Vec<u32>,
    pub what: Vec<String>,
    /// The message types (NFT_MSG_*), for tests that count what a change sends.
    pub types: Vec<u16>,
}

impl Encoded {
    /// Messages in the batch, begin and end excluded.
    pub fn len(&self) -> usize {
        self.seqs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }
}

/// The largest message: an element list is cut well below the 64 KiB of a netlink attribute.
const MSG_MAX: usize = 128 * 1024;
const ELEMS_BUDGET: usize = 48 * 1024;

struct Batch {
    buf: Vec<u8>,
    seq: u32,
    seqs: Vec<u32>,
    what: Vec<String>,
    types: Vec<u16>,
    scratch: MsgBuf,
    next_set_id: u32,
    /// Set declarations this batch creates, by (family, table): rules added later in the
    /// batch look their sets up here (interval sets take keys in network order).
    known: Vec<(Family, String, Set)>,
}

fn cstr(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| anyhow!("{what} {s:?} contains a NUL byte"))
}

impl Batch {
    fn new() -> Batch {
        let mut b = Batch {
            buf: Vec::new(),
            seq: 0x4e53_0000,
            seqs: Vec::new(),
            what: Vec::new(),
            types: Vec::new(),
            scratch: MsgBuf::new(MSG_MAX),
            next_set_id: 1,
            known: Vec::new(),
        };
        b.frame(true);
        b
    }

    /// Appends a message to the batch, padded to 4 bytes.
    fn append(buf: &mut Vec<u8>, msg: &[u8]) {
        buf.extend_from_slice(msg);
        buf.resize(buf.len().next_multiple_of(4), 0);
    }

    fn frame(&mut self, begin: bool) {
        let seq = self.seq;
        self.seq += 1;
        Batch::append(&mut self.buf, self.scratch.batch(begin, seq));
    }

    /// Appends one message asking for an acknowledgement, with `payload`'s attributes.
    fn msg(&mut self, ty: i32, family: Family, flags: i32, what: String, payload: &dyn Payload) {
        let seq = self.seq;
        self.seq += 1;
        let m = self.scratch.build(
            ty as u16,
            u16::from(family.nfproto()),
            (flags | libc::NLM_F_ACK) as u16,
            seq,
            Some(payload),
        );
        Batch::append(&mut self.buf, m);
        self.seqs.push(seq);
        self.what.push(what);
        self.types.push(ty as u16);
    }

    fn table(&mut self, t: &Table, ty: i32, full: bool) -> Result<()> {
        self.table_flags(t, ty, full, libc::NLM_F_CREATE)
    }

    fn table_flags(&mut self, t: &Table, ty: i32, full: bool, flags: i32) -> Result<()> {
        let name = cstr(&t.name, "table")?;
        let comment = t.comment.as_deref().map(udata::comment);
        let mut o = ffi::Table::new()?;
        o.set_str(ffi::NFTNL_TABLE_NAME, &name);
        if full {
            o.set_u32(ffi::NFTNL_TABLE_FLAGS, u32::from(t.dormant));
            if let Some(c) = &comment {
                o.set_data(ffi::NFTNL_TABLE_USERDATA, c)?;
            }
        }
        self.msg(ty, t.family, flags, format!("table {}", t.label()), &o);
        Ok(())
    }

    fn chain(&mut self, family: Family, table: &str, c: &Chain, ty: i32) -> Result<()> {
        let tname = cstr(table, "table")?;
        let cname = cstr(&c.name, "chain")?;
        let ctype = c.base.map(|b| cstr(b.ty.as_str(), "type")).transpose()?;
        let comment = c.comment.as_deref().map(udata::comment);
        let what = format!("table {} {table} chain {}", family.as_str(), c.name);
        let add = ty == libc::NFT_MSG_NEWCHAIN;
        let mut o = ffi::Chain::new()?;
        o.set_str(ffi::NFTNL_CHAIN_TABLE, &tname);
        o.set_str(ffi::NFTNL_CHAIN_NAME, &cname);
        if add {
            if let (Some(b), Some(t)) = (&c.base, &ctype) {
                o.set_u32(ffi::NFTNL_CHAIN_HOOKNUM, b.hook.number());
                if let Some(d) = b.hook.device() {
                    o.set_str(ffi::NFTNL_CHAIN_DEV, &cstr(d.as_str(), "device")?);
                }
                o.set_i32(ffi::NFTNL_CHAIN_PRIO, b.priority);
                o.set_str(ffi::NFTNL_CHAIN_TYPE, t);
                let policy = match b.policy {
                    Policy::Accept => libc::NF_ACCEPT,
                    Policy::Drop => libc::NF_DROP,
                };
                o.set_u32(ffi::NFTNL_CHAIN_POLICY, policy as u32);
            }
            if let Some(u) = &comment {
                o.set_data(ffi::NFTNL_CHAIN_USERDATA, u)?;
            }
        }
        self.msg(ty, family, libc::NLM_F_CREATE, what, &o);
        Ok(())
    }

    fn rule(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
        rule: &Rule,
        first: bool,
        sets: &[Set],
    ) -> Result<()> {
        let lowered = {
            let mut cx = LowerCtx {
                family,
                sets,
                next_set_id: &mut self.next_set_id,
            };
            lower_rule(rule, &mut cx).with_context(|| format!("chain {chain}: rule `{rule}`"))?
        };
        for (s, id) in &lowered.anon {
            self.set(family, table, s, *id, true)?;
        }
        let tname = cstr(table, "table")?;
        let cname = cstr(chain, "chain")?;
        let comment = rule.comment.as_deref().map(udata::comment);
        let exprs = lowered
            .exprs
            .iter()
            .map(|r| r.to_nftnl())
            .collect::<Result<Vec<ffi::Expr>>>()?;
        let what = format!(
            "table {} {table} chain {chain} rule `{rule}`",
            family.as_str()
        );
        let flags = libc::NLM_F_CREATE | if first { 0 } else { libc::NLM_F_APPEND };
        let mut o = ffi::Rule::new()?;
        o.set_str(ffi::NFTNL_RULE_TABLE, &tname);
        o.set_str(ffi::NFTNL_RULE_CHAIN, &cname);
        for e in exprs {
            o.add_expr(e);
        }
        if let Some(u) = &comment {
            o.set_data(ffi::NFTNL_RULE_USERDATA, u)?;
        }
        self.msg(libc::NFT_MSG_NEWRULE, family, flags, what, &o);
        Ok(())
    }

    fn del_rule(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
        handle: Option<u64>,
        what: String,
    ) -> Result<()> {
        let tname = cstr(table, "table")?;
        let cname = cstr(chain, "chain")?;
        let mut o = ffi::Rule::new()?;
        o.set_str(ffi::NFTNL_RULE_TABLE, &tname);
        o.set_str(ffi::NFTNL_RULE_CHAIN, &cname);
        if let Some(hd) = handle {
            o.set_u64(ffi::NFTNL_RULE_HANDLE, hd);
        }
        self.msg(libc::NFT_MSG_DELRULE, family, 0, what, &o);
        Ok(())
    }

    /// The table with everything in it. Chains first (jumps and verdict maps name them),
    /// then sets, then rules.
    fn contents(&mut self, t: &Table) -> Result<()> {
        self.table(t, libc::NFT_MSG_NEWTABLE, true)?;
        self.inside(t)
    }

    /// The chains, sets and rules of table `t`, which the batch has added.
    fn inside(&mut self, t: &Table) -> Result<()> {
        for c in &t.chains {
            self.chain(t.family, &t.name, c, libc::NFT_MSG_NEWCHAIN)?;
        }
        for s in &t.sets {
            let id = self.next_set_id;
            self.next_set_id += 1;
            self.set(t.family, &t.name, s, id, false)?;
        }
        for c in &t.chains {
            for r in &c.rules {
                self.rule(t.family, &t.name, &c.name, r, false, &t.sets)?;
            }
        }
        Ok(())
    }

    /// The declarations of the sets of a table this batch creates.
    fn known_sets(&self, family: Family, table: &str) -> Vec<Set> {
        self.known
            .iter()
            .filter(|(f, t, _)| *f == family && t == table)
            .map(|(_, _, s)| s.clone())
            .collect()
    }

    fn learn(&mut self, family: Family, table: &str, sets: &[Set]) {
        for s in sets {
            self.known
                .push((family, table.to_string(), s.without_elements()));
        }
    }

    /// The set declarations `op` makes, for the rules after it in the batch.
    fn learn_op(&mut self, op: &Op) {
        match op {
            Op::ReplaceTable(t) | Op::AddTable(t) | Op::CreateTable(t) => {
                self.learn(t.family, &t.name, &t.sets)
            }
            Op::AddSet { family, table, set } => {
                self.learn(*family, table, std::slice::from_ref(set))
            }
            _ => {}
        }
    }

    /// The messages of one op.
    fn op(&mut self, op: &Op) -> Result<()> {
        self.learn_op(op);
        match op {
            Op::ReplaceTable(t) => {
                self.table(t, libc::NFT_MSG_NEWTABLE, false)?;
                self.table(t, libc::NFT_MSG_DELTABLE, false)?;
                self.contents(t)?;
            }
            Op::AddTable(t) => self.contents(t)?,
            Op::CreateTable(t) => {
                let excl = libc::NLM_F_CREATE | libc::NLM_F_EXCL;
                self.table_flags(t, libc::NFT_MSG_NEWTABLE, true, excl)?;
                self.inside(t)?;
            }
            Op::DeleteTable { family, name } => {
                let t = Table::new(*family, name);
                self.table(&t, libc::NFT_MSG_NEWTABLE, false)?;
                self.table(&t, libc::NFT_MSG_DELTABLE, false)?;
            }
            Op::AddChain {
                family,
                table,
                chain,
            } => self.add_chain(*family, table, chain)?,
            Op::DeleteChain {
                family,
                table,
                name,
            } => {
                self.chain(
                    *family,
                    table,
                    &Chain::new(name, None, vec![]),
                    libc::NFT_MSG_DELCHAIN,
                )?;
            }
            Op::FlushChain {
                family,
                table,
                name,
            } => {
                let what = format!("table {} {table} chain {name} (flush)", family.as_str());
                self.del_rule(*family, table, name, None, what)?;
            }
            Op::AddRule {
                family,
                table,
                chain,
                rule,
                first,
            } => {
                let sets = self.known_sets(*family, table);
                self.rule(*family, table, chain, rule, *first, &sets)?
            }
            Op::DeleteRule {
                family,
                table,
                chain,
                handle,
                what,
            } => {
                let w = format!(
                    "table {} {table} chain {chain} rule handle {handle} ({what})",
                    family.as_str()
                );
                self.del_rule(*family, table, chain, Some(*handle), w)?;
            }
            Op::AddSet { family, table, set } => {
                let id = self.next_set_id;
                self.next_set_id += 1;
                self.set(*family, table, set, id, false)?;
            }
            Op::DeleteSet {
                family,
                table,
                name,
            } => self.del_set(*family, table, name)?,
            Op::AddElements { family, table, set } => {
                self.element_op(*family, table, set, libc::NFT_MSG_NEWSETELEM)?
            }
            Op::DeleteElements { family, table, set } => {
                self.element_op(*family, table, set, libc::NFT_MSG_DELSETELEM)?
            }
        }
        Ok(())
    }

    /// A chain added to a table that is there, with its rules.
    fn add_chain(&mut self, family: Family, table: &str, chain: &Chain) -> Result<()> {
        self.chain(family, table, chain, libc::NFT_MSG_NEWCHAIN)?;
        let sets = self.known_sets(family, table);
        for r in &chain.rules {
            self.rule(family, table, &chain.name, r, false, &sets)?;
        }
        Ok(())
    }

    /// `set.elements` added to (NEWSETELEM) or deleted from (DELSETELEM) the existing set
    /// `set` declares.
    fn element_op(&mut self, family: Family, table: &str, set: &Set, ty: i32) -> Result<()> {
        let kelems =
            to_kernel(set, &set.elements, false).map_err(|e| anyhow!("set {}: {e}", set.name))?;
        let label = format!("table {} {table} set {}", family.as_str(), set.name);
        let target = sets::ElemTarget {
            family,
            table,
            set: &set.name,
            id: None,
        };
        self.elements(&target, &kelems, ty, &label)
    }
}

/// Encodes `ops` into one batch.
pub fn encode(ops: &[Op]) -> Result<Encoded> {
    let mut b = Batch::new();
    for op in ops {
        b.op(op)?;
    }
    b.frame(false);
    Ok(Encoded {
        buf: b.buf,
        seqs: b.seqs,
        what: b.what,
        types: b.types,
    })
}
