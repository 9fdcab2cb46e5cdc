//! The tables nsfw keeps beside its inet table, one per topology and family: the bridge table of
//! port security (`identity`) and the netdev table of macvlan uplinks (`uplink`). Each is read
//! whole by name, planned with the generic table diff (the elements that changed, or the table
//! made, replaced or removed whole), and removed whole at flush. Only the family and what the
//! table holds differ between them, so this is written once for both.

use std::collections::BTreeMap;

use crate::owner;
use crate::topology::Topology;
use nft::diff::table_diff;
use nft::dump::Dumped;
use nft::{Family, Table};

use super::{NftLine, NftPlan, NftState};

/// Reads every `FAMILY nsfw_*` table whole, by name.
pub(super) fn observe(
    sock: &mut nft::socket::NftSocket,
    s: &NftState,
    family: Family,
) -> anyhow::Result<BTreeMap<String, Dumped>> {
    let mut out = BTreeMap::new();
    for t in &s.tables {
        if t.family == family && owner::is_table(&t.name) {
            out.insert(t.name.clone(), sock.read_table(t)?);
        }
    }
    Ok(out)
}

/// Plans the topology's `family` table into `p`, `want` being what the file asks for (none:
/// the table goes) and `observed` what `observe` read of that family. A table of that name nsfw
/// does not own is a conflict.
pub(super) fn diff(
    p: &mut NftPlan,
    t: &Topology,
    s: &NftState,
    family: Family,
    want: Option<Table>,
    observed: &BTreeMap<String, Dumped>,
) {
    let name = owner::table(&t.name);
    let mark = owner::mark(&t.name);
    let existing = s
        .tables
        .iter()
        .find(|k| k.family == family && k.name == name);
    if let Some(k) = existing.filter(|k| k.comment.as_deref() != Some(mark.as_str())) {
        p.conflicts.push(format!(
            "{}: name = {:?}: nftables table {} {name} exists and nsfw does not own it (its comment is {:?}, not {mark:?}); delete it or rename the topology",
            t.source.display(),
            t.name,
            family.as_str(),
            k.comment.as_deref().unwrap_or("")
        ));
        return;
    }
    let have = existing.and(observed.get(&name));
    match (want, have) {
        (Some(want), have) => {
            let d = table_diff(&want, have);
            p.lines.extend(d.lines);
            p.ops.extend(d.ops);
        }
        (None, _) if existing.is_some() => remove(p, family, &name),
        (None, _) => {}
    }
}

fn remove(p: &mut NftPlan, family: Family, name: &str) {
    p.lines.push(NftLine::new(
        '-',
        "table",
        &format!("{} {name}", family.as_str()),
        None,
        String::new(),
    ));
    p.ops.push(nft::batch::Op::DeleteTable {
        family,
        name: name.to_string(),
    });
}

/// The flush of the `family` tables of the topologies `owned` says.
pub(super) fn flush(
    p: &mut NftPlan,
    s: &NftState,
    owned: &dyn Fn(Option<&str>) -> bool,
    family: Family,
) {
    for t in &s.tables {
        if t.family == family && owner::is_table(&t.name) && owned(t.comment.as_deref()) {
            remove(p, family, &t.name);
        }
    }
}
