//! Decoding of comparisons, lookups and the statements that consume registers.

use super::{Fail, Raiser, Src, get, reg_slot};
use crate::deps::network_dependency;
use crate::expr::{self as x, Raw, cmp};
use crate::fields::{NFPROTO_IPV4, NFPROTO_IPV6};
use crate::ir::*;
use crate::lower::reject_network;
use crate::types::{Datatype, be, padded};

impl Raiser<'_> {
    pub(super) fn cmp(&mut self, c: &x::Cmp, next: Option<&Raw>) -> Result<usize, Fail> {
        let src = self.src(c.sreg)?;
        let op = get(c.op, "cmp op")?;
        let data = c.data.clone().ok_or("cmp without data")?;
        let eqop = match op {
            cmp::EQ => Op::Eq,
            cmp::NEQ => Op::Neq,
            cmp::LT => Op::Lt,
            cmp::LTE => Op::Lte,
            cmp::GT => Op::Gt,
            cmp::GTE => Op::Gte,
            o => return Err(format!("cmp op {o}")),
        };
        if let Src::Masked(inner, mask) = &src {
            let e = self.full_expr(inner)?;
            let dt = e.datatype();
            let m = if eqop == Op::Neq && data.iter().all(|b| *b == 0) && dt.is_bitmask() {
                // ct state established,related
                Match {
                    left: e,
                    op: Op::Flags,
                    right: Rhs::Value(Self::value(dt, mask)?),
                }
            } else if let (Some(plen), Op::Eq | Op::Neq) = (be::mask_prefix(mask), eqop) {
                // ip saddr 10.16.0.0/12
                Match {
                    left: e,
                    op: eqop,
                    right: Rhs::Prefix(Self::value(dt, &data)?, plen),
                }
            } else {
                return Err("bitwise mask that is neither a prefix nor flags".into());
            };
            self.push_match(m);
            return Ok(1);
        }
        let converted = matches!(src, Src::Hton(_));
        let (e, short) = self.expr(&src)?;
        let dt = e.datatype();
        let val = |b: &[u8]| -> Result<Value, Fail> {
            if converted {
                Value::from_big_endian(dt, b).ok_or_else(|| "cmp data".to_string())
            } else {
                Self::value(dt, b)
            }
        };
        // tcp dport 1000-2000: cmp gte then cmp lte on the same register.
        if eqop == Op::Gte
            && let Some(Raw::Cmp(n)) = next
            && n.sreg == c.sreg
            && n.op == Some(cmp::LTE)
            && short.is_none()
        {
            let hi = n.data.clone().ok_or("cmp without data")?;
            let m = Match {
                left: e,
                op: Op::Eq,
                right: Rhs::Range(val(&data)?, val(&hi)?),
            };
            self.push_match(m);
            return Ok(2);
        }
        let right = match short {
            // ip saddr 10.0.0.0/8: a shortened load, compared over the prefix's bytes.
            Some(plen) => {
                let mut full = data.clone();
                full.resize(dt.size(), 0);
                Rhs::Prefix(Self::value(dt, &full)?, plen)
            }
            // iifname "br*": a name compared over its first bytes only.
            None if dt == Datatype::Ifname && data.len() < 16 && !data.contains(&0) => {
                Rhs::Prefix(Self::value(dt, &data)?, data.len() as u32 * 8)
            }
            None => Rhs::Value(val(&data)?),
        };
        self.push_match(Match {
            left: e,
            op: eqop,
            right,
        });
        Ok(1)
    }

    pub(super) fn lookup(&mut self, l: &x::Lookup) -> Result<(), Fail> {
        let name = l.set.clone().ok_or("lookup without a set")?;
        let set = self.set_decl(&name)?.clone();
        let key = self.key(reg_slot(l.sreg)?, &set.key)?;
        let sr = self.set_ref(&set);
        match l.dreg {
            None => {
                let op = if l.flags.unwrap_or(0) & 1 != 0 {
                    Op::Neq
                } else {
                    Op::Eq
                };
                self.push_match(Match {
                    left: key,
                    op,
                    right: Rhs::Set(sr),
                });
            }
            Some(0) => {
                self.swallow_for(&key);
                self.push(Stmt::Vmap(key, sr));
            }
            Some(r) => {
                let Some(SetData::Values(types)) = set.data.clone() else {
                    return Err("lookup into a register from a set without data".into());
                };
                let mut s = reg_slot(Some(r))?;
                for (part, t) in types.iter().enumerate() {
                    self.regs.insert(
                        s,
                        Src::MapData {
                            key: key.clone(),
                            set: sr.clone(),
                            types: types.clone(),
                            part,
                        },
                    );
                    s += (padded(t.size()) / 4) as u32;
                }
            }
        }
        Ok(())
    }

    pub(super) fn nat(&mut self, n: &x::Nat) -> Result<(), Fail> {
        let kind = match get(n.kind, "nat type")? {
            0 => NatKind::Snat,
            1 => NatKind::Dnat,
            k => return Err(format!("nat type {k}")),
        };
        let nfproto = get(n.family, "nat family")?;
        let (nf, addr_type) = match nfproto as u8 {
            NFPROTO_IPV4 => (NatFamily::Ip, Datatype::Ipv4Addr),
            NFPROTO_IPV6 => (NatFamily::Ip6, Datatype::Ipv6Addr),
            f => return Err(format!("nat family {f}")),
        };
        let raw_flags = n.flags.unwrap_or(0);
        if raw_flags & !(1 | 2 | nat::RANDOM | nat::PERSISTENT | nat::FULLY_RANDOM) != 0 {
            return Err(format!("nat flags {raw_flags:#x}"));
        }
        let flags = raw_flags & !3;
        if n.addr_max.is_some() && n.addr_max != n.addr_min {
            return Err("nat to an address range".into());
        }
        if n.proto_max.is_some() && n.proto_max != n.proto_min {
            return Err("nat to a port range".into());
        }
        let port = |r: &Self| -> Result<u16, Fail> {
            match r.src(n.proto_min)? {
                Src::Imm(p) => match Self::value(Datatype::InetService, &p)? {
                    Value::Port(p) => Ok(p),
                    _ => Err("nat port".into()),
                },
                _ => Err("nat port from an expression".into()),
            }
        };
        if n.addr_min.is_none() {
            // dnat ip to :8080
            let to = NatTo::Port(port(self)?);
            let family = (self.cx.family == Family::Inet).then_some(nf);
            self.push(Stmt::Nat(Nat {
                kind,
                family,
                to,
                flags,
            }));
            return Ok(());
        }
        let addr = self.src(n.addr_min)?;
        let (to, mapped) = match addr {
            Src::MapData {
                key,
                set,
                types,
                part: 0,
            } => {
                if types.first() != Some(&addr_type) {
                    return Err("nat map to other than addresses".into());
                }
                if types.len() == 2 {
                    // The port is the map's second component, in the register after the address.
                    match self.src(n.proto_min)? {
                        Src::MapData { part: 1, .. } => {}
                        _ => return Err("nat map port in another register".into()),
                    }
                } else if n.proto_min.is_some() {
                    return Err("nat map with a separate port".into());
                }
                self.swallow_for(&key);
                (NatTo::Map(key, set), true)
            }
            Src::Imm(b) => {
                let a = Self::value(addr_type, &b)?;
                match n.proto_min {
                    None => (NatTo::Addr(a), false),
                    Some(_) => (NatTo::AddrPort(a, port(self)?), false),
                }
            }
            _ => return Err("nat address from an expression".into()),
        };
        // nft names the family in inet tables, and always for maps.
        let family = (self.cx.family == Family::Inet || mapped).then_some(nf);
        self.push(Stmt::Nat(Nat {
            kind,
            family,
            to,
            flags,
        }));
        Ok(())
    }

    pub(super) fn ports(
        &self,
        min: Option<u32>,
        max: Option<u32>,
    ) -> Result<Option<(u16, u16)>, Fail> {
        let port = |r: Option<u32>| -> Result<u16, Fail> {
            match self.src(r)? {
                Src::Imm(b) => match Self::value(Datatype::InetService, &b)? {
                    Value::Port(p) => Ok(p),
                    _ => Err("port".into()),
                },
                _ => Err("port from an expression".into()),
            }
        };
        Ok(match (min, max) {
            (None, _) => None,
            (Some(_), Some(_)) if max != min => Some((port(min)?, port(max)?)),
            (Some(_), _) => {
                let p = port(min)?;
                Some((p, p))
            }
        })
    }

    /// `tcp dport != 1000-2000`: a range expression (nft writes `==` as two cmps).
    pub(super) fn range(&mut self, r: &x::Range) -> Result<(), Fail> {
        let src = self.src(r.sreg)?;
        if r.op != Some(1) {
            return Err("range ==".into());
        }
        let e = self.full_expr(&src)?;
        let dt = e.datatype();
        let from = r.from.clone().ok_or("range without from")?;
        let to = r.to.clone().ok_or("range without to")?;
        let conv = |b: &[u8]| Value::from_big_endian(dt, b).ok_or_else(|| "range data".to_string());
        let m = Match {
            left: e,
            op: Op::Neq,
            right: Rhs::Range(conv(&from)?, conv(&to)?),
        };
        self.push_match(m);
        Ok(())
    }

    /// `log prefix "x " level info`, or `log group 2` (which has no level or flags).
    pub(super) fn log(&mut self, l: &x::Log) -> Result<(), Fail> {
        if l.snaplen.is_some_and(|v| v != 0) || l.qthreshold.is_some_and(|v| v != 0) {
            return Err("log snaplen/queue-threshold".into());
        }
        self.push(Stmt::Log(Log {
            prefix: l.prefix.clone(),
            level: if l.group.is_some() {
                4
            } else {
                l.level.unwrap_or(4)
            },
            group: l.group,
            flags: if l.group.is_some() {
                0
            } else {
                l.flags.unwrap_or(0)
            },
        }));
        Ok(())
    }

    pub(super) fn reject(&mut self, r: &x::Reject) -> Result<(), Fail> {
        let code = r.code.unwrap_or(0);
        let rej = match get(r.kind, "reject type")? {
            1 => Reject::TcpReset,
            2 if code == 1 => Reject::Default,
            2 => Reject::Icmpx(code),
            0 => match (self.cx.family, self.pctx.network) {
                (Family::Ip, _) if code == 3 => Reject::Default,
                (Family::Ip6, _) if code == 4 => Reject::Default,
                (Family::Ip6, _) | (_, Some(NFPROTO_IPV6)) => Reject::Icmpv6(code),
                _ => Reject::Icmp(code),
            },
            k => return Err(format!("reject type {k}")),
        };
        if self.cx.family == Family::Inet
            && let Some(net) = reject_network(rej)
        {
            let dep = network_dependency(Family::Inet, net).unwrap_or_default();
            self.swallow(dep.into_iter().collect());
        }
        self.push(Stmt::Reject(rej));
        Ok(())
    }
}
