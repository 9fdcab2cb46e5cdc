//! The last close of an nf_tables socket, handed to a child process the caller does not wait
//! for. The kernel's release of a netlink socket of NETLINK_NETFILTER flushes the work that
//! frees the transactions of earlier commits (`nft_rcv_nl_event` →
//! `nf_tables_trans_destroy_flush_work`), and that work starts with a full RCU grace period:
//! a one-shot run that commits and exits waits 5–15 ms in its own exit for memory the kernel
//! frees anyway. The commit is done and visible before that; only the wait moves.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Closes `fds` in a forked child once this process has closed its own copies and exited
/// (the child's read of a pipe only this process writes to ends then), so the child's close is
/// the last and its release waits, not this process's. The child closes every other
/// descriptor first (standard output too: a reader sees the end when this process exits).
/// Where fork fails, they are closed here, as a plain drop would.
pub(crate) fn close_after_exit(fds: Vec<OwnedFd>) {
    if fds.is_empty() {
        return;
    }
    let Ok((r, w)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
        return;
    };
    let mut keep: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    keep.push(r.as_raw_fd());
    keep.sort_unstable();
    let cue = r.as_raw_fd();
    // SAFETY: the child runs only async-signal-safe system calls (close_range, read, close,
    // _exit) on descriptors and a stack buffer, and reads `keep`, which it owns a copy of and
    // never frees: it may be forked from a process with other threads.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above; `child` never returns.
        unsafe { child(&keep, cue) }
    }
    // Parent (or fork failed): our copies first, the cue's write end last.
    drop(fds);
    drop(r);
    drop(w);
}

/// The child: everything but `keep` closed, then (once the parent's copies are gone) `keep`.
///
/// # Safety
/// Only in a child just forked; it exits without unwinding or running destructors.
unsafe fn child(keep: &[RawFd], cue: RawFd) -> ! {
    let mut from: libc::c_uint = 0;
    for &k in keep {
        let k = k as libc::c_uint;
        if k > from {
            // SAFETY: closes descriptors of this child only.
            unsafe { libc::syscall(libc::SYS_close_range, from, k - 1, 0) };
        }
        from = k + 1;
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, from, libc::c_uint::MAX, 0) };
    let mut b = [0u8; 1];
    // Until the write end's last copy (the parent's) is closed: 0 (or an error but EINTR).
    loop {
        // SAFETY: reads at most one byte into a stack buffer of one byte.
        let n = unsafe { libc::read(cue, b.as_mut_ptr().cast(), 1) };
        // SAFETY: the calling thread's errno.
        if n >= 0 || unsafe { *libc::__errno_location() } != libc::EINTR {
            break;
        }
    }
    for &k in keep {
        // SAFETY: descriptors of this child only.
        unsafe { libc::close(k) };
    }
    // SAFETY: ends the child without running the parent's atexit handlers or destructors.
    unsafe { libc::_exit(0) }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::time::{Duration, Instant};

    use super::*;

    /// The child closes what it was given once the caller's copies are gone, and exits: the
    /// read end of a pipe whose only write ends were handed over sees its end.
    #[test]
    fn the_child_closes_after_the_caller() {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let t = Instant::now();
        close_after_exit(vec![w]);
        let mut r = std::fs::File::from(r);
        let mut buf = Vec::new();
        // An end of file, not a hang: within seconds (a child not closing it would hold the
        // write end open forever).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(r.read_to_end(&mut buf).map(|_| buf.len()));
        });
        let got = rx.recv_timeout(Duration::from_secs(10));
        assert!(matches!(got, Ok(Ok(0))), "{got:?} after {:?}", t.elapsed());
    }
}
