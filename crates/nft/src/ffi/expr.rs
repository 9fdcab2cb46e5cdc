//! A libnftnl expression (`nftnl_expr`): made by name, its attributes set and read through
//! typed [`Attr`]s of that expression, owned until a rule takes it.

use std::ffi::c_void;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;

use anyhow::{Result, anyhow, bail};
use nftnl::nftnl_sys as sys;

use super::attrs::{ExprK, NFTNL_EXPR_NAME};
use super::{
    Attr, Borrowed, Data, REGISTER, Str, Taken, bytes_at, c_name, number_at, room, string_at,
};

/// An expression, owned until [`super::Rule::add_expr`] takes it.
pub(crate) struct Expr {
    p: NonNull<sys::nftnl_expr>,
    /// The kernel name it was made (or read) with: its attributes are that expression's.
    name: String,
    bound: usize,
}

impl Drop for Expr {
    fn drop(&mut self) {
        // SAFETY: the expression is ours (a rule that took it got it through `into_raw`,
        // which forgets it; a borrowed one is never dropped) and live.
        unsafe { sys::nftnl_expr_free(self.p.as_ptr()) }
    }
}

/// libnftnl keeps which attributes are set in a 32-bit mask (`1 << attr`).
fn known(id: u16) -> bool {
    id < 32
}

impl Expr {
    /// A fresh expression of the kernel's name `name` (`payload`, `cmp`, ...).
    pub(crate) fn new(name: &str) -> Result<Expr> {
        if name.contains('\0') {
            bail!("expression name");
        }
        let c = c_name(name);
        // SAFETY: allocation by name; NULL when libnftnl has no such expression.
        let p = unsafe { sys::nftnl_expr_alloc(c.as_ptr()) };
        let p = NonNull::new(p).ok_or_else(|| anyhow!("libnftnl has no expression {name:?}"))?;
        Ok(Expr {
            p,
            name: name.to_string(),
            bound: 64 + room(name.len() + 1),
        })
    }

    /// An expression a rule holds, readable while the rule is borrowed.
    pub(super) fn borrowed<'a>(p: NonNull<sys::nftnl_expr>) -> Borrowed<'a, Expr> {
        // Never dropped: the rule frees it.
        let mut e = ManuallyDrop::new(Expr {
            p,
            name: String::new(),
            bound: 0,
        });
        e.name = e.str(NFTNL_EXPR_NAME).unwrap_or_default();
        Borrowed {
            inner: e,
            _parent: PhantomData,
        }
    }

    /// Gives the expression to libnftnl (a rule, which frees it).
    pub(super) fn into_raw(self) -> *mut sys::nftnl_expr {
        let mut me = ManuallyDrop::new(self);
        // The name is still ours to free; the expression is not.
        drop(std::mem::take(&mut me.name));
        me.p.as_ptr()
    }

    pub(super) fn bound(&self) -> usize {
        self.bound
    }

    /// The expression's kernel name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Whether `a` is an attribute of this expression.
    fn mine<T>(&self, a: &Attr<ExprK, T>) -> bool {
        known(a.id) && (a.expr.is_empty() || a.expr == self.name)
    }

    fn set_raw<T>(&mut self, a: &Attr<ExprK, T>, data: *const c_void, len: usize) -> Result<()> {
        if !self.mine(a) {
            bail!("an attribute of {} set on {}", a.expr, self.name);
        }
        self.bound += room(len);
        // SAFETY: the expression is live and `a` is one of its attributes, of the type whose
        // bytes `data` holds (`len` of them: libnftnl copies what the type says, a register
        // at most 64 bytes, checked by the caller).
        unsafe { sys::nftnl_expr_set(self.p.as_ptr(), a.id, data, len as u32) };
        Ok(())
    }

    pub(crate) fn set_u8(&mut self, a: Attr<ExprK, u8>, v: u8) -> Result<()> {
        self.set_raw(&a, (&v as *const u8).cast(), 1)
    }
    pub(crate) fn set_u16(&mut self, a: Attr<ExprK, u16>, v: u16) -> Result<()> {
        self.set_raw(&a, (&v as *const u16).cast(), 2)
    }
    pub(crate) fn set_u32(&mut self, a: Attr<ExprK, u32>, v: u32) -> Result<()> {
        self.set_raw(&a, (&v as *const u32).cast(), 4)
    }
    pub(crate) fn set_u64(&mut self, a: Attr<ExprK, u64>, v: u64) -> Result<()> {
        self.set_raw(&a, (&v as *const u64).cast(), 8)
    }
    /// A string, cut at a NUL inside it (a name with one cannot be sent).
    pub(crate) fn set_str(&mut self, a: Attr<ExprK, Str>, v: &str) -> Result<()> {
        let c = c_name(v);
        self.set_raw(&a, c.as_ptr().cast(), c.len())
    }
    /// Bytes: a data register's at most 64; an xtables info given to libnftnl as a copy it
    /// frees.
    pub(crate) fn set_data(&mut self, a: Attr<ExprK, Data>, v: &[u8]) -> Result<()> {
        match a.taken {
            Taken::Register if v.len() > REGISTER => {
                bail!("{} bytes do not fit a register of {REGISTER}", v.len())
            }
            Taken::Given => {
                // SAFETY: a plain allocation of at least one byte, filled below.
                let p = unsafe { libc::malloc(v.len().max(1)) }.cast::<u8>();
                if p.is_null() {
                    bail!("out of memory");
                }
                // SAFETY: `p` holds v.len() bytes; the regions are distinct.
                unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), p, v.len()) };
                // libnftnl keeps the pointer and frees it with the expression (or when the
                // attribute is set again); a refused one is freed here.
                if let Err(e) = self.set_raw(&a, p.cast(), v.len()) {
                    // SAFETY: ours, not given.
                    unsafe { libc::free(p.cast()) };
                    return Err(e);
                }
                return Ok(());
            }
            _ => {}
        }
        self.set_raw(&a, v.as_ptr().cast(), v.len())
    }

    fn get_raw<T>(&self, a: &Attr<ExprK, T>) -> (*const c_void, u32) {
        if !self.mine(a) {
            return (std::ptr::null(), 0);
        }
        let mut len = 0u32;
        // SAFETY: the expression is live; libnftnl returns NULL (not set) or a pointer valid
        // for `len` bytes while the expression lives and is not changed.
        let p = unsafe { sys::nftnl_expr_get(self.p.as_ptr(), a.id, &mut len) };
        (p, len)
    }

    /// A number of `N` bytes: None when it is not set, zero when libnftnl says another
    /// length (as its typed getters for expressions answer).
    fn number<T, const N: usize>(&self, a: &Attr<ExprK, T>) -> Option<[u8; N]> {
        let (p, len) = self.get_raw(a);
        if p.is_null() {
            return None;
        }
        if len as usize != N {
            return Some([0; N]);
        }
        // SAFETY: `len` (that is N) valid bytes.
        unsafe { number_at::<N>(p) }
    }

    pub(crate) fn u8(&self, a: Attr<ExprK, u8>) -> Option<u8> {
        self.number(&a).map(u8::from_ne_bytes)
    }
    pub(crate) fn u16(&self, a: Attr<ExprK, u16>) -> Option<u16> {
        self.number(&a).map(u16::from_ne_bytes)
    }
    pub(crate) fn u32(&self, a: Attr<ExprK, u32>) -> Option<u32> {
        self.number(&a).map(u32::from_ne_bytes)
    }
    pub(crate) fn u64(&self, a: Attr<ExprK, u64>) -> Option<u64> {
        self.number(&a).map(u64::from_ne_bytes)
    }
    pub(crate) fn str(&self, a: Attr<ExprK, Str>) -> Option<String> {
        let (p, _) = self.get_raw(&a);
        // SAFETY: NULL or, for a string attribute, a NUL-terminated string.
        (!p.is_null()).then(|| unsafe { string_at(p) })
    }
    pub(crate) fn data(&self, a: Attr<ExprK, Data>) -> Option<Vec<u8>> {
        let (p, len) = self.get_raw(&a);
        // SAFETY: as in u8().
        unsafe { bytes_at(p, len) }
    }
}
