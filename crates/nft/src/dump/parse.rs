//! libnftnl's structural parse of the kernel's answers: a table, chain, rule, set or set
//! elements message into the plain values nsfw reads.

use anyhow::Result;

use super::elemmsg::{self, CountedElem};
use crate::expr::Raw;
use crate::ffi::{self, Nlmsg};
use crate::ir::*;
use crate::types::{Datatype, NFT_DATA_VERDICT, split_type};
use crate::udata;

/// A table as the kernel lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableInfo {
    pub family: Family,
    pub name: String,
    pub dormant: bool,
    pub comment: Option<String>,
    pub handle: u64,
}

/// A chain as the kernel lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainInfo {
    pub table: String,
    pub name: String,
    pub base: Option<Base>,
    /// A base chain on a hook or of a type the IR does not know, described.
    pub odd_base: Option<String>,
    pub comment: Option<String>,
    pub handle: u64,
}

/// A rule's expressions as the kernel holds them.
#[derive(Clone, Debug)]
pub(crate) struct RawRule {
    pub table: String,
    pub chain: String,
    pub handle: u64,
    pub exprs: Vec<Raw>,
    pub comment: Option<String>,
}

fn comment_of(ud: Option<Vec<u8>>, ty: u8) -> Option<String> {
    ud.and_then(|u| udata::find_str(&u, ty))
}

pub(super) fn parse_table(m: &Nlmsg<'_>) -> Result<Option<TableInfo>> {
    let t = ffi::Table::parse(m, "table")?;
    let fam = t.u32(ffi::NFTNL_TABLE_FAMILY);
    Ok(Family::from_nfproto(fam).map(|family| TableInfo {
        family,
        name: t.str(ffi::NFTNL_TABLE_NAME),
        dormant: t.u32(ffi::NFTNL_TABLE_FLAGS) & 1 != 0,
        comment: comment_of(t.data(ffi::NFTNL_TABLE_USERDATA), udata::COMMENT),
        handle: t.u64(ffi::NFTNL_TABLE_HANDLE),
    }))
}

pub(super) fn parse_chain(m: &Nlmsg<'_>) -> Result<Option<ChainInfo>> {
    let c = ffi::Chain::parse(m, "chain")?;
    let mut odd_base = None;
    let base = if c.is_set(ffi::NFTNL_CHAIN_HOOKNUM) {
        let n = c.u32(ffi::NFTNL_CHAIN_HOOKNUM);
        let hook = if c.u32(ffi::NFTNL_CHAIN_FAMILY) == u32::from(Family::Netdev.nfproto()) {
            crate::ir::Device::new(&c.str(ffi::NFTNL_CHAIN_DEV)).and_then(|d| Hook::netdev(n, d))
        } else {
            Hook::from_number(n)
        };
        let ty = ChainType::from_name(&c.str(ffi::NFTNL_CHAIN_TYPE));
        let policy = if c.u32(ffi::NFTNL_CHAIN_POLICY) == libc::NF_DROP as u32 {
            Policy::Drop
        } else {
            Policy::Accept
        };
        match (hook, ty) {
            (Some(hook), Some(ty)) => Some(Base {
                ty,
                hook,
                priority: c.i32(ffi::NFTNL_CHAIN_PRIO),
                policy,
            }),
            _ => {
                odd_base = Some(format!(
                    "a base chain of type {} on hook {} (nsfw cannot read it)",
                    c.str(ffi::NFTNL_CHAIN_TYPE),
                    c.u32(ffi::NFTNL_CHAIN_HOOKNUM)
                ));
                None
            }
        }
    } else {
        None
    };
    Ok(Some(ChainInfo {
        table: c.str(ffi::NFTNL_CHAIN_TABLE),
        name: c.str(ffi::NFTNL_CHAIN_NAME),
        base,
        odd_base,
        comment: comment_of(c.data(ffi::NFTNL_CHAIN_USERDATA), udata::COMMENT),
        handle: c.u64(ffi::NFTNL_CHAIN_HANDLE),
    }))
}

pub(super) fn parse_rule(m: &Nlmsg<'_>) -> Result<Option<RawRule>> {
    let r = ffi::Rule::parse(m, "rule")?;
    let exprs = r.exprs()?.iter().map(|e| Raw::from_nftnl(e)).collect();
    Ok(Some(RawRule {
        table: r.str(ffi::NFTNL_RULE_TABLE),
        chain: r.str(ffi::NFTNL_RULE_CHAIN),
        handle: r.u64(ffi::NFTNL_RULE_HANDLE),
        exprs,
        comment: comment_of(r.data(ffi::NFTNL_RULE_USERDATA), udata::COMMENT),
    }))
}

/// Whether a set's declaration has `counter`, the one stateful expression nsfw reads; Err
/// names the others.
fn set_counter(s: &ffi::Set) -> std::result::Result<bool, String> {
    let exprs: Vec<String> = s.exprs().iter().map(|e| e.name().to_string()).collect();
    match exprs.as_slice() {
        [] => Ok(false),
        [c] if c == "counter" => Ok(true),
        _ => Err(format!("elements carrying {}", exprs.join(", "))),
    }
}

/// A set as listed: its table, name, whether it is anonymous, and its declaration (no
/// elements yet) or why nsfw cannot read it.
pub(super) struct ListedSet {
    pub table: String,
    pub name: String,
    pub anonymous: bool,
    pub decl: std::result::Result<Set, String>,
}

pub(super) fn parse_set(m: &Nlmsg<'_>) -> Result<Option<ListedSet>> {
    let s = ffi::Set::parse(m, "set")?;
    let name = s.str(ffi::NFTNL_SET_NAME);
    let table = s.str(ffi::NFTNL_SET_TABLE);
    let flags = s.u32(ffi::NFTNL_SET_FLAGS);
    let listed = |decl| ListedSet {
        table: table.clone(),
        name: name.clone(),
        anonymous: flags & 1 != 0,
        decl,
    };
    let kt = s.u32(ffi::NFTNL_SET_KEY_TYPE);
    let Some(mut key) = split_type(kt) else {
        return Ok(Some(listed(Err(format!("key type {kt:#x}")))));
    };
    // An `integer` component of 3 bytes (the field lengths say) is a VNI.
    if key.len() > 1
        && let Some(lens) = s.data(ffi::NFTNL_SET_DESC_CONCAT)
    {
        for (k, len) in key.iter_mut().zip(lens.iter()) {
            if *k == Datatype::Integer16 && *len == 3 {
                *k = Datatype::Bits24;
            }
        }
    }
    let data = if flags & 8 != 0 {
        let dt = s.u32(ffi::NFTNL_SET_DATA_TYPE);
        Some(if dt == NFT_DATA_VERDICT {
            SetData::Verdict
        } else if let Some(d) = split_type(dt) {
            SetData::Values(d)
        } else {
            return Ok(Some(listed(Err(format!("data type {dt:#x}")))));
        })
    } else {
        None
    };
    if flags & 0x40 != 0 {
        return Ok(Some(listed(Err("a map to stateful objects".into()))));
    }
    let timeout = s
        .is_set(ffi::NFTNL_SET_TIMEOUT)
        .then(|| s.u64(ffi::NFTNL_SET_TIMEOUT))
        .filter(|t| *t != 0);
    let counter = match set_counter(&s) {
        Ok(c) => c,
        Err(what) => return Ok(Some(listed(Err(what)))),
    };
    let set = Set {
        name: name.clone(),
        key,
        data,
        flags: SetFlags {
            constant: flags & 2 != 0,
            interval: flags & 4 != 0,
            timeout: flags & 0x10 != 0,
            counter,
        },
        timeout,
        comment: comment_of(s.data(ffi::NFTNL_SET_USERDATA), udata::set::COMMENT),
        elements: Vec::new(),
    };
    Ok(Some(listed(Ok(set))))
}

/// The elements of one message, each with its counter when it has one: read natively
/// (`elemmsg`); debug builds (the tests') hold that reader to libnftnl's on every message.
pub(super) fn parse_elems(m: &Nlmsg<'_>) -> Result<Option<Vec<CountedElem>>> {
    let fast = elemmsg::parse(m.payload()).map_err(|why| {
        anyhow::anyhow!("cannot parse a set element message from the kernel: {why}")
    })?;
    #[cfg(debug_assertions)]
    super::elemref::check(m, &fast)?;
    Ok(Some(fast))
}

/// The ruleset's generation from an NFT_MSG_NEWGEN message.
pub(super) fn parse_gen(m: &Nlmsg<'_>) -> Result<Option<u32>> {
    let g = ffi::Gen::parse(m, "ruleset generation")?;
    Ok(g.is_set(ffi::NFTNL_GEN_ID)
        .then(|| g.u32(ffi::NFTNL_GEN_ID)))
}

/// A named stateful object (counter, quota, limit, ct helper, ...) as the kernel lists it:
/// nsfw makes none, so it reads only what names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjInfo {
    pub table: String,
    pub name: String,
    /// `counter`, `quota`, ... as nft writes the declaration.
    pub kind: String,
}

/// nft's keyword for object type `ty` (NFT_OBJECT_*).
fn obj_kind(ty: u32) -> String {
    match ty {
        1 => "counter".into(),
        2 => "quota".into(),
        3 => "ct helper".into(),
        4 => "limit".into(),
        5 => "connlimit".into(),
        6 => "tunnel".into(),
        7 => "ct timeout".into(),
        8 => "secmark".into(),
        9 => "ct expectation".into(),
        10 => "synproxy".into(),
        n => format!("object (type {n})"),
    }
}

pub(super) fn parse_obj(m: &Nlmsg<'_>) -> Result<Option<ObjInfo>> {
    let o = ffi::NamedObj::parse(m, "named object")?;
    Ok(Some(ObjInfo {
        table: o.str(ffi::NFTNL_OBJ_TABLE),
        name: o.str(ffi::NFTNL_OBJ_NAME),
        kind: obj_kind(o.u32(ffi::NFTNL_OBJ_TYPE)),
    }))
}
