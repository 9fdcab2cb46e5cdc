//! watch's memory: what its last check read of each namespace it listens to, kept while
//! nothing is heard from that namespace, and served to apply and diff on a unix socket
//! (`/run/nsfw/watch-<topology>.sock`, see `plumbing::memory`) so that they enter only the
//! namespaces it cannot vouch for.
//!
//! A namespace is forgotten on any rtnetlink message from it (by anyone, nsfw included) and
//! on any change of its /run/netns entry; everything is forgotten when a socket overran
//! (ENOBUFS: notifications were lost) and when the namespaces' sockets are opened anew. What
//! the kernel never notifies (sysctls written in /proc: the file's, and per-interface ones
//! such as promote_secondaries or addr_gen_mode) is held open ([`super::probe`]) and read
//! again before every answer: a namespace whose values changed is forgotten. Nothing older
//! than `MAX_AGE` is served, and watch reads every place on a sweep twice as often. Each
//! place is encoded once, when kept; an answer is their concatenation.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::probe::{self, HostProbes, Probe};
use crate::plumbing::answer::{self as wire, Place, Verdict};
use crate::plumbing::host_table::{Heard, HostTable};
use crate::plumbing::memory::{Known, MAX_AGE, keepable, socket_path};
use crate::plumbing::observe::link_key;
use crate::plumbing::{self, Link, NsObs};

/// How often watch reads every place whatever it heard.
pub(super) const SWEEP: Duration = Duration::from_secs(30);
/// The longest a slow reader may hold watch up.
const WRITE_WAIT: Duration = Duration::from_millis(200);

/// Opens the files of the namespaces to keep (`probe::open_many`).
type Opener =
    dyn Fn(&BTreeMap<String, (u64, &BTreeMap<String, Option<String>>)>) -> BTreeMap<String, Probe>;

struct Entry {
    ino: u64,
    obs: NsObs,
    at: Instant,
    /// The settings never notified, held open.
    probe: Probe,
    /// The place as the answer carries it (`wire::encode_place`).
    bytes: Vec<u8>,
}

pub(super) struct Memory {
    topology: String,
    places: BTreeMap<String, Entry>,
    /// None: the socket could not be made (said once); watch works on without it.
    listener: Option<(UnixListener, PathBuf, u64)>,
    /// The host's links, while every notification since a dump was heard (None: not vouched
    /// for), and their encoding for the answer once made.
    host: Option<HostTable>,
    host_bytes: Option<Vec<u8>>,
    /// The host's sysctls the file names (set by watch as it loads the file), and the
    /// per-interface ones among them held open.
    pub(super) host_keys: Vec<String>,
    host_probes: HostProbes,
    /// When the next sweep is due.
    pub(super) sweep: Instant,
    /// The next check reads every place.
    full: bool,
    /// What the probes found changed since the last check took the memory: a change as a
    /// notification is, which watch checks (and repairs) like one.
    drift: Vec<String>,
    /// Watch's own repair wrote settings of places it kept: they are forgotten, and the next
    /// check (scheduled for this) keeps them again, held open anew.
    reread: bool,
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
            host: None,
            host_bytes: None,
            host_keys: Vec::new(),
            host_probes: HostProbes::default(),
            sweep: Instant::now() + SWEEP,
            full: false,
            drift: Vec::new(),
            reread: false,
        }
    }

    pub(super) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.listener.as_ref().map(|(l, _, _)| l.as_fd())
    }

    /// The host's sysctls the file names: the host's links are encoded anew with them.
    pub(super) fn set_host_keys(&mut self, keys: Vec<String>) {
        if keys != self.host_keys {
            self.host_keys = keys;
            self.host_bytes = None;
        }
    }

    /// Something was heard from namespace `name`.
    pub(super) fn heard(&mut self, name: &str) {
        self.places.remove(name);
    }

    /// Notifications were lost, or the sockets opened anew: nothing is vouched for.
    pub(super) fn forget(&mut self) {
        self.places.clear();
        self.host = None;
        self.host_bytes = None;
    }

    /// Messages heard on the host's rtnetlink socket, in order: the host's links kept from
    /// them; a link said only in part is read again by its index (one that cannot be read,
    /// and the host is not vouched for until the next check).
    pub(super) fn host_heard(&mut self, msgs: &[Vec<u8>]) {
        let Some(t) = &mut self.host else { return };
        if msgs.is_empty() {
            return;
        }
        self.host_bytes = None;
        let mut again = BTreeSet::new();
        for m in msgs {
            match t.heard(m) {
                Heard::Fine => {}
                Heard::Again(i) => {
                    again.insert(i);
                }
                Heard::Broken => {
                    self.host = None;
                    return;
                }
            }
        }
        if again.is_empty() {
            return;
        }
        let read = plumbing::Conn::open("host").and_then(|mut c| {
            again
                .iter()
                .map(|i| Ok((*i, plumbing::links::link_by_index(&mut c, *i)?)))
                .collect::<anyhow::Result<Vec<_>>>()
        });
        match read {
            Ok(links) => links.into_iter().for_each(|(i, l)| t.put(i, l)),
            Err(_) => self.host = None,
        }
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
    /// watch listens to (`subs`: their inodes when subscribed, taken before the read began),
    /// each with its settings held open (one whose files cannot be opened is not kept).
    pub(super) fn store(&mut self, subs: &BTreeMap<String, u64>, o: &plumbing::Observed) {
        self.store_with(subs, o, &probe::open_many)
    }

    /// [`Memory::store`], opening the files with `open`.
    fn store_with(&mut self, subs: &BTreeMap<String, u64>, o: &plumbing::Observed, open: &Opener) {
        let wanted: BTreeMap<String, (u64, &BTreeMap<String, Option<String>>)> = o
            .namespaces
            .iter()
            .filter(|(name, ns)| !o.remembered.contains(*name) && keepable(ns))
            .filter_map(|(name, ns)| Some((name.clone(), (*subs.get(name)?, &ns.node.sysctls))))
            .collect();
        // The host's links as the check found them; what was heard since follows them.
        let t = HostTable::seeded(&o.host.links);
        self.host_probes.open(&self.host_keys, t.by_index());
        self.host = Some(t);
        self.host_bytes = None;
        let mut probes = open(&wanted);
        let now = Instant::now();
        for (name, (ino, _)) in wanted {
            let (Some(probe), Some(ns)) = (probes.remove(&name), o.namespaces.get(&name)) else {
                continue;
            };
            let bytes = wire::encode_place(&Place {
                name: name.clone(),
                ino,
                obs: ns.clone(),
            });
            let e = Entry {
                ino,
                obs: ns.clone(),
                at: now,
                probe,
                bytes,
            };
            self.places.insert(name, e);
        }
    }

    /// Forgets the places whose settings held open changed (or whose namespace went).
    fn verify(&mut self) {
        let t0 = Instant::now();
        let before = self.places.len();
        // Links made since the check (an apply's) get their files now: compared with what
        // their notification said, and read again from then on.
        if let Some(t) = &self.host {
            self.host_probes.open(&self.host_keys, t.by_index());
        }
        let (changed, host_same) = self.read_again();
        for name in changed {
            self.places.remove(&name);
            self.drift
                .push(format!("{name}: a setting changed in /proc"));
        }
        if !host_same {
            crate::detail!(
                "watch: {}: a setting of the host's links changed: not vouched for",
                self.topology
            );
            self.drift
                .push("host: a setting of its links changed in /proc".to_string());
            self.host = None;
            self.host_bytes = None;
        }
        crate::detail!(
            "watch: {}: {} file(s) of {} namespace(s) and {} of the host read again in {:?}, {} changed",
            self.topology,
            self.places.values().map(|e| e.probe.len()).sum::<usize>(),
            before,
            self.host_probes.len(),
            t0.elapsed(),
            before - self.places.len()
        );
    }

    /// The places whose files no longer say what they said, and whether the host's still do
    /// ([`probe::read_again`]).
    fn read_again(&mut self) -> (Vec<String>, bool) {
        let places: Vec<(&String, &Probe)> =
            self.places.iter().map(|(n, e)| (n, &e.probe)).collect();
        let host = self.host.as_ref().map(|t| {
            (
                &mut self.host_probes,
                self.host_keys.as_slice(),
                t.by_index(),
            )
        });
        probe::read_again(&places, host)
    }

    fn places(&self, now: Instant) -> impl Iterator<Item = (&String, &Entry)> + '_ {
        self.places
            .iter()
            .filter(move |(_, e)| now.duration_since(e.at) < MAX_AGE)
    }

    /// What the memory vouches for now (its settings read again first).
    /// The check that takes it reads what changed: no drift is left to check for.
    pub(super) fn known(&mut self, now: Instant) -> Known {
        self.verify();
        self.drift.clear();
        self.reread = false;
        Known::new(self.places(now).map(|(n, e)| Place {
            name: n.clone(),
            ino: e.ino,
            obs: e.obs.clone(),
        }))
        .with_host(self.host_links())
    }

    /// After watch's own repair: the places whose settings it wrote are forgotten (their
    /// files no longer say what the check read), without counting that as a drift.
    pub(super) fn repaired(&mut self) {
        self.verify();
        if !self.drift.is_empty() {
            self.drift.clear();
            self.reread = true;
        }
    }

    /// What the probes found changed since the last check, and whether a repair's writes
    /// want a check to keep the places again (taken: said once).
    pub(super) fn drifted(&mut self) -> (Vec<String>, bool) {
        (
            std::mem::take(&mut self.drift),
            std::mem::take(&mut self.reread),
        )
    }

    /// The host's links watch vouches for, each with only the per-interface settings held
    /// open (the file's): a setting the kernel does not notify and watch does not hold may
    /// have been written in /proc since, so the caller reads it itself.
    fn host_links(&self) -> Option<Vec<Link>> {
        let mut links = self.host.as_ref()?.links();
        // The keys by link, read once: at 1,000 host links there are as many keys, and
        // looking through them all for each setting of each link took two seconds.
        let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (dev, conf) in self.host_keys.iter().filter_map(|k| link_key(k)) {
            wanted.entry(dev).or_default().insert(conf);
        }
        for l in &mut links {
            match wanted.get(&l.name) {
                Some(c) => l.conf.retain(|conf, _| c.contains(*conf)),
                None => l.conf.clear(),
            }
        }
        Some(links)
    }

    pub(super) fn len(&self) -> usize {
        self.places.len()
    }

    /// Answers every client waiting (the caller drained the notifications first): root's
    /// alone. All that have asked are taken first, and each is sent what watch kept; its held
    /// files are read again only then (a setting written before a question is seen by its
    /// answer), while the clients decode, and what changed ends every answer.
    pub(super) fn serve(&mut self) {
        // Out of `self` while it answers (reading the probes needs `self` whole).
        let Some(listener) = self.listener.take() else {
            return;
        };
        let mut clients = Vec::new();
        while let Ok((s, _)) = listener.0.accept() {
            let root = nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials)
                .is_ok_and(|c| c.uid() == 0);
            if root {
                clients.push(s);
            }
        }
        if !clients.is_empty() {
            self.answer(&mut clients);
        }
        self.listener = Some(listener);
    }

    /// Sends `clients` the head, the places and the host's links as kept, reads the held
    /// files again, and ends each answer with what that took back (`answer::Verdict`).
    fn answer(&mut self, clients: &mut [std::os::unix::net::UnixStream]) {
        let t0 = Instant::now();
        if self.host_bytes.is_none() {
            let links = self.host_links();
            self.host_bytes = Some(wire::encode_host(links.as_deref()));
        }
        let (names, parts): (Vec<String>, Vec<&[u8]>) = self
            .places(Instant::now())
            .map(|(n, e)| (n.clone(), e.bytes.as_slice()))
            .unzip();
        let host = self.host_bytes.as_deref().unwrap_or_default();
        let head = wire::encode_parts(&self.topology, &parts, host);
        let had_host = self.host.is_some();
        for c in clients.iter_mut() {
            let _ = c.set_nonblocking(false);
            let _ = c.set_write_timeout(Some(WRITE_WAIT));
            // Room for all of it in the socket: the write returns at once, and the files are
            // read while the client decodes (else the write waits for the client to read).
            let room = head.len().saturating_add(64 << 10);
            let _ =
                nix::sys::socket::setsockopt(&*c, nix::sys::socket::sockopt::SndBufForce, &room);
            let _ = c.write_all(&head);
        }
        let sent = t0.elapsed();
        self.verify();
        let verdict = Verdict {
            host: self.host.is_some(),
            forgotten: names
                .iter()
                .filter(|n| !self.places.contains_key(*n))
                .cloned()
                .collect(),
        };
        let end = wire::encode_verdict(&verdict);
        for c in clients.iter_mut() {
            let _ = c.write_all(&end);
        }
        crate::detail!(
            "watch: {}: memory of {} namespace(s) sent in {sent:?} ({} bytes), {} of them taken back after{}",
            self.topology,
            names.len(),
            head.len(),
            verdict.forgotten.len(),
            if had_host && !verdict.host {
                " and the host's links"
            } else {
                ""
            }
        );
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

/// Topology `name`'s watch, claimed for this process's life: an abstract unix socket of the
/// host's network namespace bound under the topology's name (no file; the kernel lets go of
/// it when the process ends, however it ends). Binding is the claim, all at once: a second
/// watch gets EADDRINUSE (Err), whether the first answers or is stopped. None: the claim
/// could not be made for another reason (said; watch goes on, as before there was a claim).
pub(super) fn claim(name: &str) -> anyhow::Result<Option<UnixListener>> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(format!("nsfw-watch/{name}"))?;
    match UnixListener::bind_addr(&addr) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => anyhow::bail!(
            "another nsfw watch of {name} is running (its socket is {}): stop it first",
            socket_path(name).display()
        ),
        Err(e) => {
            crate::warning!(
                "watch: {name}: cannot claim the topology ({e}): a second watch of it would not be refused"
            );
            Ok(None)
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
    let path = socket_path(name);
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

    /// Every namespace kept, with no files (the unit tests enter none).
    fn fake(
        w: &BTreeMap<String, (u64, &BTreeMap<String, Option<String>>)>,
    ) -> BTreeMap<String, Probe> {
        w.keys().map(|n| (n.clone(), Probe::default())).collect()
    }

    fn memory() -> Memory {
        Memory {
            topology: "t".into(),
            places: BTreeMap::new(),
            listener: None,
            host: None,
            host_bytes: None,
            host_keys: Vec::new(),
            host_probes: HostProbes::default(),
            sweep: Instant::now() + SWEEP,
            full: false,
            drift: Vec::new(),
            reread: false,
        }
    }

    /// The host's links carry, of their settings, only those the file names for them.
    #[test]
    fn the_hosts_links_carry_only_the_settings_the_file_names() {
        let link = |i: u32, name: &str| {
            let mut l = Link::bare(i, true, false);
            l.name = name.into();
            l.conf.insert("ipv6.addr_gen_mode", "1".into());
            l.conf.insert("ipv6.disable_ipv6", "0".into());
            l
        };
        let mut m = memory();
        m.host = Some(HostTable::seeded(&[link(2, "br0"), link(3, "veth-a")]));
        m.host_keys = vec![
            "net.ipv6.conf.br0.disable_ipv6".into(),
            "net.ipv4.ip_forward".into(),
        ];
        let links = m.host_links().expect("vouched");
        let conf = |n: &str| {
            let l = links.iter().find(|l| l.name == n).expect("the link");
            l.conf.keys().copied().collect::<Vec<_>>()
        };
        assert_eq!(conf("br0"), ["ipv6.disable_ipv6"]);
        assert!(conf("veth-a").is_empty());
    }

    #[test]
    fn a_place_heard_from_is_forgotten_and_read_again() {
        let mut m = memory();
        let subs: BTreeMap<String, u64> = [("a".to_string(), 1), ("b".to_string(), 2)].into();
        // "c" has no socket: nothing heard of it would be known.
        m.store_with(&subs, &observed(&["a", "b", "c"]), &fake);
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
        m.store_with(&subs, &o, &fake);
        assert!(m.known(now).vouch("a", 1, &|_| true, &[]).is_none());
        m.store_with(&subs, &observed(&["a"]), &fake);
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
        m.store_with(&subs, &observed(&["a"]), &fake);
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
        m.store_with(&subs, &o, &fake);
        assert_eq!(m.len(), 0);
    }
}
