//! `nsfw show`: the nftables ruleset nsfw would load, in `nft` syntax (`nft -f` loads it).

use std::path::PathBuf;

use crate::firewall;
use crate::output;

use super::{Fail, OK, load};

pub fn show(file: Option<PathBuf>, json: bool) -> Result<u8, Fail> {
    let t = load(file)?;
    let table = firewall::table(&t);
    // Port security's bridge table (`firewall::identity`), when the topology has one.
    let ports = firewall::identity::table(&t);
    // Macvlan children's anti-spoofing on their uplinks (`firewall::uplink`), when it has some.
    let uplinks = firewall::uplink::table(&t);
    // Each macvlan child's guard, inside its namespace (`firewall::guard`).
    let inside: Vec<(&str, nft::Table)> = t
        .namespaces
        .iter()
        .filter_map(|n| Some((n.name.as_str(), firewall::guard::table(&t, n)?)))
        .collect();
    if json {
        let mut v = serde_json::json!({
            "schema": 1,
            "topology": t.name,
            "file": t.source.display().to_string(),
            "tables": std::iter::once(&table).chain(&ports).chain(&uplinks).map(nft::json::table).collect::<Vec<_>>(),
        });
        if !inside.is_empty() {
            v["inside"] = inside
                .iter()
                .map(|(ns, t)| serde_json::json!({"namespace": ns, "table": nft::json::table(t)}))
                .collect();
        }
        output::data(format_args!("{v}\n"));
    } else {
        output::data(format_args!("{table}"));
        for p in ports.iter().chain(&uplinks) {
            output::data(format_args!("\n{p}"));
        }
        for (ns, g) in &inside {
            output::data(format_args!("\n# inside namespace {ns}\n{g}"));
        }
    }
    Ok(OK)
}
