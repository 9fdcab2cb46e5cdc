//! Reading the ruleset back: tables, chains, sets with their elements and rules, parsed by
//! libnftnl's structural getters (never its debug text) and decoded into the IR.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};

use anyhow::{Result, anyhow, bail};
use nftnl::nftnl_sys as sys;

use super::elems::{KData, KElem, from_kernel};
use super::expr::Raw;
use super::ir::*;
use super::raise::{RaiseCtx, is_anonymous, raise_rule, xt_comment};
use super::socket::NftSocket;
use super::types::{NFT_DATA_VERDICT, split_type};
use super::udata;

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

/// A decoded rule of some chain, with its handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KRule {
    pub chain: String,
    pub handle: u64,
    pub rule: Rule,
}

/// The sets of a table: (set with its elements, anonymous?), and those nsfw cannot read.
#[derive(Clone, Debug, Default)]
pub struct TableSets {
    pub sets: Vec<(Set, bool)>,
    pub unreadable: Vec<String>,
}

/// A whole table read back: the IR, and the handle of every rule (by chain, in rule order).
#[derive(Clone, Debug, Default)]
pub struct Dumped {
    pub table: Table,
    pub handles: BTreeMap<String, Vec<u64>>,
    /// What the table holds that the IR cannot: sets of unknown types, chains on unknown
    /// hooks. Such a table never equals a desired one.
    pub unreadable: Vec<String>,
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

fn parse_table(nlh: *const libc::nlmsghdr) -> Result<Option<TableInfo>> {
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

fn parse_chain(nlh: *const libc::nlmsghdr) -> Result<Option<ChainInfo>> {
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

fn parse_rule(nlh: *const libc::nlmsghdr) -> Result<Option<RawRule>> {
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

/// A set as listed: its table, name, whether it is anonymous, and its declaration (no
/// elements yet) or why nsfw cannot read it.
struct ListedSet {
    table: String,
    name: String,
    anonymous: bool,
    decl: std::result::Result<Set, String>,
}

fn parse_set(nlh: *const libc::nlmsghdr) -> Result<Option<ListedSet>> {
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
                },
                timeout,
                comment: comment_of(ud, udata::set::COMMENT),
                elements: Vec::new(),
            };
            Ok(Some(listed(Ok(set))))
        }
    )
}

fn parse_elems(nlh: *const libc::nlmsghdr) -> Result<Option<Vec<KElem>>> {
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
                out.push(KElem {
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
                });
            }
            sys::nftnl_set_elems_iter_destroy(it);
            Ok(Some(out))
        }
    )
}

fn cname(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| anyhow!("{what} name {s:?}"))
}

impl NftSocket {
    /// Every table of every family nsfw knows.
    pub fn tables(&mut self) -> Result<Vec<TableInfo>> {
        self.dump(
            libc::NFT_MSG_GETTABLE,
            libc::NFPROTO_UNSPEC as u16,
            &|_| {},
            &parse_table,
            "nftables tables",
        )
    }

    /// The chains of one table. The kernel dumps every chain of the family whatever the
    /// request names, so the table is filtered here.
    pub fn chains(&mut self, family: Family, table: &str) -> Result<Vec<ChainInfo>> {
        let t = cname(table, "table")?;
        let all = self.dump(
            libc::NFT_MSG_GETCHAIN,
            u16::from(family.nfproto()),
            // SAFETY: the payload goes into the request buffer, after its header.
            &|h| unsafe {
                let c = sys::nftnl_chain_alloc();
                if !c.is_null() {
                    sys::nftnl_chain_set_str(c, sys::NFTNL_CHAIN_TABLE as u16, t.as_ptr());
                    sys::nftnl_chain_nlmsg_build_payload(h.cast(), c);
                    sys::nftnl_chain_free(c);
                }
            },
            &parse_chain,
            &format!("the chains of table {} {table}", family.as_str()),
        )?;
        Ok(all.into_iter().filter(|c| c.table == table).collect())
    }

    /// The rules of one table (of one chain of it, when `chain` is given), in chain order.
    pub fn raw_rules(
        &mut self,
        family: Family,
        table: &str,
        chain: Option<&str>,
    ) -> Result<Vec<RawRule>> {
        let t = cname(table, "table")?;
        let c = chain.map(|c| cname(c, "chain")).transpose()?;
        let what = match chain {
            Some(ch) => format!(
                "the rules of chain {ch} in table {} {table}",
                family.as_str()
            ),
            None => format!("the rules of table {} {table}", family.as_str()),
        };
        let all = self.dump(
            libc::NFT_MSG_GETRULE,
            u16::from(family.nfproto()),
            // SAFETY: as in chains().
            &|h| unsafe {
                let r = sys::nftnl_rule_alloc();
                if !r.is_null() {
                    sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_TABLE as u16, t.as_ptr());
                    if let Some(c) = &c {
                        sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_CHAIN as u16, c.as_ptr());
                    }
                    sys::nftnl_rule_nlmsg_build_payload(h.cast(), r);
                    sys::nftnl_rule_free(r);
                }
            },
            &parse_rule,
            &what,
        )?;
        Ok(all
            .into_iter()
            .filter(|r| r.table == table && chain.is_none_or(|c| r.chain == c))
            .collect())
    }

    /// Every set of a table with its elements (anonymous ones flagged), and the sets nsfw
    /// cannot read, described.
    pub fn sets(&mut self, family: Family, table: &str) -> Result<TableSets> {
        let t = cname(table, "table")?;
        let listed = self.dump(
            libc::NFT_MSG_GETSET,
            u16::from(family.nfproto()),
            // SAFETY: as in chains().
            &|h| unsafe {
                let s = sys::nftnl_set_alloc();
                if !s.is_null() {
                    sys::nftnl_set_set_str(s, sys::NFTNL_SET_TABLE as u16, t.as_ptr());
                    sys::nftnl_set_nlmsg_build_payload(h.cast(), s);
                    sys::nftnl_set_free(s);
                }
            },
            &parse_set,
            &format!("the sets of table {} {table}", family.as_str()),
        )?;
        let mut out = Vec::new();
        let mut unreadable = Vec::new();
        for l in listed.into_iter().filter(|l| l.table == table) {
            let read = l.decl.and_then(|mut set| {
                let kelems: Vec<KElem> = self
                    .elements(family, table, &set.name)
                    .map_err(|e| format!("{e:#}"))?
                    .into_iter()
                    .flatten()
                    .collect();
                set.elements = from_kernel(&set, &kelems)?;
                Ok(set)
            });
            match read {
                Ok(set) => out.push((set, l.anonymous)),
                Err(why) => unreadable.push(format!("set {} ({why}: nsfw cannot read it)", l.name)),
            }
        }
        Ok(TableSets {
            sets: out,
            unreadable,
        })
    }

    fn elements(&mut self, family: Family, table: &str, set: &str) -> Result<Vec<Vec<KElem>>> {
        let t = cname(table, "table")?;
        let s = cname(set, "set")?;
        self.dump(
            libc::NFT_MSG_GETSETELEM,
            u16::from(family.nfproto()),
            // SAFETY: as in chains().
            &|h| unsafe {
                let o = sys::nftnl_set_alloc();
                if !o.is_null() {
                    sys::nftnl_set_set_str(o, sys::NFTNL_SET_TABLE as u16, t.as_ptr());
                    sys::nftnl_set_set_str(o, sys::NFTNL_SET_NAME as u16, s.as_ptr());
                    sys::nftnl_set_elems_nlmsg_build_payload(h.cast(), o);
                    sys::nftnl_set_free(o);
                }
            },
            &parse_elems,
            &format!(
                "the elements of set {set} in table {} {table}",
                family.as_str()
            ),
        )
    }

    /// A whole table decoded into the IR; None when there is no such table.
    pub fn table(&mut self, family: Family, name: &str) -> Result<Option<Dumped>> {
        let Some(info) = self
            .tables()?
            .into_iter()
            .find(|t| t.family == family && t.name == name)
        else {
            return Ok(None);
        };
        self.read_table(&info).map(Some)
    }

    /// The whole table a listing named, decoded into the IR.
    pub fn read_table(&mut self, info: &TableInfo) -> Result<Dumped> {
        let (family, name) = (info.family, info.name.as_str());
        let TableSets {
            sets: all_sets,
            mut unreadable,
        } = self.sets(family, name)?;
        let every: Vec<Set> = all_sets.iter().map(|(s, _)| s.clone()).collect();
        let cx = RaiseCtx {
            family,
            sets: &every,
        };
        let raw = self.raw_rules(family, name, None)?;
        let mut table = Table {
            family,
            name: name.to_string(),
            dormant: info.dormant,
            comment: info.comment.clone(),
            sets: all_sets
                .into_iter()
                .filter(|(s, anon)| !anon && !is_anonymous(&s.name))
                .map(|(s, _)| s)
                .collect(),
            chains: Vec::new(),
        };
        let mut handles = BTreeMap::new();
        for c in self.chains(family, name)? {
            if let Some(odd) = &c.odd_base {
                unreadable.push(format!("chain {}: {odd}", c.name));
            }
            let mut rules = Vec::new();
            let mut hs = Vec::new();
            for r in raw.iter().filter(|r| r.chain == c.name) {
                let (exprs, xt) = xt_comment(&r.exprs);
                rules.push(Rule {
                    stmts: raise_rule(&exprs, &cx),
                    comment: r.comment.clone().or(xt),
                });
                hs.push(r.handle);
            }
            handles.insert(c.name.clone(), hs);
            table.chains.push(Chain {
                name: c.name,
                base: c.base,
                comment: c.comment,
                rules,
            });
        }
        Ok(Dumped {
            table,
            handles,
            unreadable,
        })
    }

    /// The rules of one chain of another owner's table (iptables-nft's `ip filter FORWARD`),
    /// decoded.
    pub fn chain_rules(&mut self, family: Family, table: &str, chain: &str) -> Result<Vec<KRule>> {
        let sets: Vec<Set> = self
            .sets(family, table)?
            .sets
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        let cx = RaiseCtx {
            family,
            sets: &sets,
        };
        Ok(self
            .raw_rules(family, table, Some(chain))?
            .into_iter()
            .map(|r| {
                let (exprs, xt) = xt_comment(&r.exprs);
                KRule {
                    chain: r.chain,
                    handle: r.handle,
                    rule: Rule {
                        stmts: raise_rule(&exprs, &cx),
                        comment: r.comment.or(xt),
                    },
                }
            })
            .collect())
    }
}
