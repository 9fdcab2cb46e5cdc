//! A fight's usual damage put right at once: another process deleted nsfw's table on the
//! host, or elements of its sets. The notification itself says what went (DELTABLE, or
//! DELSETELEM with the elements' keys); the repair is the smallest batch that undoes it, made
//! from the file's table without observing or planning: the table whole when it is gone, else
//! the very elements deleted and nothing else. Whatever else changed (an element added, one
//! the file does not have, a chain, a rule) waits for the check, which repairs the rest.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Result;
use nft::batch::{Encoded, Op};
use nft::{Family, Set, Table};

use super::events::{Elems, Event, as_self};
use super::{Watch, some};
use crate::say;

/// An element as the kernel holds it: its key and key end.
type Key = (Vec<u8>, Option<Vec<u8>>);

/// The file's table, ready to put back: made once per version of the file.
pub(super) struct Wanted {
    table: Table,
    /// The batch that creates it whole, encoded once (building it costs more than sending).
    whole: Encoded,
    /// Each set's elements by the key they are held under, made when a set first needs it.
    keys: HashMap<String, HashMap<Key, usize>>,
}

impl Wanted {
    pub(super) fn new(table: Table) -> Result<Wanted> {
        let whole = nft::batch::encode(&[Op::CreateTable(table.clone())])?;
        Ok(Wanted {
            table,
            whole,
            keys: HashMap::new(),
        })
    }

    /// The batch adding back the elements `e` says were deleted; None when one of them is
    /// not the file's (or not as the kernel holds it): the check then looks.
    fn elements(&mut self, e: &Elems) -> Option<Op> {
        let Wanted { table, keys, .. } = self;
        let set = table.sets.iter().find(|s| s.name == e.set)?;
        let by_key = keys.entry(e.set.clone()).or_insert_with(|| index(set));
        if e.partial || e.keys.is_empty() {
            return None;
        }
        let elements = e
            .keys
            .iter()
            .map(|k| by_key.get(k).and_then(|i| set.elements.get(*i)).cloned())
            .collect::<Option<Vec<_>>>()?;
        Some(Op::AddElements {
            family: Family::Inet,
            table: table.name.clone(),
            set: Set {
                elements,
                ..set.without_elements()
            },
        })
    }
}

/// A set's elements by the key and key end the kernel holds each under (an rbtree range by
/// its start).
fn index(set: &Set) -> HashMap<Key, usize> {
    set.elements
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            let k = nft::to_kernel(set, std::slice::from_ref(e), false)
                .ok()?
                .into_iter()
                .find(|k| !k.end)?;
            Some(((k.key, k.key_end), i))
        })
        .collect()
}

impl Watch {
    /// Puts back at once what another process's changes in `got` (a burst) deleted of nsfw's
    /// table on the host. Only when no nsfw run holds the lock (a flush deletes the table too)
    /// and the topology's namespaces are still there; the table is created only if absent
    /// (if anything made one since, the batch fails and changes nothing). True when that was
    /// all `got` did: the check may wait.
    pub(super) fn put_back(&mut self, got: &[Event]) -> bool {
        let gone = format!("nft table inet {} deleted", self.interest.table);
        let mut table_gone = false;
        let mut all = true;
        let mut elems = Vec::new();
        for e in got {
            let what = e.what.split(" (by ").next().unwrap_or_default();
            let foreign = e.by.as_deref().is_some_and(|b| !b.starts_with("nsfw "));
            match &e.elems {
                _ if foreign && what == gone => table_gone = true,
                Some(x) if foreign && x.deleted => elems.push(x),
                _ => all = false,
            }
        }
        if !table_gone && elems.is_empty() {
            return false;
        }
        let Some(_lock) = self.quick_lock() else {
            return false;
        };
        if self.wanted.is_none() {
            self.wanted = crate::firewall::prepare(&self.t)
                .table
                .and_then(|t| Wanted::new(t).ok());
        }
        let Some(want) = &mut self.wanted else {
            return false;
        };
        let t0 = Instant::now();
        let small;
        let enc = if table_gone {
            &want.whole
        } else {
            let ops: Vec<Op> = elems.iter().filter_map(|e| want.elements(e)).collect();
            all &= ops.len() == elems.len();
            small = match nft::batch::encode(&ops) {
                Ok(b) if !ops.is_empty() => b,
                _ => return false,
            };
            &small
        };
        let sock = &mut self.restore_sock;
        let out = as_self(|| -> Result<()> {
            let s = match sock {
                Some(s) => s,
                None => sock.insert(nft::socket::NftSocket::open()?),
            };
            s.send(enc)
        });
        if let Err(e) = out {
            self.restore_sock = None;
            crate::detail!(
                "watch: {}: could not put it back at once ({e:#}); checking",
                self.t.name
            );
            return false;
        }
        self.put_back_done(got, t0, table_gone, &elems);
        all
    }

    /// Says and counts a put-back.
    fn put_back_done(&mut self, got: &[Event], t0: Instant, table_gone: bool, elems: &[&Elems]) {
        let what = if table_gone {
            "the table whole".to_string()
        } else {
            let n: usize = elems.iter().map(|e| e.keys.len()).sum();
            let mut sets: Vec<&str> = elems.iter().map(|e| e.set.as_str()).collect();
            sets.dedup();
            format!("{n} element(s) of {}", sets.join(", "))
        };
        let line = format!(
            "watch: {}: {} → repaired in {} µs: put {what} back",
            self.t.name,
            some(&got.iter().map(|e| e.what.clone()).collect::<Vec<_>>(), 3),
            t0.elapsed().as_micros(),
        );
        if self.fight.is_some() {
            crate::detail!("{line}");
        } else {
            say!("{line}");
        }
        // The table whole counts as one object, as a plan's table line does.
        let objects = if table_gone {
            1
        } else {
            elems.iter().map(|e| e.keys.len()).sum()
        };
        self.stats.put_back(t0.elapsed(), objects);
        self.repairs.push_back(t0);
        self.maybe_fight(&[what]);
        if let Some(f) = &mut self.fight {
            f.repairs += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::events::elems_of;

    /// A netlink attribute, padded.
    fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = ((4 + payload.len()) as u16).to_ne_bytes().to_vec();
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(payload);
        v.resize(v.len().div_ceil(4) * 4, 0);
        v
    }

    /// A DELSETELEM body as the kernel sends it: one NFTA_LIST_ELEM per (key, key end, flags).
    fn body(set: &str, elems: &[(Key, u32)]) -> Vec<u8> {
        const NESTED: u16 = 0x8000;
        let mut list = Vec::new();
        for ((key, end), flags) in elems {
            let mut e = attr(1 | NESTED, &attr(1, key));
            if let Some(end) = end {
                e.extend(attr(10 | NESTED, &attr(1, end)));
            }
            e.extend(attr(3, &flags.to_be_bytes()));
            list.extend(attr(1 | NESTED, &e));
        }
        let mut b = attr(1, b"nsfw_pol\0");
        b.extend(attr(2, format!("{set}\0").as_bytes()));
        b.extend(attr(3 | NESTED, &list));
        b
    }

    /// Every element of every set of a policy's table, deleted alone, is put back alone; an
    /// element the file does not have, or one not wholly read, is left to the check.
    #[test]
    fn a_deleted_element_is_put_back_alone() {
        let t = crate::testdata::topology("pol", crate::testdata::POLICY);
        let table = crate::firewall::prepare(&t).table.expect("a table");
        let mut want = Wanted::new(table.clone()).expect("encodes");
        let mut seen = 0;
        for set in table.sets.iter().filter(|s| !s.elements.is_empty()) {
            for e in &set.elements {
                let k = nft::to_kernel(set, std::slice::from_ref(e), false).expect("encodes");
                // An rbtree range comes with its end element, which the parse leaves out.
                let raw: Vec<_> = k
                    .iter()
                    .map(|k| ((k.key.clone(), k.key_end.clone()), u32::from(k.end)))
                    .collect();
                let got = elems_of(&body(&set.name, &raw), set.name.clone(), true);
                assert_eq!(got.keys.len(), 1, "{} {e:?}", set.name);
                let Some(Op::AddElements { set: put, .. }) = want.elements(&got) else {
                    panic!("{}: {e:?} not put back", set.name)
                };
                assert_eq!(put.elements, vec![e.clone()], "{}", set.name);
                assert_eq!(put.name, set.name);
                seen += 1;
            }
        }
        assert!(seen >= 4, "{seen} elements");
        let bridges = table
            .sets
            .iter()
            .find(|s| s.name == "bridges")
            .expect("bridges");
        let odd = elems_of(
            &body("bridges", &[((vec![b'x'; 16], None), 0)]),
            "bridges".into(),
            true,
        );
        assert!(want.elements(&odd).is_none());
        let mut partial = elems_of(&body("bridges", &[]), "bridges".into(), true);
        assert!(want.elements(&partial).is_none());
        partial.partial = true;
        partial.keys = want.keys["bridges"].keys().take(1).cloned().collect();
        assert!(want.elements(&partial).is_none());
        assert!(!bridges.elements.is_empty());
    }
}
