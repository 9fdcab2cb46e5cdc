//! The element half of the table diff: a set's desired elements against the kernel's, both
//! in canonical kernel form, hashed as bytes, with only the differences decoded.

use std::collections::{BTreeMap, HashSet};

use super::canon::{canonical, canonical_set, decode, decode_all};
use super::elems::{KElem, to_kernel};
use super::ir::{Element, Set, Table};
use rustc_hash::FxHashMap as FastMap;

/// The elements the kernel holds and `want` does not (decoded with the kernel's declaration
/// `kd`), and those `want` holds and the kernel does not, each sorted. Both sides are compared
/// in canonical kernel form (`canon`): hashed as bytes, with only the differences decoded.
pub(super) fn element_changes(
    want: &Set,
    wk: &Result<Vec<KElem>, String>,
    kd: &Set,
    held: &[KElem],
) -> (Vec<Element>, Vec<Element>) {
    let fast = || -> Result<(Vec<Element>, Vec<Element>), String> {
        let wk = wk.as_ref().map_err(String::clone)?;
        // One pass over each side: each kernel element is marked when a desired one finds
        // it; the unmarked ones go.
        let mut kset: FastMap<&KElem, bool> = held.iter().map(|e| (e, false)).collect();
        let mut new = Vec::new();
        for e in wk {
            match kset.get_mut(e) {
                Some(found) => *found = true,
                None => new.push(decode(want, e)?),
            }
        }
        let gone = kset
            .into_iter()
            .filter(|(_, found)| !found)
            .map(|(e, _)| decode(kd, e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((gone, new))
    };
    let (mut gone, mut new) = fast().unwrap_or_else(|_| {
        // Desired elements that do not encode: compare in the IR, so that they show (and
        // the batch names what is wrong with them).
        let ws = canonical_set(want).elements;
        let ks = decode_all(kd, held).unwrap_or_default();
        let wset: HashSet<&Element> = ws.iter().collect();
        let kset: HashSet<&Element> = ks.iter().collect();
        let gone = ks.iter().filter(|e| !wset.contains(e)).cloned().collect();
        let new = ws.iter().filter(|e| !kset.contains(e)).cloned().collect();
        (gone, new)
    });
    gone.sort();
    new.sort();
    (gone, new)
}

/// The elements of each of a desired table's sets in canonical kernel form (or why they do
/// not encode), by set name: the half of comparing sets that needs no kernel, made ahead by
/// [`canon_elements`] and handed to the diff.
#[derive(Clone, Debug, Default)]
pub struct Canon(BTreeMap<String, Result<Vec<KElem>, String>>);

impl Canon {
    /// Set `name`'s elements, or why they do not encode.
    pub(crate) fn get(&self, name: &str) -> Option<&Result<Vec<KElem>, String>> {
        self.0.get(name)
    }
}

/// [`Canon`] of `want`.
pub fn canon_elements(want: &Table) -> Canon {
    Canon(
        want.sets
            .iter()
            .map(|s| {
                let wk = to_kernel(s, &s.elements, true).and_then(|k| canonical(s, k));
                (s.name.clone(), wk)
            })
            .collect(),
    )
}
