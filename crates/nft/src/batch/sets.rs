//! Set and element messages: NEWSET with nft's flags, types and userdata, then the elements in
//! as many NEWSETELEM (or DELSETELEM) messages as they need.

use std::ffi::CString;

use anyhow::{Result, anyhow};

use super::{Batch, ELEMS_BUDGET, cstr};
use crate::elems::{KData, KElem, to_kernel};
use crate::expr::{Counter, Raw};
use crate::ffi;
use crate::ir::*;
use crate::types::{Datatype, NFT_DATA_VERDICT, concat_len, concat_type};
use crate::udata;

/// The set element messages are about: by name, and by batch id when the set is created in
/// the same batch (anonymous sets have no name until the kernel gives them one).
#[derive(Clone, Copy)]
pub(super) struct ElemTarget<'a> {
    pub family: Family,
    pub table: &'a str,
    pub set: &'a str,
    pub id: Option<u32>,
}

impl Batch {
    /// NEWSET, then its elements (in as many NEWSETELEM messages as they need).
    pub(super) fn set(
        &mut self,
        family: Family,
        table: &str,
        s: &Set,
        id: u32,
        anonymous: bool,
    ) -> Result<()> {
        let names = (cstr(table, "table")?, cstr(&s.name, "set")?);
        let kelems = to_kernel(s, &s.elements, true).map_err(|e| anyhow!("set {}: {e}", s.name))?;
        let what = format!("table {} {table} set {}", family.as_str(), s.name);
        let o = set_obj(&names, s, id, anonymous, kelems.len())?;
        self.msg(
            libc::NFT_MSG_NEWSET,
            family,
            libc::NLM_F_CREATE,
            what.clone(),
            &o,
        );
        let target = ElemTarget {
            family,
            table,
            set: &s.name,
            id: Some(id),
        };
        self.elements(&target, &kelems, libc::NFT_MSG_NEWSETELEM, &what)
    }

    /// Element messages for `kelems`, cut into messages of at most ELEMS_BUDGET bytes.
    pub(super) fn elements(
        &mut self,
        target: &ElemTarget<'_>,
        kelems: &[KElem],
        ty: i32,
        label: &str,
    ) -> Result<()> {
        let ElemTarget {
            family,
            table,
            set,
            id,
        } = *target;
        let mut chunk: Vec<&KElem> = Vec::new();
        let mut size = 0;
        let mut chunks = Vec::new();
        for k in kelems {
            let est = 48
                + k.key.len()
                + k.key_end.as_ref().map_or(0, |e| e.len() + 16)
                + match &k.data {
                    Some(KData::Value(v)) => v.len() + 16,
                    Some(KData::Verdict(_, c)) => 40 + c.as_ref().map_or(0, String::len),
                    None => 0,
                }
                + k.comment.as_ref().map_or(0, |c| c.len() + 8);
            if size + est > ELEMS_BUDGET && !chunk.is_empty() {
                chunks.push(std::mem::take(&mut chunk));
                size = 0;
            }
            chunk.push(k);
            size += est;
        }
        if !chunk.is_empty() {
            chunks.push(chunk);
        }
        let tname = cstr(table, "table")?;
        let sname = cstr(set, "set")?;
        let del = ty == libc::NFT_MSG_DELSETELEM;
        for c in chunks {
            let what = format!("{label} elements");
            let mut o = ffi::Set::new()?;
            o.set_str(ffi::NFTNL_SET_TABLE, &tname);
            o.set_str(ffi::NFTNL_SET_NAME, &sname);
            if let Some(id) = id {
                o.set_u32(ffi::NFTNL_SET_ID, id);
            }
            for k in &c {
                let e = ffi::SetElem::new()
                    .map_err(|_| anyhow!("out of memory allocating an element"))?;
                o.add_elem(put_elem(e, k, del)?);
            }
            self.msg(ty, family, libc::NLM_F_CREATE, what, &o.elems_payload());
        }
        Ok(())
    }

    pub(super) fn del_set(&mut self, family: Family, table: &str, name: &str) -> Result<()> {
        let tname = cstr(table, "table")?;
        let sname = cstr(name, "set")?;
        let what = format!("table {} {table} set {name}", family.as_str());
        let mut o = ffi::Set::new()?;
        o.set_str(ffi::NFTNL_SET_TABLE, &tname);
        o.set_str(ffi::NFTNL_SET_NAME, &sname);
        self.msg(libc::NFT_MSG_DELSET, family, 0, what, &o);
        Ok(())
    }
}

/// The NEWSET object of `s` in table `names.0` (as `names.1`; batch id `id`; `anonymous`: a
/// rule's) holding `elems` kernel elements: its flags, key and data types, default timeout,
/// size, fields and userdata, as nft writes them.
fn set_obj(
    names: &(CString, CString),
    s: &Set,
    id: u32,
    anonymous: bool,
    elems: usize,
) -> Result<ffi::Set> {
    let (data_type, data_len, data_order, data_concat) = data_desc(s.data.as_ref());
    let mut o = ffi::Set::new()?;
    o.set_str(ffi::NFTNL_SET_TABLE, &names.0);
    o.set_str(ffi::NFTNL_SET_NAME, &names.1);
    o.set_u32(ffi::NFTNL_SET_FLAGS, set_flags(s, anonymous));
    o.set_u32(ffi::NFTNL_SET_KEY_TYPE, concat_type(&s.key));
    o.set_u32(ffi::NFTNL_SET_KEY_LEN, concat_len(&s.key) as u32);
    if let (Some(t), Some(l)) = (data_type, data_len) {
        o.set_u32(ffi::NFTNL_SET_DATA_TYPE, t);
        o.set_u32(ffi::NFTNL_SET_DATA_LEN, l);
    }
    o.set_u32(ffi::NFTNL_SET_ID, id);
    if let Some(t) = s.timeout {
        o.set_u64(ffi::NFTNL_SET_TIMEOUT, t);
    }
    if s.flags.constant || anonymous {
        o.set_u32(ffi::NFTNL_SET_DESC_SIZE, elems as u32);
    }
    if fields_described(s) {
        let mut field_len = [0u8; 16];
        for (i, t) in s.key.iter().enumerate().take(16) {
            field_len[i] = t.size() as u8;
        }
        let fields = field_len
            .get(..s.key.len())
            .ok_or_else(|| anyhow!("set {}: more than 16 fields", s.name))?;
        o.set_data(ffi::NFTNL_SET_DESC_CONCAT, fields)?;
    }
    let ud = set_userdata(s, anonymous, data_order, data_concat);
    o.set_data(ffi::NFTNL_SET_USERDATA, &ud)?;
    if s.flags.counter {
        // NFTA_SET_EXPR: the kernel clones it into every element added.
        o.add_expr(Raw::Counter(Counter::default()).to_nftnl()?);
    }
    Ok(o)
}

/// NFT_SET_* flags: anonymous, constant, interval, map, timeout, concatenated interval.
fn set_flags(s: &Set, anonymous: bool) -> u32 {
    let mut flags = 0u32;
    if anonymous {
        flags |= 1;
    }
    if s.flags.constant {
        flags |= 2;
    }
    if s.flags.interval {
        flags |= 4;
    }
    if s.data.is_some() {
        flags |= 8;
    }
    if s.flags.timeout || s.timeout.is_some() {
        flags |= 0x10;
    }
    if fields_described(s) {
        // NFT_SET_CONCAT: the kernel wants it with the field lengths.
        flags |= 0x80;
    }
    flags
}

/// Whether the set's field lengths are sent (NFTA_SET_DESC_CONCAT): a concatenation with
/// intervals needs them; they also tell a reader which `integer` a component is (the key
/// type says only "integer"), so a VNI's 3 bytes are sent to be read back as such.
fn fields_described(s: &Set) -> bool {
    s.key.len() > 1 && (s.flags.interval || s.key.contains(&Datatype::Bits24))
}

/// A map's data: its type, length, byte order for the userdata, and whether it is a
/// concatenation (all None for a plain set).
fn data_desc(data: Option<&SetData>) -> (Option<u32>, Option<u32>, Option<u32>, bool) {
    match data {
        None => (None, None, None, false),
        Some(SetData::Verdict) => (Some(NFT_DATA_VERDICT), Some(0), Some(0), false),
        Some(SetData::Values(v)) => (
            Some(concat_type(v)),
            Some(concat_len(v) as u32),
            Some(byteorder(v)),
            v.len() > 1,
        ),
    }
}

/// The byte order nft records for a key or data of `types`: none (0) for a concatenation.
fn byteorder(types: &[Datatype]) -> u32 {
    match types {
        [t] => t.byteorder().udata(),
        _ => 0,
    }
}

/// The set's userdata: the byte orders of key and data (and for a named set, what nft writes
/// for its declaration and its comment).
fn set_userdata(s: &Set, anonymous: bool, data_order: Option<u32>, data_concat: bool) -> Vec<u8> {
    let key_order = byteorder(&s.key);
    if anonymous {
        let mut b = udata::Builder::default();
        b.u32(udata::set::KEYBYTEORDER, key_order);
        if let Some(d) = data_order {
            b.u32(udata::set::DATABYTEORDER, d);
        }
        b.bytes().to_vec()
    } else {
        udata::set_udata(
            key_order,
            data_order,
            s.key.len() > 1,
            data_concat,
            s.comment.as_deref(),
        )
    }
}

/// Sets the attributes of one kernel element; a deletion names only its key.
fn put_elem(mut e: ffi::SetElem, k: &KElem, del: bool) -> Result<ffi::SetElem> {
    e.set_data(ffi::NFTNL_SET_ELEM_KEY, &k.key)?;
    if let Some(end) = &k.key_end {
        e.set_data(ffi::NFTNL_SET_ELEM_KEY_END, end)?;
    }
    if k.end {
        e.set_u32(ffi::NFTNL_SET_ELEM_FLAGS, 1);
    }
    if del {
        return Ok(e);
    }
    match &k.data {
        Some(KData::Value(v)) => e.set_data(ffi::NFTNL_SET_ELEM_DATA, v)?,
        Some(KData::Verdict(code, chain)) => {
            e.set_u32(ffi::NFTNL_SET_ELEM_VERDICT, *code);
            if let Some(c) = chain {
                e.set_str(ffi::NFTNL_SET_ELEM_CHAIN, &cstr(c, "chain")?);
            }
        }
        None => {}
    }
    if let Some(t) = k.timeout {
        e.set_u64(ffi::NFTNL_SET_ELEM_TIMEOUT, t);
    }
    if let Some(c) = &k.comment {
        e.set_data(ffi::NFTNL_SET_ELEM_USERDATA, &udata::comment(c))?;
    }
    Ok(e)
}
