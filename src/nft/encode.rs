//! The IR encoded through `nftnl` into one batch. Where `nftnl` falls short (table comments,
//! inserting a rule at the top of a chain) small message types over `nftnl-sys` fill in.

use std::ffi::{CStr, CString, c_void};
use std::os::raw::c_char;

use anyhow::{Result, anyhow};
use nftnl::expr::{Bitwise, Cmp, CmpOp, Conntrack, Masquerade, Meta, Payload};
use nftnl::nftnl_sys as sys;
use nftnl::{Batch, FinalizedBatch, MsgType, NlMsg, ProtoFamily};

use super::{Base, ChainType, Family, Hook, Match, Rule, Table, Verdict};

/// One change to the ruleset. A batch is a list of these, applied by the kernel all or nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Replaces (or creates) a whole table: add it (so the delete cannot fail), delete it, add
    /// it again with everything in it.
    ReplaceTable(Table),
    /// Deletes a table if it is there (added first, so the delete cannot fail).
    DeleteTable { family: Family, name: String },
    /// Deletes one rule, by handle, from another owner's chain.
    DeleteRule {
        family: Family,
        table: String,
        chain: String,
        handle: u64,
        what: String,
    },
    /// Inserts a rule at the top of another owner's chain.
    InsertRule {
        family: Family,
        table: String,
        chain: String,
        rule: Rule,
    },
}

fn proto(f: Family) -> ProtoFamily {
    match f {
        Family::Inet => ProtoFamily::Inet,
        Family::Ip => ProtoFamily::Ipv4,
    }
}

fn cstring(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| anyhow!("{what} {s:?} contains a NUL byte"))
}

/// An interface name as the kernel's `meta iifname` register holds it: IFNAMSIZ bytes,
/// zero-padded. This is how `nft` itself encodes `iifname "br0"`.
fn ifname_bytes(name: &str) -> [u8; 16] {
    let mut b = [0u8; 16];
    let n = name.len().min(15);
    b[..n].copy_from_slice(&name.as_bytes()[..n]);
    b
}

/// Adds the expressions of one match to `r`.
fn add_match(r: &mut nftnl::Rule<'_>, m: &Match) {
    match m {
        // iifname "br0"  /  iifname != "br0"
        Match::IifName { name, eq } | Match::OifName { name, eq } => {
            let key = if matches!(m, Match::IifName { .. }) {
                Meta::IifName
            } else {
                Meta::OifName
            };
            r.add_expr(&key);
            let op = if *eq { CmpOp::Eq } else { CmpOp::Neq };
            r.add_expr(&Cmp::new(op, &ifname_bytes(name)[..]));
        }
        // ct state established,related  →  ct load state; reg & mask; reg != 0
        Match::CtState(mask) => {
            r.add_expr(&Conntrack::State);
            r.add_expr(&Bitwise::new(*mask, 0u32));
            r.add_expr(&Cmp::new(CmpOp::Neq, 0u32));
        }
        // ip saddr 10.10.0.0/24  →  meta nfproto ipv4; payload ip saddr; reg & mask == net
        // (in an inet table the match needs its IPv4 dependency spelled out, as nft does)
        Match::Saddr(net) | Match::Daddr(net) => {
            r.add_expr(&Meta::NfProto);
            r.add_expr(&Cmp::new(CmpOp::Eq, libc::NFPROTO_IPV4 as u8));
            let field = if matches!(m, Match::Saddr(_)) {
                nftnl::expr::Ipv4HeaderField::Saddr
            } else {
                nftnl::expr::Ipv4HeaderField::Daddr
            };
            r.add_expr(&Payload::Network(nftnl::expr::NetworkHeaderField::Ipv4(
                field,
            )));
            if net.prefix() < 32 {
                r.add_expr(&Bitwise::new(net.mask(), 0u32));
            }
            r.add_expr(&Cmp::new(CmpOp::Eq, net.network()));
        }
        // tcp dport 22  →  meta l4proto tcp; payload th dport (2 bytes at offset 2) == 22
        Match::Port { proto, dport, port } => {
            r.add_expr(&Meta::L4Proto);
            r.add_expr(&Cmp::new(CmpOp::Eq, *proto));
            // Ports sit at the same offsets in TCP and UDP headers: 0 source, 2 destination.
            let field = if *dport {
                nftnl::expr::TcpHeaderField::Dport
            } else {
                nftnl::expr::TcpHeaderField::Sport
            };
            r.add_expr(&Payload::Transport(nftnl::expr::TransportHeaderField::Tcp(
                field,
            )));
            r.add_expr(&Cmp::new(CmpOp::Eq, &port.to_be_bytes()[..]));
        }
    }
}

fn add_verdict(r: &mut nftnl::Rule<'_>, v: &Verdict) -> Result<()> {
    match v {
        Verdict::Accept => r.add_expr(&nftnl::expr::Verdict::Accept),
        Verdict::Drop => r.add_expr(&nftnl::expr::Verdict::Drop),
        Verdict::Jump(c) => r.add_expr(&nftnl::expr::Verdict::Jump {
            chain: cstring(c, "chain")?,
        }),
        Verdict::Masquerade => r.add_expr(&Masquerade),
    }
    Ok(())
}

/// Builds the nftnl rule for `rule` in `chain`.
fn build_rule<'a>(chain: &'a nftnl::Chain<'a>, rule: &Rule) -> Result<nftnl::Rule<'a>> {
    let mut r = nftnl::Rule::new(chain);
    for m in &rule.matches {
        add_match(&mut r, m);
    }
    add_verdict(&mut r, &rule.verdict)?;
    if let Some(c) = &rule.comment {
        r.set_comment(cstring(c, "comment")?)
            .map_err(|e| anyhow!("rule comment {c:?}: {e}"))?;
    }
    Ok(r)
}

fn set_base(c: &mut nftnl::Chain<'_>, b: &Base) {
    let hook = match b.hook {
        Hook::Forward => nftnl::Hook::Forward,
        Hook::Postrouting => nftnl::Hook::PostRouting,
    };
    c.set_hook(hook, b.priority);
    c.set_type(match b.ty {
        ChainType::Filter => nftnl::ChainType::Filter,
        ChainType::Nat => nftnl::ChainType::Nat,
    });
    c.set_policy(if b.policy_accept {
        nftnl::Policy::Accept
    } else {
        nftnl::Policy::Drop
    });
}

/// A table message that can carry a comment (NFTA_TABLE_USERDATA), which `nftnl::Table`
/// cannot set. The comment is nsfw's ownership mark on its tables.
struct TableMsg {
    family: Family,
    name: CString,
    comment: Option<CString>,
}

/// NFTNL_UDATA_TABLE_COMMENT (and NFTNL_UDATA_RULE_COMMENT): type 0 in the TLV userdata.
const UDATA_COMMENT: u8 = 0;

/// Userdata holding one comment TLV, as nft writes it: type, length, the string with its NUL.
pub fn comment_udata(c: &CStr) -> Vec<u8> {
    let bytes = c.to_bytes_with_nul();
    let len = bytes.len().min(255);
    let mut v = vec![UDATA_COMMENT, len as u8];
    v.extend_from_slice(&bytes[..len]);
    v
}

/// Reads the comment TLV out of table or rule userdata.
pub fn parse_comment(udata: &[u8]) -> Option<String> {
    let mut rest = udata;
    while rest.len() >= 2 {
        let (ty, len) = (rest[0], usize::from(rest[1]));
        let val = rest.get(2..2 + len)?;
        if ty == UDATA_COMMENT {
            let s = val.strip_suffix(&[0]).unwrap_or(val);
            return Some(String::from_utf8_lossy(s).into_owned());
        }
        rest = &rest[2 + len..];
    }
    None
}

// SAFETY: `write` fills `buf`, which the batch sizes for the largest nf_tables message.
unsafe impl NlMsg for TableMsg {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, msg_type: MsgType) {
        let ty = match msg_type {
            MsgType::Add => libc::NFT_MSG_NEWTABLE,
            MsgType::Del => libc::NFT_MSG_DELTABLE,
        };
        // SAFETY: plain libnftnl calls on an object we allocate and free here.
        unsafe {
            let t = sys::nftnl_table_alloc();
            if t.is_null() {
                return;
            }
            sys::nftnl_table_set_u32(t, sys::NFTNL_TABLE_FAMILY as u16, proto(self.family) as u32);
            sys::nftnl_table_set_str(t, sys::NFTNL_TABLE_NAME as u16, self.name.as_ptr());
            if let (Some(c), MsgType::Add) = (&self.comment, msg_type) {
                let ud = comment_udata(c);
                sys::nftnl_table_set_data(
                    t,
                    sys::NFTNL_TABLE_USERDATA as u16,
                    ud.as_ptr().cast(),
                    ud.len() as u32,
                );
            }
            let hdr = sys::nftnl_nlmsg_build_hdr(
                buf.cast::<c_char>(),
                ty as u16,
                proto(self.family) as u16,
                (libc::NLM_F_CREATE | libc::NLM_F_ACK) as u16,
                seq,
            );
            sys::nftnl_table_nlmsg_build_payload(hdr, t);
            sys::nftnl_table_free(t);
        }
    }
}

/// A rule added at the top of its chain: the message nftnl writes, less NLM_F_APPEND
/// (a NEWRULE with neither APPEND nor a position is inserted first, as `iptables -I` does).
struct InsertFirst<'a>(nftnl::Rule<'a>);

// SAFETY: delegates to nftnl's own writer, then edits the header it wrote.
unsafe impl NlMsg for InsertFirst<'_> {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, msg_type: MsgType) {
        // SAFETY: same contract as ours; nftnl writes a complete nlmsghdr at `buf`.
        unsafe {
            self.0.write(buf, seq, msg_type);
            let hdr = buf.cast::<libc::nlmsghdr>();
            (*hdr).nlmsg_flags &= !(libc::NLM_F_APPEND as u16);
        }
    }
}

/// A batch and, for each message in it, what it concerns (to name the object of an error).
pub struct Encoded {
    pub batch: FinalizedBatch,
    pub what: Vec<String>,
}

/// Encodes `ops` into one batch.
pub fn batch(ops: &[Op]) -> Result<Encoded> {
    let mut b = Batch::new();
    let mut what = Vec::new();
    for op in ops {
        match op {
            Op::ReplaceTable(t) => {
                let tname = cstring(&t.name, "table")?;
                let label = format!("table {} {}", t.family.as_str(), t.name);
                let msg = |comment: Option<CString>| TableMsg {
                    family: t.family,
                    name: tname.clone(),
                    comment,
                };
                let comment = t
                    .comment
                    .as_deref()
                    .map(|c| cstring(c, "comment"))
                    .transpose()?;
                b.add(&msg(comment.clone()), MsgType::Add);
                what.push(label.clone());
                b.add(&msg(None), MsgType::Del);
                what.push(label.clone());
                b.add(&msg(comment), MsgType::Add);
                what.push(label.clone());
                let table = nftnl::Table::new(&tname, proto(t.family));
                for c in &t.chains {
                    let cname = cstring(&c.name, "chain")?;
                    let mut chain = nftnl::Chain::new(&cname, &table);
                    if let Some(base) = &c.base {
                        set_base(&mut chain, base);
                    }
                    b.add(&chain, MsgType::Add);
                    what.push(format!("{label} chain {}", c.name));
                }
                // Rules after every chain: a jump needs its target to exist.
                for c in &t.chains {
                    let cname = cstring(&c.name, "chain")?;
                    let chain = nftnl::Chain::new(&cname, &table);
                    for r in &c.rules {
                        b.add(&build_rule(&chain, r)?, MsgType::Add);
                        what.push(format!("{label} chain {} rule `{r}`", c.name));
                    }
                }
            }
            Op::DeleteTable { family, name } => {
                let label = format!("table {} {name}", family.as_str());
                let msg = TableMsg {
                    family: *family,
                    name: cstring(name, "table")?,
                    comment: None,
                };
                b.add(&msg, MsgType::Add);
                what.push(label.clone());
                b.add(&msg, MsgType::Del);
                what.push(label);
            }
            Op::DeleteRule {
                family,
                table,
                chain,
                handle,
                what: w,
            } => {
                let tname = cstring(table, "table")?;
                let t = nftnl::Table::new(&tname, proto(*family));
                let cname = cstring(chain, "chain")?;
                let c = nftnl::Chain::new(&cname, &t);
                let mut r = nftnl::Rule::new(&c);
                r.set_handle(*handle);
                b.add(&r, MsgType::Del);
                what.push(format!(
                    "table {} {table} chain {chain} rule handle {handle} ({w})",
                    family.as_str()
                ));
            }
            Op::InsertRule {
                family,
                table,
                chain,
                rule,
            } => {
                let tname = cstring(table, "table")?;
                let t = nftnl::Table::new(&tname, proto(*family));
                let cname = cstring(chain, "chain")?;
                let c = nftnl::Chain::new(&cname, &t);
                b.add(&InsertFirst(build_rule(&c, rule)?), MsgType::Add);
                what.push(format!(
                    "table {} {table} chain {chain} rule `{rule}`",
                    family.as_str()
                ));
            }
        }
    }
    Ok(Encoded {
        batch: b.finalize(),
        what,
    })
}

/// The canonical form of a rule's expressions, for comparing a desired rule with one dumped
/// from the kernel: the rule is written as the netlink message nsfw would send, parsed back,
/// and printed by libnftnl, exactly as a dumped rule is.
pub fn rule_exprs(family: Family, table: &str, chain: &str, rule: &Rule) -> Result<String> {
    let tname = cstring(table, "table")?;
    let t = nftnl::Table::new(&tname, proto(family));
    let cname = cstring(chain, "chain")?;
    let c = nftnl::Chain::new(&cname, &t);
    let r = build_rule(&c, rule)?;
    let mut buf = super::netlink::AlignedBuf::new(nftnl::nft_nlmsg_maxsize() as usize);
    // SAFETY: the buffer holds the largest nf_tables message.
    unsafe { r.write(buf.as_mut_ptr().cast(), 0, MsgType::Add) };
    // SAFETY: a complete message was just written at the start of the buffer.
    let parsed = unsafe { super::netlink::parse_rule(buf.as_ptr().cast()) };
    parsed.map(|p| p.exprs)
}
