//! Set elements as the kernel holds them, and the order nft prints them in.
//!
//! A plain set holds one kernel element per IR element. An interval set of one component
//! (the kernel's rbtree) holds a start element and an end element (`end + 1`, flagged
//! INTERVAL_END) per range, and nft starts it with an end element at zero when the first range
//! does not start there. An interval set of a concatenation (pipapo) holds a key and a key end.
//! Host-order integers are held in network order in interval sets.

use super::ir::{ElemData, Element, Set, Verdict};
use super::lower::verdict_code;
use super::types::{Datatype, Value, be, concat_len, padded};

/// One element as the kernel holds it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KElem {
    pub key: Vec<u8>,
    pub key_end: Option<Vec<u8>>,
    /// NFT_SET_ELEM_INTERVAL_END: the end of a range in an rbtree set.
    pub end: bool,
    pub data: Option<KData>,
    pub timeout: Option<u64>,
    pub comment: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KData {
    Value(Vec<u8>),
    /// Verdict code and chain.
    Verdict(u32, Option<String>),
}

/// The bytes of a key or data of `types` (`interval`: host-order integers in network order;
/// concatenations padded to whole registers).
pub(super) fn concat_bytes(
    types: &[Datatype],
    vals: &[Value],
    interval: bool,
) -> Result<Vec<u8>, String> {
    if types.len() != vals.len() {
        return Err(format!(
            "{} values for a key of {} components",
            vals.len(),
            types.len()
        ));
    }
    let mut out = Vec::with_capacity(concat_len(types));
    for (t, v) in types.iter().zip(vals) {
        if v.datatype() != *t {
            return Err(format!(
                "a {} where the set has {}",
                v.datatype().name(),
                t.name()
            ));
        }
        let start = out.len();
        v.put(&mut out, interval);
        if types.len() > 1 {
            out.resize(start + padded(t.size()), 0);
        }
    }
    Ok(out)
}

/// The values of a key or data of `types` (`interval`: host-order integers in network order).
pub(super) fn split(types: &[Datatype], b: &[u8], interval: bool) -> Result<Vec<Value>, String> {
    if b.len() != concat_len(types) {
        return Err(format!(
            "{} bytes where {} are {} bytes",
            b.len(),
            types
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(" . "),
            concat_len(types)
        ));
    }
    let mut vals = Vec::new();
    let mut off = 0;
    for t in types {
        let n = t.size();
        let part = b
            .get(off..off + n)
            .ok_or_else(|| format!("{} bytes of key are too short", b.len()))?;
        let v = if interval {
            Value::from_big_endian(*t, part)
        } else {
            Value::from_bytes(*t, part)
        };
        vals.push(v.ok_or_else(|| format!("bytes that are no {}", t.name()))?);
        off += if types.len() > 1 { padded(n) } else { n };
    }
    Ok(vals)
}

fn data_of(set: &Set, e: &Element) -> Result<Option<KData>, String> {
    Ok(match (&set.data, &e.data) {
        (None, None) => None,
        (Some(super::ir::SetData::Verdict), Some(ElemData::Verdict(v))) => {
            let (code, chain) = verdict_code(v);
            Some(KData::Verdict(code, chain))
        }
        (Some(super::ir::SetData::Values(types)), Some(ElemData::Values(vals))) => {
            Some(KData::Value(concat_bytes(types, vals, false)?))
        }
        _ => return Err(format!("element data does not fit map {}", set.name)),
    })
}

/// The kernel elements of `elements` of `set`. `whole`: the set is created with them (nft
/// then starts an rbtree with an end element at zero).
pub fn to_kernel(set: &Set, elements: &[Element], whole: bool) -> Result<Vec<KElem>, String> {
    let interval = set.flags.interval;
    let concat = set.key.len() > 1;
    let mut out = Vec::with_capacity(elements.len());
    let mut ranges = Vec::new();
    for e in elements {
        let key = concat_bytes(&set.key, &e.key, interval)?;
        let key_end = match &e.key_end {
            Some(k) if interval => Some(concat_bytes(&set.key, k, interval)?),
            Some(_) => {
                return Err(format!(
                    "a range in set {}, which has no flag interval",
                    set.name
                ));
            }
            None => None,
        };
        // A single value in an interval set is the range from it to itself.
        let last = match key_end {
            Some(k) => Some(k),
            None if interval => Some(key.clone()),
            None => None,
        };
        let base = KElem {
            key,
            key_end: None,
            end: false,
            data: data_of(set, e)?,
            timeout: e.timeout,
            comment: e.comment.clone(),
        };
        match last {
            Some(last) if concat => out.push(KElem {
                key_end: Some(last),
                ..base
            }),
            Some(last) => ranges.push((base, last)),
            None => out.push(base),
        }
    }
    if !ranges.is_empty() {
        ranges.sort_by(|a, b| a.0.key.cmp(&b.0.key));
        if whole && ranges[0].0.key.iter().any(|b| *b != 0) {
            out.push(end_elem(vec![0; ranges[0].0.key.len()]));
        }
        for (start, last) in ranges {
            out.push(start);
            if let Some(next) = be::succ(&last) {
                out.push(end_elem(next));
            }
        }
    }
    Ok(out)
}

fn end_elem(key: Vec<u8>) -> KElem {
    KElem {
        key,
        key_end: None,
        end: true,
        data: None,
        timeout: None,
        comment: None,
    }
}

pub fn verdict_of(code: u32, chain: Option<String>) -> Result<Verdict, String> {
    use super::expr::verdict as v;
    Ok(match (code, chain) {
        (v::ACCEPT, _) => Verdict::Accept,
        (v::DROP, _) => Verdict::Drop,
        (v::CONTINUE, _) => Verdict::Continue,
        (v::RETURN, _) => Verdict::Return,
        (v::JUMP, Some(c)) => Verdict::Jump(c),
        (v::GOTO, Some(c)) => Verdict::Goto(c),
        (c, _) => return Err(format!("verdict {c:#x}")),
    })
}

/// The bytes nft sorts an element by when it prints a set (mergesort.c: the key's value read
/// in its byte order; a concatenation read as one host-order number).
fn sort_key(types: &[Datatype], interval: bool, e: &Element) -> Vec<u8> {
    if types.len() == 1 {
        let Some(v) = e.key.first() else {
            return Vec::new();
        };
        if interval {
            return v.big_endian_bytes();
        }
        let mut b = v.bytes();
        if types[0].byteorder() == super::types::ByteOrder::Host && cfg!(target_endian = "little") {
            b.reverse();
        }
        return b;
    }
    let mut b: Vec<u8> = e.key.iter().flat_map(Value::bytes).collect();
    if cfg!(target_endian = "little") {
        b.reverse();
    }
    b
}

/// Elements in the order `nft list` prints them: sorted by key, except interval sets of a
/// concatenation, which it prints in the kernel's order.
pub fn print_order<'a>(types: &[Datatype], interval: bool, els: &'a [Element]) -> Vec<&'a Element> {
    let mut v: Vec<&Element> = els.iter().collect();
    if !(interval && types.len() > 1) {
        // Each key once, not once per comparison: a key is an allocation, and a set of
        // 1,000 elements was sorted with ~20,000 of them (a third of `nsfw show` at 1,000
        // namespaces). The order is the same: this sort is stable too.
        v.sort_by_cached_key(|e| sort_key(types, interval, e));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canon::from_kernel;
    use crate::ir::SetFlags;

    fn ipset(interval: bool) -> Set {
        Set {
            name: "a".into(),
            key: vec![Datatype::Ipv4Addr],
            flags: SetFlags {
                interval,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn ip(s: &str) -> Value {
        Value::Ipv4(s.parse().expect("ipv4"))
    }

    #[test]
    fn rbtree_elements_as_nft_writes_them_and_back() {
        let set = ipset(true);
        let els = vec![
            Element::key(vec![ip("192.168.1.1")]),
            Element {
                key: vec![ip("10.0.0.0")],
                key_end: Some(vec![ip("10.255.255.255")]),
                ..Default::default()
            },
        ];
        let k = to_kernel(&set, &els, true).expect("encode");
        let keys: Vec<(Vec<u8>, bool)> = k.iter().map(|e| (e.key.clone(), e.end)).collect();
        assert_eq!(
            keys,
            vec![
                (vec![0, 0, 0, 0], true),
                (vec![10, 0, 0, 0], false),
                (vec![11, 0, 0, 0], true),
                (vec![192, 168, 1, 1], false),
                (vec![192, 168, 1, 2], true),
            ]
        );
        let mut back = from_kernel(&set, &k).expect("decode");
        back.sort_by_key(|e| sort_key(&set.key, true, e));
        assert_eq!(back, vec![els[1].clone(), els[0].clone()]);
    }

    #[test]
    fn concatenations_are_padded_to_registers() {
        let set = Set {
            name: "m".into(),
            key: vec![Datatype::InetProto, Datatype::InetService],
            data: Some(crate::ir::SetData::Values(vec![
                Datatype::Ipv4Addr,
                Datatype::InetService,
            ])),
            ..Default::default()
        };
        let e = Element::map(
            vec![Value::Proto(6), Value::Port(8080)],
            ElemData::Values(vec![ip("10.10.0.2"), Value::Port(80)]),
        );
        let k = to_kernel(&set, std::slice::from_ref(&e), true).expect("encode");
        assert_eq!(k[0].key, vec![6, 0, 0, 0, 0x1f, 0x90, 0, 0]);
        assert_eq!(
            k[0].data,
            Some(KData::Value(vec![10, 10, 0, 2, 0, 80, 0, 0]))
        );
        assert_eq!(from_kernel(&set, &k).expect("decode"), vec![e]);
    }

    #[test]
    fn print_order_follows_nft() {
        let set = Set {
            key: vec![Datatype::Ipv4Addr, Datatype::InetService],
            ..Default::default()
        };
        let els: Vec<Element> = [("10.0.0.1", 80), ("1.2.3.4", 22), ("5.5.5.5", 1)]
            .iter()
            .map(|(a, p)| Element::key(vec![ip(a), Value::Port(*p)]))
            .collect();
        let order: Vec<u16> = print_order(&set.key, false, &els)
            .iter()
            .map(|e| match e.key[1] {
                Value::Port(p) => p,
                _ => 0,
            })
            .collect();
        assert_eq!(order, vec![1, 22, 80]);
    }
}
