//! Named network namespaces, the way `ip netns` keeps them: a bind mount of a namespace's
//! `ns/net` file onto `/run/netns/NAME`, with `/run/netns` a shared mount point so the mounts
//! propagate to every mount namespace.
//!
//! Work inside another namespace always happens on a short-lived OS thread that `setns`es:
//! `setns` changes only the calling thread, and the main thread stays in the host's namespace.
//! A few threads (one per core) visit the namespaces in turn, each opening the namespace and a
//! netlink socket in it, doing its work and closing both before the next, so a run holds a
//! handful of descriptors however many namespaces there are.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::stat::Mode;

use super::rtnl::Conn;

pub(crate) const RUN_DIR: &str = "/run/netns";
pub(crate) const ETC_DIR: &str = "/etc/netns";

pub(crate) fn path(name: &str) -> PathBuf {
    Path::new(RUN_DIR).join(name)
}

/// Names in /run/netns, sorted (dot files, which `ip netns` never makes, are left out). A
/// missing directory means no namespaces.
pub(crate) fn list() -> Result<Vec<String>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(RUN_DIR) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(anyhow!("cannot list {RUN_DIR}: {e}")),
    };
    for ent in rd {
        let ent = ent.with_context(|| format!("cannot list {RUN_DIR}"))?;
        if let Some(n) = ent.file_name().to_str()
            && !n.starts_with('.')
        {
            out.push(n.to_string());
        }
    }
    out.sort();
    Ok(out)
}

/// Opens a named namespace without following a symlink or blocking on a FIFO. `Ok(None)`
/// when there is no such name. Whether it is a namespace shows when it is entered.
pub(crate) fn open_ns(name: &str) -> Result<Option<OwnedFd>> {
    let p = path(name);
    match open(
        &p,
        OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_CLOEXEC
            | OFlag::O_NOCTTY,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) => Ok(None),
        Err(Errno::ELOOP) => Err(anyhow!(
            "namespace {name}: {} is a symlink, not a namespace",
            p.display()
        )),
        Err(e) => Err(anyhow!(
            "namespace {name}: cannot open {}: {e}",
            p.display()
        )),
    }
}

/// Enters namespace `fd` on the calling thread (which must be a worker thread).
pub(crate) fn enter(name: &str, fd: &OwnedFd) -> Result<()> {
    setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| match e {
        Errno::EINVAL => anyhow!(
            "namespace {name} ({}): not a network namespace (a leftover file, not a mount?)",
            path(name).display()
        ),
        Errno::EPERM => anyhow!(
            "namespace {name}: cannot enter it: {e} (entering a namespace needs CAP_SYS_ADMIN)"
        ),
        e => anyhow!("namespace {name}: cannot enter it: {e}"),
    })
}

/// Makes /run/netns exist and be a shared mount point, as `ip netns add` does, so that a
/// namespace mounted here is visible from every mount namespace (including `ip netns exec`'s).
fn prepare_run_dir() -> Result<()> {
    // Once per process: it costs a mount(2) call.
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if DONE.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    let run = crate::state::safefs::open_dir(Path::new("/run"))?
        .ok_or_else(|| anyhow!("/run does not exist"))?;
    drop(crate::state::safefs::ensure_dir(&run, "netns", RUN_DIR)?);
    let shared = || {
        mount(
            None::<&str>,
            RUN_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => {}
        Err(Errno::EINVAL) => {
            // Not a mount point yet: bind it onto itself, then share it.
            mount(
                Some(RUN_DIR),
                RUN_DIR,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .with_context(|| format!("cannot bind-mount {RUN_DIR} onto itself"))?;
            shared().with_context(|| format!("cannot make {RUN_DIR} a shared mount"))?;
        }
        Err(e) => return Err(anyhow!("cannot make {RUN_DIR} a shared mount: {e}")),
    }
    DONE.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// Runs `f` for every name on a few threads (one per core, at most 8), each taking the next
/// name not yet taken; the threads may `setns` or `unshare` freely, they end with the call.
/// Results come in `names`' order.
pub(crate) fn on_threads<T: Send>(
    names: &[String],
    f: &(dyn Fn(&str) -> Result<T> + Sync),
) -> Vec<Result<T>> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8)
        .min(names.len().max(1));
    let (done, refused) = super::threads::on_workers(names, workers, &|n: &String| f(n));
    done.into_iter()
        .zip(names)
        .map(|(r, n)| {
            r.unwrap_or_else(|| match &refused {
                Some(why) => Err(anyhow::Error::new(why.clone()).context(format!("namespace {n}"))),
                None => Err(anyhow!("namespace {n}: its thread did not finish")),
            })
        })
        .collect()
}

/// Visits the named namespaces on worker threads: each is opened, entered, given a netlink
/// connection, and `f` runs there; both are closed before the thread moves on. `Ok(None)`: no
/// such namespace.
pub(crate) fn visit<T: Send>(
    names: &[String],
    f: &(dyn Fn(&str, &mut Conn) -> Result<T> + Sync),
) -> Vec<Result<Option<T>>> {
    visit_identified(names, &|name, _, c| f(name, c))
}

/// Which namespace a name holds: the device and inode of its nsfs file, the same for every
/// name (and every process) that holds the same namespace.
pub(crate) type NsId = (u64, u64);

/// [`visit`], `f` also given the namespace's [`NsId`] (a mount over `/run/netns/B` of
/// namespace A makes B's the same as A's).
pub(crate) fn visit_identified<T: Send>(
    names: &[String],
    f: &(dyn Fn(&str, NsId, &mut Conn) -> Result<T> + Sync),
) -> Vec<Result<Option<T>>> {
    on_threads(names, &|name| {
        let Some(fd) = open_ns(name)? else {
            return Ok(None);
        };
        let id = nix::sys::stat::fstat(&fd)
            .map(|st| (st.st_dev, st.st_ino))
            .map_err(|e| anyhow!("namespace {name}: {e}"))?;
        enter(name, &fd)?;
        drop(fd);
        let mut conn = Conn::open(format!("namespace {name}"))?;
        f(name, id, &mut conn).map(Some)
    })
}

/// Makes one named namespace on the calling thread, which ends up inside it: unshare, let
/// `each` work inside (apply marks the namespace there), and only then create the mount point
/// (never over an existing file) and bind-mount. A namespace appears under /run/netns marked
/// or not at all: a run killed in between leaves at most an empty file, which the record names.
fn make_here(name: &str, each: &(dyn Fn(&str, &mut Conn) -> Result<()> + Sync)) -> Result<()> {
    let p = path(name);
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| anyhow!("namespace {name}: unshare: {e}"))?;
    let mut conn = Conn::open(format!("namespace {name}"))?;
    each(name, &mut conn)?;
    drop(conn);
    // The mount point: an empty file, as `ip netns add` makes it.
    let fd = open(
        &p,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o444),
    )
    .map_err(|e| anyhow!("namespace {name}: cannot create {}: {e}", p.display()))?;
    drop(fd);
    let made = mount(
        Some("/proc/thread-self/ns/net"),
        &p,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        anyhow!(
            "namespace {name}: cannot bind-mount onto {}: {e}",
            p.display()
        )
    });
    if made.is_err() {
        // Leave nothing half-made: an empty file would look like a broken namespace.
        let _ = std::fs::remove_file(&p);
    }
    made
}

/// Creates the named namespaces, without forking: threads unshare their network namespace and
/// bind-mount it onto /run/netns/NAME. The kernel builds namespaces largely in parallel, so up
/// to one thread per core works at once; each makes a share of the names in turn (a new
/// namespace inherits nothing from the one the thread was in). `each` runs inside the new
/// namespace with a connection to it before the namespace is published under /run/netns.
/// Results come in `names`' order.
pub(crate) fn create_many(
    names: &[String],
    each: &(dyn Fn(&str, &mut Conn) -> Result<()> + Sync),
) -> Vec<Result<()>> {
    if let Err(e) = prepare_run_dir() {
        let msg = format!("{e:#}");
        // One error for the lot: every namespace fails for the same reason.
        return names
            .iter()
            .enumerate()
            .map(|(i, _)| {
                if i == 0 {
                    Err(anyhow!("{msg}"))
                } else {
                    Err(anyhow!(""))
                }
            })
            .collect();
    }
    on_threads(names, &|name| make_here(name, each))
}

/// Removes the named namespace, as `ip netns del` does: detach the mount, remove the file. The
/// kernel frees the namespace, and the interfaces in it, once nothing else holds it.
pub(crate) fn delete(name: &str) -> Result<()> {
    let p = path(name);
    match umount2(&p, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => {
            return Err(anyhow!(
                "namespace {name}: cannot unmount {}: {e}",
                p.display()
            ));
        }
    }
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow!(
            "namespace {name}: cannot remove {}: {e}",
            p.display()
        )),
    }
}

/// The processes whose network namespace is one of those named, as (pid, command) by name,
/// read from /proc/PID/ns/net (by inode and device, never by link text) in one pass; a name
/// that is gone or held by its mount alone is not in the map. Deleting such a namespace only
/// detaches its name: the namespace, and the veth pairs into it, live as long as they do.
pub(crate) fn holders(names: &[&str]) -> std::collections::BTreeMap<String, Vec<(u32, String)>> {
    let mut out = std::collections::BTreeMap::new();
    let ids: Vec<(&str, (u64, u64))> = names
        .iter()
        .filter_map(|n| {
            let fd = open_ns(n).ok().flatten()?;
            let st = nix::sys::stat::fstat(&fd).ok()?;
            Some((*n, (st.st_dev, st.st_ino)))
        })
        .collect();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    if ids.is_empty() {
        return out;
    }
    for ent in dir.flatten() {
        let Some(pid) = ent.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(st) = nix::sys::stat::stat(format!("/proc/{pid}/ns/net").as_str()) else {
            continue;
        };
        if let Some((n, _)) = ids.iter().find(|(_, id)| *id == (st.st_dev, st.st_ino)) {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            out.entry(n.to_string())
                .or_insert_with(Vec::new)
                .push((pid, comm.trim().to_string()));
        }
    }
    out
}

/// Runs `f` on a fresh thread that first enters the network namespace `name`.
pub(crate) fn run_in<T, F>(name: &str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let fd = open_ns(name)?.ok_or_else(|| anyhow!("namespace {name} does not exist"))?;
    let owned = name.to_string();
    std::thread::Builder::new()
        .name("nsfw-netns".into())
        .spawn(move || {
            enter(&owned, &fd)?;
            drop(fd);
            f()
        })
        .with_context(|| format!("namespace {name}: cannot start a thread"))?
        .join()
        .map_err(|_| anyhow!("namespace {name}: the namespace thread panicked"))?
}

/// Starts a long-lived thread inside namespace `name` (a server for the checks, say). `setup`
/// runs first and its result is returned once it is done; `serve` then runs on its own until
/// the process ends.
pub(crate) fn spawn_in<S, F>(name: &str, setup: S) -> Result<()>
where
    S: FnOnce() -> Result<F> + Send + 'static,
    F: FnOnce() + Send + 'static,
{
    let fd = open_ns(name)?.ok_or_else(|| anyhow!("namespace {name} does not exist"))?;
    let (tx, rx) = std::sync::mpsc::channel::<Result<()>>();
    let owned = name.to_string();
    std::thread::Builder::new()
        .name("nsfw-netns-serve".into())
        .spawn(move || {
            let ready = enter(&owned, &fd).and_then(|()| setup());
            drop(fd);
            match ready {
                Ok(serve) => {
                    let _ = tx.send(Ok(()));
                    serve();
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        })
        .with_context(|| format!("namespace {name}: cannot start a thread"))?;
    rx.recv()
        .map_err(|_| anyhow!("namespace {name}: the namespace thread ended early"))?
}
