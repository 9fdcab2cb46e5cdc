//! A socket's last close, made in a child process so that the caller need not wait for it.
//!
//! The kernel's release of an NETLINK_NETFILTER socket that ever sent a message waits for
//! nf_tables' pending destroy work (`nft_rcv_nl_event` on NETLINK_URELEASE flushes it), and a
//! commit leaves such work behind: an RCU grace period, 5 to 20 ms, whatever the batch held.
//! A thread cannot take that wait off a command's clock — a process ends only once every
//! thread has left the kernel, and its own exit closes the socket just the same — but a
//! child that holds the last reference can.
//!
//! The child shares the caller's memory (`CLONE_VM`, as `posix_spawn` makes its child): a
//! `fork` copies the page tables, 1.7 to 4.3 ms at 1,000 namespaces, more than the wait it
//! saves there. It runs on a stack of its own, with every signal blocked, and makes system
//! calls only.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};

/// The child's stack: it calls three system calls through libc, a few hundred bytes.
const STACK: usize = 64 * 1024;

/// A child closing a socket: its pid, and the stack it runs on, to be freed once it is reaped.
pub(crate) struct Child {
    pub pid: libc::pid_t,
    pub stack: Vec<u8>,
}

/// Closes `fd` in a child process, which then exits; returns the child, or `fd` back when no
/// child could be made. The release falls to whoever closes the socket last, so the child
/// waits until the caller has closed its copy: the caller closes it, then the pipe whose
/// end-of-file the child reads.
pub(crate) fn close_in_child(fd: OwnedFd) -> Result<Child, OwnedFd> {
    // The child's close_range must not fail (see below): a kernel before 5.9 has none, and
    // closes the socket here. An empty range past every descriptor closes nothing.
    // SAFETY: a system call on plain integers.
    if unsafe { libc::syscall(libc::SYS_close_range, u32::MAX, u32::MAX, 0u32) } != 0 {
        return Err(fd);
    }
    let Ok((r, w)) = nix::unistd::pipe2(OFlag::O_CLOEXEC) else {
        return Err(fd);
    };
    let (sock, rd) = (fd.as_raw_fd(), r.as_raw_fd());
    let mut stack = vec![0u8; STACK];
    // The top of the stack (it grows down), 16-byte aligned as the ABI wants.
    let top = (stack.as_mut_ptr() as usize + STACK) & !15;
    let arg = ((sock as u32 as u64) << 32 | rd as u32 as u64) as usize;
    // Blocked in the child from its first instruction: no handler of the caller's ever runs
    // on the child's stack, and no read is interrupted.
    let mut old = SigSet::empty();
    if pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    )
    .is_err()
    {
        return Err(fd);
    }
    // SAFETY: the child runs `child` on `stack`, which outlives it (the caller frees it only
    // after reaping the child; a caller that exits first leaves the memory to the child). It
    // shares the caller's memory but touches none of it: its arguments travel in `arg`, and
    // it makes system calls that cannot fail on the descriptors and ranges it is given (so
    // nothing writes `errno`, which it would share with this thread).
    let pid = unsafe {
        libc::clone(
            child,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::SIGCHLD,
            arg as *mut libc::c_void,
        )
    };
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    if pid == -1 {
        return Err(fd);
    }
    drop(fd);
    drop(w);
    Ok(Child { pid, stack })
}

/// The child: every descriptor closed but the socket and the pipe's read end (the lock,
/// standard output and the pipe's write end are let go of at once), then the end-of-file
/// awaited, then the socket closed.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    let arg = arg as usize as u64;
    let (sock, rd) = ((arg >> 32) as RawFd, (arg & 0xffff_ffff) as RawFd);
    let (lo, hi) = (sock.min(rd) as u32, sock.max(rd) as u32);
    // SAFETY: system calls on plain integers; see `close_in_child`.
    unsafe {
        libc::syscall(libc::SYS_prctl, libc::PR_SET_NAME, c"nsfw-release".as_ptr());
        if lo > 0 {
            libc::syscall(libc::SYS_close_range, 0u32, lo - 1, 0u32);
        }
        if hi > lo + 1 {
            libc::syscall(libc::SYS_close_range, lo + 1, hi - 1, 0u32);
        }
        libc::syscall(libc::SYS_close_range, hi + 1, u32::MAX, 0u32);
        let mut b = 0u8;
        libc::syscall(libc::SYS_read, rd, (&raw mut b), 1usize);
        libc::syscall(libc::SYS_close, sock);
    }
    0
}
