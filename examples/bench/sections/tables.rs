//! The big-table sections: 10,000 published ports (with `--before`, beside an older nsfw) and
//! 10,000 `[[allow]]` entries, each against `nft -f` of the same ruleset.

use std::fmt::Write as _;

use super::Ctx;
use crate::run::{Res, Samples, trial};
use crate::tables::{POLICY_ENTRIES, POLICY_SCALE};
use crate::topologies::{POLICY_NS, PUB_NS, PUB_PER};

/// The rows of a big-table section: label suffix and what is timed.
fn rows(change: &str) -> [(&'static str, String); 5] {
    [
        (
            "cold",
            "full cold apply from nothing (namespaces, bridge, veths, addresses, table)".into(),
        ),
        (
            "table_nsfw",
            "`nsfw apply`, everything there but nsfw's table".into(),
        ),
        (
            "table_nft",
            "`nft -f` of `nsfw show`'s inet table, same state".into(),
        ),
        ("noop", "`nsfw apply` with nothing to do".into()),
        ("change", format!("{change}: `nsfw apply -v`")),
    ]
}

/// 10,000 published ports: the table by nsfw and by nft -f, no-op, one port changed; with
/// `--before`, the same trial by that binary in the same run, the order alternating by run.
pub fn publish(cx: &mut Ctx) -> Res<()> {
    let ports = PUB_NS * PUB_PER as usize;
    let (mut now, mut then) = (Samples::default(), Samples::default());
    for r in 0..cx.runs {
        if let Some(b) = cx.before {
            if r % 2 == 1 {
                then.add(trial("publish", PUB_NS, Some(b))?);
                now.add(trial("publish", PUB_NS, None)?);
            } else {
                now.add(trial("publish", PUB_NS, None)?);
                then.add(trial("publish", PUB_NS, Some(b))?);
            }
        } else {
            now.add(trial("publish", PUB_NS, None)?);
        }
        eprintln!("publish: run {}/{} done", r + 1, cx.runs);
    }
    writeln!(
        cx.report,
        "\n### Published ports: {PUB_NS} namespaces on one bridge (10.200.0.0/22), {PUB_PER} ports each = {ports} published\n"
    )?;
    let before = cx.before.map(|b| (b.display().to_string(), &then));
    if let Some((b, _)) = &before {
        writeln!(
            cx.report,
            "| what is timed | nsfw ms | before (`{b}`) ms | nsfw/before | samples per side |\n|---|---|---|---|---|"
        )?;
    } else {
        writeln!(cx.report, "| what is timed | ms | samples |\n|---|---|---|")?;
    }
    for (k, what) in rows("one host port changed in the file") {
        let k = format!("pub_{k}");
        match &before {
            Some((_, then)) => writeln!(
                cx.report,
                "| {what} | {:.0} | {:.0} | {:.2}× | {} |",
                now.median(&k),
                then.median(&k),
                now.median(&k) / then.median(&k),
                now.count(&k)
            )?,
            None => writeln!(
                cx.report,
                "| {what} | {:.0} | {} |",
                now.median(&k),
                now.count(&k)
            )?,
        }
    }
    writeln!(
        cx.report,
        "\nnsfw apply / nft -f (table only): {:.2}×; one port changed: nft batch of {} messages ({} bytes)",
        now.median("pub_table_nsfw") / now.median("pub_table_nft"),
        now.span("pub_change_msgs"),
        now.span("pub_change_bytes"),
    )?;
    if let Some((_, then)) = &before {
        writeln!(
            cx.report,
            "\nbefore: apply / nft -f (table only) {:.2}×; one port changed: nft batch of {} messages ({} bytes)",
            then.median("pub_table_nsfw") / then.median("pub_table_nft"),
            then.span("pub_change_msgs"),
            then.span("pub_change_bytes"),
        )?;
    }
    cx.done("publish");
    Ok(())
}

/// 10,000 `[[allow]]` entries: the table by nsfw and by nft -f, no-op, one entry changed.
pub fn policy(cx: &mut Ctx) -> Res<()> {
    let mut p = Samples::default();
    for r in 0..cx.runs {
        p.add(trial("policy", POLICY_NS, None)?);
        eprintln!("policy: run {}/{} done", r + 1, cx.runs);
    }
    writeln!(
        cx.report,
        "\n### Policy scale: {POLICY_ENTRIES} [[allow]] entries, {POLICY_NS} namespaces on an egress = \"deny\" bridge\n\n| what is timed | ms | samples |\n|---|---|---|"
    )?;
    for (k, what) in rows("one entry's port changed in the file") {
        let k = format!("pol_{k}");
        writeln!(
            cx.report,
            "| {what} | {:.0} | {} |",
            p.median(&k),
            p.count(&k)
        )?;
    }
    writeln!(
        cx.report,
        "\nnsfw apply / nft -f (table only): {:.2}×; one entry changed: nft batch of {} messages ({} bytes)",
        p.median("pol_table_nsfw") / p.median("pol_table_nft"),
        p.span("pol_change_msgs"),
        p.span("pol_change_bytes"),
    )?;
    writeln!(
        cx.report,
        "\nThe same shape, larger (each a full cold apply on a flushed host):\n\n| [[allow]] entries | nsfw apply cold ms | / {POLICY_ENTRIES} entries | samples |\n|---|---|---|---|"
    )?;
    let base = p.median("pol_cold");
    writeln!(
        cx.report,
        "| {POLICY_ENTRIES} | {base:.0} | 1.00× | {} |",
        p.count("pol_cold")
    )?;
    for n in POLICY_SCALE {
        let k = format!("pol_cold_{n}");
        writeln!(
            cx.report,
            "| {n} | {:.0} | {:.2}× | {} |",
            p.median(&k),
            p.median(&k) / base,
            p.count(&k)
        )?;
    }
    let (few, many) = (
        p.median(&format!("pol_sparse_{POLICY_ENTRIES}")),
        p.median("pol_sparse_100000"),
    );
    writeln!(
        cx.report,
        "\nNo two entries neighbours (every address and port even), so no run joins and every entry is a single key of the `allow_exact4` hash set (in the interval set's pipapo, 100000 took ~6 s, quadratic): {POLICY_ENTRIES} entries {few:.0} ms, 100000 entries {many:.0} ms ({:.1}×; the target is ≤ 12×, and ≤ 3 s for 100000)",
        many / few
    )?;
    cx.done("policy");
    Ok(())
}
