//! Statements other than matches, lowered the way nft 1.0.6 writes them.

use anyhow::{Result, anyhow, bail};

use super::{Out, reg, space};
use crate::deps::ProtoCtx;
use crate::expr::{self as x, Raw, verdict};
use crate::fields::{NFPROTO_IPV4, NFPROTO_IPV6};
use crate::ir::*;

impl Out<'_, '_> {
    pub(super) fn lower_stmt(&mut self, s: &Stmt, pctx: &ProtoCtx) -> Result<()> {
        match s {
            Stmt::Match(m) => self.lower_match(m)?,
            // counter  →  counter (nft sends no numbers for a fresh one)
            Stmt::Counter(c) => self.push(Raw::Counter(x::Counter {
                packets: (c.packets != 0).then_some(c.packets),
                bytes: (c.bytes != 0).then_some(c.bytes),
            })),
            // log prefix "x " level info  →  log with prefix and level; with a group (nflog),
            // no level or flags: nft sends the group instead
            Stmt::Log(l) => self.push(Raw::Log(x::Log {
                prefix: l.prefix.clone(),
                group: l.group,
                level: l.group.is_none().then_some(l.level),
                flags: (l.group.is_none() && l.flags != 0).then_some(l.flags),
                ..Default::default()
            })),
            // limit rate over 10/second burst 20 packets  →  limit rate 10 unit 1 burst 20
            // type packets flags inverted (nft always sends the flags)
            Stmt::Limit(l) => self.push(Raw::Limit(x::Limit {
                rate: Some(l.rate),
                unit: Some(l.per),
                burst: (l.burst > 0).then_some(l.burst),
                kind: Some(u32::from(l.bytes)),
                flags: Some(u32::from(l.over)),
            })),
            Stmt::Reject(r) => self.lower_reject(*r, pctx)?,
            // meta mark set 0x1  →  immediate reg 1 0x1; meta set mark with reg 1
            Stmt::MetaSet(k, arg) => {
                self.lower_arg(arg)?;
                self.push(Raw::Meta(x::Meta {
                    key: Some(k.number()),
                    dreg: None,
                    sreg: Some(reg(0)),
                }));
            }
            // ct mark set meta mark  →  meta load mark => reg 1; ct set mark with reg 1
            Stmt::CtSet(k, arg) => {
                self.lower_arg(arg)?;
                self.push(Raw::Ct(x::Ct {
                    key: Some(k.number()),
                    sreg: Some(reg(0)),
                    ..Default::default()
                }));
            }
            Stmt::Notrack => self.push(Raw::Notrack(x::Notrack {})),
            Stmt::Nat(n) => self.lower_nat(n)?,
            Stmt::Masquerade(p) => self.lower_port_nat(p, true, pctx)?,
            Stmt::Redirect(p) => self.lower_port_nat(p, false, pctx)?,
            // accept / jump x  →  immediate reg 0 accept / jump -> x
            Stmt::Verdict(v) => self.push(verdict_expr(v)),
            // iifname . oifname vmap @dispatch  →  key in reg 1 and reg 2; lookup with the
            // verdict register as destination
            Stmt::Vmap(key, sr) => {
                let (name, id) = self.set_ref(key, sr, Some(SetData::Verdict))?;
                self.push(Raw::Lookup(x::Lookup {
                    sreg: Some(reg(0)),
                    dreg: Some(0),
                    set: Some(name),
                    set_id: id,
                    flags: None,
                }));
            }
            Stmt::Unreadable(t) => bail!("cannot encode an unreadable statement: {t}"),
        }
        Ok(())
    }

    // reject  →  reject with the family's port unreachable: icmp code 3 (ip),
    // icmpv6 code 4 (ip6), icmpx code 1 (inet, bridge); `with tcp reset` → type 1
    fn lower_reject(&mut self, r: Reject, pctx: &ProtoCtx) -> Result<()> {
        let (kind, code) = match r {
            Reject::Default => match self.cx.family {
                Family::Ip => (0, Some(3)),
                Family::Ip6 => (0, Some(4)),
                Family::Inet | Family::Bridge | Family::Netdev => (2, Some(1)),
            },
            Reject::Icmp(c) | Reject::Icmpv6(c) => (0, Some(c)),
            Reject::Icmpx(c) => (2, Some(c)),
            Reject::TcpReset => {
                if pctx.transport != Some(6) {
                    bail!(
                        "reject with tcp reset needs a match on TCP before it (`meta l4proto tcp`)"
                    );
                }
                (1, None)
            }
        };
        self.push(Raw::Reject(x::Reject {
            kind: Some(kind),
            code,
        }));
        Ok(())
    }

    // meta l4proto tcp masquerade to :1024-2048 random  →  immediate reg 1 1024;
    // immediate reg 2 2048; masq proto_min reg 1 proto_max reg 2 flags random|proto
    // (redirect likewise)
    fn lower_port_nat(&mut self, p: &PortNat, masq: bool, pctx: &ProtoCtx) -> Result<()> {
        if p.ports.is_some() && pctx.transport.is_none() {
            bail!(
                "{} to a port needs a transport protocol match before it (`meta l4proto tcp`)",
                if masq { "masquerade" } else { "redirect" }
            );
        }
        let (min, max) = self.ports(p.ports);
        let flags = p.flags | if p.ports.is_some() { 2 } else { 0 };
        let flags = (flags != 0).then_some(flags);
        self.push(if masq {
            Raw::Masq(x::Masq {
                flags,
                proto_min: min,
                proto_max: max,
            })
        } else {
            Raw::Redir(x::Redir {
                proto_min: min,
                proto_max: max,
                flags,
            })
        });
        Ok(())
    }

    /// Port immediates: the first port in slot 0, a different last port in slot 4.
    pub(super) fn ports(&mut self, ports: Option<(u16, u16)>) -> (Option<u32>, Option<u32>) {
        match ports {
            None => (None, None),
            Some((a, b)) => {
                self.imm(0, a.to_be_bytes().to_vec());
                if a == b {
                    (Some(reg(0)), None)
                } else {
                    self.imm(4, b.to_be_bytes().to_vec());
                    (Some(reg(0)), Some(reg(4)))
                }
            }
        }
    }

    pub(super) fn lower_arg(&mut self, arg: &Arg) -> Result<()> {
        match arg {
            Arg::Value(v) => self.imm(0, v.bytes()),
            Arg::Expr(e) => self.load(e, 0, None)?,
        }
        Ok(())
    }

    // dnat ip to 10.0.0.1:80  →  immediate reg 1 addr; immediate reg 2 port; nat
    // dnat ip to meta l4proto . th dport map @pub4  →  key in reg 1, reg 9; lookup into reg 1
    //   (address) and reg 9 (port); nat with addr reg 1, proto reg 9
    pub(super) fn lower_nat(&mut self, n: &Nat) -> Result<()> {
        let nfproto = match (n.family, self.cx.family) {
            (Some(NatFamily::Ip), _) | (None, Family::Ip) => NFPROTO_IPV4,
            (Some(NatFamily::Ip6), _) | (None, Family::Ip6) => NFPROTO_IPV6,
            (None, f) => bail!(
                "snat/dnat in a table of family {} needs `ip` or `ip6`",
                f.as_str()
            ),
        };
        let addr_len = if nfproto == NFPROTO_IPV4 { 4 } else { 16 };
        let mut raw = x::Nat {
            kind: Some(match n.kind {
                NatKind::Snat => 0,
                NatKind::Dnat => 1,
            }),
            family: Some(u32::from(nfproto)),
            ..Default::default()
        };
        let mut flags = n.flags;
        match &n.to {
            NatTo::Addr(v) => {
                self.imm(0, v.bytes());
                raw.addr_min = Some(reg(0));
                flags |= 1;
            }
            NatTo::Port(p) => {
                self.imm(0, p.to_be_bytes().to_vec());
                raw.proto_min = Some(reg(0));
                flags |= 2;
            }
            NatTo::AddrPort(v, p) => {
                self.imm(0, v.bytes());
                self.imm(4, p.to_be_bytes().to_vec());
                raw.addr_min = Some(reg(0));
                raw.proto_min = Some(reg(4));
                flags |= 3;
            }
            NatTo::Map(key, sr) => {
                let data = self
                    .map_data(sr)
                    .ok_or_else(|| anyhow!("the map of a nat statement must map to addresses"))?;
                let SetData::Values(types) = &data else {
                    bail!("a nat map cannot be a verdict map");
                };
                let (name, id) = self.set_ref(key, sr, Some(data.clone()))?;
                self.push(Raw::Lookup(x::Lookup {
                    sreg: Some(reg(0)),
                    dreg: Some(reg(0)),
                    set: Some(name),
                    set_id: id,
                    flags: None,
                }));
                raw.addr_min = Some(reg(0));
                flags |= 1;
                if types.len() == 2 {
                    raw.proto_min = Some(reg(space(addr_len)));
                    flags |= 2;
                }
            }
        }
        raw.flags = Some(flags);
        self.push(Raw::Nat(raw));
        Ok(())
    }
}

/// `accept` → immediate reg 0 accept; `jump x` → immediate reg 0 jump -> x
fn verdict_expr(v: &Verdict) -> Raw {
    let (code, chain) = verdict_code(v);
    Raw::Immediate(x::Immediate {
        dreg: Some(0),
        data: None,
        verdict: Some(code),
        chain,
    })
}

pub fn verdict_code(v: &Verdict) -> (u32, Option<String>) {
    match v {
        Verdict::Accept => (verdict::ACCEPT, None),
        Verdict::Drop => (verdict::DROP, None),
        Verdict::Continue => (verdict::CONTINUE, None),
        Verdict::Return => (verdict::RETURN, None),
        Verdict::Jump(c) => (verdict::JUMP, Some(c.clone())),
        Verdict::Goto(c) => (verdict::GOTO, Some(c.clone())),
    }
}
