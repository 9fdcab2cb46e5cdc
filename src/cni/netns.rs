//! `CNI_NETNS`: the container's network namespace, opened so that no path a user can write
//! makes the plugin block or act on the wrong namespace. The path is opened without following
//! a symlink (but for procfs's own `/proc/PID/ns/net` links, which the kernel makes) and
//! without blocking (a FIFO opens at once, and then is no namespace); the file must be on nsfs,
//! of type CLONE_NEWNET (NS_GET_NSTYPE), and not the plugin's own network namespace — the
//! host's, where an ADD would replace the host's default route.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::{Mode, fstat, stat};
use nix::sys::statfs::{NSFS_MAGIC, fstatfs};

use super::error::{CniError, CniResult};

/// Whether `path` is one of procfs's namespace links (`/proc/self/ns/net`,
/// `/proc/PID/ns/net`, `/proc/PID/task/TID/ns/net`): a link the kernel makes, which is how
/// runtimes name a process's namespace, so the last component may be followed.
fn proc_link(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/proc/") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let pid = |s: &str| s == "self" || s == "thread-self" || s.bytes().all(|b| b.is_ascii_digit());
    let num = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match parts.as_slice() {
        [p, "ns", "net"] => !p.is_empty() && pid(p),
        [p, "task", t, "ns", "net"] => num(p) && num(t),
        _ => false,
    }
}

/// The namespace type of an nsfs file (CLONE_NEWNET, CLONE_NEWNS, ...).
#[allow(unsafe_code)]
fn ns_type(fd: &OwnedFd) -> Result<i32, Errno> {
    // SAFETY: NS_GET_NSTYPE takes no argument and only returns a value; `fd` is an open
    // descriptor this function borrows for the duration of the call, and it is an nsfs file
    // (the caller checked with fstatfs), so no driver's ioctl of that number can run.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::NS_GET_NSTYPE) };
    Errno::result(r)
}

/// Opens `CNI_NETNS` and checks it is another network namespace; None when the path does not
/// exist (the namespace is gone).
pub(super) fn open_netns(path: &str) -> CniResult<Option<OwnedFd>> {
    let bad = |why: String| CniError::env(format!("CNI_NETNS={path:?}: {why}"));
    let mut flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK;
    if !proc_link(path) {
        flags |= OFlag::O_NOFOLLOW;
    }
    let fd = match open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(Errno::ELOOP) => {
            return Err(bad(
                "is a symbolic link; name the namespace's file itself (/run/netns/NAME, /proc/PID/ns/net)".into(),
            ));
        }
        Err(e) => return Err(bad(format!("cannot open it: {e}"))),
    };
    let fs = fstatfs(&fd).map_err(|e| bad(format!("cannot read its file system: {e}")))?;
    if fs.filesystem_type() != NSFS_MAGIC {
        return Err(bad("is not a namespace file (not on nsfs)".into()));
    }
    let t = ns_type(&fd).map_err(|e| bad(format!("NS_GET_NSTYPE: {e}")))?;
    if t != libc::CLONE_NEWNET {
        return Err(bad(format!(
            "is a namespace of another type ({t:#x}), not a network namespace"
        )));
    }
    let theirs = fstat(&fd).map_err(|e| bad(format!("cannot stat it: {e}")))?;
    let mine = stat("/proc/self/ns/net").map_err(|e| {
        bad(format!(
            "cannot stat the plugin's own /proc/self/ns/net: {e}"
        ))
    })?;
    if (theirs.st_dev, theirs.st_ino) == (mine.st_dev, mine.st_ino) {
        return Err(bad(
            "is the plugin's own network namespace (the host's): a container needs a namespace of its own".into(),
        ));
    }
    Ok(Some(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_procfs_namespace_links_are_followed() {
        for p in [
            "/proc/self/ns/net",
            "/proc/123/ns/net",
            "/proc/1/task/7/ns/net",
        ] {
            assert!(proc_link(p), "{p}");
        }
        for p in [
            "/run/netns/x",
            "/proc/self/ns/mnt",
            "/proc//ns/net",
            "/proc/self/../self/ns/net",
            "/proc/12/task/self/ns/net",
        ] {
            assert!(!proc_link(p), "{p}");
        }
    }
}
