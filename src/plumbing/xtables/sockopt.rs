//! The two socket options calls iptables-legacy's tables are read and written with. Neither
//! nix nor socket2 takes a caller's buffer of any length (nix's options are fixed-size
//! structs; `IPT_SO_GET_ENTRIES` returns as many bytes as the table holds, and the name to
//! read is written into the same buffer): a raw call each, behind a safe signature.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `getsockopt(fd, level, opt, buf)`: the kernel reads its argument from `buf` and writes its
/// answer over it. Returns the length it says it wrote.
#[allow(unsafe_code)]
pub(super) fn get(fd: BorrowedFd, level: i32, opt: i32, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = libc::socklen_t::try_from(buf.len())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `buf` is valid for writes of `len` bytes for the whole call, and `len` is a
    // live local; the kernel writes at most `len` bytes and updates `len`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(len as usize)
}

/// `setsockopt(fd, level, opt, buf)`. For `IPT_SO_SET_REPLACE` the buffer holds the address of
/// a second one (the old counters), which the kernel writes during the call: the caller keeps
/// that one alive and unborrowed across it (`replace` does: it is a local it hands over by
/// address only here).
#[allow(unsafe_code)]
pub(super) fn set(fd: BorrowedFd, level: i32, opt: i32, buf: &[u8]) -> io::Result<()> {
    let len = libc::socklen_t::try_from(buf.len())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `buf` is valid for reads of `len` bytes for the whole call. The counters
    // address it may carry is the caller's live, exclusively held buffer of the size it
    // names (see above).
    let r = unsafe { libc::setsockopt(fd.as_raw_fd(), level, opt, buf.as_ptr().cast(), len) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
