//! libnftnl's structural parse of the kernel's answers: a table, chain, rule, set or set
//! elements message into the plain values nsfw reads.

use anyhow::{Result, bail};
use nftnl::nftnl_sys as sys;
use std::ffi::CStr;

use super::super::elems::{KData, KElem};
use super::super::expr::Raw;
use super::super::ir::*;
use super::super::types::{NFT_DATA_VERDICT, split_type};
use super::super::udata;

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
pub struct RawRule {
    pub table: String,
    pub chain: String,
    pub handle: u64,
    pub exprs: Vec<Raw>,
    pub comment: Option<String>,
}

unsafe fn cstr_at(p: *const libc::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: libnftnl returns NUL-terminated strings it owns.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Bytes of a data attribute libnftnl holds (`get(obj, attr, &len)`).
unsafe fn bytes_at(p: *const libc::c_void, len: u32) -> Option<Vec<u8>> {
    // SAFETY: libnftnl's pointer is valid for `len` bytes while the object lives.
    (!p.is_null())
        .then(|| unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len as usize) }.to_vec())
}

fn comment_of(ud: Option<Vec<u8>>, ty: u8) -> Option<String> {
    ud.and_then(|u| udata::find_str(&u, ty))
}

/// Allocates a libnftnl object, parses `nlh` into it, reads it with `read`, frees it.
macro_rules! parse_with {
    ($alloc:ident, $parse:ident, $free:ident, $nlh:expr, $what:literal, |$o:ident| $read:block) => {{
        // SAFETY: libnftnl parses a complete message into an object allocated and freed here.
        unsafe {
            let $o = sys::$alloc();
            if $o.is_null() {
                bail!("out of memory");
            }
            if sys::$parse($nlh.cast(), $o) < 0 {
                sys::$free($o);
                bail!(concat!("cannot parse a ", $what, " from the kernel"));
            }
            // The closure gives `?` in `read` somewhere to return to that is not past the free.
            #[allow(clippy::redundant_closure_call)]
            let r = (|| -> Result<_> { $read })();
            sys::$free($o);
            r
        }
    }};
}

pub(super) fn parse_table(nlh: *const libc::nlmsghdr) -> Result<Option<TableInfo>> {
    parse_with!(
        nftnl_table_alloc,
        nftnl_table_nlmsg_parse,
        nftnl_table_free,
        nlh,
        "table",
        |t| {
            let fam = sys::nftnl_table_get_u32(t, sys::NFTNL_TABLE_FAMILY as u16);
            let mut len = 0u32;
            let ud = bytes_at(
                sys::nftnl_table_get_data(t, sys::NFTNL_TABLE_USERDATA as u16, &mut len),
                len,
            );
            Ok(Family::from_nfproto(fam).map(|family| TableInfo {
                family,
                name: cstr_at(sys::nftnl_table_get_str(t, sys::NFTNL_TABLE_NAME as u16)),
                dormant: sys::nftnl_table_get_u32(t, sys::NFTNL_TABLE_FLAGS as u16) & 1 != 0,
                comment: comment_of(ud, udata::COMMENT),
                handle: sys::nftnl_table_get_u64(t, sys::NFTNL_TABLE_HANDLE as u16),
            }))
        }
    )
}

pub(super) fn parse_chain(nlh: *const libc::nlmsghdr) -> Result<Option<ChainInfo>> {
    parse_with!(
        nftnl_chain_alloc,
        nftnl_chain_nlmsg_parse,
        nftnl_chain_free,
        nlh,
        "chain",
        |c| {
            let mut odd_base = None;
            let base = if sys::nftnl_chain_is_set(c, sys::NFTNL_CHAIN_HOOKNUM as u16) {
                let hook =
                    Hook::from_number(sys::nftnl_chain_get_u32(c, sys::NFTNL_CHAIN_HOOKNUM as u16));
                let ty = ChainType::from_name(&cstr_at(sys::nftnl_chain_get_str(
                    c,
                    sys::NFTNL_CHAIN_TYPE as u16,
                )));
                let policy = if sys::nftnl_chain_get_u32(c, sys::NFTNL_CHAIN_POLICY as u16)
                    == libc::NF_DROP as u32
                {
                    Policy::Drop
                } else {
                    Policy::Accept
                };
                match (hook, ty) {
                    (Some(hook), Some(ty)) => Some(Base {
                        ty,
                        hook,
                        priority: sys::nftnl_chain_get_s32(c, sys::NFTNL_CHAIN_PRIO as u16),
                        policy,
                    }),
                    _ => {
                        odd_base = Some(format!(
                            "a base chain of type {} on hook {} (nsfw cannot read it)",
                            cstr_at(sys::nftnl_chain_get_str(c, sys::NFTNL_CHAIN_TYPE as u16)),
                            sys::nftnl_chain_get_u32(c, sys::NFTNL_CHAIN_HOOKNUM as u16)
                        ));
                        None
                    }
                }
            } else {
                None
            };
            let mut len = 0u32;
            let ud = bytes_at(
                sys::nftnl_chain_get_data(c, sys::NFTNL_CHAIN_USERDATA as u16, &mut len),
                len,
            );
            Ok(Some(ChainInfo {
                table: cstr_at(sys::nftnl_chain_get_str(c, sys::NFTNL_CHAIN_TABLE as u16)),
                name: cstr_at(sys::nftnl_chain_get_str(c, sys::NFTNL_CHAIN_NAME as u16)),
                base,
                odd_base,
                comment: comment_of(ud, udata::COMMENT),
                handle: sys::nftnl_chain_get_u64(c, sys::NFTNL_CHAIN_HANDLE as u16),
            }))
        }
    )
}

pub(super) fn parse_rule(nlh: *const libc::nlmsghdr) -> Result<Option<RawRule>> {
    parse_with!(
        nftnl_rule_alloc,
        nftnl_rule_nlmsg_parse,
        nftnl_rule_free,
        nlh,
        "rule",
        |r| {
            let mut exprs = Vec::new();
            let it = sys::nftnl_expr_iter_create(r);
            if it.is_null() {
                bail!("out of memory");
            }
            loop {
                let e = sys::nftnl_expr_iter_next(it);
                if e.is_null() {
                    break;
                }
                exprs.push(Raw::from_nftnl(e));
            }
            sys::nftnl_expr_iter_destroy(it);
            let mut len = 0u32;
            let ud = bytes_at(
                sys::nftnl_rule_get_data(r, sys::NFTNL_RULE_USERDATA as u16, &mut len),
                len,
            );
            Ok(Some(RawRule {
                table: cstr_at(sys::nftnl_rule_get_str(r, sys::NFTNL_RULE_TABLE as u16)),
                chain: cstr_at(sys::nftnl_rule_get_str(r, sys::NFTNL_RULE_CHAIN as u16)),
                handle: sys::nftnl_rule_get_u64(r, sys::NFTNL_RULE_HANDLE as u16),
                exprs,
                comment: comment_of(ud, udata::COMMENT),
            }))
        }
    )
}

/// Collects the expressions libnftnl's foreach hands over (a set's or an element's).
unsafe extern "C" fn collect_expr(e: *mut sys::nftnl_expr, data: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `data` is the Vec the caller passed, alive for the whole foreach; `e` is live.
    unsafe {
        let v = &mut *data.cast::<Vec<Raw>>();
        v.push(Raw::from_nftnl(e));
    }
    0
}

/// The stateful expressions of a set's declaration (NFTA_SET_EXPR/EXPRESSIONS).
unsafe fn set_exprs(s: *const sys::nftnl_set) -> Vec<Raw> {
    let mut v: Vec<Raw> = Vec::new();
    // SAFETY: the set is live; the callback only pushes into `v`.
    unsafe {
        sys::nftnl_set_expr_foreach(s, Some(collect_expr), (&mut v as *mut Vec<Raw>).cast());
    }
    v
}

/// An element's counter (the one its set's `counter` gave it), if it has one.
unsafe fn elem_counter(e: *mut sys::nftnl_set_elem) -> Option<Counter> {
    let mut v: Vec<Raw> = Vec::new();
    // SAFETY: the element is live; the callback only pushes into `v`.
    unsafe {
        sys::nftnl_set_elem_expr_foreach(e, Some(collect_expr), (&mut v as *mut Vec<Raw>).cast());
    }
    v.into_iter().find_map(|r| match r {
        Raw::Counter(c) => Some(Counter {
            packets: c.packets.unwrap_or(0),
            bytes: c.bytes.unwrap_or(0),
        }),
        _ => None,
    })
}

/// A set as listed: its table, name, whether it is anonymous, and its declaration (no
/// elements yet) or why nsfw cannot read it.
pub(super) struct ListedSet {
    pub table: String,
    pub name: String,
    pub anonymous: bool,
    pub decl: std::result::Result<Set, String>,
}

pub(super) fn parse_set(nlh: *const libc::nlmsghdr) -> Result<Option<ListedSet>> {
    parse_with!(
        nftnl_set_alloc,
        nftnl_set_nlmsg_parse,
        nftnl_set_free,
        nlh,
        "set",
        |s| {
            let name = cstr_at(sys::nftnl_set_get_str(s, sys::NFTNL_SET_NAME as u16));
            let table = cstr_at(sys::nftnl_set_get_str(s, sys::NFTNL_SET_TABLE as u16));
            let flags = sys::nftnl_set_get_u32(s, sys::NFTNL_SET_FLAGS as u16);
            let listed = |decl| ListedSet {
                table: table.clone(),
                name: name.clone(),
                anonymous: flags & 1 != 0,
                decl,
            };
            let kt = sys::nftnl_set_get_u32(s, sys::NFTNL_SET_KEY_TYPE as u16);
            let Some(key) = split_type(kt) else {
                return Ok(Some(listed(Err(format!("key type {kt:#x}")))));
            };
            let data = if flags & 8 != 0 {
                let dt = sys::nftnl_set_get_u32(s, sys::NFTNL_SET_DATA_TYPE as u16);
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
            let timeout = sys::nftnl_set_is_set(s, sys::NFTNL_SET_TIMEOUT as u16)
                .then(|| sys::nftnl_set_get_u64(s, sys::NFTNL_SET_TIMEOUT as u16))
                .filter(|t| *t != 0);
            // A `counter` in the declaration is the one stateful expression nsfw reads.
            let exprs: Vec<String> = set_exprs(s).iter().map(|r| r.name().to_string()).collect();
            let counter = match exprs.as_slice() {
                [] => false,
                [c] if c == "counter" => true,
                _ => {
                    let what = format!("elements carrying {}", exprs.join(", "));
                    return Ok(Some(listed(Err(what))));
                }
            };
            let mut len = 0u32;
            let ud = bytes_at(
                sys::nftnl_set_get_data(s, sys::NFTNL_SET_USERDATA as u16, &mut len),
                len,
            );
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
                comment: comment_of(ud, udata::set::COMMENT),
                elements: Vec::new(),
            };
            Ok(Some(listed(Ok(set))))
        }
    )
}

/// An element as listed, with its counter when its set gives it one.
pub(super) type CountedElem = (KElem, Option<Counter>);

/// The elements of one message, each with its counter when it has one.
pub(super) fn parse_elems(nlh: *const libc::nlmsghdr) -> Result<Option<Vec<CountedElem>>> {
    parse_with!(
        nftnl_set_alloc,
        nftnl_set_elems_nlmsg_parse,
        nftnl_set_free,
        nlh,
        "set element",
        |s| {
            let mut out = Vec::new();
            let it = sys::nftnl_set_elems_iter_create(s);
            if it.is_null() {
                bail!("out of memory");
            }
            loop {
                let e = sys::nftnl_set_elems_iter_next(it);
                if e.is_null() {
                    break;
                }
                let get = |attr: u32| -> Option<Vec<u8>> {
                    let mut len = 0u32;
                    // A live element of the set being read.
                    if !sys::nftnl_set_elem_is_set(e, attr as u16) {
                        return None;
                    }
                    bytes_at(sys::nftnl_set_elem_get(e, attr as u16, &mut len), len)
                };
                let is = |attr: u32| sys::nftnl_set_elem_is_set(e, attr as u16);
                let data = if is(sys::NFTNL_SET_ELEM_VERDICT) {
                    let chain = is(sys::NFTNL_SET_ELEM_CHAIN).then(|| {
                        cstr_at(sys::nftnl_set_elem_get_str(
                            e,
                            sys::NFTNL_SET_ELEM_CHAIN as u16,
                        ))
                    });
                    Some(KData::Verdict(
                        sys::nftnl_set_elem_get_u32(e, sys::NFTNL_SET_ELEM_VERDICT as u16),
                        chain,
                    ))
                } else {
                    get(sys::NFTNL_SET_ELEM_DATA).map(KData::Value)
                };
                let counter = elem_counter(e);
                out.push((
                    KElem {
                        key: get(sys::NFTNL_SET_ELEM_KEY).unwrap_or_default(),
                        key_end: get(sys::NFTNL_SET_ELEM_KEY_END),
                        end: is(sys::NFTNL_SET_ELEM_FLAGS)
                            && sys::nftnl_set_elem_get_u32(e, sys::NFTNL_SET_ELEM_FLAGS as u16) & 1
                                != 0,
                        data,
                        timeout: is(sys::NFTNL_SET_ELEM_TIMEOUT).then(|| {
                            sys::nftnl_set_elem_get_u64(e, sys::NFTNL_SET_ELEM_TIMEOUT as u16)
                        }),
                        comment: comment_of(get(sys::NFTNL_SET_ELEM_USERDATA), udata::COMMENT),
                    },
                    counter,
                ));
            }
            sys::nftnl_set_elems_iter_destroy(it);
            Ok(Some(out))
        }
    )
}

/// The ruleset's generation from an NFT_MSG_NEWGEN message.
pub(super) fn parse_gen(nlh: *const libc::nlmsghdr) -> Result<Option<u32>> {
    parse_with!(
        nftnl_gen_alloc,
        nftnl_gen_nlmsg_parse,
        nftnl_gen_free,
        nlh,
        "ruleset generation",
        |g| {
            Ok(sys::nftnl_gen_is_set(g, sys::NFTNL_GEN_ID as u16)
                .then(|| sys::nftnl_gen_get_u32(g, sys::NFTNL_GEN_ID as u16)))
        }
    )
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

pub(super) fn parse_obj(nlh: *const libc::nlmsghdr) -> Result<Option<ObjInfo>> {
    parse_with!(
        nftnl_obj_alloc,
        nftnl_obj_nlmsg_parse,
        nftnl_obj_free,
        nlh,
        "named object",
        |o| {
            Ok(Some(ObjInfo {
                table: cstr_at(sys::nftnl_obj_get_str(o, sys::NFTNL_OBJ_TABLE as u16)),
                name: cstr_at(sys::nftnl_obj_get_str(o, sys::NFTNL_OBJ_NAME as u16)),
                kind: obj_kind(sys::nftnl_obj_get_u32(o, sys::NFTNL_OBJ_TYPE as u16)),
            }))
        }
    )
}
