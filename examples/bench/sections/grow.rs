//! The grow section (issue 21): what one namespace more or less, a no-op apply and a diff
//! cost at N = 100, 1,000 and 2,000 on 4 bridges, beside `ip netns add` + the reference CNI
//! `bridge` plugin's ADD in the same sandbox; the cold apply against the binary before the
//! change (`--before`), alternating; peak RSS.

use std::fmt::Write as _;

use super::Ctx;
use crate::run::{Res, Samples, trial};

pub fn grow(cx: &mut Ctx) -> Res<()> {
    let before = if cx.before.is_some() {
        " before cold ms | cold/before |"
    } else {
        ""
    };
    writeln!(
        cx.report,
        "\n### One namespace more or less: N namespaces on 4 bridges (issue 21; the median of 5 repeats inside each run, medians over runs)\n\n| N | add one ms | remove one ms | no-op ms | diff ms | `ip netns add` + CNI bridge ADD ms | add/CNI | remove/CNI | cold ms |{before} no-op/cold | diff/cold | peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|{}---|---|---|",
        if cx.before.is_some() { "---|---|" } else { "" }
    )?;
    for n in [100usize, 1000, 2000] {
        let mut s = Samples::default();
        let mut rss = 0u64;
        let runs = cx.runs.min(3);
        for r in 0..runs {
            // The before binary's cold apply, alternating which goes first.
            let t = trial("grow", n, None)?;
            rss = t.iter().map(|(_, (_, kib))| *kib).fold(rss, u64::max);
            if let Some(b) = cx.before {
                let tb = trial("grow_before", n, Some(b))?;
                if r % 2 == 0 {
                    s.add(t);
                    s.add(tb);
                } else {
                    s.add(tb);
                    s.add(t);
                }
            } else {
                s.add(t);
            }
            eprintln!("grow N={n}: run {}/{runs} done", r + 1);
        }
        let m = |k: &str| s.median(k);
        let cold = m("grow_cold");
        let beside = if cx.before.is_some() {
            format!(
                " {:.0} | {:.2}× |",
                m("grow_before_cold"),
                cold / m("grow_before_cold")
            )
        } else {
            String::new()
        };
        writeln!(
            cx.report,
            "| {n} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2}× | {:.2}× | {cold:.0} |{beside} {:.3} | {:.3} | {:.1} |",
            m("grow_add"),
            m("grow_remove"),
            m("grow_noop"),
            m("grow_diff"),
            m("grow_cni"),
            m("grow_add") / m("grow_cni"),
            m("grow_remove") / m("grow_cni"),
            m("grow_noop") / cold,
            m("grow_diff") / cold,
            rss as f64 / 1024.0
        )?;
        if s.count("grow_watch_unserved") > 0 {
            writeln!(
                cx.report,
                "| {n}, beside `nsfw watch` | watch never vouched for all {n} namespaces within 30 s (its answer has 100 ms to come), so apply read them all: the row above |"
            )?;
            continue;
        }
        writeln!(
            cx.report,
            "| {n}, beside `nsfw watch` | {:.1} | {:.1} | {:.1} | {:.1} | | {:.2}× | {:.2}× | |{} {:.3} | {:.3} | |",
            m("grow_watch_add"),
            m("grow_watch_remove"),
            m("grow_watch_noop"),
            m("grow_watch_diff"),
            m("grow_watch_add") / m("grow_cni"),
            m("grow_watch_remove") / m("grow_cni"),
            if cx.before.is_some() { " | |" } else { "" },
            m("grow_watch_noop") / cold,
            m("grow_watch_diff") / cold,
        )?;
        eprint!("{}", cx.report);
    }
    cx.done("grow");
    Ok(())
}
