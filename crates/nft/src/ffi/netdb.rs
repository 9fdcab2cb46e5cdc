//! The one glibc lookup nft's output needs and no safe crate offers: a protocol's name from
//! /etc/protocols, reentrant (the libc crate binds only the non-reentrant one).

use std::ffi::CStr;

unsafe extern "C" {
    fn getprotobynumber_r(
        proto: libc::c_int,
        result_buf: *mut libc::protoent,
        buf: *mut libc::c_char,
        buflen: libc::size_t,
        result: *mut *mut libc::protoent,
    ) -> libc::c_int;
}

/// The name /etc/protocols gives IP protocol `p` (what getprotobynumber answers).
pub(crate) fn proto_name_lookup(p: u8) -> Option<String> {
    let mut ent = libc::protoent {
        p_name: std::ptr::null_mut(),
        p_aliases: std::ptr::null_mut(),
        p_proto: 0,
    };
    let mut buf = vec![0 as libc::c_char; 1024];
    let mut res: *mut libc::protoent = std::ptr::null_mut();
    // SAFETY: the reentrant lookup writes into our entry and buffer only, within their sizes.
    let rc = unsafe {
        getprotobynumber_r(
            i32::from(p),
            &mut ent,
            buf.as_mut_ptr(),
            buf.len(),
            &mut res,
        )
    };
    if rc != 0 || res.is_null() || ent.p_name.is_null() {
        return None;
    }
    // SAFETY: on success p_name points into `buf`, NUL-terminated, and `buf` is still alive.
    Some(
        unsafe { CStr::from_ptr(ent.p_name) }
            .to_string_lossy()
            .into_owned(),
    )
}
