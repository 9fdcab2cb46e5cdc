//! Files in directories other users or programs may write (/etc/netns, /run): every path is
//! opened relative to a directory handle, never following a symlink, never blocking on a FIFO
//! or device, with explicit modes whatever the umask.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use anyhow::{Result, anyhow};
use nix::NixPath;
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

/// The mode of the directories nsfw creates.
pub(crate) const DIR_MODE: u32 = 0o755;
/// The mode of the files nsfw writes.
pub(crate) const FILE_MODE: u32 = 0o644;

fn mode(bits: u32) -> Mode {
    Mode::from_bits_truncate(bits)
}

fn kind(st: &FileStat) -> &'static str {
    match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFREG => "a regular file",
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFLNK => "a symlink",
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        _ => "an unknown kind of file",
    }
}

/// What `name` under `dir` is (without following it), in words: "a symlink", "a FIFO", ...
pub(crate) fn kind_at(dir: impl AsFd, name: &str) -> &'static str {
    match nix::sys::stat::fstatat(&dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => kind(&st),
        Err(_) => "unreadable",
    }
}

/// Opens directory `name` under `dir` without following a symlink in its place: ELOOP for a
/// symlink, ENOTDIR for another kind of file.
pub(crate) fn open_dir_at<P: ?Sized + NixPath>(dir: impl AsFd, name: &P) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Opens an existing directory by absolute path, refusing a symlink in its last component.
/// `Ok(None)`: it does not exist.
pub(crate) fn open_dir(path: &Path) -> Result<Option<OwnedFd>> {
    match open_dir_at(nix::fcntl::AT_FDCWD, path) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) => Ok(None),
        Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => Err(anyhow!(
            "{} is not a directory (a symlink or a file is in its place); nsfw does not follow it",
            path.display()
        )),
        Err(e) => Err(anyhow!("cannot open {}: {e}", path.display())),
    }
}

/// Opens directory `name` under `dir`, creating it (mode 0755) when missing; a symlink or
/// another kind of file in its place is an error.
pub(crate) fn ensure_dir(dir: impl AsFd, name: &str, what: &str) -> Result<OwnedFd> {
    let created = match mkdirat(&dir, name, mode(DIR_MODE)) {
        Ok(()) => true,
        Err(Errno::EEXIST) => false,
        Err(e) => return Err(anyhow!("cannot create {what}: {e}")),
    };
    let fd = open_dir_at(&dir, name).map_err(|e| match e {
        Errno::ELOOP | Errno::ENOTDIR => anyhow!(
            "{what} is not a directory (a symlink or a file is in its place); nsfw does not follow it"
        ),
        e => anyhow!("cannot open {what}: {e}"),
    })?;
    if created {
        // mkdir's mode is filtered by the umask: say what is meant.
        fchmod(&fd, mode(DIR_MODE)).map_err(|e| anyhow!("cannot set the mode of {what}: {e}"))?;
    }
    Ok(fd)
}

/// What a directory entry turned out to be when read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    Missing,
    /// A regular file's bytes.
    File(Vec<u8>),
    /// Something nsfw does not read: a symlink, FIFO, device, directory, ...
    Other(&'static str),
}

/// Reads `name` under `dir` without following a symlink or blocking on a FIFO.
pub(crate) fn read_at(dir: impl AsFd, name: &str) -> Result<Entry> {
    let fd = match openat(
        &dir,
        name,
        OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_CLOEXEC
            | OFlag::O_NOCTTY,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(Entry::Missing),
        Err(Errno::ELOOP) => return Ok(Entry::Other("a symlink")),
        Err(Errno::ENXIO) => return Ok(Entry::Other("a socket or device")),
        Err(e) => return Err(anyhow!("cannot open {name}: {e}")),
    };
    let st = fstat(&fd).map_err(|e| anyhow!("cannot stat {name}: {e}"))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Ok(Entry::Other(kind(&st)));
    }
    let mut f = std::fs::File::from(fd);
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut buf).map_err(|e| anyhow!("cannot read {name}: {e}"))?;
    Ok(Entry::File(buf))
}

/// Writes `name` under `dir` whole or not at all: a temporary file beside it (never following
/// a symlink, mode `bits` whatever the umask), renamed over it. Whatever was at `name` (a
/// symlink included) is replaced, not followed.
pub(crate) fn write_at(dir: impl AsFd, name: &str, content: &[u8], bits: u32) -> Result<()> {
    let tmp = format!(".{name}.nsfw");
    match unlinkat(&dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(anyhow!("cannot remove the leftover {tmp}: {e}")),
    }
    let fd = openat(
        &dir,
        tmp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        mode(bits),
    )
    .map_err(|e| anyhow!("cannot create {tmp}: {e}"))?;
    fchmod(&fd, mode(bits)).map_err(|e| anyhow!("cannot set the mode of {tmp}: {e}"))?;
    let mut f = std::fs::File::from(fd);
    let written = f.write_all(content);
    drop(f);
    if let Err(e) = written {
        let _ = unlinkat(&dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        return Err(anyhow!("cannot write {tmp}: {e}"));
    }
    renameat(&dir, tmp.as_str(), &dir, name).map_err(|e| {
        let _ = unlinkat(&dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        anyhow!("cannot put {name} in place: {e}")
    })
}

/// Removes file `name` under `dir`; a missing file is no error.
pub(crate) fn remove_at(dir: impl AsFd, name: &str) -> Result<()> {
    match unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(anyhow!("cannot remove {name}: {e}")),
    }
}

/// Removes directory `name` under `dir` if it is empty; anything else is left alone.
pub(crate) fn remove_empty_dir_at(dir: impl AsFd, name: &str) {
    let _ = unlinkat(&dir, name, UnlinkatFlags::RemoveDir);
}
