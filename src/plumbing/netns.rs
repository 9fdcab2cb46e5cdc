//! Named network namespaces, the way `ip netns` keeps them: a bind mount of a namespace's
//! `ns/net` file onto `/run/netns/NAME`, with `/run/netns` a shared mount point so the mounts
//! propagate to every mount namespace.
//!
//! Work inside another namespace always happens on a dedicated OS thread that `setns`es and then
//! ends: `setns` changes only the calling thread, and an async worker thread must never be moved.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

pub const RUN_DIR: &str = "/run/netns";
pub const ETC_DIR: &str = "/etc/netns";

pub fn path(name: &str) -> PathBuf {
    Path::new(RUN_DIR).join(name)
}

/// Names in /run/netns, sorted. A missing directory means no namespaces.
pub fn list() -> Result<Vec<String>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(RUN_DIR) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(anyhow!("cannot list {RUN_DIR}: {e}")),
    };
    for ent in rd {
        let ent = ent.with_context(|| format!("cannot list {RUN_DIR}"))?;
        if let Some(n) = ent.file_name().to_str() {
            out.push(n.to_string());
        }
    }
    out.sort();
    Ok(out)
}

/// Opens a named namespace. `Ok(None)` when there is no such name; an error when the file is
/// there but is not a namespace (a leftover of a half-deleted one, say).
pub fn open(name: &str) -> Result<Option<OwnedFd>> {
    let p = path(name);
    match File::open(&p) {
        Ok(f) => Ok(Some(OwnedFd::from(f))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!(
            "namespace {name}: cannot open {}: {e}",
            p.display()
        )),
    }
}

/// Makes /run/netns exist and be a shared mount point, as `ip netns add` does, so that a
/// namespace mounted here is visible from every mount namespace (including `ip netns exec`'s).
fn prepare_run_dir() -> Result<()> {
    // Once per process: it costs a mount(2) call.
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if DONE.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    prepare_run_dir_now()?;
    DONE.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

fn prepare_run_dir_now() -> Result<()> {
    std::fs::create_dir_all(RUN_DIR).with_context(|| format!("cannot create {RUN_DIR}"))?;
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
        Ok(()) => Ok(()),
        Err(nix::Error::EINVAL) => {
            // Not a mount point yet: bind it onto itself, then share it.
            mount(
                Some(RUN_DIR),
                RUN_DIR,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .with_context(|| format!("cannot bind-mount {RUN_DIR} onto itself"))?;
            shared().with_context(|| format!("cannot make {RUN_DIR} a shared mount"))
        }
        Err(e) => Err(anyhow!("cannot make {RUN_DIR} a shared mount: {e}")),
    }
}

/// Runs `f` on a fresh thread that first enters the network namespace `ns`.
pub fn run_in<T, F>(ns: &OwnedFd, what: &str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let fd = ns
        .try_clone()
        .with_context(|| format!("{what}: cannot duplicate the namespace handle"))?;
    let what_owned = what.to_string();
    std::thread::Builder::new()
        .name("nsfw-netns".into())
        .spawn(move || {
            setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| match e {
                nix::Error::EINVAL => anyhow!(
                    "{what_owned}: not a network namespace (a leftover file, not a mount?): {e}"
                ),
                e => anyhow!("{what_owned}: cannot enter the namespace: {e}"),
            })?;
            f()
        })
        .with_context(|| format!("{what}: cannot start a thread"))?
        .join()
        .map_err(|_| anyhow!("{what}: the namespace thread panicked"))?
}

/// Starts a long-lived thread inside namespace `ns` (a server for the checks, say). `setup`
/// runs first and its result is returned once it is done; `serve` then runs on its own until
/// the process ends.
pub fn spawn_in<S, F>(ns: &OwnedFd, what: &str, setup: S) -> Result<()>
where
    S: FnOnce() -> Result<F> + Send + 'static,
    F: FnOnce() + Send + 'static,
{
    let fd = ns
        .try_clone()
        .with_context(|| format!("{what}: cannot duplicate the namespace handle"))?;
    let (tx, rx) = std::sync::mpsc::channel::<Result<()>>();
    let what_owned = what.to_string();
    std::thread::Builder::new()
        .name("nsfw-netns-serve".into())
        .spawn(move || {
            let ready = setns(fd.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(|e| anyhow!("{what_owned}: cannot enter the namespace: {e}"))
                .and_then(|()| setup());
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
        .with_context(|| format!("{what}: cannot start a thread"))?;
    rx.recv()
        .map_err(|_| anyhow!("{what}: the namespace thread ended early"))?
}

/// A namespace just made: its handle, and a netlink socket already opened inside it.
pub struct Made {
    pub fd: OwnedFd,
    pub rtnl: rtnetlink::sys::Socket,
}

/// Opens named namespaces and a netlink socket inside each, a share of them per thread (one
/// per core): a thread `setns`es from one namespace to the next, which costs far less than a
/// thread per namespace. `each` runs on the socket right away, in that thread (observe dumps
/// the namespace there, so many namespaces are read on every core). `Ok(None)`: no such name.
pub fn open_many<T: Send>(
    names: &[String],
    each: &(dyn Fn(&str, &rtnetlink::sys::Socket) -> Result<T> + Sync),
) -> Vec<Result<Option<(Made, T)>>> {
    on_threads(names, &|name| {
        let Some(fd) = open(name)? else {
            return Ok(None);
        };
        setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| match e {
            nix::Error::EINVAL => anyhow!(
                "namespace {name} ({}): not a network namespace (a leftover file, not a mount?): {e}",
                path(name).display()
            ),
            e => anyhow!("namespace {name}: cannot enter the namespace: {e}"),
        })?;
        let rtnl = rtnetlink::sys::Socket::new(rtnetlink::sys::protocols::NETLINK_ROUTE)
            .map_err(|e| anyhow!("namespace {name}: cannot open a netlink socket: {e}"))?;
        let t = each(name, &rtnl)?;
        Ok(Some((Made { fd, rtnl }, t)))
    })
}

/// Runs `f` for every name on a few threads (one per core, at most 8), each taking every
/// k-th name in turn; the threads may `setns` or `unshare` freely, they end with the call.
/// Results come in `names`' order.
fn on_threads<T: Send>(names: &[String], f: &(dyn Fn(&str) -> Result<T> + Sync)) -> Vec<Result<T>> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8)
        .min(names.len().max(1));
    let mut slots: Vec<Option<Result<T>>> = (0..names.len()).map(|_| None).collect();
    std::thread::scope(|sc| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let mine: Vec<(usize, &String)> =
                    names.iter().enumerate().skip(w).step_by(workers).collect();
                std::thread::Builder::new()
                    .name("nsfw-netns".into())
                    .spawn_scoped(sc, move || {
                        mine.into_iter().map(|(i, n)| (i, f(n))).collect::<Vec<_>>()
                    })
            })
            .collect();
        for h in handles.into_iter().flatten() {
            if let Ok(done) = h.join() {
                for (i, r) in done {
                    slots[i] = Some(r);
                }
            }
        }
    });
    slots
        .into_iter()
        .zip(names)
        .map(|(r, n)| r.unwrap_or_else(|| Err(anyhow!("namespace {n}: its thread did not finish"))))
        .collect()
}

/// Makes one named namespace on the calling thread, which ends up inside it: unshare, bind
/// mount onto /run/netns/NAME, open it and a netlink socket in it. On failure nothing is left.
fn make_here(name: &str) -> Result<Made> {
    let p = path(name);
    // The mount point: an empty file, as `ip netns add` makes it.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)
        .map_err(|e| anyhow!("namespace {name}: cannot create {}: {e}", p.display()))?;
    let made = (|| -> Result<Made> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| anyhow!("namespace {name}: unshare: {e}"))?;
        mount(
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
        })?;
        let fd = OwnedFd::from(
            File::open(&p)
                .map_err(|e| anyhow!("namespace {name}: cannot open {}: {e}", p.display()))?,
        );
        let rtnl = rtnetlink::sys::Socket::new(rtnetlink::sys::protocols::NETLINK_ROUTE)
            .map_err(|e| anyhow!("namespace {name}: cannot open a netlink socket: {e}"))?;
        Ok(Made { fd, rtnl })
    })();
    if made.is_err() {
        // Leave nothing half-made: the next apply would take the empty file for a namespace it
        // cannot open.
        let _ = umount2(&p, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&p);
    }
    made
}

/// Creates the named namespaces, without forking: threads unshare their network namespace and
/// bind-mount it onto /run/netns/NAME. The kernel builds namespaces largely in parallel, so up
/// to one thread per core works at once; each thread makes a share of the names in turn
/// (after the first, each unshare starts from the namespace the thread made last, which is
/// fine: a new namespace inherits nothing from the old one). Results come in `names`' order.
///
/// `each` runs on the new namespace's socket in the creating thread (apply marks the
/// namespace there); if it fails, the namespace is removed again.
pub fn create_many(
    names: &[String],
    each: &(dyn Fn(&str, &rtnetlink::sys::Socket) -> Result<()> + Sync),
) -> Vec<Result<Made>> {
    if let Err(e) = prepare_run_dir() {
        let msg = format!("{e:#}");
        return names.iter().map(|_| Err(anyhow!("{msg}"))).collect();
    }
    on_threads(names, &|name| {
        let made = make_here(name)?;
        if let Err(e) = each(name, &made.rtnl) {
            drop(made);
            let _ = delete(name);
            return Err(e);
        }
        Ok(made)
    })
}

/// Removes the named namespace, as `ip netns del` does: detach the mount, remove the file. The
/// kernel frees the namespace, and the interfaces in it, once nothing else holds it.
pub fn delete(name: &str) -> Result<()> {
    let p = path(name);
    match umount2(&p, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => {
            return Err(anyhow!(
                "namespace {name}: cannot unmount {}: {e}",
                p.display()
            ));
        }
    }
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow!(
            "namespace {name}: cannot remove {}: {e}",
            p.display()
        )),
    }
}

/// Reads a sysctl under /proc/sys/net as seen from namespace `ns` (None: the caller's own).
pub fn read_sysctl(ns: Option<&OwnedFd>, key: &str) -> Result<Option<String>> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let read = move || -> Result<Option<String>> {
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s.trim().to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow!("cannot read {path}: {e}")),
        }
    };
    match ns {
        None => read(),
        Some(fd) => run_in(fd, key, read),
    }
}

/// Writes a sysctl under /proc/sys/net as seen from namespace `ns` (None: the caller's own).
pub fn write_sysctl(ns: Option<&OwnedFd>, key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let value = value.to_string();
    let write = move || -> Result<()> {
        std::fs::write(&path, format!("{value}\n"))
            .map_err(|e| anyhow!("cannot write {value} to {path}: {e}"))
    };
    match ns {
        None => write(),
        Some(fd) => run_in(fd, key, write),
    }
}
