//! The settings the kernel never notifies, held open: per namespace watch vouches for, the
//! /proc/sys files of the sysctls the run reads there (the file's, and the per-interface ones
//! such as `net.ipv4.conf.eth0.promote_secondaries` or `net.ipv6.conf.eth0.addr_gen_mode`,
//! which writing in /proc changes without a word on rtnetlink). A file under /proc/sys/net
//! opened by a thread inside a namespace keeps reading that namespace's value from anywhere
//! afterwards (the kernel binds it at lookup; proven in issue 21's notes), so one pread(2)
//! per file says whether anything changed since the reading watch keeps, without entering
//! the namespace again. A namespace is gone when its files say ENOENT.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};

use anyhow::{Result, anyhow};

use crate::plumbing::{Link, netns, sysctl};

/// One namespace's files, with what each said when the reading was kept.
#[derive(Debug, Default)]
pub(super) struct Probe {
    files: Vec<(File, Vec<u8>)>,
}

impl Probe {
    /// Whether every file still says what it said (an error, or the namespace gone: no).
    pub(super) fn same(&self) -> bool {
        let mut buf = [0u8; 64];
        self.files
            .iter()
            .all(|(f, want)| match f.read_at(&mut buf, 0) {
                Ok(n) => trim(&buf[..n]) == want.as_slice(),
                Err(_) => false,
            })
    }

    pub(super) fn len(&self) -> usize {
        self.files.len()
    }
}

fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

/// For each namespace (its nsfs inode, the sysctls read there with their values), its
/// files opened from inside it, each checked against the value kept (so that a change
/// between the reading and now is seen at once). Left out: it cannot be vouched for (another
/// namespace under the name now, a file that cannot be opened — EMFILE —, a value changed).
/// A setting that did not exist (None) holds no file: it appears with its link, which
/// rtnetlink announces.
pub(super) fn open_many(
    wanted: &BTreeMap<String, (u64, &BTreeMap<String, Option<String>>)>,
) -> BTreeMap<String, Probe> {
    // Files are opened only while RESERVE descriptors stay free for watch's repairs (which
    // open sockets and /proc files of their own): the rest are not vouched for.
    let mut budget = free_fds().saturating_sub(RESERVE);
    let names: Vec<String> = wanted
        .iter()
        .filter(|(_, (_, keys))| {
            let n = keys.values().filter(|v| v.is_some()).count();
            let fits = n <= budget;
            budget = budget.saturating_sub(n);
            fits
        })
        .map(|(n, _)| n.clone())
        .collect();
    let one = |name: &str| -> Result<Probe> {
        let (ino, keys) = wanted.get(name).ok_or_else(|| anyhow!("no such entry"))?;
        let fd = netns::open_ns(name)?.ok_or_else(|| anyhow!("{name} is gone"))?;
        if File::from(fd.try_clone()?).metadata()?.ino() != *ino {
            anyhow::bail!("{name} is another namespace now");
        }
        netns::enter(name, &fd)?;
        let mut p = Probe::default();
        for (k, v) in keys.iter() {
            let Some(v) = v else { continue };
            let f = sysctl::open(k)?.ok_or_else(|| anyhow!("{k} is gone"))?;
            p.files.push((f, v.trim().as_bytes().to_vec()));
        }
        Ok(p)
    };
    names
        .iter()
        .zip(netns::on_threads(&names, &one))
        .filter_map(|(n, r)| Some((n.clone(), r.ok().filter(Probe::same)?)))
        .collect()
}

/// The places of `places` whose files no longer say what they said, and whether the host's
/// still do (true with no host to read: watch does not vouch for it). At 1,000 namespaces
/// that is some 4,000 reads, 9 ms on one thread, and the answer waits for them while the
/// apply that asked parses its file on one core: a thread beside takes the host's files and
/// places up to half of all the files.
pub(super) fn read_again(
    places: &[(&String, &Probe)],
    host: Option<(&mut HostProbes, &[String], &BTreeMap<u32, Link>)>,
) -> (Vec<String>, bool) {
    let host_files = host.as_ref().map_or(0, |(p, _, _)| p.len());
    let total = host_files + places.iter().map(|(_, p)| p.len()).sum::<usize>();
    let (mut k, mut files) = (0, host_files);
    while k < places.len() && files < total / 2 {
        files += places[k].1.len();
        k += 1;
    }
    let (first, second) = places.split_at(k);
    let (beside, rest) = crate::plumbing::threads::beside(
        || {
            let same = host.is_none_or(|(p, keys, links)| p.same(keys, links));
            (changed(first), same)
        },
        || changed(second),
    );
    // A thread that stopped short vouches for nothing it had.
    let (mut out, same) =
        beside.unwrap_or_else(|| (first.iter().map(|(n, _)| (*n).clone()).collect(), false));
    out.extend(rest);
    (out, same)
}

/// The places of `part` whose files no longer say what they said.
fn changed(part: &[(&String, &Probe)]) -> Vec<String> {
    part.iter()
        .filter(|(_, p)| !p.same())
        .map(|(n, _)| (*n).clone())
        .collect()
}

/// The host's per-interface settings the file names (`net.ipv6.conf.veth-a.addr_gen_mode`),
/// held open by link index: the host's links watch keeps carry them, but the kernel does not
/// notify a change written in /proc. Both `open` and `same` run before every answer, over a
/// key per host end at 1,000 namespaces: keys are read in place, never copied.
#[derive(Debug, Default)]
pub(super) struct HostProbes {
    /// By link index, the keys held for it (a handful), each with its file.
    files: BTreeMap<u32, Vec<(String, File)>>,
}

/// The interface a per-interface key names, as the key writes it (a `.` as `/`).
fn dev_of(key: &str) -> Option<&str> {
    sysctl::per_interface(key).map(|(_, dev, _)| dev)
}

/// `links` by their names as a key writes them.
fn by_key_name(links: &BTreeMap<u32, Link>) -> HashMap<Cow<'_, str>, &Link> {
    links
        .values()
        .map(|l| {
            let name = if l.name.contains('.') {
                Cow::Owned(l.name.replace('.', "/"))
            } else {
                Cow::Borrowed(l.name.as_str())
            };
            (name, l)
        })
        .collect()
}

impl HostProbes {
    /// Opens the files of `keys` naming links of `links` that have none yet (watch's own
    /// thread is in the host), and lets go of those of links gone or renamed.
    pub(super) fn open(&mut self, keys: &[String], links: &BTreeMap<u32, Link>) {
        self.files.retain(|i, held| {
            let Some(l) = links.get(i) else { return false };
            held.retain(|(k, _)| dev_of(k).is_some_and(|d| sysctl::is_dev(d, &l.name)));
            !held.is_empty()
        });
        let by_name = by_key_name(links);
        // As `open_many`: RESERVE descriptors stay free for repairs. A file not opened makes
        // `same` say no: the host's links are then not served (slower, never wrong). Counted
        // only once a file is to be opened: this runs before every answer, and listing
        // /proc/self/fd with thousands of files held was a quarter of an answer's work.
        let mut budget = None;
        for k in keys {
            let Some(l) = dev_of(k).and_then(|d| by_name.get(d)) else {
                continue;
            };
            if self.held(l.index, k).is_some() {
                continue;
            }
            let budget = budget.get_or_insert_with(|| free_fds().saturating_sub(RESERVE));
            if *budget == 0 {
                break;
            }
            if let Ok(Some(f)) = sysctl::open(k) {
                self.files.entry(l.index).or_default().push((k.clone(), f));
                *budget -= 1;
            }
        }
    }

    fn held(&self, index: u32, key: &str) -> Option<&File> {
        let held = self.files.get(&index)?;
        held.iter().find(|(k, _)| k == key).map(|(_, f)| f)
    }

    /// Whether, for every key of `keys` naming a link of `links` that carries the setting,
    /// its file is held and says what the link carries. A file that cannot be read is let go
    /// (the next `open` opens it anew): the kernel makes a link's /proc/sys directory again,
    /// under the same index and name, when its MTU goes below IPv6's 1,280 and back or when
    /// it is renamed and back, and a file of the old one never reads again.
    pub(super) fn same(&mut self, keys: &[String], links: &BTreeMap<u32, Link>) -> bool {
        let by_name = by_key_name(links);
        let mut buf = [0u8; 64];
        let mut conf = String::new();
        let mut gone = Vec::new();
        // Every key is looked at, not only up to the first difference: each file that cannot
        // be read is let go at once.
        let mut same = true;
        for k in keys {
            let Some((fam, dev, leaf)) = sysctl::per_interface(k) else {
                continue;
            };
            let Some(l) = by_name.get(dev) else {
                continue;
            };
            // The link's settings are named `ipv6.addr_gen_mode`.
            conf.clear();
            conf.push_str(fam);
            conf.push('.');
            conf.push_str(leaf);
            let Some(want) = l.conf.get(conf.as_str()) else {
                continue;
            };
            let Some(f) = self.held(l.index, k) else {
                same = false;
                continue;
            };
            match f.read_at(&mut buf, 0) {
                Ok(n) => same &= trim(&buf[..n]) == want.trim().as_bytes(),
                Err(_) => {
                    gone.push((l.index, k.as_str()));
                    same = false;
                }
            }
        }
        for (i, k) in gone {
            if let Some(held) = self.files.get_mut(&i) {
                held.retain(|(h, _)| h != k);
            }
        }
        self.files.retain(|_, held| !held.is_empty());
        same
    }

    pub(super) fn len(&self) -> usize {
        self.files.values().map(Vec::len).sum()
    }
}

/// Descriptors left free for the rest of watch (a repair's sockets and files).
const RESERVE: usize = 256;

/// How many more files this process may open now.
fn free_fds() -> usize {
    use nix::sys::resource::{Resource, getrlimit};
    let limit = getrlimit(Resource::RLIMIT_NOFILE).map_or(0, |(soft, _)| soft);
    let open = std::fs::read_dir("/proc/self/fd").map_or(usize::MAX, Iterator::count);
    usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(open)
}

/// Raises the soft limit of open files to the hard one: watch holds a socket or two and a few
/// files per namespace. Said when it cannot (namespaces whose files cannot be opened are not
/// vouched for: slower, never wrong).
pub(super) fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        crate::detail!("watch: cannot raise the open files limit from {soft} to {hard}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_changed_or_a_file_gone_is_seen() {
        let dir = std::env::temp_dir().join(format!("nsfw-probe-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("promote_secondaries");
        std::fs::write(&path, "1\n").expect("written");
        let p = Probe {
            files: vec![(File::open(&path).expect("opened"), b"1".to_vec())],
        };
        assert!(p.same(), "unchanged");
        std::fs::write(&path, "0\n").expect("written");
        assert!(!p.same(), "changed");
        std::fs::write(&path, "1\n").expect("written");
        assert!(p.same(), "the same again");
        assert!(Probe::default().same(), "nothing held, nothing changed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A host setting's file that no longer reads (the kernel made the link's /proc/sys
    /// directory again; here a directory, which reads EISDIR) says "changed" once and is let
    /// go, so that the next `open` holds the new one.
    #[test]
    fn a_host_file_that_no_longer_reads_is_let_go() {
        let key = "net.ipv6.conf.eth0.addr_gen_mode".to_string();
        let mut l = Link::bare(7, true, false);
        l.name = "eth0".into();
        l.conf.insert("ipv6.addr_gen_mode", "1".into());
        let links = BTreeMap::from([(7, l)]);
        let dir = std::env::temp_dir();
        let mut p = HostProbes::default();
        p.files.insert(
            7,
            vec![(key.clone(), File::open(&dir).expect("a directory"))],
        );
        let keys = [key];
        assert!(!p.same(&keys, &links), "unreadable: not the same");
        assert_eq!(p.len(), 0, "let go");
    }
}
