//! Sysctls under /proc/sys, as seen from the calling thread's network namespace (the host's
//! for the main thread, a namespace's for a thread that has entered it).

use anyhow::{Result, anyhow};

/// The file of a key in sysctl(8)'s notation: components separated by `.`, a `.` inside a
/// component (an interface called `br.lan`) written `/`.
fn path(key: &str) -> String {
    let parts: Vec<String> = key.split('.').map(|c| c.replace('/', ".")).collect();
    format!("/proc/sys/{}", parts.join("/"))
}

/// A key naming interface `dev`, in sysctl(8)'s notation.
pub(crate) fn key_for(prefix: &str, dev: &str, leaf: &str) -> String {
    format!("{prefix}.{}.{leaf}", dev.replace('.', "/"))
}

/// A per-interface key's family, interface and setting (`net.ipv4.conf.eth0.promote_secondaries`:
/// `ipv4`, `eth0`, `promote_secondaries`), the interface as the key writes it (a `.` in its
/// name as `/`); None for any other key. Only that place names a link: a link called `conf` or
/// `ipv6` is not named by every key that has the word.
pub(crate) fn per_interface(key: &str) -> Option<(&str, &str, &str)> {
    let mut p = key.split('.');
    let (_, fam, conf, dev, leaf) = (p.next()?, p.next()?, p.next()?, p.next()?, p.next()?);
    (conf == "conf" && p.next().is_none()).then_some((fam, dev, leaf))
}

/// Whether `dev`, as a key writes it ([`per_interface`]), is link `name` (compared without building
/// the key's spelling of the name: a link's name has no `/`).
pub(crate) fn is_dev(dev: &str, name: &str) -> bool {
    dev.len() == name.len()
        && dev
            .bytes()
            .zip(name.bytes())
            .all(|(d, n)| d == n || (d == b'/' && n == b'.'))
}

/// `Ok(None)`: no such setting (its module is not loaded, or its link does not exist).
pub(crate) fn read(key: &str) -> Result<Option<String>> {
    let p = path(key);
    match std::fs::read_to_string(&p) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("cannot read {p}: {e}")),
    }
}

pub(crate) fn write(key: &str, value: &str) -> Result<()> {
    let p = path(key);
    std::fs::write(&p, format!("{value}\n"))
        .map_err(|e| anyhow!("cannot write {value} to {p}: {e}"))
}

/// Key `key`'s file, opened for reading in the calling thread's namespace (`Ok(None)`: no such
/// setting). The open file keeps reading that namespace's value from any thread afterwards:
/// the kernel binds /proc/sys/net's files to the namespace of whoever looked them up (see
/// watch's probes).
pub(crate) fn open(key: &str) -> Result<Option<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let p = path(key);
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&p)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("cannot open {p}: {e}")),
    }
}
