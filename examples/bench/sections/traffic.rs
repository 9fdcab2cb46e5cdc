//! The data-plane sections: two sides measured alternately in the same sandboxes, throughput
//! and connection rate, and their ratio.

use std::fmt::Write as _;

use super::Ctx;
use crate::run::{Res, Samples, trial};
use crate::tables::POLICY_ENTRIES;
use crate::topologies::{
    POLICY_FEW, PROBE_HOST_PORT, PROBE_NS, PROBE_NS_PORT, PUB_NS, PUB_PER, SERVER, UPLINK,
};

/// One data-plane section: `runs.min(3)` sandboxes of trial `kind`, whose lines are
/// `{prefix}_tput_{name}` and `{prefix}_conn_{name}` for the two sides `(name, row label)`;
/// `first`, the column heading of the rows.
fn two_sides(
    cx: &mut Ctx,
    kind: &str,
    n: usize,
    title: &str,
    first: &str,
    sides: [(&str, &str); 2],
) -> Res<()> {
    let mut dp = Samples::default();
    for _ in 0..cx.runs.min(3) {
        dp.add(trial(kind, n, None)?);
    }
    let tput = |name: &str| dp.median(&format!("{kind}_tput_{name}"));
    let conn = |name: &str| dp.median(&format!("{kind}_conn_{name}"));
    writeln!(
        cx.report,
        "\n### {title} (in-process TCP load; 1.5 s measurements alternating A B B A A B B A after a warm-up; medians of {} measurements per side)\n\n| {first} | throughput Gbit/s | connections/s |\n|---|---|---|",
        dp.count(&format!("{kind}_tput_{}", sides[0].0))
    )?;
    for (name, label) in sides {
        writeln!(
            cx.report,
            "| {label} | {:.2} | {:.0} |",
            tput(name),
            conn(name)
        )?;
    }
    let [(a, al), (b, bl)] = sides;
    writeln!(
        cx.report,
        "\n{al} / {bl}: throughput {:.2}×, connection rate {:.2}×",
        tput(a) / tput(b),
        conn(a) / conn(b)
    )?;
    cx.done(kind);
    Ok(())
}

/// ns → wan through NAT: nsfw's ruleset against the classic iptables rules.
pub fn dataplane(cx: &mut Ctx) -> Res<()> {
    two_sides(
        cx,
        "dp",
        2,
        "Data plane: ns → wan through NAT",
        "ruleset",
        [
            ("nsfw", "nsfw (inet nsfw_bench)"),
            ("iptables", "classic iptables rules"),
        ],
    )
}

/// wan → a published port, with 10,000 ports published against 1.
pub fn publish_dataplane(cx: &mut Ctx) -> Res<()> {
    let ports = PUB_NS * PUB_PER as usize;
    two_sides(
        cx,
        "pubdp",
        PUB_NS,
        &format!(
            "Data plane through a published port: wan → {UPLINK}:{PROBE_HOST_PORT} → DNAT → ns{PROBE_NS}:{PROBE_NS_PORT}"
        ),
        "ports published",
        [
            ("all", &format!("{ports} published")),
            ("one", "1 published"),
        ],
    )
}

/// ns0 → wan through an egress-denied bridge's allow set: 10,000 entries against 10.
pub fn policy_dataplane(cx: &mut Ctx) -> Res<()> {
    two_sides(
        cx,
        "poldp",
        2,
        &format!(
            "Data plane through the policy: ns0 → {}:{} on an egress = \"deny\" bridge, let out by an [[allow]] entry",
            SERVER.0, SERVER.1
        ),
        "[[allow]] entries",
        [
            ("many", &format!("{POLICY_ENTRIES} entries")),
            ("few", &format!("{POLICY_FEW} entries")),
        ],
    )
}
