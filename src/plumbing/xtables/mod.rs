//! iptables-legacy's tables (x_tables, outside nf_tables), read and rewritten as the kernel
//! offers them to iptables itself: `IPT_SO_GET_INFO` and `IPT_SO_GET_ENTRIES` on a raw socket
//! read a table whole; `IPT_SO_SET_REPLACE` swaps it whole for another (the only way to
//! change one), the counters of what stays carried over with `IPT_SO_SET_ADD_COUNTERS`. The
//! IPv6 tables (`IP6T_SO_*`) are the same calls on an IPv6 socket. No iptables binary.
//!
//! Only the tables `/proc/net/ip_tables_names` lists are asked for: asking for another would
//! make the kernel load (and so create) it.

mod blob;
mod sockopt;
mod text;

use std::os::fd::AsFd;

use anyhow::{Context, Result, anyhow, bail};
use socket2::{Domain, Protocol, Socket, Type};

pub(crate) use text::nat_stmt;

/// IPv4 (`iptables-legacy`) or IPv6 (`ip6tables-legacy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Family {
    V4,
    V6,
}

impl Family {
    /// The command that shows these tables.
    pub(crate) fn command(self) -> &'static str {
        match self {
            Family::V4 => "iptables-legacy",
            Family::V6 => "ip6tables-legacy",
        }
    }

    fn names_file(self) -> &'static str {
        match self {
            Family::V4 => "/proc/net/ip_tables_names",
            Family::V6 => "/proc/net/ip6_tables_names",
        }
    }

    /// The socket and its option level.
    fn socket(self) -> Result<(Socket, i32)> {
        let (d, level) = match self {
            Family::V4 => (Domain::IPV4, libc::SOL_IP),
            Family::V6 => (Domain::IPV6, libc::SOL_IPV6),
        };
        let s = Socket::new(d, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW))).with_context(
            || {
                format!(
                    "cannot open a raw socket to read {}'s tables",
                    self.command()
                )
            },
        )?;
        Ok((s, level))
    }
}

// linux/netfilter_ipv4/ip_tables.h (the IPv6 numbers are the same).
const SO_SET_REPLACE: i32 = 64;
const SO_SET_ADD_COUNTERS: i32 = 65;
const SO_GET_INFO: i32 = 64;
const SO_GET_ENTRIES: i32 = 65;
/// `struct ipt_getinfo`: name[32], valid_hooks, hook_entry[5], underflow[5], num_entries, size.
const GETINFO_LEN: usize = 84;
/// `struct ipt_get_entries`: name[32], size, then (8-aligned) the entries.
const GET_ENTRIES_HEAD: usize = 40;
/// `struct ipt_replace`: name[32], valid_hooks, num_entries, size, hook_entry[5],
/// underflow[5], num_counters, the counters' address, then the entries.
const REPLACE_HEAD: usize = 96;

/// The tables of `f` the kernel has loaded.
/// No file (x_tables not built or not loaded) is no tables; a file that cannot be read (a
/// user who may not) is an error, for the caller to say.
pub(crate) fn tables(f: Family) -> std::io::Result<Vec<String>> {
    match std::fs::read_to_string(f.names_file()) {
        Ok(t) => Ok(t
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Each built-in chain's policy: (chain, `accept` | `drop` | `other`).
pub(crate) type Policies = Vec<(String, String)>;

/// A rule to find again: its chain and its key.
type Wanted = (String, Vec<u8>);

/// A table read whole.
#[derive(Clone, Debug)]
pub(crate) struct Table {
    pub family: Family,
    pub name: String,
    valid_hooks: u32,
    hook_entry: [u32; 5],
    underflow: [u32; 5],
    num_entries: u32,
    blob: Vec<u8>,
}

/// A rule of a table: its chain, its place there (1-based, as `iptables -L --line-numbers`),
/// its text (as `nft` prints the same line), and its key (what it is, for removing it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    pub chain: String,
    pub pos: usize,
    pub text: String,
    pub key: Vec<u8>,
}

fn name_field(name: &str) -> Result<[u8; 32]> {
    let mut b = [0u8; 32];
    if name.len() >= 32 {
        bail!("table name {name} is too long");
    }
    b[..name.len()].copy_from_slice(name.as_bytes());
    Ok(b)
}

fn u32s<const N: usize>(b: &[u8], at: usize) -> [u32; N] {
    std::array::from_fn(|i| blob::u32_at(b, at + 4 * i).unwrap_or(u32::MAX))
}

/// Reads table `name` of `f`.
pub(crate) fn read(f: Family, name: &str) -> Result<Table> {
    let (s, level) = f.socket()?;
    read_on(&s, level, f, name)
}

fn read_on(s: &Socket, level: i32, f: Family, name: &str) -> Result<Table> {
    let what = || format!("{} table {name}", f.command());
    let mut info = vec![0u8; GETINFO_LEN];
    info[..32].copy_from_slice(&name_field(name)?);
    sockopt::get(s.as_fd(), level, SO_GET_INFO, &mut info)
        .with_context(|| format!("cannot read {}", what()))?;
    let size = blob::u32_at(&info, 80).unwrap_or(0) as usize;
    let mut buf = vec![0u8; GET_ENTRIES_HEAD + size];
    buf[..32].copy_from_slice(&name_field(name)?);
    buf[32..36].copy_from_slice(&u32::try_from(size)?.to_ne_bytes());
    sockopt::get(s.as_fd(), level, SO_GET_ENTRIES, &mut buf)
        .with_context(|| format!("cannot read the rules of {}", what()))?;
    Ok(Table {
        family: f,
        name: name.to_string(),
        valid_hooks: blob::u32_at(&info, 32).unwrap_or(0),
        hook_entry: u32s(&info, 36),
        underflow: u32s(&info, 56),
        num_entries: blob::u32_at(&info, 76).unwrap_or(0),
        blob: buf.split_off(GET_ENTRIES_HEAD),
    })
}

impl Table {
    /// Its rules, in order, and each built-in chain's policy (`accept`, `drop`).
    pub(crate) fn rules(&self) -> Result<(Vec<Rule>, Policies)> {
        let es = blob::entries(self.family, &self.blob).ok_or_else(|| {
            anyhow!(
                "{} table {}: its entries cannot be read",
                self.family.command(),
                self.name
            )
        })?;
        let places = blob::places(&es, &self.hook_entry, &self.underflow, self.valid_hooks);
        // A jump's offset is the first entry after the chain's head.
        let chain_at = |o: usize| {
            es.iter()
                .zip(&places)
                .find(|(e, _)| e.offset + e.len == o && e.error_name().is_some())
                .map(|(_, p)| p.chain.clone())
        };
        let (mut rules, mut policies) = (Vec::new(), Vec::new());
        let mut pos = 0;
        let mut chain = String::new();
        for (e, p) in es.iter().zip(&places) {
            if p.chain != chain {
                chain.clone_from(&p.chain);
                pos = 0;
            }
            if p.policy {
                let v = match e.verdict() {
                    Some(blob::ACCEPT) => "accept",
                    Some(blob::DROP) => "drop",
                    _ => "other",
                };
                policies.push((p.chain.clone(), v.to_string()));
            }
            if !p.rule {
                continue;
            }
            pos += 1;
            rules.push(Rule {
                chain: p.chain.clone(),
                pos,
                text: text::render(self.family, e, &chain_at),
                key: e.key(self.family, &self.blob),
            });
        }
        Ok((rules, policies))
    }
}

/// A rule to remove: where, and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Removal {
    pub family: Family,
    pub table: String,
    pub chain: String,
    pub key: Vec<u8>,
}

/// iptables' own lock: every iptables-legacy run holds it from its read of a table to its
/// replacement, so that two of them never write over each other's change (the kernel only
/// refuses a replacement when the number of entries changed meanwhile).
const XT_LOCK: &str = "/run/xtables.lock";

/// Takes iptables' lock, waiting up to 10 s; None when there is no such lock to take (a /run
/// nsfw cannot write: no iptables-legacy run can take it either).
fn xt_lock() -> Result<Option<nix::fcntl::Flock<std::fs::File>>> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = match std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        // In /run, which only root writes; never a link someone left there.
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(XT_LOCK)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::ReadOnlyFilesystem => return Ok(None),
        Err(e) => return Err(anyhow!("cannot open {XT_LOCK}: {e}")),
    };
    let mut f = f;
    for _ in 0..200 {
        match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(l) => return Ok(Some(l)),
            Err((back, nix::errno::Errno::EWOULDBLOCK)) => {
                f = back;
                crate::signals::check()?;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err((_, e)) => bail!("cannot lock {XT_LOCK}: {e}"),
        }
    }
    bail!(
        "{XT_LOCK} stayed locked for 10 s (an iptables run holds it): the hand-written rules are removed by the next run"
    )
}

/// Removes `rs`, one replacement of each table they are in, under iptables' lock. Returns
/// how many it removed.
pub(crate) fn remove_all(rs: &[Removal]) -> Result<usize> {
    let _lock = xt_lock()?;
    let mut by_table: std::collections::BTreeMap<(Family, &str), Vec<Wanted>> =
        std::collections::BTreeMap::new();
    for r in rs {
        by_table
            .entry((r.family, &r.table))
            .or_default()
            .push((r.chain.clone(), r.key.clone()));
    }
    let mut n = 0;
    for ((f, t), gone) in by_table {
        n += remove(f, t, &gone)?;
    }
    Ok(n)
}

/// Removes from table `name` of `f` the rules of `gone` (chain, key) found there now (one
/// entry for each; those already gone are not an error), as one replacement of the table;
/// the counters of what stays are carried over. Returns how many it removed.
pub(crate) fn remove(f: Family, name: &str, gone: &[Wanted]) -> Result<usize> {
    let (s, level) = f.socket()?;
    // The kernel refuses a replacement made over a table that changed meanwhile (EAGAIN):
    // read again and retry, a few times.
    for _ in 0..5 {
        let t = read_on(&s, level, f, name)?;
        match replace_without(&s, level, &t, gone) {
            Err(e)
                if e.downcast_ref::<std::io::Error>()
                    .and_then(std::io::Error::raw_os_error)
                    == Some(libc::EAGAIN) =>
            {
                continue;
            }
            r => return r,
        }
    }
    bail!(
        "{} table {name} kept changing while nsfw removed rules from it",
        f.command()
    )
}

fn replace_without(s: &Socket, level: i32, t: &Table, gone: &[Wanted]) -> Result<usize> {
    let es = blob::entries(t.family, &t.blob).ok_or_else(|| {
        anyhow!(
            "{} table {}: its entries cannot be read",
            t.family.command(),
            t.name
        )
    })?;
    let places = blob::places(&es, &t.hook_entry, &t.underflow, t.valid_hooks);
    let mut left: Vec<&Wanted> = gone.iter().collect();
    let mut offsets = Vec::new();
    for (e, p) in es.iter().zip(&places) {
        if !p.rule {
            continue;
        }
        let key = e.key(t.family, &t.blob);
        if let Some(i) = left.iter().position(|(c, k)| *c == p.chain && *k == key) {
            left.remove(i);
            offsets.push(e.offset);
        }
    }
    if offsets.is_empty() {
        return Ok(0);
    }
    let (mut hook_entry, mut underflow) = (t.hook_entry, t.underflow);
    let (entries, kept) =
        blob::without(t.family, &t.blob, &offsets, &mut hook_entry, &mut underflow).ok_or_else(
            || {
                anyhow!(
                    "{} table {}: cannot rebuild it without the rules",
                    t.family.command(),
                    t.name
                )
            },
        )?;
    let num_entries = u32::try_from(kept.len())?;
    // The kernel writes the old table's counters here (16 bytes an entry) as it swaps.
    let mut counters = vec![0u8; 16 * t.num_entries as usize];
    let mut req = Vec::with_capacity(REPLACE_HEAD + entries.len());
    req.extend_from_slice(&name_field(&t.name)?);
    req.extend_from_slice(&t.valid_hooks.to_ne_bytes());
    req.extend_from_slice(&num_entries.to_ne_bytes());
    req.extend_from_slice(&u32::try_from(entries.len())?.to_ne_bytes());
    for v in hook_entry.iter().chain(&underflow) {
        req.extend_from_slice(&v.to_ne_bytes());
    }
    req.extend_from_slice(&t.num_entries.to_ne_bytes());
    req.extend_from_slice(&(counters.as_mut_ptr() as u64).to_ne_bytes());
    req.extend_from_slice(&entries);
    sockopt::set(s.as_fd(), level, SO_SET_REPLACE, &req).map_err(anyhow::Error::from)?;
    // The counters of what stays, carried over to its new place (as iptables does): a rule
    // nsfw did not remove keeps its packet and byte counts.
    let mut add = Vec::with_capacity(40 + 16 * kept.len());
    add.extend_from_slice(&name_field(&t.name)?);
    add.extend_from_slice(&num_entries.to_ne_bytes());
    add.extend_from_slice(&[0u8; 4]);
    for i in &kept {
        add.extend_from_slice(counters.get(16 * i..16 * i + 16).unwrap_or(&[0u8; 16]));
    }
    if let Err(e) = sockopt::set(s.as_fd(), level, SO_SET_ADD_COUNTERS, &add) {
        crate::warning!(
            "{} table {}: the other rules' counters could not be carried over ({e}); they start again from 0",
            t.family.command(),
            t.name
        );
    }
    Ok(offsets.len())
}

#[cfg(test)]
mod tests;
