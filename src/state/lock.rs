//! One nsfw changes the host at a time: `/run/nsfw/lock`, an flock held exclusively by apply
//! and flush and shared by diff and status. The holder of the exclusive lock writes its pid
//! into the file so that a waiting run can say whom it waits for. The kernel drops the lock
//! when the process ends, however it ends.

use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Result, anyhow, bail};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag, openat};
use nix::sys::stat::{Mode, fchmod};

use super::safefs;

pub(crate) const STATE_DIR: &str = "/run/nsfw";

/// Opens /run/nsfw (creating it, 0755), refusing one that is not root's own or that others
/// can write: whoever controls it could make nsfw write elsewhere.
pub(crate) fn state_dir() -> Result<OwnedFd> {
    let run = safefs::open_dir(Path::new("/run"))?.ok_or_else(|| anyhow!("/run does not exist"))?;
    let fd = safefs::ensure_dir(&run, "nsfw", STATE_DIR)?;
    let f = std::fs::File::from(fd.try_clone()?);
    let md = f.metadata()?;
    if md.uid() != 0 || md.mode() & 0o022 != 0 {
        bail!(
            "{STATE_DIR} is not owned by root or can be written by others (mode {:o}, owner {}); remove it and run nsfw again",
            md.mode() & 0o7777,
            md.uid()
        );
    }
    Ok(fd)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// apply, flush: nobody else may change or read half-made state.
    Exclusive,
    /// diff, status: several readers at once, none while a change runs.
    Shared,
}

/// The held lock, and the state directory it lives in.
pub(crate) struct Lock {
    _file: Flock<std::fs::File>,
    dir: OwnedFd,
}

impl Lock {
    pub(crate) fn dir(&self) -> &OwnedFd {
        &self.dir
    }
}

fn holder(f: &mut std::fs::File) -> Option<u32> {
    let mut s = String::new();
    f.rewind().ok()?;
    f.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

/// Opens the state directory and the lock file in it. A reader who may not write it (a user
/// other than root running diff or status) takes its shared lock read-only: flock needs no
/// write access.
fn open_lock(access: Access) -> Result<(OwnedFd, std::fs::File)> {
    let dir = state_dir()?;
    let open = |flags: OFlag| {
        openat(
            &dir,
            "lock",
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(safefs::FILE_MODE),
        )
    };
    let fd = match open(OFlag::O_RDWR | OFlag::O_CREAT) {
        Err(Errno::EACCES) if access == Access::Shared => open(OFlag::O_RDONLY),
        r => r,
    }
    .map_err(|e| anyhow!("cannot open {STATE_DIR}/lock: {e}"))?;
    let _ = fchmod(fd.as_fd(), Mode::from_bits_truncate(safefs::FILE_MODE));
    Ok((dir, std::fs::File::from(fd)))
}

/// Writes the holder's pid into an exclusively held lock, for whoever waits.
fn held(mut locked: Flock<std::fs::File>, access: Access, dir: OwnedFd) -> Lock {
    if access == Access::Exclusive {
        let pid = std::process::id();
        let f: &mut std::fs::File = &mut locked;
        let _ = f.set_len(0);
        let _ = f.rewind();
        let _ = writeln!(f, "{pid}");
    }
    Lock { _file: locked, dir }
}

/// Takes the lock if it is free, waiting for it at most `within` (polling: a short wait for
/// callers such as a CNI runtime, which would rather hear "try again later" than hang).
/// `Ok(None)`: still taken when the time was up.
pub(crate) fn acquire_within(access: Access, within: std::time::Duration) -> Result<Option<Lock>> {
    let (dir, mut file) = open_lock(access)?;
    let arg = match access {
        Access::Exclusive => FlockArg::LockExclusiveNonblock,
        Access::Shared => FlockArg::LockSharedNonblock,
    };
    let start = std::time::Instant::now();
    let mut pause = std::time::Duration::from_micros(500);
    loop {
        match Flock::lock(file, arg) {
            Ok(l) => return Ok(Some(held(l, access, dir))),
            Err((f, Errno::EWOULDBLOCK)) | Err((f, Errno::EINTR)) => {
                if start.elapsed() >= within {
                    return Ok(None);
                }
                file = f;
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(10));
            }
            Err((_, e)) => bail!("cannot lock {STATE_DIR}/lock: {e}"),
        }
    }
}

/// Takes the lock. When another run holds it: with `wait`, says so on stderr (naming the
/// holder's pid) and waits; without, fails at once.
pub(crate) fn acquire(access: Access, wait: bool) -> Result<Lock> {
    let (dir, file) = open_lock(access)?;
    let (now, later) = match access {
        Access::Exclusive => (FlockArg::LockExclusiveNonblock, FlockArg::LockExclusive),
        Access::Shared => (FlockArg::LockSharedNonblock, FlockArg::LockShared),
    };
    let locked = match Flock::lock(file, now) {
        Ok(l) => l,
        Err((mut file, Errno::EWOULDBLOCK)) => {
            let who = match holder(&mut file) {
                Some(pid) => format!("another nsfw (pid {pid})"),
                None => "another nsfw".to_string(),
            };
            if !wait {
                bail!(
                    "{who} is changing the host; try again when it is done (or drop --no-wait to wait)"
                );
            }
            crate::output::err(format_args!("nsfw: waiting for {who} to finish..."));
            loop {
                match Flock::lock(file, later) {
                    Ok(l) => break l,
                    Err((f, Errno::EINTR)) => {
                        crate::signals::check()?;
                        file = f;
                    }
                    Err((_, e)) => bail!("cannot lock {STATE_DIR}/lock: {e}"),
                }
            }
        }
        Err((_, e)) => bail!("cannot lock {STATE_DIR}/lock: {e}"),
    };
    Ok(held(locked, access, dir))
}
