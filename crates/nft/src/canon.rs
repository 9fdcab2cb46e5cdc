//! Set elements in one canonical kernel form, so that the elements a table should hold and
//! those the kernel holds compare as bytes, without decoding either side into the IR.
//!
//! Two encodings of the same elements can differ: nft starts an interval set with an end
//! element at zero and nsfw does not, a range is a start and an exclusive end element in an
//! rbtree but a key and an inclusive key end in a concatenation, an element's timeout may be
//! written out although it is the set's default. The canonical form is what decoding into the
//! IR and encoding again gives, computed on the bytes: one [`KElem`] per IR element, with
//!
//! - keys and data exactly as [`to_kernel`](super::elems::to_kernel) writes them (bytes that
//!   would decode to a value that encodes differently — a non-zero padding byte, a boolean of
//!   2, bytes after an interface name's NUL — are decoded and encoded again; bytes that decode
//!   to no value are an error, as they are for decoding);
//! - in interval sets, `key_end` the inclusive last key of the range (the key itself for a
//!   single value), `end` never set; rbtree start and end elements paired as
//!   [`from_kernel`](super::elems::from_kernel) pairs them, in key order; concatenations in
//!   the kernel's order, which is the order nft prints them in;
//! - outside interval sets no `key_end`; the data of a plain set dropped; a verdict's chain
//!   only for jump and goto; a timeout equal to the set's default dropped.
//!
//! So two elements are equal in canonical form exactly when they decode to equal IR elements,
//! and [`decode`] gives that IR element.

use super::elems::{KData, KElem, concat_bytes, split, to_kernel, verdict_of};
use super::ir::{ElemData, Element, Set, SetData};
use super::lower::verdict_code;
use super::types::{Datatype, be, concat_len, padded};

/// The elements of `set` in canonical form (see the module). `kelems` are as the kernel holds
/// them, or as `to_kernel(set, els, true)` writes them.
pub fn canonical(set: &Set, mut kelems: Vec<KElem>) -> Result<Vec<KElem>, String> {
    let interval = set.flags.interval;
    if interval && set.key.len() == 1 {
        return pair_ranges(set, kelems);
    }
    for k in &mut kelems {
        k.key = canon_bytes(&set.key, std::mem::take(&mut k.key), interval)?;
        k.key_end = if interval {
            let end = k.key_end.take().unwrap_or_else(|| k.key.clone());
            Some(canon_bytes(&set.key, end, true)?)
        } else {
            None
        };
        k.end = false;
        canon_rest(set, k)?;
    }
    Ok(kelems)
}

/// rbtree: each start with the end element after it (ends sort before starts at the same key;
/// an end with no open start, such as nft's leading one at zero, pairs with nothing).
fn pair_ranges(set: &Set, mut kelems: Vec<KElem>) -> Result<Vec<KElem>, String> {
    for k in &mut kelems {
        k.key = canon_bytes(&set.key, std::mem::take(&mut k.key), true)?;
    }
    kelems.sort_by(|a, b| a.key.cmp(&b.key).then(b.end.cmp(&a.end)));
    let mut out: Vec<KElem> = Vec::with_capacity(kelems.len() / 2 + 1);
    let mut open: Option<KElem> = None;
    let close = |mut start: KElem, last: Vec<u8>, out: &mut Vec<KElem>| -> Result<(), String> {
        start.key_end = Some(canon_bytes(&set.key, last, true)?);
        canon_rest(set, &mut start)?;
        out.push(start);
        Ok(())
    };
    for k in kelems {
        if let Some(start) = open.take() {
            let last = if k.end {
                be::pred(&k.key).ok_or("an interval end at zero after a start")?
            } else {
                // Another start: the open range reached the end of the key space.
                vec![0xff; start.key.len()]
            };
            close(start, last, &mut out)?;
        }
        if !k.end {
            open = Some(k);
        }
    }
    if let Some(start) = open {
        let last = vec![0xff; start.key.len()];
        close(start, last, &mut out)?;
    }
    Ok(out)
}

/// Data, timeout and the `end` flag of one element, canonical.
fn canon_rest(set: &Set, k: &mut KElem) -> Result<(), String> {
    k.end = false;
    k.data = match (&set.data, k.data.take()) {
        (None, _) => None,
        (Some(SetData::Verdict), Some(KData::Verdict(code, chain))) => {
            let (code, chain) = verdict_code(&verdict_of(code, chain)?);
            Some(KData::Verdict(code, chain))
        }
        (Some(SetData::Values(types)), Some(KData::Value(b))) => {
            Some(KData::Value(canon_bytes(types, b, false)?))
        }
        _ => return Err(format!("element of map {} without its data", set.name)),
    };
    k.timeout = k.timeout.filter(|t| Some(*t) != set.timeout);
    Ok(())
}

/// A key or data of `types` as decoding and encoding again gives it: `b` itself when it is
/// already so (the common case, checked without allocating).
fn canon_bytes(types: &[Datatype], b: Vec<u8>, interval: bool) -> Result<Vec<u8>, String> {
    if is_canonical(types, &b) {
        return Ok(b);
    }
    concat_bytes(types, &split(types, &b, interval)?, interval)
}

/// Whether `b` decodes to values of `types` that encode back to `b` exactly. Fixed-width
/// types take any bytes of their length and give them back (in either byte order: a
/// host-order integer is reversed both ways); the others are listed.
fn is_canonical(types: &[Datatype], b: &[u8]) -> bool {
    if b.len() != concat_len(types) {
        return false;
    }
    let mut off = 0;
    for t in types {
        let n = t.size();
        let step = if types.len() > 1 { padded(n) } else { n };
        let (Some(part), Some(pad)) = (b.get(off..off + n), b.get(off + n..off + step)) else {
            return false;
        };
        if pad.iter().any(|x| *x != 0) {
            return false;
        }
        let ok = match t {
            Datatype::Boolean => part.iter().all(|x| *x <= 1),
            Datatype::Ifname => {
                // Encoding keeps 15 bytes of the name and pads with zeros.
                let end = part.iter().position(|c| *c == 0).unwrap_or(part.len());
                end < part.len()
                    && part[end..].iter().all(|c| *c == 0)
                    && std::str::from_utf8(&part[..end]).is_ok()
            }
            Datatype::Verdict => false,
            Datatype::NfProto
            | Datatype::Ipv4Addr
            | Datatype::Ipv6Addr
            | Datatype::EtherAddr
            | Datatype::EtherType
            | Datatype::InetProto
            | Datatype::InetService
            | Datatype::IcmpType
            | Datatype::Mark
            | Datatype::Ifindex
            | Datatype::ArpHrd
            | Datatype::Integer16
            | Datatype::Bits16
            | Datatype::Bits24
            | Datatype::CtState
            | Datatype::CtDir
            | Datatype::CtStatus
            | Datatype::Icmpv6Type
            | Datatype::PktType
            | Datatype::FibAddr => true,
        };
        if !ok {
            return false;
        }
        off += step;
    }
    true
}

/// The IR element of a canonical element of `set`.
pub fn decode(set: &Set, k: &KElem) -> Result<Element, String> {
    let interval = set.flags.interval;
    let key = split(&set.key, &k.key, interval)?;
    let key_end = match &k.key_end {
        Some(b) if interval => Some(split(&set.key, b, true)?).filter(|e| *e != key),
        _ => None,
    };
    let data = match (&set.data, &k.data) {
        (None, _) => None,
        (Some(SetData::Verdict), Some(KData::Verdict(code, chain))) => {
            Some(ElemData::Verdict(verdict_of(*code, chain.clone())?))
        }
        (Some(SetData::Values(types)), Some(KData::Value(b))) => {
            Some(ElemData::Values(split(types, b, false)?))
        }
        _ => return Err(format!("element of map {} without its data", set.name)),
    };
    Ok(Element {
        key,
        key_end,
        data,
        timeout: k.timeout.filter(|t| Some(*t) != set.timeout),
        comment: k.comment.clone(),
    })
}

/// The IR elements of kernel elements of `set` (a declaration; its own elements are ignored).
pub fn from_kernel(set: &Set, kelems: &[KElem]) -> Result<Vec<Element>, String> {
    decode_all(set, &canonical(set, kelems.to_vec())?)
}

/// The IR elements of canonical elements of `set`.
pub fn decode_all(set: &Set, kelems: &[KElem]) -> Result<Vec<Element>, String> {
    kelems.iter().map(|k| decode(set, k)).collect()
}

/// A set's elements in the kernel's canonical form (ranges paired, defaults dropped).
pub fn canonical_set(s: &Set) -> Set {
    let mut c = s.clone();
    c.flags.timeout |= c.timeout.is_some();
    if let Ok(k) = to_kernel(s, &s.elements, true)
        && let Ok(els) = from_kernel(s, &k)
    {
        c.elements = els;
    }
    c.elements.sort();
    c
}

#[cfg(test)]
#[path = "canon_tests.rs"]
mod tests;
