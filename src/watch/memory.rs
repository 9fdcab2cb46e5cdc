//! watch's memory: what its last check read of each namespace it listens to, kept while
//! nothing is heard from that namespace, and served to apply and diff on a unix socket
//! (`/run/nsfw/watch-<topology>.sock`, see `plumbing::memory`) so that they enter only the
//! namespaces it cannot vouch for.
//!
//! A namespace is forgotten on any rtnetlink message from it (by anyone, nsfw included) and
//! on any change of its /run/netns entry; everything is forgotten when a socket overran
//! (ENOBUFS: notifications were lost) and when the namespaces' sockets are opened anew. What
//! the kernel never notifies (a few per-interface sysctls written in /proc) is covered by
//! age: nothing older than `MAX_AGE` is served, and watch reads every place on a sweep
//! twice as often.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::plumbing::memory::{self as wire, Answer, Known, MAX_AGE, PROTO, Place};
use crate::plumbing::{self, NsObs};

/// How often watch reads every place whatever it heard.
pub(super) const SWEEP: Duration = Duration::from_secs(30);
/// The longest a slow reader may hold watch up.
const WRITE_WAIT: Duration = Duration::from_millis(200);

struct Entry {
    ino: u64,
    obs: NsObs,
    at: Instant,
}

pub(super) struct Memory {
    topology: String,
    places: BTreeMap<String, Entry>,
    /// None: the socket could not be made (said once); watch works on without it.
    listener: Option<(UnixListener, PathBuf, u64)>,
    /// When the next sweep is due.
    pub(super) sweep: Instant,
    /// The next check reads every place.
    full: bool,
}

impl Memory {
    /// An empty memory, served on topology `name`'s socket.
    pub(super) fn open(name: &str) -> Memory {
        let listener = match listen(name) {
            Ok(l) => Some(l),
            Err(e) => {
                crate::error!(
                    "watch: {name}: cannot serve its memory ({e:#}): apply and diff read every namespace"
                );
                None
            }
        };
        Memory {
            topology: name.to_string(),
            places: BTreeMap::new(),
            listener,
            sweep: Instant::now() + SWEEP,
            full: false,
        }
    }

    pub(super) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.listener.as_ref().map(|(l, _, _)| l.as_fd())
    }

    /// Something was heard from namespace `name`.
    pub(super) fn heard(&mut self, name: &str) {
        self.places.remove(name);
    }

    /// Notifications were lost, or the sockets opened anew: nothing is vouched for.
    pub(super) fn forget(&mut self) {
        self.places.clear();
    }

    /// Whether a sweep is due at `now`: then the next check reads every place.
    pub(super) fn sweep_due(&mut self, now: Instant) -> bool {
        if now < self.sweep {
            return false;
        }
        self.sweep = now + SWEEP;
        self.full = true;
        true
    }

    /// What the check about to run may take instead of reading (None: a sweep is due, it
    /// reads everything).
    pub(super) fn for_check(&mut self, now: Instant) -> Option<Known> {
        if std::mem::take(&mut self.full) {
            return None;
        }
        Some(self.known(now))
    }

    /// Keeps what a check read (`o`, but what the memory itself supplied) of the namespaces
    /// watch listens to (`subs`: their inodes when subscribed, taken before the read began).
    pub(super) fn store(&mut self, subs: &BTreeMap<String, u64>, o: &plumbing::Observed) {
        let now = Instant::now();
        for (name, ns) in &o.namespaces {
            let Some(ino) = subs.get(name) else { continue };
            if o.remembered.contains(name) || !wire::keepable(ns) {
                continue;
            }
            self.places.insert(
                name.clone(),
                Entry {
                    ino: *ino,
                    obs: ns.clone(),
                    at: now,
                },
            );
        }
    }

    fn places(&self, now: Instant) -> impl Iterator<Item = Place> + '_ {
        self.places
            .iter()
            .filter(move |(_, e)| now.duration_since(e.at) < MAX_AGE)
            .map(|(n, e)| Place {
                name: n.clone(),
                ino: e.ino,
                obs: e.obs.clone(),
            })
    }

    pub(super) fn known(&self, now: Instant) -> Known {
        Known::new(self.places(now))
    }

    pub(super) fn len(&self) -> usize {
        self.places.len()
    }

    /// Answers every client waiting (the caller drained the notifications first): root's
    /// alone.
    pub(super) fn serve(&mut self) {
        let Some((l, _, _)) = &self.listener else {
            return;
        };
        let mut bytes = None;
        while let Ok((mut s, _)) = l.accept() {
            let root = nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials)
                .is_ok_and(|c| c.uid() == 0);
            if !root {
                continue;
            }
            let b = bytes.get_or_insert_with(|| {
                let t0 = Instant::now();
                let b = wire::encode(&Answer {
                    proto: PROTO,
                    topology: self.topology.clone(),
                    places: self.places(Instant::now()).collect(),
                });
                crate::detail!(
                    "watch: {}: memory of {} namespace(s) encoded in {:?} ({} bytes)",
                    self.topology,
                    self.places.len(),
                    t0.elapsed(),
                    b.len()
                );
                b
            });
            let _ = s.set_nonblocking(false);
            let _ = s.set_write_timeout(Some(WRITE_WAIT));
            let _ = s.write_all(b);
        }
    }
}

impl Drop for Memory {
    /// The socket goes with watch, unless another watch has put its own there since.
    fn drop(&mut self) {
        if let Some((_, path, ino)) = &self.listener
            && std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == *ino)
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Binds topology `name`'s socket, 0600 in root's /run/nsfw; a socket left there (a watch
/// killed) is replaced, anything else refused.
fn listen(name: &str) -> anyhow::Result<(UnixListener, PathBuf, u64)> {
    if name.contains('/') {
        anyhow::bail!("the topology's name has a slash");
    }
    drop(crate::state::lock::state_dir()?);
    let path = wire::socket_path(name);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(&path)?,
        Ok(_) => anyhow::bail!("{} is there and is not a socket", path.display()),
        Err(_) => {}
    }
    let l = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    l.set_nonblocking(true)?;
    let ino = std::fs::symlink_metadata(&path)?.ino();
    Ok((l, path, ino))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(names: &[&str]) -> plumbing::Observed {
        let mut o = plumbing::Observed::default();
        for n in names {
            o.namespaces.insert(n.to_string(), NsObs::default());
        }
        o
    }

    fn memory() -> Memory {
        Memory {
            topology: "t".into(),
            places: BTreeMap::new(),
            listener: None,
            sweep: Instant::now() + SWEEP,
            full: false,
        }
    }

    #[test]
    fn a_place_heard_from_is_forgotten_and_read_again() {
        let mut m = memory();
        let subs: BTreeMap<String, u64> = [("a".to_string(), 1), ("b".to_string(), 2)].into();
        // "c" has no socket: nothing heard of it would be known.
        m.store(&subs, &observed(&["a", "b", "c"]));
        let now = Instant::now();
        let k = m.known(now);
        assert_eq!(k.len(), 2);
        assert!(k.vouch("a", 1, &|_| true, &[]).is_some());
        assert!(k.vouch("b", 9, &|_| true, &[]).is_none(), "another inode");
        m.heard("a");
        assert!(m.known(now).vouch("a", 1, &|_| true, &[]).is_none());
        // What the memory supplied is not read again, so not stored as fresh.
        let mut o = observed(&["a"]);
        o.remembered.insert("a".into());
        m.store(&subs, &o);
        assert!(m.known(now).vouch("a", 1, &|_| true, &[]).is_none());
        m.store(&subs, &observed(&["a"]));
        assert!(m.known(now).vouch("a", 1, &|_| true, &[]).is_some());
        m.forget();
        assert_eq!(
            m.known(now).len(),
            0,
            "lost notifications forget everything"
        );
    }

    #[test]
    fn old_places_are_not_served_and_a_sweep_reads_everything() {
        let mut m = memory();
        let subs: BTreeMap<String, u64> = [("a".to_string(), 1)].into();
        m.store(&subs, &observed(&["a"]));
        let now = Instant::now();
        assert_eq!(m.known(now + MAX_AGE).len(), 0, "too old");
        assert!(m.for_check(now).is_some());
        assert!(!m.sweep_due(now));
        assert!(m.sweep_due(now + SWEEP), "the sweep is due");
        assert!(!m.sweep_due(now + SWEEP), "once");
        assert!(m.for_check(now).is_none(), "it reads everything");
        assert!(m.for_check(now).is_some(), "and is done");
    }

    #[test]
    fn shaped_namespaces_are_always_read() {
        let mut m = memory();
        let subs: BTreeMap<String, u64> = [("a".to_string(), 1)].into();
        let mut o = observed(&["a"]);
        let mut l = crate::plumbing::Link::bare(2, true, false);
        l.qdisc = Some("tbf".into());
        if let Some(ns) = o.namespaces.get_mut("a") {
            ns.node.links.push(l);
        }
        m.store(&subs, &o);
        assert_eq!(m.len(), 0);
    }
}
