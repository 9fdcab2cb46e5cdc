//! IR rules → kernel expressions, the way nft 1.0.6 writes them (netlink_linearize.c), so that a
//! rule nsfw loads and the same rule loaded with `nft -f` are the same bytecode:
//! - registers: each statement starts again at the first one; single values use the 128-bit
//!   NFT_REG_1.., concatenations the 32-bit NFT_REG32_xx, one or more per component;
//! - dependencies: `meta nfproto ipv4` before `ip saddr` in an inet table, `meta l4proto tcp`
//!   before `tcp dport`, unless the rule already established them;
//! - prefixes: a shortened load for byte-aligned prefixes of network-order fields, a bitwise
//!   mask otherwise; host-order integers converted to network order for ranges and lookups
//!   in interval sets.

mod stmt;

use anyhow::{Result, anyhow, bail};

use crate::deps::{ProtoCtx, dependencies, network_dependency, protos};
use crate::expr::{self as x, Raw, cmp};
use crate::fields::{NFPROTO_IPV4, NFPROTO_IPV6};
use crate::ir::*;
use crate::types::{Datatype, be, padded};
pub use stmt::verdict_code;

/// A lowered rule: its expressions and the anonymous sets they refer to (by batch id), which
/// the batch creates before the rule.
#[derive(Clone, Debug, Default)]
pub struct Lowered {
    pub exprs: Vec<Raw>,
    pub anon: Vec<(Set, u32)>,
}

/// What lowering needs to know beyond the rule.
pub struct LowerCtx<'a> {
    pub family: Family,
    /// The named sets of the table, when known (interval flags and map data types).
    pub sets: &'a [Set],
    /// The batch's set ids: anonymous sets are referred to by id until the kernel names them.
    pub next_set_id: &'a mut u32,
}

/// The register number nft writes for a 32-bit register slot (netlink_put_register): the
/// 128-bit register when the slot starts one, NFT_REG32_xx otherwise.
pub fn reg(slot: u32) -> u32 {
    if slot.is_multiple_of(4) {
        1 + slot / 4
    } else {
        8 + slot
    }
}

/// The 32-bit slot a register number starts at; None for the verdict register.
pub fn slot(reg: u32) -> Option<u32> {
    match reg {
        1..=4 => Some((reg - 1) * 4),
        8..=23 => Some(reg - 8),
        _ => None,
    }
}

/// Slots a value of `len` bytes occupies.
fn space(len: usize) -> u32 {
    (padded(len) / 4) as u32
}

struct Out<'a, 'b> {
    cx: &'a mut LowerCtx<'b>,
    exprs: Vec<Raw>,
    anon: Vec<(Set, u32)>,
}

pub fn lower_rule(rule: &Rule, cx: &mut LowerCtx<'_>) -> Result<Lowered> {
    let mut out = Out {
        cx,
        exprs: Vec::new(),
        anon: Vec::new(),
    };
    let mut pctx = ProtoCtx::of(out.cx.family);
    for s in &rule.stmts {
        // The dependencies of what the statement reads come first, as nft writes them.
        for p in stmt_protos(s) {
            for dep in dependencies(out.cx.family, p, &pctx).map_err(|e| anyhow!(e))? {
                out.lower_match(&dep)?;
                pctx.learn(&dep);
            }
        }
        if let Stmt::Reject(r) = s
            && let Some(net) = reject_network(*r)
            && out.cx.family == Family::Inet
            && pctx.network != Some(net)
            && let Some(dep) = network_dependency(out.cx.family, net).map_err(|e| anyhow!(e))?
        {
            out.lower_match(&dep)?;
            pctx.learn(&dep);
        }
        out.lower_stmt(s, &pctx)?;
        if let Stmt::Match(m) = s {
            pctx.learn(m);
        }
    }
    Ok(Lowered {
        exprs: out.exprs,
        anon: out.anon,
    })
}

/// The network protocol an ICMP reject implies (nft adds `meta nfproto` in inet tables).
pub fn reject_network(r: Reject) -> Option<u8> {
    match r {
        Reject::Icmp(_) => Some(NFPROTO_IPV4),
        Reject::Icmpv6(_) => Some(NFPROTO_IPV6),
        _ => None,
    }
}

/// The protocols whose header fields a statement reads.
fn stmt_protos(s: &Stmt) -> Vec<crate::fields::Proto> {
    match s {
        Stmt::Match(m) => protos(&m.left),
        Stmt::Vmap(e, _) => protos(e),
        Stmt::Nat(Nat {
            to: NatTo::Map(e, _),
            ..
        }) => protos(e),
        Stmt::MetaSet(_, Arg::Expr(e)) | Stmt::CtSet(_, Arg::Expr(e)) => protos(e),
        _ => Vec::new(),
    }
}

fn byteorder_size(len: usize) -> u32 {
    let bits = len * 8;
    if bits.is_multiple_of(64) {
        8
    } else if bits.is_multiple_of(32) {
        4
    } else {
        2
    }
}

impl Out<'_, '_> {
    fn push(&mut self, r: Raw) {
        self.exprs.push(r);
    }

    /// Loads `e` into the registers from `slot` on; `len` shortens a header field load (a
    /// byte-aligned prefix).
    fn load(&mut self, e: &Expr, slot: u32, len: Option<u32>) -> Result<()> {
        let dreg = Some(reg(slot));
        match e {
            Expr::Payload(f) => self.push(Raw::Payload(x::Payload {
                dreg,
                base: Some(f.base() as u32),
                offset: Some(f.offset()),
                len: Some(len.unwrap_or(f.size())),
                ..Default::default()
            })),
            Expr::Meta(k) => self.push(Raw::Meta(x::Meta {
                key: Some(k.number()),
                dreg,
                sreg: None,
            })),
            Expr::Ct(k) => self.push(Raw::Ct(x::Ct {
                key: Some(k.number()),
                dreg,
                ..Default::default()
            })),
            Expr::Fib(f) => self.push(Raw::Fib(x::Fib {
                dreg,
                result: Some(f.result as u32),
                flags: Some(f.flags | if f.present { fib::PRESENT } else { 0 }),
            })),
            Expr::Concat(v) => {
                let mut s = slot;
                for c in v {
                    if matches!(c, Expr::Concat(_)) {
                        bail!("a concatenation cannot contain another");
                    }
                    self.load(c, s, None)?;
                    s += space(c.datatype().size());
                }
            }
        }
        Ok(())
    }

    /// Converts a host-order integer in `slot` to network order (nft's unary `hton`).
    fn hton(&mut self, slot: u32, len: usize) {
        self.push(Raw::Byteorder(x::Byteorder {
            sreg: Some(reg(slot)),
            dreg: Some(reg(slot)),
            op: Some(1),
            len: Some(len as u32),
            size: Some(byteorder_size(len)),
        }));
    }

    fn cmp(&mut self, op: u32, data: Vec<u8>) {
        self.push(Raw::Cmp(x::Cmp {
            sreg: Some(reg(0)),
            op: Some(op),
            data: Some(data),
        }));
    }

    fn bitwise(&mut self, mask: Vec<u8>) {
        self.push(Raw::Bitwise(x::Bitwise {
            sreg: Some(reg(0)),
            dreg: Some(reg(0)),
            len: Some(mask.len() as u32),
            xor: Some(vec![0; mask.len()]),
            mask: Some(mask),
            ..Default::default()
        }));
    }

    fn lower_match(&mut self, m: &Match) -> Result<()> {
        let dt = m.left.datatype();
        let host = dt.host_integer() && dt.size() >= 2;
        if matches!(m.left, Expr::Concat(_)) && !matches!(m.right, Rhs::Set(_)) {
            bail!("a concatenation can only be looked up in a set");
        }
        if let Some(plain) = folded(m) {
            return self.lower_match(&plain);
        }
        match (&m.right, m.op) {
            // ct state established,related  →  (reg & mask) != 0
            (Rhs::Value(v), Op::Flags) => {
                if !dt.is_bitmask() {
                    bail!("`{}` is not a flag type", dt.name());
                }
                let mask = v.bytes();
                self.load(&m.left, 0, None)?;
                let zero = vec![0; mask.len()];
                self.bitwise(mask);
                self.cmp(cmp::NEQ, zero);
            }
            (Rhs::Value(v), op) => self.lower_value(&m.left, op, v, host)?,
            (Rhs::Prefix(v, plen), Op::Eq | Op::Neq) => self.lower_prefix(m, v, *plen)?,
            // tcp dport 1000-2000  →  cmp gte; cmp lte. != → one range expression.
            (Rhs::Range(a, b), op @ (Op::Eq | Op::Neq)) => {
                self.load(&m.left, 0, None)?;
                if host {
                    self.hton(0, dt.size());
                }
                let (lo, hi) = (a.big_endian_bytes(), b.big_endian_bytes());
                if op == Op::Eq {
                    self.cmp(cmp::GTE, lo);
                    self.cmp(cmp::LTE, hi);
                } else {
                    self.push(Raw::Range(x::Range {
                        sreg: Some(reg(0)),
                        op: Some(1),
                        from: Some(lo),
                        to: Some(hi),
                    }));
                }
            }
            // ip saddr @allowed / tcp dport { 80, 443 }  →  lookup (inverted for !=)
            (Rhs::Set(sr), op @ (Op::Eq | Op::Neq)) => {
                let (name, id) = self.set_ref(&m.left, sr, None)?;
                self.push(Raw::Lookup(x::Lookup {
                    sreg: Some(reg(0)),
                    dreg: None,
                    set: Some(name),
                    set_id: id,
                    flags: (op == Op::Neq).then_some(1),
                }));
            }
            (r, op) => bail!("cannot match with {op:?} against {r:?}"),
        }
        Ok(())
    }

    /// tcp dport 22 / meta mark > 0x10 (ordering compares in network order)
    fn lower_value(&mut self, left: &Expr, op: Op, v: &Value, host: bool) -> Result<()> {
        self.load(left, 0, None)?;
        let ordered = !matches!(op, Op::Eq | Op::Neq);
        if ordered && host {
            self.hton(0, left.datatype().size());
        }
        let mut data = if ordered {
            v.big_endian_bytes()
        } else {
            v.bytes()
        };
        // `fib ... oif missing`: the flag fills the register the result would.
        if let Expr::Fib(f) = left
            && f.present
        {
            data.resize(
                if f.result == FibResult::Oifname {
                    16
                } else {
                    4
                },
                0,
            );
        }
        self.cmp(cmp_op(op)?, data);
        Ok(())
    }

    /// ip saddr 10.0.0.0/8  →  payload load 1b; cmp 0x0a
    /// ip saddr 10.16.0.0/12  →  payload load 4b; bitwise & 0xfff00000; cmp
    /// iifname "br*"  →  meta load iifname; cmp the name's first bytes
    fn lower_prefix(&mut self, m: &Match, v: &Value, plen: u32) -> Result<()> {
        let dt = m.left.datatype();
        let full = v.bytes();
        let bits = full.len() as u32 * 8;
        if plen > bits {
            bail!(
                "prefix /{plen} is longer than the {} bits of the value",
                bits
            );
        }
        if dt == Datatype::Ifname {
            // iifname "br*": the name's first bytes compared, the rest ignored.
            if !plen.is_multiple_of(8) {
                bail!("an interface name prefix must be whole bytes");
            }
            self.load(&m.left, 0, None)?;
            self.cmp(cmp_op(m.op)?, full[..(plen / 8) as usize].to_vec());
            return Ok(());
        }
        let aligned = dt.byteorder() == super::types::ByteOrder::Big
            && plen > 0
            && plen.is_multiple_of(8)
            && matches!(m.left, Expr::Payload(_));
        if aligned {
            let n = (plen / 8) as usize;
            self.load(&m.left, 0, Some(n as u32))?;
            self.cmp(cmp_op(m.op)?, full[..n].to_vec());
        } else {
            let mask = be::prefix_mask(full.len(), plen);
            self.load(&m.left, 0, None)?;
            let net = be::and(&full, &mask);
            self.bitwise(mask);
            self.cmp(cmp_op(m.op)?, net);
        }
        Ok(())
    }

    /// Loads a lookup key and names the set; anonymous sets are made here.
    fn set_ref(
        &mut self,
        key: &Expr,
        sr: &SetRef,
        data: Option<SetData>,
    ) -> Result<(String, Option<u32>)> {
        let interval = match sr {
            SetRef::Named(n) => self
                .cx
                .sets
                .iter()
                .find(|s| &s.name == n)
                .is_some_and(|s| s.flags.interval),
            SetRef::Anon(els) => els.iter().any(|e| e.key_end.is_some()),
        };
        self.load_key(key, interval)?;
        Ok(match sr {
            SetRef::Named(n) => (n.clone(), None),
            SetRef::Anon(els) => {
                if els.is_empty() {
                    bail!("an anonymous set needs elements");
                }
                let id = *self.cx.next_set_id;
                *self.cx.next_set_id += 1;
                let name = if data.is_some() { "__map%d" } else { "__set%d" };
                let set = Set {
                    name: name.into(),
                    key: key.datatypes(),
                    data,
                    flags: SetFlags {
                        constant: true,
                        interval,
                        timeout: false,
                        counter: false,
                    },
                    timeout: None,
                    comment: None,
                    elements: els.clone(),
                };
                self.anon.push((set, id));
                (name.to_string(), Some(id))
            }
        })
    }

    /// A lookup key from slot 0: host-order integers go to network order for interval sets
    /// (every such component of a concatenation; single values of two bytes or more).
    fn load_key(&mut self, key: &Expr, interval: bool) -> Result<()> {
        match key {
            Expr::Concat(v) => {
                let mut s = 0;
                for c in v {
                    self.load(c, s, None)?;
                    let dt = c.datatype();
                    if interval && dt.host_integer() {
                        self.hton(s, dt.size());
                    }
                    s += space(dt.size());
                }
            }
            e => {
                self.load(e, 0, None)?;
                let dt = e.datatype();
                if interval && dt.host_integer() && dt.size() >= 2 {
                    self.hton(0, dt.size());
                }
            }
        }
        Ok(())
    }

    /// The data types of a map a statement refers to.
    fn map_data(&self, sr: &SetRef) -> Option<SetData> {
        match sr {
            SetRef::Named(n) => self
                .cx
                .sets
                .iter()
                .find(|s| &s.name == n)
                .and_then(|s| s.data.clone()),
            SetRef::Anon(els) => match els.first().and_then(|e| e.data.as_ref()) {
                Some(ElemData::Verdict(_)) => Some(SetData::Verdict),
                Some(ElemData::Values(v)) => {
                    Some(SetData::Values(v.iter().map(Value::datatype).collect()))
                }
                None => None,
            },
        }
    }

    fn imm(&mut self, slot: u32, data: Vec<u8>) {
        self.push(Raw::Immediate(x::Immediate {
            dreg: Some(reg(slot)),
            data: Some(data),
            ..Default::default()
        }));
    }
}

/// nft folds a one-element anonymous set into a plain match: `ip saddr { 10.0.0.0/8 }` is
/// `ip saddr 10.0.0.0/8`. The plain match, when `m` is such a lookup.
fn folded(m: &Match) -> Option<Match> {
    let Rhs::Set(SetRef::Anon(els)) = &m.right else {
        return None;
    };
    let [e] = els.as_slice() else { return None };
    let [k] = e.key.as_slice() else { return None };
    if e.data.is_some() || matches!(m.left, Expr::Concat(_)) {
        return None;
    }
    let right = match e.key_end.as_ref().and_then(|end| end.first()) {
        Some(end) if end != k => {
            match be::range_prefix(&k.big_endian_bytes(), &end.big_endian_bytes()) {
                Some(plen) if k.datatype().prefix_type() => Rhs::Prefix(k.clone(), plen),
                _ => Rhs::Range(k.clone(), end.clone()),
            }
        }
        _ => Rhs::Value(k.clone()),
    };
    Some(Match {
        left: m.left.clone(),
        op: m.op,
        right,
    })
}

fn cmp_op(op: Op) -> Result<u32> {
    Ok(match op {
        Op::Eq => cmp::EQ,
        Op::Neq => cmp::NEQ,
        Op::Lt => cmp::LT,
        Op::Gt => cmp::GT,
        Op::Lte => cmp::LTE,
        Op::Gte => cmp::GTE,
        Op::Flags => bail!("flags are matched with a bitwise mask, not a comparison"),
    })
}
