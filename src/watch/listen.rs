//! Where watch listens: a socket in each of the file's namespaces (and an nf_tables one in
//! those that may hold a table of nsfw's), opened anew where the namespace under a name
//! changed; and what its memory keeps when the file changes.

use std::collections::{BTreeMap, BTreeSet};

use super::{Watch, dir, events};
use crate::resources::Desired;
use crate::topology::Topology;

impl Watch {
    /// /run/netns and the file's directory watched, once /run/netns exists.
    fn open_dir(&mut self) {
        if self.dir.is_none() {
            self.dir = dir::Dir::open().map(|mut d| {
                d.watch_file(&self.path);
                d
            });
        }
    }

    /// Opens a socket in each of the file's namespaces, as watch starts (later changes go
    /// through `refresh` and `follow`, which keep what the memory can still vouch for).
    pub(super) fn resubscribe(&mut self) {
        let names: Vec<String> = self.names().into_iter().collect();
        self.ns = events::ns_subs(&names, &self.tables());
        // What was heard on the old sockets is not heard on the new ones.
        self.memory.forget();
        self.open_dir();
    }

    /// Opens sockets in each of the file's namespaces that has none, or whose /run/netns
    /// name now holds another namespace than the one it listens to (made anew by an apply
    /// watch did not run, or after it started), and closes those of names gone. Called
    /// under the lock, before a check reads: what changes after is heard, and the memory
    /// vouches for no namespace read before its socket was open (its inode is not in the
    /// check's `subs` until then).
    pub(super) fn refresh(&mut self) {
        self.open_dir();
        let names: Vec<String> = self.names().into_iter().collect();
        let now: BTreeMap<String, u64> = crate::plumbing::memory::inodes(&names)
            .into_iter()
            .map(|(n, (_, ino))| (n, ino))
            .collect();
        let held: BTreeMap<String, u64> = self.ns.iter().filter_map(|s| s.ns.clone()).collect();
        let stale: BTreeSet<String> = held
            .iter()
            .filter(|(n, ino)| now.get(*n) != Some(*ino))
            .map(|(n, _)| n.clone())
            .collect();
        let fresh: Vec<String> = now
            .iter()
            .filter(|(n, ino)| held.get(*n) != Some(*ino))
            .map(|(n, _)| n.clone())
            .collect();
        if stale.is_empty() && fresh.is_empty() {
            return;
        }
        let redo: BTreeSet<String> = stale
            .iter()
            .chain(&fresh)
            .map(|n| format!("namespace {n}"))
            .collect();
        self.ns.retain(|s| !redo.contains(&s.place));
        let subs = events::ns_subs(&fresh, &self.tables());
        crate::detail!(
            "watch: {}: listening anew in {} namespace(s), let go of {}",
            self.t.name,
            subs.iter().filter(|s| s.kind == events::Kind::Rtnl).count(),
            stale.len()
        );
        self.ns.extend(subs);
        for n in stale.iter().chain(&fresh) {
            self.memory.heard(n);
        }
    }

    /// The namespaces that may hold a table of nsfw's (see firewall's router tables).
    fn tables(&self) -> BTreeSet<String> {
        tables_of(&self.t)
    }

    /// After the file changed: what the memory holds of a namespace stays good while the new
    /// file asks the same of it — the sysctls a check reads there, and whether it may hold a
    /// table of nsfw's (the rest of a place is the kernel's, read whole whatever the file
    /// says). Those it asks otherwise, and those it no longer names, are forgotten and their
    /// sockets closed (a socket keeps a namespace alive); `refresh`, under the lock before the
    /// next check, opens sockets in the ones that have none. Opening every socket anew and
    /// forgetting everything made that check read every namespace: 380 ms at 1,000, with an
    /// apply waiting for the lock behind it.
    pub(super) fn follow(&mut self, old: &Topology) {
        let (was, now) = (
            crate::compile::compile(old),
            crate::compile::compile(&self.t),
        );
        let keys = |d: &Desired, n: &str| {
            d.namespaces
                .get(n)
                .map(|x| x.sysctls.keys().cloned().collect::<Vec<_>>())
        };
        let (had, has) = (tables_of(old), self.tables());
        let names = self.names();
        let redo: BTreeSet<String> = old
            .namespaces
            .iter()
            .map(|n| &n.name)
            .chain(names.iter())
            .filter(|n| {
                !names.contains(*n)
                    || keys(&was, n) != keys(&now, n)
                    || had.contains(*n) != has.contains(*n)
            })
            .cloned()
            .collect();
        let places: BTreeSet<String> = redo.iter().map(|n| format!("namespace {n}")).collect();
        self.ns.retain(|s| !places.contains(&s.place));
        for n in &redo {
            self.memory.heard(n);
        }
        crate::detail!(
            "watch: {}: the file changed; the memory keeps {} namespace(s), forgets {}",
            self.t.name,
            self.memory.len(),
            redo.len()
        );
        self.open_dir();
    }
}

/// The namespaces of `t` that may hold a table of nsfw's (see firewall's router tables).
fn tables_of(t: &Topology) -> BTreeSet<String> {
    t.namespaces
        .iter()
        .filter(|n| n.forward || n.masquerade.is_some())
        .map(|n| n.name.clone())
        .collect()
}
