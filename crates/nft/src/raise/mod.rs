//! Kernel expressions → IR rules. The decoder follows the registers symbolically: a load writes
//! its source (a header field, a meta or conntrack key, a route lookup, data) into a register,
//! bitwise and byteorder transform it, and cmp, range, lookup, nat and the other statements
//! consume it. Header fields are named by what the rule has established so far (`meta l4proto
//! tcp` makes transport offset 2 `tcp dport`), and the dependencies nft writes before a field
//! ([`super::deps`]) are swallowed again, so nft's encoding and nsfw's read back the same.

mod stmt;

use std::collections::HashMap;

use crate::deps::{ProtoCtx, dependencies, protos};
use crate::expr::{self as x, Raw, verdict};
use crate::fields::{HeaderBase, NFPROTO_IPV4, NFPROTO_IPV6, Proto};
use crate::ir::*;
use crate::lower::slot;
use crate::types::{Datatype, padded};

/// What decoding needs beyond the rule: the family and every set of the table (named ones
/// for their types, anonymous ones for their elements).
pub struct RaiseCtx<'a> {
    pub family: Family,
    pub sets: &'a [Set],
}

/// Anonymous sets are named by the kernel from nft's `__set%d` / `__map%d` templates.
pub fn is_anonymous(name: &str) -> bool {
    name.starts_with("__set") || name.starts_with("__map")
}

/// What a register holds.
#[derive(Clone, Debug)]
enum Src {
    Payload {
        base: u32,
        offset: u32,
        len: u32,
    },
    Meta(MetaKey),
    Ct(CtKey),
    Fib(Fib),
    Imm(Vec<u8>),
    /// `(inner & mask) ^ 0`
    Masked(Box<Src>, Vec<u8>),
    /// Converted to network order.
    Hton(Box<Src>),
    /// Data a map lookup wrote: component `part` of what `key` maps to in `set`.
    MapData {
        key: Expr,
        set: SetRef,
        types: Vec<Datatype>,
        part: usize,
    },
}

type Fail = String;

struct Raiser<'a> {
    cx: &'a RaiseCtx<'a>,
    regs: HashMap<u32, Src>,
    pctx: ProtoCtx,
    stmts: Vec<Option<Stmt>>,
    /// Matches that may be a dependency nft wrote for a later field: (index in stmts, match).
    candidates: Vec<(usize, Match)>,
}

/// iptables-nft's `-m comment --comment TEXT` as an xtables match (how iptables-restore writes
/// it) rather than rule userdata: the comment, and the expressions without it.
pub fn xt_comment(raws: &[Raw]) -> (Vec<Raw>, Option<String>) {
    let mut comment = None;
    let rest = raws
        .iter()
        .filter(|r| match r {
            Raw::Xt(x) if x.name.as_deref() == Some("comment") && comment.is_none() => {
                let info = x.info.clone().unwrap_or_default();
                let text = info.split(|b| *b == 0).next().unwrap_or(&[]);
                comment = Some(String::from_utf8_lossy(text).into_owned());
                false
            }
            _ => true,
        })
        .cloned()
        .collect();
    (rest, comment)
}

/// iptables' `-j REJECT --reject-with X` (the xt target's info: one `enum ipt_reject_with` for
/// ip, `enum ip6t_reject_with` for ip6) as the reject statement nft shows for it. None for a
/// kind nft has no statement for (echo-reply), or a family without xtables.
fn xt_reject(family: Family, info: Option<&[u8]>) -> Option<Reject> {
    let with = match info {
        Some(b) if b.len() >= 4 => u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        _ => return Some(Reject::Default),
    };
    match family {
        // net, host, prot, port (the default), echo-reply, net-prohibited, host-prohibited,
        // tcp-reset, admin-prohibited.
        Family::Ip => match with {
            3 => Some(Reject::Default),
            7 => Some(Reject::TcpReset),
            0..=2 => Some(Reject::Icmp(with as u8)),
            5 => Some(Reject::Icmp(9)),
            6 => Some(Reject::Icmp(10)),
            8 => Some(Reject::Icmp(13)),
            _ => None,
        },
        // no-route, adm-prohibited, not-neighbour, addr-unreach, port-unreach (the default),
        // echo-reply, tcp-reset, policy-fail, reject-route.
        Family::Ip6 => match with {
            4 => Some(Reject::Default),
            6 => Some(Reject::TcpReset),
            0..=3 => Some(Reject::Icmpv6(with as u8)),
            7 => Some(Reject::Icmpv6(5)),
            8 => Some(Reject::Icmpv6(6)),
            _ => None,
        },
        _ => None,
    }
}

/// Decodes a rule's expressions. What cannot be read is kept as [`Stmt::Unreadable`], after
/// the statements read so far.
pub fn raise_rule(raws: &[Raw], cx: &RaiseCtx<'_>) -> Vec<Stmt> {
    let mut r = Raiser {
        cx,
        regs: HashMap::new(),
        pctx: ProtoCtx::of(cx.family),
        stmts: Vec::new(),
        candidates: Vec::new(),
    };
    let mut i = 0;
    // The first expression not yet part of a statement (loads wait for what consumes them).
    let mut pending = 0;
    while i < raws.len() {
        let before = r.stmts.len();
        match r.step(raws, i) {
            Ok(n) => {
                i += n;
                if r.stmts.len() > before {
                    pending = i;
                }
            }
            Err(why) => {
                let rest: Vec<String> = raws[pending..].iter().map(Raw::describe).collect();
                r.stmts.push(Some(Stmt::Unreadable(format!(
                    "[nsfw cannot read this ({why}): {}]",
                    rest.join("; ")
                ))));
                break;
            }
        }
    }
    r.stmts.into_iter().flatten().collect()
}

fn get<T: Copy>(v: Option<T>, what: &str) -> Result<T, Fail> {
    v.ok_or_else(|| format!("{what} missing"))
}

fn reg_slot(r: Option<u32>) -> Result<u32, Fail> {
    let r = get(r, "register")?;
    slot(r).ok_or_else(|| format!("register {r}"))
}

impl Raiser<'_> {
    fn src(&self, reg: Option<u32>) -> Result<Src, Fail> {
        let s = reg_slot(reg)?;
        self.regs
            .get(&s)
            .cloned()
            .ok_or_else(|| format!("register {s} read before written"))
    }

    fn proto_at(&self, base: u32) -> Result<(Proto, HeaderBase), Fail> {
        Ok(match base {
            0 => (Proto::Ether, HeaderBase::Link),
            1 => match self.pctx.network {
                Some(NFPROTO_IPV4) => (Proto::Ip, HeaderBase::Network),
                Some(NFPROTO_IPV6) => (Proto::Ip6, HeaderBase::Network),
                Some(super::fields::NFPROTO_ARP) => (Proto::Arp, HeaderBase::Network),
                _ => return Err("network header of an unknown protocol".into()),
            },
            2 => (
                match self.pctx.transport {
                    Some(6) => Proto::Tcp,
                    Some(17) => Proto::Udp,
                    Some(1) => Proto::Icmp,
                    Some(58) => Proto::Icmpv6,
                    _ => Proto::Th,
                },
                HeaderBase::Transport,
            ),
            b => return Err(format!("payload base {b}")),
        })
    }

    /// The expression a register source is, and the prefix length when a header field was
    /// loaded shortened.
    fn expr(&self, src: &Src) -> Result<(Expr, Option<u32>), Fail> {
        Ok(match src {
            Src::Payload { base, offset, len } => {
                let (proto, hb) = self.proto_at(*base)?;
                let f = super::fields::Field::at(proto, hb, *offset, *len)
                    .ok_or_else(|| format!("no {} field at offset {offset}", proto.name()))?;
                let short = (*len < f.size()).then_some(len * 8);
                if short.is_some() && proto == Proto::Th {
                    return Err("partial transport header load".into());
                }
                (Expr::Payload(f), short)
            }
            Src::Meta(k) => (Expr::Meta(*k), None),
            Src::Ct(k) => (Expr::Ct(*k), None),
            Src::Fib(f) => (Expr::Fib(*f), None),
            Src::Hton(inner) => self.expr(inner)?,
            Src::Imm(_) | Src::Masked(..) | Src::MapData { .. } => {
                return Err("not an expression".into());
            }
        })
    }

    /// A full (not shortened) expression from a register.
    fn full_expr(&self, src: &Src) -> Result<Expr, Fail> {
        match self.expr(src)? {
            (e, None) => Ok(e),
            _ => Err("shortened load in a key".into()),
        }
    }

    /// Swallows the dependencies nft writes before the fields of `e` (or before a reject).
    fn swallow(&mut self, wanted: Vec<Match>) {
        for dep in wanted {
            if let Some(pos) = self.candidates.iter().rposition(|(_, m)| *m == dep) {
                let (idx, _) = self.candidates.remove(pos);
                self.stmts[idx] = None;
            }
        }
    }

    fn swallow_for(&mut self, e: &Expr) {
        let empty = ProtoCtx::of(self.cx.family);
        let mut deps = Vec::new();
        for p in protos(e) {
            deps.extend(dependencies(self.cx.family, p, &empty).unwrap_or_default());
        }
        self.swallow(deps);
    }

    fn push(&mut self, s: Stmt) {
        self.stmts.push(Some(s));
    }

    fn push_match(&mut self, m: Match) {
        self.swallow_for(&m.left);
        let dependency_like = m.op == Op::Eq
            && matches!(m.right, Rhs::Value(_))
            && matches!(
                m.left,
                Expr::Meta(
                    MetaKey::Nfproto | MetaKey::L4proto | MetaKey::Protocol | MetaKey::Iiftype
                ) | Expr::Payload(Field::IpProtocol | Field::Ip6Nexthdr | Field::EtherType)
            );
        self.pctx.learn(&m);
        if dependency_like {
            self.candidates.push((self.stmts.len(), m.clone()));
        }
        self.push(Stmt::Match(m));
    }

    fn value(dt: Datatype, b: &[u8]) -> Result<Value, Fail> {
        Value::from_bytes(dt, b).ok_or_else(|| format!("{} bytes are no {}", b.len(), dt.name()))
    }

    fn set_decl(&self, name: &str) -> Result<&Set, Fail> {
        self.cx
            .sets
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| format!("unknown set {name}"))
    }

    fn set_ref(&self, set: &Set) -> SetRef {
        if is_anonymous(&set.name) {
            SetRef::Anon(set.elements.clone())
        } else {
            SetRef::Named(set.name.clone())
        }
    }

    /// Reads a lookup key of the set's types from `slot` on.
    fn key(&self, mut s: u32, types: &[Datatype]) -> Result<Expr, Fail> {
        let mut comps = Vec::new();
        for t in types {
            let src = self
                .regs
                .get(&s)
                .cloned()
                .ok_or_else(|| format!("key register {s} read before written"))?;
            comps.push(self.full_expr(&src)?);
            s += (padded(t.size()) / 4) as u32;
        }
        Ok(if comps.len() == 1 {
            comps.remove(0)
        } else {
            Expr::Concat(comps)
        })
    }

    /// Decodes the expression at `i`; returns how many it consumed.
    fn step(&mut self, raws: &[Raw], i: usize) -> Result<usize, Fail> {
        match &raws[i] {
            Raw::Payload(p) => {
                if p.sreg.is_some() {
                    return Err("payload write".into());
                }
                let s = reg_slot(p.dreg)?;
                self.regs.insert(
                    s,
                    Src::Payload {
                        base: get(p.base, "base")?,
                        offset: get(p.offset, "offset")?,
                        len: get(p.len, "len")?,
                    },
                );
            }
            Raw::Meta(m) => {
                let key = get(m.key, "meta key")?;
                let k = MetaKey::from_number(key).ok_or_else(|| format!("meta key {key}"))?;
                if m.sreg.is_some() {
                    let arg = self.arg(m.sreg, k.datatype())?;
                    self.push(Stmt::MetaSet(k, arg));
                } else {
                    self.regs.insert(reg_slot(m.dreg)?, Src::Meta(k));
                }
            }
            Raw::Ct(c) => {
                let key = get(c.key, "ct key")?;
                let k = CtKey::from_number(key).ok_or_else(|| format!("ct key {key}"))?;
                if c.dir.is_some() {
                    return Err("ct direction qualifier".into());
                }
                if c.sreg.is_some() {
                    let arg = self.arg(c.sreg, k.datatype())?;
                    self.push(Stmt::CtSet(k, arg));
                } else {
                    self.regs.insert(reg_slot(c.dreg)?, Src::Ct(k));
                }
            }
            Raw::Fib(f) => self.fib(f)?,
            Raw::Immediate(im) => self.immediate(im)?,
            Raw::Bitwise(b) => self.bitwise(b)?,
            Raw::Byteorder(b) => {
                if b.op != Some(1) {
                    return Err("byteorder to host order".into());
                }
                let src = self.src(b.sreg)?;
                self.regs
                    .insert(reg_slot(b.dreg)?, Src::Hton(Box::new(src)));
            }
            Raw::Cmp(c) => return self.cmp(c, raws.get(i + 1)),
            Raw::Range(r) => self.range(r)?,
            Raw::Lookup(l) => self.lookup(l)?,
            Raw::Nat(n) => self.nat(n)?,
            Raw::Masq(m) => {
                let ports = self.ports(m.proto_min, m.proto_max)?;
                let flags = m.flags.unwrap_or(0) & !2;
                self.push(Stmt::Masquerade(PortNat { ports, flags }));
            }
            Raw::Redir(m) => {
                let ports = self.ports(m.proto_min, m.proto_max)?;
                let flags = m.flags.unwrap_or(0) & !2;
                self.push(Stmt::Redirect(PortNat { ports, flags }));
            }
            Raw::Counter(c) => self.push(Stmt::Counter(Counter {
                packets: c.packets.unwrap_or(0),
                bytes: c.bytes.unwrap_or(0),
            })),
            Raw::Log(l) => self.log(l)?,
            Raw::Limit(l) => self.push(Stmt::Limit(Limit {
                rate: get(l.rate, "limit rate")?,
                per: get(l.unit, "limit unit")?,
                burst: l.burst.unwrap_or(0),
                bytes: l.kind == Some(1),
                over: l.flags.unwrap_or(0) & 1 != 0,
            })),
            Raw::Reject(r) => self.reject(r)?,
            Raw::Notrack(_) => self.push(Stmt::Notrack),
            Raw::Xt(x) => {
                return Err(format!(
                    "xtables match {}",
                    x.name.as_deref().unwrap_or("?")
                ));
            }
            Raw::XtTarget(x) => self.xt_target(x)?,
            Raw::Unknown(n) => return Err(format!("expression {n}")),
        }
        Ok(1)
    }

    /// A route lookup into a register.
    fn fib(&mut self, f: &x::Fib) -> Result<(), Fail> {
        let flags = get(f.flags, "fib flags")?;
        let result = match get(f.result, "fib result")? {
            1 => FibResult::Oif,
            2 => FibResult::Oifname,
            3 => FibResult::Type,
            r => return Err(format!("fib result {r}")),
        };
        let fib = Fib {
            flags: flags & !fib::PRESENT,
            result,
            present: flags & fib::PRESENT != 0,
        };
        self.regs.insert(reg_slot(f.dreg)?, Src::Fib(fib));
        Ok(())
    }

    /// A verdict (into the verdict register), or data into a register.
    fn immediate(&mut self, im: &x::Immediate) -> Result<(), Fail> {
        match im.dreg {
            Some(0) => {
                let v = match (get(im.verdict, "verdict")?, im.chain.clone()) {
                    (verdict::ACCEPT, _) => Verdict::Accept,
                    (verdict::DROP, _) => Verdict::Drop,
                    (verdict::CONTINUE, _) => Verdict::Continue,
                    (verdict::RETURN, _) => Verdict::Return,
                    (verdict::JUMP, Some(c)) => Verdict::Jump(c),
                    (verdict::GOTO, Some(c)) => Verdict::Goto(c),
                    (v, _) => return Err(format!("verdict {v:#x}")),
                };
                self.push(Stmt::Verdict(v));
            }
            r => {
                let data = im.data.clone().ok_or("immediate without data")?;
                self.regs.insert(reg_slot(r)?, Src::Imm(data));
            }
        }
        Ok(())
    }

    /// A mask over a register (a shift or an xor is not read).
    fn bitwise(&mut self, b: &x::Bitwise) -> Result<(), Fail> {
        if b.op.is_some_and(|o| o != 0) || b.data.is_some() {
            return Err("bitwise shift".into());
        }
        let mask = b.mask.clone().ok_or("bitwise without mask")?;
        if b.xor.as_ref().is_some_and(|x| x.iter().any(|v| *v != 0)) {
            return Err("bitwise xor".into());
        }
        let src = self.src(b.sreg)?;
        self.regs
            .insert(reg_slot(b.dreg)?, Src::Masked(Box::new(src), mask));
        Ok(())
    }

    /// iptables-nft's `-j REJECT`: read as the reject it is; any other target is not read.
    fn xt_target(&mut self, x: &x::XtTarget) -> Result<(), Fail> {
        let reject = match x.name.as_deref() {
            Some("REJECT") => xt_reject(self.cx.family, x.info.as_deref()),
            _ => None,
        };
        let Some(r) = reject else {
            return Err(format!(
                "xtables target {}",
                x.name.as_deref().unwrap_or("?")
            ));
        };
        self.push(Stmt::Reject(r));
        Ok(())
    }

    fn arg(&self, sreg: Option<u32>, dt: Datatype) -> Result<Arg, Fail> {
        Ok(match self.src(sreg)? {
            Src::Imm(b) => Arg::Value(Self::value(dt, &b)?),
            s => Arg::Expr(self.full_expr(&s)?),
        })
    }
}
