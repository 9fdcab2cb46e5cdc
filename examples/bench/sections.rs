//! The outer run's sections: each starts its trials, takes the medians and writes its part of
//! the report (a table and the ratios that matter).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use crate::run::{Res, Samples, median, trial};
use crate::topologies::{PROBE_HOST_PORT, PROBE_NS, PROBE_NS_PORT, PUB_NS, PUB_PER, UPLINK};

/// What every section needs: how many runs, the baseline binary, the report so far.
pub struct Ctx<'a> {
    pub runs: usize,
    pub base: Option<&'a Path>,
    pub report: String,
    pub started: Instant,
}

/// N namespaces on one bridge: (a) the classic script, (b) ip -batch + nft -f, (c) nsfw with
/// the baseline beside it, (d) the kernel floor.
pub fn apply(cx: &mut Ctx, sizes: &[usize]) -> Res<()> {
    let (bh, bs) = if cx.base.is_some() {
        (
            " baseline cold ms | cold/baseline | apply no-op ms | baseline no-op ms | no-op/baseline |",
            "---|---|---|---|---|",
        )
    } else {
        (" apply no-op ms |", "---|")
    };
    writeln!(
        cx.report,
        "| N | (a) classic script ms | (b) ip -batch + nft -f ms | (d) kernel floor ms | nsfw apply cold ms |{bh} diff ms | flush ms | (a)/cold | (b)/cold | no-op/cold | diff/cold | nsfw peak RSS MiB |"
    )?;
    writeln!(
        cx.report,
        "|---|---|---|---|---|{bs}---|---|---|---|---|---|---|"
    )?;
    for &n in sizes {
        let mut col = Samples::default();
        let mut rss = 0u64;
        for r in 0..cx.runs {
            for kind in ["classic", "batch"] {
                col.add(trial(kind, n, None)?);
            }
            // With a baseline: nsfw, baseline, baseline, nsfw — neither always goes first.
            let order: &[&str] = if cx.base.is_some() {
                &["nsfw", "base", "base", "nsfw"]
            } else {
                &["nsfw"]
            };
            for &kind in order {
                let t = trial(kind, n, cx.base)?;
                if kind == "nsfw" {
                    rss = t.iter().map(|(_, (_, kib))| *kib).fold(rss, u64::max);
                }
                col.add(t);
            }
            eprintln!("N={n}: run {}/{} done", r + 1, cx.runs);
        }
        let m = |k: &str| col.median(k);
        let cold = m("apply_cold");
        let noop = m("apply_noop");
        let beside = if cx.base.is_some() {
            format!(
                " {:.0} | {:.2}× | {noop:.1} | {:.1} | {:.2}× |",
                m("base_cold"),
                cold / m("base_cold"),
                m("base_noop"),
                noop / m("base_noop"),
            )
        } else {
            format!(" {noop:.1} |")
        };
        writeln!(
            cx.report,
            "| {n} | {:.0} | {:.0} | {:.0} | {cold:.0} |{beside} {:.1} | {:.0} | {:.1}× | {:.2}× | {:.3} | {:.3} | {:.1} |",
            m("classic"),
            m("batch"),
            m("floor"),
            m("diff"),
            m("flush"),
            m("classic") / cold,
            m("batch") / cold,
            noop / cold,
            m("diff") / cold,
            rss as f64 / 1024.0
        )?;
        eprint!("{}", cx.report);
    }
    Ok(())
}

/// Scale: 4 bridges × 25 and × 250.
pub fn scale(cx: &mut Ctx) -> Res<()> {
    writeln!(
        cx.report,
        "\n### Scale: 4 bridges\n\n| namespaces | nsfw apply cold ms | ms per namespace | peak RSS MiB |\n|---|---|---|---|"
    )?;
    let mut per = Vec::new();
    for n in [100usize, 1000] {
        let mut v = Vec::new();
        let mut rss = 0;
        for _ in 0..cx.runs.min(3) {
            let t = trial("scale", n, None)?;
            let (ms, kib) = t
                .iter()
                .find(|(k, _)| k == "apply_cold")
                .map(|(_, v)| *v)
                .ok_or("no apply_cold figure")?;
            v.push(ms);
            rss = rss.max(kib);
        }
        let ms = median(v);
        per.push(ms / n as f64);
        writeln!(
            cx.report,
            "| {n} | {ms:.0} | {:.3} | {:.1} |",
            ms / n as f64,
            rss as f64 / 1024.0
        )?;
    }
    writeln!(
        cx.report,
        "\nper-namespace cost at 1000 / at 100: {:.2}×",
        per[1] / per[0]
    )?;
    Ok(())
}

/// ns → wan through NAT: nsfw's ruleset against the classic iptables rules.
pub fn dataplane(cx: &mut Ctx) -> Res<()> {
    let mut dp = Samples::default();
    for _ in 0..cx.runs.min(3) {
        dp.add(trial("dataplane", 2, None)?);
    }
    let d = |k: &str| dp.median(k);
    writeln!(
        cx.report,
        "\n### Data plane: ns → wan through NAT (in-process TCP load; 1.5 s measurements alternating A B B A A B B A after a warm-up; medians of {} measurements per side)\n\n| ruleset | throughput Gbit/s | connections/s |\n|---|---|---|",
        dp.count("dp_tput_nsfw")
    )?;
    writeln!(
        cx.report,
        "| nsfw (inet nsfw_bench) | {:.2} | {:.0} |",
        d("dp_tput_nsfw"),
        d("dp_conn_nsfw")
    )?;
    writeln!(
        cx.report,
        "| classic iptables rules | {:.2} | {:.0} |",
        d("dp_tput_iptables"),
        d("dp_conn_iptables")
    )?;
    writeln!(
        cx.report,
        "\nnsfw / iptables: throughput {:.2}×, connection rate {:.2}×",
        d("dp_tput_nsfw") / d("dp_tput_iptables"),
        d("dp_conn_nsfw") / d("dp_conn_iptables")
    )?;
    eprintln!(
        "data plane done after {:.0} s",
        cx.started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// 10,000 published ports: the table by nsfw and by nft -f, no-op, one port changed.
pub fn publish(cx: &mut Ctx) -> Res<()> {
    let ports = PUB_NS * PUB_PER as usize;
    let mut p = Samples::default();
    for r in 0..cx.runs {
        p.add(trial("publish", PUB_NS, None)?);
        eprintln!("publish: run {}/{} done", r + 1, cx.runs);
    }
    let m = |k: &str| p.median(k);
    writeln!(
        cx.report,
        "\n### Published ports: {PUB_NS} namespaces on one bridge (10.200.0.0/22), {PUB_PER} ports each = {ports} published\n\n| what is timed | ms | samples |\n|---|---|---|"
    )?;
    for (k, what) in [
        (
            "pub_cold",
            "full cold apply from nothing (namespaces, bridge, veths, addresses, table)",
        ),
        (
            "pub_table_nsfw",
            "`nsfw apply`, everything there but nsfw's table",
        ),
        (
            "pub_table_nft",
            "`nft -f` of `nsfw show`'s output, same state",
        ),
        ("pub_noop", "`nsfw apply` with nothing to do"),
        (
            "pub_change",
            "one host port changed in the file: `nsfw apply -v`",
        ),
    ] {
        writeln!(cx.report, "| {what} | {:.0} | {} |", m(k), p.count(k))?;
    }
    writeln!(
        cx.report,
        "\nnsfw apply / nft -f (table only): {:.2}×; one port changed: nft batch of {} messages ({} bytes)",
        m("pub_table_nsfw") / m("pub_table_nft"),
        p.span("pub_change_msgs"),
        p.span("pub_change_bytes"),
    )?;
    eprintln!(
        "publish done after {:.0} s",
        cx.started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// wan → a published port, with 10,000 ports published against 1.
pub fn publish_dataplane(cx: &mut Ctx) -> Res<()> {
    let ports = PUB_NS * PUB_PER as usize;
    let mut dp = Samples::default();
    for _ in 0..cx.runs.min(3) {
        dp.add(trial("pubdp", PUB_NS, None)?);
    }
    let d = |k: &str| dp.median(k);
    writeln!(
        cx.report,
        "\n### Data plane through a published port: wan → {UPLINK}:{PROBE_HOST_PORT} → DNAT → ns{PROBE_NS}:{PROBE_NS_PORT} (same load and alternation as above; medians of {} measurements per side)\n\n| ports published | throughput Gbit/s | connections/s |\n|---|---|---|",
        dp.count("pubdp_tput_all")
    )?;
    writeln!(
        cx.report,
        "| {ports} | {:.2} | {:.0} |",
        d("pubdp_tput_all"),
        d("pubdp_conn_all")
    )?;
    writeln!(
        cx.report,
        "| 1 | {:.2} | {:.0} |",
        d("pubdp_tput_one"),
        d("pubdp_conn_one")
    )?;
    writeln!(
        cx.report,
        "\n{ports} published / 1 published: throughput {:.2}×, connection rate {:.2}×",
        d("pubdp_tput_all") / d("pubdp_tput_one"),
        d("pubdp_conn_all") / d("pubdp_conn_one")
    )?;
    Ok(())
}
