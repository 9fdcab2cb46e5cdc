//! The kinds of libnftnl objects (table, chain, rule, set, set element, named object,
//! generation): each a type with the C functions that allocate, free, set, read, parse and
//! build an object of that kind. The owner ([`super::object::Obj`]) and the typed attributes
//! ([`super::attrs`]) are both generic over these, and this file needs neither.

use std::ffi::{c_int, c_void};

use libc::nlmsghdr;
use nftnl::nftnl_sys as sys;

/// The C functions of one kind of libnftnl object.
///
/// # Safety
/// Each function is libnftnl's for the kind's `Raw` type.
pub(crate) unsafe trait Kind {
    type Raw;
    /// "a table", for out-of-memory errors.
    const WHAT: &'static str;
    /// Room for what libnftnl writes of an object of this kind beyond its attributes (its own
    /// nest, for an element or an expression).
    const BASE: usize;
    unsafe fn alloc() -> *mut Self::Raw;
    unsafe fn free(p: *mut Self::Raw);
    unsafe fn set(p: *mut Self::Raw, attr: u16, data: *const c_void, len: u32);
    unsafe fn get(p: *const Self::Raw, attr: u16, len: *mut u32) -> *const c_void;
    unsafe fn is_set(p: *const Self::Raw, attr: u16) -> bool;
}

/// A kind libnftnl parses from a message of the kernel.
///
/// # Safety
/// `parse` is libnftnl's `nftnl_*_nlmsg_parse` for the kind.
pub(crate) unsafe trait Parse: Kind {
    unsafe fn parse(nlh: *const nlmsghdr, p: *mut Self::Raw) -> c_int;
}

/// A kind libnftnl writes as a message payload.
///
/// # Safety
/// `build` is libnftnl's `nftnl_*_nlmsg_build_payload` for the kind.
pub(crate) unsafe trait Build: Kind {
    unsafe fn build(nlh: *mut nlmsghdr, p: *mut Self::Raw);
}

macro_rules! kind {
    ($k:ident, $raw:ident, $what:literal, $base:expr,
     $alloc:ident, $free:ident, $set:ident, $get:ident, $is_set:ident
     $(, parse $parse:ident)? $(, build $build:ident)?) => {
        /// The kind of a libnftnl object.
        pub(crate) enum $k {}

        // SAFETY: the functions are libnftnl's for this type.
        unsafe impl Kind for $k {
            type Raw = sys::$raw;
            const WHAT: &'static str = $what;
            const BASE: usize = $base;
            unsafe fn alloc() -> *mut sys::$raw {
                // SAFETY: a plain allocation.
                unsafe { sys::$alloc() }
            }
            unsafe fn free(p: *mut sys::$raw) {
                // SAFETY: the caller owns `p`.
                unsafe { sys::$free(p) }
            }
            unsafe fn set(p: *mut sys::$raw, attr: u16, data: *const c_void, len: u32) {
                // SAFETY: the caller passes a live object and `len` readable bytes.
                unsafe { sys::$set(p, attr, data, len) };
            }
            unsafe fn get(p: *const sys::$raw, attr: u16, len: *mut u32) -> *const c_void {
                // SAFETY: the caller passes a live object.
                unsafe { sys::$get(p as _, attr, len) }
            }
            unsafe fn is_set(p: *const sys::$raw, attr: u16) -> bool {
                // SAFETY: the caller passes a live object.
                unsafe { sys::$is_set(p, attr) }
            }
        }
        $(
            // SAFETY: libnftnl's parser for this type.
            unsafe impl Parse for $k {
                unsafe fn parse(nlh: *const nlmsghdr, p: *mut sys::$raw) -> c_int {
                    // SAFETY: the caller passes a whole message and a live object.
                    unsafe { sys::$parse(nlh, p) }
                }
            }
        )?
        $(
            // SAFETY: libnftnl's payload builder for this type.
            unsafe impl Build for $k {
                unsafe fn build(nlh: *mut nlmsghdr, p: *mut sys::$raw) {
                    // SAFETY: the caller passes a header with room for the payload.
                    unsafe { sys::$build(nlh, p) }
                }
            }
        )?
    };
}

kind!(TableK, nftnl_table, "a table", 256, nftnl_table_alloc, nftnl_table_free,
    nftnl_table_set_data, nftnl_table_get_data, nftnl_table_is_set,
    parse nftnl_table_nlmsg_parse, build nftnl_table_nlmsg_build_payload);
kind!(ChainK, nftnl_chain, "a chain", 256, nftnl_chain_alloc, nftnl_chain_free,
    nftnl_chain_set_data, nftnl_chain_get_data, nftnl_chain_is_set,
    parse nftnl_chain_nlmsg_parse, build nftnl_chain_nlmsg_build_payload);
kind!(RuleK, nftnl_rule, "a rule", 256, nftnl_rule_alloc, nftnl_rule_free,
    nftnl_rule_set_data, nftnl_rule_get_data, nftnl_rule_is_set,
    parse nftnl_rule_nlmsg_parse, build nftnl_rule_nlmsg_build_payload);
kind!(SetK, nftnl_set, "a set", 256, nftnl_set_alloc, nftnl_set_free,
    nftnl_set_set_data, nftnl_set_get_data, nftnl_set_is_set,
    parse nftnl_set_nlmsg_parse, build nftnl_set_nlmsg_build_payload);
kind!(
    SetElemK,
    nftnl_set_elem,
    "an element",
    64,
    nftnl_set_elem_alloc,
    nftnl_set_elem_free,
    nftnl_set_elem_set,
    nftnl_set_elem_get,
    nftnl_set_elem_is_set
);
kind!(NamedObjK, nftnl_obj, "a named object", 256, nftnl_obj_alloc, nftnl_obj_free,
    nftnl_obj_set_data, nftnl_obj_get_data, nftnl_obj_is_set,
    parse nftnl_obj_nlmsg_parse, build nftnl_obj_nlmsg_build_payload);
kind!(GenK, nftnl_gen, "a generation", 64, nftnl_gen_alloc, nftnl_gen_free,
    nftnl_gen_set_data, nftnl_gen_get_data, nftnl_gen_is_set,
    parse nftnl_gen_nlmsg_parse);
