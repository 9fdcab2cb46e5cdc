//! The resolv.conf files nsfw keeps for its namespaces, `/etc/netns/<ns>/resolv.conf`, which
//! `ip netns exec` (and `nsfw exec`) bind-mount over /etc/resolv.conf. /etc/netns may hold
//! anything anyone put there: every access goes through `state::safefs` (no symlink
//! followed, no FIFO opened for good), and what nsfw cannot read is reported, not fatal.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::netns::ETC_DIR;
use super::objects::FileObs;
use crate::state::safefs::{self, Entry};

const FILE: &str = "resolv.conf";

pub(crate) fn resolv_path(ns: &str) -> PathBuf {
    Path::new(ETC_DIR).join(ns).join(FILE)
}

/// What /etc/netns holds.
#[derive(Default)]
pub(crate) struct EtcNetns {
    /// `/etc/netns/<ns>/resolv.conf`, by namespace name.
    pub resolv: BTreeMap<String, FileObs>,
    /// Entries nsfw cannot look into, with why.
    pub problems: Vec<String>,
    /// The directories nsfw may remove once its resolv.conf is gone (nothing else in them),
    /// by namespace name.
    pub dirs: BTreeSet<String>,
    /// The directories that hold something besides resolv.conf (`hosts`, say): never removed,
    /// with what they hold.
    pub busy: BTreeMap<String, Vec<String>>,
}

/// Reads every `/etc/netns/*/resolv.conf`; entries that are not what they should be are
/// problems.
pub(crate) fn read_resolv() -> Result<EtcNetns> {
    let mut o = EtcNetns::default();
    let Some(etc) = safefs::open_dir(Path::new(ETC_DIR))? else {
        return Ok(o);
    };
    let rd = match std::fs::read_dir(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&etc)
    )) {
        Ok(rd) => rd,
        Err(e) => {
            o.problems.push(format!("cannot list {ETC_DIR}: {e}"));
            return Ok(o);
        }
    };
    let etc_dev = nix::sys::stat::fstat(&etc).ok().map(|s| s.st_dev);
    for ent in rd.flatten() {
        let Some(name) = ent.file_name().to_str().map(str::to_string) else {
            o.problems.push(format!(
                "{ETC_DIR}/{:?}: not a UTF-8 name; ignored",
                ent.file_name()
            ));
            continue;
        };
        let dir = match safefs::open_dir_at(&etc, name.as_str()) {
            Ok(d) => d,
            Err(_) => {
                let what = safefs::kind_at(&etc, &name);
                o.resolv.insert(
                    name.clone(),
                    FileObs::Other(format!("unreachable: {ETC_DIR}/{name} is {what}")),
                );
                continue;
            }
        };
        // A directory of another file system (a bind mount, say) is someone else's: nsfw never
        // writes through it, nor removes from it. (A bind mount from /etc/netns's own file
        // system has the same st_dev and is not told apart.)
        if nix::sys::stat::fstat(&dir).ok().map(|s| s.st_dev) != etc_dev {
            o.resolv.insert(
                name.clone(),
                FileObs::Other(format!(
                    "unreachable: {ETC_DIR}/{name} is a mount point (another file system), which nsfw does not write through"
                )),
            );
            continue;
        }
        let others = others_in(&dir);
        if others.is_empty() {
            o.dirs.insert(name.clone());
        } else {
            o.busy.insert(name.clone(), others);
        }
        match safefs::read_at(&dir, FILE) {
            Ok(Entry::Missing) => {}
            Ok(Entry::File(bytes)) => {
                let f = match String::from_utf8(bytes) {
                    Ok(s) => FileObs::Text(s),
                    Err(_) => FileObs::Other("a file that is not UTF-8 text".into()),
                };
                o.resolv.insert(name, f);
            }
            Ok(Entry::Other(kind)) => {
                o.resolv.insert(name, FileObs::Other(kind.to_string()));
            }
            Err(e) => {
                o.resolv
                    .insert(name, FileObs::Other(format!("unreadable: {e:#}")));
            }
        }
    }
    Ok(o)
}

/// What a namespace's directory holds besides nsfw's resolv.conf (and a write's temporary).
fn others_in(dir: &std::os::fd::OwnedFd) -> Vec<String> {
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(dir));
    std::fs::read_dir(path)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != FILE && n != ".resolv.conf.nsfw")
                .collect()
        })
        .unwrap_or_default()
}

/// Writes `/etc/netns/<ns>/resolv.conf` whole (mode 0644 in a 0755 directory, whatever the
/// umask), replacing whatever is at the name without following it.
pub(crate) fn write_resolv(ns: &str, content: &str) -> Result<()> {
    let etc = safefs::open_dir(Path::new("/etc"))?
        .ok_or_else(|| anyhow::anyhow!("/etc does not exist"))?;
    let netns = safefs::ensure_dir(&etc, "netns", ETC_DIR)?;
    let dir = safefs::ensure_dir(&netns, ns, &format!("{ETC_DIR}/{ns}"))?;
    safefs::write_at(&dir, FILE, content.as_bytes(), safefs::FILE_MODE)
        .map_err(|e| anyhow::anyhow!("{}: {e:#}", resolv_path(ns).display()))
}

/// Removes `/etc/netns/<ns>/resolv.conf`, and the directory when nothing else is in it.
pub(crate) fn remove_resolv(ns: &str) -> Result<()> {
    let Some(netns) = safefs::open_dir(Path::new(ETC_DIR))? else {
        return Ok(());
    };
    let dir = match safefs::open_dir_at(&netns, ns) {
        Ok(d) => d,
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(anyhow::anyhow!("{ETC_DIR}/{ns}: {e}")),
    };
    safefs::remove_at(&dir, FILE)
        .map_err(|e| anyhow::anyhow!("{}: {e:#}", resolv_path(ns).display()))?;
    // What a write killed half-way leaves beside it.
    safefs::remove_at(&dir, ".resolv.conf.nsfw")?;
    drop(dir);
    safefs::remove_empty_dir_at(&netns, ns);
    Ok(())
}
