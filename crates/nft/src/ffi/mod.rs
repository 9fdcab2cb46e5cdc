//! Every `unsafe` of the crate: libnftnl's objects behind owners that free them, the buffers
//! netlink messages are built and read in, and one lookup in glibc. What leaves this module is
//! safe to call with any argument:
//!
//! - an object (`Table`, `Chain`, `Rule`, `Set`, `SetElem`, `NamedObj`, `Gen`: [`Obj`]) is
//!   allocated by `new` or `parse` and freed when dropped; one handed to its parent (an
//!   expression to a rule, an element to a set) is moved, so it cannot be freed twice;
//! - its attributes are set and read through typed constants ([`attrs`]) that say which
//!   libnftnl type each one has, so a setter always passes what libnftnl copies (it copies a
//!   fixed size for numbers, `strlen + 1` for names, and at most 64 bytes into a data
//!   register: longer is refused here, not written past the register);
//! - a message is built in a buffer grown to an upper bound of what the object writes
//!   ([`MsgBuf`]): libnftnl writes attributes without knowing where the buffer ends;
//! - a received message is parsed only as a whole, aligned `nlmsghdr` ([`Nlmsg`]).
//!
//! The socket itself is `nix`'s (`socket.rs`): nothing of it needs `unsafe` here but one
//! socket option nix does not name, and its last close made in a child process ([`release`]).

mod attrs;
mod expr;
mod kind;
mod msg;
mod netdb;
mod object;
mod release;

use std::ffi::{CStr, c_char, c_void};
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ops::Deref;

pub(crate) use attrs::*;
pub(crate) use expr::Expr;
pub(crate) use msg::{AlignedBuf, MsgBuf, NetlinkCapAck, Nlmsg, Payload};
pub(crate) use netdb::proto_name_lookup;
pub(crate) use object::{Chain, Gen, NamedObj, Rule, Set, SetElem, Table};
pub(crate) use release::close_in_child;

/// How libnftnl takes the bytes of a [`Data`] attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Copied whatever their length (userdata).
    Copied,
    /// Copied into a data register of NFT_DATA_VALUE_MAXLEN (64) bytes.
    Register,
    /// Copied into an array of 16 one-byte lengths (a set's concatenation fields).
    Lengths,
    /// Kept as given and freed with the expression (an xtables match's or target's info):
    /// libnftnl gets a copy it may free.
    Given,
}

/// A string attribute: libnftnl copies `strlen + 1` bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Str;

/// An attribute of bytes, taken as its [`Taken`] says.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Data;

/// One attribute of an object of kind `K` that libnftnl holds as a `T` (`u8`..`u64`, `i32`,
/// [`Str`] or [`Data`]). Only [`attrs`] makes them: that table is what says the types.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attr<K, T> {
    id: u16,
    taken: Taken,
    /// The expression an expression attribute belongs to: the same number means another
    /// attribute in each expression.
    expr: &'static str,
    _kind: PhantomData<fn() -> (K, T)>,
}

impl<K, T> Attr<K, T> {
    const fn new(id: u32, taken: Taken, expr: &'static str) -> Attr<K, T> {
        Attr {
            id: id as u16,
            taken,
            expr,
            _kind: PhantomData,
        }
    }
}

/// The most bytes libnftnl copies into a data register (NFT_DATA_VALUE_MAXLEN).
const REGISTER: usize = 64;
/// A set's concatenation has at most 16 fields (NFT_REG32_COUNT).
const FIELDS: usize = 16;

/// Room in a message for one attribute of `len` bytes: its header, padding, and the nests
/// libnftnl wraps it in (a data register in a nest in a nest, a verdict in three).
fn room(len: usize) -> usize {
    32 + len.next_multiple_of(4)
}

/// A child object its parent owns and frees (an expression of a rule read back, an element
/// of a set): readable while the parent is borrowed, never freed through this handle.
pub(crate) struct Borrowed<'a, T> {
    inner: ManuallyDrop<T>,
    _parent: PhantomData<&'a ()>,
}

impl<T> Deref for Borrowed<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

/// A string libnftnl returned; empty for NULL. Its length is not the one libnftnl says: for
/// some attributes it says 4 (a chain's type, in 1.2.x), so the string is read to its NUL,
/// which every string attribute has (libnftnl `strdup`s them).
///
/// # Safety
/// `p` is NULL or a NUL-terminated string.
unsafe fn string_at(p: *const c_void) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: per the function's contract.
    unsafe { CStr::from_ptr(p.cast::<c_char>()) }
        .to_string_lossy()
        .into_owned()
}

/// The bytes of an attribute libnftnl returned; None for NULL.
///
/// # Safety
/// `p` is NULL or valid for `len` bytes.
unsafe fn bytes_at(p: *const c_void, len: u32) -> Option<Vec<u8>> {
    // SAFETY: per the function's contract.
    (!p.is_null())
        .then(|| unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len as usize) }.to_vec())
}

/// A number of `N` bytes libnftnl returned (native order); None for NULL.
///
/// # Safety
/// `p` is NULL or valid for `N` bytes.
unsafe fn number_at<const N: usize>(p: *const c_void) -> Option<[u8; N]> {
    // SAFETY: per the function's contract.
    (!p.is_null()).then(|| unsafe { p.cast::<[u8; N]>().read_unaligned() })
}

/// A name for libnftnl: a NUL-terminated copy of `s`, cut at a NUL inside it.
fn c_name(s: &str) -> Vec<c_char> {
    s.split('\0')
        .next()
        .unwrap_or("")
        .bytes()
        .map(|b| b as c_char)
        .chain([0])
        .collect()
}
