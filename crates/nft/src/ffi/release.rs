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

/// The child's stack, in 8-byte words: it calls a few system calls through libc, a few
/// hundred bytes. Its lowest words carry the child's arguments.
const STACK: usize = 8 * 1024;

/// A child closing a socket: its pid, and the stack it runs on, to be freed once it is reaped.
pub(crate) struct Child {
    pub pid: libc::pid_t,
    pub stack: Vec<u64>,
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
    // The socket, the pipe's ends: read by the child from the bottom of its stack, which
    // nothing else writes while it lives.
    let mut stack = vec![0u64; STACK];
    for (i, d) in [fd.as_raw_fd(), r.as_raw_fd(), w.as_raw_fd()]
        .iter()
        .enumerate()
    {
        stack[i] = *d as u64;
    }
    let arg = stack.as_mut_ptr();
    // The top of the stack (it grows down), 16-byte aligned as the ABI wants.
    let top = (arg as usize + STACK * 8) & !15;
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
    // shares the caller's memory but touches none of it beyond its stack, whose bottom words
    // it reads, and makes system calls that cannot fail on the descriptors and ranges it is
    // given (so nothing writes `errno`, which it would share with this thread).
    let pid = unsafe {
        libc::clone(
            child,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::SIGCHLD,
            arg.cast::<libc::c_void>(),
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

/// The child: the pipe's write end closed (its own copy: the caller's close must be the
/// last), then every descriptor but the socket and the pipe's read end (the lock, standard
/// output and the rest are let go of at once), then the end-of-file awaited, then the socket
/// closed.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    let words = arg.cast::<u64>();
    // SAFETY: `arg` is the bottom of this child's stack, three words written before the
    // clone and never again; the rest are system calls on plain integers (see
    // `close_in_child`).
    unsafe {
        let (sock, rd, wr) = (
            *words as RawFd,
            *words.add(1) as RawFd,
            *words.add(2) as RawFd,
        );
        libc::syscall(libc::SYS_close, wr);
        let (lo, hi) = (sock.min(rd) as u32, sock.max(rd) as u32);
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
