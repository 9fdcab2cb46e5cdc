//! The entries blob of an x_tables table (what `IPT_SO_GET_ENTRIES` returns and
//! `IPT_SO_SET_REPLACE` takes): entries one after the other, each `ipt_entry` (or
//! `ip6t_entry`) then its matches, then its target, `next_offset` bytes in all. A built-in
//! chain starts where `hook_entry` says and ends with its policy at `underflow`; a user chain
//! starts with an `ERROR` target naming it and ends with an unconditional RETURN; the table
//! ends with an `ERROR` target named `ERROR`. Jumps are offsets into the blob. Pure.

use super::Family;

/// The hooks' names, in the kernel's order (NF_INET_PRE_ROUTING …).
pub(super) const HOOKS: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// `struct xt_entry_match` / `xt_entry_target`: size, name[29], revision, then data.
pub(super) const XT_HEAD: usize = 32;

/// Sizes of the entry head of each family and where its fields are.
pub(super) struct Layout {
    /// `sizeof(struct ipt_entry)`: 112; `ip6t_entry`: 168.
    pub head: usize,
    /// Where `target_offset` and `next_offset` (u16 each) are.
    pub offsets: usize,
}

pub(super) fn layout(f: Family) -> Layout {
    match f {
        Family::V4 => Layout {
            head: 112,
            offsets: 88,
        },
        Family::V6 => Layout {
            head: 168,
            offsets: 140,
        },
    }
}

pub(super) fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(o..o + 2)?.try_into().ok()?))
}

pub(super) fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

pub(super) fn i32_at(b: &[u8], o: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

/// A C string of at most `b.len()` bytes.
pub(super) fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// One entry: where it is, its matches and its target (name, revision, data).
#[derive(Clone, Debug)]
pub(super) struct Entry<'a> {
    pub offset: usize,
    pub len: usize,
    /// The entry's head (`ipt_ip` and the rest, up to the matches).
    pub head: &'a [u8],
    pub matches: Vec<Xt<'a>>,
    pub target: Xt<'a>,
}

/// A match or a target.
#[derive(Clone, Debug)]
pub(super) struct Xt<'a> {
    pub name: String,
    pub rev: u8,
    pub data: &'a [u8],
    /// Where its data starts in the blob (for a standard target's verdict).
    pub at: usize,
}

fn xt(blob: &[u8], at: usize, end: usize) -> Option<(Xt<'_>, usize)> {
    let size = usize::from(u16_at(blob, at)?);
    if size < XT_HEAD || at + size > end {
        return None;
    }
    Some((
        Xt {
            name: cstr(blob.get(at + 2..at + 31)?),
            rev: *blob.get(at + 31)?,
            data: blob.get(at + XT_HEAD..at + size)?,
            at: at + XT_HEAD,
        },
        size,
    ))
}

/// Every entry of `blob`, in order; None when it is malformed.
pub(super) fn entries(f: Family, blob: &[u8]) -> Option<Vec<Entry<'_>>> {
    let l = layout(f);
    let mut out = Vec::new();
    let mut o = 0;
    while o < blob.len() {
        let target_offset = usize::from(u16_at(blob, o + l.offsets)?);
        let next = usize::from(u16_at(blob, o + l.offsets + 2)?);
        if next < l.head || target_offset < l.head || target_offset >= next || o + next > blob.len()
        {
            return None;
        }
        let mut matches = Vec::new();
        let mut m = o + l.head;
        while m < o + target_offset {
            let (x, size) = xt(blob, m, o + target_offset)?;
            matches.push(x);
            m += size;
        }
        let (target, _) = xt(blob, o + target_offset, o + next)?;
        out.push(Entry {
            offset: o,
            len: next,
            head: blob.get(o..o + l.head)?,
            matches,
            target,
        });
        o += next;
    }
    Some(out)
}

impl Entry<'_> {
    /// A standard target's verdict (negative: `-NF_x - 1`; else a jump's offset).
    pub(super) fn verdict(&self) -> Option<i32> {
        (self.target.name.is_empty())
            .then(|| i32_at(self.target.data, 0))
            .flatten()
    }

    /// An `ERROR` target's name: a user chain's head, or the table's end (`ERROR`).
    pub(super) fn error_name(&self) -> Option<String> {
        (self.target.name == "ERROR").then(|| cstr(self.target.data))
    }

    /// The bytes that say what the entry is: all of it but the counters and `comefrom`, which
    /// the kernel writes. Two reads of an unchanged rule give the same key.
    pub(super) fn key(&self, f: Family, blob: &[u8]) -> Vec<u8> {
        let l = layout(f);
        let mut k = blob[self.offset..self.offset + self.len].to_vec();
        // comefrom (u32) after the two offsets, then (aligned) the two u64 counters.
        k[l.offsets + 4..l.head].fill(0);
        k
    }
}

/// Where each entry sits: its chain, and whether it is a rule (not a chain's head, its
/// policy or its closing RETURN, nor the table's end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Place {
    pub chain: String,
    pub rule: bool,
    /// The built-in chain's policy entry.
    pub policy: bool,
}

/// The place of each of `es`, given the table's `hook_entry`, `underflow` and `valid_hooks`.
pub(super) fn places(
    es: &[Entry],
    hook_entry: &[u32; 5],
    underflow: &[u32; 5],
    valid: u32,
) -> Vec<Place> {
    let mut out = Vec::with_capacity(es.len());
    let mut chain = String::new();
    for (i, e) in es.iter().enumerate() {
        for h in 0..5 {
            if valid & (1 << h) != 0 && hook_entry[h] as usize == e.offset {
                chain = HOOKS[h].to_string();
            }
        }
        if let Some(n) = e.error_name() {
            chain = n;
            out.push(Place {
                chain: chain.clone(),
                rule: false,
                policy: false,
            });
            continue;
        }
        let policy = (0..5).any(|h| valid & (1 << h) != 0 && underflow[h] as usize == e.offset);
        // A user chain's closing RETURN: the entry before the next chain's head.
        let closing = es.get(i + 1).is_some_and(|n| n.error_name().is_some())
            && !HOOKS.contains(&chain.as_str())
            && e.verdict() == Some(RETURN)
            && e.matches.is_empty();
        out.push(Place {
            chain: chain.clone(),
            rule: !policy && !closing,
            policy,
        });
    }
    out
}

/// The standard verdicts as x_tables writes them (`-NF_x - 1`).
pub(super) const ACCEPT: i32 = -2;
pub(super) const DROP: i32 = -1;
pub(super) const RETURN: i32 = -5;

/// `blob` without the entries at `gone` (offsets of rule entries): the jumps, `hook_entry` and
/// `underflow` moved to where what they pointed at now is. Returns the new blob and which old
/// entries (by index) are kept, in order.
pub(super) fn without(
    f: Family,
    blob: &[u8],
    gone: &[usize],
    hook_entry: &mut [u32; 5],
    underflow: &mut [u32; 5],
) -> Option<(Vec<u8>, Vec<usize>)> {
    let es = entries(f, blob)?;
    // An old offset's new place: less the length of every removed entry before it.
    let removed: Vec<(usize, usize)> = es
        .iter()
        .filter(|e| gone.contains(&e.offset))
        .map(|e| (e.offset, e.len))
        .collect();
    let moved = |o: usize| -> usize {
        o - removed
            .iter()
            .filter(|(at, _)| *at < o)
            .map(|(_, len)| len)
            .sum::<usize>()
    };
    let mut out = Vec::with_capacity(blob.len());
    let mut kept = Vec::new();
    for (i, e) in es.iter().enumerate() {
        if gone.contains(&e.offset) {
            continue;
        }
        let start = out.len();
        out.extend_from_slice(&blob[e.offset..e.offset + e.len]);
        if let Some(v) = e.verdict()
            && v >= 0
        {
            let to = i32::try_from(moved(usize::try_from(v).ok()?)).ok()?;
            let at = start + (e.target.at - e.offset);
            out[at..at + 4].copy_from_slice(&to.to_ne_bytes());
        }
        kept.push(i);
    }
    // A hook the table is not on holds 0xFFFFFFFF: left so.
    for o in hook_entry.iter_mut().chain(underflow.iter_mut()) {
        if (*o as usize) < blob.len() {
            *o = u32::try_from(moved(*o as usize)).ok()?;
        }
    }
    Some((out, kept))
}
