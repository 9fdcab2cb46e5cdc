//! The apply table (nsfw against the classic script, ip -batch + nft -f, the kernel floor and
//! an older nsfw) and the scale trial.

use std::fmt::Write as _;

use super::Ctx;
use crate::run::{Res, Samples, median, trial};

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
