//! libnftnl's objects (table, chain, rule, set, set element, named object, generation) behind
//! one owner type, [`Obj`], generic over their kind: allocated or parsed, their attributes set
//! and read through typed [`Attr`]s, freed when dropped.

use std::ffi::{CStr, c_int, c_void};
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;

use anyhow::{Result, anyhow, bail};
use libc::nlmsghdr;
use nftnl::nftnl_sys as sys;

use super::Taken::*;
use super::expr::Expr;
use super::kind::{Build, ChainK, GenK, Kind, NamedObjK, Parse, RuleK, SetElemK, SetK, TableK};
use super::msg::{Nlmsg, Payload};
use super::{Attr, Borrowed, Data, FIELDS, REGISTER, Str, bytes_at, number_at, room, string_at};

pub(crate) type Table = Obj<TableK>;
pub(crate) type Chain = Obj<ChainK>;
pub(crate) type Rule = Obj<RuleK>;
pub(crate) type Set = Obj<SetK>;
pub(crate) type SetElem = Obj<SetElemK>;
pub(crate) type NamedObj = Obj<NamedObjK>;
pub(crate) type Gen = Obj<GenK>;

/// An owned libnftnl object of kind `K`, freed when dropped.
pub(crate) struct Obj<K: Kind> {
    p: NonNull<K::Raw>,
    /// At least the bytes libnftnl writes for it into a message.
    bound: usize,
    _kind: PhantomData<K>,
}

impl<K: Kind> Drop for Obj<K> {
    fn drop(&mut self) {
        // SAFETY: the object is ours (nothing took it: `into_raw` forgets it) and live.
        unsafe { K::free(self.p.as_ptr()) }
    }
}

impl<K: Kind> Obj<K> {
    /// A fresh object with no attributes.
    pub(crate) fn new() -> Result<Obj<K>> {
        // SAFETY: a plain allocation; NULL when out of memory.
        let p = unsafe { K::alloc() };
        let p = NonNull::new(p).ok_or_else(|| anyhow!("out of memory allocating {}", K::WHAT))?;
        Ok(Obj {
            p,
            bound: K::BASE,
            _kind: PhantomData,
        })
    }

    /// Gives the object to libnftnl (a parent that frees it).
    fn into_raw(self) -> *mut K::Raw {
        let me = ManuallyDrop::new(self);
        me.p.as_ptr()
    }

    fn set_raw(&mut self, attr: u16, data: &[u8]) {
        self.bound += room(data.len());
        // SAFETY: the object is live; libnftnl copies `data.len()` bytes or fewer (the typed
        // attribute says how many it reads).
        unsafe {
            K::set(
                self.p.as_ptr(),
                attr,
                data.as_ptr().cast(),
                data.len() as u32,
            )
        }
    }

    pub(crate) fn set_u32(&mut self, a: Attr<K, u32>, v: u32) {
        self.set_raw(a.id, &v.to_ne_bytes());
    }
    pub(crate) fn set_i32(&mut self, a: Attr<K, i32>, v: i32) {
        self.set_raw(a.id, &v.to_ne_bytes());
    }
    pub(crate) fn set_u64(&mut self, a: Attr<K, u64>, v: u64) {
        self.set_raw(a.id, &v.to_ne_bytes());
    }
    /// A string: libnftnl copies it up to its NUL.
    pub(crate) fn set_str(&mut self, a: Attr<K, Str>, v: &CStr) {
        self.set_raw(a.id, v.to_bytes_with_nul());
    }
    /// Bytes: a register takes at most 64, concatenation lengths at most 16.
    pub(crate) fn set_data(&mut self, a: Attr<K, Data>, v: &[u8]) -> Result<()> {
        match a.taken {
            Copied => {}
            Register if v.len() <= REGISTER => {}
            Lengths if v.len() <= FIELDS => self.bound += FIELDS * 16,
            Register | Lengths => bail!("{} bytes do not fit the attribute", v.len()),
            // libnftnl would keep and free our buffer: no attribute of an object is taken so.
            Given => bail!("an attribute libnftnl keeps"),
        }
        self.set_raw(a.id, v);
        Ok(())
    }

    fn get_raw(&self, attr: u16) -> (*const c_void, u32) {
        let mut len = 0u32;
        // SAFETY: the object is live; libnftnl returns NULL or a pointer valid for `len`
        // bytes while the object lives and is not changed.
        let p = unsafe { K::get(self.p.as_ptr(), attr, &mut len) };
        (p, len)
    }

    /// Whether the attribute is set.
    pub(crate) fn is_set<T>(&self, a: Attr<K, T>) -> bool {
        // SAFETY: the object is live.
        unsafe { K::is_set(self.p.as_ptr(), a.id) }
    }
    /// The number; 0 when it is not set. Read as libnftnl's typed getters read it: the
    /// length it says is not always the field's (see `string_at`).
    pub(crate) fn u32(&self, a: Attr<K, u32>) -> u32 {
        let (p, _) = self.get_raw(a.id);
        // SAFETY: NULL or, for a u32 attribute, a pointer to its 4 bytes.
        unsafe { number_at::<4>(p) }.map_or(0, u32::from_ne_bytes)
    }
    pub(crate) fn i32(&self, a: Attr<K, i32>) -> i32 {
        let (p, _) = self.get_raw(a.id);
        // SAFETY: NULL or, for an i32 attribute, a pointer to its 4 bytes.
        unsafe { number_at::<4>(p) }.map_or(0, i32::from_ne_bytes)
    }
    pub(crate) fn u64(&self, a: Attr<K, u64>) -> u64 {
        let (p, _) = self.get_raw(a.id);
        // SAFETY: NULL or, for a u64 attribute, a pointer to its 8 bytes.
        unsafe { number_at::<8>(p) }.map_or(0, u64::from_ne_bytes)
    }
    /// The string; empty when it is not set.
    pub(crate) fn str(&self, a: Attr<K, Str>) -> String {
        let (p, _) = self.get_raw(a.id);
        // SAFETY: NULL or, for a string attribute, a NUL-terminated string.
        unsafe { string_at(p) }
    }
    /// The bytes; None when they are not set.
    pub(crate) fn data(&self, a: Attr<K, Data>) -> Option<Vec<u8>> {
        let (p, len) = self.get_raw(a.id);
        // SAFETY: NULL or `len` valid bytes (the length of a bytes attribute is its own).
        unsafe { bytes_at(p, len) }
    }
}

impl<K: Parse> Obj<K> {
    /// The object a kernel message describes; `what` names it in errors.
    pub(crate) fn parse(msg: &Nlmsg<'_>, what: &str) -> Result<Obj<K>> {
        let o = Obj::<K>::new().map_err(|_| anyhow!("out of memory"))?;
        // SAFETY: the message is whole and aligned (Nlmsg); the object is live.
        if unsafe { K::parse(msg.header(), o.p.as_ptr()) } < 0 {
            bail!("cannot parse a {what} from the kernel");
        }
        Ok(o)
    }
}

impl<K: Build> Payload for Obj<K> {
    fn bound(&self) -> usize {
        self.bound
    }
    unsafe fn write(&self, nlh: *mut nlmsghdr) {
        // SAFETY: the caller gives a header followed by `bound` bytes of room; libnftnl only
        // reads the object.
        unsafe { K::build(nlh, self.p.as_ptr()) }
    }
}

impl Rule {
    /// Appends an expression; the rule owns it from now on.
    pub(crate) fn add_expr(&mut self, e: Expr) {
        self.bound += e.bound();
        // SAFETY: both are live; the rule takes the expression, which is not ours any more.
        unsafe { sys::nftnl_rule_add_expr(self.p.as_ptr(), e.into_raw()) }
    }

    /// The rule's expressions, each readable while the rule is borrowed.
    pub(crate) fn exprs(&self) -> Result<Vec<Borrowed<'_, Expr>>> {
        // SAFETY: the rule is live; the iterator is destroyed below.
        let it = unsafe { sys::nftnl_expr_iter_create(self.p.as_ptr()) };
        if it.is_null() {
            bail!("out of memory");
        }
        let mut out = Vec::new();
        loop {
            // SAFETY: a live iterator; each expression is the rule's and lives as long.
            let e = unsafe { sys::nftnl_expr_iter_next(it) };
            let Some(e) = NonNull::new(e) else { break };
            out.push(Expr::borrowed(e));
        }
        // SAFETY: created above, not used again.
        unsafe { sys::nftnl_expr_iter_destroy(it) };
        Ok(out)
    }
}

/// Collects the expressions libnftnl's foreach hands over (a set's or an element's).
unsafe extern "C" fn collect_expr(e: *mut sys::nftnl_expr, data: *mut c_void) -> c_int {
    // SAFETY: `data` is the Vec `exprs_of` passes, alive for the whole foreach and touched by
    // nothing else meanwhile.
    let v = unsafe { &mut *data.cast::<Vec<NonNull<sys::nftnl_expr>>>() };
    if let Some(e) = NonNull::new(e) {
        v.push(e);
    }
    0
}

/// The expressions `foreach` walks, each readable while their owner is borrowed.
fn exprs_of<'a>(
    foreach: impl FnOnce(
        Option<unsafe extern "C" fn(*mut sys::nftnl_expr, *mut c_void) -> c_int>,
        *mut c_void,
    ) -> c_int,
) -> Vec<Borrowed<'a, Expr>> {
    let mut v: Vec<NonNull<sys::nftnl_expr>> = Vec::new();
    foreach(Some(collect_expr), (&mut v as *mut Vec<_>).cast());
    v.into_iter().map(Expr::borrowed).collect()
}

impl Set {
    /// Adds a stateful expression to the declaration (NFTA_SET_EXPR: the kernel clones it
    /// into every element added); the set owns it from now on.
    pub(crate) fn add_expr(&mut self, e: Expr) {
        self.bound += e.bound();
        // SAFETY: both are live; the set takes the expression, which is not ours any more.
        unsafe { sys::nftnl_set_add_expr(self.p.as_ptr(), e.into_raw()) }
    }

    /// The stateful expressions of the declaration, readable while the set is borrowed.
    pub(crate) fn exprs(&self) -> Vec<Borrowed<'_, Expr>> {
        let p = self.p.as_ptr();
        // SAFETY: the set is live; the callback only collects the set's own expressions,
        // which live as long as it.
        exprs_of(|cb, data| unsafe { sys::nftnl_set_expr_foreach(p, cb, data) })
    }

    /// Adds an element; the set owns it from now on.
    pub(crate) fn add_elem(&mut self, e: SetElem) {
        self.bound += e.bound;
        // SAFETY: both are live; the set takes the element, which is not ours any more.
        unsafe { sys::nftnl_set_elem_add(self.p.as_ptr(), e.into_raw()) }
    }

    /// The set's elements from an element message of the kernel (its table, name and
    /// elements).
    // Read only by the debug builds' reference reader (dump::elemref).
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    pub(crate) fn parse_elems(msg: &Nlmsg<'_>, what: &str) -> Result<Set> {
        let o = Set::new().map_err(|_| anyhow!("out of memory"))?;
        // SAFETY: as in `parse`.
        if unsafe { sys::nftnl_set_elems_nlmsg_parse(msg.header(), o.p.as_ptr()) } < 0 {
            bail!("cannot parse a {what} from the kernel");
        }
        Ok(o)
    }

    /// The set's elements, each readable while the set is borrowed.
    // Read only by the debug builds' reference reader (dump::elemref).
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    pub(crate) fn elems(&self) -> Result<Vec<Borrowed<'_, SetElem>>> {
        // SAFETY: the set is live; the iterator is destroyed below.
        let it = unsafe { sys::nftnl_set_elems_iter_create(self.p.as_ptr()) };
        if it.is_null() {
            bail!("out of memory");
        }
        let mut out = Vec::new();
        loop {
            // SAFETY: a live iterator; each element is the set's and lives as long.
            let e = unsafe { sys::nftnl_set_elems_iter_next(it) };
            let Some(p) = NonNull::new(e) else { break };
            out.push(Borrowed {
                inner: ManuallyDrop::new(Obj {
                    p,
                    bound: 0,
                    _kind: PhantomData,
                }),
                _parent: PhantomData,
            });
        }
        // SAFETY: created above, not used again.
        unsafe { sys::nftnl_set_elems_iter_destroy(it) };
        Ok(out)
    }

    /// The payload of an element message: the set's name, table and id, and its elements.
    pub(crate) fn elems_payload(&self) -> Elems<'_> {
        Elems(self)
    }
}

impl SetElem {
    /// The element's stateful expressions (the counter its set's `counter` gave it),
    /// readable while the element is borrowed.
    // Read only by the debug builds' reference reader (dump::elemref).
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    pub(crate) fn exprs(&self) -> Vec<Borrowed<'_, Expr>> {
        let p = self.p.as_ptr();
        // SAFETY: the element is live; the callback only collects its own expressions, which
        // live as long as it.
        exprs_of(|cb, data| unsafe { sys::nftnl_set_elem_expr_foreach(p, cb, data) })
    }
}

/// A set written as the payload of an element message (NEWSETELEM, DELSETELEM, GETSETELEM).
pub(crate) struct Elems<'a>(&'a Set);

impl Payload for Elems<'_> {
    fn bound(&self) -> usize {
        self.0.bound
    }
    unsafe fn write(&self, nlh: *mut nlmsghdr) {
        // SAFETY: as for `Obj`.
        unsafe { sys::nftnl_set_elems_nlmsg_build_payload(nlh, self.0.p.as_ptr()) }
    }
}
