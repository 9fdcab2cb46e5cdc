//! Debug builds only: the elements of a set element message as libnftnl parses them, the
//! reference the native reader (`elemmsg`) is held to on every message the tests read.

use anyhow::Result;

use super::elemmsg::CountedElem;
use crate::elems::{KData, KElem};
use crate::expr::Raw;
use crate::ffi::{self, Nlmsg};
use crate::ir::Counter;
use crate::udata;

/// Panics when `fast` is not what libnftnl reads from `m`. Counters compare equal whatever
/// they counted (`ir::Counter`): their numbers are compared.
pub(super) fn check(m: &Nlmsg<'_>, fast: &[CountedElem]) -> Result<()> {
    let numbers = |v: &[CountedElem]| -> Vec<(KElem, Option<(u64, u64)>)> {
        let n = |c: &Option<Counter>| c.map(|c| (c.packets, c.bytes));
        v.iter().map(|(e, c)| (e.clone(), n(c))).collect()
    };
    assert_eq!(numbers(fast), numbers(&nftnl_elems(m)?));
    Ok(())
}

/// An element's counter (the one its set's `counter` gave it), if it has one.
fn elem_counter(e: &ffi::SetElem) -> Option<Counter> {
    e.exprs().iter().find_map(|x| match Raw::from_nftnl(x) {
        Raw::Counter(c) => Some(Counter {
            packets: c.packets.unwrap_or(0),
            bytes: c.bytes.unwrap_or(0),
        }),
        _ => None,
    })
}

/// The elements of one message as libnftnl parses them.
fn nftnl_elems(m: &Nlmsg<'_>) -> Result<Vec<CountedElem>> {
    let s = ffi::Set::parse_elems(m, "set element")?;
    let mut out = Vec::new();
    for e in s.elems()? {
        let data = if e.is_set(ffi::NFTNL_SET_ELEM_VERDICT) {
            let chain = e
                .is_set(ffi::NFTNL_SET_ELEM_CHAIN)
                .then(|| e.str(ffi::NFTNL_SET_ELEM_CHAIN));
            Some(KData::Verdict(e.u32(ffi::NFTNL_SET_ELEM_VERDICT), chain))
        } else {
            e.data(ffi::NFTNL_SET_ELEM_DATA).map(KData::Value)
        };
        let comment = e
            .data(ffi::NFTNL_SET_ELEM_USERDATA)
            .and_then(|u| udata::find_str(&u, udata::COMMENT));
        out.push((
            KElem {
                key: e.data(ffi::NFTNL_SET_ELEM_KEY).unwrap_or_default(),
                key_end: e.data(ffi::NFTNL_SET_ELEM_KEY_END),
                end: e.is_set(ffi::NFTNL_SET_ELEM_FLAGS)
                    && e.u32(ffi::NFTNL_SET_ELEM_FLAGS) & 1 != 0,
                data,
                timeout: e
                    .is_set(ffi::NFTNL_SET_ELEM_TIMEOUT)
                    .then(|| e.u64(ffi::NFTNL_SET_ELEM_TIMEOUT)),
                comment,
            },
            elem_counter(&e),
        ));
    }
    Ok(out)
}
