//! Set and element messages: NEWSET with nft's flags, types and userdata, then the elements in
//! as many NEWSETELEM (or DELSETELEM) messages as they need.

use std::ffi::c_void;

use anyhow::{Result, anyhow};
use nftnl::nftnl_sys as sys;

use super::{Batch, ELEMS_BUDGET, alloc, cstr};
use crate::elems::{KData, KElem, to_kernel};
use crate::expr::{Counter, Raw};
use crate::ir::*;
use crate::types::{NFT_DATA_VERDICT, concat_len, concat_type};
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
        let tname = cstr(table, "table")?;
        let sname = cstr(&s.name, "set")?;
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
        let concat = s.key.len() > 1;
        if s.flags.interval && concat {
            flags |= 0x80;
        }
        let key_order = if concat {
            0
        } else {
            s.key[0].byteorder().udata()
        };
        let (data_type, data_len, data_order, data_concat) = match &s.data {
            None => (None, None, None, false),
            Some(SetData::Verdict) => (Some(NFT_DATA_VERDICT), Some(0), Some(0), false),
            Some(SetData::Values(v)) => (
                Some(concat_type(v)),
                Some(concat_len(v) as u32),
                Some(if v.len() > 1 {
                    0
                } else {
                    v[0].byteorder().udata()
                }),
                v.len() > 1,
            ),
        };
        let ud = if anonymous {
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
                concat,
                data_concat,
                s.comment.as_deref(),
            )
        };
        let kelems = to_kernel(s, &s.elements, true).map_err(|e| anyhow!("set {}: {e}", s.name))?;
        let mut field_len = [0u8; 16];
        for (i, t) in s.key.iter().enumerate().take(16) {
            field_len[i] = t.size() as u8;
        }
        let what = format!("table {} {table} set {}", family.as_str(), s.name);
        self.msg(
            libc::NFT_MSG_NEWSET,
            family,
            libc::NLM_F_CREATE,
            what.clone(),
            |h| {
                // SAFETY: as in table().
                unsafe {
                    let o = alloc(sys::nftnl_set_alloc(), "a set")?;
                    sys::nftnl_set_set_str(o, sys::NFTNL_SET_TABLE as u16, tname.as_ptr());
                    sys::nftnl_set_set_str(o, sys::NFTNL_SET_NAME as u16, sname.as_ptr());
                    sys::nftnl_set_set_u32(o, sys::NFTNL_SET_FLAGS as u16, flags);
                    sys::nftnl_set_set_u32(o, sys::NFTNL_SET_KEY_TYPE as u16, concat_type(&s.key));
                    sys::nftnl_set_set_u32(
                        o,
                        sys::NFTNL_SET_KEY_LEN as u16,
                        concat_len(&s.key) as u32,
                    );
                    if let (Some(t), Some(l)) = (data_type, data_len) {
                        sys::nftnl_set_set_u32(o, sys::NFTNL_SET_DATA_TYPE as u16, t);
                        sys::nftnl_set_set_u32(o, sys::NFTNL_SET_DATA_LEN as u16, l);
                    }
                    sys::nftnl_set_set_u32(o, sys::NFTNL_SET_ID as u16, id);
                    if let Some(t) = s.timeout {
                        sys::nftnl_set_set_u64(o, sys::NFTNL_SET_TIMEOUT as u16, t);
                    }
                    if s.flags.constant || anonymous {
                        sys::nftnl_set_set_u32(
                            o,
                            sys::NFTNL_SET_DESC_SIZE as u16,
                            kelems.len() as u32,
                        );
                    }
                    if s.flags.interval && concat {
                        sys::nftnl_set_set_data(
                            o,
                            sys::NFTNL_SET_DESC_CONCAT as u16,
                            field_len.as_ptr().cast(),
                            s.key.len() as u32,
                        );
                    }
                    sys::nftnl_set_set_data(
                        o,
                        sys::NFTNL_SET_USERDATA as u16,
                        ud.as_ptr().cast(),
                        ud.len() as u32,
                    );
                    if s.flags.counter {
                        // NFTA_SET_EXPR: the kernel clones it into every element added.
                        let c = Raw::Counter(Counter::default()).to_nftnl();
                        match c {
                            Ok(c) => sys::nftnl_set_add_expr(o, c.into_raw()),
                            Err(e) => {
                                sys::nftnl_set_free(o);
                                return Err(e);
                            }
                        }
                    }
                    sys::nftnl_set_nlmsg_build_payload(h, o);
                    sys::nftnl_set_free(o);
                }
                Ok(())
            },
        )?;
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
            self.msg(ty, family, libc::NLM_F_CREATE, what, |h| {
                // SAFETY: as in table(); elements are handed to the set, which frees them.
                unsafe {
                    let o = alloc(sys::nftnl_set_alloc(), "a set")?;
                    sys::nftnl_set_set_str(o, sys::NFTNL_SET_TABLE as u16, tname.as_ptr());
                    sys::nftnl_set_set_str(o, sys::NFTNL_SET_NAME as u16, sname.as_ptr());
                    if let Some(id) = id {
                        sys::nftnl_set_set_u32(o, sys::NFTNL_SET_ID as u16, id);
                    }
                    for k in &c {
                        let e = sys::nftnl_set_elem_alloc();
                        if e.is_null() {
                            sys::nftnl_set_free(o);
                            return Err(anyhow!("out of memory allocating an element"));
                        }
                        put_elem(e, k, del)?;
                        sys::nftnl_set_elem_add(o, e);
                    }
                    sys::nftnl_set_elems_nlmsg_build_payload(h, o);
                    sys::nftnl_set_free(o);
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    pub(super) fn del_set(&mut self, family: Family, table: &str, name: &str) -> Result<()> {
        let tname = cstr(table, "table")?;
        let sname = cstr(name, "set")?;
        let what = format!("table {} {table} set {name}", family.as_str());
        self.msg(libc::NFT_MSG_DELSET, family, 0, what, |h| {
            // SAFETY: as in table().
            unsafe {
                let o = alloc(sys::nftnl_set_alloc(), "a set")?;
                sys::nftnl_set_set_str(o, sys::NFTNL_SET_TABLE as u16, tname.as_ptr());
                sys::nftnl_set_set_str(o, sys::NFTNL_SET_NAME as u16, sname.as_ptr());
                sys::nftnl_set_nlmsg_build_payload(h, o);
                sys::nftnl_set_free(o);
            }
            Ok(())
        })
    }
}

/// Sets the attributes of one kernel element; a deletion names only its key.
///
/// # Safety
/// `e` must be a live element.
unsafe fn put_elem(e: *mut sys::nftnl_set_elem, k: &KElem, del: bool) -> Result<()> {
    let data = |attr: u32, b: &[u8]| {
        // SAFETY: libnftnl copies the bytes.
        unsafe {
            sys::nftnl_set_elem_set(e, attr as u16, b.as_ptr().cast::<c_void>(), b.len() as u32)
        };
    };
    data(sys::NFTNL_SET_ELEM_KEY, &k.key);
    if let Some(end) = &k.key_end {
        data(sys::NFTNL_SET_ELEM_KEY_END, end);
    }
    if k.end {
        // SAFETY: as above.
        unsafe { sys::nftnl_set_elem_set_u32(e, sys::NFTNL_SET_ELEM_FLAGS as u16, 1) };
    }
    if del {
        return Ok(());
    }
    match &k.data {
        Some(KData::Value(v)) => data(sys::NFTNL_SET_ELEM_DATA, v),
        Some(KData::Verdict(code, chain)) => {
            // SAFETY: as above; libnftnl copies the chain name.
            unsafe {
                sys::nftnl_set_elem_set_u32(e, sys::NFTNL_SET_ELEM_VERDICT as u16, *code);
                if let Some(c) = chain {
                    let c = cstr(c, "chain")?;
                    sys::nftnl_set_elem_set_str(e, sys::NFTNL_SET_ELEM_CHAIN as u16, c.as_ptr());
                }
            }
        }
        None => {}
    }
    if let Some(t) = k.timeout {
        // SAFETY: as above.
        unsafe { sys::nftnl_set_elem_set_u64(e, sys::NFTNL_SET_ELEM_TIMEOUT as u16, t) };
    }
    if let Some(c) = &k.comment {
        data(sys::NFTNL_SET_ELEM_USERDATA, &udata::comment(c));
    }
    Ok(())
}
